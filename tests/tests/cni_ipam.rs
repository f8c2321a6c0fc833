//! berth-ipam as a real process: allocation, release, DEL twice, CHECK, GC, IPv6,
//! exhaustion, 100 concurrent ADDs, killed plugins; and under the reference `bridge`
//! inside a fresh node netns. IPAM touches no netns (CNI_NETNS is a path that does
//! not exist in the tests that run it alone). Every test uses its own dataDir and checks
//! that no allocation or temp file is left.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::cni::{allocations, ip_of, reference_present, Call};
use berth_tests::netns::Node;
use berth_tests::{json, Value};

const NO_NETNS: &str = "/run/netns/berth-ipam-test-no-such-netns";

/// A dataDir for one test; on drop asserts that only `lock` and `last_reserved_ip.*`
/// remain (no reservation, no temp file), then removes it.
struct Data {
    dir: PathBuf,
}

impl Data {
    fn new(tag: &str) -> Data {
        let dir = std::env::temp_dir().join(format!("berth-ipam-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Data { dir }
    }

    fn conf(&self, version: &str, ipam: Value) -> Value {
        let mut ipam = ipam;
        ipam["type"] = "berth-ipam".into();
        ipam["dataDir"] = self.dir.display().to_string().into();
        json!({"cniVersion": version, "name": "ipamnet", "type": "berth-ipam", "ipam": ipam})
    }

    fn net_dir(&self) -> PathBuf {
        self.dir.join("ipamnet")
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.net_dir())
            .map(|r| r.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for Data {
    fn drop(&mut self) {
        let left: Vec<String> = self.files().into_iter().filter(|f| f != "lock" && !f.starts_with("last_reserved_ip.")).collect();
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left in the dataDir: {left:?}");
        }
    }
}

fn ipam(cmd: &str, id: &str, conf: &Value) -> Call {
    Call::new("berth-ipam", cmd).id(id).ifname("eth0").netns(NO_NETNS).conf(conf)
}

#[test]
fn allocate_check_release_and_del_twice() {
    let d = Data::new("basic");
    let c = d.conf("1.1.0", json!({"ranges": [[{"subnet": "10.60.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}));
    let a = ipam("ADD", "ca", &c).run().ok();
    assert_eq!(a["cniVersion"], "1.1.0");
    assert_eq!(a["ips"][0]["address"], "10.60.0.2/24");
    assert_eq!(a["ips"][0]["gateway"], "10.60.0.1");
    assert_eq!(a["routes"], json!([{"dst": "0.0.0.0/0"}]));
    let b = ipam("ADD", "cb", &c).run().ok();
    assert_eq!(ip_of(&b, 0), "10.60.0.3");
    // The on-disk layout (host-local's): one file per address holding id and ifname.
    assert_eq!(d.files(), ["10.60.0.2", "10.60.0.3", "last_reserved_ip.0", "lock"]);
    assert_eq!(std::fs::read_to_string(d.net_dir().join("10.60.0.2")).unwrap(), "ca\r\neth0");
    // ADD again for the same attachment gives the same address.
    assert_eq!(ipam("ADD", "ca", &c).run().ok()["ips"], a["ips"]);
    // Same container, another interface: another address.
    let a1 = Call::new("berth-ipam", "ADD").id("ca").ifname("eth1").netns(NO_NETNS).conf(&c).run().ok();
    assert_eq!(ip_of(&a1, 0), "10.60.0.4");

    let mut chk = c.clone();
    chk["prevResult"] = a.clone();
    ipam("CHECK", "ca", &chk).run().ok();
    ipam("DEL", "ca", &c).run().ok();
    ipam("DEL", "ca", &c).unset("CNI_NETNS").run().ok();
    ipam("CHECK", "ca", &chk).run().err(999, &["ca", "eth0", "10.60.0.0/24"]);
    // eth1 of the same container is its own attachment and still there.
    assert_eq!(allocations(&d.dir), ["10.60.0.3", "10.60.0.4"]);
    // Round robin: the next address is after the last handed out, not the freed .2.
    assert_eq!(ip_of(&ipam("ADD", "cc", &c).run().ok(), 0), "10.60.0.5");
    for (id, ifn) in [("cb", "eth0"), ("cc", "eth0"), ("ca", "eth1")] {
        Call::new("berth-ipam", "DEL").id(id).ifname(ifn).conf(&c).run().ok();
    }
    assert_eq!(allocations(&d.dir), Vec::<String>::new());
}

#[test]
fn results_in_every_version() {
    let d = Data::new("versions");
    for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let c = d.conf(v, json!({"subnet": "10.61.0.0/24", "gateway": "10.61.0.254"}));
        let r = ipam("ADD", &format!("v{i}"), &c).run().ok();
        assert_eq!(r["cniVersion"], *v);
        assert_eq!(r["ips"][0]["gateway"], "10.61.0.254");
        assert_eq!(r["ips"][0].get("version").and_then(Value::as_str), if v.starts_with("0.") { Some("4") } else { None }, "{v}: {r}");
        ipam("DEL", &format!("v{i}"), &c).run().ok();
    }
    assert_eq!(allocations(&d.dir), Vec::<String>::new());
}

#[test]
fn gc_releases_attachments_no_longer_valid() {
    let d = Data::new("gc");
    let c = d.conf("1.1.0", json!({"subnet": "10.62.0.0/24"}));
    for id in ["g1", "g2", "g3"] {
        ipam("ADD", id, &c).run().ok();
    }
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "g2", "ifname": "eth0"}, {"containerID": "g3", "ifname": "eth9"}]);
    Call::new("berth-ipam", "GC").conf(&gc).run().ok();
    assert_eq!(allocations(&d.dir), ["10.62.0.3"], "only g2/eth0 is valid");
    let mine = std::fs::read_to_string(d.net_dir().join("10.62.0.3")).unwrap();
    assert!(mine.starts_with("g2"), "{mine}");
    // GC with an empty list releases everything; GC twice is fine.
    gc["cni.dev/valid-attachments"] = json!([]);
    Call::new("berth-ipam", "GC").conf(&gc).run().ok();
    Call::new("berth-ipam", "GC").conf(&gc).run().ok();
    assert_eq!(allocations(&d.dir), Vec::<String>::new());
}

#[test]
fn ipv6_and_dual_stack_with_dns() {
    let d = Data::new("v6");
    std::fs::create_dir_all(&d.dir).unwrap();
    let resolv = d.dir.join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.63.0.53\nnameserver fd63::53\nsearch pods.test\noptions ndots:3\n").unwrap();
    let c = d.conf(
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.63.0.0/24", "rangeStart": "10.63.0.100", "rangeEnd": "10.63.0.101"}],
                          [{"subnet": "fd63::/64", "rangeStart": "fd63::10", "rangeEnd": "fd63::11"}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd63::1"}],
               "resolvConf": resolv}),
    );
    let r = ipam("ADD", "d1", &c).run().ok();
    assert_eq!(r["ips"][0], json!({"address": "10.63.0.100/24", "gateway": "10.63.0.1"}));
    assert_eq!(r["ips"][1], json!({"address": "fd63::10/64", "gateway": "fd63::1"}));
    assert_eq!(r["routes"][1], json!({"dst": "::/0", "gw": "fd63::1"}));
    assert_eq!(r["dns"], json!({"nameservers": ["10.63.0.53", "fd63::53"], "search": ["pods.test"], "options": ["ndots:3"]}));
    let r2 = ipam("ADD", "d2", &c).run().ok();
    assert_eq!((ip_of(&r2, 0), ip_of(&r2, 1)), ("10.63.0.101".into(), "fd63::11".into()));
    // IPv6 only.
    let c6 = d.conf("1.1.0", json!({"subnet": "fd64::/120"}));
    let r3 = ipam("ADD", "d3", &c6).run().ok();
    assert_eq!(r3["ips"][0]["address"], "fd64::2/120");
    for id in ["d1", "d2"] {
        ipam("DEL", id, &c).run().ok();
    }
    ipam("DEL", "d3", &c6).run().ok();
    std::fs::remove_file(&resolv).unwrap();
    assert_eq!(allocations(&d.dir), Vec::<String>::new());
}

#[test]
fn exhausted_range_is_code_11_naming_it_and_leaves_nothing() {
    let d = Data::new("full");
    // 10.64.0.0/29: .1 is the gateway, .7 the broadcast: .2–.6 are five addresses.
    let c = d.conf("1.0.0", json!({"subnet": "10.64.0.0/29"}));
    let mut got = BTreeSet::new();
    for i in 0..5 {
        got.insert(ip_of(&ipam("ADD", &format!("f{i}"), &c).run().ok(), 0));
    }
    assert_eq!(got.into_iter().collect::<Vec<_>>(), ["10.64.0.2", "10.64.0.3", "10.64.0.4", "10.64.0.5", "10.64.0.6"]);
    let e = ipam("ADD", "f5", &c).run().err(11, &["10.64.0.0/29", "ipamnet"]);
    assert_eq!(e["cniVersion"], "1.0.0");
    assert_eq!(allocations(&d.dir).len(), 5);
    // A second range set that is not full: its address is rolled back when the first fails.
    let c2 = d.conf("1.0.0", json!({"ranges": [[{"subnet": "10.65.0.0/24"}], [{"subnet": "10.64.0.0/29"}]]}));
    ipam("ADD", "f6", &c2).run().err(11, &["10.64.0.0/29"]);
    assert_eq!(allocations(&d.dir).len(), 5);
    // Freed addresses are handed out again.
    ipam("DEL", "f3", &c).run().ok();
    assert_eq!(ip_of(&ipam("ADD", "f7", &c).run().ok(), 0), "10.64.0.5");
    for id in ["f0", "f1", "f2", "f4", "f7"] {
        ipam("DEL", id, &c).run().ok();
    }
}

#[test]
fn bad_config_is_code_7() {
    let d = Data::new("bad");
    for (ipam_conf, needle) in [
        (json!({"subnet": "10.66.0.0/33"}), "invalid subnet"),
        (json!({"subnet": "10.66.0.1/24"}), "host bits"),
        (json!({"subnet": "10.66.0.0/32"}), "too small"),
        (json!({"ranges": [[{"subnet": "10.66.0.0/24", "rangeStart": "10.67.0.1"}]]}), "rangeStart"),
        (json!({}), "no ranges"),
        (json!({"ranges": [[{"subnet": "10.66.0.0/24"}], [{"subnet": "10.66.0.128/25"}]]}), "overlaps"),
    ] {
        let c = d.conf("1.0.0", ipam_conf);
        ipam("ADD", "b1", &c).run().err(7, &[needle, "ipamnet"]);
    }
    let mut c = d.conf("1.0.0", json!({"subnet": "10.66.0.0/24"}));
    c.as_object_mut().unwrap().remove("ipam");
    ipam("ADD", "b1", &c).run().err(7, &["ipam"]);
    assert!(!d.dir.exists(), "a refused config creates nothing");
}

#[test]
fn hundred_parallel_adds_get_unique_addresses_then_all_released() {
    let d = Data::new("par");
    let c = d.conf("1.1.0", json!({"subnet": "10.68.0.0/24"}));
    // All 100 processes are started before any is waited for.
    let running: Vec<_> = (0..100).map(|i| (format!("p{i}"), ipam("ADD", &format!("p{i}"), &c).spawn())).collect();
    let mut by_ip: HashMap<String, String> = HashMap::new();
    for (id, r) in running {
        let res = r.wait().ok();
        let ip = ip_of(&res, 0);
        if let Some(other) = by_ip.insert(ip.clone(), id.clone()) {
            panic!("{ip} given to both {other} and {id}");
        }
    }
    assert_eq!(by_ip.len(), 100);
    // No lost reservation: exactly these 100 files, each naming its owner.
    let files = allocations(&d.dir);
    assert_eq!(files.len(), 100);
    for f in &files {
        let owner = std::fs::read_to_string(d.net_dir().join(f)).unwrap();
        assert_eq!(owner, format!("{}\r\neth0", by_ip[f]), "{f}");
    }
    let running: Vec<_> = (0..100).map(|i| ipam("DEL", &format!("p{i}"), &c).spawn()).collect();
    for r in running {
        r.wait().ok();
    }
    assert_eq!(allocations(&d.dir), Vec::<String>::new());
}

#[test]
fn killed_plugins_never_leave_a_half_written_reservation() {
    let d = Data::new("kill");
    let c = d.conf("1.1.0", json!({"subnet": "10.69.0.0/24"}));
    // Kill ADDs at spread-out moments of their run; whatever is on disk must be whole.
    for i in 0..40u64 {
        let r = ipam("ADD", &format!("k{i}"), &c).spawn();
        std::thread::sleep(Duration::from_micros((i * 97) % 1500));
        r.kill();
    }
    // The next call (under the lock) sweeps stray temp files.
    ipam("ADD", "survivor", &c).run().ok();
    let names = d.files();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "temp files left: {names:?}");
    for f in allocations(&d.dir) {
        let text = std::fs::read_to_string(d.net_dir().join(&f)).unwrap();
        let (id, ifn) = text.split_once("\r\n").unwrap_or_else(|| panic!("{f}: torn reservation {text:?}"));
        assert!(id.starts_with('k') || id == "survivor", "{f}: {text:?}");
        assert_eq!(ifn, "eth0", "{f}");
    }
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    Call::new("berth-ipam", "GC").conf(&gc).run().ok();
}

/// Reference `bridge` (CNI ≤ 1.0.0) delegating to berth-ipam, the whole node in a fresh netns.
#[test]
fn reference_bridge_with_berth_ipam_gives_a_pod_a_working_address() {
    if !reference_present("bridge") {
        return;
    }
    let Some(node) = Node::new() else { return };
    let data = node.tmp().join("ipam");
    let c = json!({
        "cniVersion": "1.0.0", "name": "refbr", "type": "bridge", "bridge": "br-refipam", "isGateway": true,
        "ipam": {"type": "berth-ipam", "ranges": [[{"subnet": "10.70.0.0/24", "gateway": "10.70.0.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data},
    });
    let (p1, p2) = (node.pod(), node.pod());
    let call = |cmd: &str, id: &str, pod: &Path, conf: &Value| {
        Call::new("bridge", cmd).id(id).ifname("eth0").netns(pod).conf(conf).in_netns(node.path()).run()
    };
    let r1 = call("ADD", "rb1", &p1.path(), &c).ok();
    let r2 = call("ADD", "rb2", &p2.path(), &c).ok();
    assert_eq!(r1["cniVersion"], "1.0.0");
    let (ip1, ip2) = (ip_of(&r1, 0), ip_of(&r2, 0));
    assert_eq!((ip1.as_str(), ip2.as_str()), ("10.70.0.2", "10.70.0.3"));
    assert_eq!(p1.addrs("eth0"), ["10.70.0.2/24"]);
    assert!(p1.routes().iter().any(|r| r["dst"] == "default" && r["gateway"] == "10.70.0.1"), "{:?}", p1.routes());
    assert!(node.ping(&ip1), "node -> pod 1 over the bridge");
    assert!(p1.ping(&ip2), "pod 1 -> pod 2");
    assert_eq!(allocations(&data), ["10.70.0.2", "10.70.0.3"]);
    let mut chk = c.clone();
    chk["prevResult"] = r1.clone();
    call("CHECK", "rb1", &p1.path(), &chk).ok();
    for (id, p) in [("rb1", &p1), ("rb2", &p2)] {
        call("DEL", id, &p.path(), &c).ok();
        call("DEL", id, &p.path(), &c).ok();
    }
    assert_eq!(allocations(&data), Vec::<String>::new());
    assert_eq!(node.links_of("veth"), Vec::<String>::new());
    assert!(p1.link("eth0").is_none(), "pod's eth0 removed by DEL");
    node.sh_ok("ip link del br-refipam");
}
