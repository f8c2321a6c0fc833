//! Container lifecycle against the runc CLI contract: create / start /
//! state / kill / delete / run / list / ps.

use std::time::Duration;

use berth_tests::*;

/// A script for a container that reports which signal it got: it traps
/// TERM/USR1/HUP (pid 1 ignores signals it has no handler for), writes
/// `ready`, and waits in the shell's `wait` so the trap runs at once.
const SIGNAL_REPORTER: &str = "for s in TERM USR1 HUP; do trap \"echo $s > /tmp/got; exit 0\" $s; done; \
                               echo ready > /tmp/ready; sleep 1000 & wait";

#[test]
fn create_blocks_before_user_program_then_start_runs_it() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    b.sh("echo started > /tmp/started; echo hello; sleep 1000");
    let pid_file = rt.path("pid");
    rt.create_with(&b, &["--pid-file", pid_file.to_str().unwrap()]).ok();

    let st = rt.state(b.id());
    assert_eq!(st["status"], "created", "{st}");
    let pid = st["pid"].as_i64().expect("pid in state") as i32;
    assert!(pid > 0, "{st}");
    assert!(pid_alive(pid), "created container's process {pid} should exist");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid.to_string(), "--pid-file holds the init pid");
    // The process exists in the container's namespaces but has not run the
    // user program yet.
    assert_ne!(ns_id(&pid.to_string(), "uts"), ns_id("self", "uts"));
    assert_ne!(ns_id(&pid.to_string(), "pid"), ns_id("self", "pid"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!shared.join("started").exists(), "user program ran before start");
    assert_eq!(b.stdout(), "");

    rt.start(b.id()).ok();
    wait_for_file(&shared.join("started"));
    wait_for_text("container stdout", "hello", || b.stdout());
    let st = rt.state(b.id());
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid as i64), "start keeps the same init pid");

    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    assert!(!pid_alive(pid));
    assert!(rt.state_dir(b.id()).exists(), "a stopped container keeps its state until delete");
    rt.delete(b.id()).ok();
    assert!(!rt.state_dir(b.id()).exists(), "delete removes the state dir");
    rt.try_state(b.id()).fails();
    rt.assert_no_trace(&b);
}

#[test]
fn program_exit_gives_stopped_then_plain_delete() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("exit 0");
    rt.create_start(&b);
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn state_json_fields() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper().annotation("org.berth.test", "yes").annotation("plain", "1");
    rt.create(&b).ok();
    let st = rt.state(b.id());
    assert!(st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()), "{st}");
    assert_eq!(st["id"], b.id());
    assert_eq!(st["status"], "created");
    assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{st}");
    let bundle = std::fs::canonicalize(b.dir()).unwrap();
    assert_eq!(st["bundle"].as_str().map(std::path::PathBuf::from), Some(bundle), "bundle is the absolute bundle path: {st}");
    assert_eq!(st["annotations"], json!({"org.berth.test": "yes", "plain": "1"}), "{st}");
    rt.start(b.id()).ok();
    assert_eq!(rt.state(b.id())["status"], "running");
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    let st = rt.state(b.id());
    assert_eq!(st["id"], b.id());
    assert_eq!(st["status"], "stopped", "{st}");
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn kill_signal_names_and_numbers() {
    let Some(rt) = Runtime::for_test() else { return };
    // (signal argument, what the container reports; None = it must die)
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, Some("TERM")), // default signal is SIGTERM
        (Some("TERM"), Some("TERM")),
        (Some("SIGTERM"), Some("TERM")),
        (Some("15"), Some("TERM")),
        (Some("USR1"), Some("USR1")),
        (Some("10"), Some("USR1")),
        (Some("SIGHUP"), Some("HUP")),
        (Some("KILL"), None),
        (Some("9"), None),
        (Some("SIGKILL"), None),
    ];
    for (sig, expect) in cases {
        let mut b = rt.bundle();
        let shared = b.shared_tmp();
        b.sh(SIGNAL_REPORTER);
        rt.create_start(&b);
        wait_for_file(&shared.join("ready"));
        let o = match sig {
            Some(s) => rt.kill(b.id(), s),
            None => rt.cmd(&["kill", b.id()]),
        };
        o.ok();
        rt.wait_stopped(b.id());
        let got = std::fs::read_to_string(shared.join("got")).ok();
        assert_eq!(got.as_deref().map(str::trim), *expect, "kill {sig:?}");
        rt.delete(b.id()).ok();
        rt.assert_no_trace(&b);
    }
}

