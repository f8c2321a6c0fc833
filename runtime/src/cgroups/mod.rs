//! Cgroups. This file: placement — find the hierarchies (v1, v2 or hybrid), create the
//! container's cgroup in each, move processes in, list and signal them, remove the cgroup.
//! [`v1`] and [`v2`]: resource control behind one trait, [`Controller`] (apply
//! `linux.resources`, stats, freeze/thaw, OOM-kill count), picked by [`open`].
//!
//! A thin own layer rather than `cgroups-rs`: placement needs only mkdir, a write to
//! `cgroup.procs` and rmdir on paths we compute from mountinfo; cgroups-rs brings its own
//! hierarchy discovery (which assumes /sys/fs/cgroup layouts, not the paths recorded in
//! our state) and its own resource model we would translate the OCI one into, for what
//! is in the end one file write per setting. Its weight in a binary whose size is its
//! resident memory (a benchmark target) did not buy enough; the controllers here are
//! "which file gets which string", each with an error naming the file.

pub mod v1;
pub mod v2;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::IoContext;
use crate::log::Logger;
use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// Controllers (v1), `name=...` for named hierarchies; empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// Superblock options as in mountinfo, used to mount the same hierarchy again.
    pub super_options: String,
}

/// Every cgroup hierarchy mounted in the caller's mount namespace, one per hierarchy.
pub fn hierarchies() -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in crate::mountinfo::read_self() {
        let h = match m.fstype.as_str() {
            "cgroup2" => Hierarchy { mountpoint: m.mountpoint, controllers: vec![], v2: true, super_options: m.super_options },
            "cgroup" => {
                let controllers: Vec<String> = m
                    .super_options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro" | "xattr" | "noprefix" | "clone_children" | "cpuset_v2_mode") && !o.starts_with("release_agent="))
                    .map(str::to_string)
                    .collect();
                Hierarchy { mountpoint: m.mountpoint, controllers, v2: false, super_options: m.super_options }
            }
            _ => continue,
        };
        if !out.iter().any(|o| o.v2 == h.v2 && o.controllers == h.controllers) {
            out.push(h);
        }
    }
    out
}

/// Pure cgroup v2 (no v1 hierarchy mounted)?
pub fn is_pure_v2(hs: &[Hierarchy]) -> bool {
    !hs.is_empty() && hs.iter().all(|h| h.v2)
}

/// The caller's own cgroup in a hierarchy, from /proc/self/cgroup.
fn own_cgroup(h: &Hierarchy) -> PathBuf {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        let matches = if h.v2 { ctrl.is_empty() } else { !ctrl.is_empty() && ctrl.split(',').collect::<Vec<_>>() == h.controllers.iter().map(String::as_str).collect::<Vec<_>>() };
        if matches {
            return PathBuf::from(path);
        }
    }
    PathBuf::from("/")
}

/// The container's cgroup directories. `cgroupsPath` absolute: from each hierarchy's root;
/// relative: below the runtime's own cgroup; none: `/<id>`.
pub fn paths_for(cgroups_path: Option<&Path>, id: &str) -> Result<Vec<PathBuf>> {
    let rel: PathBuf = match cgroups_path {
        Some(p) if p.to_string_lossy().contains(':') => {
            return Err(Error::Unsupported(format!(
                "linux.cgroupsPath {p:?}: systemd slice:prefix:name paths need the systemd cgroup driver, which berth does not support"
            )))
        }
        Some(p) => p.to_path_buf(),
        None => PathBuf::from("/").join(id),
    };
    if rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(Error::Config(format!("linux.cgroupsPath {rel:?}: must not contain '..'")));
    }
    let hs = hierarchies();
    if hs.is_empty() {
        return Err(Error::Container("no cgroup hierarchy is mounted on this host".into()));
    }
    Ok(hs
        .iter()
        .map(|h| {
            let base = if rel.is_absolute() { PathBuf::from("/") } else { own_cgroup(h) };
            let full = base.join(&rel);
            h.mountpoint.join(full.strip_prefix("/").unwrap_or(&full))
        })
        .collect())
}

/// Create the directories and move `pid` into every one of them.
pub fn join(paths: &[PathBuf], pid: i32) -> Result<()> {
    for p in paths {
        create_dir(p)?;
        v2::enable_controllers(p);
        let procs = p.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).with_ctx(|| format!("add pid {pid} to {}", procs.display()))?;
    }
    Ok(())
}

/// mkdir -p, filling an empty v1 cpuset from the parent on the way (else no task may join).
fn create_dir(p: &Path) -> Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        create_dir(parent)?;
    }
    match fs::create_dir(p) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("create cgroup {}", p.display()), e)),
    }
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = p.join(f);
        if !mine.exists() || p.join("cgroup.subtree_control").exists() {
            continue; // not a v1 cpuset hierarchy
        }
        if fs::read_to_string(&mine).map(|s| s.trim().is_empty()).unwrap_or(false) {
            if let Some(parent) = p.parent() {
                let v = fs::read_to_string(parent.join(f)).with_ctx(|| format!("read {}", parent.join(f).display()))?;
                fs::write(&mine, v.trim()).with_ctx(|| format!("write {}", mine.display()))?;
            }
        }
    }
    Ok(())
}

