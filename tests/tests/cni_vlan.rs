//! berth-bridge's `vlan`: bridge VLAN filtering, one untagged VLAN per pod port, the
//! gateway on `<bridge>.<vlan>` as the reference plugin puts it. Needs a kernel with bridge
//! VLAN filtering: runs in the VM (scripts/vm-test, Debian's 6.1 kernel); where the kernel
//! lacks it (this host) it prints SKIP, and cni_bridge's
//! `vlan_is_refused_where_the_kernel_cannot_filter` shows the refusal instead.
//! The whole node is a fresh netns with no uplink, pods are further netns.

use std::collections::BTreeMap;
use std::path::Path;

use berth_tests::cni::{allocations, ip_of, Call};
use berth_tests::netns::{Netns, Node};
use berth_tests::{json, Value};

const BR: &str = "br-vlan";

fn bridge(node: &Node, command: &str, cid: &str, pod: &Path) -> Call {
    Call::new("berth-bridge", command).id(cid).ifname("eth0").netns(pod).in_netns(node.path())
}

/// Network `name` on bridge br-vlan, VLAN `vid`, gateway on, its own subnet.
fn conf(node: &Node, name: &str, vid: u16, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": name,
        "type": "berth-bridge",
        "bridge": BR,
        "vlan": vid,
        "isGateway": true,
        "ipam": {"type": "berth-ipam", "ranges": [[{"subnet": subnet}]], "dataDir": node.tmp().join("ipam")},
    })
}

fn add(node: &Node, c: &Value, cid: &str, pod: &Netns) -> Value {
    bridge(node, "ADD", cid, &pod.path()).conf(c).run().ok()
}

fn del(node: &Node, c: &Value, cid: &str, pod: &Netns) {
    assert_eq!(bridge(node, "DEL", cid, &pod.path()).conf(c).run().ok(), Value::Null);
}

/// A fresh node whose kernel can filter VLANs on a bridge (probed as the plugin needs it:
/// a bridge with vlan_filtering on); None, after saying why, when not root or it cannot.
fn vlan_node() -> Option<Node> {
    let node = Node::new()?;
    let o = node.sh("ip link add vprobe type bridge vlan_filtering 1 && ip link del vprobe");
    if !o.status.success() {
        let why = String::from_utf8_lossy(&o.stderr).trim().to_string();
        berth_tests::skip(format_args!("this kernel has no bridge VLAN filtering ({why}); the refusal is tested in cni_bridge"));
        return None;
    }
    Some(node)
}

/// `bridge -j vlan show` in the node: port name -> [(vid, flags)].
fn vlans(node: &Node) -> BTreeMap<String, Vec<(u64, Vec<String>)>> {
    let v: Value = serde_json::from_str(&node.sh_ok("bridge -j vlan show")).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let vl = p["vlans"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| {
                            let flags = e["flags"].as_array().map(|f| f.iter().map(|x| x.as_str().unwrap().to_string()).collect()).unwrap_or_default();
                            (e["vlan"].as_u64().unwrap(), flags)
                        })
                        .collect()
                })
                .unwrap_or_default();
            (p["ifname"].as_str().unwrap().to_string(), vl)
        })
        .collect()
}

fn access(vid: u64) -> Vec<(u64, Vec<String>)> {
    vec![(vid, vec!["PVID".to_string(), "Egress Untagged".to_string()])]
}

/// The bridge port of the vlan gateway `<bridge>.<vid>` (its veth peer).
fn gateway_port(node: &Node, gw: &str) -> String {
    let l = node.link(gw).unwrap_or_else(|| panic!("{gw} missing"));
    assert_eq!(l["linkinfo"]["info_kind"], "veth", "{l}");
    let port = l["link"].as_str().unwrap_or_else(|| panic!("{gw} has no peer in the node: {l}")).to_string();
    assert_eq!(node.link(&port).unwrap()["master"], BR);
    port
}

