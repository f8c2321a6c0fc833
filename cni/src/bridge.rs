//! berth-bridge: a Linux bridge on the node, a veth pair per attachment, addressing
//! delegated to the IPAM plugin named in `ipam.type` (options as the reference
//! `bridge` plugin documents them).
//!
//! The plugin runs in the node's netns; the pod's side is reached through a
//! netlink socket opened inside `CNI_NETNS` (see [`crate::netns`]).
//!
//! `vlan` needs bridge VLAN filtering in the kernel (`vlanTrunk` is refused, code 2): where the kernel
//! lacks it (EOPNOTSUPP) ADD fails with a clear error; nothing is faked.
//! `ipMasq` masquerades the pod's addresses through [`crate::nat`] (Berth's table
//! `inet berth-cni`, rules tagged per attachment). `macspoofchk` drops frames from the host veth whose source MAC is not the
//! pod's, in Berth's own nftables table `bridge berth-cni-mac` (rules tagged per
//! attachment as the nat module tags its own, through the `nft` command; the table and
//! its chain stay once made, as nat's do).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::netlink::{mac_to_string, parse_mac, Link, LinkWatch, Netlink, NetlinkError, Route, VethSpec};
use crate::netns::{NetNs, NetnsError};
use crate::skel::Plugin;
use crate::spec::{self, Attachment, CniResult, Command, Env, Error, Interface, NetConf};

/// The plugin (stateless: everything is read from the kernel and the config).
pub struct Bridge;

/// Bridge-specific fields of the network config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    #[serde(default = "default_bridge")]
    pub bridge: String,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub is_gateway: bool,
    #[serde(default)]
    pub is_default_gateway: bool,
    #[serde(default)]
    pub force_address: bool,
    #[serde(default)]
    pub ip_masq: bool,
    #[serde(default)]
    pub hairpin_mode: bool,
    #[serde(default)]
    pub promisc_mode: bool,
    #[serde(default)]
    pub vlan: i64,
    #[serde(default)]
    pub vlan_trunk: Option<Value>,
    /// Keep VLAN 1 (the bridge's default) on a `vlan` port as an egress-untagged member.
    /// The reference defaults to true; we default to false (the port is in its VLAN only:
    /// no untagged VLAN 1 broadcast reaches the pod). Given explicitly, it is honoured.
    #[serde(default)]
    pub preserve_default_vlan: bool,
    #[serde(default)]
    pub macspoofchk: bool,
    /// IPv6 DAD on the pod's interface (off by default, as the reference).
    #[serde(default)]
    pub enabledad: bool,
}

fn default_bridge() -> String {
    "cni0".into()
}

impl BridgeConf {
    pub fn parse(conf: &NetConf) -> Result<BridgeConf, Error> {
        let mut c: BridgeConf = serde_json::from_value(conf.raw.clone())
            .map_err(|e| Error::invalid_config(format!("network {:?}: invalid bridge config: {e}", conf.name)))?;
        if c.bridge.is_empty() {
            c.bridge = default_bridge();
        }
        spec::types::valid_ifname(&c.bridge)
            .map_err(|why| Error::invalid_config(format!("network {:?}: invalid bridge name {:?}: {why}", conf.name, c.bridge)))?;
        if !(0..=4094).contains(&c.vlan) {
            return Err(Error::invalid_config(format!("network {:?}: invalid vlan {} (0..4094)", conf.name, c.vlan)));
        }
        if let Some(m) = c.mtu {
            if !(68..=65535).contains(&m) {
                return Err(Error::invalid_config(format!("network {:?}: invalid mtu {m}", conf.name)));
            }
        }
        if c.vlan_trunk.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(Error::new(spec::code::UNSUPPORTED_FIELD, format!("network {:?}: vlanTrunk is not supported by berth-bridge", conf.name)));
        }
        // isDefaultGateway implies isGateway (reference behaviour).
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        if let Some(gw) = c.vlan_gateway_name() {
            spec::types::valid_ifname(&gw).map_err(|why| {
                Error::invalid_config(format!(
                    "network {:?}: vlan {} with isGateway needs an interface {gw:?} for the gateway address: {why} (use a shorter bridge name)",
                    conf.name, c.vlan
                ))
            })?;
        }
        Ok(c)
    }

    fn wants_vlan(&self) -> bool {
        self.vlan != 0
    }

    /// With `vlan` and `isGateway`, the gateway address is not on the bridge (whose own
    /// port is in VLAN 1, so pods of the VLAN could not reach it) but on `<bridge>.<vlan>`,
    /// one end of a veth pair whose other end is a port of the bridge in that VLAN: the
    /// reference plugin's layout (`ensureVlanInterface`).
    fn vlan_gateway_name(&self) -> Option<String> {
        (self.is_gateway && self.wants_vlan()).then(|| format!("{}.{}", self.bridge, self.vlan))
    }
}

fn nl(e: NetlinkError) -> Error {
    Error::internal(e.to_string())
}

/// A netns that cannot be opened means CNI_NETNS is wrong: code 4 naming the path.
fn ns_err(e: NetnsError) -> Error {
    match e {
        NetnsError::NotFound { .. } | NetnsError::NotNetns { .. } | NetnsError::Open { .. } => {
            Error::invalid_env(format!("invalid CNI_NETNS: {e}"))
        }
        other => Error::internal(other.to_string()),
    }
}

/// The MAC asked for: CNI_ARGS `MAC=`, then `args.cni.mac`, then `runtimeConfig.mac` (last wins).
fn requested_mac(env: &Env, conf: &NetConf) -> Result<Option<[u8; 6]>, Error> {
    let mut s = env.arg("MAC").map(str::to_string);
    if let Some(m) = conf.args.pointer("/cni/mac").and_then(Value::as_str) {
        s = Some(m.to_string());
    }
    if let Some(m) = conf.runtime_config.get("mac").and_then(Value::as_str) {
        s = Some(m.to_string());
    }
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(m) => {
            let mac = parse_mac(&m).ok_or_else(|| Error::invalid_config(format!("invalid mac {m:?}")))?;
            if mac[0] & 1 == 1 {
                return Err(Error::invalid_config(format!("invalid mac {m:?}: a multicast address")));
            }
            Ok(Some(mac))
        }
    }
}

fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    // A fresh name per try; uniqueness is checked by the kernel (EEXIST → retry).
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// First host address of a subnet (the default gateway, as the reference computes it).
fn first_host(net: &IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => IpAddr::V4((u32::from(n.network()) + 1).into()),
        IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + 1).into()),
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A vlan gateway pair this ADD created.
struct VlanGatewayUndo {
    /// Its bridge-side end (a random name: only this ADD uses it).
    port_name: String,
    /// Its `<bridge>.<vlan>` end, once looked up.
    gw_index: Option<u32>,
    /// Fully set up (port in the VLAN, both ends up); addresses come later.
    complete: bool,
}

/// What ADD has done so far, to undo on failure.
#[derive(Default)]
struct Undo {
    ipam: bool,
    bridge_created: Option<u32>,
    host_veth: Option<u32>,
    /// The vlan gateway veth, when this ADD created it.
    vlan_gateway: Option<VlanGatewayUndo>,
    masq: bool,
    macspoof: bool,
}

impl Plugin for Bridge {
    fn name(&self) -> &'static str {
        "berth-bridge"
    }

    fn add(&self, env: &Env, conf: &NetConf) -> Result<CniResult, Error> {
        let c = BridgeConf::parse(conf)?;
        let mac = requested_mac(env, conf)?;
        conf.ipam_type()?;
        let netns_path = env.netns.as_ref().ok_or_else(|| Error::invalid_env("CNI_NETNS missing for ADD"))?;
        let pod_ns = NetNs::open(netns_path).map_err(ns_err)?;
        let mut pod_nl = pod_ns.run(Netlink::open).map_err(ns_err)?.map_err(nl)?;
        if pod_nl.link_by_name(&env.ifname).map_err(nl)?.is_some() {
            return Err(Error::internal(format!(
                "interface {} already exists in netns {}",
                env.ifname,
                netns_path.display()
            )));
        }
        let mut node_nl = Netlink::open().map_err(nl)?;
        let mut undo = Undo::default();
        let res = add_inner(env, conf, &c, mac, &pod_ns, &mut pod_nl, &mut node_nl, &mut undo);
        if res.is_err() {
            rollback(env, conf, &c, &mut node_nl, &undo);
        }
        res
    }

    fn del(&self, env: &Env, conf: &NetConf) -> Result<(), Error> {
        let c = BridgeConf::parse(conf)?;
        if conf.ipam.is_some() {
            crate::invoke::delegate(conf, Command::Del)?;
        }
        // The pod side; the host end goes with it. A netns that is gone took the pair along.
        if let Some(p) = &env.netns {
            match NetNs::open(p) {
                Ok(ns) => {
                    // Without a watch (it could not be opened) the delete is synchronous.
                    let (pnl, pod_watch) = ns.run(|| (Netlink::open(), LinkWatch::open().ok())).map_err(ns_err)?;
                    let mut pnl = pnl.map_err(nl)?;
                    if let Some(l) = pnl.link_by_name(&env.ifname).map_err(nl)? {
                        if l.kind == "veth" {
                            del_veth(pnl, &l, pod_watch.as_ref())?;
                        }
                    }
                }
                Err(NetnsError::NotFound { .. }) | Err(NetnsError::NotNetns { .. }) => {}
                Err(e) => return Err(ns_err(e)),
            }
        }
        if c.ip_masq {
            masq_del(&conf.name, &env.container_id, &env.ifname)?;
        }
        // DEL gets the config ADD got, so rules exist only where it asks for them.
        if c.macspoofchk {
            macspoof_del(&tag(&conf.name, &env.container_id, &env.ifname))?;
        }
        Ok(())
    }

    fn check(&self, env: &Env, conf: &NetConf) -> Result<(), Error> {
        let c = BridgeConf::parse(conf)?;
        let prev = conf
            .prev_result
            .as_ref()
            .ok_or_else(|| Error::invalid_config(format!("network {:?}: CHECK needs a prevResult", conf.name)))?;
        if conf.ipam.is_some() {
            crate::invoke::delegate(conf, Command::Check)?;
        }
        let netns_path = env.netns.as_ref().ok_or_else(|| Error::invalid_env("CNI_NETNS missing for CHECK"))?;
        let ns = NetNs::open(netns_path).map_err(ns_err)?;
        let mut pnl = ns.run(Netlink::open).map_err(ns_err)?.map_err(nl)?;
        let sandbox = netns_path.display().to_string();
        let (idx, iface) = prev
            .interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == env.ifname && i.sandbox == sandbox)
            .ok_or_else(|| Error::internal(format!("prevResult has no interface {} in sandbox {sandbox}", env.ifname)))?;
        let link = pnl
            .link_by_name(&env.ifname)
            .map_err(nl)?
            .ok_or_else(|| Error::internal(format!("interface {} is missing from netns {sandbox}", env.ifname)))?;
        if link.kind != "veth" {
            return Err(Error::internal(format!("interface {} in {sandbox} is a {:?}, not a veth", env.ifname, link.kind)));
        }
        if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&link.mac_string()) {
            return Err(Error::internal(format!(
                "interface {} has MAC {}, prevResult says {}",
                env.ifname,
                link.mac_string(),
                iface.mac
            )));
        }
        let have: Vec<IpNet> = pnl.addrs(Some(link.index)).map_err(nl)?.into_iter().map(|(_, a)| a).collect();
        for ip in prev.ips.iter().filter(|ip| ip.interface == Some(idx)) {
            if !have.contains(&ip.address) {
                return Err(Error::internal(format!("address {} is missing from {} in {sandbox}", ip.address, env.ifname)));
            }
        }
        if c.ip_masq {
            let mine: Vec<IpNet> = prev.ips.iter().filter(|ip| ip.interface == Some(idx)).map(|ip| ip.address).collect();
            crate::nat::masquerade_check(&conf.name, &env.container_id, &env.ifname, &mine)?;
        }
        let routes = pnl.routes().map_err(nl)?;
        for r in &prev.routes {
            let found = routes.iter().any(|x| x.dst == r.dst && r.gw.map_or(true, |g| x.gw == Some(g)));
            if !found {
                let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
                return Err(Error::internal(format!("route {}{via} is missing in {sandbox}", r.dst)));
            }
        }
        // Host side: the bridge, and a veth of this result attached to it.
        let mut node = Netlink::open().map_err(nl)?;
        let br = node
            .link_by_name(&c.bridge)
            .map_err(nl)?
            .ok_or_else(|| Error::internal(format!("bridge {} is missing", c.bridge)))?;
        if let Some(peer) = link.link {
            let host = node.link_by_index(peer).map_err(nl)?;
            match host {
                Some(h) if h.master == Some(br.index) => {}
                _ => return Err(Error::internal(format!("the host end of {} is not a port of bridge {}", env.ifname, c.bridge))),
            }
        }
        Ok(())
    }

    fn status(&self, conf: &NetConf) -> Result<(), Error> {
        BridgeConf::parse(conf)?;
        if conf.ipam.is_some() {
            crate::invoke::delegate(conf, Command::Status)?;
        }
        Ok(())
    }

    fn gc(&self, conf: &NetConf, valid: &[Attachment]) -> Result<(), Error> {
        let c = BridgeConf::parse(conf)?;
        if conf.ipam.is_some() {
            crate::invoke::delegate(conf, Command::Gc)?;
        }
        if c.ip_masq {
            masq_gc(&conf.name, valid)?;
        }
        if c.macspoofchk {
            let keep: Vec<String> = valid.iter().map(|a| tag(&conf.name, &a.container_id, &a.ifname)).collect();
            macspoof_gc(&conf.name, &keep)?;
        }
        Ok(())
    }
}

