//! Calling CNI plugins from the tests of berth-bridge (cni_bridge, cni_interop).
#![allow(dead_code)]

use berth_tests::netns::Node;
use berth_tests::Value;
use std::path::Path;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

pub use berth_tests::cni::{allocations, bin_dir};

/// What one plugin call returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub json: Value,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.code, 0, "plugin failed: {} {}", self.json, self.stderr);
        self.json
    }
    /// Asserts a CNI error with `code` whose msg contains every needle; returns the msg.
    #[track_caller]
    pub fn err(self, code: u64, needles: &[&str]) -> String {
        assert_ne!(self.code, 0, "plugin should fail: {}", self.json);
        assert_eq!(self.json["code"].as_u64(), Some(code), "error code: {}", self.json);
        let msg = format!("{} {}", self.json["msg"].as_str().unwrap_or(""), self.json["details"].as_str().unwrap_or(""));
        for n in needles {
            assert!(msg.contains(n), "error should mention {n:?}: {}", self.json);
        }
        msg
    }
}

/// Runs `plugin` inside the node's netns with the CNI environment.
pub fn call(node: &Node, plugin: &str, cmd: &str, conf: &Value, cid: &str, netns: Option<&Path>, ifname: &str) -> Out {
    let path = format!("{}:/usr/lib/cni", bin_dir().display());
    let prog = if plugin.starts_with('/') { PathBuf::from(plugin) } else { bin_dir().join(plugin) };
    let mut c = node.cmd(&prog);
    c.env("CNI_COMMAND", cmd).env("CNI_CONTAINERID", cid).env("CNI_IFNAME", ifname).env("CNI_PATH", path);
    if let Some(n) = netns {
        c.env("CNI_NETNS", n);
    }
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{plugin} {cmd}: bad JSON {stdout:?}: {e}"))
    };
    Out { code: o.status.code().unwrap_or(-1), json, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}
