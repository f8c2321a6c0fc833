//! The container's process attributes (OCI runtime-spec 1.2 `process`, plus
//! `linux.personality`): args, env, cwd, user, capabilities, rlimits,
//! noNewPrivileges, oomScoreAdj, inherited fds (`--preserve-fds`,
//! `LISTEN_FDS`), LSM labels, personality, scheduler, I/O priority and
//! `execCPUAffinity`. Each test runs a real busybox container and reads the
//! effect from inside (/proc/self/status, /proc/self/limits, ...); the
//! `Runtime` guard checks that nothing leaked.
//!
//! Features runc 1.1.5 predates or ignores are berth-only (they print
//! `SKIP: berth-only check ...` on runc). Cases that need CAP_SYS_RESOURCE
//! (missing from this host's bounding set) run only in the VM
//! (`BERTH_IN_VM=1`).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use berth_tests::*;

// ---------------------------------------------------------------------------
// Helpers local to this file.

/// A `Key:\tvalue` line of /proc/<pid>/status as printed by the container.
#[track_caller]
fn status_field<'a>(out: &'a str, key: &str) -> &'a str {
    let p = format!("{key}:");
    out.lines()
        .find_map(|l| l.strip_prefix(&p))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key}: line in container output:\n{out}"))
}

/// (soft, hard) of a /proc/<pid>/limits row ("Max open files").
#[track_caller]
fn limit(out: &str, row: &str) -> (String, String) {
    let line = out.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row:?} in limits:\n{out}"));
    let mut f = line[row.len()..].split_whitespace();
    (f.next().unwrap().to_string(), f.next().unwrap().to_string())
}

/// Names of the capabilities in a mask, for readable failures.
fn cap_names(mask: u64) -> Vec<String> {
    (0..64u32)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| {
            KNOWN_CAPS.iter().find(|n| cap_number(n) == Some(i)).map(|n| n.to_string()).unwrap_or(format!("cap{i}"))
        })
        .collect()
}

const KNOWN_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Asserts one Cap* line of the container's status equals `want`.
#[track_caller]
fn assert_caps(out: &str, field: &str, want: &[&str]) {
    let got = parse_cap_hex(status_field(out, field));
    let want_mask = cap_mask(want);
    assert_eq!(got, want_mask, "{field}: got {:?}, want {:?}\n{out}", cap_names(got), cap_names(want_mask));
}

/// The global flags every runtime command of this test gets (the same the
/// library passes), for commands the library cannot build (extra fds).
fn global_args(rt: &Runtime) -> Vec<String> {
    vec![
        "--root".into(),
        rt.root().display().to_string(),
        "--log".into(),
        rt.log_path().display().to_string(),
        "--log-format".into(),
        "json".into(),
    ]
}

/// Runs the runtime through `/bin/sh` so that it inherits extra fds:
/// `fds[i]` is opened read-only as fd `3 + i`, `env` is exported, and the
/// shell then execs `runtime <global flags> <args>` (so `$$`, usable as
/// `LISTEN_PID`, is the runtime's pid). The container's stdio goes to the
/// bundle's files, as with the library's `create`/`run`.
fn runtime_with_fds(rt: &Runtime, b: &Bundle, fds: &[&Path], env: &str, args: &[&str]) -> Output {
    b.write_config();
    let mut script = String::new();
    for (i, _) in fds.iter().enumerate() {
        script.push_str(&format!("exec {}<\"${}\"; ", 3 + i, i + 1));
    }
    script.push_str(&format!("shift {}; {env} exec \"$@\"", fds.len()));
    let mut argv: Vec<String> = vec!["-c".into(), script, "sh".into()];
    argv.extend(fds.iter().map(|p| p.display().to_string()));
    argv.push(rt.bin().display().to_string());
    argv.extend(global_args(rt));
    argv.extend(args.iter().map(|s| s.to_string()));
    cmd::Cmd::new(Path::new("/bin/sh"), &argv, b.stdout_path(), b.stderr_path()).watch_log(rt.log_path()).run()
}

