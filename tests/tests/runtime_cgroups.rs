//! `linux.resources` on cgroup v1 (this host: hybrid) and v2 (`scripts/vm-test`): each
//! setting is checked in the cgroup files from the host and, where it shows, from the
//! container's behaviour (a fork bomb stops at pids.max, an allocation past the memory
//! limit is OOM-killed and `events` reports it). Every test ends with no trace left.

use std::path::PathBuf;
use std::time::Duration;

use berth_tests::*;

/// `network_class_and_priorities_on_v1` mounts the net_cls,net_prio hierarchy for its
/// run: while it is there every container of this binary gets a cgroup in it, and the
/// refusals of unmounted controllers do not hold. So that test holds this exclusively,
/// every other test shared.
static HIERARCHIES: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    HIERARCHIES.read().unwrap_or_else(|p| p.into_inner())
}

fn v2() -> bool {
    cgroup_mode() == CgroupMode::V2
}

/// The container's cgroup file `file` (v1: in whichever hierarchy has it).
fn cg_file(b: &Bundle, file: &str) -> Option<PathBuf> {
    leaks::cgroup_dirs(b.cgroups_path()).into_iter().map(|d| d.join(file)).find(|p| p.exists())
}

#[track_caller]
fn cg_read(b: &Bundle, file: &str) -> String {
    let p = cg_file(b, file).unwrap_or_else(|| panic!("no {file} in the cgroups of {}", b.id()));
    std::fs::read_to_string(&p).unwrap().trim().to_string()
}

/// Create with `resources`, expecting success; the container sleeps.
fn created(rt: &Runtime, resources: Value) -> Bundle {
    let mut b = rt.bundle();
    b.sleeper().set("linux.resources", resources);
    rt.create(&b).ok();
    b
}

fn finish(rt: &Runtime, b: &Bundle) {
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(b);
}

/// Create must fail with an error naming `needles`, leaving nothing behind.
#[track_caller]
fn refused(rt: &Runtime, resources: Value, needles: &[&str]) {
    let mut b = rt.bundle();
    b.sleeper().set("linux.resources", resources);
    let out = rt.create(&b).fails();
    out.assert_error(&[], needles);
    rt.assert_no_trace(&b);
}

#[test]
fn memory_limits() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    if v2() {
        let b = created(&rt, json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296}}));
        assert_eq!(cg_read(&b, "memory.max"), "67108864");
        assert_eq!(cg_read(&b, "memory.low"), "33554432");
        if cg_file(&b, "memory.swap.max").is_some() {
            assert_eq!(cg_read(&b, "memory.swap.max"), "33554432", "v2 swap = memory+swap - memory");
        }
        finish(&rt, &b);
        refused(&rt, json!({"memory": {"limit": 67108864, "swappiness": 10}}), &["swappiness", "v2"]);
    } else {
        let b = created(
            &rt,
            json!({"memory": {"limit": 67108864, "reservation": 33554432, "swap": 100663296, "swappiness": 10, "disableOOMKiller": true, "kernelTCP": 16777216}}),
        );
        assert_eq!(cg_read(&b, "memory.limit_in_bytes"), "67108864");
        assert_eq!(cg_read(&b, "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(cg_read(&b, "memory.memsw.limit_in_bytes"), "100663296");
        assert_eq!(cg_read(&b, "memory.swappiness"), "10");
        assert!(cg_read(&b, "memory.oom_control").contains("oom_kill_disable 1"));
        finish(&rt, &b);
    }
    // kernel memory: set where the kernel still takes it, else a warning, never an error.
    let b = created(&rt, json!({"memory": {"limit": 67108864, "kernel": 33554432}}));
    let warned = rt.log_entries().iter().any(|e| e["level"] == "warning" && e["msg"].as_str().unwrap_or("").contains("memory.kernel"));
    let set = !v2() && cg_read(&b, "memory.kmem.limit_in_bytes") == "33554432";
    assert!(warned || set, "{:?}", rt.log_entries());
    finish(&rt, &b);
}

#[test]
fn memory_limit_oom_kill_is_reported_by_events() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let b = created(&rt, json!({"memory": {"limit": 33554432, "swap": 33554432}}));
    rt.start(b.id()).ok();
    let out = rt.path("events.out");
    let mut events = std::process::Command::new(rt.bin())
        .args(["--root", rt.root().to_str().unwrap(), "events", "--interval", "1s", b.id()])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    wait_for_text("first stats line", "\"stats\"", || std::fs::read_to_string(&out).unwrap_or_default());
    // dd's 64 MiB buffer is touched by read(): past the 32 MiB limit.
    let r = rt.exec(b.id(), &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    assert_eq!(r.code(), 128 + 9, "dd must be OOM-killed: {r:?}");
    let text = wait_for_text("oom event", "\"oom\"", || std::fs::read_to_string(&out).unwrap_or_default());
    let oom: Value = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["type"] == "oom").unwrap();
    assert_eq!(oom, json!({"type": "oom", "id": b.id()}));
    let counter = if v2() { cg_read(&b, "memory.events") } else { cg_read(&b, "memory.oom_control") };
    assert!(counter.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "{counter}");
    // The container itself lives on (only dd was over the limit) until deleted; events ends with it.
    rt.delete_force(b.id()).ok();
    let status = poll(Duration::from_secs(10), || matches!(events.try_wait(), Ok(Some(_))));
    if !status {
        let _ = events.kill();
    }
    let _ = events.wait();
    assert!(status, "events must exit once the container is gone");
    rt.assert_no_trace(&b);
}

