//! Id-mapped bind mounts (a mount's `uidMappings`/`gidMappings`).
//!
//! The mapping is applied by the runtime in the host's namespaces, before the container
//! exists (mount_setattr needs privilege over the source filesystem, which a container in
//! its own user namespace lacks). The result is a detached mount tree that the container's
//! init attaches with move_mount.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxIdMapping, Mount};

use crate::error::{IoContext, SysContext};
use crate::{Error, Result};

/// A user namespace holding exactly these mappings (its creator process is gone).
fn userns_with(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx("pipe", "idmap helper")?;
    // SAFETY: the runtime is single-threaded; the child only calls async-signal-safe
    // functions (unshare, read, _exit) before exiting.
    match unsafe { fork() }.ctx("fork", "idmap helper")? {
        ForkResult::Child => {
            drop(wr);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&rd, &mut b); // wait until the parent has the ns fd
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        ForkResult::Parent { child } => {
            drop(rd);
            let pid = child.as_raw();
            // Give the child a moment to unshare: poll its user ns until it differs from ours.
            let own = std::fs::read_link("/proc/self/ns/user").ok();
            let mut tries = 0;
            while std::fs::read_link(format!("/proc/{pid}/ns/user")).ok() == own && tries < 10_000 {
                std::thread::yield_now();
                tries += 1;
            }
            let res = (|| {
                crate::namespaces::write_id_maps(pid, uid, gid)?;
                let f = std::fs::File::open(format!("/proc/{pid}/ns/user")).with_ctx(|| "open idmap user namespace".into())?;
                Ok(OwnedFd::from(f))
            })();
            drop(wr);
            let _ = waitpid(child, None);
            res
        }
    }
}

/// Detached id-mapped copies of the bind mounts that ask for one, by mount index.
pub fn prepare(mounts: &[Mount], bundle: &Path) -> Result<Vec<Option<OwnedFd>>> {
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        if !super::mounts::has_idmap(m) {
            out.push(None);
            continue;
        }
        let src = m.source().clone().ok_or_else(|| Error::Config(format!("mount {}: no source", m.destination().display())))?;
        let src = if src.is_absolute() { src } else { bundle.join(src) };
        let opts = super::mounts::parse(m.options().as_deref().unwrap_or_default());
        let ns = userns_with(m.uid_mappings().as_deref().unwrap_or_default(), m.gid_mappings().as_deref().unwrap_or_default())?;
        let mut flags = crate::syscalls::OPEN_TREE_CLONE | crate::syscalls::OPEN_TREE_CLOEXEC;
        if opts.recursive {
            flags |= crate::syscalls::AT_RECURSIVE;
        }
        let tree = crate::syscalls::open_tree(&src, flags).ctx("open_tree", src.display())?;
        crate::syscalls::mount_setattr_idmap(&tree, ns.as_raw_fd(), opts.recursive).ctx("idmap mount", src.display())?;
        out.push(Some(tree));
    }
    Ok(out)
}
