//! Namespaces: which to create, which to join by path, id maps and time offsets.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, LinuxTimeOffset};

use crate::error::{IoContext, SysContext};
use crate::Result;

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// The name of the namespace file under /proc/<pid>/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// Join order: user first (it grants the capabilities for the rest), mount last
/// (after it, host paths no longer resolve — which is why all fds are opened up front).
fn join_rank(t: LinuxNamespaceType) -> u8 {
    match t {
        LinuxNamespaceType::User => 0,
        LinuxNamespaceType::Ipc => 1,
        LinuxNamespaceType::Uts => 2,
        LinuxNamespaceType::Network => 3,
        LinuxNamespaceType::Pid => 4,
        LinuxNamespaceType::Cgroup => 5,
        LinuxNamespaceType::Time => 6,
        LinuxNamespaceType::Mount => 7,
    }
}

/// Namespaces to enter, opened in the runtime's own mount namespace.
pub struct Joins(pub Vec<(LinuxNamespaceType, OwnedFd)>);

impl Joins {
    /// Open `path` for each namespace to join. A user namespace equal to our own is
    /// skipped (setns into the current user namespace fails with EINVAL).
    pub fn open(list: &[(LinuxNamespaceType, PathBuf)]) -> Result<Joins> {
        let own_user = std::fs::metadata("/proc/self/ns/user").map(|m| m.ino()).ok();
        let mut v = Vec::new();
        for (t, p) in list {
            if *t == LinuxNamespaceType::User && std::fs::metadata(p).map(|m| m.ino()).ok() == own_user {
                continue;
            }
            let f = std::fs::File::open(p).with_ctx(|| format!("open {t} namespace {}", p.display()))?;
            v.push((*t, OwnedFd::from(f)));
        }
        v.sort_by_key(|(t, _)| join_rank(*t));
        Ok(Joins(v))
    }

    pub fn enter(&self) -> Result<()> {
        for (t, fd) in &self.0 {
            nix::sched::setns(fd.as_fd(), flag(*t)).ctx("setns", format_args!("{t} namespace"))?;
        }
        Ok(())
    }

    pub fn contains(&self, t: LinuxNamespaceType) -> bool {
        self.0.iter().any(|(x, _)| *x == t)
    }
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Write uid_map and gid_map of `pid` (which has just unshared its user namespace).
pub fn write_id_maps(pid: i32, uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<()> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    std::fs::write(base.join("uid_map"), map_text(uid)).with_ctx(|| format!("write uid_map of pid {pid}"))?;
    std::fs::write(base.join("gid_map"), map_text(gid)).with_ctx(|| format!("write gid_map of pid {pid}"))?;
    Ok(())
}

/// Write the offsets of a freshly unshared time namespace (before any process enters it).
pub fn write_time_offsets(offsets: &HashMap<String, LinuxTimeOffset>) -> Result<()> {
    let mut text = String::new();
    for (clock, o) in offsets {
        text.push_str(&format!("{clock} {} {}\n", o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)));
    }
    std::fs::write("/proc/self/timens_offsets", text).with_ctx(|| "write /proc/self/timens_offsets".into())
}

/// Path of the namespace file of a running process.
pub fn of_pid(pid: i32, t: LinuxNamespaceType) -> PathBuf {
    Path::new("/proc").join(pid.to_string()).join("ns").join(proc_name(t))
}