#[test]
fn cpu_settings() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let cpu = json!({"shares": 512, "quota": 50000, "period": 100000, "burst": 10000, "cpus": "0", "mems": "0", "idle": 0});
    let mut b = rt.bundle();
    b.sh("grep Cpus_allowed_list /proc/self/status; sleep 1000").set("linux.resources", json!({"cpu": cpu}));
    rt.create_start(&b);
    wait_for_text("container stdout", "Cpus_allowed_list:\t0\n", || b.stdout());
    if v2() {
        assert_eq!(cg_read(&b, "cpu.weight"), "59", "runc's shares→weight: 512 → 59");
        assert_eq!(cg_read(&b, "cpu.max"), "50000 100000");
        assert_eq!(cg_read(&b, "cpu.max.burst"), "10000");
    } else {
        assert_eq!(cg_read(&b, "cpu.shares"), "512");
        assert_eq!(cg_read(&b, "cpu.cfs_quota_us"), "50000");
        assert_eq!(cg_read(&b, "cpu.cfs_period_us"), "100000");
        assert_eq!(cg_read(&b, "cpu.cfs_burst_us"), "10000");
    }
    assert_eq!(cg_read(&b, "cpuset.cpus"), "0");
    assert_eq!(cg_read(&b, "cpu.idle"), "0");
    // Quota observable: a busy loop is throttled. On a loaded machine one
    // second of looping may never reach the 50% quota, so try up to ten times.
    let mut v = Value::Null;
    for _ in 0..10 {
        rt.exec(b.id(), &["sh", "-c", "timeout 1 sh -c 'while :; do :; done'; true"]).ok();
        let stats = rt.cmd(&["events", "--stats", b.id()]).ok();
        v = serde_json::from_str(stats.stdout.trim()).unwrap();
        if v["data"]["cpu"]["throttling"]["throttledPeriods"].as_u64().unwrap_or(0) > 0 {
            break;
        }
    }
    assert!(v["data"]["cpu"]["throttling"]["throttledPeriods"].as_u64().unwrap_or(0) > 0, "{v}");
    finish(&rt, &b);
    if v2() {
        refused(&rt, json!({"cpu": {"realtimeRuntime": 1000, "realtimePeriod": 10000}}), &["realtime", "v2"]);
    }
}

#[test]
fn fork_bomb_stops_at_pids_limit() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // The subshell forks until the kernel refuses (ash then gives up on the subshell).
    b.sh("(i=0; while [ $i -lt 40 ]; do sleep 1000 & i=$((i+1)); done); echo spawned; exec sleep 1000")
        .set("linux.resources", json!({"pids": {"limit": 10}}));
    rt.create_start(&b);
    wait_for_text("container stdout", "spawned", || b.stdout());
    assert_eq!(cg_read(&b, "pids.max"), "10");
    let current: u64 = cg_read(&b, "pids.current").parse().unwrap();
    assert!((8..=10).contains(&current), "forks stop at pids.max: {current}");
    assert!(b.stderr().contains("fork") || b.stderr().contains("Resource temporarily unavailable"), "{}", b.stderr());
    assert!(cg_read(&b, "pids.events").contains("max "), "pids.events counts the refusals");
    let stats: Value = serde_json::from_str(rt.cmd(&["events", "--stats", b.id()]).ok().stdout.trim()).unwrap();
    assert_eq!(stats["data"]["pids"]["limit"], 10);
    assert!(stats["data"]["pids"]["current"].as_u64().unwrap() >= 8);
    finish(&rt, &b);
}

