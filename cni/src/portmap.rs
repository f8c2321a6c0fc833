//! berth-portmap: a chained plugin that maps host ports to a pod
//! (`runtimeConfig.portMappings`, the `portMappings` capability), as the reference `portmap`
//! does, with nftables rules in Berth's own table (see `nat.rs`).
//!
//! Rules per mapping and pod address (first IPv4 and first IPv6 of the pod in `prevResult`),
//! all tagged `berth:<network>:<containerid>:<ifname>`:
//! - DNAT `hostPort` → `podIP:containerPort` in `hostport-dnat` (prerouting: from pods and
//!   other hosts) and `hostport-output` (the node's own processes), only for traffic to a
//!   local address (`fib daddr type local`), or to `hostIP` alone when one is given.
//! - With `snat` (default true), masquerade in `hostport-snat` of such DNATed connections
//!   that come from the pod subnet (hairpin: a pod reaching its own or a neighbour's hostPort
//!   through the node; without it the reply would bypass the node and never be un-NATed) and,
//!   for IPv4, from 127.0.0.0/8 (the node reaching `127.0.0.1:hostPort`; this also needs
//!   `route_localnet=1` on the interface towards the pod, which ADD sets, as the reference
//!   does). IPv6 has no route_localnet, so `[::1]:hostPort` is not mapped (as the reference).
//! - `masqAll: true` masquerades every DNATed connection to the pod instead.
//! - After adding the rules, ADD deletes the conntrack entries of UDP to each mapped UDP
//!   host port (`crate::conntrack`), as the reference does: entries made before the
//!   mapping existed would keep a client's datagrams away from the pod.
//!
//! Accepted options: `snat`, `masqAll`, `markMasqBit` (validated, unused: no marks are
//! needed with `ct status dnat`). `externalSetMarkChain` and non-empty
//! `conditionsV4`/`conditionsV6` are iptables-only features and are refused (code 2).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde_json::Value;

use crate::nat::{self, Chain, Rule};
use crate::spec;

