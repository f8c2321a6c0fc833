//! berth-bench-shim: the measuring half of `scripts/bench shim`.
//!
//! Two container monitors, berth-shim and conmon, drive the same runtime
//! (`--runtime`, berth by default) with the same config shape, each with its
//! own runtime `--root`, log, exit and socket directories. Three steps:
//!
//! - memory: `--containers` idle containers (`sleep 3600`) under each
//!   monitor, started alternately; every container is checked to be
//!   `running` with its monitor as its parent, then each monitor process's
//!   Rss, Pss and private memory (Private_Clean + Private_Dirty) are read
//!   from `/proc/<pid>/smaps_rollup`.
//! - start: `--iterations` interleaved rounds (the first monitor alternates),
//!   each starting one idle container per monitor, timed from just before the
//!   monitor is spawned to the moment `start` has returned: berth-shim with
//!   `--start` reports after its own `start`; conmon is driven as CRI-O and
//!   podman drive it (write the start pipe, read `{"data": <pid>}` from the
//!   sync pipe, then `<runtime> start`). `state` must then say `running`
//!   (checked, not timed). The container is killed, its exit file awaited,
//!   the monitor's exit awaited and the container deleted before the next.
//! - cycle: the same with `/bin/true`, timed from the spawn to the exit file
//!   appearing (`<exit-dir>/<id>.json` resp. `<exit-dir>/<id>`).
//!
//! This process is a child subreaper, so both monitors (which detach by
//! forking) are re-parented to it and reaped; their exits are seen through
//! pidfds. Everything is spawned in its own process group so a Ctrl-C reaches
//! only this driver: it finishes the step in progress, kills and deletes every
//! container it started, waits for their monitors, prints what it measured
//! and exits 130.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::{config, median, p90, ratio, stopped, subreaper_and_stop_signals};


#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Shim,
    Conmon,
}

/// One monitor under test and its directories.
struct Monitor {
    kind: Kind,
    name: &'static str,
    path: PathBuf,
    version: String,
    /// The runtime's --root.
    root: PathBuf,
    bundles: PathBuf,
    logs: PathBuf,
    exits: PathBuf,
    pids: PathBuf,
    socks: PathBuf,
}

impl Monitor {
    fn exit_file(&self, id: &str) -> PathBuf {
        match self.kind {
            Kind::Shim => self.exits.join(format!("{id}.json")),
            Kind::Conmon => self.exits.join(id),
        }
    }
    fn pid_file(&self, id: &str) -> PathBuf {
        self.pids.join(format!("{id}.pid"))
    }
}

/// A container that exists (created by a monitor), until it is deleted.
struct Live {
    mon: usize,
    id: String,
    monitor_pid: i32,
    container_pid: i32,
}

struct Opts {
    iterations: usize,
    warmup: usize,
    containers: usize,
    cycle: bool,
    dir: PathBuf,
    rootfs: PathBuf,
    cgroup_parent: String,
    shim: PathBuf,
    conmon: PathBuf,
    runtime: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench-shim --dir DIR --rootfs ROOTFS --cgroup-parent /PATH --shim PATH --conmon PATH \
         --runtime PATH [--iterations N] [--warmup N] [--containers N] [--no-cycle]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        iterations: 50,
        warmup: 3,
        containers: 50,
        cycle: true,
        dir: PathBuf::new(),
        rootfs: PathBuf::new(),
        cgroup_parent: String::new(),
        shim: PathBuf::new(),
        conmon: PathBuf::new(),
        runtime: PathBuf::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--iterations" => o.iterations = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--containers" => o.containers = val().parse().unwrap_or_else(|_| usage()),
            "--no-cycle" => o.cycle = false,
            "--dir" => o.dir = PathBuf::from(val()),
            "--rootfs" => o.rootfs = PathBuf::from(val()),
            "--cgroup-parent" => o.cgroup_parent = val(),
            "--shim" => o.shim = PathBuf::from(val()),
            "--conmon" => o.conmon = PathBuf::from(val()),
            "--runtime" => o.runtime = PathBuf::from(val()),
            _ => usage(),
        }
    }
    let empty = |p: &PathBuf| p.as_os_str().is_empty();
    if [&o.dir, &o.rootfs, &o.shim, &o.conmon, &o.runtime]
        .into_iter()
        .any(empty)
    {
        usage();
    }
    if !o.cgroup_parent.starts_with('/') {
        usage();
    }
    o
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn first_line(path: &Path, arg: &str) -> String {
    Command::new(path)
        .arg(arg)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|s| s.to_string())
        })
        .unwrap_or_default()
}

