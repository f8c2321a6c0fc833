//! Calling CNI plugin binaries as a runtime does: a clean environment holding only the
//! CNI variables (plus PATH), the network config on stdin, optionally inside a netns
//! (through `nsenter --net=<path>`; `ip netns exec` would remount /sys).
//!
//! ```no_run
//! use berth_tests::cni::{self, Call};
//! let out = Call::new("berth-ipam", "ADD").id("c1").ifname("eth0").netns("/run/netns/x")
//!     .conf(&berth_tests::json!({"cniVersion":"1.0.0","name":"n","type":"berth-ipam","ipam":{}}))
//!     .run();
//! let result = out.ok();            // asserts exit 0, returns the JSON
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where our plugins are: `$BERTH_BIN_DIR`, else `<repo>/target/bin`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("BERTH_BIN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/bin"))
}

/// The reference plugins (Debian containernetworking-plugins).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// Absolute path of plugin `name`: as given when absolute; ours (`berth-*`) from
/// [`bin_dir`]; anything else from [`REFERENCE_DIR`].
pub fn plugin_path(name: &str) -> PathBuf {
    if name.starts_with('/') {
        PathBuf::from(name)
    } else if name.starts_with("berth-") {
        bin_dir().join(name)
    } else {
        Path::new(REFERENCE_DIR).join(name)
    }
}

/// CNI_PATH for the tests: our binaries first, then the reference ones.
pub fn cni_path() -> String {
    format!("{}:{REFERENCE_DIR}", bin_dir().display())
}

/// True when the reference plugin `name` is installed; else prints SKIP.
pub fn reference_present(name: &str) -> bool {
    let p = Path::new(REFERENCE_DIR).join(name);
    let ok = p.is_file();
    if !ok {
        crate::skip(format_args!("{} missing (Debian containernetworking-plugins)", p.display()));
    }
    ok
}

/// One plugin invocation being built.
#[derive(Debug, Clone)]
pub struct Call {
    plugin: PathBuf,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    in_netns: Option<PathBuf>,
    timeout: Duration,
}

impl Call {
    /// `CNI_COMMAND=command` and `CNI_PATH` set; add the rest with the builders.
    pub fn new(plugin: &str, command: &str) -> Call {
        Call {
            plugin: plugin_path(plugin),
            env: vec![("CNI_COMMAND".into(), command.into()), ("CNI_PATH".into(), cni_path())],
            stdin: Vec::new(),
            in_netns: None,
            timeout: crate::default_timeout(),
        }
    }

    /// Sets (or replaces) a variable; an empty `key` value is kept as empty.
    pub fn env(mut self, key: &str, val: impl Into<String>) -> Call {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), val.into()));
        self
    }

    /// Removes a variable (for "missing variable" tests).
    pub fn unset(mut self, key: &str) -> Call {
        self.env.retain(|(k, _)| k != key);
        self
    }

    pub fn id(self, id: &str) -> Call {
        self.env("CNI_CONTAINERID", id)
    }

    pub fn ifname(self, ifname: &str) -> Call {
        self.env("CNI_IFNAME", ifname)
    }

    pub fn netns(self, path: impl AsRef<Path>) -> Call {
        let p = path.as_ref().display().to_string();
        self.env("CNI_NETNS", p)
    }

    pub fn args(self, args: &str) -> Call {
        self.env("CNI_ARGS", args)
    }

    pub fn conf(mut self, conf: &Value) -> Call {
        self.stdin = conf.to_string().into_bytes();
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Call {
        self.stdin = bytes.into();
        self
    }

    /// Runs the plugin inside the netns at `path` (the node's, as a runtime on that node would).
    pub fn in_netns(mut self, path: impl AsRef<Path>) -> Call {
        self.in_netns = Some(path.as_ref().to_path_buf());
        self
    }

    /// Starts it (for many at once); [`Running::wait`] collects it.
    pub fn spawn(&self) -> Running {
        let mut c = match &self.in_netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(&self.plugin);
                c
            }
            None => Command::new(&self.plugin),
        };
        c.env_clear().env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", self.plugin.display()));
        let mut input = child.stdin.take().expect("piped stdin");
        // A plugin may exit before reading (e.g. bad env): ignore EPIPE.
        let _ = input.write_all(&self.stdin);
        drop(input);
        Running { child, what: self.describe(), deadline: Instant::now() + self.timeout }
    }

    pub fn run(&self) -> CniOut {
        self.spawn().wait()
    }

    fn describe(&self) -> String {
        let cmd = self.env.iter().find(|(k, _)| k == "CNI_COMMAND").map(|(_, v)| v.as_str()).unwrap_or("?");
        format!("{} {cmd}", self.plugin.display())
    }
}

/// A started plugin.
pub struct Running {
    child: Child,
    what: String,
    deadline: Instant,
}

impl Running {
    /// SIGKILL now (a runtime or OOM killing a plugin mid-call) and reap it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (killing it past the deadline) and parses stdout.
    pub fn wait(mut self) -> CniOut {
        let (mut so, mut se) = (self.child.stdout.take().unwrap(), self.child.stderr.take().unwrap());
        let out_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = std::io::Read::read_to_end(&mut so, &mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = std::io::Read::read_to_end(&mut se, &mut s);
            s
        });
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} timed out", self.what);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let stdout = String::from_utf8_lossy(&out_t.join().unwrap()).into_owned();
        let stderr = String::from_utf8_lossy(&err_t.join().unwrap()).into_owned();
        let json = if stdout.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {stdout:?} stderr: {stderr}", self.what))
        };
        CniOut { what: self.what, code: status.code().unwrap_or(-1), json, stdout, stderr }
    }
}

/// What one plugin call returned.
#[derive(Debug, Clone)]
pub struct CniOut {
    pub what: String,
    pub code: i32,
    /// stdout parsed; Null when empty.
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl CniOut {
    /// Asserts success; returns the JSON printed (Null when none).
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.code, 0, "{} failed: {} {}", self.what, self.stdout, self.stderr);
        self.json
    }

    /// Asserts the spec's error: exit 1 and `{"cniVersion", "code", "msg"[, "details"]}` on
    /// stdout with `code`, whose msg + details contain every needle. Returns the JSON.
    #[track_caller]
    pub fn err(self, code: u64, needles: &[&str]) -> Value {
        assert_eq!(self.code, 1, "{} should fail with exit code 1: {} {}", self.what, self.stdout, self.stderr);
        let j = &self.json;
        assert_eq!(j["code"].as_u64(), Some(code), "{}: error code: {j}", self.what);
        assert!(j["cniVersion"].as_str().is_some_and(|v| !v.is_empty()), "{}: error without cniVersion: {j}", self.what);
        assert!(j["msg"].as_str().is_some_and(|m| !m.is_empty()), "{}: error without msg: {j}", self.what);
        let text = format!("{} {}", j["msg"].as_str().unwrap_or(""), j["details"].as_str().unwrap_or(""));
        for n in needles {
            assert!(text.contains(n), "{}: error should mention {n:?}: {j}", self.what);
        }
        self.json
    }
}

/// Address files (named by an address) left in an IPAM dataDir, recursively, sorted.
pub fn allocations(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = crate::netns::Node::files_under(dir)
        .into_iter()
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
        .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
        .collect();
    out.sort();
    out
}

/// The address (without prefix) of `result.ips[i]`.
pub fn ip_of(result: &Value, i: usize) -> String {
    let a = result["ips"][i]["address"].as_str().unwrap_or_else(|| panic!("no ips[{i}].address in {result}"));
    a.split('/').next().unwrap().to_string()
}
