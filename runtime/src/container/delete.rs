//! `berth delete`: remove every trace of a container: its processes (with --force or
//! when only created), its cgroup, its state; then the poststop hooks.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::Ctx;
use crate::hooks::{self, Kind};
use crate::state::{State, Status};
use crate::{Error, Result};

pub fn delete(ctx: &Ctx, id: &str, force: bool) -> Result<()> {
    let st = match State::load(&ctx.root, id) {
        Ok(st) => st,
        Err(Error::Container(msg)) if msg.ends_with("does not exist") => {
            // A create that died before writing its state may have left the directory.
            let dir = crate::state::state_dir(&ctx.root, id);
            if crate::state::check_id(id).is_ok() && dir.is_dir() {
                let _ = std::fs::remove_dir_all(&dir);
                return Ok(());
            }
            return if force { Ok(()) } else { Err(Error::Container(msg)) };
        }
        Err(e) => return Err(e),
    };
    match st.status(&ctx.root) {
        Status::Creating => return Err(Error::Container(format!("cannot delete container {id}: it is being created"))),
        Status::Stopped | Status::Created => {}
        s if !force => {
            return Err(Error::Container(format!("cannot delete container {id} that is {s}: stop it first or use --force")))
        }
        _ => {}
    }
    destroy(ctx, &st)
}

/// Kill what is left, wait for the init to go, remove cgroup and state, poststop hooks.
pub fn destroy(ctx: &Ctx, st: &State) -> Result<()> {
    if st.creator.is_some() {
        // A create that died half-way: its stages exit on their own when the channel
        // closes; remove what it made, never processes by cgroup.
        crate::cgroups::remove(&st.cgroup_paths, true)?;
        let dir = st.dir(&ctx.root);
        return std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove state {}", dir.display()), e));
    }
    let own_pidns = st.own_pidns;
    if st.init_alive() {
        // A frozen cgroup would keep SIGKILL pending forever: thaw it first.
        thaw(&st.cgroup_paths);
        if let Ok(fd) = crate::syscalls::pidfd_open(st.pid) {
            if st.init_alive() {
                let _ = crate::syscalls::pidfd_send_signal(&fd, libc::SIGKILL);
            }
            wait_gone(&fd, Duration::from_secs(10));
        }
    }
    // Without its own pid namespace the init's death does not take the others along.
    if !own_pidns {
        crate::cgroups::signal_all(&st.cgroup_paths, libc::SIGKILL)?;
    }
    crate::cgroups::remove(&st.cgroup_paths, own_pidns)?;
    let dir = st.dir(&ctx.root);
    std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("remove state {}", dir.display()), e))?;
    // runtime-spec: a failing poststop hook is a warning; the others still run.
    for w in hooks::run_all_warn(&st.hooks, Kind::Poststop, &st.hook_json(Status::Stopped)) {
        ctx.log.warn(&w);
    }
    Ok(())
}

fn thaw(paths: &[std::path::PathBuf]) {
    for p in paths {
        let _ = std::fs::write(p.join("freezer.state"), "THAWED");
        let _ = std::fs::write(p.join("cgroup.freeze"), "0");
    }
}

/// Wait until the process behind `fd` has exited (a pidfd polls readable then).
fn wait_gone(fd: &std::os::fd::OwnedFd, limit: Duration) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut p, PollTimeout::from(100u16)) {
            if n > 0 {
                return;
            }
        }
    }
}
