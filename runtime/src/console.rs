//! Terminals: the pty is created inside the container (from its own devpts) and its
//! master end is sent to the caller's `--console-socket` with SCM_RIGHTS, as runc does.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::{IoContext, SysContext};
use crate::{Error, Result};

/// Connect to the caller's console socket (done by the runtime before forking).
pub fn connect(path: &Path) -> Result<OwnedFd> {
    let s = UnixStream::connect(path).with_ctx(|| format!("connect to console socket {}", path.display()))?;
    Ok(OwnedFd::from(s))
}

/// Open a new pty pair from the container's /dev/ptmx; returns (master, slave path, slave).
pub fn open_pty() -> Result<(OwnedFd, String, OwnedFd)> {
    let master = open("/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", "/dev/ptmx in the container (is devpts mounted with ptmxmode=0666?)")?;
    let raw = master.as_raw_fd();
    // SAFETY: FFI on a descriptor we own; unlockpt/ptsname_r only read and write our buffer.
    let name = unsafe {
        if libc::unlockpt(raw) != 0 {
            return Err(Error::sys("unlockpt", "/dev/ptmx", nix::errno::Errno::last()));
        }
        let mut buf = [0 as libc::c_char; 128];
        if libc::ptsname_r(raw, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(Error::sys("ptsname", "/dev/ptmx", nix::errno::Errno::last()));
        }
        std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    let slave = open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()).ctx("open", &name)?;
    Ok((master, name, slave))
}

pub fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    nix::errno::Errno::result(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }).ctx("set console size", "pty")?;
    Ok(())
}

/// Send the pty master over the console socket (payload: the master's name, as runc).
pub fn send_master(socket: &OwnedFd, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(b"/dev/ptmx")];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .ctx("send pty master over", "console socket")?;
    Ok(())
}

/// Make `slave` the controlling terminal and stdio of the calling (session leader) process.
pub fn make_stdio(slave: &OwnedFd) -> Result<()> {
    nix::unistd::dup2_stdin(slave).ctx("dup2 console to", "stdin")?;
    nix::unistd::dup2_stdout(slave).ctx("dup2 console to", "stdout")?;
    nix::unistd::dup2_stderr(slave).ctx("dup2 console to", "stderr")?;
    // SAFETY: TIOCSCTTY takes an integer argument.
    nix::errno::Errno::result(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }).ctx("set controlling terminal", "console")?;
    Ok(())
}

/// Adopt a raw fd received elsewhere.
///
/// # Safety
/// `fd` must be an open descriptor owned by nobody else.
pub unsafe fn adopt(fd: RawFd) -> OwnedFd {
    OwnedFd::from_raw_fd(fd)
}
