//! berthlet the daemon: its socket, CRI RuntimeService Version/Status, single
//! instance, shutdown, config file and flags, stale sockets.

use std::os::unix::fs::MetadataExt;

use berth_tests::berthlet_daemon::{cri, Daemon};

#[test]
fn version_status_and_socket() {
    let Some(mut d) = Daemon::for_test() else { return };
    d.start(&[]);

    let m = std::fs::symlink_metadata(&d.socket).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o660, "socket mode");
    assert_eq!((m.uid(), m.gid()), (0, 0), "socket owner");

    let (v, s, unimpl) = d.block_on(async {
        let mut rs = d.cri_runtime().await;
        let v = rs.version(cri::VersionRequest::default()).await.unwrap().into_inner();
        let s = rs.status(cri::StatusRequest { verbose: false }).await.unwrap().into_inner();
        let u = rs.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.unwrap_err();
        (v, s, u)
    });
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
    let conds = s.status.unwrap().conditions;
    let cond = |t: &str| conds.iter().find(|c| c.r#type == t).unwrap_or_else(|| panic!("no {t} condition in {conds:?}"));
    assert!(cond("RuntimeReady").status);
    let net = cond("NetworkReady");
    assert!(!net.status);
    assert!(!net.reason.is_empty() && !net.message.is_empty(), "{net:?}");
    assert_eq!(unimpl.code(), tonic::Code::Unimplemented);
    assert!(unimpl.message().contains("ListPodSandbox"), "{}", unimpl.message());

    let out = d.cli(&["version"]).ok();
    assert!(out.stdout.contains("RuntimeName:  berth"), "{out}");
    assert!(out.stdout.contains("RuntimeApiVersion:  v1"), "{out}");

    d.stop();
    assert!(d.log_text().contains("SIGTERM received"), "{}", d.log_text());
}

#[test]
fn second_instance_is_refused() {
    let Some(mut d) = Daemon::for_test() else { return };
    d.start(&[]);
    let pid = d.pid().unwrap();

    // Same state and run dir.
    let out = d.command(&d.base_args()).run();
    assert_eq!(out.code(), 1, "{out}");
    let want = format!("another berthlet (pid {pid}) holds {}", d.state_dir.join("berthlet.lock").display());
    assert!(out.stderr.contains(&want), "want {want:?} in:\n{out}");
    assert_eq!(out.stderr.lines().count(), 1, "one clear line:\n{out}");

    // Another state dir, same run dir (and so the same socket).
    let other = d.tmp.join("state2");
    let args = vec![
        "--state-dir".to_string(),
        other.display().to_string(),
        "--run-dir".into(),
        d.run_dir.display().to_string(),
    ];
    let out = d.command(&args).run();
    assert_eq!(out.code(), 1, "{out}");
    let want = format!("another berthlet (pid {pid}) holds {}", d.run_dir.join("berthlet.lock").display());
    assert!(out.stderr.contains(&want), "want {want:?} in:\n{out}");

    // The first one is untouched and still serving.
    assert!(d.socket.exists());
    let v = d.block_on(async { d.cri_runtime().await.version(cri::VersionRequest::default()).await });
    assert_eq!(v.unwrap().into_inner().runtime_name, "berth");
    d.stop();
}

#[test]
fn sigint_also_stops_cleanly() {
    let Some(mut d) = Daemon::for_test() else { return };
    d.start(&[]);
    let pid = d.pid().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT).unwrap();
    berth_tests::wait_pid_gone(pid);
    // `stop` reaps it; SIGTERM to an exited child is harmless.
    d.stop();
    assert!(d.log_text().contains("SIGINT received"), "{}", d.log_text());
}

#[test]
fn config_file_and_flags() {
    let Some(mut d) = Daemon::for_test() else { return };
    let file_state = d.tmp.join("state-from-file");
    let cfg = d.tmp.join("berthlet.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\nrun_dir = \"{}\"\nlog_level = \"debug\"\ninsecure_registries = [\"127.0.0.1:5000\"]\n\
             image_gc_high_threshold_percent = 90\nimage_gc_low_threshold_percent = 80\n\
             [registries.\"127.0.0.1:5443\"]\nusername = \"u\"\npassword = \"p\"\n",
            file_state.display(),
            d.run_dir.display()
        ),
    )
    .unwrap();

    // The file alone: its state dir and run dir (the socket follows the run dir).
    d.start_args(&["--config".into(), cfg.display().to_string()]);
    assert!(file_state.join("berthlet.lock").is_file());
    d.stop();

    // --state-dir wins over the file; the file's run dir still applies.
    let args = vec![
        "--config".to_string(),
        cfg.display().to_string(),
        "--state-dir".into(),
        d.state_dir.display().to_string(),
        "--log-level".into(),
        "info".into(),
    ];
    std::fs::remove_file(file_state.join("berthlet.lock")).unwrap();
    d.start_args(&args);
    assert!(d.state_dir.join("berthlet.lock").is_file());
    assert!(!file_state.join("berthlet.lock").exists(), "the file's state dir was used despite --state-dir");
    d.stop();
    // --log-level info: no debug lines this time.
    let log = d.log_text();
    let second_run = log.rsplit("berthlet 0.").next().unwrap();
    assert!(!second_run.contains("DEBUG"), "{log}");

    // A bad file: one line naming the file and the key, exit 1, nothing started.
    std::fs::write(&cfg, "state_dri = \"/x\"\n").unwrap();
    let out = d.command(&["--config".into(), cfg.display().to_string()]).run();
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains(&cfg.display().to_string()) && out.stderr.contains("state_dri"), "{out}");
    let out = d.command(&["--config".into(), d.tmp.join("missing.toml").display().to_string()]).run();
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("missing.toml"), "{out}");
}

#[test]
fn stale_socket_is_replaced() {
    let Some(mut d) = Daemon::for_test() else { return };
    d.start(&[]);
    d.crash();
    assert!(d.socket.exists(), "SIGKILL should leave the socket behind");
    // Nobody answers on it.
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_err());

    d.start(&[]);
    assert!(d.log_text().contains("replacing a stale socket"), "{}", d.log_text());
    let v = d.block_on(async { d.cri_runtime().await.version(cri::VersionRequest::default()).await });
    assert_eq!(v.unwrap().into_inner().runtime_name, "berth");
    d.stop();

    // Something that is not a socket is never replaced.
    std::fs::write(&d.socket, "not a socket").unwrap();
    let out = d.command(&d.base_args()).run();
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("is not a socket"), "{out}");
    std::fs::remove_file(&d.socket).unwrap();
}

#[test]
fn client_without_daemon_fails_in_one_line() {
    let Some(d) = Daemon::for_test() else { return };
    let out = d.cli(&["version"]);
    assert_eq!(out.code(), 1, "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(out.stderr.contains("cannot connect to berthlet at") && out.stderr.contains(&d.socket.display().to_string()), "{out}");
}
