//! berth-shim's control socket with real containers: sync exec (output,
//! exit code, timeout), streaming exec, attach with and without a terminal,
//! resize, reopen_log, stop, the exit command, and the caller dying. Every
//! test checks that nothing leaked (processes, runtime state, cgroups, the
//! shim's socket dir). The runtime is the one under test
//! (`BERTH_TEST_RUNTIME=/usr/sbin/runc` for runc).

use std::process::{Command, Stdio};

use berth_tests::shim::*;
use berth_tests::leaks::cmdline;
use berth_tests::*;

/// Ends a still-running container through the runtime and checks that the
/// shim recorded it, exited and left nothing behind.
#[track_caller]
fn finish(rt: &Runtime, b: &Bundle, shim: &Shim) {
    rt.kill(b.id(), "KILL");
    let exit = shim.wait_exit(b);
    assert_eq!(exit["signal"], 9, "{exit}");
    shim.assert_clean();
    rt.assert_no_trace(b);
}

#[test]
fn exec_sync_returns_output_and_exit_code() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let shim = Shim::new(&rt);
    let init = shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let mut c = shim.connect();

    let v = c.request(&json!({"op": "exec_sync", "args": ["sh", "-c", "echo out; echo err >&2; printf 'a\\0b'; exit 3"], "timeout_s": 60}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["exit_code"], 3, "{v}");
    assert_eq!(v["signal"], Value::Null, "{v}");
    assert_eq!(v["timed_out"], false, "{v}");
    assert_eq!(b64(v["stdout"].as_str().unwrap()), b"out\na\0b", "{v}");
    assert_eq!(b64_text(&v["stderr"]), "err\n", "{v}");

    // env and cwd; the same connection serves request after request.
    let v = c.request(&json!({"op": "exec_sync", "args": ["sh", "-c", "echo $FOO; pwd"], "env": ["FOO=bar"], "cwd": "/proc"}));
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(b64_text(&v["stdout"]), "bar\n/proc\n", "{v}");

    // A program that does not exist: the runtime's error, not an exit code.
    let v = c.request(&json!({"op": "exec_sync", "args": ["/no-such-program"]}));
    println!("missing program: {v}");
    assert_eq!(v["ok"], false, "{v}");
    assert!(v["error"].as_str().unwrap().contains("no-such-program"), "{v}");

    // Bad requests are answered, the connection stays usable.
    let v = c.request(&json!({"op": "exec_sync", "args": []}));
    assert_eq!(v["ok"], false, "{v}");
    let v = c.request(&json!({"op": "state"}));
    assert_eq!((v["ok"].clone(), v["pid"].clone(), v["status"].clone()), (json!(true), json!(init), json!("running")), "{v}");

    // Only the container's init is left in it.
    assert_eq!(rt.ps_pids(b.id()), vec![init]);
    drop(c);
    finish(&rt, &b, &shim);
}

#[test]
fn exec_sync_timeout_kills_the_process_and_the_container_goes_on() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done");
    let shim = Shim::new(&rt);
    let init = shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let mut c = shim.connect();
    let v = c.request(&json!({"op": "exec_sync", "args": ["sh", "-c", "echo started; exec sleep 1000"], "timeout_s": 5}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["timed_out"], true, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert_eq!(b64_text(&v["stdout"]), "started\n", "{v}");
    // The exec'd process is gone; the container is not, and still logs.
    // (The init's own `sleep 0.1` children come and go.)
    let execd = || rt.ps_pids(b.id()).into_iter().filter(|&p| cmdline(p) == "sleep 1000").collect::<Vec<_>>();
    wait_until("the exec'd process to be gone", || execd().is_empty());
    assert!(pid_alive(init));
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    let n = shim.records().len();
    wait_until("more log lines", || shim.records().len() > n + 2);
    // The shim still serves execs.
    let v = c.request(&json!({"op": "exec_sync", "args": ["true"], "timeout_s": 60}));
    assert_eq!((v["exit_code"].clone(), v["timed_out"].clone()), (json!(0), json!(false)), "{v}");
    drop(c);
    finish(&rt, &b, &shim);
}

#[test]
fn exec_sync_client_gone_kills_the_process() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let shim = Shim::new(&rt);
    let init = shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let mut c = shim.connect();
    let mut line = serde_json::to_vec(&json!({"op": "exec_sync", "args": ["sleep", "1000"]})).unwrap();
    line.push(b'\n');
    std::io::Write::write_all(&mut c.sock, &line).unwrap();
    wait_until("the exec to run", || rt.ps_pids(b.id()).len() == 2);
    drop(c);
    wait_until("the exec'd process to be killed", || rt.ps_pids(b.id()) == vec![init]);
    finish(&rt, &b, &shim);
}

