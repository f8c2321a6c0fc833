//! Device access policy (`linux.resources.devices`): the v1 devices controller on
//! this host, an eBPF device program in the cgroup v2 VM (`scripts/vm-test
//! runtime_devices`). Every test runs a real busybox container and probes device
//! nodes from inside; the `Runtime` guard checks that nothing leaked.
//!
//! The probes use major 60 (reserved for local/experimental use, no driver): once the
//! cgroup lets an open through, the kernel answers ENXIO ("No such device or
//! address"); when the cgroup refuses, EPERM. So "allowed" and "denied" are told
//! apart without any driver or module, and nothing on the host is touched.

use berth_tests::*;

/// Deny everything; the runtime adds the default set (null, zero, tty, ...).
fn deny_all() -> Value {
    json!({"allow": false, "access": "rwm"})
}

fn rule(allow: bool, ty: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> Value {
    let mut r = json!({"allow": allow, "type": ty, "access": access});
    if let Some(m) = major {
        r["major"] = json!(m);
    }
    if let Some(m) = minor {
        r["minor"] = json!(m);
    }
    r
}

fn node(path: &str, ty: &str, major: i64, minor: i64) -> Value {
    json!({"path": path, "type": ty, "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0})
}

/// Shell that prints `name=ok` or `name=<error>` for reading (`<`) and writing (`>`)
/// each device, and for mknod of each `name:type:major:minor`.
fn probe_script(read: &[&str], write: &[&str], mknod: &[&str]) -> String {
    let mut s = String::from("p() { if msg=$( { eval \"$2\"; } 2>&1 ); then echo \"$1=ok\"; else echo \"$1=$msg\"; fi; }; ");
    for d in read {
        s.push_str(&format!("p r:{d} ': <{d}'; "));
    }
    for d in write {
        s.push_str(&format!("p w:{d} ': >{d}'; "));
    }
    for m in mknod {
        let f: Vec<&str> = m.split(':').collect();
        s.push_str(&format!("p m:{} 'mknod /dev/{} {} {} {}'; ", f[0], f[0], f[1], f[2], f[3]));
    }
    s
}

#[track_caller]
fn allowed(out: &str, key: &str) {
    let v = kv(out, key);
    assert!(v == "ok" || v.contains("No such device or address"), "{key} should be allowed by the device policy, got {v:?}:\n{out}");
}

#[track_caller]
fn denied(out: &str, key: &str) {
    let v = kv(out, key);
    assert!(v.contains("Operation not permitted"), "{key} should fail with EPERM, got {v:?}:\n{out}");
}

/// With CAP_MKNOD, so that mknod is decided by the device policy alone.
fn with_mknod(b: &mut Bundle) {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_MKNOD"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set_at(&["process", "capabilities", set], caps.clone());
    }
}

/// The v1 devices cgroup of a bundle, when the host has one.
fn v1_devices_dir(b: &Bundle) -> Option<std::path::PathBuf> {
    let d = std::path::Path::new("/sys/fs/cgroup/devices").join(b.cgroups_path().trim_start_matches('/'));
    (cgroup_mode() != CgroupMode::V2).then_some(d)
}

#[test]
fn deny_all_keeps_defaults_and_denies_the_rest() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [deny_all()]}));
    b.set("linux.devices", json!([node("/dev/berth-c", "c", 60, 0), node("/dev/berth-b", "b", 60, 0)]));
    let defaults = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];
    b.sh(&(probe_script(&[&defaults[..], &["/dev/berth-c", "/dev/berth-b"]].concat(), &["/dev/null", "/dev/zero", "/dev/full", "/dev/berth-c"], &[])
        + "echo hi >/dev/null && echo devnull=ok; head -c 4 /dev/urandom | wc -c | sed 's/^ */urandom_bytes=/'; \
           ls /dev/pts/ptmx >/dev/null && echo ptmx_exists=ok"));
    let out = run_ok(&rt, &b);
    for d in defaults {
        allowed(&out, &format!("r:{d}"));
        assert_eq!(kv(&out, &format!("r:{d}")), "ok", "{out}");
    }
    for d in ["/dev/null", "/dev/zero", "/dev/full"] {
        assert_eq!(kv(&out, &format!("w:{d}")), "ok", "{out}");
    }
    assert_eq!(kv(&out, "devnull"), "ok");
    assert_eq!(kv(&out, "urandom_bytes"), "4", "{out}");
    denied(&out, "r:/dev/berth-c");
    denied(&out, "w:/dev/berth-c");
    denied(&out, "r:/dev/berth-b");
}