#[test]
fn vlan_pods_talk_within_their_vlan_only_and_reach_their_gateway() {
    let Some(node) = vlan_node() else { return };
    let c10 = conf(&node, "vl10", 10, "10.77.10.0/24");
    let c20 = conf(&node, "vl20", 20, "10.77.20.0/24");
    let (a, b, x) = (node.pod(), node.pod(), node.pod());
    let ra = add(&node, &c10, "a", &a);
    let rb = add(&node, &c10, "b", &b);
    let rx = add(&node, &c20, "x", &x);
    let (ip_a, ip_b, ip_x) = (ip_of(&ra, 0), ip_of(&rb, 0), ip_of(&rx, 0));
    assert!(ip_a.starts_with("10.77.10.") && ip_b.starts_with("10.77.10.") && ip_x.starts_with("10.77.20."), "{ip_a} {ip_b} {ip_x}");

    // The result: bridge, host veth, pod interface, then the vlan gateway (reference order).
    let ifs = ra["interfaces"].as_array().unwrap();
    assert_eq!(ifs.len(), 4, "{ra}");
    assert_eq!(ifs[0]["name"], BR);
    assert_eq!(ifs[2]["name"], "eth0");
    assert_eq!(ifs[3]["name"], "br-vlan.10");
    assert_eq!(ra["ips"][0]["interface"], 2);
    assert_eq!(ra["ips"][0]["gateway"], "10.77.10.1");
    assert_eq!(rx["interfaces"][3]["name"], "br-vlan.20");

    // VLAN filtering on; each port in its VLAN only, untagged (VLAN 1 dropped).
    let br = node.link(BR).unwrap();
    assert_eq!(br["linkinfo"]["info_data"]["vlan_filtering"], 1, "{br}");
    let host = |r: &Value| r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let (gw10, gw20) = (gateway_port(&node, "br-vlan.10"), gateway_port(&node, "br-vlan.20"));
    let v = vlans(&node);
    assert_eq!(v[&host(&ra)], access(10), "{v:?}");
    assert_eq!(v[&host(&rb)], access(10), "{v:?}");
    assert_eq!(v[&host(&rx)], access(20), "{v:?}");
    assert_eq!(v[&gw10], access(10), "{v:?}");
    assert_eq!(v[&gw20], access(20), "{v:?}");

    // Gateways: on <bridge>.<vlan>, not on the bridge (whose own port is VLAN 1).
    assert_eq!(node.addrs("br-vlan.10"), vec!["10.77.10.1/24".to_string()]);
    assert_eq!(node.addrs("br-vlan.20"), vec!["10.77.20.1/24".to_string()]);
    assert_eq!(node.addrs(BR), Vec::<String>::new());

    // Within VLAN 10, and each pod to its gateway.
    assert!(a.ping(&ip_b), "a -> b (vlan 10)");
    assert!(b.ping(&ip_a), "b -> a (vlan 10)");
    assert!(a.ping("10.77.10.1"), "a -> its gateway br-vlan.10");
    assert!(x.ping("10.77.20.1"), "x -> its gateway br-vlan.20");
    // Across VLANs at layer 2: x with an address of VLAN 10's subnet still cannot reach
    // a pod or the gateway of VLAN 10 (its frames are VLAN 20 on the bridge).
    x.sh_ok("ip addr add 10.77.10.99/24 dev eth0");
    assert!(!x.ping(&ip_a), "x (vlan 20) must not reach a (vlan 10)");
    assert!(!x.ping("10.77.10.1"), "x (vlan 20) must not reach vlan 10's gateway");
    assert!(!a.ping("10.77.10.99"), "a (vlan 10) must not reach x (vlan 20)");
    x.sh_ok("ip addr del 10.77.10.99/24 dev eth0");

    // preserveDefaultVlan (explicit; the reference's default): VLAN 1 kept, egress untagged.
    let mut c20p = c20.clone();
    c20p["preserveDefaultVlan"] = json!(true);
    let y = node.pod();
    let ry = add(&node, &c20p, "y", &y);
    let mut vy = vlans(&node)[&host(&ry)].clone();
    vy.sort();
    assert_eq!(vy, vec![(1, vec!["Egress Untagged".to_string()]), (20, vec!["PVID".to_string(), "Egress Untagged".to_string()])]);
    assert!(y.ping(&ip_x), "y -> x (vlan 20)");

    // CHECK passes on a vlan attachment.
    let mut chk = c10.clone();
    chk["prevResult"] = ra.clone();
    assert_eq!(bridge(&node, "CHECK", "a", &a.path()).conf(&chk).run().ok(), Value::Null);

    // DEL all (and again): pod ports and their VLAN entries go, allocations go. The
    // bridge and the gateway veths with their addresses stay, as the reference leaves them.
    for (c, id, p) in [(&c10, "a", &a), (&c10, "b", &b), (&c20, "x", &x), (&c20p, "y", &y)] {
        del(&node, c, id, p);
        del(&node, c, id, p);
        assert!(p.link("eth0").is_none());
    }
    let mut veths = node.links_of("veth");
    veths.sort();
    let mut want = vec!["br-vlan.10".to_string(), "br-vlan.20".to_string(), gw10.clone(), gw20.clone()];
    want.sort();
    assert_eq!(veths, want, "only the gateway veths are left");
    let v = vlans(&node);
    let ports: Vec<String> = v.keys().cloned().collect();
    let mut want = vec![BR.to_string(), gw10.clone(), gw20.clone()];
    want.sort();
    assert_eq!(ports, want, "VLAN entries left: {v:?}");
    assert_eq!(v[BR], access(1), "the bridge's own VLAN entry is the kernel's default: {v:?}");
    assert_eq!(v[&gw10], access(10));
    assert_eq!(v[&gw20], access(20));
    assert_eq!(allocations(&node.tmp().join("ipam")), Vec::<String>::new(), "IPAM allocations left");

    // A new pod reuses the gateway: no second br-vlan.10, same address.
    let p2 = node.pod();
    let r2 = add(&node, &c10, "a2", &p2);
    assert_eq!(r2["interfaces"][3]["name"], "br-vlan.10");
    assert_eq!(gateway_port(&node, "br-vlan.10"), gw10);
    assert!(p2.ping("10.77.10.1"));
    del(&node, &c10, "a2", &p2);
    assert_eq!(node.links_of("veth").len(), 4);
}

