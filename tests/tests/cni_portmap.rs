//! berth-portmap: host ports mapped to pods by nftables DNAT, with hairpin and localhost SNAT.
//!
//! Each test runs its whole node in a fresh netns (no uplink), pods as further netns wired by
//! berth-bridge + berth-ipam (the reference portmap beside them: cni_conflist), servers in the pods (`traffic::Server`), and clients in the node
//! and in other pods. Only addresses inside these namespaces are ever contacted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use berth_tests::cni::{plugin_path, Call};
use berth_tests::netns::{Netns, Node};
use berth_tests::traffic::{in_netns, tcp_ask, udp_ask, Server, TIMEOUT};
use berth_tests::{json, Value};

const NET: &str = "pmnet";
const BRIDGE: &str = "cni-pm0";
const GW4: &str = "10.99.0.1";
const GW6: &str = "fd99::1";

const PORTMAP: &str = "berth-portmap";
const BRIDGE_PLUGIN: &str = "berth-bridge";

/// Root, berth-portmap built, reference plugins and nft installed; else SKIP.
fn node() -> Option<Node> {
    let node = Node::new()?;
    for p in [plugin_path(PORTMAP), plugin_path(BRIDGE_PLUGIN), plugin_path("berth-ipam"), PathBuf::from("/usr/sbin/nft")] {
        if !p.is_file() {
            berth_tests::skip(format_args!("{} is missing (scripts/build; Debian nftables)", p.display()));
            return None;
        }
    }
    // No IPv6 duplicate address detection: addresses are usable at once.
    node.sh_ok("sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0");
    Some(node)
}

/// `plugin` `command` for the attachment (`cid`, eth0) of the pod netns at `pod`, run
/// inside the node's netns.
fn att(node: &Netns, plugin: &str, command: &str, cid: &str, pod: &Path) -> Call {
    Call::new(plugin, command).id(cid).ifname("eth0").netns(pod).in_netns(node.path())
}

/// A command of no attachment (GC) in the node's netns.
fn net_call(node: &Netns, plugin: &str, command: &str) -> Call {
    Call::new(plugin, command).in_netns(node.path())
}

fn bridge_conf(node: &Node, v6: bool) -> Value {
    let mut ranges = vec![json!([{"subnet": "10.99.0.0/24", "gateway": GW4}])];
    if v6 {
        ranges.push(json!([{"subnet": "fd99::/64", "gateway": GW6}]));
    }
    json!({
        "cniVersion": "1.1.0", "name": NET, "type": "berth-bridge", "bridge": BRIDGE,
        "isGateway": true, "hairpinMode": true,
        "ipam": {"type": "berth-ipam", "dataDir": node.tmp().join("ipam"), "ranges": ranges},
    })
}

fn portmap_conf(prev: Option<&Value>, mappings: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0", "name": NET, "type": "berth-portmap",
        "capabilities": {"portMappings": true},
        "runtimeConfig": {"portMappings": mappings},
    });
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

/// Wires `pod` to the node's bridge; returns the bridge plugin's result.
fn attach(node: &Node, pod: &Netns, cid: &str, v6: bool) -> Value {
    att(node, BRIDGE_PLUGIN, "ADD", cid, &pod.path()).conf(&bridge_conf(node, v6)).run().ok()
}

fn detach(node: &Node, pod: &Netns, cid: &str, v6: bool) {
    att(node, BRIDGE_PLUGIN, "DEL", cid, &pod.path()).conf(&bridge_conf(node, v6)).run().ok();
}

/// The pod address of a result in the given family (`"10.99.0.2"`).
fn pod_ip(result: &Value, v6: bool) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap().to_string())
        .find(|a| a.contains(':') == v6)
        .unwrap_or_else(|| panic!("no {} address in {result}", if v6 { "IPv6" } else { "IPv4" }))
}

