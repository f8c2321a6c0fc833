//! `linux.seccomp` (OCI runtime-spec 1.2, config-linux.md "Seccomp"): every action,
//! every argument operator, defaultAction/defaultErrnoRet, flags, unknown syscall
//! names, a Docker-style default profile under a busybox shell, exec'd processes,
//! NOTIFY with `listenerPath` (the test is the seccomp agent: it receives the
//! container process state and the listener fd, and answers notifications), and bad
//! profiles. Each test checks the effect from inside a real container; the `Runtime`
//! guard checks that nothing leaked.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use berth_tests::*;

/// errno the tests make syscalls fail with: EDQUOT ("Disk quota exceeded"), which no
/// busybox command in these containers would hit on its own.
const EDQUOT: u32 = 122;

/// Foreground run; returns the output (any exit code) after checking for leftovers.
#[track_caller]
fn run(rt: &Runtime, b: &Bundle) -> Output {
    let o = rt.run(b);
    assert!(!o.timed_out, "container timed out:\n{o}");
    rt.assert_no_trace(b);
    o
}

fn profile(default: &str, rules: Value) -> Value {
    json!({"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules})
}

fn mkdir_rule(action: &str) -> Value {
    json!([{"names": ["mkdir", "mkdirat"], "action": action}])
}

/// A container that runs `mkdir /tmp/d` as its own program (no shell in between).
fn mkdir_bundle(rt: &Runtime, seccomp: Value) -> Bundle {
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.args(&["mkdir", "/tmp/d"]);
    b.set("linux.seccomp", seccomp);
    b
}

// ---------------------------------------------------------------------------
// Actions

#[test]
fn seccomp_errno_with_errno_ret() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("linux.seccomp", profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT}])));
    b.sh("mkdir /tmp/d; echo rc=$?; touch /tmp/f && echo touched; grep -E '^Seccomp(_filters)?:' /proc/self/status");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.to_lowercase().contains("quota"), "mkdir fails with the configured errno (EDQUOT):\n{o}");
    assert!(o.stdout.contains("rc=1") && o.stdout.contains("touched"), "{o}");
    assert!(o.stdout.contains("Seccomp:\t2"), "the process runs in seccomp filter mode:\n{o}");
}

#[test]
fn seccomp_errno_default_is_eperm() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = mkdir_bundle(&rt, profile("SCMP_ACT_ALLOW", mkdir_rule("SCMP_ACT_ERRNO")));
    let o = run(&rt, &b);
    assert_eq!(o.code(), 1, "{o}");
    assert!(o.stderr.contains("Operation not permitted"), "ERRNO without errnoRet is EPERM:\n{o}");
}

#[test]
fn seccomp_kill_actions_end_the_process_with_sigsys() {
    let Some(rt) = Runtime::for_test() else { return };
    for action in ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"] {
        let b = mkdir_bundle(&rt, profile("SCMP_ACT_ALLOW", mkdir_rule(action)));
        let o = run(&rt, &b);
        assert_eq!(o.code(), 128 + libc::SIGSYS, "{action}: mkdir dies of SIGSYS:\n{o}");
    }
}

#[test]
fn seccomp_trap_signal_can_be_seen() {
    // TRAP sends SIGSYS to the caller (catchable), KILL does not: a shell that runs the
    // denied syscall in a child sees that child die of signal 31.
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("linux.seccomp", profile("SCMP_ACT_ALLOW", mkdir_rule("SCMP_ACT_TRAP")));
    b.sh("mkdir /tmp/d; echo rc=$?; test -d /tmp/d || echo nodir");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stdout.contains("rc=159") && o.stdout.contains("nodir"), "{o}");
}

#[test]
fn seccomp_trace_without_tracer_is_enosys() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = mkdir_bundle(&rt, profile("SCMP_ACT_ALLOW", mkdir_rule("SCMP_ACT_TRACE")));
    let o = run(&rt, &b);
    assert_eq!(o.code(), 1, "{o}");
    assert!(o.stderr.contains("Function not implemented"), "TRACE with no tracer attached fails with ENOSYS:\n{o}");
}

