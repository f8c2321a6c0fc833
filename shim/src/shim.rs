//! The shim's life: detach, create (and maybe start) the container, report
//! to the caller, copy its output into the CRI log, reap it, write the exit
//! file. Processes:
//!
//! ```text
//! caller ─▶ berth-shim (A) ──fork──▶ (B) setsid ──fork──▶ (C) the monitor
//!           waits for C's report       exits at once        subreaper, runs the runtime,
//!           on an internal pipe,                            reports, poll loop, exit file
//!           prints it, exits 0/1
//! ```
//! A returns to the caller as soon as the container exists, B's exit
//! re-parents C away from the caller, and C (a child subreaper) becomes
//! the container init's parent once `<runtime> create` exits.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, pipe2, setsid, ForkResult};

use crate::config::Config;
use crate::io::{CriWriter, LogFile, Stream};
use crate::protocol::{now, write_exit_file, write_pid_file, Report};
use crate::reaper::{reap_all, Ending};
use crate::{io_err, sys_err, Error, Result};

/// Runs the shim from the caller's process; returns A's exit status
/// (0: the container exists; 1: it does not, the report says why).
pub fn launch(cfg: Config) -> i32 {
    let (report_r, report_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return deliver(&cfg, &Report::Error(format!("berth-shim: pipe: {e}"))),
    };
    // SAFETY: the shim is single-threaded here (nothing has spawned a thread),
    // so the child may run arbitrary code after fork.
    match unsafe { fork() } {
        Err(e) => deliver(&cfg, &Report::Error(format!("berth-shim: fork: {e}"))),
        Ok(ForkResult::Parent { child }) => {
            drop(report_w);
            let mut text = String::new();
            let _ = File::from(report_r).read_to_string(&mut text);
            let _ = nix::sys::wait::waitpid(child, None);
            let report = Report::parse(text.lines().next().unwrap_or(""))
                .unwrap_or_else(|| Report::Error("berth-shim: the monitor exited before reporting".into()));
            deliver(&cfg, &report)
        }
        Ok(ForkResult::Child) => {
            drop(report_r);
            let code = detach_and_monitor(cfg, report_w);
            std::process::exit(code);
        }
    }
}

/// A's last act: the report to `--sync-fd` or stdout.
fn deliver(cfg: &Config, report: &Report) -> i32 {
    let line = report.line();
    match cfg.sync_fd {
        Some(fd) => {
            // SAFETY: the caller passed this descriptor to us for exactly this
            // purpose; we own it from here and close it on drop.
            let mut f = unsafe { File::from_raw_fd(fd) };
            let _ = f.write_all(line.as_bytes());
        }
        None => {
            let mut out = std::io::stdout();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
    match report {
        Report::Pid(_) => 0,
        Report::Error(_) => 1,
    }
}

/// B: new session, fork C, exit.
fn detach_and_monitor(cfg: Config, report_w: OwnedFd) -> i32 {
    let mut report = File::from(report_w);
    if let Err(e) = setsid() {
        let _ = report.write_all(Report::Error(format!("berth-shim: setsid: {e}")).line().as_bytes());
        return 1;
    }
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Err(e) => {
            let _ = report.write_all(Report::Error(format!("berth-shim: fork: {e}")).line().as_bytes());
            1
        }
        Ok(ForkResult::Parent { .. }) => 0,
        Ok(ForkResult::Child) => {
            let mut m = Monitor { cfg, report: Some(report), started_at: None };
            match m.run() {
                Ok(()) => 0,
                Err(e) => {
                    // The runtime's own words as they are; the shim's failures say so.
                    let text = match e {
                        Error::Runtime(t) => t,
                        e => format!("berth-shim: {e}"),
                    };
                    m.report(Report::Error(text));
                    1
                }
            }
        }
    }
}

struct Monitor {
    cfg: Config,
    /// Open until the report is sent.
    report: Option<File>,
    started_at: Option<String>,
}

/// Closes every inherited descriptor but `keep` and points 0, 1, 2 at
/// /dev/null, so the caller's pipes see end-of-file when A exits.
fn isolate_stdio(keep: RawFd) -> Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(io_err("read /proc/self/fd"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > 2 && fd != keep {
            // SAFETY: nothing in this process owns these inherited descriptors
            // (the one std used to list the directory is already closed; a
            // failed close of it is harmless).
            unsafe { libc::close(fd) };
        }
    }
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(io_err("open /dev/null"))?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors; std holds no Rust
        // object owning them other than the process-wide stdio handles.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(Error::Io { what: format!("dup2 /dev/null to {fd}"), source: std::io::Error::last_os_error() });
        }
    }
    Ok(())
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let fl = fcntl(fd, FcntlArg::F_GETFL).map_err(sys_err("fcntl F_GETFL"))?;
    fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK)).map_err(sys_err("fcntl F_SETFL"))?;
    Ok(())
}

