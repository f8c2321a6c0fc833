//! What a container must never get, and failure paths found in review: the host binary
//! through /proc/<pid>/exe, the runtime's signal state, the host's cgroup, mounts into
//! /proc, silently ignored options; plus hook and lifecycle edge cases.

use berth_tests::*;
use serde_json::json;

#[test]
fn container_cannot_open_the_runtime_binary_before_start() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create(&b).ok();
    // The init is a fork of the runtime until `start` execs the program: its exe is the
    // host's runtime binary. Nothing in the container may open it (CVE-2019-5736).
    let out = rt.exec(b.id(), &["sh", "-c", "cat /proc/1/exe >/dev/null 2>&1 && echo OPENED || echo denied; cat /proc/1/fd/0 </dev/null >/dev/null 2>&1 && echo FDS || echo nofds"]);
    let text = out.stdout_now();
    if !is_runc() {
        assert!(text.contains("denied") && text.contains("nofds"), "the init's exe and fds must be out of reach:\n{text}");
    }
    rt.delete_force(b.id()).ok();
}

#[test]
fn program_starts_with_default_signal_dispositions() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc passes on an ignored signal 32 from its caller") {
        return;
    }
    let mut b = rt.bundle();
    // The program itself (a shell would set its own dispositions).
    b.set("process.args", json!(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]));
    let out = rt.run(&b);
    assert_eq!(out.code(), 0, "{}", b.stderr());
    let text = b.stdout();
    assert!(text.contains("SigIgn:\t0000000000000000"), "nothing ignored (Rust ignores SIGPIPE in the runtime):\n{text}");
    assert!(text.contains("SigBlk:\t0000000000000000"), "nothing blocked:\n{text}");
}

#[test]
fn cgroups_path_root_is_refused_and_empty_means_default() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc accepts the hierarchy root as a container cgroup") {
        return;
    }
    let mut b = rt.bundle();
    b.set("linux.cgroupsPath", json!("/"));
    rt.create(&b).assert_error(&["cgroupsPath"], &[]);
    rt.assert_no_trace(&b);

    let mut b = rt.bundle();
    b.set("linux.cgroupsPath", json!(""));
    rt.track(b.id(), &format!("/{}", b.id()));
    b.sh("cat /proc/self/cgroup");
    assert_eq!(rt.run(&b).code(), 0, "{}", b.stderr());
    assert!(b.stdout().contains(&format!("/{}", b.id())), "an empty cgroupsPath is the default /<id>:\n{}", b.stdout());
}

#[test]
fn mount_through_a_symlink_into_proc_is_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1 checks this only for some destinations") {
        return;
    }
    let mut b = rt.bundle();
    b.private_rootfs();
    std::os::unix::fs::symlink("/proc/self/attr", b.rootfs_path("/vol")).unwrap();
    b.push("mounts", json!({"destination": "/vol", "type": "tmpfs", "source": "tmpfs"}));
    rt.create(&b).assert_error(&["/proc"], &["/vol"]);
    rt.assert_no_trace(&b);
}

#[test]
fn bind_mount_options_are_applied_or_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1 ignores unknown bind options and lacks recursive attributes") {
        return;
    }
    let src = rt.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    let mut b = rt.bundle();
    b.bind(&src, "/mnt", &["bogus-opt"]);
    rt.create(&b).assert_error(&["bogus-opt"], &[]);
    rt.assert_no_trace(&b);

    let mut b = rt.bundle();
    b.bind(&src, "/mnt", &["rro", "nosymfollow"]);
    b.sh("touch /mnt/x 2>/dev/null && echo WROTE || echo rofs; grep ' /mnt ' /proc/self/mountinfo");
    assert_eq!(rt.run(&b).code(), 0, "{}", b.stderr());
    let out = b.stdout();
    assert!(out.contains("rofs"), "rro makes the tree read-only:\n{out}");
    assert!(out.contains("nosymfollow"), "nosymfollow applied:\n{out}");
}

#[test]
fn every_poststart_hook_runs_even_after_one_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1 runs poststart during create and stops at the first failure") {
        return;
    }
    let mut b = rt.bundle();
    let mark = rt.path("second-ran");
    let second = b.host_script("second.sh", &format!("touch {}", mark.display()));
    b.hook("poststart", "/bin/false", &[], &[], None);
    b.hook("poststart", second.to_str().unwrap(), &[], &[], None);
    b.sleeper();
    rt.create(&b).ok();
    rt.start(b.id()).ok();
    assert!(mark.exists(), "the second poststart hook ran");
    assert!(rt.log_entries().iter().any(|e| e["level"] == "warning"), "the failure is a warning in the log");
    rt.delete_force(b.id()).ok();
}

#[test]
fn state_is_creating_while_create_runs() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc shows no state until create is done") {
        return;
    }
    let mut b = rt.bundle();
    let go = rt.path("go");
    let hook = b.host_script("wait.sh", &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()));
    b.hook("createRuntime", hook.to_str().unwrap(), &[], &[], Some(20));
    b.sleeper();
    let create = {
        let cmd = rt.create_cmd(&b, &[]);
        std::thread::spawn(move || cmd.run())
    };
    wait_until("state says creating", || rt.status(b.id()).as_deref() == Some("creating"));
    std::fs::write(&go, "").unwrap();
    create.join().unwrap().ok();
    assert_eq!(rt.status(b.id()).as_deref(), Some("created"));
    rt.delete_force(b.id()).ok();
}

#[test]
fn missing_cwd_is_created() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.private_rootfs();
    b.set("process.cwd", json!("/work/dir"));
    b.sh("pwd");
    assert_eq!(rt.run(&b).code(), 0, "{}", b.stderr());
    assert_eq!(b.stdout().trim(), "/work/dir");
}