/// How many rules carry `tag`, per chain.
fn tagged(node: &Netns, tag: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (chain, comment, _) in node.berth_cni_rules() {
        if comment == tag {
            *m.entry(chain).or_default() += 1;
        }
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn tcp_and_udp_host_ports_reach_the_pod_from_node_localhost_and_pods() {
    let Some(node) = node() else { return };
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = attach(&node, &p1, "pm-c1", false);
    let r2 = attach(&node, &p2, "pm-c2", false);
    let (ip1, ip2) = (pod_ip(&r1, false), pod_ip(&r2, false));
    let srv = Server::start(&p1.path(), "pod1", 80, 53);
    let maps = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
    ]);
    // Nothing listens on the node itself.
    assert!(tcp_ask(&node.path(), sa(&format!("{GW4}:8080"))).is_err());

    let conf = portmap_conf(Some(&r1), maps.clone());
    let out = att(&node, PORTMAP, "ADD", "pm-c1", &p1.path()).conf(&conf).run().ok();
    assert_eq!(out["ips"], r1["ips"], "ADD passes prevResult through: {out}");
    assert_eq!(out["interfaces"], r1["interfaces"]);
    assert_eq!(out["cniVersion"], "1.1.0");
    let tag = "berth:pmnet:pm-c1:eth0";
    // per mapping: prerouting + output DNAT, hairpin + localhost SNAT
    assert_eq!(tagged(&node, tag), counts(&[("hostport-dnat", 2), ("hostport-output", 2), ("hostport-snat", 4)]));
    assert_eq!(node.sh_ok(&format!("cat /proc/sys/net/ipv4/conf/{BRIDGE}/route_localnet")).trim(), "1");

    // The pod sees the node's bridge address as the source of every mapped connection
    // (localhost and hairpin traffic are masqueraded; the node's own traffic leaves from it).
    let from_node = format!("pod1 {GW4}\n");
    for (who, ns) in [("node", node.path()), ("other pod", p2.path()), ("the pod itself", p1.path())] {
        assert_eq!(tcp_ask(&ns, sa(&format!("{GW4}:8080"))).unwrap_or_else(|e| panic!("tcp from {who}: {e}")), from_node, "tcp from {who}");
        assert_eq!(udp_ask(&ns, sa(&format!("{GW4}:5353"))).unwrap_or_else(|e| panic!("udp from {who}: {e}")), from_node, "udp from {who}");
    }
    assert_eq!(tcp_ask(&node.path(), sa("127.0.0.1:8080")).expect("tcp via 127.0.0.1"), from_node);
    assert_eq!(udp_ask(&node.path(), sa("127.0.0.1:5353")).expect("udp via 127.0.0.1"), from_node);
    // The pod's own address is reached directly, unmapped.
    assert_eq!(tcp_ask(&p2.path(), sa(&format!("{ip1}:80"))).unwrap(), format!("pod1 {ip2}\n"));

    // CHECK passes, and fails once a rule is gone.
    att(&node, PORTMAP, "CHECK", "pm-c1", &p1.path()).conf(&conf).run().ok();
    let (chain, _, handle) = node.berth_cni_rules().into_iter().find(|(c, t, _)| c == "hostport-snat" && t == tag).unwrap();
    node.sh_ok(&format!("nft delete rule inet berth-cni {chain} handle {handle}"));
    let out = att(&node, PORTMAP, "CHECK", "pm-c1", &p1.path()).conf(&conf).run();
    assert_ne!(out.code, 0, "CHECK with a rule missing: {out:?}");
    assert!(out.json["msg"].as_str().unwrap().contains("missing"), "{}", out.json);

    // DEL removes exactly its rules; twice is fine, and so is DEL without prevResult.
    att(&node, PORTMAP, "DEL", "pm-c1", &p1.path()).conf(&conf).run().ok();
    assert_eq!(tagged(&node, tag), BTreeMap::new());
    assert!(tcp_ask(&node.path(), sa(&format!("{GW4}:8080"))).is_err(), "hostPort still mapped after DEL");
    att(&node, PORTMAP, "DEL", "pm-c1", &p1.path()).conf(&conf).run().ok();
    let bare = json!({"cniVersion": "1.1.0", "name": NET, "type": "berth-portmap"});
    att(&node, PORTMAP, "DEL", "pm-c1", &p1.path()).conf(&bare).run().ok();

    drop(srv);
    detach(&node, &p1, "pm-c1", false);
    detach(&node, &p2, "pm-c2", false);
    assert!(node.berth_cni_rules().is_empty(), "rules left: {:?}", node.berth_cni_rules());
}

