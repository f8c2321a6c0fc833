//! berth-bench: the measuring half of `scripts/bench runtime`.
//!
//! For each runtime (own `--root`, own bundle, one shared config shape) and
//! each iteration, in round-robin order that rotates every iteration:
//!
//! - lifecycle: `create` (its wall time and its peak RSS: `ru_maxrss` from
//!   wait4, i.e. the create process and any children it reaped — what
//!   `/usr/bin/time -f %M` reports), `start`, wait for the container's
//!   `/bin/true` to exit, `delete`. Waiting is the same for every runtime:
//!   this process is a child subreaper (as conmon and containerd's shim are),
//!   so the container process becomes its child once `create` exits; its exit
//!   is seen through a pidfd (which also works should a runtime keep another
//!   parent for it) and then reaped.
//! - run: `run` in the foreground (create + start + wait + delete inside the
//!   runtime), wall time.
//!
//! Runtimes are spawned in their own process group so a Ctrl-C reaches only
//! this driver: it finishes the step in progress, force-deletes what exists,
//! prints what it measured so far and exits 130.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_bench::{config, median, p90, ratio, stopped, subreaper_and_stop_signals};


struct Rt {
    name: String,
    path: PathBuf,
    root: PathBuf,
    bundle: PathBuf,
    version: String,
    life: Vec<Life>,
    run: Vec<f64>,
    run_rss: Vec<f64>,
}

/// One lifecycle, times in ms, RSS in KiB.
#[derive(Clone, Copy)]
struct Life {
    create: f64,
    start: f64,
    wait: f64,
    delete: f64,
    rss: f64,
}

impl Life {
    fn total(&self) -> f64 {
        self.create + self.start + self.wait + self.delete
    }
}

struct Opts {
    iterations: usize,
    warmup: usize,
    dir: PathBuf,
    rootfs: PathBuf,
    cgroup_parent: String,
    run: bool,
    runtimes: Vec<(String, PathBuf)>,
    /// `--seccomp FILE`: a linux.seccomp object for every runtime's config.
    seccomp: Option<String>,
    /// `--memory-limit BYTES`: linux.resources.memory.limit for every config.
    memory_limit: Option<u64>,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench --dir DIR --rootfs ROOTFS --cgroup-parent /PATH [--iterations N] [--warmup N] \
         [--no-run] [--seccomp FILE] [--memory-limit BYTES] NAME=/path/to/runtime..."
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        iterations: 200,
        warmup: 5,
        dir: PathBuf::new(),
        rootfs: PathBuf::new(),
        cgroup_parent: String::new(),
        run: true,
        runtimes: vec![],
        seccomp: None,
        memory_limit: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--iterations" => o.iterations = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => o.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--dir" => o.dir = PathBuf::from(val()),
            "--rootfs" => o.rootfs = PathBuf::from(val()),
            "--cgroup-parent" => o.cgroup_parent = val(),
            "--no-run" => o.run = false,
            "--seccomp" => {
                o.seccomp = Some(fs::read_to_string(val()).expect("read --seccomp file"))
            }
            "--memory-limit" => o.memory_limit = Some(val().parse().unwrap_or_else(|_| usage())),
            s if s.contains('=') && !s.starts_with('-') => {
                let (n, p) = s.split_once('=').unwrap();
                o.runtimes.push((n.to_string(), PathBuf::from(p)));
            }
            _ => usage(),
        }
    }
    if o.dir.as_os_str().is_empty() || o.rootfs.as_os_str().is_empty() || o.runtimes.is_empty() {
        usage();
    }
    if !o.cgroup_parent.starts_with('/') || o.iterations == 0 {
        usage();
    }
    o
}

