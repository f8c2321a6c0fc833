//! Network namespaces for the CNI tests: a whole "node" in a fresh netns (no
//! uplink: no packet can leave it), "pods" as further netns.
//!
//! ```no_run
//! use berth_tests::netns::Node;
//! let Some(node) = Node::new() else { return }; // SKIP when not root
//! let pod = node.pod();                          // /run/netns/berth-t-..-p1
//! node.sh_ok("ip link add br0 type bridge");     // runs inside the node's netns
//! pod.sh_ok("ip addr");
//! // dropping `node` deletes its netns and the pods', then asserts that none
//! // is left and that no link or nft table of the test reached the host's netns.
//! ```
//!
//! Commands run through `nsenter --net=<path>`, never `ip netns exec` (it
//! remounts /sys and hides the host's cgroup mounts).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A named network namespace under /run/netns (deleted by its [`Node`]).
#[derive(Debug, Clone)]
pub struct Netns {
    name: String,
}

impl Netns {
    fn create(name: String) -> Netns {
        let o = Command::new("ip").args(["netns", "add", &name]).output().expect("spawn ip netns add");
        assert!(o.status.success(), "ip netns add {name}: {}", String::from_utf8_lossy(&o.stderr));
        let ns = Netns { name };
        ns.sh_ok("ip link set lo up");
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: what CNI_NETNS gets.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside this netns (via nsenter).
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display())).arg("--").arg(program);
        c.stdin(Stdio::null());
        c
    }

    /// `sh -c script` inside this netns.
    /// Rules of table `inet berth-cni` here (the CNI plugins' nftables table), as
    /// (chain, comment, handle); empty when the table does not exist.
    pub fn berth_cni_rules(&self) -> Vec<(String, String, u64)> {
        let o = self.sh("nft -j list table inet berth-cni");
        if !o.status.success() {
            return vec![];
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("rule"))
            .map(|r| (r["chain"].as_str().unwrap().to_string(), r["comment"].as_str().unwrap_or("").to_string(), r["handle"].as_u64().unwrap()))
            .collect()
    }

    pub fn sh(&self, script: &str) -> Output {
        self.cmd("sh").args(["-c", script]).output().unwrap_or_else(|e| panic!("nsenter {}: {e}", self.name))
    }

    /// `sh -c script` that must succeed; returns stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "in netns {}: `{script}` failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// One ping (1 s timeout) from this netns to `addr`; true when answered.
    pub fn ping(&self, addr: &str) -> bool {
        let six = if addr.contains(':') { "ping6" } else { "ping" };
        // busybox ping: Debian's busybox-static is on every machine (no iputils).
        self.sh(&format!("busybox {six} -c 1 -W 2 {addr} >/dev/null 2>&1")).status.success()
    }

    /// `ip -j <args>` inside this netns, parsed.
    #[track_caller]
    pub fn ip_json(&self, args: &str) -> serde_json::Value {
        let out = self.sh_ok(&format!("ip -j {args}"));
        if out.trim().is_empty() {
            return serde_json::Value::Array(vec![]);
        }
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ip -j {args} in {}: {e}: {out}", self.name))
    }

    /// One link (`ip -j -d link show dev NAME`), or None when it does not exist.
    pub fn link(&self, dev: &str) -> Option<serde_json::Value> {
        let o = self.sh(&format!("ip -j -d link show dev {dev}"));
        if !o.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        v.as_array()?.first().cloned()
    }

    /// Names of links of a kind (`veth`, `bridge`, ...) in this netns.
    pub fn links_of(&self, kind: &str) -> Vec<String> {
        link_names(Some(self), Some(kind))
    }

    /// Addresses (`"10.1.0.2/24"`) on `dev`.
    pub fn addrs(&self, dev: &str) -> Vec<String> {
        let v = self.ip_json(&format!("addr show dev {dev}"));
        v.as_array()
            .and_then(|a| a.first())
            .and_then(|l| l["addr_info"].as_array())
            .map(|ai| {
                ai.iter()
                    .filter(|a| a["scope"] != "link")
                    .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Routes of the main table (`ip -j route show` and `-6`), merged.
    pub fn routes(&self) -> Vec<serde_json::Value> {
        let mut r: Vec<serde_json::Value> = self.ip_json("route show").as_array().cloned().unwrap_or_default();
        r.extend(self.ip_json("-6 route show").as_array().cloned().unwrap_or_default());
        r
    }

    /// `nft -j list ruleset` inside this netns (the whole ruleset as text).
    pub fn nft_ruleset(&self) -> String {
        self.sh_ok("nft list ruleset")
    }
}

fn link_names(ns: Option<&Netns>, kind: Option<&str>) -> Vec<String> {
    let args = match kind {
        Some(k) => format!("ip -j link show type {k}"),
        None => "ip -j link show".to_string(),
    };
    let out = match ns {
        Some(ns) => ns.sh_ok(&args),
        None => {
            let o = Command::new("sh").args(["-c", &args]).output().expect("spawn ip");
            String::from_utf8_lossy(&o.stdout).into_owned()
        }
    };
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Array(vec![]));
    v.as_array()
        .map(|a| a.iter().filter_map(|l| l["ifname"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn host_netns_names() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn host_nft_tables() -> BTreeSet<String> {
    let o = Command::new("nft").args(["list", "tables"]).output();
    o.map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect()).unwrap_or_default()
}

/// The node: a fresh netns (only `lo`, up), its pods, and a temp dir for
/// plugin state (IPAM `dataDir`, configs). Deletes everything on drop and
/// asserts nothing leaked.
pub struct Node {
    ns: Netns,
    prefix: String,
    pods: std::sync::Mutex<Vec<Netns>>,
    tmp: PathBuf,
    host_links: BTreeSet<String>,
    host_tables: BTreeSet<String>,
}

impl Node {
    /// A new node netns `berth-t-<pid>-<n>`; None (after printing SKIP) when not root.
    pub fn new() -> Option<Node> {
        if !crate::require_root() {
            return None;
        }
        let prefix = format!("berth-t-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let host_links = link_names(None, None).into_iter().collect();
        let host_tables = host_nft_tables();
        let tmp = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let ns = Netns::create(format!("{prefix}-node"));
        Some(Node { ns, prefix, pods: Default::default(), tmp, host_links, host_tables })
    }

    /// A fresh pod netns (`lo` up), deleted with the node.
    pub fn pod(&self) -> Netns {
        // Numbered under the lock so pods made from several threads get distinct names.
        let mut pods = self.pods.lock().unwrap();
        let p = Netns::create(format!("{}-p{}", self.prefix, pods.len() + 1));
        pods.push(p.clone());
        p
    }

    /// A pod netns path that does not exist (for "missing netns" tests).
    pub fn missing_pod_path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(format!("{}-gone", self.prefix))
    }

    /// Deletes a pod's netns now (as a runtime does after a crash).
    pub fn delete_pod(&self, pod: &Netns) {
        delete_netns(&pod.name);
    }

    /// Temp dir of this node (IPAM dataDir, configs); removed on drop.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// Files left under `dir` (recursively), except lock files: the IPAM store
    /// of a cleaned-up node holds none.
    pub fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !p.file_name().map(|n| n.to_string_lossy().contains("lock")).unwrap_or(false) {
                    out.push(p);
                }
            }
        }
        out
    }
}

impl std::ops::Deref for Node {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}

fn delete_netns(name: &str) {
    if Path::new("/run/netns").join(name).exists() {
        let o = Command::new("ip").args(["netns", "del", name]).output().expect("spawn ip netns del");
        assert!(o.status.success(), "ip netns del {name}: {}", String::from_utf8_lossy(&o.stderr));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Links of the test's namespaces, to check none of them shows up in the host's.
        let mut ours: BTreeSet<String> = self.ns.links_of("veth").into_iter().collect();
        ours.extend(self.ns.links_of("bridge"));
        for p in self.pods.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if p.path().exists() {
                ours.extend(p.links_of("veth"));
            }
            delete_netns(&p.name);
        }
        delete_netns(&self.ns.name);
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
        if std::thread::panicking() {
            return;
        }
        let left: Vec<String> = host_netns_names().into_iter().filter(|n| n.starts_with(&self.prefix)).collect();
        assert!(left.is_empty(), "netns left behind: {left:?}");
        // Any new veth or bridge in the host's netns is a leak (nothing may create one there).
        let mut suspects: BTreeSet<String> = link_names(None, Some("veth")).into_iter().collect();
        suspects.extend(link_names(None, Some("bridge")));
        let host_now: BTreeSet<String> = link_names(None, None).into_iter().collect();
        let leaked: Vec<&String> = host_now
            .difference(&self.host_links)
            .filter(|l| ours.contains(*l) || suspects.contains(*l))
            .collect();
        assert!(leaked.is_empty(), "links of the test appeared in the host's netns: {leaked:?}");
        let new_tables: Vec<String> =
            host_nft_tables().difference(&self.host_tables).filter(|t| t.contains("berth")).cloned().collect();
        assert!(new_tables.is_empty(), "nft tables appeared in the host's netns: {new_tables:?}");
    }
}
