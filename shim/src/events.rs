//! The monitor's poll loop, once the container exists: its output into the
//! CRI log (and to attached clients), its stdin, signals (SIGCHLD reaps,
//! SIGUSR1 reopens the log), the control socket and its clients, and the
//! execs those clients asked for. One thread, `poll(2)`; every descriptor is
//! non-blocking, so a slow client or exec never holds up the log or the reaping.
//!
//! Execs run as `<runtime> exec --detach --pid-file F`: the runtime exits
//! once the process runs, the process is re-parented to the shim (a child
//! subreaper), so its exit status comes with SIGCHLD like the container's.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::{pipe2, Pid};
use serde_json::json;

use crate::config::Config;
use crate::control::{self, kind, ExecSpec, Request, Size};
use crate::io::{CriWriter, Stream};
use crate::protocol::{write_exit_file, ExitRecord};
use crate::reaper::{reap_list, Ending};
use crate::{io_err, sys_err, Error, Result};

/// `exec_sync` keeps at most this much of each stream (the rest is read and dropped).
pub const SYNC_OUTPUT_MAX: usize = 16 << 20;
/// A streaming client this far behind stops the exec's output being read (backpressure).
const STREAM_HIGH_WATER: usize = 1 << 20;
/// An attached client this far behind the container is disconnected: the
/// container and its log are never held up by an attach.
const ATTACH_MAX_BEHIND: usize = 4 << 20;
/// Stdin bytes queued for a process before its writer stops being read.
const STDIN_HIGH_WATER: usize = 1 << 20;
/// After the container exited: how long clients and execs get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Statuses of reaped children nobody claimed yet (an exec's process may be
/// reaped before its runtime exits and its pid is known).
const ORPHANS_KEPT: usize = 256;

/// The container's end of things, as set up by `create`.
pub struct ContainerIo {
    /// stdout pipe, stderr pipe, pty master (logged as stdout).
    pub outs: [Option<File>; 3],
    /// The pipe to its stdin, or a copy of the pty master (`--stdin`).
    pub stdin: Option<File>,
    /// The pty master, for resizes (a copy of `outs[2]`).
    pub master: Option<File>,
}

pub struct Setup<'a> {
    pub cfg: &'a Config,
    pub sigfd: &'a SignalFd,
    pub log: CriWriter,
    pub init: i32,
    pub io: ContainerIo,
    pub listener: Option<UnixListener>,
    pub oom: Option<crate::oom::OomCounter>,
    pub started_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reading request lines.
    Lines,
    /// A request is being served (exec_sync, stop, exec starting): no reading.
    Busy,
    /// Framed stream to the container's stdio.
    Attach,
    /// Framed stream to an exec.
    Exec(u64),
}

struct Client {
    sock: UnixStream,
    input: Vec<u8>,
    out: Vec<u8>,
    mode: Mode,
    /// The peer closed its writing side.
    read_eof: bool,
    /// Close once `out` is written.
    closing: bool,
}

struct SyncOut {
    deadline: Option<Instant>,
    data: [Vec<u8>; 2],
    truncated: [bool; 2],
}

struct Exec {
    client: Option<u64>,
    sync: Option<SyncOut>,
    tty: bool,
    timed_out: bool,
    /// `<runtime> exec --detach` while it runs.
    runtime_pid: Option<i32>,
    pid_file: PathBuf,
    runtime_log: PathBuf,
    console: Option<(PathBuf, UnixListener)>,
    pid: Option<i32>,
    ending: Option<Ending>,
    /// stdout, stderr pipes; or the pty master in [0].
    outs: [Option<File>; 2],
    stdin: Option<File>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    want_stdin: bool,
    size: Option<(u16, u16)>,
}

struct Stop {
    client: u64,
    kill_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    Signal,
    Listener,
    CtrOut(usize),
    CtrIn,
    Client(u64),
    ExecOut(u64, usize),
    ExecIn(u64),
}

pub struct EventLoop<'a> {
    cfg: &'a Config,
    sigfd: &'a SignalFd,
    log: CriWriter,
    init: i32,
    oom: Option<crate::oom::OomCounter>,
    started_at: Option<String>,
    io: ContainerIo,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    listener: Option<UnixListener>,
    clients: BTreeMap<u64, Client>,
    execs: BTreeMap<u64, Exec>,
    stops: Vec<Stop>,
    orphans: VecDeque<(i32, Ending)>,
    next_id: u64,
    buf: Vec<u8>,
    init_ending: Option<Ending>,
    record: Option<ExitRecord>,
    shutdown_at: Option<Instant>,
}