/// Waits for our child `pid` (EINTR-safe); exit code or 128+signal.
fn wait_child(pid: i32) -> i32 {
    let mut st = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return -1;
        }
    }
    if libc::WIFEXITED(st) {
        libc::WEXITSTATUS(st)
    } else {
        128 + libc::WTERMSIG(st)
    }
}

fn reap_strays() {
    let mut st = 0;
    while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
}

/// Waits until `pid` has exited (pidfd), reaping it if it is our child.
fn wait_gone(pid: i32, timeout: Duration) -> Result<(), String> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return if errno() == libc::ESRCH {
            Ok(())
        } else {
            Err(format!(
                "pidfd_open {pid}: {}",
                std::io::Error::last_os_error()
            ))
        };
    }
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let deadline = Instant::now() + timeout;
    loop {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as i32;
        let r = unsafe { libc::poll(&mut p, 1, left.min(200)) };
        if r > 0 {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(format!("poll pidfd: {}", std::io::Error::last_os_error()));
        }
        if Instant::now() >= deadline {
            return Err(format!("process {pid} still running after {timeout:?}"));
        }
    }
    let mut st = 0;
    unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    Ok(())
}

/// Waits until this process has no children left (reaping them): used for a
/// monitor whose pid was not learnt, at a point where it is the only child.
fn wait_no_children(timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut st = 0;
    loop {
        let r = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
        if r < 0 && errno() == libc::ECHILD {
            return Ok(());
        }
        if r == 0 {
            if Instant::now() >= deadline {
                return Err(format!("a child still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// An inotify watch on a directory, made before the file is expected so no
/// creation is missed.
struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    fn new(dir: &Path) -> Result<Self, String> {
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(format!(
                "inotify_init1: {}",
                std::io::Error::last_os_error()
            ));
        }
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_CLOSE_WRITE;
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } < 0 {
            return Err(format!(
                "inotify_add_watch {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(DirWatch { fd })
    }

    /// Returns once `file` exists (and is not empty), woken by any event in
    /// the directory.
    fn wait_for(&self, file: &Path, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        loop {
            if fs::metadata(file).map(|m| m.len() > 0).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("no exit file {} after {timeout:?}", file.display()));
            }
            let mut p = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let r = unsafe { libc::poll(&mut p, 1, 200) };
            if r > 0 {
                // Drain; which file it was does not matter, the check above decides.
                while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
                    > 0
                {}
            }
        }
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        fatal_plain(&format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn fatal_plain(msg: &str) -> ! {
    eprintln!("berth-bench-shim: {msg}");
    std::process::exit(1)
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn ppid_of(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Rss, Pss, private (Private_Clean + Private_Dirty), all KiB.
#[derive(Clone, Copy, Default)]
struct Mem {
    rss: f64,
    pss: f64,
    private: f64,
}

fn smaps_rollup(pid: i32) -> Result<Mem, String> {
    let s = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map_err(|e| format!("smaps_rollup of {pid}: {e}"))?;
    let mut m = Mem::default();
    for l in s.lines() {
        let mut it = l.split_whitespace();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let v: f64 = v.parse().unwrap_or(0.0);
        match k {
            "Rss:" => m.rss = v,
            "Pss:" => m.pss = v,
            "Private_Clean:" | "Private_Dirty:" => m.private += v,
            _ => {}
        }
    }
    Ok(m)
}

struct Bench {
    opts: Opts,
    mons: Vec<Monitor>,
    live: Vec<Live>,
    scratch: PathBuf,
    /// Timings, ms, per monitor.
    start_ms: Vec<Vec<f64>>,
    cycle_ms: Vec<Vec<f64>>,
    mem: Vec<Vec<Mem>>,
}

impl Bench {
    fn runtime(&self, mon: &Monitor) -> Command {
        let mut c = Command::new(&self.opts.runtime);
        c.arg("--root")
            .arg(&mon.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        c
    }

    /// Runs the runtime with `args`; exit code and stdout+stderr.
    fn rt(&self, m: usize, args: &[&str]) -> (i32, String) {
        let out = self
            .runtime(&self.mons[m])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        match out {
            Ok(o) => (
                o.status.code().unwrap_or(-1),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ),
            ),
            Err(e) => (-1, e.to_string()),
        }
    }

    fn status(&self, m: usize, id: &str) -> String {
        let (code, out) = self.rt(m, &["state", id]);
        if code != 0 {
            return format!("(state failed: {})", out.trim());
        }
        out.split("\"status\"")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .unwrap_or("?")
            .to_string()
    }

    /// Kills and deletes everything still alive, then exits with `code`.
    fn exit(&mut self, code: i32) -> ! {
        self.teardown_all();
        std::process::exit(code)
    }

    fn fail(&mut self, msg: &str) -> ! {
        eprintln!("berth-bench-shim: {msg}");
        self.exit(1)
    }

    fn bundle(&self, m: usize, id: &str, args: &[&str]) -> PathBuf {
        let b = self.mons[m].bundles.join(id);
        fs::create_dir_all(&b).unwrap();
        let cfg = config(
            &self.opts.rootfs,
            &format!("{}/{id}", self.opts.cgroup_parent),
            args,
            None,
            None,
        );
        File::create(b.join("config.json"))
            .and_then(|mut f| f.write_all(cfg.as_bytes()))
            .unwrap_or_else(|e| fatal_plain(&format!("write config of {id}: {e}")));
        b
    }

    /// Spawns monitor `m` for container `id` (bundle ready) and returns the
    /// ms from spawn to "start returned" (`start`) or "created" (not
    /// `start`), registering the container as live.
    fn launch(&mut self, m: usize, id: &str, bundle: &Path, start: bool) -> Result<f64, String> {
        let mon = &self.mons[m];
        let err = self.scratch.join(format!("{id}.err"));
        let errf = File::create(&err).map_err(|e| e.to_string())?;
        let log = mon.logs.join(format!("{id}.log"));
        let t0;
        let container_pid: i32;
        match mon.kind {
            Kind::Shim => {
                let mut c = Command::new(&mon.path);
                c.arg("--id")
                    .arg(id)
                    .arg("--bundle")
                    .arg(bundle)
                    .arg("--runtime")
                    .arg(&self.opts.runtime)
                    .arg("--runtime-root")
                    .arg(&mon.root)
                    .arg("--log-path")
                    .arg(&log)
                    .arg("--exit-dir")
                    .arg(&mon.exits)
                    .arg("--pid-file")
                    .arg(mon.pid_file(id))
                    // Private per container (the shim's control socket and exec
                    // files live there), as conmon makes <dir>/<cuuid>/ itself.
                    .arg("--socket-dir")
                    .arg(mon.socks.join(id));
                if start {
                    c.arg("--start");
                }
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(errf)
                    .process_group(0);
                t0 = Instant::now();
                let mut child = c
                    .spawn()
                    .map_err(|e| format!("spawn {}: {e}", mon.path.display()))?;
                let mut line = String::new();
                let mut out = BufReader::new(child.stdout.take().unwrap());
                let _ = out.read_line(&mut line);
                let elapsed = t0.elapsed();
                drop(out);
                let code = wait_child(child.id() as i32);
                let line = line.trim();
                match line.parse::<i32>() {
                    Ok(p) if code == 0 => container_pid = p,
                    _ => {
                        let e = fs::read_to_string(&err).unwrap_or_default();
                        return Err(format!(
                            "berth-shim for {id}: exit {code}, report {line:?} {}",
                            e.trim()
                        ));
                    }
                }
                // A quick container's shim may be done already: it removes its
                // pid file after the exit file; 0 = already exiting.
                let monitor_pid = match read_pid(&mon.pid_file(id)) {
                    Some(p) => p,
                    None if mon.exit_file(id).exists() => 0,
                    None => return Err(format!("berth-shim for {id}: no pid file")),
                };
                self.live.push(Live {
                    mon: m,
                    id: id.to_string(),
                    monitor_pid,
                    container_pid,
                });
                Ok(elapsed.as_secs_f64() * 1e3)
            }
            Kind::Conmon => {
                let (sync_r, sync_w) = pipe();
                let (start_r, start_w) = pipe();
                let (sw, sr) = (sync_w.as_raw_fd(), start_r.as_raw_fd());
                let mut c = Command::new(&mon.path);
                c.args(["--api-version", "1", "-c", id, "-u", id, "-n", id, "-r"])
                    .arg(&self.opts.runtime)
                    .arg("--runtime-arg")
                    .arg("--root")
                    .arg("--runtime-arg")
                    .arg(&mon.root)
                    .arg("-b")
                    .arg(bundle)
                    .arg("-p")
                    .arg(bundle.join("pidfile"))
                    .arg("-P")
                    .arg(mon.pid_file(id))
                    .arg("-l")
                    .arg(&log)
                    .arg("--exit-dir")
                    .arg(&mon.exits)
                    .arg("--socket-dir-path")
                    .arg(&mon.socks)
                    .env("_OCI_SYNCPIPE", sw.to_string())
                    .env("_OCI_STARTPIPE", sr.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(errf)
                    .process_group(0);
                // SAFETY: fcntl on descriptors this process owns, between fork
                // and exec; it only clears close-on-exec in the child's table.
                unsafe {
                    c.pre_exec(move || {
                        for fd in [sw, sr] {
                            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                        }
                        Ok(())
                    });
                }
                t0 = Instant::now();
                let child = c
                    .spawn()
                    .map_err(|e| format!("spawn {}: {e}", mon.path.display()))?;
                drop(sync_w);
                drop(start_r);
                // conmon blocks on the start pipe until its caller has placed it
                // (CRI-O: in a cgroup); then it forks, the parent exits.
                let mut sp = File::from(start_w);
                let _ = sp.write_all(b"0");
                drop(sp);
                let code = wait_child(child.id() as i32);
                let mut line = String::new();
                let _ = BufReader::new(File::from(sync_r)).read_line(&mut line);
                let data = line
                    .split("\"data\"")
                    .nth(1)
                    .and_then(|r| r.trim_start_matches([':', ' ']).split([',', '}']).next())
                    .and_then(|v| v.trim().parse::<i32>().ok());
                let pid = match data {
                    Some(p) if p > 0 && code == 0 => p,
                    _ => {
                        let e = fs::read_to_string(&err).unwrap_or_default();
                        return Err(format!(
                            "conmon for {id}: exit {code}, sync {:?} {}",
                            line.trim(),
                            e.trim()
                        ));
                    }
                };
                container_pid = pid;
                let monitor_pid =
                    read_pid(&mon.pid_file(id)).ok_or(format!("conmon for {id}: no pid file"))?;
                self.live.push(Live {
                    mon: m,
                    id: id.to_string(),
                    monitor_pid,
                    container_pid,
                });
                if start {
                    let (code, out) = self.rt(m, &["start", id]);
                    if code != 0 {
                        return Err(format!(
                            "start {id} (under conmon): exit {code}: {}",
                            out.trim()
                        ));
                    }
                }
                Ok(t0.elapsed().as_secs_f64() * 1e3)
            }
        }
    }

    /// `state` says running and the init's parent is the monitor.
    fn check_running(&self, live: &Live) -> Result<(), String> {
        let st = self.status(live.mon, &live.id);
        if st != "running" {
            return Err(format!(
                "{}: container {} is {st}, not running",
                self.mons[live.mon].name, live.id
            ));
        }
        let pp = ppid_of(live.container_pid);
        if pp != Some(live.monitor_pid) {
            return Err(format!(
                "{}: container {} init {} has parent {pp:?}, not the monitor {}",
                self.mons[live.mon].name, live.id, live.container_pid, live.monitor_pid
            ));
        }
        Ok(())
    }

    /// Kills the container (unless it exits by itself), waits for its exit
    /// file and its monitor's exit, deletes it.
    fn teardown(&mut self, idx: usize, kill: bool, watch: Option<&DirWatch>) -> Result<(), String> {
        let l = self.live.remove(idx);
        let m = l.mon;
        if kill {
            let (code, out) = self.rt(m, &["kill", &l.id, "KILL"]);
            if code != 0 && !out.contains("not running") && !out.contains("stopped") {
                // fall through: delete --force below still removes it
                eprintln!("berth-bench-shim: kill {}: {}", l.id, out.trim());
            }
        }
        let exit_file = self.mons[m].exit_file(&l.id);
        let res = match watch {
            Some(w) => w.wait_for(&exit_file, Duration::from_secs(30)),
            None => DirWatch::new(&self.mons[m].exits)
                .and_then(|w| w.wait_for(&exit_file, Duration::from_secs(30))),
        };
        let gone = if l.monitor_pid > 0 {
            wait_gone(l.monitor_pid, Duration::from_secs(30))
        } else {
            wait_no_children(Duration::from_secs(30))
        };
        let (code, out) = self.rt(m, &["delete", "--force", &l.id]);
        reap_strays();
        let _ = fs::remove_dir_all(self.mons[m].bundles.join(&l.id));
        res?;
        gone.map_err(|e| format!("{} of {}: {e}", self.mons[m].name, l.id))?;
        if code != 0 {
            return Err(format!("delete {}: {}", l.id, out.trim()));
        }
        Ok(())
    }

    fn teardown_all(&mut self) {
        while let Some(i) = self.live.len().checked_sub(1) {
            let id = self.live[i].id.clone();
            if let Err(e) = self.teardown(i, true, None) {
                eprintln!("berth-bench-shim: cleanup of {id}: {e}");
            }
        }
        reap_strays();
    }

    fn memory(&mut self) {
        let n = self.opts.containers;
        eprintln!("  memory: starting {n} idle containers under each monitor ...");
        for i in 0..n {
            for k in 0..2 {
                if stopped() {
                    return;
                }
                let m = (i + k) % 2;
                let id = format!("{}-idle-{i}", self.mons[m].name);
                let b = self.bundle(m, &id, &["/bin/sleep", "3600"]);
                if let Err(e) = self.launch(m, &id, &b, true) {
                    self.fail(&e);
                }
                let l = self.live.last().unwrap();
                if let Err(e) = self.check_running(l) {
                    self.fail(&e);
                }
            }
        }
        // Let the monitors settle into their idle loops.
        std::thread::sleep(Duration::from_millis(500));
        let mut mem = vec![vec![], vec![]];
        let mut bad = None;
        for l in &self.live {
            match self
                .check_running(l)
                .and_then(|_| smaps_rollup(l.monitor_pid))
            {
                Ok(x) => mem[l.mon].push(x),
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = bad {
            self.fail(&e);
        }
        self.mem = mem;
        eprintln!("  memory: measured; stopping them ...");
        self.teardown_all();
    }

    fn timed(&mut self, cycle: bool) {
        let total = self.opts.warmup + self.opts.iterations;
        let what = if cycle { "cycle" } else { "start" };
        let t_start = Instant::now();
        let mut done = 0;
        'outer: for i in 0..total {
            let measuring = i >= self.opts.warmup;
            let mut got = [0.0; 2];
            for k in 0..2 {
                if stopped() {
                    break 'outer;
                }
                let m = (i + k) % 2;
                let id = format!("{}-{what}-{i}", self.mons[m].name);
                let args: &[&str] = if cycle {
                    &["/bin/true"]
                } else {
                    &["/bin/sleep", "3600"]
                };
                let b = self.bundle(m, &id, args);
                let watch = match DirWatch::new(&self.mons[m].exits) {
                    Ok(w) => w,
                    Err(e) => self.fail(&e),
                };
                let t0 = Instant::now();
                let ms = match self.launch(m, &id, &b, true) {
                    Ok(ms) => ms,
                    Err(e) => self.fail(&e),
                };
                let idx = self.live.len() - 1;
                if cycle {
                    let f = self.mons[m].exit_file(&id);
                    if let Err(e) = watch.wait_for(&f, Duration::from_secs(30)) {
                        self.fail(&e);
                    }
                    got[m] = t0.elapsed().as_secs_f64() * 1e3;
                    let code = fs::read_to_string(&f).unwrap_or_default();
                    let ok = match self.mons[m].kind {
                        Kind::Shim => code.contains("\"exit_code\":0"),
                        Kind::Conmon => code.trim() == "0",
                    };
                    if !ok {
                        self.fail(&format!(
                            "{}: /bin/true in {id} exit file says {}",
                            self.mons[m].name,
                            code.trim()
                        ));
                    }
                } else {
                    got[m] = ms;
                    let l = &self.live[idx];
                    if let Err(e) = self.check_running(l) {
                        self.fail(&e);
                    }
                }
                if let Err(e) = self.teardown(idx, !cycle, Some(&watch)) {
                    self.fail(&e);
                }
            }
            if measuring {
                self.start_or_cycle(cycle)[0].push(got[0]);
                self.start_or_cycle(cycle)[1].push(got[1]);
                done += 1;
                if done % 25 == 0 || done == self.opts.iterations {
                    eprintln!(
                        "  {what}: {done}/{} iterations ({:.0} s)",
                        self.opts.iterations,
                        t_start.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    fn start_or_cycle(&mut self, cycle: bool) -> &mut Vec<Vec<f64>> {
        if cycle {
            &mut self.cycle_ms
        } else {
            &mut self.start_ms
        }
    }

    fn report(&self) {
        let (s, c) = (0, 1);
        let rt = self.opts.runtime.file_name().unwrap().to_string_lossy();
        if !self.mem.iter().all(|v| v.is_empty()) {
            println!();
            println!(
                "memory: one monitor process per idle container ({} + {} containers, runtime {rt}), per container",
                self.mem[s].len(),
                self.mem[c].len()
            );
            println!(
                "  {:<10} {:>10} {:>10} {:>10} {:>10}",
                "monitor", "RSS mean", "PSS mean", "private", "RSS max"
            );
            let mean =
                |v: &Vec<Mem>, f: fn(&Mem) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
            for (i, mon) in self.mons.iter().enumerate() {
                let v = &self.mem[i];
                let max = v.iter().map(|m| m.rss).fold(f64::NAN, f64::max);
                println!(
                    "  {:<10} {:>6.0} KiB {:>6.0} KiB {:>6.0} KiB {:>6.0} KiB",
                    mon.name,
                    mean(v, |m| m.rss),
                    mean(v, |m| m.pss),
                    mean(v, |m| m.private),
                    max
                );
            }
            let r = |f: fn(&Mem) -> f64| ratio(mean(&self.mem[s], f), Some(mean(&self.mem[c], f)));
            println!(
                "  berth-shim / conmon: RSS {}, PSS {}, private {}",
                r(|m| m.rss),
                r(|m| m.pss),
                r(|m| m.private)
            );
            println!("  (smaps_rollup of each monitor: PSS splits shared pages among the processes mapping them; private = Private_Clean + Private_Dirty)");
        }
        let table = |title: &str, v: &Vec<Vec<f64>>| {
            if v[s].is_empty() {
                return;
            }
            println!();
            println!(
                "{title} ({} iterations after {} warm-up, interleaved)",
                v[s].len(),
                self.opts.warmup
            );
            println!(
                "  {:<10} {:>9} {:>9}   {:>10}",
                "monitor", "median", "p90", "vs conmon"
            );
            let mc = median(&v[c]);
            for (i, mon) in self.mons.iter().enumerate() {
                let md = median(&v[i]);
                println!(
                    "  {:<10} {:>6.2} ms {:>6.2} ms   {:>10}",
                    mon.name,
                    md,
                    p90(&v[i]),
                    ratio(md, Some(mc))
                );
            }
        };
        table(
            &format!("start: spawn of the monitor to container running (`sleep 3600`, runtime {rt}; berth-shim --start, conmon + `{rt} start`)"),
            &self.start_ms,
        );
        table(
            &format!(
                "cycle: spawn of the monitor to exit file written (`/bin/true`, runtime {rt})"
            ),
            &self.cycle_ms,
        );
    }
}

fn main() {
    let opts = parse_opts();
    if let Err(e) = subreaper_and_stop_signals() {
        fatal_plain(&format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    let scratch = opts.dir.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let mut mons = vec![];
    for (kind, name, path) in [
        (Kind::Shim, "berth-shim", opts.shim.clone()),
        (Kind::Conmon, "conmon", opts.conmon.clone()),
    ] {
        let base = opts.dir.join(name);
        let d = |s: &str| {
            let p = base.join(s);
            fs::create_dir_all(&p).unwrap();
            p
        };
        let version = match kind {
            Kind::Shim => String::new(),
            Kind::Conmon => first_line(&path, "--version"),
        };
        mons.push(Monitor {
            kind,
            name,
            version,
            root: d("root"),
            bundles: d("bundles"),
            logs: d("logs"),
            exits: d("exits"),
            pids: d("pids"),
            socks: d("socks"),
            path,
        });
    }
    let mut b = Bench {
        opts,
        mons,
        live: vec![],
        scratch,
        start_ms: vec![vec![], vec![]],
        cycle_ms: vec![vec![], vec![]],
        mem: vec![vec![], vec![]],
    };
    println!(
        "runtime for both: {} ({}); each monitor has its own --root, log, exit and socket dirs under {}",
        b.opts.runtime.display(),
        first_line(&b.opts.runtime, "--version"),
        b.opts.dir.display()
    );
    for m in &b.mons {
        let v = if m.version.is_empty() {
            String::new()
        } else {
            format!("  ({})", m.version)
        };
        println!("  {:<10} {}{v}", m.name, m.path.display());
    }
    if b.opts.containers > 0 {
        b.memory();
    }
    if b.opts.iterations > 0 && !stopped() {
        b.timed(false);
    }
    if b.opts.iterations > 0 && b.opts.cycle && !stopped() {
        b.timed(true);
    }
    b.teardown_all();
    // Only complete rounds count (both monitors measured).
    b.report();
    if stopped() {
        eprintln!("berth-bench-shim: interrupted");
        std::process::exit(130);
    }
}
