//! Foreground `run` and `exec` with a terminal and no console socket: the runtime
//! proxies the pty itself (as runc does). Driven through util-linux `script`, which
//! gives the runtime a real terminal of its own.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::*;
use serde_json::json;

/// Run `cmd` under `script` with `input` typed on the terminal; (exit code, transcript).
fn under_script(cmd: &str, input: &str) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) is installed by scripts/setup");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
        // Keep the terminal open a moment so the shell reads the input before EOF.
        std::thread::sleep(Duration::from_millis(500));
    }
    let deadline = Instant::now() + default_timeout();
    loop {
        if let Some(_) = child.try_wait().unwrap() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd}: timed out under script");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn global(rt: &Runtime) -> String {
    format!("{} --root {} --log {} --log-format json", rt.bin().display(), rt.root().display(), rt.log_path().display())
}

#[test]
fn run_with_terminal_proxies_the_pty() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.terminal(true);
    b.set("process.args", json!(["sh", "-c", "tty; stty size; echo in-container; exit 5"]));
    b.write_config();
    // stty on the fresh pty of `script` can fail transiently (EINTR/ECHILD): retry.
    let cmd = format!(
        "for i in 1 2 3 4 5; do stty rows 40 cols 100 2>/dev/null && break; sleep 0.1; done; {} run --bundle {} {}",
        global(&rt),
        b.dir().display(),
        b.id()
    );
    let (code, out) = under_script(&cmd, "");
    assert_eq!(code, 5, "exit code of the container:\n{out}");
    assert!(out.contains("/dev/pts/0"), "the process has a pty of the container's devpts:\n{out}");
    assert!(out.contains("40 100"), "the terminal size is copied:\n{out}");
    assert!(out.contains("in-container"), "{out}");
    assert!(rt.try_state(b.id()).fails().stderr.contains("does not exist"), "foreground run deletes the container");
}

#[test]
fn exec_tty_without_console_socket_is_interactive() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create_start(&b);
    let cmd = format!("{} exec -t {} sh", global(&rt), b.id());
    let (code, out) = under_script(&cmd, "echo typed-$((6*7))\nexit 3\n");
    assert!(out.contains("typed-42"), "the shell read the typed line and ran it:\n{out}");
    assert_eq!(code, 3, "exit code of the exec'd shell:\n{out}");
    rt.delete_force(b.id()).ok();
}
