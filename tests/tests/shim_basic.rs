//! berth-shim with real containers: the sync report, CRI logs, the exit
//! file, detaching from the caller, create failures, and no leaks. The
//! runtime is the one under test (`BERTH_TEST_RUNTIME=/usr/sbin/runc` for runc).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_tests::shim::*;
use berth_tests::*;

#[test]
fn logs_both_streams_in_cri_format_and_exit_zero() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo out1; echo err1 >&2; echo 'out 2  spaced'; printf 'no newline'");
    let shim = Shim::new(&rt);
    let pid = shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let spid = shim.shim_pid();
    assert_ne!(spid, pid);
    let exit = shim.wait_exit(&b);
    assert_eq!(exit["exit_code"], 0, "{exit}");
    assert_eq!(exit["signal"], Value::Null, "{exit}");
    assert_eq!(exit["oom_killed"], false, "{exit}");
    check_timestamp(exit["started_at"].as_str().expect("started_at"));
    check_timestamp(exit["finished_at"].as_str().expect("finished_at"));
    assert!(exit["finished_at"].as_str() >= exit["started_at"].as_str(), "{exit}");

    let recs = shim.records();
    let only = |s: &str| recs.iter().filter(|x| x.0 == s).cloned().collect::<Vec<_>>();
    assert_eq!(
        only("stdout"),
        vec![r("stdout", "F", "out1"), r("stdout", "F", "out 2  spaced"), r("stdout", "F", "no newline")]
    );
    assert_eq!(only("stderr"), vec![r("stderr", "F", "err1")]);
    assert_shim_gone(&shim, spid);
    rt.assert_no_trace(&b);
}

#[test]
fn long_line_is_split_into_partial_records() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // 40000 bytes on one line, then a short one, with the default 16 KiB buffer.
    b.sh("head -c 40000 /dev/zero | tr '\\0' a; echo; echo short");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    let recs = shim.records();
    let tags: Vec<&str> = recs.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(tags, ["P", "P", "F", "F"], "records: {:?}", recs.iter().map(|x| (&x.1, x.2.len())).collect::<Vec<_>>());
    assert_eq!(recs[0].2.len(), 16384);
    assert_eq!(recs[1].2.len(), 16384);
    let joined: String = recs[..3].iter().map(|x| x.2.as_str()).collect();
    assert_eq!(joined, "a".repeat(40000));
    assert_eq!(recs[3], r("stdout", "F", "short"));
    rt.assert_no_trace(&b);
}

#[test]
fn exit_code_is_recorded() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo bye; exit 3");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let exit = shim.wait_exit(&b);
    assert_eq!(exit["exit_code"], 3, "{exit}");
    assert_eq!(exit["signal"], Value::Null, "{exit}");
    assert_eq!(shim.records(), vec![r("stdout", "F", "bye")]);
    rt.assert_no_trace(&b);
}

#[test]
fn killed_by_signal_is_recorded_and_caller_may_start() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo up; exec sleep 1000");
    let shim = Shim::new(&rt);
    // No --start: the caller starts the container, as a daemon would.
    let pid = shim.launch_ok(&rt, &b, &["--delete"]);
    assert_eq!(rt.status(b.id()).as_deref(), Some("created"));
    rt.start(b.id()).ok();
    wait_until("the log line", || shim.records() == vec![r("stdout", "F", "up")]);
    assert!(pid_alive(pid));
    // The shim is the init's parent.
    let spid = shim.shim_pid();
    assert_eq!(proc_status(pid, "PPid").as_deref(), Some(spid.to_string().as_str()));
    rt.kill(b.id(), "KILL").ok();
    let exit = shim.wait_exit(&b);
    assert_eq!(exit["exit_code"], 137, "{exit}");
    assert_eq!(exit["signal"], 9, "{exit}");
    // The caller ran start, so the shim does not know when it started.
    assert_eq!(exit["started_at"], Value::Null, "{exit}");
    assert_shim_gone(&shim, spid);
    rt.assert_no_trace(&b);
}

