//! `exec` into a running container: output and exit code, flags, and the
//! exec'd process joining the container's namespaces.

use std::time::Duration;

use berth_tests::*;

/// A running `sleep 1000` container.
fn running(rt: &Runtime, edit: impl FnOnce(&mut Bundle)) -> Bundle {
    let mut b = rt.bundle();
    b.sleeper();
    edit(&mut b);
    rt.create_start(&b);
    b
}

fn finish(rt: &Runtime, b: &Bundle) {
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(b);
}

#[test]
fn exec_output_and_exit_code() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let o = rt.exec(b.id(), &["sh", "-c", "echo out; echo err >&2; exit 4"]);
    assert_eq!(o.code(), 4, "{o}");
    assert_eq!(o.stdout, "out\n");
    assert_eq!(o.stderr, "err\n");
    let o = rt.exec(b.id(), &["echo", "-n", "a b"]).ok();
    assert_eq!(o.stdout, "a b");
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"), "exec leaves the container running");
    finish(&rt, &b);
}

#[test]
fn exec_passes_stdin() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let o = rt.exec_cmd(b.id(), &[], &["cat"]).stdin(Input::Data(b"through stdin\n".to_vec())).run().ok();
    assert_eq!(o.stdout, "through stdin\n");
    finish(&rt, &b);
}

#[test]
fn exec_env_and_cwd() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |b| {
        b.env("FROM_CONFIG=yes");
    });
    let o = rt
        .exec_with(b.id(), &["--env", "FOO=bar", "--env", "TWO=a b", "--cwd", "/tmp"], &["sh", "-c", "echo \"$FOO|$TWO|$FROM_CONFIG|$PATH\"; pwd"])
        .ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{o}");
    let f: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(&f[..3], ["bar", "a b", "yes"], "--env adds to the config's env: {o}");
    assert!(f[3].contains("/bin"), "PATH from config: {o}");
    assert_eq!(lines[1], "/tmp", "{o}");
    finish(&rt, &b);
}

#[test]
fn exec_user() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let o = rt.exec_with(b.id(), &["--user", "1000:1000"], &["id"]).ok();
    assert!(o.stdout.starts_with("uid=1000(user) gid=1000(user)"), "{o}");
    let o = rt.exec_with(b.id(), &["--user", "65534"], &["id", "-u"]).ok();
    assert_eq!(o.stdout.trim(), "65534");
    let o = rt.exec(b.id(), &["id", "-u"]).ok();
    assert_eq!(o.stdout.trim(), "0", "default user from config");
    finish(&rt, &b);
}

#[test]
fn exec_process_file() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let p = rt.path("process.json");
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh", "-c", "echo from-file $X $(id -u) $(pwd); exit 6"],
        "env": ["PATH=/bin", "X=42"],
        "cwd": "/etc",
        "capabilities": {"bounding": [], "effective": [], "permitted": []},
        "noNewPrivileges": true
    });
    std::fs::write(&p, process.to_string()).unwrap();
    let o = rt.exec_with(b.id(), &["--process", p.to_str().unwrap()], &[]);
    assert_eq!(o.code(), 6, "{o}");
    assert_eq!(o.stdout, "from-file 42 1000 /etc\n", "{o}");
    finish(&rt, &b);
}

#[test]
fn exec_detach_with_pid_file() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let init = rt.state(b.id())["pid"].as_i64().unwrap().to_string();
    let pid_file = rt.path("exec.pid");
    let o = rt
        .exec_with(b.id(), &["--detach", "--pid-file", pid_file.to_str().unwrap()], &["sh", "-c", "echo detached-exec; exec sleep 1000"])
        .ok();
    assert!(o.elapsed < Duration::from_secs(5), "{o}");
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(pid_alive(pid));
    assert_ne!(pid.to_string(), init);
    assert_eq!(ns_id(&pid.to_string(), "pid"), ns_id(&init, "pid"), "in the container's pid namespace");
    assert!(rt.ps_pids(b.id()).contains(&pid), "ps lists the exec'd process");
    wait_for_text("detached exec stdout", "detached-exec", || o.stdout_now());
    finish(&rt, &b);
    assert!(!pid_alive(pid));
}

