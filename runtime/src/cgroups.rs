//! Cgroup placement: find the hierarchies (v1, v2 or hybrid), create the container's
//! cgroup in each, move processes in, list and signal them, remove the cgroup.
//!
//! A thin own layer rather than `cgroups-rs`: placement needs only mkdir, a write to
//! `cgroup.procs` and rmdir on paths we compute from mountinfo; cgroups-rs pulls in its
//! own hierarchy discovery (which assumes /sys/fs/cgroup layouts) and resource model for
//! that. Resource limits (part 2) will decide whether its controllers are worth it.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::IoContext;
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
    for p in paths {
        if let Ok(s) = fs::read_to_string(p.join("freezer.state")) {
            return s.trim() == "FROZEN";
        }
        if let Ok(s) = fs::read_to_string(p.join("cgroup.freeze")) {
            return s.trim() == "1";
        }
    }
    false
}
