//! `berth start`: release the init blocked on exec.fifo; run poststart hooks.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::Ctx;
use crate::error::SysContext;
use crate::hooks::{self, Kind};
use crate::state::{State, Status, EXEC_FIFO};
use crate::{Error, Result};

pub fn start(ctx: &Ctx, id: &str) -> Result<()> {
    let st = State::load(&ctx.root, id)?;
    match st.status(&ctx.root) {
        Status::Created => {}
        Status::Stopped => return Err(Error::Container(format!("cannot start container {id}: it has stopped"))),
        s => return Err(Error::Container(format!("cannot start container {id}: it is {s}, not created"))),
    }
    release(&st, &ctx.root)?;
    // runtime-spec: a failing poststart hook is a warning; the others still run.
    for w in hooks::run_all_warn(&st.hooks, Kind::Poststart, &st.hook_json(Status::Running)) {
        ctx.log.warn(&w);
    }
    Ok(())
}

/// Open the fifo for reading (which lets the init's open for writing complete) and wait
/// for its byte: "0" means go, "E<message>" a startContainer hook failed.
fn release(st: &State, root: &std::path::Path) -> Result<()> {
    let path = st.dir(root).join(EXEC_FIFO);
    let fd = nix::fcntl::open(&path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", path.display())?;
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::new();
    loop {
        let mut pfd = [PollFd::new(f.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, PollTimeout::from(100u16)) {
            Ok(0) => {
                if !st.init_alive() {
                    return Err(Error::Container(format!("cannot start container {}: its init exited", st.id)));
                }
                continue;
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", path.display(), e)),
        }
        let mut chunk = [0u8; 4096];
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        }
        if buf.first() == Some(&b'0') {
            break;
        }
        // An error message is written in one go and followed by the writer's exit.
        std::thread::sleep(Duration::from_millis(1));
    }
    let _ = std::fs::remove_file(&path);
    match buf.first() {
        Some(b'0') => Ok(()),
        Some(b'E') => Err(Error::Hook(String::from_utf8_lossy(&buf[1..]).into_owned())),
        _ => Err(Error::Container(format!("cannot start container {}: its init exited before starting", st.id))),
    }
}
