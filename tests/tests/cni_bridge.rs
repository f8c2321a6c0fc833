//! berth-bridge: the whole node in a fresh netns, pods as further netns (no uplink).
//! Addressing by berth-ipam (with the reference host-local: cni_interop.rs).

use std::path::Path;

use berth_tests::cni::{allocations, Call};
use berth_tests::netns::{Netns, Node};
use berth_tests::{json, Value};

const IPAM: &str = "berth-ipam";

/// berth-bridge `command` for the attachment (`cid`, eth0) of the pod netns at `pod`, run
/// inside the node's netns as the node's runtime would.
fn bridge(node: &Node, command: &str, cid: &str, pod: &Path) -> Call {
    Call::new("berth-bridge", command).id(cid).ifname("eth0").netns(pod).in_netns(node.path())
}

fn conf(node: &Node, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.1.0",
        "name": "testnet",
        "type": "berth-bridge",
        "bridge": "br-berth",
        "ipam": {"type": IPAM, "ranges": [[{"subnet": "10.22.0.0/24"}]], "dataDir": node.tmp().join("ipam")},
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn add(node: &Node, c: &Value, cid: &str, pod: &Netns) -> Value {
    bridge(&node, "ADD", cid, &pod.path()).conf(c).run().ok()
}

fn del(node: &Node, c: &Value, cid: &str, netns: Option<&Path>) {
    let mut call = Call::new("berth-bridge", "DEL").id(cid).ifname("eth0").conf(c).in_netns(node.path());
    if let Some(n) = netns {
        call = call.netns(n);
    }
    assert_eq!(call.run().ok(), Value::Null);
}

/// Nothing of any attachment left: no veth on the node, no allocation.
#[track_caller]
fn assert_clean(node: &Node) {
    // up0 is the test's own link to the "outside" netns.
    let veths: Vec<String> = node.links_of("veth").into_iter().filter(|l| l != "up0").collect();
    assert_eq!(veths, Vec::<String>::new(), "veths left on the node");
    assert_eq!(allocations(&node.tmp().join("ipam")), Vec::<String>::new(), "IPAM allocations left");
}

fn ip_of(r: &Value) -> String {
    r["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// The fixture itself: a node netns with a bridge, two pods wired by hand, ping
/// over the bridge, and nothing left afterwards.
#[test]
fn fixture_node_and_pods_talk_over_a_hand_made_bridge() {
    let Some(node) = Node::new() else { return };
    let (a, b) = (node.pod(), node.pod());
    node.sh_ok("ip link add br0 type bridge && ip addr add 10.99.0.1/24 dev br0 && ip link set br0 up");
    for (i, p) in [&a, &b].into_iter().enumerate() {
        let n = i + 2;
        node.sh_ok(&format!(
            "ip link add vh{n} type veth peer name eth0 netns {} && ip link set vh{n} master br0 up",
            p.path().display()
        ));
        p.sh_ok(&format!("ip addr add 10.99.0.{n}/24 dev eth0 && ip link set eth0 up"));
    }
    assert!(a.ping("10.99.0.3"), "pod a -> pod b");
    assert!(b.ping("10.99.0.1"), "pod b -> node (bridge)");
    assert_eq!(a.addrs("eth0"), vec!["10.99.0.2/24".to_string()]);
    assert_eq!(node.links_of("veth").len(), 2);
}

#[test]
fn two_pods_get_addresses_routes_mtu_mac_hairpin_and_talk() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isDefaultGateway": true, "mtu": 1400, "hairpinMode": true, "promiscMode": true}));
    let (p1, p2) = (node.pod(), node.pod());
    let mut c1 = c.clone();
    c1["runtimeConfig"] = json!({"mac": "0a:58:0a:16:00:aa"});
    let r1 = add(&node, &c1, "pod1", &p1);
    let r2 = add(&node, &c, "pod2", &p2);

    // The result: bridge, host veth, pod interface in its sandbox; ips on interface 2.
    assert_eq!(r1["cniVersion"], "1.1.0");
    let ifs = r1["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 3, "{r1}");
    assert_eq!(ifs[0]["name"], "br-berth");
    assert!(ifs[1]["name"].as_str().unwrap().starts_with("veth"));
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[2]["sandbox"], p1.path().display().to_string());
    assert_eq!(ifs[2]["mac"], "0a:58:0a:16:00:aa");
    assert_eq!(r1["ips"][0]["interface"], 2);
    assert_eq!(r1["ips"][0]["gateway"], "10.22.0.1");
    let (ip1, ip2) = (ip_of(&r1), ip_of(&r2));
    assert!(ip1.starts_with("10.22.0.") && ip2.starts_with("10.22.0.") && ip1 != ip2, "{ip1} {ip2}");

    // In the pods: the address, the default route via the bridge, MTU, MAC, lo.
    assert_eq!(p1.addrs("eth0"), vec![format!("{ip1}/24")]);
    assert_eq!(p2.addrs("eth0"), vec![format!("{ip2}/24")]);
    let routes = p1.routes();
    assert!(
        routes.iter().any(|r| r["dst"] == "default" && r["gateway"] == "10.22.0.1" && r["dev"] == "eth0"),
        "default route via the gateway: {routes:?}"
    );
    let l = p1.link("eth0").unwrap();
    assert_eq!(l["mtu"], 1400);
    assert_eq!(l["address"], "0a:58:0a:16:00:aa");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(p2.link("eth0").unwrap()["mtu"], 1400);

    // On the node: the gateway on the bridge, ports with hairpin on, promisc bridge.
    assert_eq!(node.addrs("br-berth"), vec!["10.22.0.1/24".to_string()]);
    let br = node.link("br-berth").unwrap();
    assert_eq!(br["mtu"], 1400);
    assert!(br["promiscuity"].as_u64().unwrap() > 0, "{br}");
    let host = node.link(ifs[1]["name"].as_str().unwrap()).unwrap();
    assert_eq!(host["master"], "br-berth");
    assert_eq!(host["linkinfo"]["info_slave_data"]["hairpin"], true, "{host}");
    assert_eq!(node.sh_ok("cat /proc/sys/net/ipv4/ip_forward").trim(), "1");

    assert!(p1.ping(&ip2), "pod1 -> pod2");
    assert!(p2.ping(&ip1), "pod2 -> pod1");
    assert!(p1.ping("10.22.0.1"), "pod1 -> node (bridge gateway)");
    assert!(node.ping(&ip2), "node -> pod2");

    // CHECK passes on an intact attachment.
    let mut chk = c1.clone();
    chk["prevResult"] = r1.clone();
    bridge(&node, "CHECK", "pod1", &p1.path()).conf(&chk).run().ok();

    del(&node, &c1, "pod1", Some(&p1.path()));
    del(&node, &c, "pod2", Some(&p2.path()));
    // DEL twice succeeds.
    del(&node, &c1, "pod1", Some(&p1.path()));
    del(&node, &c, "pod2", Some(&p2.path()));
    assert!(p1.link("eth0").is_none());
    assert_clean(&node);
}

#[test]
fn del_succeeds_after_the_pod_netns_is_gone() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isGateway": true}));
    let p = node.pod();
    add(&node, &c, "gone", &p);
    node.delete_pod(&p);
    del(&node, &c, "gone", Some(&p.path()));
    del(&node, &c, "gone", None);
    // The kernel destroys a deleted netns (and the veth pair with it) asynchronously.
    berth_tests::poll(std::time::Duration::from_secs(10), || node.links_of("veth").is_empty());
    assert_clean(&node);
}

#[test]
fn check_detects_a_removed_address() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isDefaultGateway": true}));
    let p = node.pod();
    let r = add(&node, &c, "chk", &p);
    let mut chk = c.clone();
    chk["prevResult"] = r.clone();
    bridge(&node, "CHECK", "chk", &p.path()).conf(&chk).run().ok();
    let addr = r["ips"][0]["address"].as_str().unwrap().to_string();
    p.sh_ok(&format!("ip addr del {addr} dev eth0"));
    bridge(&node, "CHECK", "chk", &p.path()).conf(&chk).run().err(999, &[&addr, "eth0"]);
    // CHECK without prevResult is a config error.
    bridge(&node, "CHECK", "chk", &p.path()).conf(&c).run().err(7, &["prevResult"]);
    del(&node, &c, "chk", Some(&p.path()));
    assert_clean(&node);
}