#[test]
fn container_and_logs_outlive_the_caller() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done");
    let shim = Shim::new(&rt);
    // The caller: a shell that runs the shim, prints its report, and exits.
    let args: Vec<String> = shim.args(&rt, &b, &["--start", "--delete"]).iter().map(|a| format!("'{a}'")).collect();
    let script = format!("'{}' {} & wait; echo caller-done", shim_bin().display(), args.join(" "));
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.ends_with("caller-done\n"), "caller: {stdout:?}");
    let pid: i32 = stdout.lines().next().unwrap().parse().unwrap();

    // The caller is gone; the shim is not its child and goes on.
    let spid = shim.shim_pid();
    assert!(pid_alive(spid));
    assert_ne!(proc_status(spid, "PPid").as_deref(), Some(std::process::id().to_string().as_str()));
    let count = |s: &Shim| s.records().len();
    wait_until("ticks", || count(&shim) >= 3);
    let before = count(&shim);
    wait_until("more ticks after the caller exited", || count(&shim) > before + 3);
    assert!(pid_alive(pid));
    for (i, rec) in shim.records().iter().enumerate() {
        assert_eq!(rec, &r("stdout", "F", &format!("tick {i}")));
    }
    rt.kill(b.id(), "KILL").ok();
    assert_eq!(shim.wait_exit(&b)["signal"], 9);
    assert_shim_gone(&shim, spid);
    rt.assert_no_trace(&b);
}

#[test]
fn create_failure_reports_runtime_error_and_leaves_nothing() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["/no-such-program"]);
    let shim = Shim::new(&rt);
    let rep = shim.launch(&rt, &b, &["--start", "--delete"]);
    assert_eq!(rep.code, 1, "stdout {:?} stderr {:?}", rep.stdout, rep.stderr);
    assert!(rep.stdout.starts_with("error: ") && rep.stdout.ends_with('\n'), "{:?}", rep.stdout);
    assert_eq!(rep.stdout.lines().count(), 1, "{:?}", rep.stdout);
    println!("report: {}", rep.stdout.trim());
    assert!(!rep.stdout.starts_with("error: berth-shim:"), "a runtime failure is not the shim's: {:?}", rep.stdout);
    assert!(rep.stdout.contains("no-such-program"), "the runtime's message: {:?}", rep.stdout);
    // The report is given only after the monitor finished: nothing remains.
    assert!(!shim.exit_file(&b).exists());
    assert!(!shim.log.exists(), "a failed create leaves no log file");
    wait_until("the shim's pid file to go", || !shim.pid_file.exists());
    assert!(!b.path("init.pid").exists());
    assert_eq!(rt.status(b.id()), None);
    rt.assert_no_trace(&b);
}

#[test]
fn bad_arguments_are_reported() {
    let out = Command::new(shim_bin()).args(["--id", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.starts_with("error: berth-shim: --bundle is required"), "{s:?}");
}

#[test]
fn sync_fd_carries_the_report() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("exit 0");
    let shim = Shim::new(&rt);
    let report = rt.path("report");
    let args: Vec<String> =
        shim.args(&rt, &b, &["--start", "--delete", "--sync-fd", "3"]).iter().map(|a| format!("'{a}'")).collect();
    let script = format!("exec 3>'{}'; '{}' {}", report.display(), shim_bin().display(), args.join(" "));
    let out = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing on stdout with --sync-fd: {out:?}");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.trim().parse::<i32>().is_ok() && text.ends_with('\n'), "{text:?}");
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    rt.assert_no_trace(&b);
}