/// Pids in the container's cgroup (from the first hierarchy that has the directory).
pub fn pids(paths: &[PathBuf]) -> Vec<i32> {
    // Prefer a hierarchy every process is sure to be in: v2/unified, then pids, then any.
    let mut ordered: Vec<&PathBuf> = paths.iter().collect();
    ordered.sort_by_key(|p| {
        let s = p.to_string_lossy();
        if p.join("cgroup.subtree_control").exists() { 0 } else if s.contains("/pids") { 1 } else { 2 }
    });
    for p in ordered {
        if let Ok(t) = fs::read_to_string(p.join("cgroup.procs")) {
            return t.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    vec![]
}

pub fn signal_all(paths: &[PathBuf], sig: i32) -> Result<()> {
    for pid in pids(paths) {
        // SAFETY: plain FFI call; an already exited pid just yields ESRCH.
        unsafe { libc::kill(pid, sig) };
    }
    Ok(())
}

/// Remove the cgroup, killing anything still inside it. A cgroup shared with other
/// live containers (a pod's) keeps existing: only the last one out removes it.
pub fn remove(paths: &[PathBuf], shared: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    // Frozen processes cannot die: thaw a paused container before killing it.
    if !shared && is_frozen(paths) {
        let _ = open(paths).set_frozen(false);
    }
    for p in paths {
        loop {
            match fs::remove_dir(p) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && !shared => {
                    if Instant::now() > deadline {
                        return Err(Error::io(format!("remove cgroup {}", p.display()), e));
                    }
                    signal_all(std::slice::from_ref(p), libc::SIGKILL)?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                Err(e) => return Err(Error::io(format!("remove cgroup {}", p.display()), e)),
            }
        }
    }
    Ok(())
}

/// Is the container's cgroup frozen (v1 freezer or v2 cgroup.freeze)?
pub fn is_frozen(paths: &[PathBuf]) -> bool {
    // Hybrid: the v2 directory has a cgroup.freeze too (never written); any frozen counts.
    paths.iter().any(|p| {
        fs::read_to_string(p.join("freezer.state")).is_ok_and(|s| s.trim() != "THAWED")
            || fs::read_to_string(p.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    })
}

/// Resource control over one container's cgroup, whatever the cgroup version.
pub trait Controller {
    /// Write the settings `r` asks for (only those given). `update`: a later change by
    /// `berth update` (memory.checkBeforeUpdate applies).
    fn apply(&self, r: &LinuxResources, update: bool, log: &Logger) -> Result<()>;
    /// runc's `types.Stats` JSON (cpu, memory, pids, blkio, hugetlb).
    fn stats(&self) -> serde_json::Value;
    fn set_frozen(&self, frozen: bool) -> Result<()>;
    /// How many processes the kernel's OOM killer killed in this cgroup so far.
    fn oom_kills(&self) -> u64;
}

/// The controller for a container's cgroup directories: v2 when every directory is in
/// a v2 hierarchy (pure v2), else v1 (v1 or hybrid: the controllers live in v1).
pub fn open(paths: &[PathBuf]) -> Box<dyn Controller> {
    let all_v2 = !paths.is_empty() && paths.iter().all(|p| is_v2_dir(p));
    if all_v2 {
        Box::new(v2::V2 { path: paths[0].clone() })
    } else {
        Box::new(v1::V1 { paths: paths.iter().filter(|p| !is_v2_dir(p)).cloned().collect() })
    }
}

fn is_v2_dir(p: &Path) -> bool {
    // Present in every v2 cgroup, never in v1.
    p.join("cgroup.controllers").exists()
}

/// Write one cgroup file, the error naming file and value.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    fs::write(&p, value).map_err(|e| Error::io(format!("write {value:?} to {}", p.display()), e))
}

pub(crate) fn read(dir: &Path, file: &str) -> Option<String> {
    fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_string())
}

/// A single number; "max" (v2's unlimited) reads as u64::MAX.
pub(crate) fn read_u64(dir: &Path, file: &str) -> u64 {
    match read(dir, file) {
        Some(s) if s == "max" => u64::MAX,
        Some(s) => s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0),
        None => 0,
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
pub(crate) fn read_kv(dir: &Path, file: &str) -> Vec<(String, u64)> {
    read(dir, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?))
        })
        .collect()
}

pub(crate) fn kv(list: &[(String, u64)], key: &str) -> u64 {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| *v).unwrap_or(0)
}

/// Wait (briefly) until `done` holds, for freezer states that settle asynchronously.
pub(crate) fn settle(what: &str, done: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() > deadline {
            return Err(Error::Container(format!("{what}: timed out waiting for the cgroup to settle")));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// runc's mapping of cgroup v1 cpu.shares [2, 262144] onto v2 cpu.weight [1, 10000]:
/// the quadratic-in-log2 curve of runc >= 1.3.2 / opencontainers/cgroups, which maps the
/// v1 default 1024 onto the v2 default 100 (the older linear formula gave 39).
pub fn shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        s if s <= 2 => 1,
        s if s >= 262144 => 10000,
        s => {
            let l = (s as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// runc's mapping of blkio weight [10, 1000] onto v2 io.weight [1, 10000].
pub fn blkio_to_io_weight(w: u16) -> u64 {
    if w == 0 {
        0
    } else {
        1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
    }
}

/// runc's memory.swap.max from the OCI memory+swap value: -1 max, 0 unset.
pub fn swap_v2(swap: i64, limit: i64) -> Result<i64> {
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if limit == 0 || limit == -1 {
        return Err(Error::Config("linux.resources.memory.swap: a swap limit needs a memory limit".into()));
    }
    if swap < limit {
        return Err(Error::Config(format!("linux.resources.memory.swap {swap}: memory+swap must be >= memory.limit {limit}")));
    }
    Ok(swap - limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(512), 59);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10000);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(swap_v2(0, -1).unwrap(), -1);
        assert_eq!(swap_v2(200, 100).unwrap(), 100);
        assert!(swap_v2(50, 100).is_err());
        assert!(swap_v2(50, 0).is_err());
    }
}