#[test]
fn kill_unknown_signal_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create_start(&b);
    rt.kill(b.id(), "SIGNOPE").assert_error(&["SIGNOPE"], &[]);
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn run_foreground_returns_exit_code() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo out; echo err >&2; exit 3");
    let o = rt.run(&b);
    assert_eq!(o.code(), 3, "{o}");
    assert_eq!(o.stdout, "out\n", "{o}");
    assert!(o.stderr.contains("err"), "{o}");
    assert!(!rt.state_dir(b.id()).exists(), "run removes the container after it exits");
    rt.assert_no_trace(&b);

    let mut b = rt.bundle();
    b.args(&["true"]);
    assert_eq!(rt.run(&b).code(), 0);
    rt.assert_no_trace(&b);
}

#[test]
fn run_foreground_killed_by_signal_reports_128_plus_signal() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // pid 1 cannot be killed by its own signal; a child can.
    b.sh("sh -c 'kill -KILL $$'; exit $?");
    let o = rt.run(&b);
    assert_eq!(o.code(), 137, "{o}");
    rt.assert_no_trace(&b);
}

#[test]
fn run_foreground_passes_stdin() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["cat"]);
    let o = rt.run_input(&b, b"line one\nline two\n");
    assert_eq!(o.code(), 0, "{o}");
    assert_eq!(o.stdout, "line one\nline two\n", "{o}");
    rt.assert_no_trace(&b);
}

#[test]
fn run_detach_returns_while_container_runs() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("echo detached-output; sleep 1000");
    let pid_file = rt.path("pid");
    let o = rt.run_cmd(&b, &["--detach", "--pid-file", pid_file.to_str().unwrap()]).run().ok();
    assert!(o.elapsed < Duration::from_secs(5), "{o}");
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    wait_for_text("container stdout", "detached-output", || b.stdout());
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(rt.state(b.id())["pid"].as_i64(), Some(pid as i64));
    rt.kill(b.id(), "SIGKILL").ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn delete_running_needs_force() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    b.sh("sleep 1000 & echo ready > /tmp/ready; sleep 1000");
    rt.create_start(&b);
    wait_for_file(&shared.join("ready"));
    let mut pids = vec![];
    wait_until("a second process in the container", || {
        pids = rt.ps_pids(b.id());
        pids.len() >= 2
    });
    rt.delete(b.id()).assert_error(&[], &[b.id()]);
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"), "a refused delete changes nothing");
    rt.delete_force(b.id()).ok();
    for p in &pids {
        assert!(!pid_alive(*p), "delete --force leaves pid {p}");
    }
    rt.assert_no_trace(&b);
}

#[test]
fn delete_force_created_container() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create(&b).ok();
    let pid = rt.state(b.id())["pid"].as_i64().unwrap() as i32;
    rt.delete_force(b.id()).ok();
    assert!(!pid_alive(pid));
    rt.assert_no_trace(&b);
}

