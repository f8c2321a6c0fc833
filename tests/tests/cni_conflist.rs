//! A network config list run as a runtime runs it: ADD each plugin in order, each getting
//! the previous plugin's result as `prevResult`; DEL in reverse order with the final result.
//! Reference `loopback` and `portmap` (Debian containernetworking-plugins, CNI ≤ 1.0.0)
//! beside berth-bridge + berth-ipam, and beside berth-portmap. The node runs in a fresh
//! netns, pods in further netns; traffic only inside them.

use std::net::SocketAddr;
use std::path::Path;

use berth_tests::cni::{allocations, Call};
use berth_tests::netns::{Netns, Node};
use berth_tests::traffic::{tcp_ask, udp_ask, Server};
use berth_tests::{json, Value};


const GW: &str = "10.77.0.1";

fn reference_present() -> bool {
    for p in ["/usr/lib/cni/loopback", "/usr/lib/cni/portmap", "/usr/sbin/nft", "/usr/sbin/iptables"] {
        if !Path::new(p).is_file() {
            berth_tests::skip(format_args!("{p} missing (Debian containernetworking-plugins, nftables, iptables)"));
            return false;
        }
    }
    true
}

/// The conflist: loopback, berth-bridge (with berth-ipam), then `portmap_type`.
fn conflist(node: &Node, portmap_type: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "clnet",
        "plugins": [
            {"type": "loopback"},
            {"type": "berth-bridge", "bridge": "cni-cl0", "isGateway": true, "hairpinMode": true,
             "ipam": {"type": "berth-ipam", "ranges": [[{"subnet": "10.77.0.0/24", "gateway": GW}]],
                      "dataDir": node.tmp().join("ipam")}},
            {"type": portmap_type, "capabilities": {"portMappings": true}},
        ],
    })
}

/// One plugin's config as a runtime builds it from the list: the list's name and version,
/// `runtimeConfig` for the capabilities it declares, and `prevResult`.
fn plugin_conf(list: &Value, plugin: &Value, prev: Option<&Value>, port_mappings: &Value) -> Value {
    let mut c = plugin.clone();
    c["cniVersion"] = list["cniVersion"].clone();
    c["name"] = list["name"].clone();
    if plugin["capabilities"]["portMappings"] == true {
        c["runtimeConfig"] = json!({"portMappings": port_mappings});
    }
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

fn plugins(list: &Value) -> Vec<Value> {
    list["plugins"].as_array().unwrap().clone()
}

/// ADD of the whole list; returns the final result.
fn add_list(node: &Node, list: &Value, cid: &str, pod: &Netns, maps: &Value) -> Value {
    let mut prev: Option<Value> = None;
    for p in plugins(list) {
        let t = p["type"].as_str().unwrap().to_string();
        let conf = plugin_conf(list, &p, prev.as_ref(), maps);
        // Reference plugins by name come from /usr/lib/cni, ours from BERTH_BIN_DIR.
        let r = Call::new(&t, "ADD").id(cid).ifname("eth0").netns(pod.path()).conf(&conf).in_netns(node.path()).run().ok();
        assert_eq!(r["cniVersion"], list["cniVersion"], "{t} answers in the list's version: {r}");
        prev = Some(r);
    }
    prev.unwrap()
}

/// DEL of the whole list in reverse order, each with the final ADD result.
fn del_list(node: &Node, list: &Value, cid: &str, pod: &Netns, maps: &Value, result: &Value) {
    for p in plugins(list).iter().rev() {
        let t = p["type"].as_str().unwrap().to_string();
        let conf = plugin_conf(list, p, Some(result), maps);
        Call::new(&t, "DEL").id(cid).ifname("eth0").netns(pod.path()).conf(&conf).in_netns(node.path()).run().ok();
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn lo_is_up(pod: &Netns) -> bool {
    let v = pod.ip_json("link show dev lo");
    v[0]["flags"].as_array().is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// Runs the list for a serving pod and a client pod, checks the hostPort from the node,
/// 127.0.0.1 and the other pod, then DELs everything.
fn run(portmap_type: &str, mapping_rules: impl Fn(&Netns) -> usize) {
    if !reference_present() {
        return;
    }
    let Some(node) = Node::new() else { return };
    let list = conflist(&node, portmap_type);
    let maps = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
    ]);
    let (p1, p2) = (node.pod(), node.pod());
    for p in [&p1, &p2] {
        p.sh_ok("ip link set lo down"); // the loopback plugin must bring it up
    }
    let r1 = add_list(&node, &list, "cl-1", &p1, &maps);
    let r2 = add_list(&node, &list, "cl-2", &p2, &json!([]));
    assert!(lo_is_up(&p1) && lo_is_up(&p2), "loopback plugin left lo down");
    let ip1 = r1["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
    assert!(ip1.starts_with("10.77.0."), "final result is the bridge's: {r1}");
    assert!(r2["ips"][0]["address"].as_str().unwrap().starts_with("10.77.0."), "{r2}");
    assert!(mapping_rules(&node) > 0, "{portmap_type}: no rules after ADD");

    let srv = Server::start(&p1.path(), "pod1", 80, 53);
    let want = format!("pod1 {GW}\n");
    assert_eq!(tcp_ask(&node.path(), sa(&format!("{GW}:8080"))).expect("node -> hostPort"), want);
    assert_eq!(tcp_ask(&node.path(), sa("127.0.0.1:8080")).expect("node -> 127.0.0.1:hostPort"), want);
    assert_eq!(udp_ask(&node.path(), sa(&format!("{GW}:5353"))).expect("node -> udp hostPort"), want);
    let from_pod = tcp_ask(&p2.path(), sa(&format!("{GW}:8080"))).expect("pod -> hostPort");
    assert!(from_pod.starts_with("pod1 10.77.0."), "{from_pod}");
    assert_eq!(tcp_ask(&p1.path(), sa("127.0.0.1:80")).expect("pod's own lo"), "pod1 127.0.0.1\n");
    drop(srv);

    del_list(&node, &list, "cl-1", &p1, &maps, &r1);
    del_list(&node, &list, "cl-2", &p2, &json!([]), &r2);
    assert_eq!(mapping_rules(&node), 0, "{portmap_type}: rules left after DEL");
    assert!(tcp_ask(&node.path(), sa(&format!("{GW}:8080"))).is_err(), "hostPort still mapped after DEL");
    assert_eq!(node.links_of("veth"), Vec::<String>::new());
    assert_eq!(allocations(&node.tmp().join("ipam")), Vec::<String>::new());
}

/// Rules berth-portmap added (table inet berth-cni, hostport chains).
fn berth_rules(node: &Netns) -> usize {
    node.berth_cni_rules().iter().filter(|(chain, _, _)| chain.starts_with("hostport-")).count()
}

/// Per-container DNAT rules of the reference portmap (iptables chains `CNI-DN-*`).
fn reference_rules(node: &Netns) -> usize {
    node.sh_ok("iptables -t nat -S").lines().filter(|l| l.starts_with("-A CNI-DN-")).count()
}

#[test]
fn loopback_berth_bridge_ipam_and_reference_portmap() {
    run("portmap", reference_rules);
}

#[test]
fn loopback_berth_bridge_ipam_and_berth_portmap() {
    run("berth-portmap", berth_rules);
}