#[test]
fn seccomp_log_and_allow_let_the_call_through() {
    let Some(rt) = Runtime::for_test() else { return };
    for (default, action) in [("SCMP_ACT_ALLOW", "SCMP_ACT_LOG"), ("SCMP_ACT_LOG", "SCMP_ACT_ALLOW")] {
        let mut b = rt.bundle();
        with_tmp(&mut b);
        b.set("linux.seccomp", profile(default, mkdir_rule(action)));
        b.sh("mkdir /tmp/d && test -d /tmp/d && echo made");
        let o = run(&rt, &b);
        assert_eq!(o.code(), 0, "{default}/{action}:\n{o}");
        assert!(o.stdout.contains("made"), "{o}");
    }
}

#[test]
fn seccomp_default_errno_ret_with_allow_list() {
    // defaultAction ERRNO + defaultErrnoRet: everything not allowed fails with EDQUOT.
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    let mut p = docker_profile();
    p["defaultErrnoRet"] = json!(EDQUOT);
    let rules = p["syscalls"].as_array_mut().unwrap();
    for r in rules.iter_mut() {
        let names: Vec<Value> = r["names"].as_array().unwrap().iter().filter(|n| *n != "mkdir" && *n != "mkdirat").cloned().collect();
        r["names"] = Value::Array(names);
    }
    rules.retain(|r| !r["names"].as_array().unwrap().is_empty());
    b.set("linux.seccomp", p);
    b.sh("mkdir /tmp/d; echo rc=$?; echo still-here");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.to_lowercase().contains("quota") && o.stdout.contains("still-here"), "{o}");
}

// ---------------------------------------------------------------------------
// Argument conditions: ftruncate(fd, length) with length 3..7 against the value 5.

fn truncate_results(rt: &Runtime, args: Value) -> String {
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set(
        "linux.seccomp",
        profile("SCMP_ACT_ALLOW", json!([{"names": ["ftruncate", "truncate"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT, "args": args}])),
    );
    b.sh("touch /tmp/f; for n in 3 4 5 6 7; do if truncate -s $n /tmp/f 2>/dev/null; then printf \"$n=ok \"; else printf \"$n=no \"; fi; done");
    let o = run(rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    o.stdout.trim().to_string()
}

#[test]
fn seccomp_argument_operators() {
    let Some(rt) = Runtime::for_test() else { return };
    let cases = [
        ("SCMP_CMP_EQ", 5, None, "3=ok 4=ok 5=no 6=ok 7=ok"),
        ("SCMP_CMP_NE", 5, None, "3=no 4=no 5=ok 6=no 7=no"),
        ("SCMP_CMP_LT", 5, None, "3=no 4=no 5=ok 6=ok 7=ok"),
        ("SCMP_CMP_LE", 5, None, "3=no 4=no 5=no 6=ok 7=ok"),
        ("SCMP_CMP_GE", 5, None, "3=ok 4=ok 5=no 6=no 7=no"),
        ("SCMP_CMP_GT", 5, None, "3=ok 4=ok 5=ok 6=no 7=no"),
        // (length & 6) == 4: 4 and 5.
        ("SCMP_CMP_MASKED_EQ", 6, Some(4), "3=ok 4=no 5=no 6=ok 7=ok"),
    ];
    for (op, value, two, want) in cases {
        let mut a = json!({"index": 1, "value": value, "op": op});
        if let Some(t) = two {
            a["valueTwo"] = json!(t);
        }
        assert_eq!(truncate_results(&rt, json!([a])), want, "{op} {value} {two:?}");
    }
}

#[test]
fn seccomp_two_conditions_on_one_argument_match_either() {
    let Some(rt) = Runtime::for_test() else { return };
    let args = json!([{"index": 1, "value": 3, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 6, "op": "SCMP_CMP_EQ"}]);
    assert_eq!(truncate_results(&rt, args), "3=no 4=ok 5=ok 6=no 7=ok");
}

// ---------------------------------------------------------------------------
// Unknown names, flags, Docker's profile, exec

#[test]
fn seccomp_unknown_syscall_name_is_skipped_with_a_warning() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = mkdir_bundle(
        &rt,
        profile("SCMP_ACT_ALLOW", json!([{"names": ["no_such_syscall_berth", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT}])),
    );
    let o = run(&rt, &b);
    assert_eq!(o.code(), 1, "{o}");
    assert!(o.stderr.to_lowercase().contains("quota"), "the known names of the rule still apply:\n{o}");
    if !is_runc() {
        let warned = rt.log_entries().iter().any(|e| e["level"] == "warning" && e["msg"].as_str().unwrap_or("").contains("no_such_syscall_berth"));
        assert!(warned, "a warning names the skipped syscall: {:?}", rt.log_entries());
    }
}

#[test]
fn seccomp_flags() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    let mut p = profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT}]));
    p["flags"] = json!(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]);
    b.set("linux.seccomp", p);
    b.sh("mkdir /tmp/d; grep -E '^Seccomp:' /proc/self/status");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.to_lowercase().contains("quota") && o.stdout.contains("Seccomp:\t2"), "{o}");
}