#[test]
fn log_rotates_by_size_and_reopens_on_sigusr1() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    // 200 lines of ~60 bytes per record into 1000-byte files, 2 kept; then
    // wait for the test to move the log and signal the shim.
    b.sh("i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done; \
          while [ ! -e /tmp/go ]; do sleep 0.02; done; echo after-reopen");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete", "--log-max-size", "1000", "--log-max-files", "2"]);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", shim.log.display()));
    wait_until("the last line", || {
        records(&shim.log).iter().any(|x| x.2 == "line 199")
    });
    assert!(rotated(1).exists() && rotated(2).exists() && !rotated(3).exists());
    for p in [shim.log.clone(), rotated(1), rotated(2)] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 1000, "{} is {len} bytes", p.display());
    }
    // Consecutive lines across the files, newest in the log itself.
    let mut all: Vec<String> = vec![];
    for p in [rotated(2), rotated(1), shim.log.clone()] {
        all.extend(records(&p).into_iter().map(|x| x.2));
    }
    let first: usize = all[0].strip_prefix("line ").unwrap().parse().unwrap();
    for (k, line) in all.iter().enumerate() {
        assert_eq!(line, &format!("line {}", first + k));
    }
    // Reopen: the daemon moves the file away and signals the shim.
    let moved = rt.path("moved.log");
    std::fs::rename(&shim.log, &moved).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim.shim_pid()), nix::sys::signal::Signal::SIGUSR1).unwrap();
    // Give the shim the signal before the container writes again.
    std::thread::sleep(Duration::from_millis(200));
    std::fs::write(shared.join("go"), "").unwrap();
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    assert_eq!(records(&shim.log), vec![r("stdout", "F", "after-reopen")]);
    assert!(!records(&moved).iter().any(|x| x.2 == "after-reopen"));
    rt.assert_no_trace(&b);
}

/// CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn closed_streams_do_not_spin_the_shim() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    b.sh("echo last; exec >&- 2>&-; while [ ! -e /tmp/go ]; do sleep 0.05; done");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let spid = shim.shim_pid();
    wait_until("the log line", || shim.records() == vec![r("stdout", "F", "last")]);
    let before = cpu_ticks(spid);
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_ticks(spid) - before;
    // Idle: a spinning poll loop would use the whole second (100 ticks).
    assert!(used <= 5, "the shim used {used} ticks in 1 s with both streams closed");
    std::fs::write(shared.join("go"), "").unwrap();
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    assert_shim_gone(&shim, spid);
    rt.assert_no_trace(&b);
}

#[test]
fn container_survives_the_shim_being_killed() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let shim = Shim::new(&rt);
    let pid = shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let spid = shim.shim_pid();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(spid), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_until("the shim to die", || !pid_alive(spid));
    // The documented choice: no PR_SET_PDEATHSIG, the container goes on; the
    // daemon sees a pid file whose process is gone and no exit file.
    std::thread::sleep(Duration::from_millis(200));
    assert!(pid_alive(pid), "the container died with its shim");
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    assert!(shim.pid_file.exists() && !shim.exit_file(&b).exists());
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn oom_kill_is_recorded() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // dd's 64 MiB buffer is touched by read(): past the 32 MiB limit (no swap).
    b.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        .set("linux.resources", json!({"memory": {"limit": 33554432, "swap": 33554432}}));
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let exit = shim.wait_exit(&b);
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(exit["exit_code"], 137, "{exit}");
    assert_eq!(exit["oom_killed"], true, "{exit}");
    rt.assert_no_trace(&b);
}


#[test]
fn fast_writers_lose_and_mix_nothing() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // Two processes writing as fast as they can, one per stream.
    b.sh("seq 1 200000 >&2 & seq 1000001 1200000; wait");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete", "--log-line-max", "4096"]);
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    let (mut out, mut err) = (1_000_001u32, 1u32);
    for (s, tag, c) in &shim.records() {
        assert_eq!(tag, "F", "{s} {c:?}");
        let n = if s == "stdout" { &mut out } else { &mut err };
        assert_eq!(c, &n.to_string(), "{s}");
        *n += 1;
    }
    assert_eq!((out, err), (1_200_001, 200_001));
    rt.assert_no_trace(&b);
}
