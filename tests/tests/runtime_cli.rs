//! The command-line contract: errors (non-zero exit, one clear stderr line,
//! a JSON error line in `--log`, nothing left behind), `--version`, `spec`,
//! `features`.

use berth_tests::*;

#[test]
fn missing_config_json() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.no_config();
    rt.create(&b).assert_error(&["config.json"], &[]);
    rt.assert_no_trace(&b);
}

#[test]
fn malformed_config_json() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.raw_config("{\"ociVersion\": \"1.0.2\", bad");
    // runc reports only the JSON parser's message, without the file name.
    rt.create(&b).assert_error(&[], &["config.json"]);
    rt.assert_no_trace(&b);
}

#[test]
fn config_with_wrong_type_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.set("process.args", json!("sh -c true")); // a string, not an array
    rt.create(&b).assert_error(&[], &["args"]);
    rt.assert_no_trace(&b);
}

#[test]
fn unknown_namespace_type() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.push("linux.namespaces", json!({"type": "bogusns"}));
    rt.create(&b).assert_error(&["bogusns"], &[]);
    rt.assert_no_trace(&b);
}

#[test]
fn unknown_capability_name() {
    if skip_on_runc("runc 1.1 accepts unknown capabilities with a warning") {
        return;
    }
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.push("process.capabilities.bounding", json!("CAP_BOGUS"));
    rt.create(&b).assert_error(&["CAP_BOGUS"], &[]);
    rt.assert_no_trace(&b);
}

#[test]
fn missing_rootfs() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    let missing = rt.path("no-such-rootfs");
    b.set("root.path", json!(missing.to_str().unwrap()));
    rt.create(&b).assert_error(&[missing.to_str().unwrap()], &[]);
    rt.assert_no_trace(&b);
}

#[test]
fn missing_bundle_dir() {
    let Some(rt) = Runtime::for_test() else { return };
    let b = rt.bundle();
    let missing = rt.path("no-such-bundle");
    let o = rt.cmd(&["create", "--bundle", missing.to_str().unwrap(), b.id()]);
    o.assert_error(&[], &[missing.to_str().unwrap()]);
    rt.assert_no_trace(&b);
}

#[test]
fn duplicate_id() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut first = rt.bundle();
    first.sleeper();
    rt.create(&first).ok();
    let pid = rt.state(first.id())["pid"].as_i64().unwrap();

    let mut second = rt.bundle_with_id(first.id());
    second.args(&["true"]);
    rt.create(&second).assert_error(&["exists"], &[first.id()]);
    // The existing container is untouched.
    let st = rt.state(first.id());
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"].as_i64(), Some(pid));
    assert_eq!(st["bundle"], first.dir().to_str().unwrap());
    rt.delete_force(first.id()).ok();
    rt.assert_no_trace(&first);
    rt.assert_no_trace(&second);
}

#[test]
fn start_running_container_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    rt.create_start(&b);
    rt.start(b.id()).assert_error(&["running"], &[b.id()]);
    assert_eq!(rt.status(b.id()).as_deref(), Some("running"));
    rt.delete_force(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn start_stopped_container_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&["true"]);
    rt.create_start(&b);
    rt.wait_stopped(b.id());
    rt.start(b.id()).assert_error(&["stopped"], &[b.id()]);
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}

#[test]
fn unknown_id_start_kill_delete_state_ps() {
    let Some(rt) = Runtime::for_test() else { return };
    let id = "no-such-container";
    for args in [
        vec!["start", id],
        vec!["kill", id, "KILL"],
        vec!["delete", id],
        vec!["state", id],
        vec!["ps", id],
        vec!["exec", id, "true"],
    ] {
        // runc says only "container does not exist".
        rt.cmd(&args).assert_error(&[], &[id]);
    }
    assert!(leaks::dir_is_empty(rt.root()));
}

#[test]
fn delete_force_unknown_id_succeeds() {
    let Some(rt) = Runtime::for_test() else { return };
    // runc: `delete --force` of a missing container is not an error (engines
    // rely on it when cleaning up).
    rt.cmd(&["delete", "--force", "no-such-container"]).ok();
}

#[test]
fn invalid_container_id() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.sleeper();
    b.write_config();
    for bad in ["../escape", "a/b", ""] {
        let o = rt.cmd(&["create", "--bundle", b.dir().to_str().unwrap(), bad]);
        o.fails();
        assert!(!rt.tmp().join("escape").exists());
    }
    assert!(leaks::dir_is_empty(rt.root()));
}

#[test]
fn unknown_command_and_flag_fail() {
    let Some(rt) = Runtime::for_test() else { return };
    rt.cmd(&["frobnicate"]).fails();
    let b = rt.bundle();
    rt.cmd(&["create", "--no-such-flag", b.id()]).fails();
    assert!(leaks::dir_is_empty(rt.root()));
}