#[test]
fn seccomp_without_no_new_privileges() {
    // No NNP: the filter is installed while the init still has CAP_SYS_ADMIN.
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("process.noNewPrivileges", json!(false));
    b.set("process.user", json!({"uid": 1000, "gid": 1000}));
    b.set("linux.seccomp", profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT}])));
    b.sh("mkdir /tmp/d; grep -E '^(Seccomp|NoNewPrivs|CapEff):' /proc/self/status");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stderr.to_lowercase().contains("quota"), "{o}");
    assert!(o.stdout.contains("Seccomp:\t2") && o.stdout.contains("NoNewPrivs:\t0"), "{o}");
}

#[test]
fn seccomp_docker_default_profile_runs_a_busybox_shell() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("linux.seccomp", docker_profile());
    b.sh("set -e; echo hello | tr a-z A-Z; mkdir -p /tmp/a/b; echo x > /tmp/a/b/f; cat /tmp/a/b/f; ls /tmp/a | wc -l; \
          (sleep 0.1 & wait); sh -c 'exit 0'; ps >/dev/null; date >/dev/null; id -u; \
          grep -E '^Seccomp:' /proc/self/status; \
          if unshare -U true 2>/dev/null; then echo unshare=allowed; else echo unshare=denied; fi");
    let o = run(&rt, &b);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stdout.contains("HELLO\nx\n1\n"), "{o}");
    assert!(o.stdout.contains("Seccomp:\t2"), "{o}");
    assert!(o.stdout.contains("unshare=denied"), "unshare is not in the profile's allow list:\n{o}");
}