#[test]
fn missing_netns_is_a_clear_error_and_leaves_nothing() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isGateway": true}));
    let missing = node.missing_pod_path();
    let o = bridge(&node, "ADD", "nons", &missing).conf(&c).run();
    o.err(4, &["CNI_NETNS", &missing.display().to_string()]);
    assert!(node.link("br-berth").is_none(), "no bridge made for a failed ADD");
    assert_clean(&node);
}

#[test]
fn subnet_overlapping_the_node_is_refused_and_leaves_nothing() {
    let Some(node) = Node::new() else { return };
    node.sh_ok("ip link add up0 type bridge && ip addr add 10.22.0.200/16 dev up0 && ip link set up0 up");
    let c = conf(&node, json!({"isGateway": true}));
    let p = node.pod();
    bridge(&node, "ADD", "ovl", &p.path()).conf(&c).run().err(7, &["10.22.0.0/24", "overlaps", "up0"]);
    assert!(p.link("eth0").is_none(), "no pod interface left");
    assert!(node.link("br-berth").is_none(), "no bridge left");
    assert_clean(&node);
}

#[test]
fn gateway_address_conflict_needs_force_address() {
    let Some(node) = Node::new() else { return };
    node.sh_ok("ip link add br-berth type bridge && ip addr add 10.22.0.9/24 dev br-berth");
    let c = conf(&node, json!({"isGateway": true}));
    let p = node.pod();
    bridge(&node, "ADD", "f", &p.path()).conf(&c).run().err(7, &["10.22.0.9/24", "forceAddress"]);
    assert!(p.link("eth0").is_none());
    assert_clean(&node);
    let c = conf(&node, json!({"isGateway": true, "forceAddress": true}));
    add(&node, &c, "f", &p);
    assert_eq!(node.addrs("br-berth"), vec!["10.22.0.1/24".to_string()]);
    del(&node, &c, "f", Some(&p.path()));
    assert_clean(&node);
}