#[test]
fn kill_all_signals_every_process() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    // Children ignore nothing; init traps TERM so only --all can stop the children.
    b.sh("trap '' TERM; sleep 1000 & sleep 1000 & echo ready > /tmp/ready; wait; wait");
    rt.create_start(&b);
    wait_for_file(&shared.join("ready"));
    let pids = rt.ps_pids(b.id());
    assert_eq!(pids.len(), 3, "init + 2 sleeps: {pids:?}");
    rt.kill_all(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    for p in &pids {
        wait_pid_gone(*p);
    }
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn list_table_json_and_quiet() {
    let Some(rt) = Runtime::for_test() else { return };
    // Empty root first: header only (or nothing), and an empty JSON list.
    let o = rt.list(&[]).ok();
    assert!(o.stdout.lines().count() <= 1, "{o}");
    assert!(rt.list_json().is_empty());

    let mut created = rt.bundle();
    created.sleeper();
    rt.create(&created).ok();
    let mut running = rt.bundle();
    running.sleeper();
    rt.create_start(&running);

    let o = rt.list(&[]).ok();
    let mut lines = o.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"], "{o}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{o}");
    for (b, status) in [(&created, "created"), (&running, "running")] {
        let row = rows.iter().find(|r| r[0] == b.id()).unwrap_or_else(|| panic!("no row for {}:\n{o}", b.id()));
        let pid = rt.state(b.id())["pid"].as_i64().unwrap().to_string();
        assert_eq!(row[1], pid, "{o}");
        assert_eq!(row[2], status, "{o}");
        assert_eq!(row[3], b.dir().to_str().unwrap(), "{o}");
    }

    let list = rt.list_json();
    assert_eq!(list.len(), 2);
    for (b, status) in [(&created, "created"), (&running, "running")] {
        let e = list.iter().find(|e| e["id"] == b.id()).unwrap_or_else(|| panic!("{} not in {list:?}", b.id()));
        assert_eq!(e["status"], status);
        assert!(e["pid"].as_i64().unwrap_or(0) > 0);
        assert_eq!(e["bundle"], b.dir().to_str().unwrap());
        assert!(e["created"].as_str().is_some_and(|t| t.contains('T')), "{e}");
    }

    let o = rt.list(&["-q"]).ok();
    let mut ids: Vec<&str> = o.stdout.lines().collect();
    ids.sort();
    let mut want = vec![created.id(), running.id()];
    want.sort();
    assert_eq!(ids, want, "{o}");

    rt.delete_force(created.id()).ok();
    rt.delete_force(running.id()).ok();
    rt.assert_no_trace(&created);
    rt.assert_no_trace(&running);
}

#[test]
fn ps_json_and_table() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    b.sh("sleep 1000 & echo ready > /tmp/ready; wait");
    rt.create_start(&b);
    wait_for_file(&shared.join("ready"));
    let init = rt.state(b.id())["pid"].as_i64().unwrap() as i32;
    let pids = rt.ps_pids(b.id());
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.contains(&init), "ps lists the init pid {init}: {pids:?}");
    for p in &pids {
        assert!(pid_alive(*p), "ps lists host pids: {p}");
    }
    let o = rt.ps(b.id(), &[]).ok();
    let mut lines = o.stdout.lines();
    assert!(lines.next().unwrap_or("").contains("PID"), "table header: {o}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{o}");
    for p in &pids {
        assert!(rows.iter().any(|r| r.split_whitespace().any(|f| f == p.to_string())), "pid {p} in table:\n{o}");
    }
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn ps_of_created_container_shows_init() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create(&b).ok();
    let init = rt.state(b.id())["pid"].as_i64().unwrap() as i32;
    assert_eq!(rt.ps_pids(b.id()), vec![init]);
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn pid_file_relative_to_cwd() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let o = rt.create_cmd(&b, &["--pid-file", "rel.pid"]).current_dir(rt.tmp()).run().ok();
    let pid = rt.state(b.id())["pid"].as_i64().unwrap();
    let got = std::fs::read_to_string(rt.tmp().join("rel.pid")).unwrap_or_else(|e| panic!("rel.pid: {e}\n{o}"));
    assert_eq!(got.trim(), pid.to_string());
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn same_rootfs_many_containers_in_parallel() {
    let Some(rt) = Runtime::for_test() else { return };
    let bundles: Vec<Bundle> = (0..4)
        .map(|i| {
            let mut b = rt.bundle();
            b.sh(&format!("echo n{i}; hostname")).set("hostname", json!(format!("h{i}")));
            b
        })
        .collect();
    std::thread::scope(|s| {
        for (i, b) in bundles.iter().enumerate() {
            let rt = &rt;
            s.spawn(move || {
                let o = rt.run(b);
                assert_eq!(o.code(), 0, "{o}");
                assert_eq!(o.stdout, format!("n{i}\nh{i}\n"), "{o}");
            });
        }
    });
    for b in &bundles {
        rt.assert_no_trace(b);
    }
}