#[test]
fn host_ip_limits_the_mapping_and_ipv6_pods_are_mapped_too() {
    let Some(node) = node() else { return };
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = attach(&node, &p1, "pm6-c1", true);
    attach(&node, &p2, "pm6-c2", true);
    let srv = Server::start(&p1.path(), "pod1", 80, 53);
    let maps = json!([
        {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": GW4},
        {"hostPort": 8082, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5354, "containerPort": 53, "protocol": "udp", "hostIP": GW6},
    ]);
    let conf = portmap_conf(Some(&r1), maps);
    att(&node, PORTMAP, "ADD", "pm6-c1", &p1.path()).conf(&conf).run().ok();
    let tag = "berth:pmnet:pm6-c1:eth0";
    // DNAT: 8081 v4 only (hostIP), 8082 v4 + v6, 5354 v6 only. SNAT per pod address and
    // container port: tcp/80 v4 hairpin + localhost (shared by 8081 and 8082), tcp/80 v6
    // hairpin, udp/53 v6 hairpin.
    assert_eq!(tagged(&node, tag), counts(&[("hostport-dnat", 4), ("hostport-output", 4), ("hostport-snat", 4)]));

    assert_eq!(tcp_ask(&node.path(), sa(&format!("{GW4}:8081"))).unwrap(), format!("pod1 {GW4}\n"));
    assert!(tcp_ask(&node.path(), sa("127.0.0.1:8081")).is_err(), "hostIP mapping must not answer on 127.0.0.1");
    assert_eq!(tcp_ask(&node.path(), sa("127.0.0.1:8082")).unwrap(), format!("pod1 {GW4}\n"));
    let v6_from_node = format!("pod1 {GW6}\n");
    assert_eq!(tcp_ask(&node.path(), sa(&format!("[{GW6}]:8082"))).unwrap(), v6_from_node);
    assert_eq!(tcp_ask(&p2.path(), sa(&format!("[{GW6}]:8082"))).unwrap(), v6_from_node, "v6 hairpin from another pod");
    assert_eq!(tcp_ask(&p1.path(), sa(&format!("[{GW6}]:8082"))).unwrap(), v6_from_node, "v6 hairpin to itself");
    assert_eq!(udp_ask(&p2.path(), sa(&format!("[{GW6}]:5354"))).unwrap(), v6_from_node);
    assert!(udp_ask(&node.path(), sa(&format!("{GW4}:5354"))).is_err(), "v6-only hostIP mapping must not answer on v4");
    att(&node, PORTMAP, "CHECK", "pm6-c1", &p1.path()).conf(&conf).run().ok();

    att(&node, PORTMAP, "DEL", "pm6-c1", &p1.path()).conf(&conf).run().ok();
    assert!(tcp_ask(&node.path(), sa(&format!("[{GW6}]:8082"))).is_err());
    drop(srv);
    detach(&node, &p1, "pm6-c1", true);
    detach(&node, &p2, "pm6-c2", true);
    assert!(node.berth_cni_rules().is_empty(), "rules left: {:?}", node.berth_cni_rules());
}

/// Conntrack entries in the node's netns (`/proc/net/nf_conntrack` lines) of UDP to `port`.
fn udp_conntrack_to(node: &Netns, port: u16) -> Vec<String> {
    node.sh_ok("cat /proc/net/nf_conntrack")
        .lines()
        .filter(|l| l.contains(" udp ") && l.split_whitespace().find(|w| w.starts_with("dport=")) == Some(&format!("dport={port}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn udp_sent_to_a_host_port_before_add_reaches_the_pod_after_add() {
    // A client that sent to a UDP hostPort before the mapping existed left a conntrack
    // entry without DNAT; its later datagrams (same 5-tuple) would keep matching it and
    // never reach the pod. ADD deletes such entries, as the reference portmap does.
    let Some(node) = node() else { return };
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = attach(&node, &p1, "ct-c1", false);
    let r2 = attach(&node, &p2, "ct-c2", false);
    // Another pod's mapping first: the node's nat chains exist, so conntrack tracks.
    let other = portmap_conf(Some(&r2), json!([{"hostPort": 8090, "containerPort": 80}]));
    att(&node, PORTMAP, "ADD", "ct-c2", &p2.path()).conf(&other).run().ok();
    let srv = Server::start(&p1.path(), "pod1", 80, 53);

    let to = sa(&format!("{GW4}:5355"));
    let client = in_netns(&node.path(), || std::net::UdpSocket::bind("0.0.0.0:0").unwrap());
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"early", to).unwrap();
    let stale = udp_conntrack_to(&node, 5355);
    assert_eq!(stale.len(), 1, "the early datagram left one conntrack entry: {stale:?}");
    assert!(!stale[0].contains(&pod_ip(&r1, false)), "not towards the pod yet: {stale:?}");

    let conf = portmap_conf(Some(&r1), json!([{"hostPort": 5355, "containerPort": 53, "protocol": "udp"}]));
    att(&node, PORTMAP, "ADD", "ct-c1", &p1.path()).conf(&conf).run().ok();
    client.send_to(b"late", to).unwrap();
    let mut buf = [0u8; 512];
    let n = client.recv(&mut buf).unwrap_or_else(|e| panic!("no answer from the pod through {to} (stale conntrack entry?): {e}; {:?}", udp_conntrack_to(&node, 5355)));
    assert_eq!(String::from_utf8_lossy(&buf[..n]), format!("pod1 {GW4}\n"));
    let now = udp_conntrack_to(&node, 5355);
    assert!(now.iter().all(|l| l.contains(&pod_ip(&r1, false))), "only the DNATed entry is left: {now:?}");

    drop(srv);
    for (pod, cid, conf) in [(&p1, "ct-c1", &conf), (&p2, "ct-c2", &other)] {
        att(&node, PORTMAP, "DEL", cid, &pod.path()).conf(conf).run().ok();
    }
    detach(&node, &p1, "ct-c1", false);
    detach(&node, &p2, "ct-c2", false);
    assert!(node.berth_cni_rules().is_empty(), "rules left: {:?}", node.berth_cni_rules());
}

/// A prevResult for a pod at 10.98.0.<n> behind a link of the node (rules only, no
/// traffic: GC, concurrency and bad-input tests).
fn fake_prev(n: u8) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/run/netns/none"}],
        "ips": [{"address": format!("10.98.0.{n}/24"), "interface": 0}],
    })
}