/// Deletes the pod's end `pod` of a veth pair (the host end goes with it) and returns as
/// soon as the kernel reports both ends unregistered, without waiting out its RCU barrier
/// (see [`Netlink::del_link_early`]; that wait was ~18 of a ~25 ms DEL). The host end is
/// watched for only when it is where ADD puts it: this (the node's) netns, a veth whose
/// peer is `pod`. When a watch cannot be opened or the host end cannot be looked up, the
/// delete is synchronous (slower, never skipped).
fn del_veth(mut pnl: Netlink, pod: &Link, pod_watch: Option<&LinkWatch>) -> Result<(), Error> {
    let early = pod_watch.and_then(|pw| {
        let mut node = Netlink::open().ok()?;
        let host = match pod.link {
            Some(i) => node.link_by_index(i).ok()?.filter(|h| h.kind == "veth" && h.link == Some(pod.index)),
            None => None,
        };
        let node_watch = LinkWatch::open().ok()?;
        Some((pw, host, node_watch))
    });
    let Some((pod_watch, host, node_watch)) = early else {
        pnl.del_link(pod.index).map_err(nl)?;
        return Ok(());
    };
    let mut watches = vec![(pod_watch, pod.index)];
    if let Some(h) = &host {
        watches.push((&node_watch, h.index));
    }
    pnl.del_link_early(pod.index, &watches).map_err(nl)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn add_inner(
    env: &Env,
    conf: &NetConf,
    c: &BridgeConf,
    mac: Option<[u8; 6]>,
    pod_ns: &NetNs,
    pod_nl: &mut Netlink,
    node_nl: &mut Netlink,
    undo: &mut Undo,
) -> Result<CniResult, Error> {
    let mut result = crate::invoke::delegate(conf, Command::Add)?
        .ok_or_else(|| Error::internal("IPAM plugin returned no result"))?;
    undo.ipam = true;
    if result.ips.is_empty() {
        return Err(Error::internal(format!("IPAM plugin {:?} returned no IP addresses", conf.ipam_type()?)));
    }

    // A pod subnet that overlaps an address the node already has elsewhere would break routing.
    let node_addrs = node_nl.addrs(None).map_err(nl)?;
    let existing_bridge = node_nl.link_by_name(&c.bridge).map_err(nl)?;
    let bridge_idx = existing_bridge.as_ref().map(|l| l.index);
    let vlan_gw_name = c.vlan_gateway_name();
    let existing_vlan_gw = match &vlan_gw_name {
        Some(n) => node_nl.link_by_name(n).map_err(nl)?,
        None => None,
    };
    let vlan_gw_idx = existing_vlan_gw.as_ref().map(|l| l.index);
    for ip in &result.ips {
        let net = ip.address.trunc();
        for (ifx, a) in &node_addrs {
            let ours = Some(*ifx) == bridge_idx || Some(*ifx) == vlan_gw_idx;
            if ours || a.addr().is_loopback() && !net.contains(&a.addr()) {
                continue;
            }
            if overlaps(&net, &a.trunc()) {
                let dev = node_nl.link_by_index(*ifx).ok().flatten().map(|l| l.name).unwrap_or_else(|| format!("#{ifx}"));
                return Err(Error::invalid_config(format!(
                    "network {:?}: subnet {net} overlaps the node's address {a} on {dev}",
                    conf.name
                )));
            }
        }
    }

    // Gateways: from IPAM, else the subnet's first address (isGateway).
    if c.is_gateway {
        for ip in &mut result.ips {
            if ip.gateway.is_none() {
                ip.gateway = Some(first_host(&ip.address.trunc()));
            }
        }
    }
    if c.is_default_gateway {
        for ip in result.ips.clone() {
            let dst: IpNet = if ip.address.addr().is_ipv4() { "0.0.0.0/0".parse().unwrap() } else { "::/0".parse().unwrap() };
            if !result.routes.iter().any(|r| r.dst == dst) {
                result.routes.push(spec::Route::new(dst, ip.gateway));
            }
        }
    }

    let br = ensure_bridge(node_nl, c, existing_bridge, undo)?;

    // The veth pair: host end here, created as a port of the bridge and up (one request)
    // unless its VLAN must be set first; pod end created directly in the pod's netns.
    let has_v6 = result.ips.iter().any(|i| i.address.addr().is_ipv6());
    let host_up_now = !c.wants_vlan();
    let mut host_name = random_veth_name();
    let mut tries = 0;
    loop {
        let spec = VethSpec {
            host_name: &host_name,
            peer_name: &env.ifname,
            peer_netns_fd: pod_ns.raw_fd(),
            mtu: c.mtu,
            peer_mac: mac,
            master: Some(br.index),
            up: host_up_now,
        };
        match node_nl.add_veth(&spec) {
            Ok(()) => break,
            Err(e) if e.errno() == Some(libc::EEXIST) && tries < 5 => {
                // Only the host name is random; the pod name was checked free above.
                if pod_nl.link_by_name(&env.ifname).map_err(nl)?.is_some() {
                    return Err(Error::internal(format!("interface {} already exists in netns {}", env.ifname, pod_ns.path().display())));
                }
                tries += 1;
                host_name = random_veth_name();
            }
            Err(e) => return Err(nl(e)),
        }
    }
    let host = node_nl
        .link_by_name(&host_name)
        .map_err(nl)?
        .ok_or_else(|| Error::internal(format!("veth {host_name} vanished after creation")))?;
    undo.host_veth = Some(host.index);
    if c.hairpin_mode {
        node_nl.set_hairpin(host.index, true).map_err(nl)?;
    }
    if c.wants_vlan() {
        set_port_vlan(node_nl, host.index, c.vlan as u16, c.preserve_default_vlan, &host_name)?;
    }
    if !host_up_now {
        node_nl.set_up(host.index, true).map_err(nl)?;
    }

    // Pod side: DAD off (the address is ours alone), addresses, up, routes.
    let pod = pod_nl
        .link_by_name(&env.ifname)
        .map_err(nl)?
        .ok_or_else(|| Error::internal(format!("{} vanished from netns {}", env.ifname, pod_ns.path().display())))?;
    if has_v6 && !c.enabledad {
        let key = format!("net/ipv6/conf/{}/accept_dad", env.ifname);
        pod_ns
            .run(|| crate::netns::sysctl_set(&key, "0"))
            .map_err(ns_err)?
            .map_err(|e| Error::io(format!("sysctl {key} in {}", pod_ns.path().display()), e))?;
    }
    for ip in &result.ips {
        pod_nl.add_addr(pod.index, &ip.address).map_err(nl)?;
    }
    pod_nl.set_up(pod.index, true).map_err(nl)?;
    for r in &result.routes {
        let fam_gw = result.ips.iter().find(|i| i.address.addr().is_ipv4() == r.dst.addr().is_ipv4()).and_then(|i| i.gateway);
        let route = Route { dst: r.dst.trunc(), gw: r.gw.or(fam_gw), oif: Some(pod.index) };
        pod_nl.add_route(&route).map_err(nl)?;
    }

    // Node side: gateway addresses on the bridge, forwarding on. The bridge's addresses
    // are those of the dump above (none if it was just created); a concurrent ADD adding
    // the same gateway meanwhile is EEXIST, which is fine.
    let bridge_addrs: Vec<IpNet> =
        node_addrs.iter().filter(|(i, _)| bridge_idx == Some(*i)).map(|(_, a)| *a).collect();
    let mut vlan_gw: Option<Link> = None;
    if c.is_gateway {
        // With a vlan, the addresses go on `<bridge>.<vlan>` (see vlan_gateway_name).
        let (gw_idx, gw_name, gw_addrs) = match &vlan_gw_name {
            Some(name) => {
                let l = ensure_vlan_gateway(node_nl, c, name, br.index, existing_vlan_gw, undo)?;
                let addrs: Vec<IpNet> = node_addrs.iter().filter(|(i, _)| *i == l.index).map(|(_, a)| *a).collect();
                let r = (l.index, l.name.clone(), addrs);
                vlan_gw = Some(l);
                r
            }
            None => (br.index, c.bridge.clone(), bridge_addrs),
        };
        for ip in &result.ips {
            if let Some(gw) = ip.gateway {
                let gw_net = IpNet::new(gw, ip.address.prefix_len()).map_err(|e| Error::internal(e.to_string()))?;
                ensure_gateway_addr(node_nl, c, gw_idx, &gw_name, &gw_addrs, &gw_net, &conf.name)?;
            }
        }
        let v4 = result.ips.iter().any(|i| i.address.addr().is_ipv4());
        if v4 {
            crate::netns::sysctl_set("net/ipv4/ip_forward", "1").map_err(|e| Error::io("sysctl net/ipv4/ip_forward", e))?;
        }
        if has_v6 {
            crate::netns::sysctl_set("net/ipv6/conf/all/forwarding", "1")
                .map_err(|e| Error::io("sysctl net/ipv6/conf/all/forwarding", e))?;
        }
    }

    let pod_mac = pod.mac.clone();
    if c.ip_masq {
        undo.masq = true;
        let nets: Vec<IpNet> = result.ips.iter().map(|i| i.address).collect();
        masq_add(&conf.name, &env.container_id, &env.ifname, &nets)?;
    }
    if c.macspoofchk {
        undo.macspoof = true;
        macspoof_add(&host_name, &pod_mac, &tag(&conf.name, &env.container_id, &env.ifname))?;
    }

    // The bridge's MAC may have changed when its first port joined: read it again.
    let br_now = node_nl.link_by_index(br.index).map_err(nl)?.unwrap_or(br);
    result.interfaces = vec![
        Interface { name: br_now.name.clone(), mac: br_now.mac_string(), ..Default::default() },
        Interface { name: host.name.clone(), mac: host.mac_string(), ..Default::default() },
        Interface {
            name: env.ifname.clone(),
            mac: mac_to_string(&pod_mac),
            mtu: Some(pod.mtu),
            sandbox: pod_ns.path().display().to_string(),
            ..Default::default()
        },
    ];
    // As the reference: the vlan gateway interface after the pod's (ips stay on 2).
    if let Some(g) = vlan_gw {
        result.interfaces.push(Interface { name: g.name.clone(), mac: g.mac_string(), ..Default::default() });
    }
    for ip in &mut result.ips {
        ip.interface = Some(2);
    }
    Ok(result)
}

/// Finds or creates the bridge, sets MTU/promisc/VLAN filtering, brings it up.
/// `existing` is what a lookup by name just found.
fn ensure_bridge(nl_: &mut Netlink, c: &BridgeConf, existing: Option<Link>, undo: &mut Undo) -> Result<Link, Error> {
    let br = match existing {
        Some(l) if l.kind != "bridge" => {
            return Err(Error::invalid_config(format!("{} already exists and is a {:?}, not a bridge", c.bridge, l.kind)))
        }
        Some(l) => {
            if c.wants_vlan() {
                enable_vlan_filtering(nl_, &c.bridge, l.index)?;
            }
            l
        }
        None => {
            let created = match nl_.add_bridge(&c.bridge, c.mtu, false) {
                Ok(()) => true,
                // A concurrent ADD created it first: use it.
                Err(e) if e.errno() == Some(libc::EEXIST) => false,
                Err(e) => return Err(nl(e)),
            };
            let l = nl_
                .link_by_name(&c.bridge)
                .map_err(nl)?
                .ok_or_else(|| Error::internal(format!("bridge {} vanished after creation", c.bridge)))?;
            if created {
                undo.bridge_created = Some(l.index);
            }
            if l.kind != "bridge" {
                return Err(Error::invalid_config(format!("{} already exists and is a {:?}, not a bridge", c.bridge, l.kind)));
            }
            if c.wants_vlan() {
                enable_vlan_filtering(nl_, &c.bridge, l.index)?;
            }
            l
        }
    };
    let mut changed = false;
    if let Some(mtu) = c.mtu {
        if br.mtu != mtu {
            nl_.set_mtu(br.index, mtu).map_err(nl)?;
            changed = true;
        }
    }
    if c.promisc_mode && !br.promisc {
        nl_.set_promisc(br.index, true).map_err(nl)?;
        changed = true;
    }
    if !br.up {
        nl_.set_up(br.index, true).map_err(nl)?;
        changed = true;
    }
    if !changed {
        return Ok(br);
    }
    Ok(nl_.link_by_index(br.index).map_err(nl)?.unwrap_or(br))
}

fn enable_vlan_filtering(nl_: &mut Netlink, name: &str, index: u32) -> Result<(), Error> {
    match nl_.set_bridge_vlan_filtering(index, true) {
        Ok(()) => Ok(()),
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => Err(Error::internal(format!(
            "vlan: bridge {name} cannot filter VLANs: this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
        ))),
        Err(e) => Err(nl(e)),
    }
}

fn set_port_vlan(nl_: &mut Netlink, index: u32, vid: u16, keep_default: bool, name: &str) -> Result<(), Error> {
    nl_.set_port_pvid(index, vid, keep_default).map_err(|e| Error::internal(format!("vlan {vid} on {name}: {e}")))
}

/// What an existing vlan gateway `<bridge>.<vlan>` needs before it is usable: a
/// gateway left half-made (a failed or killed ADD, or changed by hand) is repaired, not
/// reused as found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GatewayPlan {
    /// Its bridge-side peer is missing (or not a veth of this netns linked back to it):
    /// delete the gateway and create it again.
    Recreate,
    /// Usable after these fixes. The VLAN (PVID, untagged) is always re-applied: the
    /// request is idempotent and cheaper than reading the port's VLAN table first.
    Repair { set_master: bool, port_up: bool, gw_up: bool },
}

