//! Stage 2: in the child of the runtime. Joins namespaces by path, unshares the user
//! namespace (the runtime writes its maps), unshares the rest, forks the container process.

use nix::sched::{unshare, CloneFlags};
use nix::unistd::{fork, ForkResult};

use super::channel::{Channel, Msg};
use super::{Launch, Role};
use crate::error::SysContext;
use crate::Result;

pub fn run(l: &Launch, ch: Channel) -> ! {
    match stage(l, &ch) {
        Ok(pid) => {
            let _ = ch.send(&Msg::Pid(pid));
            // SAFETY: _exit skips destructors and atexit handlers, as a forked child must.
            unsafe { libc::_exit(0) }
        }
        Err(e) => {
            let _ = ch.send(&Msg::Error(e.to_string()));
            unsafe { libc::_exit(1) }
        }
    }
}

fn stage(l: &Launch, ch: &Channel) -> Result<i32> {
    // Not dumpable: no process in the container may open /proc/<pid>/exe (the host's
    // berth binary) or /proc/<pid>/fd of this stage or its child before the user program
    // replaces them (execve resets the flag). Inherited across fork.
    // SAFETY: prctl with integer arguments.
    nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }).ctx("prctl", "PR_SET_DUMPABLE")?;
    // The program must not inherit the runtime's signal state: Rust ignores SIGPIPE, and
    // `run`/`create` block the termination signals while they work.
    reset_signals()?;
    // Inherited by the container process; set before any user namespace, where lowering
    // the score would be refused.
    if let Some(adj) = l.process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| crate::Error::io(format!("set oom_score_adj to {adj}"), e))?;
    }
    if let Role::Exec = l.role {
        if let Some(cpus) = l.process.exec_cpu_affinity().as_ref().and_then(|a| a.initial().clone()) {
            crate::syscalls::set_affinity(&super::setup::parse_cpu_list(&cpus)?).ctx("set initial cpu affinity", &cpus)?;
        }
    }
    l.joins.enter()?;
    if l.new_user {
        unshare(CloneFlags::CLONE_NEWUSER).ctx("unshare", "user namespace")?;
        ch.send(&Msg::MapIds)?;
        ch.expect("MapIdsDone", |m| *m == Msg::MapIdsDone)?;
        // Become root of the new namespace for what follows.
        nix::unistd::setresgid(0.into(), 0.into(), 0.into()).ctx("setresgid", "0 in the new user namespace")?;
        nix::unistd::setresuid(0.into(), 0.into(), 0.into()).ctx("setresuid", "0 in the new user namespace")?;
    }
    let mut flags = l.new_ns;
    if l.new_time {
        flags |= CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    }
    if !flags.is_empty() {
        unshare(flags).ctx("unshare", format_args!("namespaces {flags:?}"))?;
    }
    if l.new_time {
        if let Some(off) = l.spec.linux().as_ref().and_then(|x| x.time_offsets().as_ref()) {
            crate::namespaces::write_time_offsets(off)?;
        }
    }
    // SAFETY: single-threaded; the child continues as the container process and never returns.
    match unsafe { fork() }.ctx("fork", "container process")? {
        ForkResult::Child => super::init::run(l, ch),
        ForkResult::Parent { child } => Ok(child.as_raw()),
    }
}

/// Every signal back to its default disposition, none blocked. Through the raw system
/// call: glibc refuses to touch the two real-time signals it reserves (32, 33), yet an
/// ignored one would be inherited by the program like any other.
fn reset_signals() -> Result<()> {
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let dfl = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid kernel sigaction struct that outlives the call; SIG_DFL installs
        // no handler, and this process is single-threaded.
        unsafe { libc::syscall(libc::SYS_rt_sigaction, sig, &dfl as *const KernelSigaction, std::ptr::null_mut::<KernelSigaction>(), 8) };
    }
    use nix::sys::signal::{SigSet, SigmaskHow};
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None).ctx("sigprocmask", "unblock all")
}
