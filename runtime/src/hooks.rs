//! OCI hooks: run with the container state on stdin, `env` as the whole environment,
//! `timeout` in seconds honoured (the hook is killed when it expires).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }
}

pub fn of(hooks: &Option<Hooks>, kind: Kind) -> &[Hook] {
    let Some(h) = hooks else { return &[] };
    #[allow(deprecated)]
    let v = match kind {
        Kind::Prestart => h.prestart(),
        Kind::CreateRuntime => h.create_runtime(),
        Kind::CreateContainer => h.create_container(),
        Kind::StartContainer => h.start_container(),
        Kind::Poststart => h.poststart(),
        Kind::Poststop => h.poststop(),
    };
    v.as_deref().unwrap_or(&[])
}

pub fn all(h: &Hooks) -> Vec<&Hook> {
    #[allow(deprecated)]
    let lists = [h.prestart(), h.create_runtime(), h.create_container(), h.start_container(), h.poststart(), h.poststop()];
    lists.into_iter().flat_map(|v| v.as_deref().unwrap_or(&[]).iter()).collect()
}

/// Run every hook of `kind` in order; the first failure stops and is returned.
pub fn run_all(hooks: &Option<Hooks>, kind: Kind, state_json: &str) -> Result<()> {
    for (i, h) in of(hooks, kind).iter().enumerate() {
        run(h, state_json).map_err(|e| Error::Hook(format!("{} hook #{i} ({}): {e}", kind.name(), h.path().display())))?;
    }
    Ok(())
}

/// Run every hook of `kind`, even after a failure; each failure is returned as a
/// warning (poststart and poststop: the runtime-spec says warn and go on).
pub fn run_all_warn(hooks: &Option<Hooks>, kind: Kind, state_json: &str) -> Vec<String> {
    of(hooks, kind)
        .iter()
        .enumerate()
        .filter_map(|(i, h)| run(h, state_json).err().map(|e| format!("{} hook #{i} ({}): {e}", kind.name(), h.path().display())))
        .collect()
}

/// Run one hook; Err(text) says why it failed (exit status, signal, timeout, and its stderr).
pub fn run(hook: &Hook, state_json: &str) -> std::result::Result<(), String> {
    let args = hook.args().as_deref().unwrap_or(&[]);
    let mut cmd = Command::new(hook.path());
    if let Some((first, rest)) = args.split_first() {
        cmd.arg0(first).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("start: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state_json.as_bytes()); // a hook need not read its stdin
    }
    let pidfd = crate::syscalls::pidfd_open(child.id() as i32).map_err(|e| format!("pidfd_open: {e}"))?;
    let timeout = hook.timeout().filter(|t| *t > 0).map(|t| Duration::from_secs(t as u64));
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    set_nonblock(&out);
    set_nonblock(&err);
    let (mut obuf, mut ebuf) = (Vec::new(), Vec::new());
    loop {
        let wait_ms = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("timed out after {}s", timeout.unwrap().as_secs()));
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN), PollFd::new(out.as_fd(), PollFlags::POLLIN), PollFd::new(err.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait_ms) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        drain(&mut out, &mut obuf);
        drain(&mut err, &mut ebuf);
        if exited {
            break;
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&ebuf);
    let detail = stderr.trim();
    let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "failed".into(),
    };
    // One line: errors are reported as a single line on stderr and in the log.
    let detail = detail.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
    Err(if detail.is_empty() { how } else { format!("{how}: {detail}") })
}

fn set_nonblock(f: &impl std::os::fd::AsRawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fl = libc::fcntl(f.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(f.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn drain(r: &mut impl Read, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = r.read(&mut chunk) {
        if n == 0 {
            break;
        }
        if buf.len() < 64 * 1024 {
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
