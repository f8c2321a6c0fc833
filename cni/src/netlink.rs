//! Synchronous rtnetlink: links, addresses, routes.
//!
//! Plugins are short-lived processes that make a dozen requests each, so a
//! blocking socket (no async runtime to start) is the fastest shape. A
//! [`Netlink`] belongs to the netns it was opened in: open one inside
//! [`crate::netns::NetNs::run`] to work on a pod's links from the main thread.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel refused a request; `what` names the object ("add veth veth1234 (peer eth0)").
    #[error("{what}: {source}")]
    Kernel { what: String, source: std::io::Error },
    #[error("{what}: malformed netlink reply: {msg}")]
    Decode { what: String, msg: String },
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

type R<T> = Result<T, NetlinkError>;

/// What we read of a link.
#[derive(Debug, Clone, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND` ("bridge", "veth", ...), empty for plain devices.
    pub kind: String,
    pub mtu: u32,
    pub mac: Vec<u8>,
    pub up: bool,
    pub promisc: bool,
    /// Index of the bridge it is a port of.
    pub master: Option<u32>,
    /// For a veth: the peer's index (in the peer's netns).
    pub link: Option<u32>,
    /// Bridge port hairpin mode, when a bridge port.
    pub hairpin: Option<bool>,
}

impl Link {
    pub fn mac_string(&self) -> String {
        mac_to_string(&self.mac)
    }
}

pub fn mac_to_string(mac: &[u8]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (also `-` separated).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNet,
    pub gw: Option<IpAddr>,
    pub oif: Option<u32>,
}

/// Options for [`Netlink::add_veth`].
#[derive(Debug, Clone, Default)]
pub struct VethSpec<'a> {
    pub host_name: &'a str,
    pub peer_name: &'a str,
    /// fd of the netns the peer is created in.
    pub peer_netns_fd: i32,
    pub mtu: Option<u32>,
    pub peer_mac: Option<[u8; 6]>,
}

pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket in the calling thread's netns.
    pub fn open() -> R<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind_auto().map_err(NetlinkError::Socket)?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(NetlinkError::Socket)?;
        // Kernel error strings (extack) are not parsed by the crate; errno is enough.
        Ok(Netlink { sock, seq: 0, buf: vec![0; 64 * 1024] })
    }

    /// Sends one request and collects the replies (all parts of a dump), or the kernel's error.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|source| NetlinkError::Kernel { what: what(), source })?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = vec![];
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|source| NetlinkError::Kernel { what: what(), source })?;
            let mut off = 0;
            while off < n {
                let reply: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(&self.buf[off..n])
                    .map_err(|e| NetlinkError::Decode { what: what(), msg: e.to_string() })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                off += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies), // ACK
                        Some(code) => {
                            return Err(NetlinkError::Kernel {
                                what: what(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            })
                        }
                    },
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !dump {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<()> {
        self.request(msg, flags | NLM_F_ACK, what).map(|_| ())
    }

    // ---- links ----

    pub fn links(&mut self) -> R<Vec<Link>> {
        let r = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP, &|| "list links".into())?;
        Ok(r.into_iter().filter_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(parse_link(&l)) } else { None }).collect())
    }

    /// The link named `name`, or None.
    pub fn link_by_name(&mut self, name: &str) -> R<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(m), 0, &|| format!("get link {name}")) {
            Ok(r) => Ok(r.iter().find_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(parse_link(l)) } else { None })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_by_index(&mut self, index: u32) -> R<Option<Link>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.request(RouteNetlinkMessage::GetLink(m), 0, &|| format!("get link #{index}")) {
            Ok(r) => Ok(r.iter().find_map(|m| if let RouteNetlinkMessage::NewLink(l) = m { Some(parse_link(l)) } else { None })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a bridge (fails with EEXIST if the name is taken).
    pub fn add_bridge(&mut self, name: &str, mtu: Option<u32>, vlan_filtering: bool) -> R<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        if let Some(mtu) = mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                netlink_packet_route::link::InfoBridge::VlanFiltering(true),
            ])));
        }
        m.attributes.push(LinkAttribute::LinkInfo(info));
        self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL, &|| format!("add bridge {name}"))
    }

    /// Creates a veth pair: `host_name` here, `peer_name` directly in the peer's netns.
    pub fn add_veth(&mut self, v: &VethSpec) -> R<()> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(v.peer_name.to_string()));
        peer.attributes.push(LinkAttribute::NetNsFd(v.peer_netns_fd));
        if let Some(mtu) = v.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = v.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(v.host_name.to_string()));
        if let Some(mtu) = v.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("add veth {} (peer {})", v.host_name, v.peer_name)
        })
    }

    fn set(&mut self, index: u32, what: &dyn Fn() -> String, edit: impl FnOnce(&mut LinkMessage)) -> R<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        edit(&mut m);
        self.ack(RouteNetlinkMessage::SetLink(m), 0, what)
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> R<()> {
        self.set(index, &|| format!("set link #{index} {}", if up { "up" } else { "down" }), |m| {
            m.header.change_mask = LinkFlags::Up;
            if up {
                m.header.flags = LinkFlags::Up;
            }
        })
    }

    pub fn set_promisc(&mut self, index: u32, on: bool) -> R<()> {
        self.set(index, &|| format!("set link #{index} promisc {on}"), |m| {
            m.header.change_mask = LinkFlags::Promisc;
            if on {
                m.header.flags = LinkFlags::Promisc;
            }
        })
    }

    pub fn set_master(&mut self, index: u32, master: u32) -> R<()> {
        self.set(index, &|| format!("set link #{index} master #{master}"), |m| {
            m.attributes.push(LinkAttribute::Controller(master));
        })
    }

    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> R<()> {
        self.set(index, &|| format!("set link #{index} mtu {mtu}"), |m| m.attributes.push(LinkAttribute::Mtu(mtu)))
    }

    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> R<()> {
        self.set(index, &|| format!("set link #{index} address {}", mac_to_string(&mac)), |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()))
        })
    }

    /// Hairpin mode of a bridge port (`IFLA_BRPORT_MODE` in the port's slave data).
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> R<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(on)])),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(m), 0, &|| format!("set link #{index} hairpin {on}"))
    }

    /// Turns VLAN filtering on for a bridge (EOPNOTSUPP where the kernel lacks it).
    pub fn set_bridge_vlan_filtering(&mut self, index: u32, on: bool) -> R<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![netlink_packet_route::link::InfoBridge::VlanFiltering(on)])),
        ]));
        self.ack(RouteNetlinkMessage::NewLink(m), 0, &|| format!("set bridge #{index} vlan_filtering {on}"))
    }

    /// Makes `vid` the port's untagged PVID and drops the default VLAN 1
    /// (`bridge vlan add dev X vid N pvid untagged; bridge vlan del dev X vid 1`).
    pub fn set_port_pvid(&mut self, index: u32, vid: u16) -> R<()> {
        use netlink_packet_route::link::{AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags};
        let msg = |flags: BridgeVlanInfoFlags, vid: u16| {
            let mut m = LinkMessage::default();
            m.header.interface_family = AddressFamily::Bridge;
            m.header.index = index;
            m.attributes.push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(BridgeVlanInfo { flags, vid })]));
            m
        };
        self.ack(
            RouteNetlinkMessage::SetLink(msg(BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged, vid)),
            0,
            &|| format!("set link #{index} vlan {vid} pvid untagged"),
        )?;
        if vid != 1 {
            match self.ack(RouteNetlinkMessage::DelLink(msg(BridgeVlanInfoFlags::empty(), 1)), 0, &|| {
                format!("delete vlan 1 from link #{index}")
            }) {
                Ok(()) => {}
                Err(e) if e.errno() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a link; Ok(false) when it did not exist.
    pub fn del_link(&mut self, index: u32) -> R<bool> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.ack(RouteNetlinkMessage::DelLink(m), 0, &|| format!("delete link #{index}")) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- addresses ----

    /// Addresses (global and link scope) of a link, or of all links with `None`: (ifindex, address).
    pub fn addrs(&mut self, index: Option<u32>) -> R<Vec<(u32, IpNet)>> {
        let r = self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP, &|| {
            "list addresses".into()
        })?;
        let mut out = vec![];
        for m in r {
            let RouteNetlinkMessage::NewAddress(a) = m else { continue };
            if index.is_some_and(|i| i != a.header.index) {
                continue;
            }
            // IFA_LOCAL is the interface's own address on point-to-point links; else IFA_ADDRESS.
            let ip = a
                .attributes
                .iter()
                .find_map(|x| if let AddressAttribute::Local(ip) = x { Some(*ip) } else { None })
                .or_else(|| a.attributes.iter().find_map(|x| if let AddressAttribute::Address(ip) = x { Some(*ip) } else { None }));
            if let Some(ip) = ip {
                if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                    out.push((a.header.index, net));
                }
            }
        }
        Ok(out)
    }

    fn addr_msg(index: u32, addr: &IpNet) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(&addr.addr());
        m.header.prefix_len = addr.prefix_len();
        m.header.index = index;
        m.header.scope = AddressScope::Universe;
        m.attributes.push(AddressAttribute::Local(addr.addr()));
        m.attributes.push(AddressAttribute::Address(addr.addr()));
        if let IpAddr::V4(v4) = addr.addr() {
            if addr.prefix_len() < 31 {
                if let IpNet::V4(n) = addr {
                    let _ = v4;
                    m.attributes.push(AddressAttribute::Broadcast(n.broadcast()));
                }
            }
        }
        m
    }

    pub fn add_addr(&mut self, index: u32, addr: &IpNet) -> R<()> {
        self.ack(RouteNetlinkMessage::NewAddress(Self::addr_msg(index, addr)), NLM_F_CREATE | NLM_F_EXCL, &|| {
            format!("add address {addr} to link #{index}")
        })
    }

    /// Ok(false) when the address was not there.
    pub fn del_addr(&mut self, index: u32, addr: &IpNet) -> R<bool> {
        match self.ack(RouteNetlinkMessage::DelAddress(Self::addr_msg(index, addr)), 0, &|| {
            format!("delete address {addr} from link #{index}")
        }) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.errno(), Some(libc::EADDRNOTAVAIL) | Some(libc::ENODEV)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    // ---- routes ----

    /// Unicast routes of the main table, both families.
    pub fn routes(&mut self) -> R<Vec<Route>> {
        let mut out = vec![];
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            let r = self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP, &|| "list routes".into())?;
            for m in r {
                let RouteNetlinkMessage::NewRoute(rt) = m else { continue };
                if rt.header.table != RouteHeader::RT_TABLE_MAIN || rt.header.kind != RouteType::Unicast {
                    continue;
                }
                let mut dst = None;
                let mut gw = None;
                let mut oif = None;
                for a in &rt.attributes {
                    match a {
                        RouteAttribute::Destination(d) => dst = route_ip(d),
                        RouteAttribute::Gateway(g) => gw = route_ip(g),
                        RouteAttribute::Oif(i) => oif = Some(*i),
                        _ => {}
                    }
                }
                let dst = dst.unwrap_or(if fam == AddressFamily::Inet {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                } else {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                });
                if let Ok(dst) = IpNet::new(dst, rt.header.destination_prefix_length) {
                    out.push(Route { dst, gw, oif });
                }
            }
        }
        Ok(out)
    }

    fn route_msg(r: &Route) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family(&r.dst.addr());
        m.header.destination_prefix_length = r.dst.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.kind = RouteType::Unicast;
        // A route without a gateway is on-link.
        m.header.scope = if r.gw.is_some() { RouteScope::Universe } else { RouteScope::Link };
        if r.dst.prefix_len() > 0 {
            m.attributes.push(RouteAttribute::Destination(RouteAddress::from(r.dst.network())));
        }
        if let Some(gw) = r.gw {
            m.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = r.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        m
    }

    pub fn add_route(&mut self, r: &Route) -> R<()> {
        self.ack(RouteNetlinkMessage::NewRoute(Self::route_msg(r)), NLM_F_CREATE | NLM_F_EXCL, &|| describe_route("add", r))
    }

    /// Adds or replaces (`ip route replace`).
    pub fn replace_route(&mut self, r: &Route) -> R<()> {
        self.ack(RouteNetlinkMessage::NewRoute(Self::route_msg(r)), NLM_F_CREATE | NLM_F_REPLACE, &|| {
            describe_route("replace", r)
        })
    }

    /// Ok(false) when there was no such route.
    pub fn del_route(&mut self, r: &Route) -> R<bool> {
        let mut m = Self::route_msg(r);
        m.header.scope = RouteScope::NoWhere;
        match self.ack(RouteNetlinkMessage::DelRoute(m), 0, &|| describe_route("delete", r)) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

fn describe_route(verb: &str, r: &Route) -> String {
    let mut s = format!("{verb} route {}", r.dst);
    if let Some(gw) = r.gw {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = r.oif {
        s += &format!(" dev #{oif}");
    }
    s
}

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        promisc: m.header.flags.contains(LinkFlags::Promisc),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Address(mac) => l.mac = mac.clone(),
            LinkAttribute::Controller(i) => l.master = Some(*i),
            LinkAttribute::Link(i) => l.link = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => l.kind = k.to_string(),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            l.hairpin = p.iter().find_map(|x| if let InfoBridgePort::HairpinMode(h) = x { Some(*h) } else { None })
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// Runs `f` in a thread inside a fresh, unnamed netns (never the host's);
    /// None when not root.
    fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: needs root");
            return None;
        }
        Some(
            std::thread::spawn(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap(),
        )
    }

    #[test]
    fn bridge_veth_addresses_routes() {
        in_fresh_netns(|| {
            // The "pod": this first fresh netns, kept by an fd; then a second one for the "node".
            let pod = File::open("/proc/thread-self/ns/net").unwrap();
            let mut pnl = Netlink::open().unwrap();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut nl = Netlink::open().unwrap();

            nl.add_bridge("br-t", Some(1400), false).unwrap();
            let e = nl.add_bridge("br-t", None, false).unwrap_err();
            assert_eq!(e.errno(), Some(libc::EEXIST), "{e}");
            assert!(e.to_string().contains("br-t"), "{e}");
            let br = nl.link_by_name("br-t").unwrap().unwrap();
            assert_eq!((br.kind.as_str(), br.mtu), ("bridge", 1400));

            let mac = parse_mac("0a:58:0a:01:00:05").unwrap();
            nl.add_veth(&VethSpec {
                host_name: "veth-t",
                peer_name: "eth0",
                peer_netns_fd: pod.as_raw_fd(),
                mtu: Some(1400),
                peer_mac: Some(mac),
            })
            .unwrap();
            let h = nl.link_by_name("veth-t").unwrap().unwrap();
            assert_eq!(h.kind, "veth");
            nl.set_master(h.index, br.index).unwrap();
            nl.set_hairpin(h.index, true).unwrap();
            nl.set_promisc(br.index, true).unwrap();
            nl.set_up(h.index, true).unwrap();
            nl.set_up(br.index, true).unwrap();
            let h = nl.link_by_index(h.index).unwrap().unwrap();
            assert_eq!((h.master, h.hairpin, h.up), (Some(br.index), Some(true), true));
            assert!(nl.link_by_name("br-t").unwrap().unwrap().promisc);
            assert!(nl.link_by_name("eth0").unwrap().is_none(), "peer must not be in the node netns");

            let e0 = pnl.link_by_name("eth0").unwrap().expect("peer in the pod netns");
            assert_eq!((e0.mtu, e0.mac_string().as_str()), (1400, "0a:58:0a:01:00:05"));
            pnl.set_up(e0.index, true).unwrap();
            let a: IpNet = "10.1.0.5/24".parse().unwrap();
            pnl.add_addr(e0.index, &a).unwrap();
            assert_eq!(pnl.addrs(Some(e0.index)).unwrap().iter().filter(|(_, n)| n.addr().is_ipv4()).map(|x| x.1).collect::<Vec<_>>(), vec![a]);
            let def = Route { dst: "0.0.0.0/0".parse().unwrap(), gw: Some("10.1.0.1".parse().unwrap()), oif: Some(e0.index) };
            pnl.add_route(&def).unwrap();
            let extra = Route { dst: "10.9.0.0/16".parse().unwrap(), gw: Some("10.1.0.1".parse().unwrap()), oif: None };
            pnl.add_route(&extra).unwrap();
            let rs = pnl.routes().unwrap();
            assert!(rs.contains(&def), "{rs:?}");
            assert!(rs.iter().any(|r| r.dst == extra.dst && r.gw == extra.gw), "{rs:?}");
            assert!(pnl.del_route(&def).unwrap());
            assert!(!pnl.del_route(&def).unwrap());
            assert!(pnl.del_addr(e0.index, &a).unwrap());
            assert!(!pnl.del_addr(e0.index, &a).unwrap());

            // Deleting one end removes the pair.
            assert!(nl.del_link(h.index).unwrap());
            assert!(!nl.del_link(h.index).unwrap());
            assert!(pnl.link_by_name("eth0").unwrap().is_none());
        });
    }
}