#[test]
fn allow_rule_opens_the_device_with_just_its_access() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "c", Some(60), Some(0), "r")]}));
    b.set("linux.devices", json!([node("/dev/berth-c0", "c", 60, 0), node("/dev/berth-c1", "c", 60, 1)]));
    b.sh(&probe_script(&["/dev/berth-c0", "/dev/berth-c1"], &["/dev/berth-c0"], &[]));
    let out = run_ok(&rt, &b);
    allowed(&out, "r:/dev/berth-c0");
    denied(&out, "w:/dev/berth-c0");
    denied(&out, "r:/dev/berth-c1");
}

#[test]
fn later_rules_override_earlier_ones_and_defaults_can_be_denied() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set(
        "linux.resources",
        json!({"devices": [
            deny_all(),
            rule(true, "c", Some(60), Some(1), "rw"),
            rule(true, "c", Some(60), Some(2), "rw"),
            rule(false, "c", Some(60), Some(2), "w"),
            rule(false, "c", Some(1), Some(5), "w"),
        ]}),
    );
    b.set("linux.devices", json!([node("/dev/berth-c1", "c", 60, 1), node("/dev/berth-c2", "c", 60, 2)]));
    b.sh(&probe_script(&["/dev/berth-c1", "/dev/berth-c2", "/dev/zero"], &["/dev/berth-c1", "/dev/berth-c2", "/dev/zero"], &[]));
    let out = run_ok(&rt, &b);
    allowed(&out, "r:/dev/berth-c1");
    allowed(&out, "w:/dev/berth-c1");
    allowed(&out, "r:/dev/berth-c2");
    denied(&out, "w:/dev/berth-c2");
    assert_eq!(kv(&out, "r:/dev/zero"), "ok", "{out}");
    denied(&out, "w:/dev/zero");
}

/// A deny inside an earlier wildcard allow: enforced on v2; refused on v1, whose
/// controller would silently keep the device allowed.
#[test]
fn carving_a_device_out_of_a_wildcard() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "c", Some(60), None, "rw"), rule(false, "c", Some(60), Some(2), "rw")]}));
    b.set("linux.devices", json!([node("/dev/berth-c1", "c", 60, 1), node("/dev/berth-c2", "c", 60, 2)]));
    b.sh(&probe_script(&["/dev/berth-c1", "/dev/berth-c2"], &[], &[]));
    if cgroup_mode() == CgroupMode::V2 {
        let out = run_ok(&rt, &b);
        allowed(&out, "r:/dev/berth-c1");
        denied(&out, "r:/dev/berth-c2");
    } else {
        if skip_on_runc("runc 1.1 leaves 60:2 allowed on v1") {
            return;
        }
        let o = rt.run(&b);
        assert_eq!(o.code, Some(1), "{o}");
        assert!(o.stderr.contains("\"deny c 60:2 rw\" after \"allow c 60:* rw\": the cgroup v1 devices controller cannot"), "{o}");
        rt.assert_no_trace(&b);
    }
}

#[test]
fn wildcard_major_and_minor() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    // -1 and an absent number both mean "any".
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "c", Some(-1), Some(7), "r"), rule(true, "b", None, None, "r")]}));
    b.set(
        "linux.devices",
        json!([node("/dev/c60-7", "c", 60, 7), node("/dev/c61-7", "c", 61, 7), node("/dev/c60-8", "c", 60, 8), node("/dev/b60-9", "b", 60, 9), node("/dev/b61-3", "b", 61, 3)]),
    );
    b.sh(&probe_script(&["/dev/c60-7", "/dev/c61-7", "/dev/c60-8", "/dev/b60-9", "/dev/b61-3"], &["/dev/c60-7", "/dev/b60-9"], &[]));
    let out = run_ok(&rt, &b);
    allowed(&out, "r:/dev/c60-7");
    allowed(&out, "r:/dev/c61-7");
    denied(&out, "r:/dev/c60-8");
    allowed(&out, "r:/dev/b60-9");
    allowed(&out, "r:/dev/b61-3");
    denied(&out, "w:/dev/c60-7");
    denied(&out, "w:/dev/b60-9");
}

