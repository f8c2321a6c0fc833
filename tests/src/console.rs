//! The `--console-socket` side: a unix socket the runtime connects to and
//! sends the pty master over (SCM_RIGHTS), and reading the container's
//! terminal through that master.
//!
//! The runtime may connect before we accept: the connection waits in the
//! listen backlog and the message in the socket buffer, so a test can run
//! `create` first and `accept` afterwards.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// A received terminal: the pty master and the name the runtime sent with
/// it (runc sends "/dev/ptmx").
pub struct Console {
    pub master: File,
    pub name: String,
    /// How many fds came in the message (expected: exactly 1).
    pub fd_count: usize,
}

impl ConsoleSocket {
    /// Listens on `path` (keep it short: unix socket paths are limited to
    /// 107 bytes).
    pub fn bind(path: &Path) -> ConsoleSocket {
        let listener = UnixListener::bind(path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket { listener, path: path.to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// Accepts one connection and receives the pty master from it.
    pub fn accept(&self, timeout: Duration) -> Result<Console, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(format!("no connection on {} within {timeout:?}", self.path.display()));
                    }
                    let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
                    let ms = left.as_millis().min(i32::MAX as u128) as i32;
                    let _ = poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX));
                }
                Err(e) => return Err(format!("accept on {}: {e}", self.path.display())),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10))))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        let (n, fds) = {
            let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                .map_err(|e| format!("recvmsg on console socket: {e}"))?;
            let mut fds: Vec<RawFd> = vec![];
            for c in msg.cmsgs().map_err(|e| e.to_string())? {
                if let ControlMessageOwned::ScmRights(f) = c {
                    fds.extend(f);
                }
            }
            (msg.bytes, fds)
        };
        // SAFETY: the kernel just installed these fds in our table for us;
        // nothing else owns them.
        let mut owned: Vec<OwnedFd> = fds.iter().map(|&f| unsafe { OwnedFd::from_raw_fd(f) }).collect();
        if owned.is_empty() {
            return Err(format!("console socket message without fds ({n} bytes: {:?})", String::from_utf8_lossy(&buf[..n])));
        }
        let fd_count = owned.len();
        let master = File::from(owned.remove(0));
        Ok(Console { master, name: String::from_utf8_lossy(&buf[..n]).trim_end_matches('\0').to_string(), fd_count })
    }
}

impl Console {
    /// Reads until the terminal hangs up (all slave ends closed: EIO) or
    /// `timeout` passes. Returns what was read, with `\r\n` as `\n`.
    pub fn read_to_end(&mut self, timeout: Duration) -> String {
        let mut out = Vec::new();
        self.read_while(timeout, &mut out, |_| true);
        normalise(&out)
    }

    /// Reads until the output contains `needle` (or hang-up / timeout).
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> String {
        let mut out = Vec::new();
        self.read_while(timeout, &mut out, |o| !normalise(o).contains(needle));
        normalise(&out)
    }

    fn read_while(&mut self, timeout: Duration, out: &mut Vec<u8>, mut more: impl FnMut(&[u8]) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while more(out) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Ok(0) => return,
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(_) => return,
            }
            match self.master.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return, // hung up
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Types into the terminal.
    pub fn write(&mut self, data: &str) {
        self.master.write_all(data.as_bytes()).expect("write to pty master");
    }
}

fn normalise(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\n")
}
