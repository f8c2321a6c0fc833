//! `berth kill`: signal the init (through a pidfd: never a recycled pid), or with
//! `--all` every process in the container's cgroup.

use super::Ctx;
use crate::error::SysContext;
use crate::state::{State, Status};
use crate::{Error, Result};

pub fn kill(ctx: &Ctx, id: &str, signal: &str, all: bool) -> Result<()> {
    let st = State::load(&ctx.root, id)?;
    let sig = crate::signals::parse(signal)?;
    if st.creator.is_some() {
        return Err(Error::Container(format!("container {id} is being created")));
    }
    let stopped = st.status(&ctx.root) == Status::Stopped;
    if all && stopped {
        // Without its own pid namespace processes may outlive the init: a stopped init is
        // no reason to spare them (as runc).
        if crate::cgroups::pids(&st.cgroup_paths).is_empty() {
            return Err(Error::Container(format!("container {id} is not running")));
        }
        return crate::cgroups::signal_all(&st.cgroup_paths, sig);
    }
    if stopped {
        return Err(Error::Container(format!("container {id} is not running")));
    }
    let pidfd = crate::syscalls::pidfd_open(st.pid).ctx("pidfd_open", st.pid)?;
    // The pidfd was opened after the start-time check in status(): recheck to close the gap.
    if !st.init_alive() {
        return Err(Error::Container(format!("container {id} is not running")));
    }
    // The init first: signalling the cgroup first could let it die (pid namespace) before
    // its own signal, which would then look like "not running".
    let res = crate::syscalls::pidfd_send_signal(&pidfd, sig);
    if all {
        crate::cgroups::signal_all(&st.cgroup_paths, sig)?;
    }
    match res {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ESRCH) if all => Ok(()),
        Err(e) => Err(Error::sys("kill", format_args!("container {id} (pid {}) with signal {sig}", st.pid), e)),
    }
}
