//! Reaping: the shim is a child subreaper, so the container's init (and any
//! orphan of the runtime) is re-parented to it. Every child is reaped; the
//! init's status becomes the exit record.

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::protocol::{now, ExitRecord};

/// How the init ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
}

impl Ending {
    pub fn from_status(st: WaitStatus) -> Option<Ending> {
        match st {
            WaitStatus::Exited(_, code) => Some(Ending::Exited(code)),
            WaitStatus::Signaled(_, sig, _) => Some(Ending::Signaled(sig as i32)),
            _ => None,
        }
    }

    /// `128 + signal` when killed, as shells report it.
    pub fn code(self) -> i32 {
        match self {
            Ending::Exited(c) => c,
            Ending::Signaled(s) => 128 + s,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            Ending::Exited(_) => None,
            Ending::Signaled(s) => Some(s),
        }
    }

    /// The record for the exit file. `oom_killed` is decided by the caller.
    pub fn record(self, started_at: Option<String>, oom_killed: bool) -> ExitRecord {
        let (exit_code, signal) = match self {
            Ending::Exited(c) => (c, None),
            Ending::Signaled(s) => (128 + s, Some(s)),
        };
        ExitRecord { exit_code, signal, oom_killed, started_at, finished_at: now() }
    }
}

/// Reaps every child that has ended, without blocking; returns how `init`
/// ended if it was among them.
pub fn reap_all(init: i32) -> Option<Ending> {
    reap_list().into_iter().find(|(p, _)| *p == init).map(|(_, e)| e)
}

/// Reaps every child that has ended, without blocking: (pid, how it ended).
pub fn reap_list() -> Vec<(i32, Ending)> {
    let mut found = vec![];
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return found,
            Ok(st) => {
                if let (Some(p), Some(e)) = (st.pid(), Ending::from_status(st)) {
                    found.push((p.as_raw(), e));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return found,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_exit_and_signal() {
        let r = Ending::Exited(3).record(None, false);
        assert_eq!((r.exit_code, r.signal), (3, None));
        let r = Ending::Signaled(9).record(Some(now()), false);
        assert_eq!((r.exit_code, r.signal), (137, Some(9)));
        assert!(r.started_at.is_some());
    }

    #[test]
    fn reaps_a_child() {
        let child = std::process::Command::new("sh").args(["-c", "exit 7"]).spawn().unwrap();
        let pid = child.id() as i32;
        let mut got = None;
        for _ in 0..500 {
            got = reap_all(pid);
            if got.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, Some(Ending::Exited(7)));
    }
}
