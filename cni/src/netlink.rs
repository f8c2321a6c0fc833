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
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use crate::nlwire::{
    align4, attrs, done_errno, errno_of, read_i32, read_u16, read_u32, Header, DUMP_TRIES, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN,
    NLMSG_NOOP, NLM_F_DUMP_INTR,
};

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
    /// Makes the host end a port of this bridge (index) in the same request.
    pub master: Option<u32>,
    /// Creates the host end up. (Not the peer: the kernel configures the peer before the
    /// pair is linked, and veth_open then fails with ENOTCONN.)
    pub up: bool,
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

    /// Sends one request and collects the replies (all parts of a dump) as whole raw
    /// netlink messages, or the kernel's error. Headers, ACKs and errors are read by hand:
    /// cheap, and the raw form lets link replies skip the crate's decoder (see [`parse_link`]).
    fn request_raw(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<Vec<Vec<u8>>> {
        let mut out = self.serialize(msg, flags);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut tries = 1;
        loop {
            let (replies, interrupted) = self.exchange(&out, dump, what)?;
            if !interrupted {
                return Ok(replies);
            }
            // The set changed during the dump (an object may be missing or doubled): rollback
            // and DEL decide on these lists, so read them again, whole.
            if tries >= DUMP_TRIES {
                return Err(NetlinkError::Kernel {
                    what: what(),
                    source: std::io::Error::new(std::io::ErrorKind::Other, format!("dump interrupted {tries} times in a row (NLM_F_DUMP_INTR)")),
                });
            }
            tries += 1;
            self.seq += 1;
            out[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        }
    }

    /// Sends `out` (sequence number self.seq) and reads its answer: (replies, whether a
    /// dump part came flagged NLM_F_DUMP_INTR).
    fn exchange(&mut self, out: &[u8], dump: bool, what: &dyn Fn() -> String) -> R<(Vec<Vec<u8>>, bool)> {
        self.sock.send(out, 0).map_err(|source| NetlinkError::Kernel { what: what(), source })?;
        let mut replies = vec![];
        let mut interrupted = false;
        loop {
            let n = self
                .sock
                .recv(&mut &mut self.buf[..], 0)
                .map_err(|source| NetlinkError::Kernel { what: what(), source })?;
            let mut off = 0;
            while off + NLMSG_HDRLEN <= n {
                let h = Header::read(&self.buf[off..n]).ok_or_else(|| NetlinkError::Decode { what: what(), msg: "truncated message".into() })?;
                let msg = &self.buf[off..off + h.len];
                off += align4(h.len);
                if h.seq != self.seq {
                    continue;
                }
                interrupted |= dump && h.flags & NLM_F_DUMP_INTR != 0;
                match h.kind {
                    NLMSG_NOOP => {}
                    NLMSG_DONE => {
                        // A dump that failed partway ends with DONE carrying the errno.
                        if let Some(e) = done_errno(msg) {
                            return Err(NetlinkError::Kernel { what: what(), source: std::io::Error::from_raw_os_error(e) });
                        }
                        return Ok((replies, interrupted));
                    }
                    NLMSG_ERROR => {
                        let code = read_i32(msg, NLMSG_HDRLEN).ok_or_else(|| NetlinkError::Decode { what: what(), msg: "short error message".into() })?;
                        if code == 0 {
                            return Ok((replies, interrupted)); // ACK
                        }
                        return Err(NetlinkError::Kernel { what: what(), source: std::io::Error::from_raw_os_error(errno_of(code)) });
                    }
                    _ => {
                        replies.push(msg.to_vec());
                        if !dump {
                            return Ok((replies, false));
                        }
                    }
                }
            }
        }
    }

    fn serialize(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Vec<u8> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        out
    }

    /// [`Self::request_raw`], the replies decoded by the crate (addresses, routes).
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<Vec<RouteNetlinkMessage>> {
        let raw = self.request_raw(msg, flags, what)?;
        let mut out = Vec::with_capacity(raw.len());
        for m in raw {
            let reply: NetlinkMessage<RouteNetlinkMessage> =
                NetlinkMessage::deserialize(&m).map_err(|e| NetlinkError::Decode { what: what(), msg: e.to_string() })?;
            if let NetlinkPayload::InnerMessage(m) = reply.payload {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// A link request: the replies parsed by [`parse_link`].
    fn request_links(&mut self, msg: LinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<Vec<Link>> {
        let raw = self.request_raw(RouteNetlinkMessage::GetLink(msg), flags, what)?;
        Ok(raw.iter().filter_map(|m| parse_link(m)).collect())
    }

    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &dyn Fn() -> String) -> R<()> {
        self.request(msg, flags | NLM_F_ACK, what).map(|_| ())
    }

    // ---- links ----

    pub fn links(&mut self) -> R<Vec<Link>> {
        self.request_links(LinkMessage::default(), NLM_F_DUMP, &|| "list links".into())
    }

    /// The link named `name`, or None.
    pub fn link_by_name(&mut self, name: &str) -> R<Option<Link>> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self.request_links(m, 0, &|| format!("get link {name}")) {
            Ok(r) => Ok(r.into_iter().next()),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn link_by_index(&mut self, index: u32) -> R<Option<Link>> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        match self.request_links(m, 0, &|| format!("get link #{index}")) {
            Ok(r) => Ok(r.into_iter().next()),
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

    /// Creates a veth pair: `host_name` here, `peer_name` directly in the peer's netns
    /// (with the options of [`VethSpec`]).
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
        // The kernel applies flags and IFLA_MASTER to a link it creates (rtnl_newlink_create):
        // one round trip instead of three.
        if let Some(master) = v.master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        if v.up {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
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

    /// Makes `vid` the port's untagged PVID and, unless `keep_default`, drops the default
    /// VLAN 1 (`bridge vlan add dev X vid N pvid untagged; bridge vlan del dev X vid 1`).
    pub fn set_port_pvid(&mut self, index: u32, vid: u16, keep_default: bool) -> R<()> {
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
        if vid != 1 && !keep_default {
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

    /// Deletes the link named `name`; Ok(false) when there is none.
    pub fn del_link_by_name(&mut self, name: &str) -> R<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.ack(RouteNetlinkMessage::DelLink(m), 0, &|| format!("delete link {name}")) {
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

// ---- raw message layout (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h) ----

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFINFOMSG_LEN: usize = 16;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINK: u16 = 5;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_SLAVE_KIND: u16 = 4;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_MODE: u16 = 4;
const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;
/// `RTMGRP_LINK`: the multicast group of link notifications.
const RTMGRP_LINK: u32 = 1;

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses one RTM_NEWLINK message (header included) into what we read of a link.
///
/// By hand, for speed: netlink-packet-route 0.25 formats a Debug dump of every attribute
/// buffer while decoding a link (an eager error context), which cost ~460 µs per bridge
/// message here, ~40 µs per veth, several times per ADD. These are the few attributes we use.
fn parse_link(msg: &[u8]) -> Option<Link> {
    if read_u16(msg, 4)? != RTM_NEWLINK {
        return None;
    }
    let ifi = msg.get(NLMSG_HDRLEN..)?;
    if ifi.len() < IFINFOMSG_LEN {
        return None;
    }
    let flags = read_u32(ifi, 8)?;
    let mut l = Link {
        index: read_i32(ifi, 4)? as u32,
        up: flags & IFF_UP != 0,
        promisc: flags & IFF_PROMISC != 0,
        ..Default::default()
    };
    for (kind, data) in attrs(&ifi[IFINFOMSG_LEN..]) {
        match kind {
            IFLA_IFNAME => l.name = c_string(data),
            // A short or malformed attribute is skipped, never the whole link: a link
            // missing from a lookup would make DEL skip deleting it.
            IFLA_MTU => l.mtu = read_u32(data, 0).unwrap_or(l.mtu),
            IFLA_ADDRESS => l.mac = data.to_vec(),
            IFLA_MASTER => l.master = read_u32(data, 0).or(l.master),
            IFLA_LINK => l.link = read_u32(data, 0).or(l.link),
            IFLA_LINKINFO => {
                let mut slave_kind = String::new();
                let mut slave_data: &[u8] = &[];
                for (k, d) in attrs(data) {
                    match k {
                        IFLA_INFO_KIND => l.kind = c_string(d),
                        IFLA_INFO_SLAVE_KIND => slave_kind = c_string(d),
                        IFLA_INFO_SLAVE_DATA => slave_data = d,
                        _ => {}
                    }
                }
                if slave_kind == "bridge" {
                    l.hairpin = attrs(slave_data).find(|(k, _)| *k == IFLA_BRPORT_MODE).and_then(|(_, d)| d.first()).map(|m| *m != 0);
                }
            }
            _ => {}
        }
    }
    Some(l)
}

// ---- deleting a link without waiting for the kernel's deferred teardown ----

/// A socket subscribed to link notifications (`RTMGRP_LINK`) in the netns it was opened
/// in, for [`Netlink::del_link_early`].
pub struct LinkWatch {
    sock: Socket,
}

impl LinkWatch {
    pub fn open() -> R<LinkWatch> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        sock.bind(&SocketAddr::new(0, RTMGRP_LINK)).map_err(NetlinkError::Socket)?;
        sock.set_non_blocking(true).map_err(NetlinkError::Socket)?;
        Ok(LinkWatch { sock })
    }

    /// Reads what is queued and appends to `deleted` every index an RTM_DELLINK
    /// (AF_UNSPEC: the link itself, not the bridge's port notice) reported.
    /// Err on overflow (ENOBUFS: notifications were lost).
    fn drain(&self, buf: &mut [u8], deleted: &mut Vec<u32>) -> std::io::Result<()> {
        loop {
            let n = match self.sock.recv(&mut &mut buf[..], libc::MSG_DONTWAIT) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut off = 0;
            while let Some(h) = Header::read(&buf[off..n]) {
                let m = &buf[off..off + h.len];
                off += align4(h.len);
                if h.kind == RTM_DELLINK && m.get(NLMSG_HDRLEN) == Some(&0) {
                    if let Some(i) = read_i32(m, NLMSG_HDRLEN + 4) {
                        deleted.push(i as u32);
                    }
                }
                if off >= n {
                    break;
                }
            }
        }
    }
}

impl Netlink {
    /// Deletes link `index` (of this socket's netns) and returns once the kernel has
    /// unregistered it, without waiting for the deferred part of the teardown.
    ///
    /// Why: RTM_DELLINK answers only after `netdev_run_todo`'s `rcu_barrier()` (a full RCU
    /// grace period, ~18 ms here, whichever end of a veth pair is deleted, from whichever
    /// netns, down first or not, ACK asked for or not: all measured). The link is already
    /// gone before that wait: unlisted (name and index free), its addresses, routes and
    /// bridge port removed, RTM_DELLINK sent to listeners; the barrier only precedes freeing
    /// the device's memory. So a forked child sends the request and waits for the answer,
    /// while this process returns as soon as `watches` have reported every
    /// (watch, index) deleted: the link itself (a watch in this netns) and e.g. the host end
    /// of a veth pair (a watch in the node's netns).
    ///
    /// Errors are not lost: if the child exits first, its exit status carries the
    /// kernel's answer (0, or the errno). Where a child cannot be watched (no `pidfd_open`,
    /// Linux < 5.3) or was killed, or a watch overflowed, this waits for the child or
    /// deletes synchronously. Ok(false) when the link did not exist.
    /// The child closes every descriptor but the request socket (so a caller reading the
    /// plugin's stdout to EOF does not wait for it) and exits when the kernel answers; it is
    /// reaped by whoever inherits it. `watches` must include the link itself.
    ///
    /// Takes the socket: the child reads its answer from it, so this process must not.
    pub fn del_link_early(mut self, index: u32, watches: &[(&LinkWatch, u32)]) -> R<bool> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let what = || format!("delete link #{index}");
        if watches.is_empty() {
            return self.del_link(index); // nothing would tell us it is done
        }
        let mut m = LinkMessage::default();
        m.header.index = index;
        let req = self.serialize(RouteNetlinkMessage::DelLink(m), NLM_F_ACK);
        let seq = self.seq;
        let fd = self.sock.as_raw_fd();
        let fd_limit = fd_limit(); // before the fork: the child only makes raw system calls
        // SAFETY: the child only makes async-signal-safe system calls on memory that
        // exists before the fork (req, self.buf), then _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return self.del_link(index);
        }
        if pid == 0 {
            unsafe { early_child(fd, &req, &mut self.buf, seq, fd_limit) }
        }
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
        if let Some(pidfd) = &pidfd {
            if wait_deleted(watches, pidfd.as_raw_fd()) {
                return Ok(true);
            }
        }
        let mut status = 0;
        let r = loop {
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break r;
        };
        if r == pid && libc::WIFEXITED(status) {
            return match libc::WEXITSTATUS(status) {
                0 => Ok(true),
                e if e == libc::ENODEV => Ok(false),
                EARLY_CHILD_IO => self.del_link(index),
                e => Err(NetlinkError::Kernel { what: what(), source: std::io::Error::from_raw_os_error(e) }),
            };
        }
        // Killed, or not ours to wait for: ask again, synchronously (ENODEV if it was done).
        self.del_link(index)
    }
}

/// Waits until every (watch, index) of `watches` has been reported deleted by that watch
/// (true: indexes are per netns, so a watch only answers for its own), or until the child
/// behind `pidfd` has exited or a watch lost notifications (false: the child's answer
/// decides). A watch may be given for several indexes.
fn wait_deleted(watches: &[(&LinkWatch, u32)], pidfd: i32) -> bool {
    use std::os::fd::AsRawFd;
    let fd_of = |w: &LinkWatch| w.sock.as_raw_fd();
    let mut pending: Vec<(i32, u32)> = watches.iter().map(|(w, i)| (fd_of(w), *i)).collect();
    let mut socks: Vec<&LinkWatch> = vec![];
    for (w, _) in watches {
        if !socks.iter().any(|s| fd_of(s) == fd_of(w)) {
            socks.push(w);
        }
    }
    let mut buf = vec![0u8; 32 * 1024];
    let mut deleted = vec![];
    while !pending.is_empty() {
        let mut fds: Vec<libc::pollfd> = socks.iter().map(|w| libc::pollfd { fd: fd_of(w), events: libc::POLLIN, revents: 0 }).collect();
        fds.push(libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 });
        // SAFETY: fds is a valid array of pollfd for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        for (i, w) in socks.iter().enumerate() {
            if fds[i].revents == 0 {
                continue;
            }
            deleted.clear();
            if w.drain(&mut buf, &mut deleted).is_err() {
                return false;
            }
            pending.retain(|(fd, idx)| !(*fd == fd_of(w) && deleted.contains(idx)));
        }
        if !pending.is_empty() && fds[socks.len()].revents != 0 {
            return false;
        }
    }
    true
}

/// Exit status of the early-delete child when it could not talk to the kernel at all.
const EARLY_CHILD_IO: i32 = 255;

/// Closes descriptors `lo..=hi`: close_range (Linux >= 5.9), else (ENOSYS) one close()
/// per descriptor below `fd_limit` (RLIMIT_NOFILE's soft limit, read before the fork: no
/// descriptor can be at or above it, short of a limit lowered after opening).
/// Async-signal-safe.
unsafe fn close_fds(lo: i32, hi: i32, fd_limit: i32) {
    if hi < lo {
        return;
    }
    if libc::syscall(libc::SYS_close_range, lo as u32, hi as u32, 0u32) == 0 {
        return;
    }
    close_fds_loop(lo, hi, fd_limit);
}

/// [`close_fds`] without close_range.
unsafe fn close_fds_loop(lo: i32, hi: i32, fd_limit: i32) {
    for f in lo..=hi.min(fd_limit - 1) {
        libc::close(f);
    }
}

/// RLIMIT_NOFILE's soft limit, the bound of [`close_fds`]' fallback (capped: an
/// unlimited or huge limit would make that loop long; such a process has no
/// descriptor numbers that high in practice).
fn fd_limit() -> i32 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: rl is a valid rlimit to write to.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 1 << 20;
    }
    rl.rlim_cur.min(1 << 20) as i32
}

/// The exit status of the early-delete child for the error code of the kernel's answer:
/// 0 (success), the errno (1..=254), or EARLY_CHILD_IO when the answer was too short to
/// hold a code (then the parent asks again). No panic (`-i32::MIN`) in the forked child.
fn early_child_status(code: Option<i32>) -> i32 {
    match code {
        None => EARLY_CHILD_IO,
        Some(0) => 0,
        Some(c) => errno_of(c).clamp(1, 254),
    }
}

/// The child of [`Netlink::del_link_early`]: sends `req` on `fd`, waits for the answer to
/// `seq`, exits 0 or with the errno. Async-signal-safe calls only.
unsafe fn early_child(fd: i32, req: &[u8], buf: &mut [u8], seq: u32, fd_limit: i32) -> ! {
    // Nothing of the parent's (pipes a runtime reads to EOF, lock files) stays open here.
    for f in 0..3 {
        if f != fd {
            libc::close(f);
        }
    }
    close_fds(3, fd - 1, fd_limit);
    close_fds(fd + 1, i32::MAX, fd_limit);
    if libc::send(fd, req.as_ptr().cast(), req.len(), 0) != req.len() as isize {
        libc::_exit(EARLY_CHILD_IO);
    }
    loop {
        let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
        if n < 0 {
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            libc::_exit(EARLY_CHILD_IO);
        }
        let n = n as usize;
        let mut off = 0;
        while let Some(h) = Header::read(&buf[off..n]) {
            if h.seq == seq && h.kind == NLMSG_ERROR {
                libc::_exit(early_child_status(read_i32(&buf[off..off + h.len], NLMSG_HDRLEN)));
            }
            off += align4(h.len);
            if off >= n {
                break;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsRawFd;

    /// Runs `f` in a thread inside a fresh, unnamed netns (never the host's);
    /// None when not root. Also used by the bridge's tests.
    pub(crate) fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
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
                ..Default::default()
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

            // Created with master and up in one request.
            nl.add_veth(&VethSpec {
                host_name: "veth-u",
                peer_name: "eth1",
                peer_netns_fd: pod.as_raw_fd(),
                master: Some(br.index),
                up: true,
                ..Default::default()
            })
            .unwrap();
            let h = nl.link_by_name("veth-u").unwrap().unwrap();
            assert_eq!((h.master, h.up, h.hairpin), (Some(br.index), true, Some(false)));
            let e1 = pnl.link_by_name("eth1").unwrap().unwrap();
            assert_eq!(e1.link, Some(h.index), "a veth's IFLA_LINK is its peer's index");
            assert_eq!(h.link, Some(e1.index));
            let all = nl.links().unwrap();
            assert!(all.iter().any(|l| l.name == "br-t" && l.kind == "bridge"), "{all:?}");
            assert!(all.iter().any(|l| l.name == "lo" && l.kind.is_empty()), "{all:?}");

            // The early delete: both ends gone when it returns, whoever answers first.
            let pod_watch = std::thread::scope(|s| {
                s.spawn(|| {
                    nix::sched::setns(&pod, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    (LinkWatch::open().unwrap(), Netlink::open().unwrap())
                })
                .join()
                .unwrap()
            });
            let (pw, pnl2) = pod_watch;
            let nw = LinkWatch::open().unwrap();
            assert!(pnl2.del_link_early(e1.index, &[(&pw, e1.index), (&nw, h.index)]).unwrap());
            assert!(pnl.link_by_name("eth1").unwrap().is_none());
            assert!(nl.link_by_index(h.index).unwrap().is_none());
            // Gone already: the child's ENODEV decides.
            let pnl3 = std::thread::scope(|s| {
                s.spawn(|| {
                    nix::sched::setns(&pod, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    Netlink::open().unwrap()
                })
                .join()
                .unwrap()
            });
            assert!(!pnl3.del_link_early(e1.index, &[(&pw, e1.index)]).unwrap());
        });
    }

    /// The fallback of close_range: in a forked child (this test process's descriptors are
    /// not touched), descriptors below the limit are closed, the kept one stays.
    #[test]
    fn close_fds_closes_all_but_the_kept_one() {
        let keep = File::open("/dev/null").unwrap();
        let other = File::open("/dev/null").unwrap();
        let (k, o) = (keep.as_raw_fd(), other.as_raw_fd());
        let limit = fd_limit();
        assert!(limit > o, "{limit}");
        // SAFETY: the child only makes raw system calls, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            unsafe {
                let dup_above = |fd: i32| libc::fcntl(fd, libc::F_DUPFD, k + 1);
                let open = |fd: i32| libc::fcntl(fd, libc::F_GETFD) >= 0;
                // Without close_range: the loop up to the limit.
                let high = dup_above(k);
                close_fds_loop(3, k - 1, limit);
                close_fds_loop(k + 1, i32::MAX, limit);
                let ok = open(k) && !open(o) && !open(high);
                // With close_range where the kernel has it (else the loop again).
                let high = dup_above(k);
                close_fds(k + 1, i32::MAX, limit);
                let ok2 = open(k) && !open(high);
                libc::_exit(if ok && ok2 { 0 } else { 1 });
            }
        }
        let mut st = 0;
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "status {st}");
    }

    #[test]
    fn early_child_status_codes() {
        assert_eq!(early_child_status(Some(0)), 0);
        assert_eq!(early_child_status(Some(-libc::ENODEV)), libc::ENODEV);
        assert_eq!(early_child_status(None), EARLY_CHILD_IO, "a short answer is not success");
        assert_eq!(early_child_status(Some(i32::MIN)), libc::EPROTO, "no overflow");
        assert_eq!(early_child_status(Some(-4000)), 254);
    }

    #[test]
    fn link_parser_skips_garbage() {
        assert!(parse_link(&[]).is_none());
        assert!(parse_link(&[0u8; 20]).is_none(), "not RTM_NEWLINK");
        // A header and ifinfomsg, then a truncated attribute: the fields read so far survive.
        let mut m = vec![0u8; 32];
        m[4] = RTM_NEWLINK as u8;
        m[16 + 4] = 7; // index
        m[16 + 8] = 1; // IFF_UP
        m.extend_from_slice(&[8, 0, IFLA_IFNAME as u8, 0, b'a', b'b', 0, 0]);
        m.extend_from_slice(&[200, 0, 4, 0]);
        let l = parse_link(&m).unwrap();
        assert_eq!((l.index, l.up, l.name.as_str()), (7, true, "ab"));

        // Short MTU, master and peer attributes (2 bytes, not 4) are skipped, not the link.
        let mut m = vec![0u8; 32];
        m[4] = RTM_NEWLINK as u8;
        m[16 + 4] = 9;
        for k in [IFLA_MTU, IFLA_MASTER, IFLA_LINK] {
            m.extend_from_slice(&[6, 0, k as u8, 0, 1, 2, 0, 0]);
        }
        m.extend_from_slice(&[8, 0, IFLA_IFNAME as u8, 0, b'v', b'0', 0, 0]);
        m.extend_from_slice(&[8, 0, IFLA_MTU as u8, 0]);
        m.extend_from_slice(&1500u32.to_ne_bytes());
        let l = parse_link(&m).expect("the link survives bad attributes");
        assert_eq!((l.index, l.name.as_str(), l.mtu, l.master, l.link), (9, "v0", 1500, None, None));
    }
}