#[test]
fn seccomp_applies_to_exec_processes() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.sleeper();
    b.set("linux.seccomp", profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": EDQUOT}])));
    rt.create_start(&b);
    let o = rt.exec(b.id(), &["sh", "-c", "mkdir /tmp/x; echo rc=$?; grep -E '^Seccomp:' /proc/self/status"]);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stdout.contains("rc=1") && o.stdout.contains("Seccomp:\t2"), "{o}");
    assert!(o.stderr.to_lowercase().contains("quota"), "{o}");
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn seccomp_bad_profiles_are_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    let cases: Vec<(Value, &str)> = vec![
        (profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}])), "listenerPath"),
        (profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir"], "action": "SCMP_ACT_FROB"}])), "SCMP_ACT_FROB"),
        (json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}), "SCMP_ARCH_VAX"),
        (json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_M68K"]}), "SCMP_ARCH_M68K"),
        (profile("SCMP_ACT_ALLOW", json!([{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_ABOUT"}]}])), "SCMP_CMP_ABOUT"),
        (profile("SCMP_ACT_ALLOW", json!([{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}])), "index"),
    ];
    for (p, needle) in cases {
        let mut b = rt.bundle();
        b.set("linux.seccomp", p);
        let o = rt.create(&b);
        if !is_runc() {
            o.assert_error(&[], &[needle]);
        } else {
            assert!(!o.success(), "{o}");
        }
        rt.assert_no_trace(&b);
    }
}

// ---------------------------------------------------------------------------
// NOTIFY: the test is the seccomp agent.

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
#[derive(Default)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

// _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp).
const NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const NOTIF_SEND: libc::c_ulong = 0xc018_2101;
const USER_NOTIF_FLAG_CONTINUE: u32 = 1;

/// One connection to the listener socket: the container process state and the fd.
fn accept_state(l: &UnixListener) -> (Value, OwnedFd) {
    let (conn, _) = l.accept().expect("accept on listenerPath");
    let mut buf = vec![0u8; 65536];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let msg = nix::sys::socket::recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC)
        .expect("recvmsg");
    let mut fds = vec![];
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
            fds.extend(f);
        }
    }
    let n = msg.bytes;
    let state: Value = serde_json::from_slice(&buf[..n]).expect("container process state JSON");
    assert_eq!(fds.len(), 1, "exactly one fd (seccompFd): {state}");
    // SAFETY: received just now with SCM_RIGHTS: ours.
    (state, unsafe { OwnedFd::from_raw_fd(fds[0]) })
}

/// Answers notifications until the filter has no process left: the first with
/// -EDQUOT, the rest with "continue". Returns how many it answered.
fn serve(fd: OwnedFd) -> usize {
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 200) };
        if p.revents & libc::POLLIN != 0 {
            let mut n = Notif::default();
            // SAFETY: ioctl on the listener with a buffer of the kernel's struct size.
            if unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_RECV, &mut n) } < 0 {
                continue;
            }
            let mut r = NotifResp { id: n.id, ..Default::default() };
            if answered == 0 {
                r.error = -(EDQUOT as i32);
            } else {
                r.flags = USER_NOTIF_FLAG_CONTINUE;
            }
            // SAFETY: as above.
            unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SEND, &r) };
            answered += 1;
        } else if p.revents & libc::POLLHUP != 0 {
            break;
        }
    }
    answered
}

fn notify_profile(listener: &std::path::Path) -> Value {
    let mut p = profile("SCMP_ACT_ALLOW", json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]));
    p["listenerPath"] = json!(listener);
    p["listenerMetadata"] = json!("agent-meta=1");
    p["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    p
}

#[test]
fn seccomp_notify_sends_the_listener_and_state() {
    let Some(rt) = Runtime::for_test() else { return };
    let sock = rt.path("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("linux.seccomp", notify_profile(&sock));
    b.sh("mkdir /tmp/a; echo r1=$?; mkdir /tmp/b; echo r2=$?; test -d /tmp/b && echo b=exists");
    let agent = std::thread::spawn(move || {
        let (state, fd) = accept_state(&listener);
        (state, serve(fd))
    });
    let o = run(&rt, &b);
    let (state, answered) = agent.join().unwrap();
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stdout.contains("r1=1") && o.stdout.contains("r2=0") && o.stdout.contains("b=exists"), "{o}");
    assert!(o.stderr.to_lowercase().contains("quota"), "the agent's errno reached mkdir:\n{o}");
    assert_eq!(answered, 2, "{o}");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "agent-meta=1", "{state}");
    assert_eq!(state["state"]["id"], b.id(), "{state}");
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert!(state["pid"].as_i64().unwrap_or(0) > 0 && state["pid"] == state["state"]["pid"], "{state}");
    assert!(state["ociVersion"].is_string(), "{state}");
}

