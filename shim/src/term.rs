//! Terminals: receiving the pty master a runtime sends over a
//! `--console-socket` (SCM_RIGHTS) and setting its window size.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::{io_err, sys_err, Error, Result};

/// A non-blocking listening console socket at `path` (mode 0600).
pub fn listen(path: &Path) -> Result<UnixListener> {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).map_err(io_err(format!("bind console socket {}", path.display())))?;
    restrict(path)?;
    l.set_nonblocking(true).map_err(io_err(format!("console socket {}", path.display())))?;
    Ok(l)
}

/// Only the owner (root) may connect.
pub fn restrict(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("chmod 0600 {}", path.display())))
}

/// Takes the pty master the runtime sent. Called once the runtime command
/// has exited, so the connection and its message are already queued.
pub fn receive_master(l: &UnixListener, what: &str) -> Result<File> {
    let (stream, _) = l.accept().map_err(|e| Error::Runtime(format!("{what}: the runtime sent no terminal: {e}")))?;
    stream.set_nonblocking(true).map_err(io_err("console connection"))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(sys_err(format!("{what}: receive the terminal")))?;
    let mut fds: Vec<RawFd> = vec![];
    for c in msg.cmsgs().map_err(sys_err(format!("{what}: terminal message")))? {
        if let ControlMessageOwned::ScmRights(f) = c {
            fds.extend(f);
        }
    }
    // SAFETY: the kernel just installed these descriptors for us; nothing
    // else owns them.
    let mut owned: Vec<OwnedFd> = fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }).collect();
    if owned.is_empty() {
        return Err(Error::Runtime(format!("{what}: the runtime's console message carried no descriptor")));
    }
    Ok(File::from(owned.remove(0)))
}

/// TIOCSWINSZ on a pty master.
pub fn set_size(fd: &impl AsFd, width: u16, height: u16) -> Result<()> {
    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives
    // across the call; the descriptor is borrowed, so it is open.
    let r = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws as *const libc::winsize) };
    if r < 0 {
        return Err(Error::Io { what: "set terminal size (TIOCSWINSZ)".into(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}