/// A route to 10.98.0.0/24 in the node (a veth pair: this kernel has no dummy links).
fn fake_pod_link(node: &Node) {
    node.sh_ok("ip link add d0 type veth peer name d1 && ip addr add 10.98.0.1/24 dev d0 && ip link set d1 up && ip link set d0 up");
}

#[test]
fn gc_removes_rules_of_attachments_no_longer_valid() {
    let Some(node) = node() else { return };
    fake_pod_link(&node);
    let pod = node.pod();
    let maps = json!([{"hostPort": 9000, "containerPort": 80}]);
    for (i, cid) in ["gc-a", "gc-b"].into_iter().enumerate() {
        let conf = portmap_conf(Some(&fake_prev(10 + i as u8)), maps.clone());
        att(&node, PORTMAP, "ADD", cid, &pod.path()).conf(&conf).run().ok();
    }
    let mut other = portmap_conf(Some(&fake_prev(12)), maps.clone());
    other["name"] = json!("othernet");
    att(&node, PORTMAP, "ADD", "gc-c", &pod.path()).conf(&other).run().ok();
    assert_eq!(node.berth_cni_rules().len(), 3 * 4);

    let gc = json!({
        "cniVersion": "1.1.0", "name": NET, "type": "berth-portmap",
        "cni.dev/valid-attachments": [{"containerID": "gc-a", "ifname": "eth0"}],
    });
    net_call(&node, PORTMAP, "GC").conf(&gc).run().ok();
    let four = counts(&[("hostport-dnat", 1), ("hostport-output", 1), ("hostport-snat", 2)]);
    assert_eq!(tagged(&node, "berth:pmnet:gc-a:eth0"), four, "valid attachment kept");
    assert_eq!(tagged(&node, "berth:pmnet:gc-b:eth0"), BTreeMap::new(), "stale attachment removed");
    assert_eq!(tagged(&node, "berth:othernet:gc-c:eth0"), four, "other network untouched");
    // GC again: nothing more to do.
    net_call(&node, PORTMAP, "GC").conf(&gc).run().ok();
    assert_eq!(node.berth_cni_rules().len(), 2 * 4);

    let empty_gc = json!({"cniVersion": "1.1.0", "name": "othernet", "type": "berth-portmap", "cni.dev/valid-attachments": []});
    net_call(&node, PORTMAP, "GC").conf(&empty_gc).run().ok();
    att(&node, PORTMAP, "DEL", "gc-a", &pod.path()).conf(&portmap_conf(None, json!([]))).run().ok();
    assert!(node.berth_cni_rules().is_empty(), "rules left: {:?}", node.berth_cni_rules());
}