#[test]
fn seccomp_notify_for_exec_processes() {
    let Some(rt) = Runtime::for_test() else { return };
    let sock = rt.path("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.sleeper();
    b.set("linux.seccomp", notify_profile(&sock));
    let agent = std::thread::spawn(move || {
        let mut out = vec![];
        for _ in 0..2 {
            let (state, fd) = accept_state(&listener);
            out.push((state, std::thread::spawn(move || serve(fd))));
        }
        out
    });
    rt.create_start(&b);
    let o = rt.exec(b.id(), &["sh", "-c", "mkdir /tmp/x; echo r1=$?; mkdir /tmp/y; echo r2=$?"]);
    assert_eq!(o.code(), 0, "{o}");
    assert!(o.stdout.contains("r1=1") && o.stdout.contains("r2=0"), "{o}");
    rt.delete_force(b.id()).ok();
    let conns = agent.join().unwrap();
    assert_eq!(conns[0].0["state"]["status"], "creating");
    assert_eq!(conns[1].0["state"]["status"], "running", "{}", conns[1].0);
    assert_eq!(conns[1].0["state"]["id"], b.id());
    // The state's pid is the container's init; the message's pid is the exec'd process.
    assert_eq!(conns[1].0["state"]["pid"], conns[0].0["pid"], "{}", conns[1].0);
    assert_ne!(conns[1].0["pid"], conns[0].0["pid"], "{}", conns[1].0);
    for (_, h) in conns {
        h.join().unwrap();
    }
    rt.assert_no_trace(&b);
}

#[test]
fn seccomp_notify_listener_unreachable_fails_create() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.seccomp", notify_profile(&rt.path("nobody-listens.sock")));
    let o = rt.create(&b);
    if !is_runc() {
        o.assert_error(&[], &["listenerPath"]);
    } else {
        assert!(!o.success(), "{o}");
    }
    rt.assert_no_trace(&b);
}

// ---------------------------------------------------------------------------

/// A representative Docker default profile (moby's profiles/seccomp/default.json, for
/// a container without extra capabilities): defaultAction ERRNO (EPERM), a long allow
/// list, personality limited by value, clone allowed without namespace flags
/// (MASKED_EQ), clone3 answered with ENOSYS so libc falls back to clone.
fn docker_profile() -> Value {
    let allow: Vec<&str> = "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 \
        clock_adjtime clock_getres clock_gettime clock_nanosleep close close_range connect copy_file_range creat dup dup2 dup3 \
        epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait eventfd eventfd2 execve execveat exit exit_group \
        faccessat faccessat2 fadvise64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchownat fcntl fdatasync \
        fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstatfs fsync ftruncate futex futex_waitv futimesat \
        get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid geteuid getgid getgroups getitimer \
        getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresuid getrlimit getrusage getsid \
        getsockname getsockopt gettid gettimeofday getuid getxattr inotify_add_watch inotify_init inotify_init1 \
        inotify_rm_watch io_cancel io_destroy io_getevents io_setup io_submit ioctl ioprio_get ioprio_set kill landlock_add_rule \
        landlock_create_ruleset landlock_restrict_self lchown lgetxattr link linkat listen listxattr llistxattr lremovexattr \
        lseek lsetxattr lstat madvise membarrier memfd_create mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap \
        mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedsend mq_unlink mremap msgctl msgget msgrcv msgsnd \
        msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat open openat openat2 pause pidfd_open \
        pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll prctl pread64 preadv preadv2 prlimit64 \
        process_mrelease pselect6 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recvfrom recvmmsg recvmsg \
        remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending \
        rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo sched_get_priority_max \
        sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler sched_rr_get_interval \
        sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop \
        semtimedop send sendfile sendmmsg sendmsg sendto set_robust_list set_thread_area set_tid_address setfsgid setfsuid \
        setgid setgroups setitimer setpgid setpriority setregid setresgid setresuid setreuid setrlimit setsid setsockopt \
        setuid setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 socket socketpair splice stat \
        statfs statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete \
        timer_getoverrun timer_gettime timer_settime timerfd_create timerfd_gettime timerfd_settime times tkill truncate \
        umask uname unlink unlinkat utime utimensat utimes vfork vmsplice wait4 waitid waitpid write writev arch_prctl \
        modify_ldt"
        .split_whitespace()
        .collect();
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": allow, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131072u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 131080u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967295u64, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    })
}