/// The first real block device's major:minor.
fn block_device() -> Option<String> {
    std::fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        (!n.starts_with("loop") && !n.starts_with("ram")).then(|| std::fs::read_to_string(e.path().join("dev")).ok()).flatten().map(|s| s.trim().to_string())
    })
}

#[test]
fn block_io_weight_and_throttles() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let Some(dev) = block_device() else {
        berth_tests::skip(format_args!("no block device"));
        return;
    };
    let (maj, min) = dev.split_once(':').unwrap();
    let (maj, min): (i64, i64) = (maj.parse().unwrap(), min.parse().unwrap());
    let b = created(
        &rt,
        json!({"blockIO": {
            "throttleReadBpsDevice": [{"major": maj, "minor": min, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": maj, "minor": min, "rate": 100}]
        }}),
    );
    if v2() {
        let io = cg_read(&b, "io.max");
        assert!(io.contains(&format!("{dev} rbps=1048576")) && io.contains("wiops=100"), "{io}");
    } else {
        assert_eq!(cg_read(&b, "blkio.throttle.read_bps_device"), format!("{dev} 1048576"));
        assert_eq!(cg_read(&b, "blkio.throttle.write_iops_device"), format!("{dev} 100"));
    }
    finish(&rt, &b);
    // Weight: needs a proportional-weight scheduler (BFQ) or io.weight (iocost).
    let mut b = rt.bundle();
    b.sleeper().set("linux.resources", json!({"blockIO": {"weight": 500}}));
    let out = rt.create(&b);
    if out.success() {
        let w = ["blkio.bfq.weight", "blkio.weight", "io.bfq.weight", "io.weight"].iter().find_map(|f| cg_file(&b, f).map(|_| cg_read(&b, f))).unwrap();
        assert!(w.contains("500") || w.contains("4950"), "{w}");
        finish(&rt, &b);
    } else {
        out.assert_error(&[], &["blockIO.weight"]);
        rt.assert_no_trace(&b);
    }
}

#[test]
fn hugepage_limits() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let r = json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    let mut b = rt.bundle();
    b.sleeper().set("linux.resources", r);
    let out = rt.create(&b);
    if out.success() {
        let f = if v2() { "hugetlb.2MB.max" } else { "hugetlb.2MB.limit_in_bytes" };
        assert_eq!(cg_read(&b, f), "4194304");
        finish(&rt, &b);
    } else {
        println!("hugetlb not available: {}", out.stderr);
        out.assert_error(&[], &["hugepageLimits", "hugetlb"]);
        rt.assert_no_trace(&b);
    }
}