#[test]
fn vlan_is_refused_where_the_kernel_cannot_filter() {
    let Some(node) = Node::new() else { return };
    // Probe as the plugin does: a bridge with VLAN filtering.
    let supported = node.sh("ip link add vprobe type bridge vlan_filtering 1 && ip link del vprobe").status.success();
    if supported {
        berth_tests::skip(format_args!("this kernel has bridge VLAN filtering; the refusal path cannot be shown here"));
        return;
    }
    let c = conf(&node, json!({"vlan": 100}));
    let p = node.pod();
    bridge(&node, "ADD", "v", &p.path()).conf(&c).run().err(999, &["vlan", "VLAN filtering"]);
    assert!(p.link("eth0").is_none());
    assert!(node.link("br-berth").is_none(), "no bridge left");
    assert_clean(&node);
}

#[test]
fn macspoofchk_rule_is_added_and_removed() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"macspoofchk": true, "isGateway": true}));
    let p = node.pod();
    let r = add(&node, &c, "spoof", &p);
    let host = r["interfaces"][1]["name"].as_str().unwrap();
    let mac = r["interfaces"][2]["mac"].as_str().unwrap();
    let rules = node.nft_ruleset();
    assert!(rules.contains(host) && rules.contains(mac) && rules.contains("berth:testnet:spoof:eth0"), "{rules}");
    // A frame with a forged source MAC is dropped: the pod changes its MAC and loses the node.
    assert!(p.ping("10.22.0.1"), "pod -> gateway with its own MAC");
    p.sh_ok("ip link set eth0 address 0a:58:0a:16:00:ee");
    assert!(!p.ping("10.22.0.1"), "a forged source MAC must be dropped");
    del(&node, &c, "spoof", Some(&p.path()));
    assert!(!node.nft_ruleset().contains("berth:testnet:"), "{}", node.nft_ruleset());
    assert_clean(&node);
}

#[test]
fn bad_config_is_refused_before_anything_is_made() {
    let Some(node) = Node::new() else { return };
    let p = node.pod();
    let c = conf(&node, json!({"bridge": "this-name-is-too-long"}));
    bridge(&node, "ADD", "bad", &p.path()).conf(&c).run().err(7, &["bridge"]);
    let mut c = conf(&node, json!({}));
    c.as_object_mut().unwrap().remove("ipam");
    bridge(&node, "ADD", "bad", &p.path()).conf(&c).run().err(7, &["ipam"]);
    assert!(p.link("eth0").is_none());
    assert_clean(&node);
}

