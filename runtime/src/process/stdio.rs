//! Descriptor hygiene at start-up.

use crate::{Error, Result};

/// Make sure 0, 1 and 2 are open (on /dev/null if the caller closed them), so no
/// descriptor berth opens can land there and be mistaken for the container's stdio.
pub fn ensure_open() {
    for fd in 0..3 {
        // SAFETY: F_GETFD probes a descriptor number; open() returns the lowest free one.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
}

/// `--preserve-fds N` (plus LISTEN_FDS) must name descriptors that are open. Every
/// other inherited descriptor is made close-on-exec at once, so none reaches a hook or
/// the container (and none can be a way back to the host's filesystem).
pub fn check_preserved(n: u32) -> Result<()> {
    for fd in 3..3 + n as i32 {
        // SAFETY: F_GETFD only probes the descriptor number.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(Error::Config(format!("--preserve-fds/LISTEN_FDS: descriptor {fd} is not open")));
        }
    }
    crate::syscalls::cloexec_from(3 + n).map_err(|e| Error::sys("close_range", "inherited descriptors", e))
}