#[test]
fn streaming_exec_with_stdin() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let shim = Shim::new(&rt);
    let init = shim.launch_ok(&rt, &b, &["--start", "--delete"]);

    let mut c = shim.connect();
    let v = c.request(&json!({"op": "exec", "args": ["sh", "-c", "cat; echo done >&2; exit 5"], "stdin": true}));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["tty"], false, "{v}");
    assert!(v["pid"].as_i64().unwrap() > 1, "{v}");
    c.stdin("hello\n");
    assert_eq!(c.read_until("hello\n"), "hello\n");
    c.stdin("second ");
    c.stdin("line\n");
    c.send_frame(frame::CLOSE_STDIN, b"");
    let out = c.read_to_exit();
    assert_eq!(out.stdout_text(), "second line\n", "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
    assert_eq!(out.exit.as_ref().unwrap()["exit_code"], 5, "{out:?}");

    // Without stdin: the process reads end-of-file at once.
    let mut c = shim.connect();
    let v = c.request(&json!({"op": "exec", "args": ["sh", "-c", "cat; echo eof"]}));
    assert_eq!((v["ok"].clone(), v["stdin"].clone()), (json!(true), json!(false)), "{v}");
    let out = c.read_to_exit();
    assert_eq!(out.stdout_text(), "eof\n");
    assert_eq!(out.exit.unwrap()["exit_code"], 0);
    assert_eq!(rt.ps_pids(b.id()), vec![init]);
    finish(&rt, &b, &shim);
}

#[test]
fn streaming_exec_with_a_terminal() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    let mut c = shim.connect();
    let v = c.request(&json!({"op": "exec", "args": ["sh"], "tty": true, "stdin": true, "width": 91, "height": 17}));
    assert_eq!((v["ok"].clone(), v["tty"].clone()), (json!(true), json!(true)), "{v}");
    c.stdin("stty size; tty\n");
    let out = c.read_until("/dev/pts/");
    assert!(out.contains("17 91\n"), "{out:?}");
    c.resize(120, 40);
    c.stdin("stty size\n");
    c.read_until("40 120\n");
    c.stdin("exit 4\n");
    let out = c.read_to_exit();
    assert_eq!(out.exit.as_ref().unwrap()["exit_code"], 4, "{out:?}");
    assert!(out.stderr.is_empty(), "a terminal is one stream: {out:?}");
    finish(&rt, &b, &shim);
}