#[test]
fn dual_stack_pods_talk_over_ipv4_and_ipv6() {
    let Some(node) = Node::new() else { return };
    let mut c = conf(&node, json!({"isDefaultGateway": true}));
    c["ipam"]["ranges"] = json!([[{"subnet": "10.23.0.0/24"}], [{"subnet": "fd00:23::/64"}]]);
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = add(&node, &c, "ds1", &p1);
    let r2 = add(&node, &c, "ds2", &p2);
    let v6 = |r: &Value| {
        r["ips"].as_array().unwrap().iter().map(|i| i["address"].as_str().unwrap().to_string()).find(|a| a.contains(':')).unwrap()
    };
    let (a1, a2) = (v6(&r1), v6(&r2));
    assert!(p1.addrs("eth0").contains(&a1), "{:?}", p1.addrs("eth0"));
    // DAD is off on the pod side (the address is the pod's alone), so it is usable at once.
    assert_eq!(p1.sh_ok("cat /proc/sys/net/ipv6/conf/eth0/accept_dad").trim(), "0");
    let routes = p1.routes();
    assert!(routes.iter().any(|r| r["dst"] == "default" && r["gateway"] == "fd00:23::1"), "{routes:?}");
    assert!(node.addrs("br-berth").contains(&"fd00:23::1/64".to_string()), "{:?}", node.addrs("br-berth"));
    let ip2 = a2.split('/').next().unwrap();
    // The bridge's own v6 address may still be in DAD; pod to pod needs none of it.
    assert!(berth_tests::poll(std::time::Duration::from_secs(5), || p1.ping(ip2)), "pod1 -> pod2 over IPv6");
    assert!(p2.ping(&ip_of(&r1)), "pod2 -> pod1 over IPv4");
    del(&node, &c, "ds1", Some(&p1.path()));
    del(&node, &c, "ds2", Some(&p2.path()));
    assert_clean(&node);
}

#[test]
fn parallel_adds_share_one_bridge_and_get_unique_addresses() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isGateway": true}));
    let pods: Vec<Netns> = (0..16).map(|_| node.pod()).collect();
    let results: Vec<Value> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (node, c) = (&node, &c);
                s.spawn(move || Call::new("berth-bridge", "ADD").id(&format!("par{i}")).ifname("eth0").netns(&p.path()).conf(c).in_netns(node.path()).run().ok())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = results.iter().map(ip_of).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), pods.len(), "unique addresses: {ips:?}");
    assert_eq!(node.links_of("veth").len(), pods.len());
    assert_eq!(node.links_of("bridge"), vec!["br-berth".to_string()]);
    assert_eq!(node.addrs("br-berth"), vec!["10.22.0.1/24".to_string()]);
    assert!(pods[0].ping(&ips[ips.len() - 1]) || pods[0].ping(&ips[0]), "pods talk");
    std::thread::scope(|s| {
        for (i, p) in pods.iter().enumerate() {
            let (node, c) = (&node, &c);
            s.spawn(move || del(node, c, &format!("par{i}"), Some(&p.path())));
        }
    });
    assert_clean(&node);
}

#[test]
fn gc_releases_stale_attachments_and_status_answers() {
    let Some(node) = Node::new() else { return };
    let c = conf(&node, json!({"isGateway": true, "macspoofchk": true}));
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = add(&node, &c, "keep", &p1);
    add(&node, &c, "stale", &p2);
    assert_eq!(allocations(&node.tmp().join("ipam")).len(), 2);
    Call::new("berth-bridge", "STATUS").conf(&c).in_netns(node.path()).run().ok();

    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    Call::new("berth-bridge", "GC").conf(&gc).in_netns(node.path()).run().ok();
    assert_eq!(allocations(&node.tmp().join("ipam")), vec![ip_of(&r1)], "only the valid attachment keeps its address");
    let rules = node.nft_ruleset();
    assert!(rules.contains("berth:testnet:keep:eth0") && !rules.contains("berth:testnet:stale:eth0"), "{rules}");

    // GC is for the plugin's own state: the stale pod's link is the runtime's to DEL.
    del(&node, &c, "stale", Some(&p2.path()));
    del(&node, &c, "keep", Some(&p1.path()));
    assert!(!node.nft_ruleset().contains("berth:testnet:"), "{}", node.nft_ruleset());
    assert_clean(&node);
}