/// Decides [`GatewayPlan`] for gateway `gw` whose peer lookup (by `gw.link`) found `port`.
fn plan_gateway(br: u32, gw: &Link, port: Option<&Link>) -> GatewayPlan {
    match port {
        Some(p) if p.kind == "veth" && p.link == Some(gw.index) && p.index != br => {
            GatewayPlan::Repair { set_master: p.master != Some(br), port_up: !p.up, gw_up: !gw.up }
        }
        _ => GatewayPlan::Recreate,
    }
}

/// Finds, repairs or creates the vlan gateway `name` (`<bridge>.<vlan>`): a veth pair in
/// the node's netns, one end `name` (up, for the gateway addresses), the other a port of
/// the bridge whose untagged PVID is the vlan, as a pod's port is. It stays after DEL,
/// as the bridge does (the reference's behaviour). `existing` is what a lookup by name
/// found. One this ADD creates is recorded in `undo` as soon as the kernel made it, and
/// marked complete only once set up, so a failure in between removes it (rollback).
fn ensure_vlan_gateway(
    nl_: &mut Netlink,
    c: &BridgeConf,
    name: &str,
    br: u32,
    existing: Option<Link>,
    undo: &mut Undo,
) -> Result<Link, Error> {
    let mut existing = existing;
    for _ in 0..3 {
        if let Some(l) = existing.take() {
            if l.kind != "veth" {
                return Err(Error::invalid_config(format!("{name} already exists and is a {:?}, not the vlan gateway veth", l.kind)));
            }
            let port = match l.link {
                Some(p) => nl_.link_by_index(p).map_err(nl)?,
                None => None,
            };
            match plan_gateway(br, &l, port.as_ref()) {
                GatewayPlan::Repair { set_master, port_up, gw_up } => {
                    let port = port.expect("Repair has a port");
                    if set_master {
                        nl_.set_master(port.index, br).map_err(nl)?;
                    }
                    set_port_vlan(nl_, port.index, c.vlan as u16, c.preserve_default_vlan, &port.name)?;
                    if port_up {
                        nl_.set_up(port.index, true).map_err(nl)?;
                    }
                    if gw_up {
                        nl_.set_up(l.index, true).map_err(nl)?;
                    }
                    return Ok(if set_master || port_up || gw_up { nl_.link_by_index(l.index).map_err(nl)?.unwrap_or(l) } else { l });
                }
                GatewayPlan::Recreate => {
                    nl_.del_link(l.index).map_err(nl)?;
                }
            }
        }
        match create_vlan_gateway(nl_, c, name, br, undo)? {
            Some(gw) => return Ok(gw),
            // A concurrent ADD made it first: check and use it.
            None => existing = nl_.link_by_name(name).map_err(nl)?,
        }
    }
    Err(Error::internal(format!("vlan gateway {name}: could not create or repair it (it keeps changing)")))
}