#[test]
fn attach_with_a_terminal() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["sh"]).terminal(true);
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete", "--terminal", "--stdin"]);
    let mut a = shim.connect();
    let v = a.request(&json!({"op": "attach"}));
    assert_eq!(v, json!({"ok": true, "tty": true, "stdin": true}));
    a.stdin("echo h''i\n");
    a.read_until("\nhi\n");
    // Resize through the control request, then through a frame.
    let mut c = shim.connect();
    assert_eq!(c.request(&json!({"op": "resize", "width": 100, "height": 30})), json!({"ok": true}));
    a.stdin("stty size\n");
    a.read_until("30 100\n");
    a.resize(77, 22);
    a.stdin("stty size\n");
    a.read_until("22 77\n");
    a.stdin("exit 3\n");
    let out = a.read_to_exit();
    let exit = out.exit.unwrap();
    assert_eq!(exit["exit_code"], 3, "{exit}");
    assert_eq!(shim.wait_exit(&b), exit, "the exit frame is the exit file");
    // The log holds the terminal's output as one stream.
    let recs = shim.records();
    assert!(recs.iter().all(|x| x.0 == "stdout"), "{recs:?}");
    assert!(recs.iter().any(|x| x.2.trim_end_matches('\r') == "hi"), "{recs:?}");
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn terminal_mismatch_is_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["sh"]).terminal(true);
    let shim = Shim::new(&rt);
    let rep = shim.launch(&rt, &b, &["--start", "--delete"]);
    assert_eq!(rep.code, 1, "{:?}", rep.stdout);
    assert!(rep.stdout.starts_with("error: berth-shim:") && rep.stdout.contains("process.terminal"), "{:?}", rep.stdout);
    let mut b2 = rt.bundle();
    b2.sleeper();
    let shim2 = Shim::new(&rt);
    let rep = shim2.launch(&rt, &b2, &["--start", "--delete", "--terminal"]);
    assert_eq!(rep.code, 1, "{:?}", rep.stdout);
    assert!(rep.stdout.contains("process.terminal"), "{:?}", rep.stdout);
    for (s, b) in [(&shim, &b), (&shim2, &b2)] {
        assert_eq!(rt.status(b.id()), None);
        s.assert_clean();
        rt.assert_no_trace(b);
    }
}

#[test]
fn attach_without_a_terminal_writes_stdin() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("while read l; do echo got $l; echo warn $l >&2; done; echo eof; exit 2");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete", "--stdin"]);
    let mut a = shim.connect();
    assert_eq!(a.request(&json!({"op": "attach"})), json!({"ok": true, "tty": false, "stdin": true}));
    // A second client sees the same output from the moment it attached.
    let mut a2 = shim.connect();
    assert_eq!(a2.request(&json!({"op": "attach"}))["ok"], true);
    a.stdin("one\n");
    assert_eq!(a.read_until("got one\n"), "got one\n");
    a2.read_until("got one\n");
    a.stdin("two\n");
    a.read_until("got two\n");
    a.send_frame(frame::CLOSE_STDIN, b"");
    let out = a.read_to_exit();
    assert_eq!(out.stdout_text(), "eof\n");
    assert_eq!(out.exit.as_ref().unwrap()["exit_code"], 2);
    let out2 = a2.read_to_exit();
    assert!(String::from_utf8_lossy(&out2.stderr).contains("warn two"), "{out2:?}");
    assert_eq!(shim.wait_exit(&b)["exit_code"], 2);
    let recs = shim.records();
    for want in [r("stdout", "F", "got one"), r("stderr", "F", "warn one"), r("stdout", "F", "got two"), r("stdout", "F", "eof")] {
        assert!(recs.contains(&want), "{want:?} not in {recs:?}");
    }
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn reopen_log_through_the_socket() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    b.sh("echo before; while [ ! -e /tmp/go ]; do sleep 0.02; done; echo after");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    wait_until("the first line", || shim.records() == vec![r("stdout", "F", "before")]);
    let moved = rt.path("moved.log");
    std::fs::rename(&shim.log, &moved).unwrap();
    let mut c = shim.connect();
    assert_eq!(c.request(&json!({"op": "reopen_log"})), json!({"ok": true}));
    // The response comes after the reopen: the new file exists now.
    assert!(shim.log.exists());
    std::fs::write(shared.join("go"), "").unwrap();
    assert_eq!(shim.wait_exit(&b)["exit_code"], 0);
    assert_eq!(records(&moved), vec![r("stdout", "F", "before")]);
    assert_eq!(shim.records(), vec![r("stdout", "F", "after")]);
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("trap 'echo ignored TERM' TERM; echo ready; while true; do sleep 0.1; done");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    wait_until("ready", || shim.records().iter().any(|x| x.2 == "ready"));
    let mut c = shim.connect();
    let v = c.request(&json!({"op": "stop", "timeout_s": 2}));
    // Answered once the container is gone, with its exit record.
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["signal"], 9, "{v}");
    assert_eq!(v["exit_code"], 137, "{v}");
    assert!(shim.exit_file(&b).exists(), "the exit file is written before the answer");
    assert!(shim.records().iter().any(|x| x.2 == "ignored TERM"), "SIGTERM came first: {:?}", shim.records());
    assert_eq!(shim.wait_exit(&b)["signal"], 9);
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn stop_with_a_signal_the_container_handles() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("trap 'exit 7' INT; echo ready; while true; do sleep 0.1; done");
    let shim = Shim::new(&rt);
    shim.launch_ok(&rt, &b, &["--start", "--delete"]);
    wait_until("ready", || shim.records().iter().any(|x| x.2 == "ready"));
    let v = shim.connect().request(&json!({"op": "stop", "timeout_s": 60, "signal": "INT"}));
    assert_eq!((v["exit_code"].clone(), v["signal"].clone()), (json!(7), Value::Null), "{v}");
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn exit_command_runs_after_the_exit_file_and_delete() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("exit 6");
    let shim = Shim::new(&rt);
    let mark = rt.path("exit-command-ran");
    let state = rt.state_dir(b.id());
    let script = format!(
        "cp '{}' '{mark}.tmp' && [ ! -e '{}' ] && echo \"$1\" >> '{mark}.tmp' && mv '{mark}.tmp' '{mark}'",
        shim.exit_file(&b).display(),
        state.display(),
        mark = mark.display()
    );
    shim.launch_ok(
        &rt,
        &b,
        &["--start", "--delete", "--exit-command", "/bin/sh", "--exit-command-arg", "-c", "--exit-command-arg", &script,
          "--exit-command-arg", "sh", "--exit-command-arg", "arg one"],
    );
    assert_eq!(shim.wait_exit(&b)["exit_code"], 6);
    let text = wait_for_file(&mark);
    let (exit, arg) = text.split_once('\n').unwrap();
    let v: Value = serde_json::from_str(exit).unwrap();
    assert_eq!(v["exit_code"], 6, "the exit command saw the exit file: {text:?}");
    assert_eq!(arg, "arg one\n");
    shim.assert_clean();
    rt.assert_no_trace(&b);
}

