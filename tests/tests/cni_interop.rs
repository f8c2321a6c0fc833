//! Interop: berth-bridge with the reference IPAM plugin `host-local` (Debian
//! containernetworking-plugins, which speak CNI up to 1.0.0), in every version
//! both sides share. The node runs in a fresh netns, pods in further netns.

use std::path::Path;

use berth_tests::cni::{allocations, Call};
use berth_tests::netns::Node;
use berth_tests::{json, Value};

/// berth-bridge `command` for the attachment (`cid`, eth0) of the pod netns at `pod`, run
/// inside the node's netns as the node's runtime would.
fn bridge(node: &Node, command: &str, cid: &str, pod: &Path) -> Call {
    Call::new("berth-bridge", command).id(cid).ifname("eth0").netns(pod).in_netns(node.path())
}

fn host_local_present() -> bool {
    let ok = std::path::Path::new("/usr/lib/cni/host-local").is_file();
    if !ok {
        berth_tests::skip(format_args!("/usr/lib/cni/host-local missing (Debian containernetworking-plugins)"));
    }
    ok
}

#[test]
fn berth_bridge_with_reference_host_local_in_each_shared_version() {
    if !host_local_present() {
        return;
    }
    let Some(node) = Node::new() else { return };
    let data = node.tmp().join("ipam");
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"].iter().enumerate() {
        let c = json!({
            "cniVersion": v, "name": "interop", "type": "berth-bridge", "bridge": "br-interop",
            "isDefaultGateway": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.30.0.0/24", "gateway": "10.30.0.1"}]],
                     "routes": [{"dst": "10.31.0.0/16"}], "dataDir": data},
        });
        let (p1, p2) = (node.pod(), node.pod());
        let (id1, id2) = (format!("a{i}"), format!("b{i}"));
        let r1 = bridge(&node, "ADD", &id1, &p1.path()).conf(&c).run().ok();
        let r2 = bridge(&node, "ADD", &id2, &p2.path()).conf(&c).run().ok();
        assert_eq!(r1["cniVersion"], *v);
        // 0.3.x/0.4.0 results carry "version" in each ip.
        assert_eq!(r1["ips"][0].get("version").is_some(), v.starts_with("0."), "{v}: {r1}");
        assert_eq!(r1["ips"][0]["gateway"], "10.30.0.1");
        let routes: Vec<&Value> = r1["routes"].as_array().unwrap().iter().collect();
        assert!(routes.iter().any(|r| r["dst"] == "10.31.0.0/16"), "IPAM route in the result: {r1}");
        assert!(routes.iter().any(|r| r["dst"] == "0.0.0.0/0"), "default route in the result: {r1}");
        let pr = p1.routes();
        assert!(pr.iter().any(|r| r["dst"] == "10.31.0.0/16" && r["gateway"] == "10.30.0.1"), "{pr:?}");
        let ip2 = r2["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_string();
        assert!(p1.ping(&ip2), "{v}: pod -> pod");
        assert!(p2.ping("10.30.0.1"), "{v}: pod -> node");
        if *v != "0.3.0" && *v != "0.3.1" {
            let mut chk = c.clone();
            chk["prevResult"] = r1.clone();
            bridge(&node, "CHECK", &id1, &p1.path()).conf(&chk).run().ok();
        }
        for (id, p) in [(&id1, &p1), (&id2, &p2)] {
            bridge(&node, "DEL", id, &p.path()).conf(&c).run().ok();
            bridge(&node, "DEL", id, &p.path()).conf(&c).run().ok();
        }
        assert_eq!(node.links_of("veth"), Vec::<String>::new(), "{v}");
        assert_eq!(allocations(&data), Vec::<String>::new(), "{v}");
    }
}

#[test]
fn host_local_errors_come_back_as_they_are_and_nothing_is_left() {
    if !host_local_present() {
        return;
    }
    let Some(node) = Node::new() else { return };
    let data = node.tmp().join("ipam");
    // A /30 has two usable addresses, one of which is the gateway: the second ADD finds the range full.
    let c = json!({
        "cniVersion": "1.0.0", "name": "tiny", "type": "berth-bridge", "bridge": "br-tiny", "isGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.32.0.0/30"}]], "dataDir": data},
    });
    let (p1, p2) = (node.pod(), node.pod());
    bridge(&node, "ADD", "t1", &p1.path()).conf(&c).run().ok();
    let o = bridge(&node, "ADD", "t2", &p2.path()).conf(&c).run();
    assert_ne!(o.code, 0, "{:?}", o);
    let msg = o.json["msg"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("no IP addresses available") || msg.contains("10.32.0.0/30"), "{}", o.json);
    assert!(p2.link("eth0").is_none(), "no interface for the failed ADD");
    assert_eq!(node.links_of("veth").len(), 1, "only t1's veth");
    bridge(&node, "DEL", "t1", &p1.path()).conf(&c).run().ok();
    bridge(&node, "DEL", "t2", &p2.path()).conf(&c).run().ok();
    assert_eq!(node.links_of("veth"), Vec::<String>::new());
    assert_eq!(allocations(&data), Vec::<String>::new());
}
