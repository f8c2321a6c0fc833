//! Finding what a test left behind: processes, mounts, cgroup directories.
//! All scans read the host's /proc from the test process (host namespaces).

use std::path::{Path, PathBuf};

/// One mount from /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub mount_point: PathBuf,
    pub root: String,
    pub fs_type: String,
    pub source: String,
    pub options: String,
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a mountinfo file (e.g. `/proc/self/mountinfo`, `/proc/<pid>/mountinfo`).
pub fn mountinfo(path: &str) -> Vec<MountInfo> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let g: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                root: unescape(f.get(3)?),
                mount_point: PathBuf::from(unescape(f.get(4)?)),
                options: f.get(5)?.to_string(),
                fs_type: g.first()?.to_string(),
                source: unescape(g.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// Host mounts at or below any of `dirs`.
pub fn mounts_under(dirs: &[PathBuf]) -> Vec<MountInfo> {
    mountinfo("/proc/self/mountinfo")
        .into_iter()
        .filter(|m| dirs.iter().any(|d| m.mount_point.starts_with(d)))
        .collect()
}

/// Mount points of every cgroup (v1) and cgroup2 hierarchy on the host.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    mountinfo("/proc/self/mountinfo")
        .into_iter()
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| m.mount_point)
        .collect()
}

/// Existing directories for `cgroups_path` (absolute, e.g. `/berth-test/x`)
/// in any hierarchy.
pub fn cgroup_dirs(cgroups_path: &str) -> Vec<PathBuf> {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return vec![];
    }
    cgroup_mounts().into_iter().map(|m| m.join(rel)).filter(|p| p.is_dir()).collect()
}

/// A process found by [`processes`].
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub state: String,
    pub cmdline: String,
    /// Why it matched.
    pub reason: String,
}

impl std::fmt::Display for ProcInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} (ppid {}, state {}) `{}`: {}", self.pid, self.ppid, self.state, self.cmdline, self.reason)
    }
}

fn status_field(pid: i32, key: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string()))
}

/// All pids in /proc.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// `/proc/<pid>/cmdline` with NULs as spaces.
pub fn cmdline(pid: i32) -> String {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&b).replace('\0', " ").trim_end().to_string()
}

/// Processes (other than this one) that are in one of `cgroups` (in any
/// hierarchy, or below it), or whose cwd/root/exe or command line refers to
/// a path under one of `dirs`.
pub fn processes(cgroups: &[String], dirs: &[PathBuf]) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let mut found = vec![];
    for pid in all_pids() {
        if pid == me {
            continue;
        }
        let mut reason = None;
        if let Ok(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) {
            for line in cg.lines() {
                let path = line.splitn(3, ':').nth(2).unwrap_or("");
                if cgroups.iter().any(|c| path == c || path.starts_with(&format!("{c}/"))) {
                    reason = Some(format!("in cgroup {line}"));
                    break;
                }
            }
        }
        if reason.is_none() {
            for link in ["cwd", "root", "exe"] {
                if let Ok(t) = std::fs::read_link(format!("/proc/{pid}/{link}")) {
                    if dirs.iter().any(|d| t.starts_with(d)) {
                        reason = Some(format!("{link} -> {}", t.display()));
                        break;
                    }
                }
            }
        }
        let cmd = cmdline(pid);
        if reason.is_none() && dirs.iter().any(|d| cmd.contains(d.to_str().unwrap_or("\0"))) {
            reason = Some("command line names a test path".into());
        }
        if let Some(reason) = reason {
            found.push(ProcInfo {
                pid,
                ppid: status_field(pid, "PPid").and_then(|s| s.parse().ok()).unwrap_or(0),
                state: status_field(pid, "State").unwrap_or_default(),
                cmdline: cmd,
                reason,
            });
        }
    }
    found
}

/// True when `p` is a directory with no entries (or does not exist).
pub fn dir_is_empty(p: &Path) -> bool {
    match std::fs::read_dir(p) {
        Ok(mut rd) => rd.next().is_none(),
        Err(_) => true,
    }
}

/// Removes a cgroup directory tree bottom-up (cgroup dirs can only be
/// removed with rmdir, children first).
pub fn remove_cgroup_tree(p: &Path) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(p);
}
