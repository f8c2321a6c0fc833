//! The launch sequence. Three processes, no re-exec of the berth binary:
//!
//! ```text
//! runtime (berth create/run/exec) ──fork──▶ bootstrap ──fork──▶ container process
//!   places it in its cgroup, writes       joins namespaces by     init: mounts, pivot_root,
//!   id maps, runs runtime-side hooks      path, unshares new      hooks, credentials; blocks
//!                                         ones, reports the pid   on exec.fifo until `start`
//! ```
//! The bootstrap stage exists because a new pid (and time) namespace only applies to
//! children. The runtime is a child subreaper, so the container process is re-parented to
//! it when the bootstrap exits (`run` and `exec` wait for it). Each stage talks to the
//! runtime over [`channel`] with typed messages.

pub mod bootstrap;
pub mod channel;
pub mod init;
pub mod setup;
pub mod stdio;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::SysContext;
use crate::namespaces::Joins;
use crate::{Error, Result};
use channel::Msg;

pub enum Role {
    /// The container's init: waits on the exec fifo (an O_PATH fd) before the user program.
    Init { fifo: OwnedFd },
    /// A process exec'd into a running container.
    Exec,
}

pub struct Launch<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub process: &'a Process,
    pub bundle: &'a Path,
    pub rootfs: PathBuf,
    pub role: Role,
    /// Connected `--console-socket`, when the process has a terminal.
    pub console: Option<OwnedFd>,
    /// Descriptors 3..3+n passed through (`--preserve-fds` plus `LISTEN_FDS`).
    pub preserve_fds: u32,
    /// Set LISTEN_FDS/LISTEN_PID in the process environment (socket activation).
    pub listen_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub joins: Joins,
    /// Namespaces to create, other than user, cgroup and time (handled at their moment).
    pub new_ns: CloneFlags,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_time: bool,
    pub idmapped: Vec<Option<OwnedFd>>,
    pub cgroup_paths: Vec<PathBuf>,
    pub log: &'a crate::log::Logger,
    /// For `Role::Exec`: host pid of the container's init (the state's `pid`).
    pub init_pid: Option<i32>,
}

impl<'a> Launch<'a> {
    /// The namespace plan of a new container: create what has no path, join what has.
    pub fn plan_namespaces(spec: &Spec) -> Result<(Joins, CloneFlags, bool, bool, bool)> {
        let mut joins = Vec::new();
        let mut new = CloneFlags::empty();
        let (mut user, mut cgroup, mut time) = (false, false, false);
        for (t, path) in crate::spec::namespaces(spec) {
            match path {
                Some(p) => joins.push((t, p)),
                None => match t {
                    LinuxNamespaceType::User => user = true,
                    LinuxNamespaceType::Cgroup => cgroup = true,
                    LinuxNamespaceType::Time => time = true,
                    t => new |= crate::namespaces::flag(t),
                },
            }
        }
        Ok((Joins::open(&joins)?, new, user, cgroup, time))
    }
}

/// What the runtime learned from a successful launch.
pub struct Started {
    pub pid: i32,
}

/// Run the launch sequence. `on_hooks` runs when an init asks for the runtime-side hooks
/// (prestart, createRuntime) and returns the state JSON for the container-side ones.
pub fn launch(l: &Launch, mut on_hooks: impl FnMut(i32) -> Result<String>) -> Result<Started> {
    // SAFETY: prctl with integer arguments. Orphans of the bootstrap (the container
    // process) come to us, so `run`/`exec` can wait for them.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let (ours, theirs) = channel::pair()?;
    // SAFETY: berth is single-threaded; the child runs the launch stages and never returns.
    let bootstrap = match unsafe { fork() }.ctx("fork", "bootstrap")? {
        ForkResult::Child => {
            drop(ours);
            bootstrap::run(l, theirs)
        }
        ForkResult::Parent { child } => child,
    };
    drop(theirs);
    let mut pid: Option<i32> = None;
    let result = drive(l, &ours, bootstrap, &mut pid, &mut on_hooks);
    if result.is_err() {
        if let Some(p) = pid {
            // SAFETY: plain FFI; the pid is our child (re-parented), not yet reaped.
            unsafe { libc::kill(p, libc::SIGKILL) };
            let _ = waitpid(Pid::from_raw(p), None);
        }
        let _ = nix::sys::signal::kill(bootstrap, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(bootstrap, None);
    }
    result.map(|_| Started { pid: pid.unwrap() })
}

fn drive(l: &Launch, ch: &channel::Channel, bootstrap: Pid, pid: &mut Option<i32>, on_hooks: &mut impl FnMut(i32) -> Result<String>) -> Result<()> {
    loop {
        match ch.recv()? {
            Some(Msg::MapIds) => {
                let linux = l.spec.linux().as_ref();
                crate::namespaces::write_id_maps(
                    bootstrap.as_raw(),
                    linux.and_then(|x| x.uid_mappings().as_deref()).unwrap_or_default(),
                    linux.and_then(|x| x.gid_mappings().as_deref()).unwrap_or_default(),
                )?;
                ch.send(&Msg::MapIdsDone)?;
            }
            Some(Msg::Pid(p)) => {
                *pid = Some(p);
                let _ = waitpid(bootstrap, None);
                crate::cgroups::join(&l.cgroup_paths, p)?;
                // Limits hold before the container's init runs a single instruction of its own.
                if let (Role::Init { .. }, Some(r)) = (&l.role, l.spec.linux().as_ref().and_then(|x| x.resources().as_ref())) {
                    crate::cgroups::open(&l.cgroup_paths).apply(r, false, l.log)?;
                }
                ch.send(&Msg::Continue)?;
            }
            Some(Msg::RunHooks) => {
                let p = pid.ok_or_else(|| Error::Child("hooks requested before the pid was known".into()))?;
                let state = on_hooks(p)?;
                ch.send(&Msg::HooksDone(state))?;
            }
            Some(Msg::Ready) => {
                // Device rules once the init has built /dev (its mknods are not subject
                // to them), before the user program: as runc does at procReady.
                if let (Role::Init { .. }, Some(d)) = (&l.role, l.spec.linux().as_ref().and_then(|x| x.resources().as_ref()).and_then(|r| r.devices().as_ref())) {
                    crate::devices::apply(&l.cgroup_paths, d)?;
                }
                return Ok(());
            }
            Some(Msg::Warn(w)) => l.log.warn(&w),
            Some(Msg::SeccompListener(fd)) => {
                let p = pid.ok_or_else(|| Error::Child("seccomp listener before the pid was known".into()))?;
                crate::seccomp::hand_off(l, p, fd)?;
                ch.send(&Msg::SeccompDone)?;
            }
            Some(Msg::Error(e)) => return Err(Error::Child(e)),
            Some(m) => return Err(Error::Child(format!("sync channel: unexpected {m:?}"))),
            None => {
                return match (&l.role, *pid) {
                    // The exec'd program closed our channel by exec'ing: success.
                    (Role::Exec, Some(_)) => Ok(()),
                    _ => Err(Error::Child("container process exited before it was ready".into())),
                }
            }
        }
    }
}

/// Raise an fd above `min` (so it cannot collide with descriptors passed through).
pub fn lift(fd: OwnedFd, min: i32) -> Result<OwnedFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    let n = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min)).ctx("dup", "descriptor")?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(n) })
}