/// Creates the vlan gateway pair; None when `name` exists already (EEXIST).
fn create_vlan_gateway(nl_: &mut Netlink, c: &BridgeConf, name: &str, br: u32, undo: &mut Undo) -> Result<Option<Link>, Error> {
    // The calling thread's netns (/proc/self names the main thread's, which may differ).
    let here = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| Error::io("open /proc/thread-self/ns/net", e))?;
    let mut port_name = random_veth_name();
    let mut tries = 0;
    loop {
        let spec = VethSpec {
            host_name: &port_name,
            peer_name: name,
            peer_netns_fd: std::os::fd::AsRawFd::as_raw_fd(&here),
            mtu: c.mtu,
            peer_mac: None,
            master: Some(br),
            up: false,
        };
        match nl_.add_veth(&spec) {
            Ok(()) => break,
            Err(e) if e.errno() == Some(libc::EEXIST) => {
                if nl_.link_by_name(name).map_err(nl)?.is_some() {
                    return Ok(None);
                }
                if tries >= 5 {
                    return Err(nl(e));
                }
                tries += 1;
                port_name = random_veth_name();
            }
            Err(e) => return Err(nl(e)),
        }
    }
    // Recorded before anything else can fail: the random port name is ours alone.
    undo.vlan_gateway = Some(VlanGatewayUndo { port_name: port_name.clone(), gw_index: None, complete: false });
    let gw = nl_
        .link_by_name(name)
        .map_err(nl)?
        .ok_or_else(|| Error::internal(format!("veth {name} vanished after creation")))?;
    if let Some(u) = &mut undo.vlan_gateway {
        u.gw_index = Some(gw.index);
    }
    let port = gw.link.ok_or_else(|| Error::internal(format!("veth {name} has no peer")))?;
    set_port_vlan(nl_, port, c.vlan as u16, c.preserve_default_vlan, &port_name)?;
    nl_.set_up(port, true).map_err(nl)?;
    nl_.set_up(gw.index, true).map_err(nl)?;
    let gw = nl_.link_by_index(gw.index).map_err(nl)?.unwrap_or(gw);
    if let Some(u) = &mut undo.vlan_gateway {
        u.complete = true;
    }
    Ok(Some(gw))
}

