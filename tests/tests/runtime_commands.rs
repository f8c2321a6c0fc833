//! The management commands of part 2: pause/resume (state `paused`), update (the cgroup
//! files change), events (runc's JSON), kill --all. On cgroup v1/hybrid here and v2 in
//! `scripts/vm-test`.

use std::path::PathBuf;

use berth_tests::*;

fn v2() -> bool {
    cgroup_mode() == CgroupMode::V2
}

fn cg_read(b: &Bundle, file: &str) -> String {
    let p: PathBuf = leaks::cgroup_dirs(b.cgroups_path())
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no {file} in the cgroups of {}", b.id()));
    std::fs::read_to_string(p).unwrap().trim().to_string()
}

/// A counter the container bumps every 50 ms, to see whether it runs.
fn counter(b: &mut Bundle) -> PathBuf {
    let shared = b.shared_tmp();
    b.sh("i=0; while :; do i=$((i+1)); echo $i > /tmp/n; usleep 50000; done");
    shared.join("n")
}

fn read_n(p: &PathBuf) -> u64 {
    std::fs::read_to_string(p).unwrap_or_default().trim().parse().unwrap_or(0)
}

#[test]
fn pause_and_resume() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let n = counter(&mut b);
    rt.create(&b).ok();
    rt.cmd(&["pause", b.id()]).fails().assert_error(&[], &["created", "cannot pause"]);
    rt.start(b.id()).ok();
    wait_until("counter runs", || read_n(&n) > 2);
    rt.cmd(&["pause", b.id()]).ok();
    assert_eq!(rt.state(b.id())["status"], "paused");
    let frozen = if v2() { cg_read(&b, "cgroup.freeze") } else { cg_read(&b, "freezer.state") };
    assert!(frozen == "1" || frozen == "FROZEN", "{frozen}");
    let at = read_n(&n);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(read_n(&n), at, "a paused container does not run");
    rt.cmd(&["pause", b.id()]).fails();
    rt.cmd(&["resume", b.id()]).ok();
    assert_eq!(rt.state(b.id())["status"], "running");
    wait_until("counter runs again", || read_n(&n) > at + 2);
    rt.cmd(&["resume", b.id()]).fails().assert_error(&[], &["not paused"]);
    // A paused container can be force-deleted.
    rt.cmd(&["pause", b.id()]).ok();
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn update_changes_the_cgroup_files() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper().set("linux.resources", json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}}));
    rt.create_start(&b);
    rt.cmd(&["update", "--memory", "128m", "--memory-swap", "256m", "--cpu-shares", "2048", "--cpu-quota", "20000", "--cpu-period", "100000", "--pids-limit", "20", "--cpuset-cpus", "0", b.id()]).ok();
    if v2() {
        assert_eq!(cg_read(&b, "memory.max"), "134217728");
        assert_eq!(cg_read(&b, "cpu.weight"), "174");
        assert_eq!(cg_read(&b, "cpu.max"), "20000 100000");
    } else {
        assert_eq!(cg_read(&b, "memory.limit_in_bytes"), "134217728");
        assert_eq!(cg_read(&b, "memory.memsw.limit_in_bytes"), "268435456");
        assert_eq!(cg_read(&b, "cpu.shares"), "2048");
        assert_eq!(cg_read(&b, "cpu.cfs_quota_us"), "20000");
    }
    assert_eq!(cg_read(&b, "pids.max"), "20");
    assert_eq!(cg_read(&b, "cpuset.cpus"), "0");
    // --resources - (stdin) and a file.
    rt.command(&["update", "--resources", "-", b.id()]).stdin(Input::Data(br#"{"pids": {"limit": 30}}"#.to_vec())).run().ok();
    assert_eq!(cg_read(&b, "pids.max"), "30");
    let f = rt.path("res.json");
    std::fs::write(&f, r#"{"memory": {"limit": 100663296}}"#).unwrap();
    rt.cmd(&["update", "-r", f.to_str().unwrap(), b.id()]).ok();
    let mem = if v2() { cg_read(&b, "memory.max") } else { cg_read(&b, "memory.limit_in_bytes") };
    assert_eq!(mem, "100663296");
    // Bad values: clear errors, nothing changed.
    rt.cmd(&["update", "--memory", "lots", b.id()]).fails().assert_error(&[], &["--memory", "lots"]);
    rt.cmd(&["update", "--pids-limit", "-7", b.id()]).fails().assert_error(&[], &["pids.limit"]);
    rt.cmd(&["update", "--bogus", "1", b.id()]).fails();
    // memory.checkBeforeUpdate: a limit below the current usage is refused.
    rt.command(&["update", "-r", "-", b.id()])
        .stdin(Input::Data(br#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#.to_vec()))
        .run()
        .fails()
        .assert_error(&[], &["checkBeforeUpdate"]);
    assert_eq!(cg_read(&b, "pids.max"), "30");
    rt.delete_force(b.id()).ok();
    rt.cmd(&["update", "--pids-limit", "5", b.id()]).fails();
    rt.assert_no_trace(&b);
}

#[test]
fn events_stats_json() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("sleep 1000 & sleep 1000 & i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; wait")
        .set("linux.resources", json!({"memory": {"limit": 67108864}, "pids": {"limit": 40}}));
    rt.create_start(&b);
    wait_until("three processes", || rt.ps_pids(b.id()).len() == 3);
    let out = rt.cmd(&["events", "--stats", b.id()]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    let v: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], b.id());
    let d = &v["data"];
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    assert!(d["cpu"]["usage"]["user"].is_u64() && d["cpu"]["usage"]["kernel"].is_u64(), "{d}");
    assert!(d["cpu"]["throttling"].is_object(), "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["memory"]["usage"]["limit"], 67108864, "{d}");
    assert!(d["memory"]["raw"].as_object().is_some_and(|r| !r.is_empty()), "{d}");
    assert_eq!(d["pids"], json!({"current": 3, "limit": 40}));
    assert!(d["blkio"].is_object() && d["hugetlb"].is_object(), "{d}");
    // Streaming: a stats line per interval.
    let o = rt.path("ev.out");
    let mut child = std::process::Command::new(rt.bin())
        .args(["--root", rt.root().to_str().unwrap(), "events", "--interval", "200ms", b.id()])
        .stdout(std::fs::File::create(&o).unwrap())
        .spawn()
        .unwrap();
    wait_until("two stats lines", || std::fs::read_to_string(&o).unwrap_or_default().lines().filter(|l| l.contains("\"stats\"")).count() >= 2);
    let _ = child.kill();
    let _ = child.wait();
    rt.cmd(&["events", "--interval", "soon", b.id()]).fails().assert_error(&[], &["--interval"]);
    rt.delete_force(b.id()).ok();
    rt.cmd(&["events", "--stats", b.id()]).fails();
    rt.assert_no_trace(&b);
}

#[test]
fn kill_all_reaches_every_process_of_the_cgroup() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("trap '' TERM; sleep 1000 & sleep 1000 & wait").set("linux.resources", json!({"pids": {"limit": 10}}));
    rt.create_start(&b);
    wait_until("three processes", || rt.ps_pids(b.id()).len() == 3);
    let pids = rt.ps_pids(b.id());
    rt.kill_all(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    for p in pids {
        wait_pid_gone(p);
    }
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}