/// Everything readable now (the pipe is non-blocking), at most `limit` bytes.
fn read_available(f: &mut File, limit: usize) -> Vec<u8> {
    let mut out = vec![];
    let mut buf = [0u8; 8192];
    while out.len() < limit {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

impl Monitor {
    fn report(&mut self, r: Report) {
        if let Some(mut f) = self.report.take() {
            let _ = f.write_all(r.line().as_bytes());
        }
    }

    fn runtime(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cfg.runtime);
        c.args(self.cfg.runtime_args(args));
        c
    }

    /// Runs a runtime command to completion; its error text on failure.
    fn runtime_ok(&self, args: &[&str]) -> std::result::Result<(), String> {
        let out = self
            .runtime(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("run {} {}: {e}", self.cfg.runtime.display(), args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure_text(&out.stderr, out.status))
        }
    }

    fn run(&mut self) -> Result<()> {
        let keep = self.report.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
        isolate_stdio(keep)?;
        nix::sys::prctl::set_child_subreaper(true).map_err(sys_err("prctl PR_SET_CHILD_SUBREAPER"))?;
        if let Some(p) = &self.cfg.pid_file {
            write_pid_file(p, std::process::id() as i32)?;
        }
        let res = self.create_and_monitor();
        if let Some(p) = &self.cfg.pid_file {
            let _ = std::fs::remove_file(p);
        }
        res
    }

    fn create_and_monitor(&mut self) -> Result<()> {
        // Blocked before any child exists, so no exit is missed; the runtime's
        // children start with an empty mask (std resets it before exec).
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.add(Signal::SIGUSR1);
        mask.thread_block().map_err(sys_err("block SIGCHLD, SIGUSR1"))?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys_err("signalfd"))?;

        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
        set_nonblocking(&out_r)?;
        set_nonblocking(&err_r)?;
        let (mut out_r, mut err_r) = (File::from(out_r), File::from(err_r));

        let _ = std::fs::remove_file(&self.cfg.container_pid_file);
        // A fresh log, so its last error is this create's.
        let _ = std::fs::remove_file(&self.cfg.runtime_log);
        let bundle = self.cfg.bundle.display().to_string();
        let pid_file = self.cfg.container_pid_file.display().to_string();
        let id = self.cfg.id.clone();
        let status = {
            // The container's stdout/stderr are the runtime's: the pipes' write
            // ends live only in the runtime and the container after this block.
            let mut cmd = self.runtime(&["create", "--bundle", &bundle, "--pid-file", &pid_file, &id]);
            cmd.stdin(Stdio::null()).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
            cmd.status()
                .map_err(|e| Error::Runtime(format!("run {} create: {e}", self.cfg.runtime.display())))?
        };
        if !status.success() {
            // Nothing but the runtime wrote to the pipes: its message is there.
            let mut text = read_available(&mut err_r, 64 * 1024);
            if text.iter().all(u8::is_ascii_whitespace) {
                text = read_available(&mut out_r, 64 * 1024);
            }
            reap_all(0);
            let _ = std::fs::remove_file(&self.cfg.container_pid_file);
            return Err(Error::Runtime(self.failure_text(&text, status)));
        }
        // Opened only now, so a failed create leaves no log file behind.
        let opened = read_pid(&self.cfg.container_pid_file).and_then(|pid| {
            let log = LogFile::open(&self.cfg.log_path, self.cfg.log_max_size, self.cfg.log_max_files)?;
            Ok((pid, CriWriter::new(log, self.cfg.log_line_max)))
        });
        let (pid, mut log) = match opened {
            Ok(v) => v,
            Err(e) => {
                let _ = self.runtime_ok(&["delete", "--force", &id]);
                reap_all(0);
                let _ = std::fs::remove_file(&self.cfg.container_pid_file);
                return Err(e);
            }
        };

        // Before start: the baseline of the cgroup's OOM-kill counter.
        let oom = crate::oom::OomCounter::for_process(pid);

        if self.cfg.start {
            if let Err(e) = self.runtime_ok(&["start", &id]) {
                let _ = self.runtime_ok(&["delete", "--force", &id]);
                reap_all(0);
                let _ = std::fs::remove_file(&self.cfg.container_pid_file);
                return Err(Error::Runtime(e));
            }
            self.started_at = Some(now());
        }
        self.report(Report::Pid(pid));

        let ending = self.copy_until_exit(pid, &sigfd, &mut log, &mut out_r, &mut err_r)?;
        // What the container wrote before it ended is in the pipes now.
        for (f, s) in [(&mut out_r, Stream::Stdout), (&mut err_r, Stream::Stderr)] {
            let data = read_available(f, usize::MAX);
            log.write(s, &data)?;
            log.finish(s)?;
        }
        // Any OOM kill in the container's cgroup counts (as CRI-O and containerd
        // report it); unknown (no memory cgroup found) reads as false.
        let oom_killed = oom.as_ref().is_some_and(|o| o.fired());
        let rec = ending.record(self.started_at.clone(), oom_killed);
        std::fs::create_dir_all(&self.cfg.exit_dir).map_err(io_err(format!("create {}", self.cfg.exit_dir.display())))?;
        write_exit_file(&self.cfg.exit_file(), &rec)?;
        if self.cfg.delete {
            let _ = self.runtime_ok(&["delete", "--force", &id]);
            let _ = std::fs::remove_file(&self.cfg.container_pid_file);
        }
        reap_all(0);
        Ok(())
    }

    /// The poll loop: output into the log, SIGUSR1 reopens it, SIGCHLD reaps.
    fn copy_until_exit(
        &mut self,
        init: i32,
        sigfd: &SignalFd,
        log: &mut CriWriter,
        out_r: &mut File,
        err_r: &mut File,
    ) -> Result<Ending> {
        let mut open = [true, true];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let (revents, sig_ready) = {
                let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
                let streams: [&File; 2] = [out_r, err_r];
                // A stream at end-of-file leaves the set: poll would report its
                // POLLHUP forever.
                let mut slot = [None, None];
                for (i, f) in streams.iter().enumerate() {
                    if open[i] {
                        slot[i] = Some(fds.len());
                        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                    }
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(Error::Sys { what: "poll".into(), source: e }),
                }
                let ev = |i: Option<usize>| i.and_then(|i| fds[i].revents()).unwrap_or(PollFlags::empty());
                ([ev(slot[0]), ev(slot[1])], ev(Some(0)).contains(PollFlags::POLLIN))
            };
            for (i, (f, s)) in [(&mut *out_r, Stream::Stdout), (&mut *err_r, Stream::Stderr)].into_iter().enumerate() {
                if !open[i] || revents[i].is_empty() {
                    continue;
                }
                match f.read(&mut buf) {
                    Ok(0) => {
                        open[i] = false;
                        log.finish(s)?;
                    }
                    Ok(n) => log.write(s, &buf[..n])?,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => open[i] = false,
                }
            }
            if sig_ready {
                let mut ending = None;
                while let Ok(Some(info)) = sigfd.read_signal() {
                    if info.ssi_signo == Signal::SIGUSR1 as u32 {
                        log.log.reopen()?;
                    } else if let Some(e) = reap_all(init) {
                        ending = Some(e);
                    }
                }
                if let Some(e) = ending {
                    return Ok(e);
                }
            }
        }
    }
}

impl Monitor {
    /// Why a runtime command failed: the last `"level":"error"` message in its
    /// `--log` (what engines read), else its stderr.
    fn failure_text(&self, stderr: &[u8], status: std::process::ExitStatus) -> String {
        let log = std::fs::read_to_string(&self.cfg.runtime_log).unwrap_or_default();
        log.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["level"] == "error")
            .and_then(|v| v["msg"].as_str().map(str::to_string))
            .unwrap_or_else(|| error_text(stderr, status))
    }
}

fn read_pid(p: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(p).map_err(io_err(format!("read container pid file {}", p.display())))?;
    text.trim()
        .parse()
        .map_err(|_| Error::Runtime(format!("container pid file {}: not a pid: {text:?}", p.display())))
}

/// The runtime's message: its last non-empty line (runc and berth print one
/// error line last), else the exit status.
fn error_text(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("runtime failed ({status})"))
}