#[test]
fn network_rdma_unified_without_their_controller_are_clear_errors() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let net_mounted = leaks::cgroup_mounts().iter().any(|m| m.to_string_lossy().contains("net_cls"));
    if !net_mounted && !v2() {
        refused(&rt, json!({"network": {"classID": 1048577}}), &["network.classID", "net_cls"]);
        refused(&rt, json!({"network": {"priorities": [{"name": "lo", "priority": 2}]}}), &["network", "net_prio"]);
    }
    if !leaks::cgroup_mounts().iter().any(|m| m.to_string_lossy().contains("rdma")) && !std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default().contains("rdma") {
        refused(&rt, json!({"rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 100}}}), &["rdma"]);
    }
    if v2() {
        let b = created(&rt, json!({"unified": {"memory.high": "50331648", "pids.max": "7"}}));
        assert_eq!(cg_read(&b, "memory.high"), "50331648");
        assert_eq!(cg_read(&b, "pids.max"), "7");
        finish(&rt, &b);
        refused(&rt, json!({"unified": {"../memory.max": "1"}}), &["unified"]);
    } else {
        refused(&rt, json!({"unified": {"memory.high": "50331648"}}), &["unified", "v1"]);
    }
}

/// net_cls/net_prio are compiled in but not mounted on this host (MACHINE.md): the test
/// mounts them at /sys/fs/cgroup/net_cls,net_prio for its run and unmounts them after
/// (the hierarchy goes with its last cgroup), holding every other test of this binary off.
#[test]
fn network_class_and_priorities_on_v1() {
    let _h = HIERARCHIES.write().unwrap_or_else(|p| p.into_inner());
    let Some(rt) = Runtime::for_test() else { return };
    if v2() {
        refused(&rt, json!({"network": {"classID": 1048577}}), &["network", "v2"]);
        return;
    }
    /// Unmounts what the test mounted, also when an assertion fails.
    struct Mounted(PathBuf);
    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(self.0.join("berth-test"));
            let _ = std::process::Command::new("umount").arg(&self.0).status();
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let mp = PathBuf::from("/sys/fs/cgroup/net_cls,net_prio");
    let _mounted = if leaks::cgroup_mounts().iter().any(|m| m.to_string_lossy().contains("net_cls")) {
        None
    } else {
        std::fs::create_dir_all(&mp).unwrap();
        let guard = Mounted(mp.clone());
        let ok = std::process::Command::new("mount").args(["-t", "cgroup", "-o", "net_cls,net_prio", "cgroup"]).arg(&mp).status().unwrap().success();
        assert!(ok, "mount net_cls,net_prio");
        Some(guard)
    };
    let b = created(&rt, json!({"network": {"classID": 1048577, "priorities": [{"name": "lo", "priority": 2}]}}));
    assert_eq!(cg_read(&b, "net_cls.classid"), "1048577");
    assert!(cg_read(&b, "net_prio.ifpriomap").lines().any(|l| l == "lo 2"));
    finish(&rt, &b);
}

#[test]
fn bad_values_are_clear_errors_and_leave_nothing() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    refused(&rt, json!({"memory": {"limit": -5}}), &["linux.resources.memory.limit -5"]);
    refused(&rt, json!({"pids": {"limit": -2}}), &["pids.limit"]);
    refused(&rt, json!({"cpu": {"quota": 10}}), &["cpu.quota"]);
    refused(&rt, json!({"blockIO": {"weight": 5000}}), &["blockIO.weight"]);
    refused(&rt, json!({"memory": {"limit": 67108864, "swap": 1048576}}), &["memory.swap"]);
    // A value of the wrong type: the config parser names the field.
    refused(&rt, json!({"memory": {"limit": "lots"}}), &["limit"]);
    refused(&rt, json!({"cpu": {"cpus": "999"}}), &["cpuset.cpus"]);
}

#[test]
fn shared_cgroups_path_is_kept_until_the_last_container_goes() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let pod = created(&rt, json!({"pids": {"limit": 50}}));
    let mut b2 = rt.bundle();
    b2.sleeper().set("linux.cgroupsPath", json!(pod.cgroups_path()));
    rt.create(&b2).ok();
    rt.start(pod.id()).ok();
    rt.start(b2.id()).ok();
    assert_eq!(cg_read(&pod, "pids.current"), "2");
    // A container that fails to be created in the pod's cgroup leaves the others alone.
    let mut b3 = rt.bundle();
    b3.sleeper().set("linux.cgroupsPath", json!(pod.cgroups_path())).set("linux.resources", json!({"cpu": {"cpus": "999"}}));
    rt.create(&b3).fails();
    rt.assert_no_trace(&b3);
    assert_eq!(rt.status(pod.id()).as_deref(), Some("running"));
    assert_eq!(rt.status(b2.id()).as_deref(), Some("running"));
    rt.delete_force(b2.id()).ok();
    assert_eq!(cg_read(&pod, "pids.max"), "50", "the pod cgroup outlives one of its containers");
    assert!(rt.status(pod.id()).as_deref() == Some("running"));
    finish(&rt, &pod);
    rt.assert_no_trace(&b2);
}

#[test]
fn killed_or_never_started_containers_leave_no_cgroup() {
    let _h = shared();
    let Some(rt) = Runtime::for_test() else { return };
    let b = created(&rt, json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}}));
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
    let b = created(&rt, json!({"memory": {"limit": 67108864}, "pids": {"limit": 20}}));
    rt.start(b.id()).ok();
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}
