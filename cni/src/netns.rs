//! Network namespaces by path (`CNI_NETNS`).
//!
//! Entering a netns is done in a dedicated, short-lived thread (`setns(2)` moves
//! only the calling thread): the plugin's main thread stays in the node's
//! netns, so no code path can forget to switch back. Usually the closure only
//! opens a netlink socket: a socket stays bound to the netns it was created
//! in, and the main thread then uses it directly. A thread is much cheaper than
//! a fork and keeps results and errors typed.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

/// `NSFS_MAGIC` from linux/magic.h: the filesystem of /proc/<pid>/ns/* and of
/// their bind mounts under /run/netns.
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("netns {path}: does not exist")]
    NotFound { path: PathBuf },
    #[error("netns {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("netns {path}: not a network namespace (filesystem magic {magic:#x})")]
    NotNetns { path: PathBuf, magic: i64 },
    #[error("netns {path}: setns: {source}")]
    Setns { path: PathBuf, source: nix::Error },
    #[error("netns {path}: the thread running inside it panicked")]
    Panicked { path: PathBuf },
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens `path` and checks that it is a namespace file (nsfs).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, NetnsError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => NetnsError::NotFound { path: path.clone() },
            _ => NetnsError::Open { path: path.clone(), source },
        })?;
        let st = nix::sys::statfs::fstatfs(&file)
            .map_err(|e| NetnsError::Open { path: path.clone(), source: e.into() })?;
        let magic = st.filesystem_type().0 as i64;
        // /proc/<pid>/ns/net is nsfs too, as seen through procfs' magic link.
        if magic != NSFS_MAGIC {
            return Err(NetnsError::NotNetns { path, magic });
        }
        Ok(NetNs { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Runs `f` in a thread that has entered this netns, and returns its value.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T, NetnsError> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(self.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|source| NetnsError::Setns { path: self.path.clone(), source })?;
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Panicked { path: self.path.clone() })?
        })
    }
}

/// Writes a sysctl under /proc/sys (e.g. `net/ipv4/ip_forward`). /proc/sys/net
/// belongs to the netns of the thread that opens the file, so inside
/// [`NetNs::run`] this sets the pod's value.
pub fn sysctl_set(key: &str, value: &str) -> std::io::Result<()> {
    let p = Path::new("/proc/sys").join(key);
    let cur = std::fs::read_to_string(&p)?;
    if cur.trim() == value {
        return Ok(());
    }
    std::fs::write(&p, value).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
}

pub fn sysctl_get(key: &str) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(Path::new("/proc/sys").join(key))?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_wrong_paths_are_named() {
        let e = NetNs::open("/nonexistent/netns").unwrap_err();
        assert!(matches!(e, NetnsError::NotFound { .. }));
        assert!(e.to_string().contains("/nonexistent/netns"), "{e}");
        let e = NetNs::open("/proc/self/status").unwrap_err();
        assert!(matches!(e, NetnsError::NotNetns { .. }), "{e}");
    }

    #[test]
    fn own_netns_opens_and_runs() {
        let ns = NetNs::open("/proc/self/ns/net").unwrap();
        let here = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let there = ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
        assert_eq!(here, there);
    }
}
