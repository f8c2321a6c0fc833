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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{fork, pipe2, setsid, ForkResult};

use crate::config::Config;
use crate::events::{ContainerIo, EventLoop, Setup};
use crate::io::{CriWriter, LogFile};
use crate::protocol::{now, write_pid_file, Report};
use crate::reaper::reap_all;
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
    crate::events::set_nonblocking(fd)
}

fn set_nonblocking_file(f: &File) -> Result<()> {
    crate::events::set_nonblocking(f)
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
        let _ = std::fs::remove_file(self.console_path());
        if let Some(sd) = &self.cfg.socket_dir {
            let _ = std::fs::remove_file(sd.join("control.sock"));
        }
        if let Some(p) = &self.cfg.pid_file {
            let _ = std::fs::remove_file(p);
        }
        if res.is_ok() {
            self.exit_command();
        }
        res
    }

    /// `--exit-command`: detached, stdio on /dev/null, not waited for (it
    /// outlives the shim and is re-parented).
    fn exit_command(&self) {
        if let Some(p) = &self.cfg.exit_command {
            let _ = Command::new(p)
                .args(&self.cfg.exit_command_args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn();
        }
    }

    /// Where the runtime sends the container's pty master.
    fn console_path(&self) -> PathBuf {
        self.cfg.socket_dir.as_ref().unwrap_or(&self.cfg.bundle).join("console.sock")
    }

    /// `--terminal` must match the bundle's `process.terminal` (the runtime
    /// would otherwise fail obscurely or hang on the console socket).
    fn check_terminal(&self) -> Result<()> {
        let p = self.cfg.bundle.join("config.json");
        // Unreadable or broken: the runtime says what is wrong with it.
        let Ok(f) = File::open(&p) else { return Ok(()) };
        let Ok(v) = serde_json::from_reader::<_, serde_json::Value>(std::io::BufReader::new(f)) else { return Ok(()) };
        let terminal = v["process"]["terminal"].as_bool().unwrap_or(false);
        if terminal != self.cfg.terminal {
            return Err(Error::Usage(format!(
                "{}: process.terminal is {terminal} but --terminal was {}given",
                p.display(),
                if self.cfg.terminal { "" } else { "not " }
            )));
        }
        Ok(())
    }

    /// `<socket-dir>/control.sock`, owner-only, before the report.
    fn control_socket(&self, dir: &Path) -> Result<UnixListener> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(format!("create socket dir {}", dir.display())))?;
        let p = dir.join("control.sock");
        let _ = std::fs::remove_file(&p);
        let l = UnixListener::bind(&p).map_err(io_err(format!("bind control socket {}", p.display())))?;
        crate::term::restrict(&p)?;
        l.set_nonblocking(true).map_err(io_err(format!("control socket {}", p.display())))?;
        Ok(l)
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

        self.check_terminal()?;
        let listener = match &self.cfg.socket_dir {
            Some(d) => Some(self.control_socket(d)?),
            None => None,
        };
        let console = if self.cfg.terminal { Some(crate::term::listen(&self.console_path())?) } else { None };
        // `--stdin` without a terminal: a pipe; with one, the pty is the stdin.
        let (stdin_r, stdin_w) = if self.cfg.stdin && !self.cfg.terminal {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe"))?;
            set_nonblocking(&w)?;
            (Some(r), Some(File::from(w)))
        } else {
            (None, None)
        };

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
        let console_path = self.console_path().display().to_string();
        let status = {
            // The container's stdout/stderr are the runtime's: the pipes' write
            // ends live only in the runtime and the container after this block.
            let mut args = vec!["create", "--bundle", &bundle, "--pid-file", &pid_file];
            if console.is_some() {
                args.extend(["--console-socket", console_path.as_str()]);
            }
            args.push(&id);
            let mut cmd = self.runtime(&args);
            let stdin = match stdin_r {
                Some(r) => Stdio::from(r),
                None => Stdio::null(),
            };
            cmd.stdin(stdin).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
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
            let master = match &console {
                Some(l) => {
                    let m = crate::term::receive_master(l, "create")?;
                    set_nonblocking_file(&m)?;
                    Some(m)
                }
                None => None,
            };
            let log = LogFile::open(&self.cfg.log_path, self.cfg.log_max_size, self.cfg.log_max_files)?;
            Ok((pid, CriWriter::new(log, self.cfg.log_line_max), master))
        });
        drop(console);
        let _ = std::fs::remove_file(self.console_path());
        let (pid, log, master) = match opened {
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

        let dup = |m: &Option<File>| -> Result<Option<File>> {
            m.as_ref().map(|m| m.try_clone().map_err(io_err("dup the pty master"))).transpose()
        };
        let io = ContainerIo {
            stdin: if self.cfg.terminal && self.cfg.stdin { dup(&master)? } else { stdin_w },
            master: dup(&master)?,
            outs: [Some(out_r), Some(err_r), master],
        };
        let setup = Setup {
            cfg: &self.cfg,
            sigfd: &sigfd,
            log,
            init: pid,
            io,
            listener,
            oom,
            started_at: self.started_at.clone(),
        };
        EventLoop::new(setup).run()?;
        if self.cfg.delete {
            let _ = self.runtime_ok(&["delete", "--force", &id]);
            let _ = std::fs::remove_file(&self.cfg.container_pid_file);
        }
        reap_all(0);
        Ok(())
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