#[test]
fn block_and_char_are_distinct() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "b", Some(60), Some(0), "rw")]}));
    b.set("linux.devices", json!([node("/dev/berth-b", "b", 60, 0), node("/dev/berth-c", "c", 60, 0)]));
    b.sh(&probe_script(&["/dev/berth-b", "/dev/berth-c"], &["/dev/berth-b"], &[]));
    let out = run_ok(&rt, &b);
    allowed(&out, "r:/dev/berth-b");
    allowed(&out, "w:/dev/berth-b");
    denied(&out, "r:/dev/berth-c");
}

#[test]
fn mknod_needs_m() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_mknod(&mut b);
    b.set(
        "linux.resources",
        json!({"devices": [deny_all(), rule(true, "c", Some(60), Some(0), "m"), rule(true, "b", Some(60), None, "mr")]}),
    );
    b.sh(&(probe_script(&[], &[], &["c600:c:60:0", "c601:c:60:1", "b605:b:60:5", "c605:c:60:5", "null2:c:1:3"])
        + &probe_script(&["/dev/c600", "/dev/b605"], &[], &[])));
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "m:c600"), "ok", "{out}");
    denied(&out, "m:c601");
    assert_eq!(kv(&out, "m:b605"), "ok", "{out}");
    denied(&out, "m:c605");
    assert_eq!(kv(&out, "m:null2"), "ok", "{out}"); // default set: rwm
    denied(&out, "r:/dev/c600"); // m alone does not open
    allowed(&out, "r:/dev/b605");
}

#[test]
fn exec_is_under_the_same_policy() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "c", Some(60), Some(1), "r")]}));
    b.set("linux.devices", json!([node("/dev/berth-c0", "c", 60, 0), node("/dev/berth-c1", "c", 60, 1)]));
    b.sleeper();
    rt.run_detached(&b).ok();
    let o = rt.exec(b.id(), &["sh", "-c", &probe_script(&["/dev/berth-c0", "/dev/berth-c1", "/dev/null"], &[], &[])]);
    assert_eq!(o.code, Some(0), "{o}");
    denied(&o.stdout, "r:/dev/berth-c0");
    allowed(&o.stdout, "r:/dev/berth-c1");
    assert_eq!(kv(&o.stdout, "r:/dev/null"), "ok");
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn v1_devices_list_seen_from_the_host() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let Some(dir) = v1_devices_dir(&b) else {
        berth_tests::skip(format_args!("no cgroup v1 devices controller (pure v2: the eBPF path, covered by the other tests)"));
        return;
    };
    b.set("linux.resources", json!({"devices": [deny_all(), rule(true, "c", Some(60), None, "rw"), rule(true, "b", Some(60), Some(3), "m")]}));
    b.args(&["true"]);
    rt.create(&b).ok();
    let list = std::fs::read_to_string(dir.join("devices.list")).expect("devices.list");
    rt.start(b.id()).ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    let mut want = vec!["c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm", "c 60:* rw", "b 60:3 m"];
    want.sort();
    assert_eq!(lines, want, "devices.list of {}", dir.display());
}

#[test]
fn allow_all_list_restricts_nothing() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("linux.resources", json!({"devices": [{"allow": true, "access": "rwm"}]}));
    b.set("linux.devices", json!([node("/dev/berth-c", "c", 60, 0)]));
    b.sh(&probe_script(&["/dev/berth-c"], &[], &[]));
    let out = run_ok(&rt, &b);
    allowed(&out, "r:/dev/berth-c");
}

#[test]
fn bad_rules_are_config_errors_and_leave_nothing() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("berth's error messages") {
        return;
    }
    for (r, want) in [
        (json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwx"}), "linux.resources.devices[1]: access \"rwx\""),
        (json!({"allow": true, "type": "c", "major": -5, "access": "r"}), "linux.resources.devices[1]: major -5"),
        (json!({"allow": true, "type": "p", "access": "r"}), "linux.resources.devices[1]: type \"p\""),
        (json!({"allow": true, "type": "x", "access": "r"}), "field \"type\": unknown variant `x`"),
    ] {
        let mut b = rt.bundle();
        b.set("linux.resources", json!({"devices": [deny_all(), r]}));
        b.args(&["true"]);
        let o = rt.create(&b);
        assert_eq!(o.code, Some(1), "{o}");
        assert!(o.stderr.contains("config") && o.stderr.contains(want), "stderr should name {want:?}: {o}");
        rt.assert_no_trace(&b);
    }
}