/// Result of one runtime command.
struct Exec {
    ms: f64,
    maxrss_kib: f64,
    /// Exit code, or 128+signal.
    code: i32,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs `rt <args>` (stdio: null, null, `err`), timed from just before the
/// spawn to the return of wait4.
fn exec(rt: &Rt, args: &[&str], err: &Path) -> Exec {
    let errf = File::create(err).expect("create stderr file");
    let mut c = Command::new(&rt.path);
    c.arg("--root").arg(&rt.root).args(args);
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errf)
        .process_group(0);
    let t0 = Instant::now();
    let child = c
        .spawn()
        .unwrap_or_else(|e| fatal(&format!("{}: spawn {}: {e}", rt.name, rt.path.display())));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && errno() != libc::EINTR {
            fatal(&format!("wait4 {pid}: {}", std::io::Error::last_os_error()));
        }
    }
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Exec {
        ms,
        maxrss_kib: ru.ru_maxrss as f64,
        code,
    }
}

fn fatal(msg: &str) -> ! {
    eprintln!("berth-bench: {msg}");
    std::process::exit(1)
}

fn reap_strays() {
    let mut st = 0;
    while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
}

/// Best-effort removal of container `id` (after an error or an interrupt).
fn force_delete(rt: &Rt, id: &str, pid: Option<i32>) {
    if let Some(pid) = pid {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new(&rt.path)
        .arg("--root")
        .arg(&rt.root)
        .args(["delete", "--force", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .status();
    reap_strays();
}

/// A failed step: stderr of the runtime, cleanup, exit.
fn step_failed(rt: &Rt, what: &str, e: &Exec, err: &Path, id: &str, pid: Option<i32>) -> ! {
    let msg = fs::read_to_string(err).unwrap_or_default();
    force_delete(rt, id, pid);
    fatal(&format!(
        "{} {what} {id} failed (exit {}): {}",
        rt.name,
        e.code,
        msg.trim()
    ))
}

/// Waits for `pid` to exit (pidfd), reaps it if it is our child; returns
/// its exit status when known.
fn wait_exit(pid: i32, timeout: Duration) -> Result<Option<i32>, String> {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32;
            let r = unsafe { libc::poll(&mut p, 1, left) };
            if r > 0 {
                break;
            }
            if r == 0 {
                unsafe { libc::close(fd) };
                return Err(format!(
                    "container process {pid} still running after {timeout:?}"
                ));
            }
            if errno() != libc::EINTR {
                unsafe { libc::close(fd) };
                return Err(format!("poll pidfd: {}", std::io::Error::last_os_error()));
            }
        }
        unsafe { libc::close(fd) };
    } else if errno() != libc::ESRCH {
        return Err(format!(
            "pidfd_open {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut st = 0;
    let r = unsafe { libc::waitpid(pid, &mut st, 0) };
    if r == pid {
        Ok(Some(if libc::WIFEXITED(st) {
            libc::WEXITSTATUS(st)
        } else {
            128 + libc::WTERMSIG(st)
        }))
    } else {
        Ok(None) // not our child (or already gone): its exit was still seen
    }
}

fn lifecycle(rt: &Rt, id: &str, scratch: &Path) -> Life {
    let err = scratch.join(format!("{}.err", rt.name));
    let pidfile = scratch.join(format!("{}.pid", rt.name));
    let _ = fs::remove_file(&pidfile);
    let bundle = rt.bundle.to_str().unwrap();
    let create = exec(
        rt,
        &[
            "create",
            "--bundle",
            bundle,
            "--pid-file",
            pidfile.to_str().unwrap(),
            id,
        ],
        &err,
    );
    if create.code != 0 {
        step_failed(rt, "create", &create, &err, id, None);
    }
    let pid: i32 = match fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        Some(p) => p,
        None => {
            force_delete(rt, id, None);
            fatal(&format!("{}: create {id} wrote no pid file", rt.name))
        }
    };
    let start = exec(rt, &["start", id], &err);
    if start.code != 0 {
        step_failed(rt, "start", &start, &err, id, Some(pid));
    }
    let t = Instant::now();
    match wait_exit(pid, Duration::from_secs(60)) {
        Ok(Some(0)) | Ok(None) => {}
        Ok(Some(c)) => {
            force_delete(rt, id, None);
            fatal(&format!("{}: /bin/true in {id} exited with {c}", rt.name))
        }
        Err(e) => {
            force_delete(rt, id, Some(pid));
            fatal(&format!("{}: {e}", rt.name))
        }
    }
    let wait = t.elapsed().as_secs_f64() * 1e3;
    let delete = exec(rt, &["delete", id], &err);
    if delete.code != 0 {
        step_failed(rt, "delete", &delete, &err, id, None);
    }
    reap_strays();
    Life {
        create: create.ms,
        start: start.ms,
        wait,
        delete: delete.ms,
        rss: create.maxrss_kib,
    }
}

fn run_once(rt: &Rt, id: &str, scratch: &Path) -> (f64, f64) {
    let err = scratch.join(format!("{}.err", rt.name));
    let e = exec(
        rt,
        &["run", "--bundle", rt.bundle.to_str().unwrap(), id],
        &err,
    );
    if e.code != 0 {
        step_failed(rt, "run", &e, &err, id, None);
    }
    // `run` deletes the container when it exits (as runc does); make sure.
    if rt.root.join(id).exists() {
        force_delete(rt, id, None);
    }
    reap_strays();
    (e.ms, e.maxrss_kib)
}

fn report(rts: &[Rt], opts: &Opts, done: usize) {
    let find = |n: &str| rts.iter().position(|r| r.name == n);
    let (crun, runc) = (find("crun"), find("runc"));
    let totals: Vec<Vec<f64>> = rts
        .iter()
        .map(|r| r.life.iter().map(|l| l.total()).collect())
        .collect();
    let rss: Vec<Vec<f64>> = rts
        .iter()
        .map(|r| r.life.iter().map(|l| l.rss).collect())
        .collect();
    let med_total: Vec<f64> = totals.iter().map(|t| median(t)).collect();
    let med_rss: Vec<f64> = rss.iter().map(|t| median(t)).collect();
    let med_run: Vec<f64> = rts.iter().map(|r| median(&r.run)).collect();
    let by = |v: &Vec<f64>, i: Option<usize>| i.map(|i| v[i]);

    println!();
    println!(
        "lifecycle: create + start + wait for /bin/true + delete ({done} of {} iterations, after {} warm-up)",
        opts.iterations, opts.warmup
    );
    println!(
        "  {:<8} {:>9} {:>9}   {:>7} {:>7} {:>7} {:>7}   {:>8} {:>8}",
        "runtime", "median", "p90", "create", "start", "wait", "delete", "vs crun", "vs runc"
    );
    for (i, r) in rts.iter().enumerate() {
        let ph = |f: fn(&Life) -> f64| median(&r.life.iter().map(f).collect::<Vec<_>>());
        println!(
            "  {:<8} {:>6.2} ms {:>6.2} ms   {:>7.2} {:>7.2} {:>7.2} {:>7.2}   {:>8} {:>8}",
            r.name,
            med_total[i],
            p90(&totals[i]),
            ph(|l| l.create),
            ph(|l| l.start),
            ph(|l| l.wait),
            ph(|l| l.delete),
            ratio(med_total[i], by(&med_total, crun)),
            ratio(med_total[i], by(&med_total, runc)),
        );
    }
    println!("  (phase columns: median ms of each step)");

    if opts.run {
        println!();
        println!(
            "run: `<runtime> run` in the foreground, /bin/true, exit and delete inside the runtime"
        );
        println!(
            "  {:<8} {:>9} {:>9}   {:>8} {:>8}",
            "runtime", "median", "p90", "vs crun", "vs runc"
        );
        for (i, r) in rts.iter().enumerate() {
            println!(
                "  {:<8} {:>6.2} ms {:>6.2} ms   {:>8} {:>8}",
                r.name,
                med_run[i],
                p90(&r.run),
                ratio(med_run[i], by(&med_run, crun)),
                ratio(med_run[i], by(&med_run, runc)),
            );
        }
    }

    println!();
    println!("peak RSS of `create` (ru_maxrss of the create process and the children it reaped)");
    println!(
        "  {:<8} {:>10} {:>10}   {:>8} {:>8}",
        "runtime", "median", "max", "vs crun", "vs runc"
    );
    for (i, r) in rts.iter().enumerate() {
        let max = rss[i].iter().cloned().fold(f64::NAN, f64::max);
        println!(
            "  {:<8} {:>6.2} MiB {:>6.2} MiB   {:>8} {:>8}",
            r.name,
            med_rss[i] / 1024.0,
            max / 1024.0,
            ratio(med_rss[i], by(&med_rss, crun)),
            ratio(med_rss[i], by(&med_rss, runc)),
        );
    }

    if let (Some(b), Some(c)) = (find("berth"), crun) {
        let t = med_total[b] / med_total[c];
        let m = med_rss[b] / med_rss[c];
        let mark = |x: f64| if x <= 0.8 { "met" } else { "NOT met" };
        println!();
        println!(
            "berth target (issues 2 and 3: at most 0.8x crun{}): lifecycle {t:.2}x {}, create peak RSS {m:.2}x {}",
            if opts.seccomp.is_some() { ", with a memory limit and the default seccomp profile" } else { "" },
            mark(t),
            mark(m)
        );
    }
}

fn main() {
    let opts = parse_opts();
    if let Err(e) = subreaper_and_stop_signals() {
        fatal(&format!("PR_SET_CHILD_SUBREAPER: {e}"));
    }
    let scratch = opts.dir.join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    let mut rts: Vec<Rt> = vec![];
    for (name, path) in &opts.runtimes {
        let base = opts.dir.join(name);
        let (root, bundle) = (base.join("root"), base.join("bundle"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&bundle).unwrap();
        let cfg = config(
            &opts.rootfs,
            &format!("{}/{name}", opts.cgroup_parent),
            &["/bin/true"],
            opts.seccomp.as_deref(),
            opts.memory_limit,
        );
        File::create(bundle.join("config.json"))
            .unwrap()
            .write_all(cfg.as_bytes())
            .unwrap();
        let version = Command::new(path)
            .arg("--version")
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
            .unwrap_or_default();
        rts.push(Rt {
            name: name.clone(),
            path: path.clone(),
            root,
            bundle,
            version,
            life: vec![],
            run: vec![],
            run_rss: vec![],
        });
    }

    println!(
        "runtimes (each with its own --root and bundle under {}):",
        opts.dir.display()
    );
    for r in &rts {
        println!("  {:<8} {}  ({})", r.name, r.path.display(), r.version);
    }
    let n = rts.len();
    let total = opts.warmup + opts.iterations;
    let mut done = 0;
    let t_start = Instant::now();
    'outer: for i in 0..total {
        let measuring = i >= opts.warmup;
        for k in 0..n {
            if stopped() {
                break 'outer;
            }
            let r = &mut rts[(i + k) % n];
            let id = format!("bench-{}-{i}", r.name);
            let l = lifecycle(r, &id, &scratch);
            if measuring {
                r.life.push(l);
            }
        }
        if opts.run {
            for k in 0..n {
                if stopped() {
                    break 'outer;
                }
                let r = &mut rts[(i + k) % n];
                let id = format!("bench-{}-run-{i}", r.name);
                let (ms, rss) = run_once(r, &id, &scratch);
                if measuring {
                    r.run.push(ms);
                    r.run_rss.push(rss);
                }
            }
        }
        if measuring {
            done += 1;
            if done % 50 == 0 || done == opts.iterations {
                eprintln!(
                    "  ... {done}/{} iterations ({:.0} s)",
                    opts.iterations,
                    t_start.elapsed().as_secs_f64()
                );
            }
        }
    }
    let interrupted = stopped();
    // Only complete iterations count: trim runtimes that got one sample more.
    for r in &mut rts {
        r.life.truncate(done);
        r.run.truncate(done);
    }
    if done > 0 {
        report(&rts, &opts, done);
    }
    if interrupted {
        eprintln!("berth-bench: interrupted after {done} iterations");
        std::process::exit(130);
    }
}
