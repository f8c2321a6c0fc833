//! Shared helpers for the integration tests.
//!
//! A test is short and cannot leak:
//!
//! ```no_run
//! use berth_tests::*;
//! let Some(rt) = Runtime::for_test() else { return }; // SKIP when not root
//! let mut b = rt.bundle();                         // unique id + cgroupsPath
//! b.sh("echo hi; exit 3");
//! let out = rt.run(&b);                            // foreground, bounded
//! assert_eq!(out.code(), 3);
//! assert_eq!(out.stdout, "hi\n");
//! // dropping `rt` force-deletes leftovers and asserts: no process, mount,
//! // state entry or cgroup dir of this test remains.
//! ```
//!
//! Environment: `BERTH_TEST_RUNTIME` (runtime binary, e.g. /usr/sbin/runc),
//! `BERTH_BIN_DIR`, `BERTH_ROOTFS`, `BERTH_IN_VM=1`, `BERTH_TEST_TIMEOUT`
//! (seconds per runtime call, default 30), `BERTH_TEST_KEEP` (keep temp dirs).

pub mod berthlet_daemon;
pub mod bundle;
pub mod cni;
pub mod cmd;
pub mod console;
pub mod json;
pub mod leaks;
pub mod netns;
pub mod images;
pub mod output;
pub mod registry;
pub mod runtime;
pub mod shim;
pub mod traffic;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

pub use bundle::Bundle;
pub use cmd::{Input, Output};
pub use console::{Console, ConsoleSocket};
pub use output::{kv, run_ok, with_tmp};
pub use runtime::Runtime;
pub use serde_json::{json, Value};
pub use wait::{poll, wait_bound, wait_for_file, wait_for_text, wait_pid_gone, wait_until, WAIT};

/// The repository root (parent of the `tests/` package).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The runtime under test: `$BERTH_TEST_RUNTIME`, else `$BERTH_BIN_DIR/berth`,
/// else `<repo>/target/bin/berth` (made by `scripts/build`).
pub fn runtime() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_TEST_RUNTIME").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(d) = std::env::var_os("BERTH_BIN_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(d).join("berth");
    }
    repo_root().join("target/bin/berth")
}

/// File name of the runtime under test ("berth", "runc", "crun", ...).
pub fn runtime_name() -> String {
    runtime().file_name().and_then(|n| n.to_str()).unwrap_or("").to_string()
}

/// Records that the calling test passes without making its check, and why: prints
/// `SKIP: <reason>` (libtest shows it with `--nocapture` or on failure) and, when
/// `$BERTH_SKIP_LOG` names a file, appends `<test binary> <test>: <reason>` to it, so that
/// `scripts/integration-tests` lists every skip even though libtest hid the output.
pub fn skip(reason: impl std::fmt::Display) {
    use std::io::Write;
    println!("SKIP: {reason}");
    let Some(log) = std::env::var_os("BERTH_SKIP_LOG").filter(|v| !v.is_empty()) else { return };
    // Test binaries are named <name>-<16 hex>.
    let exe = std::env::current_exe().ok();
    let stem = exe.as_ref().and_then(|e| e.file_stem()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let bin = match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    // One write of a whole line with O_APPEND: lines of parallel tests do not interleave.
    let line = format!("{bin} {test}: {reason}\n");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&log) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// True when the runtime under test is runc (the tests' reference peer).
pub fn is_runc() -> bool {
    runtime_name() == "runc"
}

/// For checks only berth is expected to pass: returns true (after printing
/// `SKIP: ...`) when the runtime under test is runc.
pub fn skip_on_runc(why: &str) -> bool {
    if is_runc() {
        skip(format_args!("berth-only check, runc 1.1 differs: {why}"));
        true
    } else {
        false
    }
}

/// True when running as root; otherwise prints `SKIP: <reason>`.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        skip(format_args!("needs root (euid {})", nix::unistd::geteuid()));
        false
    }
}

/// `$BERTH_ROOTFS` or `<repo>/.cache/rootfs/busybox`; panics with a clear
/// message when it has not been built.
pub fn rootfs() -> PathBuf {
    let p = std::env::var_os("BERTH_ROOTFS")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/rootfs/busybox"));
    assert!(
        p.join("bin/busybox").is_file(),
        "test rootfs {} is missing (no bin/busybox): run scripts/mkrootfs, or set BERTH_ROOTFS",
        p.display()
    );
    p
}

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a (near-empty) cgroup2 at /sys/fs/cgroup/unified.
    Hybrid,
    /// Unified: /sys/fs/cgroup is cgroup2.
    V2,
}

pub fn cgroup_mode() -> CgroupMode {
    let mounts = leaks::mountinfo("/proc/self/mountinfo");
    let ty = |p: &str| mounts.iter().rev().find(|m| m.mount_point == std::path::Path::new(p)).map(|m| m.fs_type.clone());
    if ty("/sys/fs/cgroup").as_deref() == Some("cgroup2") {
        CgroupMode::V2
    } else if ty("/sys/fs/cgroup/unified").as_deref() == Some("cgroup2") {
        CgroupMode::Hybrid
    } else {
        CgroupMode::V1
    }
}

/// True inside the test VM (`BERTH_IN_VM=1`).
pub fn in_vm() -> bool {
    std::env::var("BERTH_IN_VM").map(|v| v == "1").unwrap_or(false)
}

/// Bound for each runtime call: `$BERTH_TEST_TIMEOUT` seconds, default 30.
pub fn default_timeout() -> Duration {
    let s = std::env::var("BERTH_TEST_TIMEOUT").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    Duration::from_secs(s)
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // State is the field after the parenthesised comm.
        Ok(s) => s.rsplit_once(')').map(|(_, r)| !r.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// A `/proc/<pid>/status` field (`"CapEff"`, `"NoNewPrivs"`, ...).
pub fn proc_status(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

/// The namespace identity of a process (`readlink /proc/<pid>/ns/<ns>`,
/// e.g. `mnt:[4026531841]`); pid "self" is the test process.
pub fn ns_id(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
}

/// Capability numbers, for decoding `CapEff`-style masks.
pub fn cap_number(name: &str) -> Option<u32> {
    const CAPS: &[&str] = &[
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
        "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
        "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
        "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
        "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
        "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
    ];
    let n = name.strip_prefix("CAP_").unwrap_or(name);
    CAPS.iter().position(|c| *c == n).map(|i| i as u32)
}

/// Mask of the named capabilities (`["CAP_KILL", ...]`).
pub fn cap_mask(names: &[&str]) -> u64 {
    names.iter().map(|n| 1u64 << cap_number(n).unwrap_or_else(|| panic!("unknown cap {n}"))).fold(0, |a, b| a | b)
}

/// Parses a hex mask from /proc status (`0000000020200420`).
pub fn parse_cap_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim(), 16).unwrap_or_else(|e| panic!("cap mask {s:?}: {e}"))
}
