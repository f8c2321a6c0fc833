//! The CNI protocol as our plugin binaries speak it: VERSION, version negotiation,
//! malformed input, missing environment — each the spec's error JSON on stdout, exit 1,
//! with the right code. Runs berth-ipam (and berth-bridge/berth-portmap when built) as
//! real processes; needs no root (they fail before touching anything), but every test
//! checks its temp dir is left empty.

use berth_tests::cni::{bin_dir, Call};
use berth_tests::{json, Value};

const ALL: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Our plugins that are built.
fn plugins() -> Vec<&'static str> {
    let ipam = bin_dir().join("berth-ipam");
    assert!(ipam.is_file(), "{} missing: run scripts/build (or set BERTH_BIN_DIR)", ipam.display());
    ["berth-ipam", "berth-bridge", "berth-portmap"].into_iter().filter(|p| bin_dir().join(p).is_file()).collect()
}

/// A temp dir that must stay empty (these calls all fail or touch nothing).
struct Tmp(std::path::PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("berth-cni-spec-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn conf(&self, plugin: &str, version: &str) -> Value {
        json!({"cniVersion": version, "name": "spec", "type": plugin, "bridge": "br-spec-none",
               "ipam": {"type": "berth-ipam", "subnet": "10.250.0.0/24", "dataDir": self.0}})
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let left: Vec<_> = std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().path()).collect();
        std::fs::remove_dir_all(&self.0).unwrap();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    }
}

fn add(plugin: &str) -> Call {
    Call::new(plugin, "ADD").id("spec1").ifname("eth0").netns("/run/netns/berth-spec-does-not-exist")
}

#[test]
fn version_lists_every_supported_version() {
    for p in plugins() {
        let out = Call::new(p, "VERSION").run().ok();
        assert_eq!(out, json!({"cniVersion": "1.1.0", "supportedVersions": ALL}), "{p}");
        // The caller's version is echoed when it is one we speak.
        let out = Call::new(p, "VERSION").stdin(r#"{"cniVersion":"0.4.0"}"#).run().ok();
        assert_eq!(out["cniVersion"], "0.4.0", "{p}");
        // VERSION needs nothing else: no CNI_PATH, garbage stdin.
        let out = Call::new(p, "VERSION").unset("CNI_PATH").stdin("not json").run().ok();
        assert_eq!(out["supportedVersions"], json!(ALL), "{p}");
    }
}

#[test]
fn unknown_versions_are_code_1_naming_both_sides() {
    let t = Tmp::new("ver");
    for p in plugins() {
        for bad in ["0.1.0", "0.2.0", "0.4.1", "1.2.0", "2.0.0", "x"] {
            let e = add(p).conf(&t.conf(p, bad)).run().err(1, &[bad, "1.1.0"]);
            assert_eq!(e["cniVersion"], "1.1.0", "{p} {bad}");
        }
        let mut c = t.conf(p, "1.0.0");
        c.as_object_mut().unwrap().remove("cniVersion");
        add(p).conf(&c).run().err(1, &["plugin supports"]);
    }
}

#[test]
fn malformed_json_is_code_6_and_wrong_fields_code_7() {
    let t = Tmp::new("json");
    for p in plugins() {
        for bad in ["", "{", "{\"cniVersion\":\"1.0.0\",}", "[]", "nul"] {
            add(p).stdin(bad).run().err(6, &["decode"]);
        }
        let mut c = t.conf(p, "1.0.0");
        c["name"] = json!(5);
        add(p).conf(&c).run().err(7, &["name"]);
        let mut c = t.conf(p, "1.0.0");
        c.as_object_mut().unwrap().remove("name");
        let e = add(p).conf(&c).run().err(7, &["name"]);
        assert_eq!(e["cniVersion"], "1.0.0", "errors answer in the caller's version");
        let mut c = t.conf(p, "1.0.0");
        c["prevResult"] = json!({"ips": [{"address": "300.1.1.1/24"}]});
        add(p).conf(&c).run().err(7, &["prevResult"]);
    }
}

#[test]
fn missing_or_invalid_environment_is_code_4() {
    let t = Tmp::new("env");
    for p in plugins() {
        let c = t.conf(p, "1.1.0");
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            add(p).unset(var).conf(&c).run().err(4, &[var]);
        }
        Call::new(p, "ADD").unset("CNI_COMMAND").conf(&c).run().err(4, &["CNI_COMMAND"]);
        Call::new(p, "FROB").conf(&c).run().err(4, &["FROB"]);
        add(p).id("bad/id").conf(&c).run().err(4, &["CNI_CONTAINERID"]);
        add(p).ifname("eth0:bad").conf(&c).run().err(4, &["CNI_IFNAME"]);
        add(p).ifname("a-name-too-long-x").conf(&c).run().err(4, &["CNI_IFNAME"]);
        add(p).args("novalue").conf(&c).run().err(4, &["CNI_ARGS"]);
        Call::new(p, "DEL").ifname("eth0").conf(&c).run().err(4, &["CNI_CONTAINERID"]);
        Call::new(p, "GC").unset("CNI_PATH").conf(&c).run().err(4, &["CNI_PATH"]);
    }
}

#[test]
fn check_gc_status_only_in_versions_that_have_them() {
    let t = Tmp::new("gate");
    for p in plugins() {
        // Calls that succeed run for berth-ipam only: the others would act on the netns
        // they run in, and these tests run in the host's.
        let may_run = p == "berth-ipam";
        for v in ALL {
            let c = t.conf(p, v);
            let chk = Call::new(p, "CHECK").id("spec1").ifname("eth0").netns("/run/netns/berth-spec-none").conf(&c);
            if v.starts_with("0.3") {
                chk.run().err(1, &["CHECK"]);
            } else if may_run {
                // Nothing is allocated: CHECK runs and fails, but not for the version.
                let o = chk.run();
                assert_eq!(o.code, 1);
                assert_ne!(o.json["code"], 1, "{p} {v}: CHECK exists from 0.4.0: {}", o.json);
            }
            for cmd in ["GC", "STATUS"] {
                if v == "1.1.0" {
                    if may_run {
                        assert_eq!(Call::new(p, cmd).conf(&c).run().ok(), Value::Null, "{p} {cmd}");
                    }
                } else {
                    let e = Call::new(p, cmd).conf(&c).run().err(1, &[cmd, v]);
                    assert_eq!(e["cniVersion"], v);
                }
            }
        }
    }
}

#[test]
fn error_json_has_exactly_the_spec_fields() {
    let t = Tmp::new("shape");
    let e = add("berth-ipam").conf(&t.conf("berth-ipam", "9.9.9")).run().err(1, &[]);
    let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["cniVersion", "code", "details", "msg"]);
}