#[test]
fn a_failure_late_in_add_undoes_everything() {
    let Some(node) = Node::new() else { return };
    // The veth, addresses and bridge exist by the time the route is refused (its
    // gateway is not on any link of the pod): ADD must take all of it back.
    let mut c = conf(&node, json!({"isGateway": true}));
    c["ipam"]["routes"] = json!([{"dst": "10.40.0.0/16", "gw": "192.168.77.1"}]);
    let p = node.pod();
    let o = bridge(&node, "ADD", "late", &p.path()).conf(&c).run();
    o.err(999, &["10.40.0.0/16", "192.168.77.1"]);
    assert!(p.link("eth0").is_none(), "pod interface left behind");
    assert!(node.link("br-berth").is_none(), "bridge made by the failed ADD left behind");
    assert_clean(&node);
}

/// A second netns plays the outside world, wired to the node by a veth; it has
/// no route back to the pod subnet, so a pod's ping gets an answer only when
/// the node masquerades it.
fn outside(node: &Node) -> Netns {
    let out = node.pod();
    node.sh_ok(&format!(
        "ip link add up0 type veth peer name eth0 netns {} && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up",
        out.path().display()
    ));
    out.sh_ok("ip addr add 10.99.0.2/24 dev eth0 && ip link set eth0 up");
    out
}

#[test]
fn ip_masq_rules_follow_add_check_del_and_gc() {
    let Some(node) = Node::new() else { return };
    let world = outside(&node);
    let c = conf(&node, json!({"isDefaultGateway": true, "ipMasq": true}));
    let (p1, p2) = (node.pod(), node.pod());
    let r1 = add(&node, &c, "m1", &p1);
    add(&node, &c, "m2", &p2);
    let rules = node.nft_ruleset();
    assert!(rules.contains("table inet berth-cni"), "{rules}");
    assert!(rules.contains(&format!("{} ", ip_of(&r1))) && rules.contains("masquerade"), "{rules}");
    assert!(rules.contains("berth:testnet:m1:eth0") && rules.contains("berth:testnet:m2:eth0"), "{rules}");
    assert!(p1.ping("10.99.0.2"), "masqueraded pod reaches the outside netns");

    let mut chk = c.clone();
    chk["prevResult"] = r1.clone();
    bridge(&node, "CHECK", "m1", &p1.path()).conf(&chk).run().ok();

    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "m1", "ifname": "eth0"}]);
    Call::new("berth-bridge", "GC").conf(&gc).in_netns(node.path()).run().ok();
    let rules = node.nft_ruleset();
    assert!(rules.contains("berth:testnet:m1:eth0") && !rules.contains("berth:testnet:m2:eth0"), "{rules}");
    // CHECK notices m1's rule going missing.
    // "masquerade" is an nft keyword: the chain is named through the JSON interface.
    node.sh_ok(r#"echo '{"nftables":[{"flush":{"chain":{"family":"inet","table":"berth-cni","name":"masquerade"}}}]}' | nft -j -f -"#);
    bridge(&node, "CHECK", "m1", &p1.path()).conf(&chk).run().err(999, &["masquerade", "berth:testnet:m1:eth0"]);
    assert!(!p1.ping("10.99.0.2"), "without the rule the outside cannot answer");

    for (id, p) in [("m1", &p1), ("m2", &p2)] {
        del(&node, &c, id, Some(&p.path()));
        del(&node, &c, id, Some(&p.path()));
    }
    assert!(!node.nft_ruleset().contains("berth:testnet:"), "{}", node.nft_ruleset());
    assert_clean(&node);
    drop(world);
}

#[test]
fn without_ip_masq_the_outside_cannot_answer_and_a_failed_add_leaves_no_rule() {
    let Some(node) = Node::new() else { return };
    let _world = outside(&node);
    let c = conf(&node, json!({"isDefaultGateway": true}));
    let p = node.pod();
    add(&node, &c, "plain", &p);
    assert!(!p.ping("10.99.0.2"), "no masquerade: replies have no way back");
    assert!(!node.nft_ruleset().contains("berth:"), "{}", node.nft_ruleset());
    del(&node, &c, "plain", Some(&p.path()));
    // A late failure after the masquerade rule was added takes it back too.
    let mut c = conf(&node, json!({"isGateway": true, "ipMasq": true, "macspoofchk": true}));
    c["ipam"]["routes"] = json!([{"dst": "10.40.0.0/16", "gw": "192.168.77.1"}]);
    bridge(&node, "ADD", "late", &p.path()).conf(&c).run().err(999, &["192.168.77.1"]);
    assert!(!node.nft_ruleset().contains("berth:"), "{}", node.nft_ruleset());
    assert_clean(&node);
}
