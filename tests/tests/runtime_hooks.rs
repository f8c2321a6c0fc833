//! OCI hooks: each at its moment, in its namespace, with the state JSON on
//! stdin; failures and timeouts fail the operation and leave nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::*;

const HOST_HOOKS: [&str; 5] = ["prestart", "createRuntime", "createContainer", "poststart", "poststop"];

/// A hook body that records, under `out`, its state JSON, namespaces,
/// hostname, and appends its name to `out/order`. The hook's name is its
/// first argument.
fn recorder(out: &str) -> String {
    format!(
        "name=$1\nout={out}\n\
         cat > $out/state-$name.json\n\
         readlink /proc/self/ns/mnt > $out/mnt-$name\n\
         readlink /proc/self/ns/uts > $out/uts-$name\n\
         hostname > $out/hostname-$name\n\
         echo $name >> $out/order\n"
    )
}

fn order(shared: &Path) -> Vec<String> {
    std::fs::read_to_string(shared.join("order")).unwrap_or_default().lines().map(str::to_string).collect()
}

fn read(shared: &Path, what: &str, hook: &str) -> String {
    std::fs::read_to_string(shared.join(format!("{what}-{hook}")))
        .unwrap_or_else(|e| panic!("{what} of hook {hook}: {e}"))
        .trim()
        .to_string()
}

fn state_of(shared: &Path, hook: &str) -> Value {
    let t = read(shared, "state", &format!("{hook}.json"));
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("hook {hook} stdin is not JSON ({e}): {t:?}"))
}

/// A bundle with every hook wired to the recorder (host side for all but
/// startContainer, which lives in a private rootfs).
fn all_hooks(rt: &Runtime) -> (Bundle, PathBuf) {
    let mut b = rt.bundle();
    b.private_rootfs();
    let shared = b.shared_tmp();
    let host = b.host_script("record-hook", &recorder(shared.to_str().unwrap()));
    let host = host.to_str().unwrap().to_string();
    b.rootfs_script("/bin/record-hook", &recorder("/tmp"));
    for h in HOST_HOOKS {
        b.hook(h, &host, &[&host, h], &[], None);
    }
    b.hook("startContainer", "/bin/record-hook", &["record-hook", "startContainer"], &[], None);
    b.set("hostname", json!("hooked"));
    (b, shared)
}

#[test]
fn hooks_run_at_their_moments_with_state_on_stdin() {
    let Some(rt) = Runtime::for_test() else { return };
    let (mut b, shared) = all_hooks(&rt);
    b.sh("echo user >> /tmp/order; sleep 1000");

    rt.create(&b).ok();
    let pid = rt.state(b.id())["pid"].as_i64().unwrap();
    let mut after_create = order(&shared);
    if is_runc() && after_create.contains(&"poststart".to_string()) {
        // runc 1.1 runs poststart hooks at the end of `create` (fixed in 1.2).
        println!("note: runc ran poststart during create (known runc 1.1 bug); not held against it");
        after_create.retain(|h| h != "poststart");
    }
    assert_eq!(after_create.len(), 3, "after create: {after_create:?}");
    let pos = |v: &[String], h: &str| v.iter().position(|x| x == h).unwrap_or_else(|| panic!("{h} missing from {v:?}"));
    assert!(pos(&after_create, "prestart") < pos(&after_create, "createContainer"));
    assert!(pos(&after_create, "createRuntime") < pos(&after_create, "createContainer"));

    rt.start(b.id()).ok();
    // poststart has run by the time start returns.
    let after_start: Vec<String> = order(&shared).into_iter().filter(|h| !(is_runc() && h == "poststart")).collect();
    assert!(is_runc() || after_start.contains(&"poststart".to_string()), "{after_start:?}");
    assert_eq!(after_start.get(3).map(String::as_str), Some("startContainer"), "startContainer right after create's hooks: {after_start:?}");
    wait_until("user program", || order(&shared).contains(&"user".to_string()));
    assert!(!order(&shared).contains(&"poststop".to_string()));

    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    assert!(!order(&shared).contains(&"poststop".to_string()), "poststop waits for delete");
    rt.delete(b.id()).ok();
    let all = order(&shared);
    assert_eq!(all.last().map(String::as_str), Some("poststop"), "{all:?}");
    assert_eq!(all.len(), 7, "each hook once: {all:?}");

    let bundle = std::fs::canonicalize(b.dir()).unwrap();
    for h in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        let st = state_of(&shared, h);
        assert_eq!(st["id"], b.id(), "{h}: {st}");
        assert_eq!(st["bundle"].as_str().map(PathBuf::from), Some(bundle.clone()), "{h}: {st}");
        assert!(st["ociVersion"].is_string(), "{h}: {st}");
        assert!(st["status"].is_string(), "{h}: {st}");
        println!("{h}: {st}");
        let in_container = h == "createContainer" || h == "startContainer";
        if in_container && is_runc() && st["pid"] == 1 {
            // runc 1.1 fills these from inside the container's pid namespace.
            println!("note: runc passes pid 1 (container view) to {h}");
        } else if h != "poststop" {
            assert_eq!(st["pid"].as_i64(), Some(pid), "{h}: pid as seen by the host: {st}");
        }
    }
    if !is_runc() {
        assert_eq!(state_of(&shared, "poststart")["status"], "running");
    }
    rt.assert_no_trace(&b);
}