fn is_up(node: &Node, dev: &str) -> bool {
    let l = node.link(dev).unwrap_or_else(|| panic!("{dev} missing"));
    l["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

/// A gateway left broken (by a failed or killed ADD, or by hand) is repaired by the next
/// ADD, not reused as it is: port back in the bridge and its VLAN, both ends up, address back.
#[test]
fn vlan_gateway_left_broken_is_repaired_by_the_next_add() {
    let Some(node) = vlan_node() else { return };
    let c10 = conf(&node, "vl10", 10, "10.77.10.0/24");
    let gw = "br-vlan.10";
    let whole = |port: &str| {
        assert_eq!(gateway_port(&node, gw), port);
        assert_eq!(vlans(&node)[port], access(10), "{:?}", vlans(&node));
        assert!(is_up(&node, gw) && is_up(&node, port), "both ends up");
        assert_eq!(node.addrs(gw), vec!["10.77.10.1/24".to_string()]);
    };
    let a = node.pod();
    add(&node, &c10, "a", &a);
    let port = gateway_port(&node, gw);
    whole(&port);

    // The port out of its VLAN, both ends down.
    node.sh_ok(&format!("bridge vlan del dev {port} vid 10 && ip link set {port} down && ip link set {gw} down"));
    let b = node.pod();
    add(&node, &c10, "b", &b);
    whole(&port);
    assert!(b.ping("10.77.10.1"), "b -> the repaired gateway");
    assert!(a.ping("10.77.10.1"), "a -> the repaired gateway");

    // The port off the bridge, the address gone.
    node.sh_ok(&format!("ip link set {port} nomaster && ip addr flush dev {gw}"));
    let c = node.pod();
    add(&node, &c10, "c", &c);
    whole(&port);
    assert!(c.ping("10.77.10.1"));

    // What a killed ADD leaves: the pair made, nothing else (not a port, down, no address).
    node.sh_ok(&format!("ip link del {gw} && ip link add vgw-left type veth peer name {gw}"));
    let d = node.pod();
    add(&node, &c10, "d", &d);
    whole("vgw-left");
    assert!(d.ping("10.77.10.1"), "d -> the repaired gateway");
    // The gateway is a new interface (new MAC): a's neighbour entry for it is stale.
    a.sh_ok("ip neigh flush dev eth0");
    assert!(a.ping("10.77.10.1"), "a -> the repaired gateway");

    // The peer gone elsewhere: the gateway is made again.
    node.sh_ok(&format!("ip link set vgw-left netns {}", d.name()));
    let e = node.pod();
    add(&node, &c10, "e", &e);
    let port = gateway_port(&node, gw);
    whole(&port);
    assert!(e.ping("10.77.10.1"));

    for (id, p) in [("a", &a), ("b", &b), ("c", &c), ("d", &d), ("e", &e)] {
        del(&node, &c10, id, p);
    }
    assert_eq!(allocations(&node.tmp().join("ipam")), Vec::<String>::new(), "IPAM allocations left");
}