fn would_block(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted
}

/// Reads what is there now (non-blocking): `Ok(0)` at end of stream (a pty
/// master whose slave is closed reads EIO: the same).
fn read_some(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    match f.read(buf) {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
        r => r,
    }
}

/// Everything readable now, until end of stream or EAGAIN: (data, at end).
fn drain(f: &mut File, buf: &mut [u8]) -> (Vec<u8>, bool) {
    let mut out = vec![];
    loop {
        match read_some(f, buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return (out, false),
            Err(_) => return (out, true),
        }
    }
}

fn nonblocking_pipe() -> Result<(File, File)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
    let (r, w) = (File::from(r), File::from(w));
    Ok((r, w))
}

pub fn set_nonblocking(f: &impl AsFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    let fl = fcntl(f, FcntlArg::F_GETFL).map_err(sys_err("fcntl F_GETFL"))?;
    fcntl(f, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK)).map_err(sys_err("fcntl F_SETFL"))?;
    Ok(())
}

fn read_pid(p: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The last `"level":"error"` message of a runtime `--log`.
fn log_error(p: &std::path::Path) -> Option<String> {
    let log = std::fs::read_to_string(p).ok()?;
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .and_then(|v| v["msg"].as_str().map(str::to_string))
}

impl<'a> EventLoop<'a> {
    pub fn new(s: Setup<'a>) -> EventLoop<'a> {
        EventLoop {
            cfg: s.cfg,
            sigfd: s.sigfd,
            log: s.log,
            init: s.init,
            oom: s.oom,
            started_at: s.started_at,
            io: s.io,
            stdin_buf: vec![],
            stdin_close: false,
            listener: s.listener,
            clients: BTreeMap::new(),
            execs: BTreeMap::new(),
            stops: vec![],
            orphans: VecDeque::new(),
            next_id: 1,
            buf: vec![0u8; 64 * 1024],
            init_ending: None,
            record: None,
            shutdown_at: None,
        }
    }

    /// Runs until the container has exited, its exit file is written and
    /// clients had their answers (bounded by a short grace). Returns the record.
    pub fn run(mut self) -> Result<ExitRecord> {
        loop {
            if let Some(at) = self.shutdown_at {
                if self.quiet() || Instant::now() >= at {
                    break;
                }
            }
            let ready = self.wait()?;
            for (tok, ev) in ready {
                self.handle(tok, ev)?;
            }
            self.timers();
            if self.record.is_none() {
                if let Some(e) = self.init_ending {
                    self.container_exited(e)?;
                }
            }
            self.clients.retain(|_, c| !(c.closing && c.out.is_empty()));
        }
        Ok(self.record.take().expect("the loop ends after the exit record"))
    }

    fn quiet(&self) -> bool {
        self.execs.is_empty() && self.clients.values().all(|c| c.out.is_empty())
    }

    /// One poll: the ready descriptors and their events.
    fn wait(&mut self) -> Result<Vec<(Tok, PollFlags)>> {
        let toks: Vec<Tok>;
        let timeout = self.next_timeout();
        let revents: Vec<PollFlags> = {
            // Descriptors borrowed from `self` for this block only.
            let mut set: Vec<(BorrowedFd<'_>, PollFlags, Tok)> = vec![];
            set.push((self.sigfd.as_fd(), PollFlags::POLLIN, Tok::Signal));
            if let Some(l) = &self.listener {
                set.push((l.as_fd(), PollFlags::POLLIN, Tok::Listener));
            }
            // Attached clients far behind are dropped, never waited for.
            for (i, f) in self.io.outs.iter().enumerate() {
                if let Some(f) = f {
                    set.push((f.as_fd(), PollFlags::POLLIN, Tok::CtrOut(i)));
                }
            }
            if let (Some(f), false) = (&self.io.stdin, self.stdin_buf.is_empty()) {
                set.push((f.as_fd(), PollFlags::POLLOUT, Tok::CtrIn));
            }
            for (&id, c) in &self.clients {
                let mut ev = PollFlags::empty();
                let reading = !c.read_eof
                    && !c.closing
                    && match c.mode {
                        Mode::Lines => true,
                        Mode::Busy => false,
                        Mode::Attach => self.stdin_buf.len() < STDIN_HIGH_WATER,
                        Mode::Exec(e) => self.execs.get(&e).is_none_or(|x| x.stdin_buf.len() < STDIN_HIGH_WATER),
                    };
                if reading {
                    ev |= PollFlags::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= PollFlags::POLLOUT;
                }
                // Hang-ups are reported even with no events asked for.
                set.push((c.sock.as_fd(), ev, Tok::Client(id)));
            }
            for (&id, x) in &self.execs {
                if x.runtime_pid.is_some() {
                    continue;
                }
                let behind = x.client.and_then(|c| self.clients.get(&c)).map(|c| c.out.len()).unwrap_or(0);
                if x.sync.is_some() || behind < STREAM_HIGH_WATER {
                    for (i, f) in x.outs.iter().enumerate() {
                        if let Some(f) = f {
                            set.push((f.as_fd(), PollFlags::POLLIN, Tok::ExecOut(id, i)));
                        }
                    }
                }
                if let (Some(f), false) = (&x.stdin, x.stdin_buf.is_empty()) {
                    set.push((f.as_fd(), PollFlags::POLLOUT, Tok::ExecIn(id)));
                }
            }
            let mut fds: Vec<PollFd> = set.iter().map(|(fd, ev, _)| PollFd::new(*fd, *ev)).collect();
            toks = set.iter().map(|s| s.2).collect();
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(vec![]),
                Err(e) => return Err(Error::Sys { what: "poll".into(), source: e }),
            }
            fds.iter().map(|f| f.revents().unwrap_or(PollFlags::empty())).collect()
        };
        Ok(toks.into_iter().zip(revents).filter(|(_, e)| !e.is_empty()).collect())
    }

    fn next_timeout(&self) -> PollTimeout {
        let mut next: Option<Instant> = self.shutdown_at;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for x in self.execs.values() {
            if !x.timed_out {
                consider(x.sync.as_ref().and_then(|s| s.deadline));
            }
        }
        for s in &self.stops {
            consider(s.kill_at);
        }
        match next {
            None => PollTimeout::NONE,
            Some(t) => {
                let ms = t.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
        }
    }

    fn handle(&mut self, tok: Tok, ev: PollFlags) -> Result<()> {
        match tok {
            Tok::Signal => self.signals(),
            Tok::Listener => {
                self.accept();
                Ok(())
            }
            Tok::CtrOut(i) => {
                self.container_output(i);
                Ok(())
            }
            Tok::CtrIn => {
                self.container_stdin();
                Ok(())
            }
            Tok::Client(id) => {
                self.client_event(id, ev);
                Ok(())
            }
            Tok::ExecOut(id, i) => {
                self.exec_output(id, i);
                Ok(())
            }
            Tok::ExecIn(id) => {
                if let Some(x) = self.execs.get_mut(&id) {
                    flush_stdin(&mut x.stdin, &mut x.stdin_buf, x.stdin_close, x.tty);
                }
                Ok(())
            }
        }
    }

    // ---- signals and children ----

    fn signals(&mut self) -> Result<()> {
        let mut chld = false;
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo == Signal::SIGUSR1 as u32 {
                self.log.log.reopen()?;
            } else {
                chld = true;
            }
        }
        if chld {
            for (pid, e) in reap_list() {
                self.child_ended(pid, e);
            }
        }
        Ok(())
    }

    fn child_ended(&mut self, pid: i32, e: Ending) {
        if pid == self.init {
            self.init_ending = Some(e);
            return;
        }
        if let Some((&id, _)) = self.execs.iter().find(|(_, x)| x.runtime_pid == Some(pid)) {
            self.exec_runtime_exited(id, e);
            return;
        }
        if let Some((&id, x)) = self.execs.iter_mut().find(|(_, x)| x.pid == Some(pid)) {
            x.ending = Some(e);
            self.exec_maybe_done(id);
            return;
        }
        if self.orphans.len() == ORPHANS_KEPT {
            self.orphans.pop_front();
        }
        self.orphans.push_back((pid, e));
    }

    // ---- the container ----

    fn container_output(&mut self, i: usize) {
        let Some(f) = self.io.outs[i].as_mut() else { return };
        let (data, end) = match read_some(f, &mut self.buf) {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            Err(e) if would_block(&e) => (0, false),
            Err(_) => (0, true),
        };
        let stream = if i == 1 { Stream::Stderr } else { Stream::Stdout };
        if data > 0 {
            let chunk = self.buf[..data].to_vec();
            self.container_data(stream, &chunk);
        }
        if end {
            self.io.outs[i] = None;
            let _ = self.log.finish(stream);
        }
    }

    /// Output of the container: into the log, and to every attached client.
    fn container_data(&mut self, stream: Stream, data: &[u8]) {
        // A failed write (disk full) loses this record but must not stop
        // the monitor: the exit file matters more.
        let _ = self.log.write(stream, data);
        let k = if stream == Stream::Stderr { kind::STDERR } else { kind::STDOUT };
        for c in self.clients.values_mut() {
            if c.mode == Mode::Attach && !c.closing {
                if c.out.len() > ATTACH_MAX_BEHIND {
                    c.out.clear();
                    c.closing = true;
                    continue;
                }
                control::encode(k, data, &mut c.out);
            }
        }
    }

    fn container_stdin(&mut self) {
        flush_stdin(&mut self.io.stdin, &mut self.stdin_buf, self.stdin_close, self.io.master.is_some());
    }

    fn container_exited(&mut self, e: Ending) -> Result<()> {
        // What the container wrote before it ended is in the pipes now.
        for i in 0..3 {
            if let Some(mut f) = self.io.outs[i].take() {
                let (data, _) = drain(&mut f, &mut self.buf);
                let stream = if i == 1 { Stream::Stderr } else { Stream::Stdout };
                self.container_data(stream, &data);
            }
        }
        self.log.finish(Stream::Stdout)?;
        self.log.finish(Stream::Stderr)?;
        // Any OOM kill in the container's cgroup counts (as CRI-O and containerd
        // report it); unknown (no memory cgroup found) reads as false.
        let oom_killed = self.oom.as_ref().is_some_and(|o| o.fired());
        let rec = e.record(self.started_at.clone(), oom_killed);
        std::fs::create_dir_all(&self.cfg.exit_dir)
            .map_err(io_err(format!("create {}", self.cfg.exit_dir.display())))?;
        write_exit_file(&self.cfg.exit_file(), &rec)?;
        let rec_json = serde_json::to_value(&rec).expect("exit record serialises");
        // No new clients; the socket file goes now.
        if self.listener.take().is_some() {
            if let Some(sd) = &self.cfg.socket_dir {
                let _ = std::fs::remove_file(sd.join("control.sock"));
            }
        }
        for s in std::mem::take(&mut self.stops) {
            if let Some(c) = self.clients.get_mut(&s.client) {
                c.out.extend(control::ok(rec_json.clone()));
                c.mode = Mode::Lines;
            }
        }
        let payload = serde_json::to_vec(&rec_json).expect("JSON");
        for c in self.clients.values_mut() {
            match c.mode {
                Mode::Attach => {
                    control::encode(kind::EXIT, &payload, &mut c.out);
                    c.closing = true;
                }
                Mode::Lines => c.closing = true,
                Mode::Busy | Mode::Exec(_) => {}
            }
        }
        // Execs die with the container (its pid namespace); make sure of it.
        for x in self.execs.values() {
            if let Some(p) = x.pid {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            if let Some(p) = x.runtime_pid {
                let _ = kill(Pid::from_raw(-p), Signal::SIGKILL);
            }
        }
        self.io.stdin = None;
        self.record = Some(rec);
        self.shutdown_at = Some(Instant::now() + SHUTDOWN_GRACE);
        Ok(())
    }

    // ---- clients ----

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    if sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    self.clients.insert(
                        id,
                        Client { sock, input: vec![], out: vec![], mode: Mode::Lines, read_eof: false, closing: false },
                    );
                }
                Err(_) => return,
            }
        }
    }

    fn client_event(&mut self, id: u64, ev: PollFlags) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        if ev.contains(PollFlags::POLLOUT) && !c.out.is_empty() {
            loop {
                match c.sock.write(&c.out) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.out.drain(..n);
                        if c.out.is_empty() {
                            break;
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(_) => {
                        self.client_gone(id);
                        return;
                    }
                }
            }
        }
        let Some(c) = self.clients.get_mut(&id) else { return };
        if ev.contains(PollFlags::POLLIN) && !c.read_eof {
            match c.sock.read(&mut self.buf) {
                Ok(0) => {
                    c.read_eof = true;
                    self.client_input_ended(id);
                }
                Ok(n) => {
                    c.input.extend_from_slice(&self.buf[..n]);
                    self.client_input(id);
                }
                Err(e) if would_block(&e) => {}
                Err(_) => self.client_gone(id),
            }
        } else if ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) && !ev.contains(PollFlags::POLLIN) {
            self.client_gone(id);
        }
    }

    /// The peer closed its writing side: an exec's stdin ends; a line
    /// client is done once answered.
    fn client_input_ended(&mut self, id: u64) {
        let Some(c) = self.clients.get_mut(&id) else { return };
        match c.mode {
            Mode::Lines => c.closing = true,
            Mode::Exec(e) => {
                if let Some(x) = self.execs.get_mut(&e) {
                    x.stdin_close = true;
                    flush_stdin(&mut x.stdin, &mut x.stdin_buf, true, x.tty);
                }
            }
            Mode::Busy | Mode::Attach => {}
        }
    }

    /// The connection is gone: an exec_sync is killed, a streaming exec
    /// loses its stdin (and its terminal hangs up).
    fn client_gone(&mut self, id: u64) {
        let Some(c) = self.clients.remove(&id) else { return };
        self.stops.retain(|s| s.client != id);
        let exec = match c.mode {
            Mode::Exec(e) => Some(e),
            _ => self.execs.iter().find(|(_, x)| x.client == Some(id)).map(|(&e, _)| e),
        };
        if let Some(e) = exec {
            if let Some(x) = self.execs.get_mut(&e) {
                x.client = None;
                if x.sync.is_some() || x.tty {
                    x.timed_out = true;
                    if let Some(p) = x.pid {
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                }
                x.stdin = None;
                x.stdin_buf.clear();
            }
        }
    }

    /// Whatever complete requests or frames the client's input holds.
    fn client_input(&mut self, id: u64) {
        loop {
            let Some(c) = self.clients.get_mut(&id) else { return };
            match c.mode {
                Mode::Lines => {
                    let Some(nl) = c.input.iter().position(|&b| b == b'\n') else {
                        if c.input.len() > control::MAX_LINE {
                            c.out.extend(control::error("request line too long"));
                            c.closing = true;
                            c.input.clear();
                        }
                        return;
                    };
                    let line: Vec<u8> = c.input.drain(..=nl).collect();
                    let line = line.strip_suffix(b"\n").unwrap_or(&line);
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match Request::parse(line) {
                        Ok(r) => self.request(id, r),
                        Err(e) => c.out.extend(control::error(&e)),
                    }
                }
                Mode::Busy => return,
                Mode::Attach | Mode::Exec(_) => {
                    let frame = match control::decode(&mut c.input, control::MAX_FRAME) {
                        Ok(Some(f)) => f,
                        Ok(None) => return,
                        Err(_) => {
                            // A broken stream cannot be resynchronised.
                            self.client_gone(id);
                            return;
                        }
                    };
                    let mode = c.mode;
                    self.frame(mode, frame);
                }
            }
        }
    }

    fn frame(&mut self, mode: Mode, f: control::Frame) {
        let (stdin, buf, close, master, tty) = match mode {
            Mode::Attach => (
                &mut self.io.stdin,
                &mut self.stdin_buf,
                &mut self.stdin_close,
                self.io.master.as_ref(),
                self.io.master.is_some(),
            ),
            Mode::Exec(e) => match self.execs.get_mut(&e) {
                Some(x) => (&mut x.stdin, &mut x.stdin_buf, &mut x.stdin_close, x.outs[0].as_ref().filter(|_| x.tty), x.tty),
                None => return,
            },
            _ => return,
        };
        match f.kind {
            kind::STDIN if stdin.is_some() && !*close => buf.extend_from_slice(&f.payload),
            kind::CLOSE_STDIN => {
                *close = true;
                flush_stdin(stdin, buf, true, tty);
            }
            kind::RESIZE => {
                if let (Some(m), Ok(s)) = (master, serde_json::from_slice::<Size>(&f.payload)) {
                    let _ = crate::term::set_size(m, s.width, s.height);
                }
            }
            _ => {}
        }
    }

    fn respond(&mut self, id: u64, line: Vec<u8>) {
        if let Some(c) = self.clients.get_mut(&id) {
            c.out.extend(line);
        }
    }

    fn request(&mut self, id: u64, r: Request) {
        match r {
            Request::State => {
                let v = json!({
                    "pid": self.init,
                    "status": if self.init_ending.is_some() { "stopped" } else { "running" },
                    "terminal": self.io.master.is_some(),
                    "stdin": self.io.stdin.is_some(),
                });
                self.respond(id, control::ok(v));
            }
            Request::ReopenLog => {
                let line = match self.log.log.reopen() {
                    Ok(()) => control::ok(json!({})),
                    Err(e) => control::error(&e.to_string()),
                };
                self.respond(id, line);
            }
            Request::Resize { width, height } => {
                let line = match &self.io.master {
                    None => control::error("the container has no terminal"),
                    Some(m) => match crate::term::set_size(m, width, height) {
                        Ok(()) => control::ok(json!({})),
                        Err(e) => control::error(&e.to_string()),
                    },
                };
                self.respond(id, line);
            }
            Request::Attach => {
                let v = json!({"tty": self.io.master.is_some(), "stdin": self.io.stdin.is_some()});
                if let Some(c) = self.clients.get_mut(&id) {
                    c.out.extend(control::ok(v));
                    c.mode = Mode::Attach;
                }
            }
            Request::Stop { timeout_s, signal } => {
                let sig = signal.unwrap_or_else(|| "TERM".into());
                self.spawn_kill(&sig);
                let kill_at = Some(Instant::now() + Duration::from_secs(timeout_s));
                self.stops.push(Stop { client: id, kill_at });
                if let Some(c) = self.clients.get_mut(&id) {
                    c.mode = Mode::Busy;
                }
            }
            Request::ExecSync { spec, timeout_s } => {
                let deadline = (timeout_s > 0).then(|| Instant::now() + Duration::from_secs(timeout_s));
                let sync = SyncOut { deadline, data: [vec![], vec![]], truncated: [false, false] };
                self.start_exec(id, &spec, Some(sync), false, false, None);
            }
            Request::Exec { spec, tty, stdin, width, height } => {
                let size = width.zip(height);
                self.start_exec(id, &spec, None, tty, stdin, size);
            }
        }
    }

    /// `<runtime> kill <id> <signal>`, not waited for (reaped with the rest).
    fn spawn_kill(&self, sig: &str) {
        let mut c = Command::new(&self.cfg.runtime);
        c.args(self.cfg.runtime_args(&["kill", &self.cfg.id, sig]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = c.spawn();
    }

    fn timers(&mut self) {
        let now = Instant::now();
        let mut kill_now = false;
        for s in &mut self.stops {
            if s.kill_at.is_some_and(|t| t <= now) {
                s.kill_at = None;
                kill_now = true;
            }
        }
        if kill_now && self.init_ending.is_none() {
            self.spawn_kill("KILL");
        }
        for x in self.execs.values_mut() {
            if !x.timed_out && x.sync.as_ref().and_then(|s| s.deadline).is_some_and(|t| t <= now) {
                x.timed_out = true;
                if let Some(p) = x.pid {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
                if let Some(p) = x.runtime_pid {
                    // Its own process group: the runtime and its helpers.
                    let _ = kill(Pid::from_raw(-p), Signal::SIGKILL);
                }
            }
        }
    }

    // ---- execs ----

    fn start_exec(
        &mut self,
        client: u64,
        spec: &ExecSpec,
        sync: Option<SyncOut>,
        tty: bool,
        stdin: bool,
        size: Option<(u16, u16)>,
    ) {
        if self.init_ending.is_some() {
            self.respond(client, control::error("the container has exited"));
            return;
        }
        let n = self.next_id;
        self.next_id += 1;
        match self.spawn_exec(n, client, spec, sync, tty, stdin, size) {
            Ok(x) => {
                self.execs.insert(n, x);
                if let Some(c) = self.clients.get_mut(&client) {
                    c.mode = Mode::Busy;
                }
            }
            Err(e) => self.respond(client, control::error(&e.to_string())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_exec(
        &mut self,
        n: u64,
        client: u64,
        spec: &ExecSpec,
        sync: Option<SyncOut>,
        tty: bool,
        want_stdin: bool,
        size: Option<(u16, u16)>,
    ) -> Result<Exec> {
        let dir = self.cfg.socket_dir.clone().unwrap_or_else(|| self.cfg.bundle.clone());
        let pid_file = dir.join(format!("exec-{n}.pid"));
        let runtime_log = dir.join(format!("exec-{n}.log"));
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&runtime_log);
        let mut args: Vec<String> = vec!["exec".into(), "--detach".into(), "--pid-file".into(), pid_file.display().to_string()];
        let console = if tty {
            let p = dir.join(format!("exec-{n}.tty"));
            let l = crate::term::listen(&p)?;
            args.extend(["--tty".into(), "--console-socket".into(), p.display().to_string()]);
            Some((p, l))
        } else {
            None
        };
        for e in &spec.env {
            args.extend(["--env".into(), e.clone()]);
        }
        if let Some(c) = &spec.cwd {
            args.extend(["--cwd".into(), c.clone()]);
        }
        if let Some(u) = &spec.user {
            args.extend(["--user".into(), u.clone()]);
        }
        args.push(self.cfg.id.clone());
        args.extend(spec.args.iter().cloned());

        let mut cmd = Command::new(&self.cfg.runtime);
        cmd.args(self.cfg.runtime_args_log(&runtime_log, &args)).process_group(0);
        let mut outs = [None, None];
        let mut stdin = None;
        if tty {
            // The runtime's own messages; the process talks to the pty.
            let (r, w) = nonblocking_pipe()?;
            set_nonblocking(&r)?;
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(OwnedFd::from(w)));
            outs[1] = Some(r);
        } else {
            let (or, ow) = nonblocking_pipe()?;
            let (er, ew) = nonblocking_pipe()?;
            set_nonblocking(&or)?;
            set_nonblocking(&er)?;
            cmd.stdout(Stdio::from(OwnedFd::from(ow))).stderr(Stdio::from(OwnedFd::from(ew)));
            if want_stdin {
                let (ir, iw) = nonblocking_pipe()?;
                set_nonblocking(&iw)?;
                cmd.stdin(Stdio::from(OwnedFd::from(ir)));
                stdin = Some(iw);
            } else {
                cmd.stdin(Stdio::null());
            }
            outs = [Some(or), Some(er)];
        }
        let child = cmd.spawn().map_err(io_err(format!("run {} exec", self.cfg.runtime.display())))?;
        // Dropping `cmd` closes the child's ends of the pipes here.
        drop(cmd);
        Ok(Exec {
            client: Some(client),
            sync,
            tty,
            timed_out: false,
            runtime_pid: Some(child.id() as i32),
            pid_file,
            runtime_log,
            console,
            pid: None,
            ending: None,
            outs,
            stdin,
            stdin_buf: vec![],
            stdin_close: false,
            want_stdin,
            size,
        })
    }

    fn exec_runtime_exited(&mut self, id: u64, e: Ending) {
        let Some(x) = self.execs.get_mut(&id) else { return };
        x.runtime_pid = None;
        let pid = read_pid(&x.pid_file);
        let _ = std::fs::remove_file(&x.pid_file);
        let mut failure = None;
        if e == Ending::Exited(0) && pid.is_some() {
            if let Some((p, l)) = x.console.take() {
                let _ = std::fs::remove_file(&p);
                match crate::term::receive_master(&l, "exec") {
                    Ok(m) => {
                        let _ = set_nonblocking(&m);
                        if let Some((w, h)) = x.size {
                            let _ = crate::term::set_size(&m, w, h);
                        }
                        x.stdin = if x.want_stdin && !x.stdin_close { m.try_clone().ok() } else { None };
                        // The runtime's stderr pipe is not the process's.
                        x.outs = [Some(m), None];
                    }
                    Err(err) => failure = Some(err.to_string()),
                }
            }
        } else {
            let mut text = log_error(&x.runtime_log);
            if text.is_none() {
                if let Some(f) = x.outs[1].as_mut() {
                    let (d, _) = drain(f, &mut self.buf);
                    let s = String::from_utf8_lossy(&d);
                    text = s.lines().rev().map(str::trim).find(|l| !l.is_empty()).map(str::to_string);
                }
            }
            failure = Some(text.unwrap_or_else(|| format!("{} exec failed ({e:?})", self.cfg.runtime.display())));
        }
        let _ = std::fs::remove_file(&x.runtime_log);
        if let Some((p, _)) = x.console.take() {
            let _ = std::fs::remove_file(&p);
        }
        if let Some(text) = failure {
            if let Some(p) = pid {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            let timed_out = x.timed_out && x.sync.is_some();
            let client = x.client;
            self.execs.remove(&id);
            if let Some(c) = client {
                if timed_out {
                    // Killed by us while the runtime was still starting it.
                    let v = json!({"exit_code": -1, "signal": null, "stdout": "", "stderr": "", "timed_out": true,
                                   "stdout_truncated": false, "stderr_truncated": false});
                    self.respond(c, control::ok(v));
                } else {
                    self.respond(c, control::error(&text));
                }
                if let Some(cl) = self.clients.get_mut(&c) {
                    cl.mode = Mode::Lines;
                }
                self.client_input(c);
            }
            return;
        }
        let pid = pid.expect("checked above");
        x.pid = Some(pid);
        if x.timed_out {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(k) = self.orphans.iter().position(|(p, _)| *p == pid) {
            x.ending = self.orphans.remove(k).map(|(_, e)| e);
        }
        let stream_client = if x.sync.is_none() { x.client } else { None };
        let (tty, has_stdin) = (x.tty, x.stdin.is_some());
        if let Some(c) = stream_client {
            if let Some(cl) = self.clients.get_mut(&c) {
                cl.out.extend(control::ok(json!({"pid": pid, "tty": tty, "stdin": has_stdin})));
                cl.mode = Mode::Exec(id);
                if cl.read_eof {
                    self.client_input_ended(c);
                }
            }
            self.client_input(c);
        }
        self.exec_maybe_done(id);
    }

    fn exec_output(&mut self, id: u64, i: usize) {
        let Some(x) = self.execs.get_mut(&id) else { return };
        let Some(f) = x.outs[i].as_mut() else { return };
        let (n, end) = match read_some(f, &mut self.buf) {
            Ok(0) => (0, true),
            Ok(n) => (n, false),
            Err(e) if would_block(&e) => (0, false),
            Err(_) => (0, true),
        };
        if end {
            x.outs[i] = None;
        }
        if n > 0 {
            let chunk = self.buf[..n].to_vec();
            self.exec_data(id, i, &chunk);
        }
    }

    fn exec_data(&mut self, id: u64, i: usize, data: &[u8]) {
        let Some(x) = self.execs.get_mut(&id) else { return };
        if let Some(s) = x.sync.as_mut() {
            let room = SYNC_OUTPUT_MAX - s.data[i].len();
            let take = data.len().min(room);
            s.data[i].extend_from_slice(&data[..take]);
            s.truncated[i] |= take < data.len();
        } else if let Some(c) = x.client.and_then(|c| self.clients.get_mut(&c)) {
            let k = if i == 1 { kind::STDERR } else { kind::STDOUT };
            control::encode(k, data, &mut c.out);
        }
    }

    /// Once the process was reaped: the rest of its output, then the answer.
    fn exec_maybe_done(&mut self, id: u64) {
        let Some(x) = self.execs.get_mut(&id) else { return };
        let (Some(_), Some(ending)) = (x.pid, x.ending) else { return };
        let mut outs = [x.outs[0].take(), x.outs[1].take()];
        for (i, f) in outs.iter_mut().enumerate() {
            if let Some(f) = f {
                let (d, _) = drain(f, &mut self.buf);
                if !d.is_empty() {
                    self.exec_data(id, i, &d);
                }
            }
        }
        let x = self.execs.remove(&id).expect("present");
        let Some(c) = x.client else { return };
        let Some(cl) = self.clients.get_mut(&c) else { return };
        match x.sync {
            Some(s) => {
                let v = json!({
                    "exit_code": ending.code(),
                    "signal": ending.signal(),
                    "stdout": crate::base64::encode(&s.data[0]),
                    "stderr": crate::base64::encode(&s.data[1]),
                    "stdout_truncated": s.truncated[0],
                    "stderr_truncated": s.truncated[1],
                    "timed_out": x.timed_out,
                });
                cl.out.extend(control::ok(v));
                cl.mode = Mode::Lines;
                self.client_input(c);
            }
            None => {
                let v = json!({"exit_code": ending.code(), "signal": ending.signal()});
                control::encode(kind::EXIT, &serde_json::to_vec(&v).expect("JSON"), &mut cl.out);
                cl.closing = true;
            }
        }
    }
}

/// Writes queued stdin; at a requested close with nothing queued, closes
/// the pipe (a terminal gets ^D instead: the master stays open for output).
fn flush_stdin(stdin: &mut Option<File>, buf: &mut Vec<u8>, close: bool, tty: bool) {
    let Some(f) = stdin.as_mut() else {
        buf.clear();
        return;
    };
    while !buf.is_empty() {
        match f.write(buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e) if would_block(&e) => return,
            Err(_) => {
                // The reader is gone (EPIPE): nothing more can be delivered.
                *stdin = None;
                buf.clear();
                return;
            }
        }
    }
    if close && buf.is_empty() {
        if tty {
            let _ = f.write(&[4]);
        }
        *stdin = None;
    }
}