use crate::skel::Plugin;
use crate::spec::code::{INVALID_CONFIG, UNSUPPORTED_FIELD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One entry of `runtimeConfig.portMappings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
    /// Only traffic to this address is mapped; `None` (absent or "") maps every local address.
    pub host_ip: Option<IpAddr>,
}

/// The plugin's own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub snat: bool,
    pub masq_all: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { snat: true, masq_all: false }
    }
}

fn invalid(msg: String) -> spec::Error {
    spec::Error::new(INVALID_CONFIG, msg)
}

/// Reads the plugin options from the whole plugin config.
pub fn parse_options(raw: &Value) -> Result<Options, spec::Error> {
    let flag = |key: &str, default: bool| -> Result<bool, spec::Error> {
        match raw.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(invalid(format!("portmap: {key} must be true or false, not {v}"))),
        }
    };
    let opts = Options { snat: flag("snat", true)?, masq_all: flag("masqAll", false)? };
    match raw.get("markMasqBit") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64().is_some_and(|b| b <= 31) => {}
        Some(v) => return Err(invalid(format!("portmap: markMasqBit must be an integer from 0 to 31, not {v}"))),
    }
    if raw.get("externalSetMarkChain").is_some_and(|v| !v.is_null()) {
        return Err(spec::Error::new(
            UNSUPPORTED_FIELD,
            "portmap: externalSetMarkChain names an iptables chain; berth-portmap uses nftables and needs no mark chain",
        ));
    }
    for key in ["conditionsV4", "conditionsV6"] {
        match raw.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(_) => {
                return Err(spec::Error::new(
                    UNSUPPORTED_FIELD,
                    format!("portmap: {key} holds iptables match arguments, which berth-portmap (nftables) cannot apply"),
                ))
            }
        }
    }
    Ok(opts)
}

/// Reads `runtimeConfig.portMappings` (absent: none).
pub fn parse_mappings(runtime_config: &Value) -> Result<Vec<PortMapping>, spec::Error> {
    let list = match runtime_config.get("portMappings") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => return Err(invalid(format!("portmap: runtimeConfig.portMappings must be a list, not {v}"))),
    };
    list.iter().enumerate().map(|(i, m)| parse_mapping(i, m)).collect()
}

fn parse_mapping(i: usize, m: &Value) -> Result<PortMapping, spec::Error> {
    let what = format!("portmap: runtimeConfig.portMappings[{i}]");
    if !m.is_object() {
        return Err(invalid(format!("{what} must be an object, not {m}")));
    }
    let port = |key: &str| -> Result<u16, spec::Error> {
        match m.get(key) {
            None | Some(Value::Null) => Err(invalid(format!("{what}: {key} is missing"))),
            Some(v) => v
                .as_u64()
                .filter(|p| (1..=65535).contains(p))
                .map(|p| p as u16)
                .ok_or_else(|| invalid(format!("{what}: {key} {v} is not a port (1-65535)"))),
        }
    };
    let host_port = port("hostPort")?;
    let container_port = port("containerPort")?;
    let protocol = match m.get("protocol") {
        // The reference plugin treats an absent protocol as tcp (Kubernetes' default).
        None | Some(Value::Null) => Protocol::Tcp,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("udp") => Protocol::Udp,
        Some(v) => return Err(invalid(format!("{what}: protocol {v} is not supported (tcp or udp)"))),
    };
    let host_ip = match m.get("hostIP") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => {
            let ip: IpAddr = s.parse().map_err(|_| invalid(format!("{what}: hostIP {s:?} is not an IP address")))?;
            // "0.0.0.0"/"::" mean "any address" to Kubernetes.
            (!ip.is_unspecified()).then_some(ip)
        }
        Some(v) => return Err(invalid(format!("{what}: hostIP must be a string, not {v}"))),
    };
    Ok(PortMapping { host_port, container_port, protocol, host_ip })
}

/// The pod's addresses to map to: the first IPv4 and the first IPv6 address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAddrs {
    pub v4: Option<IpNet>,
    pub v6: Option<IpNet>,
}

impl PodAddrs {
    /// From the pod addresses of a result, in order.
    pub fn from_ips(ips: impl IntoIterator<Item = IpNet>) -> PodAddrs {
        let mut p = PodAddrs::default();
        for ip in ips {
            match ip.addr() {
                IpAddr::V4(_) if p.v4.is_none() => p.v4 = Some(ip),
                IpAddr::V6(_) if p.v6.is_none() => p.v6 = Some(ip),
                _ => {}
            }
        }
        p
    }

    fn all(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.v4.iter().chain(self.v6.iter()).copied()
    }
}

/// Every rule for `mappings` to `pod`, in the order they are added.
pub fn rules(mappings: &[PortMapping], pod: &PodAddrs, opts: &Options) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut push = |r: Rule| {
        // Two identical mappings must not give duplicate rules (DEL removes all anyway).
        if !out.contains(&r) {
            out.push(r);
        }
    };
    for m in mappings {
        for net in pod.all() {
            let pod_ip = net.addr();
            if m.host_ip.is_some_and(|h| h.is_ipv4() != pod_ip.is_ipv4()) {
                continue;
            }
            let proto = m.protocol.as_str();
            let mut dnat = vec![nat::dport_match(proto, m.host_port)];
            dnat.push(match m.host_ip {
                Some(h) => nat::addr_match(h, "daddr", "==", nat::addr_value(h)),
                None => nat::nfproto(pod_ip),
            });
            dnat.push(nat::daddr_is_local());
            dnat.push(nat::dnat(pod_ip, m.container_port));
            push(Rule { chain: Chain::HostportDnat, expr: dnat.clone() });
            push(Rule { chain: Chain::HostportOutput, expr: dnat });

            let snat = |from: Option<IpNet>| {
                let mut e = Vec::new();
                if let Some(f) = from {
                    e.push(nat::addr_match(pod_ip, "saddr", "==", nat::net_value(f)));
                }
                e.push(nat::addr_match(pod_ip, "daddr", "==", nat::addr_value(pod_ip)));
                e.push(nat::dport_match(proto, m.container_port));
                e.push(nat::ct_dnat());
                e.push(nat::masquerade());
                Rule { chain: Chain::HostportSnat, expr: e }
            };
            if opts.masq_all {
                push(snat(None));
            } else if opts.snat {
                push(snat(Some(net.trunc())));
                if pod_ip.is_ipv4() {
                    push(snat(Some(IpNet::new(Ipv4Addr::LOCALHOST.into(), 8).expect("valid prefix"))));
                }
            }
        }
    }
    out
}

/// True when `rules` need `route_localnet` (a localhost SNAT rule or masqAll on IPv4).
pub fn needs_route_localnet(mappings: &[PortMapping], pod: &PodAddrs, opts: &Options) -> bool {
    (opts.snat || opts.masq_all)
        && pod.v4.is_some()
        && mappings.iter().any(|m| m.host_ip.map_or(true, |h| h.is_ipv4() && h.is_loopback()))
}

/// The interface the node routes `dst` through (main table, longest prefix), from the
/// kernel's `/proc/net/route` text.
pub fn route_iface(proc_net_route: &str, dst: Ipv4Addr) -> Option<String> {
    let mut best: Option<(u32, u32, String)> = None; // (prefix len, metric, iface)
    for line in proc_net_route.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(flags), Some(metric), Some(mask)) = (hex(f[1]), hex(f[3]), f[6].parse::<u32>().ok(), hex(f[7])) else {
            continue;
        };
        // The kernel prints the network-order words as host-order integers.
        let dest = u32::from_be_bytes(dest.to_le_bytes());
        let mask = u32::from_be_bytes(mask.to_le_bytes());
        const RTF_UP: u32 = 1;
        if flags & RTF_UP == 0 || u32::from(dst) & mask != dest {
            continue;
        }
        let len = mask.count_ones();
        if best.as_ref().map_or(true, |(l, m, _)| len > *l || (len == *l && metric < *m)) {
            best = Some((len, metric, f[0].to_string()));
        }
    }
    best.map(|(_, _, iface)| iface)
}

/// Sets `net.ipv4.conf.<iface>.route_localnet=1` on the interface towards `pod_ip`, so that
/// DNATed packets from 127.0.0.1 may leave through it (they are masqueraded on the way out).
pub fn enable_route_localnet(pod_ip: Ipv4Addr) -> Result<(), spec::Error> {
    let routes = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| spec::Error::new(nat::CODE_NFT, format!("portmap: read /proc/net/route: {e}")))?;
    let iface = route_iface(&routes, pod_ip)
        .ok_or_else(|| spec::Error::new(nat::CODE_NFT, format!("portmap: no route to the pod address {pod_ip}")))?;
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/route_localnet");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").map_err(|e| spec::Error::new(nat::CODE_NFT, format!("portmap: write 1 to {path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(host: u16, cont: u16, proto: Protocol, host_ip: Option<&str>) -> PortMapping {
        PortMapping { host_port: host, container_port: cont, protocol: proto, host_ip: host_ip.map(|s| s.parse().unwrap()) }
    }

    #[test]
    fn mappings_parse_with_defaults() {
        let rc = json!({"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": "127.0.0.1"},
            {"hostPort": 9000, "containerPort": 9000},
            {"hostPort": 9001, "containerPort": 9001, "hostIP": ""},
            {"hostPort": 9002, "containerPort": 9002, "hostIP": "0.0.0.0"},
        ]});
        assert_eq!(
            parse_mappings(&rc).unwrap(),
            vec![
                m(8080, 80, Protocol::Tcp, None),
                m(5353, 53, Protocol::Udp, Some("127.0.0.1")),
                m(9000, 9000, Protocol::Tcp, None),
                m(9001, 9001, Protocol::Tcp, None),
                m(9002, 9002, Protocol::Tcp, None),
            ]
        );
        assert_eq!(parse_mappings(&json!({})).unwrap(), vec![]);
        assert_eq!(parse_mappings(&Value::Null).unwrap(), vec![]);
    }

    #[test]
    fn bad_mappings_are_invalid_config() {
        let bad = [
            json!({"portMappings": [{"hostPort": 0, "containerPort": 80}]}),
            json!({"portMappings": [{"hostPort": 70000, "containerPort": 80}]}),
            json!({"portMappings": [{"hostPort": "80", "containerPort": 80}]}),
            json!({"portMappings": [{"hostPort": 80, "containerPort": -1}]}),
            json!({"portMappings": [{"hostPort": 80}]}),
            json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}),
            json!({"portMappings": [{"hostPort": 80, "containerPort": 80, "hostIP": "not-an-ip"}]}),
            json!({"portMappings": [42]}),
            json!({"portMappings": {"hostPort": 80}}),
        ];
        for rc in bad {
            let e = parse_mappings(&rc).expect_err(&rc.to_string());
            assert_eq!(e.code, INVALID_CONFIG, "{rc}: {e:?}");
            assert!(e.msg.contains("portMappings"), "{}", e.msg);
        }
    }

    #[test]
    fn options_parse_and_refuse_iptables_features() {
        assert_eq!(parse_options(&json!({"type": "berth-portmap"})).unwrap(), Options { snat: true, masq_all: false });
        assert_eq!(
            parse_options(&json!({"snat": false, "masqAll": true, "markMasqBit": 13, "conditionsV4": []})).unwrap(),
            Options { snat: false, masq_all: true }
        );
        assert_eq!(parse_options(&json!({"snat": "yes"})).unwrap_err().code, INVALID_CONFIG);
        assert_eq!(parse_options(&json!({"markMasqBit": 32})).unwrap_err().code, INVALID_CONFIG);
        assert_eq!(parse_options(&json!({"externalSetMarkChain": "KUBE-MARK-MASQ"})).unwrap_err().code, UNSUPPORTED_FIELD);
        assert_eq!(parse_options(&json!({"conditionsV4": ["!", "-d", "192.0.2.0/24"]})).unwrap_err().code, UNSUPPORTED_FIELD);
    }

    fn exprs(rules: &[Rule], chain: Chain) -> Vec<Value> {
        rules.iter().filter(|r| r.chain == chain).map(|r| Value::Array(r.expr.clone())).collect()
    }

    #[test]
    fn v4_mapping_gives_dnat_in_both_chains_and_hairpin_plus_localhost_snat() {
        let pod = PodAddrs::from_ips(["10.22.0.5/24".parse().unwrap()]);
        let r = rules(&[m(8080, 80, Protocol::Tcp, None)], &pod, &Options::default());
        let dnat = json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
            {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
            {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
            {"dnat": {"family": "ip", "addr": "10.22.0.5", "port": 80}},
        ]);
        assert_eq!(exprs(&r, Chain::HostportDnat), vec![dnat.clone()]);
        assert_eq!(exprs(&r, Chain::HostportOutput), vec![dnat]);
        let snat = exprs(&r, Chain::HostportSnat);
        assert_eq!(snat.len(), 2);
        assert_eq!(
            snat[0],
            json!([
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.22.0.0", "len": 24}}}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.22.0.5"}},
                {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 80}},
                {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                {"masquerade": null},
            ])
        );
        assert_eq!(snat[1][0]["match"]["right"], json!({"prefix": {"addr": "127.0.0.0", "len": 8}}));
        assert!(needs_route_localnet(&[m(8080, 80, Protocol::Tcp, None)], &pod, &Options::default()));
    }

    #[test]
    fn host_ip_restricts_family_and_destination() {
        let pod = PodAddrs::from_ips(["10.22.0.5/24".parse().unwrap(), "fd00::5/64".parse().unwrap(), "10.9.9.9/24".parse().unwrap()]);
        assert_eq!(pod.v4, Some("10.22.0.5/24".parse().unwrap()));
        let r = rules(&[m(53, 5353, Protocol::Udp, Some("fd00::1"))], &pod, &Options::default());
        let dnat = exprs(&r, Chain::HostportDnat);
        assert_eq!(dnat.len(), 1);
        assert_eq!(dnat[0][0], json!({"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}));
        assert_eq!(dnat[0][1], json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00::1"}}));
        assert_eq!(dnat[0][3], json!({"dnat": {"family": "ip6", "addr": "fd00::5", "port": 5353}}));
        // IPv6: hairpin SNAT only (no route_localnet for ::1)
        let snat = exprs(&r, Chain::HostportSnat);
        assert_eq!(snat.len(), 1);
        assert_eq!(snat[0][0]["match"]["right"], json!({"prefix": {"addr": "fd00::", "len": 64}}));
    }

    #[test]
    fn snat_off_and_masq_all() {
        let pod = PodAddrs::from_ips(["10.22.0.5/24".parse().unwrap()]);
        let maps = [m(8080, 80, Protocol::Tcp, None), m(8080, 80, Protocol::Tcp, None)];
        let off = rules(&maps, &pod, &Options { snat: false, masq_all: false });
        assert_eq!((exprs(&off, Chain::HostportDnat).len(), exprs(&off, Chain::HostportSnat).len()), (1, 0));
        assert!(!needs_route_localnet(&maps, &pod, &Options { snat: false, masq_all: false }));
        let all = rules(&maps, &pod, &Options { snat: true, masq_all: true });
        let snat = exprs(&all, Chain::HostportSnat);
        assert_eq!(snat.len(), 1);
        assert_eq!(snat[0][0]["match"]["left"]["payload"]["field"], "daddr");
    }

    #[test]
    fn no_pod_address_no_rules() {
        assert!(rules(&[m(1, 2, Protocol::Tcp, None)], &PodAddrs::default(), &Options::default()).is_empty());
    }

    #[test]
    fn pod_addresses_come_from_sandbox_interfaces_never_loopback() {
        let r = spec::CniResult::parse(
            &json!({"cniVersion": "1.0.0",
                "interfaces": [{"name": "lo", "sandbox": "/run/netns/p"}, {"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/p"}],
                "ips": [{"address": "127.0.0.1/8", "interface": 0}, {"address": "10.1.0.1/24", "interface": 1},
                        {"address": "10.1.0.7/24", "interface": 2}, {"address": "fd00::7/64"}]}),
            "prevResult",
        )
        .unwrap();
        let p = pod_addrs(&r);
        assert_eq!(p.v4, Some("10.1.0.7/24".parse().unwrap()));
        assert_eq!(p.v6, Some("fd00::7/64".parse().unwrap()));
    }

    #[test]
    fn route_lookup_takes_longest_prefix() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            cni0\t0000160A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            wide\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n\
            down\t0500160A\t00000000\t0000\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n";
        assert_eq!(route_iface(table, "10.22.0.5".parse().unwrap()).as_deref(), Some("cni0"));
        assert_eq!(route_iface(table, "10.23.0.5".parse().unwrap()).as_deref(), Some("wide"));
        assert_eq!(route_iface(table, "192.0.2.1".parse().unwrap()).as_deref(), Some("eth0"));
        assert_eq!(route_iface("Iface\n", "10.0.0.1".parse().unwrap()), None);
    }
}

/// The berth-portmap plugin (`src/bin/berth-portmap.rs` runs it through `skel`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PortMap;

impl PortMap {
    /// Options, mappings and pod addresses of an ADD or CHECK; prevResult is required.
    fn inputs(conf: &spec::NetConf) -> Result<(Options, Vec<PortMapping>, PodAddrs, &spec::CniResult), spec::Error> {
        let opts = parse_options(&conf.raw)?;
        let mappings = parse_mappings(&conf.runtime_config)?;
        let prev = conf.prev_result.as_ref().ok_or_else(|| {
            invalid(format!("portmap in network {:?} must be chained after a plugin that sets up the interface: prevResult is missing", conf.name))
        })?;
        let pod = pod_addrs(prev);
        if !mappings.is_empty() && pod.v4.is_none() && pod.v6.is_none() {
            return Err(invalid(format!("portmap in network {:?}: prevResult holds no pod address to map ports to", conf.name)));
        }
        Ok((opts, mappings, pod, prev))
    }
}

fn attachment<'a>(env: &'a spec::Env, conf: &'a spec::NetConf) -> Attachment<'a> {
    Attachment { network: &conf.name, container_id: &env.container_id, ifname: &env.ifname }
}

impl Plugin for PortMap {
    fn name(&self) -> &'static str {
        "berth-portmap"
    }

    fn add(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<spec::CniResult, spec::Error> {
        let (opts, mappings, pod, prev) = Self::inputs(conf)?;
        add(&attachment(env, conf), &mappings, &pod, &opts)?;
        Ok(prev.clone())
    }

    fn del(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<(), spec::Error> {
        // Neither prevResult nor the mappings are needed (nor checked): the tag finds the rules.
        del(&attachment(env, conf))
    }

    fn check(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<(), spec::Error> {
        let (opts, mappings, pod, _) = Self::inputs(conf)?;
        check(&attachment(env, conf), &mappings, &pod, &opts)
    }

    fn gc(&self, conf: &spec::NetConf, valid: &[spec::Attachment]) -> Result<(), spec::Error> {
        gc(&conf.name, valid)
    }
}

/// The pod's addresses in a result: those on interfaces inside a sandbox (or on no named
/// interface), as the reference plugin picks them; never loopback addresses (a loopback
/// plugin earlier in the list may have put 127.0.0.1 into the chain).
pub fn pod_addrs(r: &spec::CniResult) -> PodAddrs {
    PodAddrs::from_ips(
        r.ips
            .iter()
            .filter(|ip| ip.interface.map_or(true, |i| r.interfaces.get(i).is_some_and(|itf| !itf.sandbox.is_empty())))
            .filter(|ip| !ip.address.addr().is_loopback())
            .map(|ip| ip.address),
    )
}

/// What ADD, CHECK, DEL and GC of one attachment work on.
#[derive(Debug, Clone)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

impl Attachment<'_> {
    fn tag(&self) -> nat::Tag {
        nat::Tag::new(self.network, self.container_id, self.ifname)
    }
}

/// ADD: maps `mappings` to `pod` (one nft transaction), after enabling route_localnet where
/// localhost traffic is mapped.
pub fn add(at: &Attachment, mappings: &[PortMapping], pod: &PodAddrs, opts: &Options) -> Result<(), spec::Error> {
    let rules = rules(mappings, pod, opts);
    if rules.is_empty() {
        return Ok(());
    }
    if needs_route_localnet(mappings, pod, opts) {
        if let Some(v4) = pod.v4 {
            let IpAddr::V4(ip) = v4.addr() else { unreachable!("v4 holds IPv4") };
            enable_route_localnet(ip)?;
        }
    }
    nat::Nft::locate()?.add_rules(&at.tag(), &rules)?;
    // UDP datagrams that reached a host port before it was mapped left conntrack entries
    // without DNAT; the client's later datagrams would keep matching them (see
    // `conntrack`). Best effort, as the reference portmap: the mapping works for every new
    // client either way, so a failure is a warning, not a failed ADD.
    let mut udp: Vec<u16> = mappings.iter().filter(|m| m.protocol == Protocol::Udp).map(|m| m.host_port).collect();
    udp.sort_unstable();
    udp.dedup();
    if let Err(e) = crate::conntrack::delete_udp_to_ports(&udp) {
        eprintln!("berth-portmap: warning: cannot delete stale UDP conntrack entries of host ports {udp:?}: {e}");
    }
    Ok(())
}

/// CHECK: every rule ADD would add is present.
pub fn check(at: &Attachment, mappings: &[PortMapping], pod: &PodAddrs, opts: &Options) -> Result<(), spec::Error> {
    let tag = at.tag();
    let missing = nat::Nft::locate()?.missing_rules(&tag, &rules(mappings, pod, opts))?;
    if missing.is_empty() {
        return Ok(());
    }
    let chains: Vec<&str> = missing.iter().map(|r| r.chain.name()).collect();
    Err(spec::Error::new(
        nat::CODE_CHECK,
        format!(
            "portmap: {} rule(s) tagged {tag} missing from table {} {} (chains {})",
            missing.len(),
            nat::FAMILY,
            nat::TABLE,
            chains.join(", ")
        ),
    ))
}

/// DEL: removes the attachment's rules; succeeds when there are none.
pub fn del(at: &Attachment) -> Result<(), spec::Error> {
    let tag = at.tag();
    nat::Nft::locate()?.delete_rules(&Chain::PORTMAP, |t| *t == tag)?;
    Ok(())
}

/// GC: removes the rules of `network`'s attachments that are not in `valid`.
pub fn gc(network: &str, valid: &[spec::Attachment]) -> Result<(), spec::Error> {
    nat::Nft::locate()?.delete_rules(&Chain::PORTMAP, |t| nat::is_stale(t, network, valid))?;
    Ok(())
}