#[test]
fn version_output() {
    let Some(rt) = Runtime::for_test() else { return };
    let o = rt.command_bare(&["--version"]).run().ok();
    let lines: Vec<&str> = o.stdout.lines().collect();
    let first = lines.first().copied().unwrap_or("");
    let prefix = format!("{} version ", runtime_name());
    assert!(first.starts_with(&prefix), "first line `{prefix}X`:\n{o}");
    assert!(first.len() > prefix.len(), "a version number:\n{o}");
    assert!(lines.iter().any(|l| l.starts_with("commit:")), "{o}");
    let spec = lines.iter().find_map(|l| l.strip_prefix("spec:")).unwrap_or_else(|| panic!("spec: line\n{o}"));
    assert!(spec.trim().starts_with("1."), "{o}");
}

#[test]
fn spec_writes_config_and_refuses_to_overwrite() {
    let Some(rt) = Runtime::for_test() else { return };
    let dir = rt.path("spec");
    std::fs::create_dir(&dir).unwrap();
    rt.cmd(&["spec", "--bundle", dir.to_str().unwrap()]).ok();
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).expect("spec writes config.json");
    let v: Value = serde_json::from_str(&text).expect("config.json is JSON");
    assert!(v["ociVersion"].as_str().is_some_and(|s| s.starts_with("1.")), "{v}");
    assert!(v["process"]["args"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
    assert_eq!(v["root"]["path"], "rootfs");
    let ns: Vec<&str> = v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
    for want in ["pid", "mount", "ipc", "uts", "network"] {
        assert!(ns.contains(&want), "{want} in {ns:?}");
    }
    assert!(!ns.contains(&"user"));

    rt.cmd(&["spec", "--bundle", dir.to_str().unwrap()]).assert_error(&["config.json"], &[]);
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text, "refused spec leaves the file alone");

    // Without --bundle: the current directory.
    let cwd = rt.path("spec-cwd");
    std::fs::create_dir(&cwd).unwrap();
    rt.command(&["spec"]).current_dir(&cwd).run().ok();
    assert!(cwd.join("config.json").is_file());
}

#[test]
fn spec_rootless_has_user_namespace() {
    let Some(rt) = Runtime::for_test() else { return };
    let dir = rt.path("spec");
    std::fs::create_dir(&dir).unwrap();
    rt.cmd(&["spec", "--rootless", "--bundle", dir.to_str().unwrap()]).ok();
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let ns: Vec<&str> = v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(|n| n["type"].as_str()).collect();
    assert!(ns.contains(&"user"), "{ns:?}");
    for m in ["uidMappings", "gidMappings"] {
        let maps = v["linux"][m].as_array().unwrap_or_else(|| panic!("{m} in {v}"));
        assert_eq!(maps.len(), 1, "{m}");
        assert_eq!(maps[0]["containerID"], 0);
        assert_eq!(maps[0]["size"], 1);
    }
}

#[test]
fn features_json() {
    let Some(rt) = Runtime::for_test() else { return };
    let o = rt.cmd(&["features"]).ok();
    let v: Value = serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("features is not JSON ({e}):\n{o}"));
    for k in ["ociVersionMin", "ociVersionMax"] {
        assert!(v[k].as_str().is_some_and(|s| s.starts_with("1.")), "{k}: {v}");
    }
    let hooks: Vec<&str> = v["hooks"].as_array().expect("hooks").iter().filter_map(Value::as_str).collect();
    for h in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(hooks.contains(&h), "{h} in {hooks:?}");
    }
    let opts: Vec<&str> = v["mountOptions"].as_array().expect("mountOptions").iter().filter_map(Value::as_str).collect();
    for o in ["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "rprivate"] {
        assert!(opts.contains(&o), "{o} in mountOptions {opts:?}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"].as_array().expect("linux.namespaces").iter().filter_map(Value::as_str).collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "{n} in {ns:?}");
    }
}

#[test]
fn features_berth_declares_spec_1_2() {
    if skip_on_runc("runc 1.1.5 reports ociVersionMax 1.0.2-dev and no time namespace") {
        return;
    }
    let Some(rt) = Runtime::for_test() else { return };
    let v: Value = serde_json::from_str(&rt.cmd(&["features"]).ok().stdout).unwrap();
    assert!(v["ociVersionMax"].as_str().unwrap().starts_with("1.2"), "{v}");
    let ns: Vec<&str> = v["linux"]["namespaces"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(ns.contains(&"time"), "{ns:?}");
}

#[test]
fn log_text_format_and_debug_flag() {
    let Some(rt) = Runtime::for_test() else { return };
    let log = rt.path("text.log");
    let o = rt
        .command_bare(&["--root", rt.root().to_str().unwrap(), "--log", log.to_str().unwrap(), "start", "no-such-container"])
        .run()
        .fails();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("level=error"), "text log format is logrus-like `level=error msg=...`: {text:?}\n{o}");
    // --debug is accepted.
    rt.command_bare(&["--debug", "--root", rt.root().to_str().unwrap(), "list"]).run().ok();
}

#[test]
fn systemd_cgroup_flag_is_accepted_or_clearly_refused() {
    let Some(rt) = Runtime::for_test() else { return };
    let o = rt.command(&["--systemd-cgroup", "list"]).run();
    if !o.success() {
        o.assert_error(&["systemd"], &[]);
    }
}