#[test]
fn caller_killed_while_the_container_runs() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.05; done");
    let shim = Shim::new(&rt);
    // The caller runs the shim, prints its report, then lingers until killed.
    let args: Vec<String> = shim.args(&rt, &b, &["--start", "--delete"]).iter().map(|a| format!("'{a}'")).collect();
    let script = format!("'{}' {}; exec sleep 1000", shim_bin().display(), args.join(" "));
    let mut caller = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().unwrap();
    let mut report = String::new();
    {
        use std::io::BufRead;
        let mut rd = std::io::BufReader::new(caller.stdout.take().unwrap());
        rd.read_line(&mut report).unwrap();
    }
    let pid: i32 = report.trim().parse().unwrap_or_else(|_| panic!("report {report:?}"));
    caller.kill().unwrap();
    caller.wait().unwrap();
    let spid = shim.shim_pid();
    let before = shim.records().len();
    wait_until("more ticks after the caller died", || shim.records().len() > before + 3);
    assert!(pid_alive(pid) && pid_alive(spid));
    for (i, rec) in shim.records().iter().enumerate() {
        assert_eq!(rec, &r("stdout", "F", &format!("tick {i}")));
    }
    // Its control socket still answers.
    let v = shim.connect().request(&json!({"op": "exec_sync", "args": ["echo", "alive"], "timeout_s": 60}));
    assert_eq!(b64_text(&v["stdout"]), "alive\n", "{v}");
    finish(&rt, &b, &shim);
    assert_shim_gone(&shim, spid);
}