#[test]
fn hooks_run_in_the_right_namespaces() {
    let Some(rt) = Runtime::for_test() else { return };
    let (mut b, shared) = all_hooks(&rt);
    b.sleeper();
    rt.create_start(&b);
    let pid = rt.state(b.id())["pid"].as_i64().unwrap().to_string();
    let (ctr_mnt, ctr_uts) = (ns_id(&pid, "mnt"), ns_id(&pid, "uts"));
    let (host_mnt, host_uts) = (ns_id("self", "mnt"), ns_id("self", "uts"));
    rt.delete_force(b.id()).ok();

    for h in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(read(&shared, "mnt", h), host_mnt, "{h} runs in the runtime's mount namespace");
        assert_eq!(read(&shared, "uts", h), host_uts, "{h} runs in the runtime's uts namespace");
    }
    for h in ["createContainer", "startContainer"] {
        assert_eq!(read(&shared, "mnt", h), ctr_mnt, "{h} runs in the container's mount namespace");
        assert_eq!(read(&shared, "uts", h), ctr_uts, "{h} runs in the container's uts namespace");
    }
    // startContainer's path resolved inside the container rootfs (there is
    // no /bin/record-hook on the host side of the bundle) and sees the
    // container's hostname.
    assert_eq!(read(&shared, "hostname", "startContainer"), "hooked");
    rt.assert_no_trace(&b);
}

#[test]
fn hook_args_and_env_are_passed() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    let s = b.host_script(
        "args-hook",
        &format!("out={}\necho \"$#|$1|$2\" > $out/args\nenv > $out/env\ncat > /dev/null", shared.display()),
    );
    let s = s.to_str().unwrap();
    b.hook("createRuntime", s, &[s, "first", "second arg"], &["HOOK_ONE=1", "HOOK_TWO=two words"], None);
    b.args(&["true"]);
    rt.create(&b).ok();
    assert_eq!(std::fs::read_to_string(shared.join("args")).unwrap().trim(), "2|first|second arg");
    let env = std::fs::read_to_string(shared.join("env")).unwrap();
    assert!(env.lines().any(|l| l == "HOOK_ONE=1"), "{env}");
    assert!(env.lines().any(|l| l == "HOOK_TWO=two words"), "{env}");
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

fn failing_hook_fails_create(kind: &str) {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    let s = b.host_script("fail-hook", "cat > /dev/null; exit 7");
    b.hook(kind, s.to_str().unwrap(), &[], &[], None);
    // A later hook of the same kind must not run after a failure.
    let marker = b.host_script("marker-hook", &format!("touch {}/ran", shared.display()));
    b.hook(kind, marker.to_str().unwrap(), &[], &[], None);
    b.sh("touch /tmp/user-ran");
    rt.create(&b).assert_error(&[], &[kind]);
    assert!(!shared.join("ran").exists(), "hooks after the failed one must not run");
    rt.try_state(b.id()).fails();
    rt.assert_no_trace(&b);
    assert!(!shared.join("user-ran").exists());
}

#[test]
fn failing_prestart_hook_fails_create() {
    failing_hook_fails_create("prestart");
}

#[test]
fn failing_create_runtime_hook_fails_create() {
    failing_hook_fails_create("createRuntime");
}

#[test]
fn failing_create_container_hook_fails_create() {
    failing_hook_fails_create("createContainer");
}

#[test]
fn failing_start_container_hook_fails_start() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.private_rootfs();
    let shared = b.shared_tmp();
    b.rootfs_script("/bin/fail-hook", "exit 7");
    b.hook("startContainer", "/bin/fail-hook", &[], &[], None);
    b.sh("touch /tmp/user-ran; sleep 1000");
    rt.create(&b).ok();
    let o = rt.start(b.id());
    if is_runc() {
        // runc 1.1's start only opens the exec fifo: the hook fails later in
        // the container's init, which then exits; start itself returns 0.
        println!("note: runc start returned {:?} although startContainer failed", o.code);
        rt.wait_stopped(b.id());
    } else {
        o.assert_error(&[], &["startContainer"]);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(!shared.join("user-ran").exists(), "the user program must not run");
    assert_ne!(rt.status(b.id()).as_deref(), Some("running"));
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn hook_timeout_is_honoured() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let s = b.host_script("slow-hook", "exec sleep 30");
    b.hook("createRuntime", s.to_str().unwrap(), &[], &[], Some(1));
    b.args(&["true"]);
    let start = Instant::now();
    rt.create(&b).assert_error(&[], &["createRuntime"]);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "returned before the timeout: {took:?}");
    assert!(took < Duration::from_secs(6), "timeout of 1 s not honoured: {took:?}");
    rt.assert_no_trace(&b);
}

#[test]
fn poststop_runs_after_foreground_run() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let shared = b.shared_tmp();
    let host = b.host_script("record-hook", &recorder(shared.to_str().unwrap()));
    let host = host.to_str().unwrap();
    b.hook("poststop", host, &[host, "poststop"], &[], None);
    b.sh("exit 0");
    assert_eq!(rt.run(&b).code(), 0);
    assert_eq!(order(&shared), ["poststop"]);
    assert_eq!(state_of(&shared, "poststop")["id"], b.id());
    rt.assert_no_trace(&b);
}

#[test]
fn failing_poststop_hook_does_not_block_delete() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let s = b.host_script("fail-hook", "cat > /dev/null; exit 1");
    b.hook("poststop", s.to_str().unwrap(), &[], &[], None);
    b.args(&["true"]);
    rt.create_start(&b);
    rt.wait_stopped(b.id());
    // The spec: a failing poststop hook is a warning; the container is gone.
    let _ = rt.delete(b.id());
    if rt.state_dir(b.id()).exists() {
        rt.delete_force(b.id()).ok();
    }
    rt.try_state(b.id()).fails();
    rt.assert_no_trace(&b);
}