/// Puts `gw` on the bridge, whose addresses are `have`. Another address of the same
/// subnet is an error unless `forceAddress`, which replaces it.
fn ensure_gateway_addr(nl_: &mut Netlink, c: &BridgeConf, br: u32, br_name: &str, have: &[IpNet], gw: &IpNet, network: &str) -> Result<(), Error> {
    for a in have {
        if a == gw {
            return Ok(());
        }
        if a.addr().is_ipv4() == gw.addr().is_ipv4() && overlaps(&a.trunc(), &gw.trunc()) && !a.addr().is_unicast_link_local_compat() {
            if !c.force_address {
                return Err(Error::invalid_config(format!(
                    "network {network:?}: {br_name} already has address {a}, not {gw} (set forceAddress to replace it)"
                )));
            }
            nl_.del_addr(br, a).map_err(nl)?;
        }
    }
    match nl_.add_addr(br, gw) {
        Ok(()) => Ok(()),
        // A concurrent ADD put the same address there.
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(nl(e)),
    }
}

trait LinkLocal {
    fn is_unicast_link_local_compat(&self) -> bool;
}

impl LinkLocal for IpAddr {
    fn is_unicast_link_local_compat(&self) -> bool {
        match self {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
        }
    }
}

fn rollback(env: &Env, conf: &NetConf, c: &BridgeConf, node_nl: &mut Netlink, undo: &Undo) {
    // Best effort: the original error is what the caller sees.
    if undo.macspoof {
        let _ = macspoof_del(&tag(&conf.name, &env.container_id, &env.ifname));
    }
    if undo.masq {
        let _ = masq_del(&conf.name, &env.container_id, &env.ifname);
    }
    if let Some(i) = undo.host_veth {
        let _ = node_nl.del_link(i);
    }
    match &undo.vlan_gateway {
        // Half set up: nobody can rely on it; remove it (by its port's name, which only
        // this ADD knows) so that no later ADD finds a broken gateway.
        Some(u) if !u.complete => {
            let _ = node_nl.del_link_by_name(&u.port_name);
        }
        // Complete: the gateway this ADD made, unless another pod's port joined the bridge meanwhile.
        Some(VlanGatewayUndo { gw_index: Some(g), .. }) => {
            let g = *g;
            let port = node_nl.link_by_index(g).ok().flatten().and_then(|l| l.link);
            let others = match (undo.bridge_created.or_else(|| undo_bridge_index(node_nl, c)), port) {
                (Some(b), Some(p)) => node_nl.links().map(|ls| ls.iter().any(|l| l.master == Some(b) && l.index != p)).unwrap_or(true),
                _ => true,
            };
            if !others {
                let _ = node_nl.del_link(g);
            }
        }
        _ => {}
    }
    if let Some(b) = undo.bridge_created {
        // Only if no other attachment joined it meanwhile.
        let ports = node_nl.links().map(|ls| ls.iter().any(|l| l.master == Some(b))).unwrap_or(true);
        if !ports {
            let _ = node_nl.del_link(b);
        }
    }
    if undo.ipam {
        let _ = crate::invoke::delegate(conf, Command::Del);
    }
    let _ = c;
}

fn undo_bridge_index(node_nl: &mut Netlink, c: &BridgeConf) -> Option<u32> {
    node_nl.link_by_name(&c.bridge).ok().flatten().map(|l| l.index)
}

/// The tag of one attachment's rules (the nat module's, so every Berth rule reads alike).
fn tag(network: &str, container_id: &str, ifname: &str) -> String {
    crate::nat::Tag::new(network, container_id, ifname).to_string()
}

// ---- ipMasq: rules of the nat module (table inet berth-cni, chain masquerade) ----

fn masq_add(network: &str, container_id: &str, ifname: &str, ips: &[IpNet]) -> Result<(), Error> {
    crate::nat::masquerade_add(network, container_id, ifname, ips)
}

fn masq_del(network: &str, container_id: &str, ifname: &str) -> Result<(), Error> {
    crate::nat::masquerade_del(network, container_id, ifname)
}

fn masq_gc(network: &str, valid: &[Attachment]) -> Result<(), Error> {
    crate::nat::masquerade_gc(network, valid)
}

// ---- macspoofchk: nftables, table `bridge berth-cni-mac` ----

const MAC_TABLE: &str = "berth-cni-mac";

fn nft(script: &str) -> Result<String, Error> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::internal(format!("cannot run nft: {e}")))?;
    child.stdin.take().expect("piped").write_all(script.as_bytes()).map_err(|e| Error::io("nft stdin", e))?;
    let out = child.wait_with_output().map_err(|e| Error::internal(format!("nft: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!("nft failed: {}", String::from_utf8_lossy(&out.stderr).trim())).details(script.to_string()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Rules of our chain: (handle, comment). Empty when the table does not exist.
fn macspoof_rules() -> Result<Vec<(u64, String)>, Error> {
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "chain", "bridge", MAC_TABLE, "prerouting"])
        .output()
        .map_err(|e| Error::internal(format!("cannot run nft: {e}")))?;
    if !out.status.success() {
        return Ok(vec![]); // no table / chain: nothing of ours
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::internal(format!("nft -j output: {e}")))?;
    Ok(v["nftables"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| {
                    let r = o.get("rule")?;
                    Some((r["handle"].as_u64()?, r["comment"].as_str().unwrap_or("").to_string()))
                })
                .collect()
        })
        .unwrap_or_default())
}