#[test]
fn bad_input_is_a_spec_error_and_adds_nothing() {
    let Some(node) = node() else { return };
    fake_pod_link(&node);
    let pod = node.pod();
    let good = json!([{"hostPort": 9000, "containerPort": 80, "protocol": "tcp"}]);
    let cases: Vec<(&str, Value, u64, &str)> = vec![
        ("no prevResult", portmap_conf(None, good.clone()), 7, "prevResult"),
        ("hostPort 0", portmap_conf(Some(&fake_prev(10)), json!([{"hostPort": 0, "containerPort": 80}])), 7, "hostPort"),
        ("hostPort 65536", portmap_conf(Some(&fake_prev(10)), json!([{"hostPort": 65536, "containerPort": 80}])), 7, "hostPort"),
        ("containerPort text", portmap_conf(Some(&fake_prev(10)), json!([{"hostPort": 80, "containerPort": "x"}])), 7, "containerPort"),
        ("protocol icmp", portmap_conf(Some(&fake_prev(10)), json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}])), 7, "protocol"),
        ("bad hostIP", portmap_conf(Some(&fake_prev(10)), json!([{"hostPort": 80, "containerPort": 80, "hostIP": "1.2.3"}])), 7, "hostIP"),
        ("iptables conditions", {
            let mut c = portmap_conf(Some(&fake_prev(10)), good.clone());
            c["conditionsV4"] = json!(["!", "-d", "192.0.2.0/24"]);
            c
        }, 2, "conditionsV4"),
    ];
    for (what, conf, code, needle) in cases {
        let out = att(&node, PORTMAP, "ADD", "bad", &pod.path()).conf(&conf).run();
        assert_ne!(out.code, 0, "{what}: should fail: {out:?}");
        let err = out.json;
        assert_eq!(err["code"], code, "{what}: {err}");
        let msg = format!("{} {}", err["msg"].as_str().unwrap_or(""), err["details"].as_str().unwrap_or(""));
        assert!(msg.contains(needle), "{what}: message should name {needle}: {err}");
        assert!(node.berth_cni_rules().is_empty(), "{what}: rules added: {:?}", node.berth_cni_rules());
    }
    // An empty mapping list is no error: prevResult passes through, no rule.
    let out = att(&node, PORTMAP, "ADD", "none", &pod.path()).conf(&portmap_conf(Some(&fake_prev(10)), json!([]))).run().ok();
    assert_eq!(out["ips"], fake_prev(10)["ips"]);
    assert!(node.berth_cni_rules().is_empty());
}

#[test]
fn concurrent_adds_and_dels_lose_no_rule() {
    let Some(node) = node() else { return };
    fake_pod_link(&node);
    let pod = node.pod();
    const N: u8 = 16;
    let node_ns: Netns = (*node).clone(); // the Node fixture itself stays on this thread
    let run_all = |command: &'static str| {
        std::thread::scope(|s| {
            for i in 0..N {
                let (node, pod) = (&node_ns, &pod);
                s.spawn(move || {
                    let cid = format!("par-{i}");
                    let conf = portmap_conf(Some(&fake_prev(10 + i)), json!([{"hostPort": 9000 + i as u16, "containerPort": 80}]));
                    att(node, PORTMAP, command, &cid, &pod.path()).conf(&conf).run().ok();
                });
            }
        })
    };
    run_all("ADD");
    for i in 0..N {
        let t = format!("berth:pmnet:par-{i}:eth0");
        assert_eq!(tagged(&node, &t).values().sum::<usize>(), 4, "{t}: {:?}", tagged(&node, &t));
    }
    assert_eq!(node.berth_cni_rules().len(), 4 * N as usize);
    run_all("DEL");
    assert!(node.berth_cni_rules().is_empty(), "rules left: {:?}", node.berth_cni_rules());
}
