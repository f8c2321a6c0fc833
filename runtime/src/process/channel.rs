//! The sync channel between the runtime and its launch stages: a SOCK_SEQPACKET pair, one
//! typed message per packet. The child end is close-on-exec, so a successful exec of the
//! user program reads as end-of-stream on the runtime's side.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::error::SysContext;
use crate::{Error, Result};

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// bootstrap → runtime: write my uid/gid maps (I just unshared a user namespace).
    MapIds,
    /// runtime → bootstrap: maps written.
    MapIdsDone,
    /// bootstrap → runtime: the container process exists, with this host pid.
    Pid(i32),
    /// runtime → process: you are in your cgroup; go on.
    Continue,
    /// init → runtime: mounts are done; run prestart and createRuntime hooks.
    RunHooks,
    /// runtime → init: hooks done; the payload is the state JSON for the container's hooks.
    HooksDone(String),
    /// init → runtime: all set up, blocked before the user program.
    Ready,
    /// any stage → runtime: this failed.
    Error(String),
    /// any stage → runtime: log this warning and go on.
    Warn(String),
    /// process → runtime: my seccomp listener is this descriptor number; take a copy
    /// (pidfd_getfd) for `linux.seccomp.listenerPath`.
    SeccompListener(i32),
    /// runtime → process: the listener has the fd; go on.
    SeccompDone,
}

pub struct Channel(pub OwnedFd);

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .ctx("socketpair", "sync channel")?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, m: &Msg) -> Result<()> {
        let mut buf = Vec::with_capacity(16);
        match m {
            Msg::MapIds => buf.push(1),
            Msg::MapIdsDone => buf.push(2),
            Msg::Pid(p) => {
                buf.push(3);
                buf.extend_from_slice(&p.to_le_bytes());
            }
            Msg::Continue => buf.push(4),
            Msg::RunHooks => buf.push(5),
            Msg::HooksDone(s) => {
                buf.push(6);
                buf.extend_from_slice(s.as_bytes());
            }
            Msg::Ready => buf.push(7),
            Msg::Error(s) => {
                buf.push(8);
                // Keep within one packet.
                buf.extend_from_slice(&s.as_bytes()[..s.len().min(60_000)]);
            }
            Msg::Warn(s) => {
                buf.push(9);
                buf.extend_from_slice(&s.as_bytes()[..s.len().min(60_000)]);
            }
            Msg::SeccompListener(fd) => {
                buf.push(10);
                buf.extend_from_slice(&fd.to_le_bytes());
            }
            Msg::SeccompDone => buf.push(11),
        }
        loop {
            match send(self.0.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("send", "sync channel", e)),
            }
        }
    }

    /// Next message; `None` at end of stream (the other side exited or exec'd).
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 65_536];
        let n = loop {
            match recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("recv", "sync channel", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let body = &buf[1..n];
        let text = || String::from_utf8_lossy(body).into_owned();
        Ok(Some(match buf[0] {
            1 => Msg::MapIds,
            2 => Msg::MapIdsDone,
            3 if body.len() == 4 => Msg::Pid(i32::from_le_bytes(body.try_into().unwrap())),
            4 => Msg::Continue,
            5 => Msg::RunHooks,
            6 => Msg::HooksDone(text()),
            7 => Msg::Ready,
            8 => Msg::Error(text()),
            9 => Msg::Warn(text()),
            10 if body.len() == 4 => Msg::SeccompListener(i32::from_le_bytes(body.try_into().unwrap())),
            11 => Msg::SeccompDone,
            t => return Err(Error::Child(format!("sync channel: unknown message type {t}"))),
        }))
    }

    /// Wait for one specific message; an Error message or end of stream is an error.
    pub fn expect(&self, want: &str, pred: impl Fn(&Msg) -> bool) -> Result<Msg> {
        match self.recv()? {
            Some(Msg::Error(e)) => Err(Error::Child(e)),
            Some(m) if pred(&m) => Ok(m),
            Some(m) => Err(Error::Child(format!("sync channel: expected {want}, got {m:?}"))),
            None => Err(Error::Child(format!("sync channel: closed while waiting for {want}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let (a, b) = pair().unwrap();
        for m in [Msg::MapIds, Msg::Pid(4242), Msg::HooksDone("{\"id\":\"x\"}".into()), Msg::Error("boom".into()), Msg::Ready, Msg::SeccompListener(7), Msg::SeccompDone] {
            a.send(&m).unwrap();
            assert_eq!(b.recv().unwrap(), Some(m));
        }
        drop(a);
        assert_eq!(b.recv().unwrap(), None);
    }
}