fn macspoof_add(host_veth: &str, mac: &[u8], tag: &str) -> Result<(), Error> {
    let mac = mac_to_string(mac);
    nft(&format!(
        "add table bridge {MAC_TABLE}\n\
         add chain bridge {MAC_TABLE} prerouting {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add rule bridge {MAC_TABLE} prerouting iifname \"{host_veth}\" ether saddr != {mac} drop comment \"{tag}\"\n"
    ))
    .map(|_| ())
}

/// Deletes our rules whose tag satisfies `pred`, by handle, in one transaction. The
/// table and chain stay: deleting them could race with a concurrent ADD and drop its
/// rule. A transaction that loses a race with another delete (a handle already gone)
/// fails whole and is retried on a fresh listing.
fn macspoof_del_where(pred: impl Fn(&str) -> bool) -> Result<(), Error> {
    let mut last = None;
    for _ in 0..5 {
        let rules = macspoof_rules()?;
        let mine: Vec<u64> = rules.iter().filter(|(_, c)| pred(c)).map(|(h, _)| *h).collect();
        if mine.is_empty() {
            return Ok(());
        }
        let script: String =
            mine.iter().map(|h| format!("delete rule bridge {MAC_TABLE} prerouting handle {h}\n")).collect();
        match nft(&script) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

fn macspoof_del(tag: &str) -> Result<(), Error> {
    macspoof_del_where(|c| c == tag)
}

fn macspoof_gc(network: &str, keep: &[String]) -> Result<(), Error> {
    let prefix = format!("berth:{network}:");
    macspoof_del_where(|c| c.starts_with(&prefix) && !keep.iter().any(|k| k == c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::code;

    fn conf(extra: Value) -> NetConf {
        let mut v = serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "berth-bridge"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn config_defaults_and_checks() {
        let c = BridgeConf::parse(&conf(serde_json::json!({}))).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(!c.is_gateway);
        let c = BridgeConf::parse(&conf(serde_json::json!({"isDefaultGateway": true}))).unwrap();
        assert!(c.is_gateway, "isDefaultGateway implies isGateway");
        for bad in [serde_json::json!({"vlan": 5000}), serde_json::json!({"bridge": "a-very-long-bridge-name"}), serde_json::json!({"mtu": 10}), serde_json::json!({"isGateway": "yes"})] {
            let e = BridgeConf::parse(&conf(bad.clone())).unwrap_err();
            assert_eq!(e.code, code::INVALID_CONFIG, "{bad}: {e}");
        }
        let e = BridgeConf::parse(&conf(serde_json::json!({"vlanTrunk": [{"id": 5}]}))).unwrap_err();
        assert_eq!(e.code, code::UNSUPPORTED_FIELD, "{e}");
    }

    #[test]
    fn vlan_gateway_interface_and_default_vlan() {
        let c = BridgeConf::parse(&conf(serde_json::json!({"vlan": 10}))).unwrap();
        assert_eq!(c.vlan_gateway_name(), None, "no gateway, no gateway interface");
        assert!(!c.preserve_default_vlan, "VLAN 1 is dropped from vlan ports unless asked");
        let c = BridgeConf::parse(&conf(serde_json::json!({"vlan": 10, "isDefaultGateway": true, "preserveDefaultVlan": true}))).unwrap();
        assert_eq!(c.vlan_gateway_name().as_deref(), Some("cni0.10"));
        assert!(c.preserve_default_vlan);
        assert_eq!(BridgeConf::parse(&conf(serde_json::json!({"isGateway": true}))).unwrap().vlan_gateway_name(), None);
        // "<bridge>.<vlan>" must be a valid interface name (at most 15 bytes).
        let ok = BridgeConf::parse(&conf(serde_json::json!({"bridge": "br-0123456", "vlan": 4094, "isGateway": true}))).unwrap();
        assert_eq!(ok.vlan_gateway_name().as_deref(), Some("br-0123456.4094"));
        let e = BridgeConf::parse(&conf(serde_json::json!({"bridge": "br-01234567", "vlan": 4094, "isGateway": true}))).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG, "{e}");
        assert!(e.msg.contains("br-01234567.4094"), "{e}");
        BridgeConf::parse(&conf(serde_json::json!({"bridge": "br-01234567", "vlan": 4094}))).unwrap();
    }

    fn link(index: u32, kind: &str, up: bool, master: Option<u32>, peer: Option<u32>) -> Link {
        Link { index, kind: kind.into(), up, master, link: peer, ..Default::default() }
    }

    #[test]
    fn vlan_gateway_repair_plan() {
        let br = 3;
        let gw = link(10, "veth", true, None, Some(11));
        // Whole: nothing but the (idempotent) VLAN to re-apply.
        let port = link(11, "veth", true, Some(br), Some(10));
        assert_eq!(plan_gateway(br, &gw, Some(&port)), GatewayPlan::Repair { set_master: false, port_up: false, gw_up: false });
        // Left half-made by a failed or killed ADD: not a port, both ends down.
        let port = link(11, "veth", false, None, Some(10));
        let down = link(10, "veth", false, None, Some(11));
        assert_eq!(plan_gateway(br, &down, Some(&port)), GatewayPlan::Repair { set_master: true, port_up: true, gw_up: true });
        // A port of another bridge.
        let port = link(11, "veth", true, Some(99), Some(10));
        assert_eq!(plan_gateway(br, &gw, Some(&port)), GatewayPlan::Repair { set_master: true, port_up: false, gw_up: false });
        // The peer is gone, or the index names something else (peer moved to another netns).
        assert_eq!(plan_gateway(br, &gw, None), GatewayPlan::Recreate);
        assert_eq!(plan_gateway(br, &gw, Some(&link(11, "bridge", true, None, None))), GatewayPlan::Recreate);
        assert_eq!(plan_gateway(br, &gw, Some(&link(11, "veth", true, Some(br), Some(42)))), GatewayPlan::Recreate);
    }

    use crate::netlink::tests::in_fresh_netns;

    fn test_env() -> Env {
        Env::from_lookup(|k| match k {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("c".into()),
            "CNI_NETNS" => Some("/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/x".into()),
            _ => None,
        })
        .unwrap()
    }

    #[test]
    fn rollback_removes_a_half_made_vlan_gateway() {
        in_fresh_netns(|| {
            let cf = conf(serde_json::json!({"bridge": "br-u", "vlan": 10, "isGateway": true}));
            let c = BridgeConf::parse(&cf).unwrap();
            let env = test_env();
            let mut nl_ = Netlink::open().unwrap();
            nl_.add_bridge("br-u", None, false).unwrap();
            let br = nl_.link_by_name("br-u").unwrap().unwrap().index;
            let here = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&here);
            let mk = |nl_: &mut Netlink, port: &str, peer: &str| {
                nl_.add_veth(&VethSpec { host_name: port, peer_name: peer, peer_netns_fd: fd, master: Some(br), ..Default::default() }).unwrap();
            };
            // Created, not set up (the failure came before the lookup): removed by its port's name.
            mk(&mut nl_, "vport-a", "br-u.10");
            let undo = Undo { vlan_gateway: Some(VlanGatewayUndo { port_name: "vport-a".into(), gw_index: None, complete: false }), ..Default::default() };
            rollback(&env, &cf, &c, &mut nl_, &undo);
            assert!(nl_.link_by_name("br-u.10").unwrap().is_none(), "a half-made gateway must not stay");
            // Half-made even though another pod's port is on the bridge: removed too.
            mk(&mut nl_, "vpod", "pod0");
            mk(&mut nl_, "vport-b", "br-u.10");
            let gw = nl_.link_by_name("br-u.10").unwrap().unwrap().index;
            let undo = Undo { vlan_gateway: Some(VlanGatewayUndo { port_name: "vport-b".into(), gw_index: Some(gw), complete: false }), ..Default::default() };
            rollback(&env, &cf, &c, &mut nl_, &undo);
            assert!(nl_.link_by_name("br-u.10").unwrap().is_none());
            // Complete, with another port on the bridge: kept (it may serve that pod).
            mk(&mut nl_, "vport-c", "br-u.10");
            let gw = nl_.link_by_name("br-u.10").unwrap().unwrap().index;
            let undo = Undo { vlan_gateway: Some(VlanGatewayUndo { port_name: "vport-c".into(), gw_index: Some(gw), complete: true }), ..Default::default() };
            rollback(&env, &cf, &c, &mut nl_, &undo);
            assert!(nl_.link_by_name("br-u.10").unwrap().is_some());

            // A real failure inside the setup (here: the kernel refuses the VLAN, or, where it
            // can filter, the gateway comes out whole): never a half-made gateway left.
            nl_.del_link(gw).unwrap();
            let mut undo = Undo::default();
            let r = ensure_vlan_gateway(&mut nl_, &c, "br-u.10", br, None, &mut undo);
            match r {
                Err(_) => {
                    assert!(undo.vlan_gateway.as_ref().is_some_and(|u| !u.complete), "recorded as started");
                    rollback(&env, &cf, &c, &mut nl_, &undo);
                    assert!(nl_.link_by_name("br-u.10").unwrap().is_none());
                }
                Ok(g) => {
                    assert!(g.up && undo.vlan_gateway.as_ref().is_some_and(|u| u.complete));
                    // Broken by hand (port off the bridge and down): the next ADD repairs it.
                    let port = g.link.unwrap();
                    nl_.set_up(port, false).unwrap();
                    nl_.set_up(g.index, false).unwrap();
                    let existing = nl_.link_by_name("br-u.10").unwrap();
                    let g2 = ensure_vlan_gateway(&mut nl_, &c, "br-u.10", br, existing, &mut Undo::default()).unwrap();
                    assert_eq!(g2.index, g.index);
                    assert!(g2.up);
                    assert!(nl_.link_by_index(port).unwrap().unwrap().up);
                }
            }
        });
    }

    /// DEL without a link watch (LinkWatch::open failed): a synchronous delete, both ends gone.
    #[test]
    fn del_veth_without_a_watch_deletes_synchronously() {
        in_fresh_netns(|| {
            let here = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            let mut nl_ = Netlink::open().unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(&here);
            nl_.add_veth(&VethSpec { host_name: "vh", peer_name: "vp", peer_netns_fd: fd, ..Default::default() }).unwrap();
            let pod = nl_.link_by_name("vp").unwrap().unwrap();
            del_veth(Netlink::open().unwrap(), &pod, None).unwrap();
            assert!(nl_.link_by_name("vp").unwrap().is_none() && nl_.link_by_name("vh").unwrap().is_none());
        });
    }

    #[test]
    fn gateway_and_overlap_math() {
        assert_eq!(first_host(&"10.1.2.0/24".parse().unwrap()), "10.1.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(first_host(&"fd00::/64".parse().unwrap()), "fd00::1".parse::<IpAddr>().unwrap());
        assert!(overlaps(&"10.0.0.0/8".parse().unwrap(), &"10.1.0.0/16".parse().unwrap()));
        assert!(!overlaps(&"10.0.0.0/16".parse().unwrap(), &"10.1.0.0/16".parse().unwrap()));
    }

    #[test]
    fn mac_sources() {
        let env = Env::from_lookup(|k| match k {
            "CNI_COMMAND" => Some("ADD".into()),
            "CNI_CONTAINERID" => Some("c".into()),
            "CNI_NETNS" => Some("/x".into()),
            "CNI_IFNAME" => Some("eth0".into()),
            "CNI_PATH" => Some("/x".into()),
            "CNI_ARGS" => Some("MAC=0a:00:00:00:00:01".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(requested_mac(&env, &conf(serde_json::json!({}))).unwrap(), Some([10, 0, 0, 0, 0, 1]));
        let c = conf(serde_json::json!({"runtimeConfig": {"mac": "0a:00:00:00:00:02"}}));
        assert_eq!(requested_mac(&env, &c).unwrap(), Some([10, 0, 0, 0, 0, 2]));
        let c = conf(serde_json::json!({"runtimeConfig": {"mac": "01:00:00:00:00:02"}}));
        assert_eq!(requested_mac(&env, &c).unwrap_err().code, code::INVALID_CONFIG);
    }
}