/// A file with `text` in the test's temp dir.
fn text_file(rt: &Runtime, stem: &str, text: &str) -> PathBuf {
    let p = rt.path(stem);
    fs::write(&p, text).unwrap();
    p
}

fn host_status(key: &str) -> String {
    proc_status(std::process::id() as i32, key).unwrap()
}

// ---------------------------------------------------------------------------
// args, env, cwd, user

#[test]
fn process_args_env_cwd() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    b.args(&[
        "sh",
        "-c",
        "printf 'args=%s\\n' \"$0|$1|$2|$3|$4\"; echo cwd=$(pwd); env | sort",
        "zero",
        "a b",
        "c\"d",
        "",
        "*",
    ]);
    b.set("process.cwd", json!("/etc"));
    b.env("FOO=bar=baz qux").env("EMPTY=");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "args"), "zero|a b|c\"d||*", "args passed verbatim, no splitting or globbing:\n{out}");
    assert_eq!(kv(&out, "cwd"), "/etc");
    assert_eq!(kv(&out, "FOO"), "bar=baz qux");
    assert_eq!(kv(&out, "EMPTY"), "");
    assert_eq!(kv(&out, "PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    assert!(!out.contains("CARGO") && !out.contains("RUST_"), "the runtime's own environment must not leak in:\n{out}");
}

#[test]
fn process_user_groups_umask() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("process.user", json!({"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [5, 65534]}));
    b.sh("echo uid=$(id -u); echo gid=$(id -g); echo umask=$(umask); touch /tmp/f; mkdir /tmp/d; \
          echo fmode=$(stat -c %a /tmp/f); echo dmode=$(stat -c %a /tmp/d); echo owner=$(stat -c %u:%g /tmp/f); \
          grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "uid"), "1000");
    assert_eq!(kv(&out, "gid"), "1000");
    assert_eq!(
        status_field(&out, "Uid").split_whitespace().collect::<Vec<_>>(),
        ["1000"; 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(status_field(&out, "Gid").split_whitespace().collect::<Vec<_>>(), ["1000"; 4]);
    let groups: BTreeSet<&str> = status_field(&out, "Groups").split_whitespace().collect();
    assert_eq!(groups, BTreeSet::from(["5", "65534"]), "supplementary groups are exactly additionalGids:\n{out}");
    assert_eq!(kv(&out, "umask"), "0027");
    assert_eq!(kv(&out, "fmode"), "640");
    assert_eq!(kv(&out, "dmode"), "750");
    assert_eq!(kv(&out, "owner"), "1000:1000");
}

// ---------------------------------------------------------------------------
// Capabilities
//
// What /proc/self/status shows is after execve of the program, so the
// kernel's rules apply: for uid 0, permitted becomes bounding | inheritable
// and effective = permitted; for other uids, permitted = effective =
// ambient. The configs below are chosen so that the configured sets are
// exactly what survives exec; the test names the rule where it matters.

#[test]
fn process_caps_root_five_sets() {
    let Some(rt) = Runtime::for_test() else { return };
    let full = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID", "CAP_NET_BIND_SERVICE"];
    let inh = ["CAP_KILL", "CAP_NET_RAW"];
    let amb = ["CAP_NET_RAW"];
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set(
        "process.capabilities",
        json!({
            "bounding": full, "permitted": full, "effective": full, "inheritable": inh, "ambient": amb
        }),
    );
    b.sh("grep ^Cap /proc/self/status; touch /tmp/f && chown 1000:1000 /tmp/f && echo chown=ok");
    let out = run_ok(&rt, &b);
    assert_caps(&out, "CapBnd", &full);
    assert_caps(&out, "CapPrm", &full);
    assert_caps(&out, "CapEff", &full);
    assert_caps(&out, "CapInh", &inh);
    assert_caps(&out, "CapAmb", &amb);
    assert_eq!(kv(&out, "chown"), "ok", "CAP_CHOWN is usable");
}

#[test]
fn process_caps_non_root_keeps_ambient() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set("process.user", json!({"uid": 1000, "gid": 1000}));
    b.set(
        "process.capabilities",
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
            "permitted": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_CHOWN"],
            "inheritable": ["CAP_CHOWN", "CAP_KILL"],
            "ambient": ["CAP_CHOWN"]
        }),
    );
    b.sh("grep ^Cap /proc/self/status; touch /tmp/f && chown 0:0 /tmp/f && echo owner=$(stat -c %u:%g /tmp/f)");
    let out = run_ok(&rt, &b);
    assert_caps(&out, "CapBnd", &["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]);
    assert_caps(&out, "CapInh", &["CAP_CHOWN", "CAP_KILL"]);
    // A non-root program keeps across exec only its ambient set.
    assert_caps(&out, "CapAmb", &["CAP_CHOWN"]);
    assert_caps(&out, "CapPrm", &["CAP_CHOWN"]);
    assert_caps(&out, "CapEff", &["CAP_CHOWN"]);
    assert_eq!(kv(&out, "owner"), "0:0", "uid 1000 could chown thanks to ambient CAP_CHOWN:\n{out}");
}

#[test]
fn process_caps_not_granted_are_denied() {
    let Some(rt) = Runtime::for_test() else { return };
    // A file only uid 1000 may read: root needs CAP_DAC_OVERRIDE for it.
    let dir = rt.path("private");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("secret"), "secret\n").unwrap();
    std::os::unix::fs::chown(dir.join("secret"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(dir.join("secret"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.push("mounts", json!({"destination": "/tmp/h", "type": "bind", "source": dir.display().to_string(), "options": ["bind", "ro"]}));
    let kill = ["CAP_KILL"];
    b.set(
        "process.capabilities",
        json!({"bounding": kill, "permitted": kill, "effective": kill, "inheritable": [], "ambient": []}),
    );
    b.sh("grep ^Cap /proc/self/status; touch /tmp/f; chown 1000 /tmp/f 2>/dev/null; echo chown_rc=$?; \
          cat /tmp/h/secret >/dev/null 2>&1; echo read_rc=$?");
    let out = run_ok(&rt, &b);
    assert_caps(&out, "CapBnd", &kill);
    assert_caps(&out, "CapPrm", &kill);
    assert_caps(&out, "CapEff", &kill);
    assert_caps(&out, "CapInh", &[]);
    assert_caps(&out, "CapAmb", &[]);
    assert_ne!(kv(&out, "chown_rc"), "0", "root without CAP_CHOWN cannot chown:\n{out}");
    assert_ne!(kv(&out, "read_rc"), "0", "root without CAP_DAC_OVERRIDE cannot read another user's 0600 file:\n{out}");
}

// ---------------------------------------------------------------------------
// rlimits

#[test]
fn process_rlimits_set_and_lowered() {
    let Some(rt) = Runtime::for_test() else { return };
    let mut b = rt.bundle();
    with_tmp(&mut b);
    b.set(
        "process.rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 768},
            {"type": "RLIMIT_FSIZE", "soft": 1048576, "hard": 1048576},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]),
    );
    b.sh("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn); cat /proc/self/limits; \
          (dd if=/dev/zero of=/tmp/big bs=1k count=2048 2>/dev/null); echo big=$(stat -c %s /tmp/big)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "soft"), "512", "{out}");
    assert_eq!(kv(&out, "hard"), "768", "{out}");
    assert_eq!(limit(&out, "Max open files"), ("512".into(), "768".into()), "{out}");
    assert_eq!(limit(&out, "Max file size"), ("1048576".into(), "1048576".into()), "{out}");
    assert_eq!(limit(&out, "Max core file size"), ("0".into(), "0".into()), "{out}");
    assert_eq!(kv(&out, "big"), "1048576", "writes stop at the lowered RLIMIT_FSIZE:\n{out}");
}

#[test]
fn process_rlimit_above_host_hard_limit_vm_only() {
    let Some(rt) = Runtime::for_test() else { return };
    if !in_vm() {
        berth_tests::skip(format_args!("raising an rlimit above the hard limit needs CAP_SYS_RESOURCE, missing from this host's bounding set; runs in the VM (BERTH_IN_VM=1)"));
        return;
    }
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open").unwrap().trim().parse().unwrap();
    let want = (hard + 1024).min(nr_open);
    if want <= hard {
        berth_tests::skip(format_args!("hard RLIMIT_NOFILE {hard} is already at fs.nr_open {nr_open}"));
        return;
    }
    let mut b = rt.bundle();
    b.set("process.rlimits", json!([{"type": "RLIMIT_NOFILE", "soft": want, "hard": want}]));
    b.sh("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "soft"), want.to_string());
    assert_eq!(kv(&out, "hard"), want.to_string());
}

// ---------------------------------------------------------------------------
// noNewPrivileges, oomScoreAdj

#[test]
fn process_no_new_privileges() {
    let Some(rt) = Runtime::for_test() else { return };
    for (on, want) in [(true, "1"), (false, "0")] {
        let mut b = rt.bundle();
        b.set("process.noNewPrivileges", json!(on));
        b.sh("grep NoNewPrivs /proc/self/status");
        let out = run_ok(&rt, &b);
        assert_eq!(status_field(&out, "NoNewPrivs"), want, "noNewPrivileges={on}");
    }
}

#[test]
fn process_oom_score_adj_raised() {
    let Some(rt) = Runtime::for_test() else { return };
    let host = fs::read_to_string("/proc/self/oom_score_adj").unwrap();
    let mut b = rt.bundle();
    b.set("process.oomScoreAdj", json!(500));
    b.sh("echo init=$(cat /proc/1/oom_score_adj); echo child=$(cat /proc/self/oom_score_adj)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "init"), "500");
    assert_eq!(kv(&out, "child"), "500", "inherited by children");
    assert_eq!(fs::read_to_string("/proc/self/oom_score_adj").unwrap(), host, "the caller's own value is untouched");
}

#[test]
fn process_oom_score_adj_lowered_vm_only() {
    let Some(rt) = Runtime::for_test() else { return };
    if !in_vm() {
        berth_tests::skip(format_args!("lowering oom_score_adj needs CAP_SYS_RESOURCE, missing from this host's bounding set; runs in the VM (BERTH_IN_VM=1)"));
        return;
    }
    let mut b = rt.bundle();
    b.set("process.oomScoreAdj", json!(-500));
    b.sh("echo adj=$(cat /proc/self/oom_score_adj)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "adj"), "-500");
}

// ---------------------------------------------------------------------------
// Inherited file descriptors

#[test]
fn process_preserve_fds_create_start() {
    let Some(rt) = Runtime::for_test() else { return };
    let f3 = text_file(&rt, "fd3", "from-fd3\n");
    let f4 = text_file(&rt, "fd4", "from-fd4\n");
    let mut b = rt.bundle();
    b.sh("cat <&3; test -e /proc/self/fd/4 && echo fd4=present || echo fd4=absent");
    let args =
        ["create", "--preserve-fds", "1", "--bundle", &b.dir().display().to_string(), b.id()].map(|s| s.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    runtime_with_fds(&rt, &b, &[&f3, &f4], "", &args).ok();
    rt.start(b.id()).ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
    let out = b.stdout();
    assert!(out.starts_with("from-fd3\n"), "fd 3 survives from create to start:\n{out}\n{}", b.stderr());
    assert_eq!(kv(&out, "fd4"), "absent", "only --preserve-fds 1 extra fd is passed");
}

#[test]
fn process_preserve_fds_run() {
    let Some(rt) = Runtime::for_test() else { return };
    let f3 = text_file(&rt, "fd3", "from-fd3\n");
    let f4 = text_file(&rt, "fd4", "from-fd4\n");
    let mut b = rt.bundle();
    b.sh("cat <&3 <&4; cat <&4");
    let dir = b.dir().display().to_string();
    let o = runtime_with_fds(&rt, &b, &[&f3, &f4], "", &["run", "--preserve-fds", "2", "--bundle", &dir, b.id()]);
    assert_eq!(o.code, Some(0), "{o}");
    rt.assert_no_trace(&b);
    assert_eq!(b.stdout(), "from-fd4\n", "both fds are passed, as 3 and 4");
    // `cat <&3 <&4` reads fd 4 (last redirection wins); check fd 3 too.
    let mut b = rt.bundle();
    b.sh("cat <&3");
    let dir = b.dir().display().to_string();
    runtime_with_fds(&rt, &b, &[&f3, &f4], "", &["run", "--preserve-fds", "2", "--bundle", &dir, b.id()]).ok();
    rt.assert_no_trace(&b);
    assert_eq!(b.stdout(), "from-fd3\n");
}

#[test]
fn process_listen_fds() {
    let Some(rt) = Runtime::for_test() else { return };
    let f3 = text_file(&rt, "fd3", "socket-stand-in\n");
    let f4 = text_file(&rt, "fd4", "not-passed\n");
    let mut b = rt.bundle();
    b.sh("echo LISTEN_FDS=$LISTEN_FDS; echo LISTEN_PID=$LISTEN_PID; echo fd3=$(cat <&3); \
          test -e /proc/self/fd/4 && echo fd4=present || echo fd4=absent");
    let dir = b.dir().display().to_string();
    // systemd's protocol: LISTEN_PID names the process the fds are for (the
    // runtime itself, which the shell execs).
    let o = runtime_with_fds(
        &rt,
        &b,
        &[&f3, &f4],
        "export LISTEN_FDS=1 LISTEN_PID=$$;",
        &["run", "--bundle", &dir, b.id()],
    );
    assert_eq!(o.code, Some(0), "{o}");
    rt.assert_no_trace(&b);
    let out = b.stdout();
    assert_eq!(kv(&out, "LISTEN_FDS"), "1", "{out}");
    assert_eq!(kv(&out, "LISTEN_PID"), "1", "the fds are now for the container's pid 1");
    assert_eq!(kv(&out, "fd3"), "socket-stand-in");
    assert_eq!(kv(&out, "fd4"), "absent", "only LISTEN_FDS fds are passed");
}

// ---------------------------------------------------------------------------
// LSM labels on a host without AppArmor or SELinux

/// Runs a bundle that must fail before the program runs, with an error
/// mentioning `what` (case-insensitive); nothing may be left.
#[track_caller]
fn refused(rt: &Runtime, b: &mut Bundle, what: &str) -> Output {
    b.sh("echo container-ran");
    let o = rt.run(b);
    assert!(!o.timed_out, "{o}");
    assert_ne!(o.code, Some(0), "must be refused:\n{o}");
    assert!(!b.stdout().contains("container-ran"), "the program must not run:\n{o}");
    let text = format!("{}{:?}", o.stderr, o.log).to_lowercase();
    assert!(text.contains(&what.to_lowercase()), "the error should mention {what}:\n{o}");
    rt.assert_no_trace(b);
    o
}

#[test]
fn process_apparmor_profile_without_apparmor_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    let enabled =
        fs::read_to_string("/sys/module/apparmor/parameters/enabled").map(|s| s.trim() == "Y").unwrap_or(false);
    if enabled {
        berth_tests::skip(format_args!("AppArmor is enabled on this kernel; this test is about hosts without it"));
        return;
    }
    let mut b = rt.bundle();
    b.set("process.apparmorProfile", json!("berth-test-profile"));
    let o = refused(&rt, &mut b, "apparmor");
    if is_runc() {
        println!("runc's error: {}", o.stderr.trim());
    }
}

#[test]
fn process_selinux_label_without_selinux_fails() {
    let Some(rt) = Runtime::for_test() else { return };
    if Path::new("/sys/fs/selinux/enforce").exists() {
        berth_tests::skip(format_args!("SELinux is enabled on this kernel; this test is about hosts without it"));
        return;
    }
    let mut b = rt.bundle();
    b.set("process.selinuxLabel", json!("system_u:system_r:container_t:s0:c1,c2"));
    let o = refused(&rt, &mut b, "selinux");
    if is_runc() {
        println!("runc's error: {}", o.stderr.trim());
    }
}

// ---------------------------------------------------------------------------
// personality, scheduler, I/O priority, execCPUAffinity (spec 1.2)

#[test]
fn process_personality_linux32() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores linux.personality (uname -m stays x86_64)") {
        return;
    }
    if std::env::consts::ARCH != "x86_64" {
        berth_tests::skip(format_args!("LINUX32 check written for x86_64 hosts"));
        return;
    }
    let mut b = rt.bundle();
    b.set("linux.personality", json!({"domain": "LINUX32"}));
    b.sh("echo machine=$(uname -m); echo persona=$(cat /proc/self/personality)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "machine"), "i686", "{out}");
    assert_eq!(kv(&out, "persona"), "00000008", "PER_LINUX32");
}

#[test]
fn process_scheduler_batch_with_nice() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores process.scheduler") {
        return;
    }
    let mut b = rt.bundle();
    b.set("process.scheduler", json!({"policy": "SCHED_BATCH", "nice": 5}));
    // /proc/<pid>/stat field 19 is the nice value (comm "(sh)" has no spaces).
    b.sh("echo policy=$(awk '/^policy/ {print $3}' /proc/self/sched); echo nice=$(cut -d' ' -f19 /proc/1/stat)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "policy"), "3", "SCHED_BATCH is policy 3:\n{out}");
    assert_eq!(kv(&out, "nice"), "5", "{out}");
}

#[test]
fn process_io_priority_best_effort() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores process.ioPriority") {
        return;
    }
    let mut b = rt.bundle();
    b.set("process.ioPriority", json!({"class": "IOPRIO_CLASS_BE", "priority": 6}));
    b.sh("echo ionice=$(ionice -p 1)");
    let out = run_ok(&rt, &b);
    assert_eq!(kv(&out, "ionice"), "best-effort: prio 6", "{out}");
}

/// CPUs the test process may run on (`Cpus_allowed_list`), expanded.
fn allowed_cpus() -> Vec<u32> {
    let list = host_status("Cpus_allowed_list");
    let mut cpus = vec![];
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

#[test]
fn process_exec_cpu_affinity() {
    let Some(rt) = Runtime::for_test() else { return };
    if skip_on_runc("runc 1.1.5 ignores process.execCPUAffinity") {
        return;
    }
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        berth_tests::skip(format_args!("needs at least 2 allowed CPUs, have {cpus:?}"));
        return;
    }
    let (first, last) = (cpus[0], cpus[cpus.len() - 1]);
    let mut b = rt.bundle();
    b.sleeper();
    rt.create_start(&b);
    let process = |affinity: Option<Value>| {
        let mut p = json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["grep", "Cpus_allowed_list", "/proc/self/status"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/"
        });
        if let Some(a) = affinity {
            p["execCPUAffinity"] = a;
        }
        let path = rt.path("process.json");
        fs::write(&path, serde_json::to_string(&p).unwrap()).unwrap();
        path
    };
    let with = process(Some(json!({"initial": first.to_string(), "final": last.to_string()})));
    let o = rt.exec_with(b.id(), &["--process", &with.display().to_string()], &[]).ok();
    assert_eq!(
        status_field(&o.stdout, "Cpus_allowed_list"),
        last.to_string(),
        "final affinity applies to the exec'd process:\n{o}"
    );
    let without = process(None);
    let o = rt.exec_with(b.id(), &["--process", &without.display().to_string()], &[]).ok();
    assert_eq!(
        status_field(&o.stdout, "Cpus_allowed_list"),
        host_status("Cpus_allowed_list"),
        "without execCPUAffinity the affinity is left alone:\n{o}"
    );
    rt.kill(b.id(), "KILL").ok();
    rt.wait_stopped(b.id());
    rt.delete(b.id()).ok();
    rt.assert_no_trace(&b);
}
