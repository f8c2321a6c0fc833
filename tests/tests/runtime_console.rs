//! `process.terminal` with `--console-socket`: the pty master arrives over
//! the socket (SCM_RIGHTS) and carries the container's terminal.

use std::time::Duration;

use berth_tests::*;

const T: Duration = Duration::from_secs(10);

fn socket(rt: &Runtime) -> ConsoleSocket {
    ConsoleSocket::bind(&rt.path("cs.sock"))
}

#[test]
fn console_socket_receives_pty_master() {
    let Some(rt) = Runtime::for_test() else { return };
    let cs = socket(&rt);
    let mut b = rt.bundle();
    b.terminal(true).set("process.consoleSize", json!({"height": 33, "width": 101})).sh(
        "tty; test -c /dev/console && echo console-is-chardev; stty size; \
         test -t 0 && test -t 1 && test -t 2 && echo all-stdio-tty",
    );
    rt.create_with(&b, &["--console-socket", cs.path_str()]).ok();
    let mut con = cs.accept(T).unwrap();
    assert_eq!(con.fd_count, 1, "exactly one fd in the message");
    println!("console message payload: {:?}", con.name);
    rt.start(b.id()).ok();
    let out = con.read_to_end(T);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.first().is_some_and(|l| l.strip_prefix("/dev/pts/").is_some_and(|n| n.parse::<u32>().is_ok())),
        "tty prints /dev/pts/N: {out:?}"
    );
    assert!(lines.contains(&"console-is-chardev"), "{out:?}");
    assert!(lines.contains(&"33 101"), "consoleSize applied: {out:?}");
    assert!(lines.contains(&"all-stdio-tty"), "{out:?}");
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn console_is_interactive() {
    let Some(rt) = Runtime::for_test() else { return };
    let cs = socket(&rt);
    let mut b = rt.bundle();
    b.terminal(true).args(&["sh"]);
    rt.create_with(&b, &["--console-socket", cs.path_str()]).ok();
    let mut con = cs.accept(T).unwrap();
    rt.start(b.id()).ok();
    con.write("echo typed-$((40+2))\n");
    let out = con.read_until("typed-42\n", T);
    assert!(out.contains("typed-42\n"), "{out:?}");
    con.write("exit 5\n");
    con.read_to_end(T);
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn dev_console_is_the_pty() {
    let Some(rt) = Runtime::for_test() else { return };
    let cs = socket(&rt);
    let mut b = rt.bundle();
    // Writing to /dev/console reaches the same terminal.
    b.terminal(true).sh("echo via-console > /dev/console");
    rt.create_with(&b, &["--console-socket", cs.path_str()]).ok();
    let mut con = cs.accept(T).unwrap();
    rt.start(b.id()).ok();
    let out = con.read_to_end(T);
    assert!(out.contains("via-console"), "{out:?}");
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn terminal_without_console_socket_fails_create() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.terminal(true).sleeper();
    rt.create(&b).assert_error(&["console"], &[]);
    rt.assert_no_trace(&b);
}

#[test]
fn console_socket_that_does_not_exist_fails_create() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.terminal(true).sleeper();
    let missing = rt.path("missing.sock");
    rt.create_with(&b, &["--console-socket", missing.to_str().unwrap()]).assert_error(&[], &[missing.to_str().unwrap()]);
    rt.assert_no_trace(&b);
}

#[test]
fn run_detach_with_terminal_uses_console_socket() {
    let Some(rt) = Runtime::for_test() else { return };
    let cs = socket(&rt);
    let mut b = rt.bundle();
    b.terminal(true).sh("echo detached-tty; tty");
    rt.run_cmd(&b, &["--detach", "--console-socket", cs.path_str()]).run().ok();
    let mut con = cs.accept(T).unwrap();
    let out = con.read_to_end(T);
    assert!(out.contains("detached-tty\n/dev/pts/"), "{out:?}");
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}
