//! Foreground `run`/`exec`: forward signals to the container process, reap it (and any
//! orphan re-parented to us), return its exit code; optionally proxy its terminal.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, socketpair, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::SysContext;
use crate::{Error, Result};

/// A socket pair standing in for `--console-socket`: the container end goes to the
/// launch, the master arrives on ours.
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).ctx("socketpair", "console")
}

pub fn receive_master(sock: &OwnedFd) -> Result<OwnedFd> {
    let mut buf = [0u8; 64];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).ctx("receive pty master", "console")?;
    for c in msg.cmsgs().ctx("read control message", "console")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Child("console: no pty master received".into()))
}

fn forwarded() -> SigSet {
    let mut s = SigSet::empty();
    for sig in Signal::iterator() {
        if !matches!(sig, Signal::SIGKILL | Signal::SIGSTOP | Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE | Signal::SIGTTIN | Signal::SIGTTOU) {
            s.add(sig);
        }
    }
    s
}

fn code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reap every child that has exited; Some(code) once `pid` is among them.
fn reap(pid: i32) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(ws) => {
                if ws.pid() == Some(Pid::from_raw(pid)) {
                    result = code(ws);
                }
            }
        }
    }
}

/// Wait for `pid`; forward signals to it; proxy `master` <-> our stdio when given.
pub fn wait(pid: i32, master: Option<OwnedFd>) -> Result<i32> {
    let set = forwarded();
    let mut old = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).ctx("sigprocmask", "block")?;
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ctx("signalfd", "forwarding")?;
    let raw = master.as_ref().map(|m| RawMode::enter(m));
    let res = event_loop(pid, &sfd, master.as_ref());
    drop(raw);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    res
}

fn event_loop(pid: i32, sfd: &SignalFd, master: Option<&OwnedFd>) -> Result<i32> {
    if let Some(c) = reap(pid) {
        if let Some(m) = master {
            drain(m);
        }
        return Ok(c);
    }
    let stdin = std::io::stdin();
    let mut stdin_open = master.is_some();
    let mut master_open = master.is_some();
    loop {
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        if master_open {
            fds.push(PollFd::new(master.unwrap().as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("poll", "foreground", e)),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut i = 1;
        if stdin_open {
            if ready[i] {
                let mut buf = [0u8; 8192];
                match nix::unistd::read(&stdin, &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let _ = write_all(master.unwrap(), &buf[..n]);
                    }
                }
            }
            i += 1;
        }
        if master_open && ready[i] && !copy_out(master.unwrap()) {
            master_open = false;
        }
        if ready[0] {
            while let Ok(Some(si)) = sfd.read_signal() {
                let sig = si.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    if let Some(c) = reap(pid) {
                        if let Some(m) = master {
                            drain(m);
                        }
                        return Ok(c);
                    }
                } else if sig == libc::SIGWINCH && master.is_some() {
                    copy_winsize(master.unwrap());
                } else {
                    // SAFETY: plain FFI; the pid is our child, not yet reaped.
                    unsafe { libc::kill(pid, sig) };
                }
            }
        }
    }
}

fn write_all(fd: &OwnedFd, mut b: &[u8]) -> nix::Result<()> {
    while !b.is_empty() {
        let n = nix::unistd::write(fd, b)?;
        b = &b[n..];
    }
    Ok(())
}

/// Copy what the pty has to stdout; false when the pty is closed.
fn copy_out(m: &OwnedFd) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(m, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&buf[..n]);
            let _ = out.flush();
            true
        }
    }
}

/// After exit: whatever is still buffered in the pty.
fn drain(m: &OwnedFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(m.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(m.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut f = std::fs::File::from(m.try_clone().expect("dup pty"));
    let mut buf = [0u8; 8192];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        let _ = std::io::stdout().write_all(&buf[..n]);
    }
    let _ = std::io::stdout().flush();
}

fn copy_winsize(m: &OwnedFd) {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read and write a winsize we own.
    unsafe {
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Our stdin in raw mode while proxying a terminal (restored on drop).
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter(master: &OwnedFd) -> RawMode {
        copy_winsize(master);
        let stdin = std::io::stdin();
        let Ok(orig) = nix::sys::termios::tcgetattr(&stdin) else { return RawMode(None) };
        let mut raw = orig.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, t);
        }
    }
}