#[test]
fn exec_tty_with_console_socket() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let cs = ConsoleSocket::bind(&rt.path("cs.sock"));
    let pid_file = rt.path("exec.pid");
    rt.exec_with(
        b.id(),
        &["--tty", "--detach", "--console-socket", cs.path_str(), "--pid-file", pid_file.to_str().unwrap()],
        &["sh", "-c", "tty; echo exec-tty-done"],
    )
    .ok();
    let mut con = cs.accept(Duration::from_secs(10)).unwrap();
    let out = con.read_to_end(Duration::from_secs(10));
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert!(out.contains("exec-tty-done"), "{out:?}");
    finish(&rt, &b);
}

#[test]
fn exec_cap_adds_capability() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let capeff = |opts: &[&str]| -> u64 {
        let o = rt.exec_with(b.id(), opts, &["sh", "-c", "grep CapEff /proc/self/status"]).ok();
        parse_cap_hex(o.stdout.trim().strip_prefix("CapEff:").unwrap_or_else(|| panic!("{o}")))
    };
    let base = capeff(&[]);
    assert_eq!(base, cap_mask(&["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]), "config caps: {base:x}");
    let more = capeff(&["--cap", "CAP_SYS_ADMIN", "--cap", "CAP_NET_ADMIN"]);
    assert_eq!(more, base | cap_mask(&["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]), "{more:x}");
    finish(&rt, &b);
}

#[test]
fn exec_no_new_privs() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |b| {
        b.set("process.noNewPrivileges", json!(false));
    });
    let nnp = |opts: &[&str]| {
        let o = rt.exec_with(b.id(), opts, &["grep", "NoNewPrivs", "/proc/self/status"]).ok();
        o.stdout.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(nnp(&[]), "0", "config says noNewPrivileges false");
    assert_eq!(nnp(&["--no-new-privs"]), "1");
    finish(&rt, &b);
}

#[test]
fn exec_joins_container_namespaces() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |b| {
        b.set("hostname", json!("exec-host"));
    });
    let init = rt.state(b.id())["pid"].as_i64().unwrap().to_string();
    let o = rt.exec(b.id(), &["hostname"]).ok();
    assert_eq!(o.stdout.trim(), "exec-host");
    // busybox ps: pid 1 is the container's init.
    let o = rt.exec(b.id(), &["ps", "-o", "pid,args"]).ok();
    let pid1 = o.stdout.lines().find(|l| l.split_whitespace().next() == Some("1")).unwrap_or_else(|| panic!("{o}"));
    assert!(pid1.contains("sleep 1000"), "pid 1 is the init: {o}");
    for ns in ["mnt", "uts", "ipc", "net", "pid"] {
        let o = rt.exec(b.id(), &["readlink", &format!("/proc/self/ns/{ns}")]).ok();
        assert_eq!(o.stdout.trim(), ns_id(&init, ns), "exec'd process in the container's {ns} namespace");
    }
    finish(&rt, &b);
}

#[test]
fn exec_into_stopped_container_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["true"]);
    rt.create_start(&b);
    rt.wait_stopped(b.id());
    rt.exec(b.id(), &["true"]).assert_error(&["stopped"], &[b.id()]);
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn exec_missing_program_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    rt.exec(b.id(), &["/no/such/program"]).assert_error(&["/no/such/program"], &[]);
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    finish(&rt, &b);
}

#[test]
fn exec_double_dash_separator() {
    if skip_on_runc("runc 1.1 takes `--` after the id as the program name") {
        return;
    }
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let o = rt.cmd(&["exec", b.id(), "--", "echo", "-n", "dashdash"]).ok();
    assert_eq!(o.stdout, "dashdash");
    finish(&rt, &b);
}

#[test]
fn exec_processes_are_killed_with_the_container() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = running(&rt, |_| {});
    let pid_file = rt.path("exec.pid");
    rt.exec_with(b.id(), &["--detach", "--pid-file", pid_file.to_str().unwrap()], &["sleep", "1000"]).ok();
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    wait_pid_gone(pid);
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}
