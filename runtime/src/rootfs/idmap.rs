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
    // child → parent: "unshared" (one byte) — the maps can be written only after that.
    let (ready_rd, ready_wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx("pipe", "idmap helper")?;
    // SAFETY: the runtime is single-threaded; the child only calls async-signal-safe
    // functions (unshare, read, _exit) before exiting.
    match unsafe { fork() }.ctx("fork", "idmap helper")? {
        ForkResult::Child => {
            drop(wr);
            drop(ready_rd);
            let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            if ok {
                let _ = nix::unistd::write(&ready_wr, b"u");
            }
            drop(ready_wr);
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&rd, &mut b); // wait until the parent has the ns fd
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        ForkResult::Parent { child } => {
            drop(rd);
            drop(ready_wr);
            let pid = child.as_raw();
            let mut b = [0u8; 1];
            let unshared = matches!(nix::unistd::read(&ready_rd, &mut b), Ok(1));
            let res = (|| {
                if !unshared {
                    return Err(Error::Child("idmap helper could not create a user namespace".into()));
                }
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
