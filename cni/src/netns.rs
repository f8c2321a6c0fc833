//! Network namespaces by path (`CNI_NETNS`).
//!
//! [`NetNs::run`] enters a netns on the calling thread, runs a closure and switches
//! back before returning (a guard restores the original netns even on panic; if that
//! fails the process aborts rather than go on in the wrong namespace). Usually the
//! closure only opens a netlink socket: a socket stays bound to the netns it was
//! created in, and the caller then uses it from the node's netns. `setns(2)` with
//! CLONE_NEWNET moves only the calling thread, so other threads (there are none in a
//! plugin) are unaffected. Entering in place costs four syscalls (open of the current
//! netns, setns there, setns back, close); the earlier design
//! (a short-lived thread per entry) cost a clone, a 2 MiB stack and a futex wait.
//!
//! Caveat for closures: /proc/self resolves to the thread-group leader, so code inside
//! must name /proc/thread-self (or /proc/sys, which follows the calling thread).

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

    /// Runs `f` on the calling thread inside this netns, then switches back.
    pub fn run<T, F: FnOnce() -> T>(&self, f: F) -> Result<T, NetnsError> {
        let here = File::open("/proc/thread-self/ns/net")
            .map_err(|source| NetnsError::Open { path: PathBuf::from("/proc/thread-self/ns/net"), source })?;
        nix::sched::setns(self.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|source| NetnsError::Setns { path: self.path.clone(), source })?;
        let _back = Restore(here);
        Ok(f())
    }
}

/// Switches the thread back to the netns it came from when dropped.
struct Restore(File);

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::setns(self.0.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
            // Going on in the pod's netns could touch the wrong links and rules.
            eprintln!("berth-cni: cannot return to the original network namespace: {e}");
            std::process::abort();
        }
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

    #[test]
    fn run_enters_and_returns() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP: needs root");
            return;
        }
        // A fresh netns, kept by a path under /proc of a parked thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tx.send(format!("/proc/{}/task/{}/ns/net", std::process::id(), nix::unistd::gettid())).unwrap();
            let _ = done_rx.recv();
        });
        let path = rx.recv().unwrap();
        let ns = NetNs::open(&path).unwrap();
        let here = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let inside = ns.run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap()).unwrap();
        assert_ne!(here, inside);
        assert_eq!(inside, std::fs::read_link(&path).unwrap());
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), here, "back in the original netns");
        // A panic inside still switches back.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ns.run(|| panic!("boom"))));
        assert!(r.is_err());
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/net").unwrap(), here);
        done_tx.send(()).unwrap();
        t.join().unwrap();
    }
}
