//! A per-test handle on the runtime under test: its own temporary `--root`,
//! `--log` (JSON), bundles, and a leak guard that runs when it is dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bundle::Bundle;
use crate::cmd::{Cmd, Input, Output};
use crate::leaks;

static SEQ: AtomicUsize = AtomicUsize::new(0);

#[derive(Default)]
struct Tracked {
    ids: Vec<String>,
    cgroups: Vec<String>,
    /// Ids the runtime said it deleted (`delete` succeeded, or a
    /// foreground `run` returned): their state must be gone.
    deleted: Vec<String>,
}

/// The runtime under test, scoped to one test. Every call is bounded by a
/// timeout. On drop it force-deletes whatever is left, then asserts that no
/// process, mount, state entry or cgroup directory of this test remains
/// (and removes the temporary directory).
pub struct Runtime {
    bin: PathBuf,
    test: String,
    tmp: PathBuf,
    root: PathBuf,
    log: PathBuf,
    rootfs: PathBuf,
    tracked: Mutex<Tracked>,
    seq: AtomicUsize,
}

/// Short, id-safe name of the current test (from the test thread's name).
fn test_name() -> String {
    let t = std::thread::current();
    let full = t.name().unwrap_or("test");
    let last = full.rsplit("::").next().unwrap_or(full);
    let mut s: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    s.truncate(20);
    let s = s.trim_matches('-').to_string();
    if s.is_empty() {
        "test".into()
    } else {
        s
    }
}

impl Runtime {
    /// Root check plus [`Runtime::new`]: `None` (after printing `SKIP: ...`)
    /// when not root.
    pub fn for_test() -> Option<Runtime> {
        if !crate::require_root() {
            return None;
        }
        Some(Runtime::new())
    }

    /// Sets up the temporary directory. Panics with a clear message if the
    /// runtime binary or the rootfs is missing.
    pub fn new() -> Runtime {
        let bin = crate::runtime();
        assert!(
            bin.is_file(),
            "runtime binary {} not found: build it (`scripts/build`), \
             or set BERTH_BIN_DIR / BERTH_TEST_RUNTIME",
            bin.display()
        );
        let rootfs = crate::rootfs();
        let test = test_name();
        let template = std::env::temp_dir().join(format!("bt-{test}-XXXXXX"));
        let tmp = nix::unistd::mkdtemp(&template).unwrap_or_else(|e| panic!("mkdtemp {}: {e}", template.display()));
        // 0755: processes in a user namespace must be able to traverse it.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir(tmp.join("cmd")).unwrap();
        Runtime {
            root: tmp.join("root"),
            log: tmp.join("runtime.log"),
            bin,
            test,
            tmp,
            rootfs,
            tracked: Mutex::new(Tracked::default()),
            seq: AtomicUsize::new(0),
        }
    }

    /// The runtime binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// This test's temporary directory (everything lives below it).
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// The `--root` passed to every command.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `--log` file (JSON lines).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Where the runtime keeps the state of container `id` (`<root>/<id>`,
    /// the layout runc and berth share).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// A fresh, unused path inside the temp dir (`<tmp>/<stem>-<n>`).
    pub fn path(&self, stem: &str) -> PathBuf {
        self.tmp.join(format!("{stem}-{}", self.seq.fetch_add(1, Ordering::Relaxed)))
    }

    /// A new bundle with a unique container id (`<test>-<pid>-<n>`) and
    /// cgroupsPath (`/berth-test/<id>`), registered for the leak checks.
    pub fn bundle(&self) -> Bundle {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{}-{n}", self.test, std::process::id());
        self.bundle_with_id(&id)
    }

    /// A new bundle for a given container id (e.g. to try a duplicate id).
    pub fn bundle_with_id(&self, id: &str) -> Bundle {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let dir = self.tmp.join(format!("bundle-{n}"));
        let cg = format!("/berth-test/{id}");
        self.track(id, &cg);
        Bundle::new(id.to_string(), dir, self.rootfs.clone(), cg)
    }

    /// Registers an id and cgroup path for cleanup and leak checks (done by
    /// `bundle()`; use for containers made some other way).
    pub fn track(&self, id: &str, cgroups_path: &str) {
        let mut t = self.tracked.lock().unwrap();
        if !t.ids.iter().any(|i| i == id) {
            t.ids.push(id.to_string());
        }
        if !t.cgroups.iter().any(|c| c == cgroups_path) {
            t.cgroups.push(cgroups_path.to_string());
        }
    }

    fn out_files(&self) -> (PathBuf, PathBuf) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let d = self.tmp.join("cmd");
        (d.join(format!("{n}.out")), d.join(format!("{n}.err")))
    }

    fn global_args(&self) -> Vec<String> {
        vec![
            "--root".into(),
            self.root.display().to_string(),
            "--log".into(),
            self.log.display().to_string(),
            "--log-format".into(),
            "json".into(),
        ]
    }

    /// `runtime --root R --log L --log-format json <args>`, output to fresh
    /// files, log lines collected, default timeout. Customise, then `.run()`.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Cmd {
        let mut a = self.global_args();
        a.extend(args.iter().map(|s| s.as_ref().to_string()));
        let (o, e) = self.out_files();
        Cmd::new(&self.bin, &a, o, e).watch_log(&self.log)
    }

    /// Like [`Runtime::command`] but without the global flags.
    pub fn command_bare<S: AsRef<str>>(&self, args: &[S]) -> Cmd {
        let a: Vec<String> = args.iter().map(|s| s.as_ref().to_string()).collect();
        let (o, e) = self.out_files();
        Cmd::new(&self.bin, &a, o, e)
    }

    /// Runs `runtime <global flags> <args>`.
    pub fn cmd<S: AsRef<str>>(&self, args: &[S]) -> Output {
        self.command(args).run()
    }

    /// `create [extra] --bundle <dir> <id>` with the container's stdio on the
    /// bundle's `ctr.stdout`/`ctr.stderr` files (stdin /dev/null). Writes
    /// config.json first.
    pub fn create_cmd(&self, b: &Bundle, extra: &[&str]) -> Cmd {
        b.write_config();
        let mut a: Vec<String> = vec!["create".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["--bundle".into(), b.dir().display().to_string(), b.id().to_string()]);
        self.with_bundle_io(b, a)
    }

    fn with_bundle_io(&self, b: &Bundle, args: Vec<String>) -> Cmd {
        // Re-using an id after deleting it is fine.
        self.tracked.lock().unwrap().deleted.retain(|i| i != b.id());
        let mut a = self.global_args();
        a.extend(args);
        Cmd::new(&self.bin, &a, b.stdout_path(), b.stderr_path()).watch_log(&self.log)
    }

    pub fn create(&self, b: &Bundle) -> Output {
        self.create_cmd(b, &[]).run()
    }

    /// `create` with extra flags (`--pid-file`, `--console-socket`, ...).
    pub fn create_with(&self, b: &Bundle, extra: &[&str]) -> Output {
        self.create_cmd(b, extra).run()
    }

    pub fn start(&self, id: &str) -> Output {
        self.cmd(&["start", id])
    }

    /// `run [extra] --bundle <dir> <id>`, container stdio on the bundle's
    /// files; in the foreground this returns the container's exit code.
    pub fn run_cmd(&self, b: &Bundle, extra: &[&str]) -> Cmd {
        b.write_config();
        let mut a: Vec<String> = vec!["run".into()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a.extend(["--bundle".into(), b.dir().display().to_string(), b.id().to_string()]);
        self.with_bundle_io(b, a)
    }

    /// Foreground `run`: returns the container's exit code; the container
    /// is gone afterwards (checked by the guard).
    pub fn run(&self, b: &Bundle) -> Output {
        self.finished(b.id(), self.run_cmd(b, &[]).run())
    }

    /// Foreground `run` with data on the container's stdin.
    pub fn run_input(&self, b: &Bundle, stdin: &[u8]) -> Output {
        self.finished(b.id(), self.run_cmd(b, &[]).stdin(Input::Data(stdin.to_vec())).run())
    }

    fn finished(&self, id: &str, o: Output) -> Output {
        if !o.timed_out {
            self.tracked.lock().unwrap().deleted.push(id.to_string());
        }
        o
    }

    pub fn run_detached(&self, b: &Bundle) -> Output {
        self.run_cmd(b, &["--detach"]).run()
    }

    /// `create` + `start`, asserting both succeed.
    #[track_caller]
    pub fn create_start(&self, b: &Bundle) {
        self.create(b).ok();
        self.start(b.id()).ok();
    }

    /// `state <id>` as an Output (for error cases).
    pub fn try_state(&self, id: &str) -> Output {
        self.cmd(&["state", id])
    }

    /// `state <id>` parsed; panics if it fails.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        let o = self.try_state(id).ok();
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("state output is not JSON ({e}):\n{o}"))
    }

    /// `status` from `state <id>`, `None` if `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let o = self.try_state(id);
        if !o.success() {
            return None;
        }
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        v.get("status").and_then(Value::as_str).map(str::to_string)
    }

    /// `kill <id> <signal>` (signal as given: `TERM`, `SIGKILL`, `9`, ...).
    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.cmd(&["kill", id, signal])
    }

    pub fn kill_all(&self, id: &str, signal: &str) -> Output {
        self.cmd(&["kill", "--all", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        let o = self.cmd(&["delete", id]);
        if o.success() {
            self.tracked.lock().unwrap().deleted.push(id.to_string());
        }
        o
    }

    pub fn delete_force(&self, id: &str) -> Output {
        let o = self.cmd(&["delete", "--force", id]);
        if o.success() {
            self.tracked.lock().unwrap().deleted.push(id.to_string());
        }
        o
    }

    /// `exec [opts] <id> <args...>` (runc's form: no `--`; runc 1.1 would
    /// take `--` as the program name).
    pub fn exec_cmd(&self, id: &str, opts: &[&str], args: &[&str]) -> Cmd {
        let mut a = vec!["exec"];
        a.extend_from_slice(opts);
        a.push(id);
        a.extend_from_slice(args);
        self.command(&a)
    }

    pub fn exec(&self, id: &str, args: &[&str]) -> Output {
        self.exec_cmd(id, &[], args).run()
    }

    pub fn exec_with(&self, id: &str, opts: &[&str], args: &[&str]) -> Output {
        self.exec_cmd(id, opts, args).run()
    }

    /// `list` with extra args.
    pub fn list(&self, extra: &[&str]) -> Output {
        let mut a = vec!["list"];
        a.extend_from_slice(extra);
        self.cmd(&a)
    }

    /// `list --format json` parsed (`null` is an empty list).
    #[track_caller]
    pub fn list_json(&self) -> Vec<Value> {
        let o = self.list(&["--format", "json"]).ok();
        match serde_json::from_str::<Value>(&o.stdout) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Null) => vec![],
            _ => panic!("list --format json is not a JSON array:\n{o}"),
        }
    }

    /// `ps [extra] <id>`.
    pub fn ps(&self, id: &str, extra: &[&str]) -> Output {
        let mut a = vec!["ps"];
        a.extend_from_slice(extra);
        a.push(id);
        self.cmd(&a)
    }

    /// `ps --format json <id>`: the host pids of the container's processes.
    #[track_caller]
    pub fn ps_pids(&self, id: &str) -> Vec<i32> {
        let o = self.ps(id, &["--format", "json"]).ok();
        serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("ps json ({e}):\n{o}"))
    }

    /// Every line of the `--log` file so far.
    pub fn log_entries(&self) -> Vec<Value> {
        crate::cmd::read_log_from(&self.log, 0)
    }

    /// Waits until `state <id>` reports `status`.
    #[track_caller]
    pub fn wait_status(&self, id: &str, status: &str) {
        let mut last = None;
        let ok = crate::wait::poll(crate::wait::WAIT, || {
            last = self.status(id);
            last.as_deref() == Some(status)
        });
        assert!(ok, "container {id}: waited {:?} for status {status}, last {last:?}", crate::wait::WAIT);
    }

    /// Waits until the container is `stopped`.
    #[track_caller]
    pub fn wait_stopped(&self, id: &str) {
        self.wait_status(id, "stopped")
    }

    /// Asserts that nothing of this bundle's container remains: no state
    /// dir, no process in its cgroup or under its bundle dir, no cgroup dir,
    /// no mount under its bundle dir or rootfs. Gives teardown a short grace.
    #[track_caller]
    pub fn assert_no_trace(&self, b: &Bundle) {
        let mut found = vec![];
        crate::wait::poll(Duration::from_secs(3), || {
            found = self.traces(b.id(), b.cgroups_path(), &[b.dir().to_path_buf(), b.rootfs().to_path_buf()]);
            found.is_empty()
        });
        assert!(found.is_empty(), "container {} left traces:\n  {}", b.id(), found.join("\n  "));
    }

    fn traces(&self, id: &str, cg: &str, dirs: &[PathBuf]) -> Vec<String> {
        let mut found = vec![];
        if self.state_dir(id).exists() {
            found.push(format!("state dir {}", self.state_dir(id).display()));
        }
        let cgs = [cg.to_string()];
        for p in leaks::processes(&cgs, &dirs[..1]) {
            found.push(format!("process {p}"));
        }
        for d in leaks::cgroup_dirs(cg) {
            found.push(format!("cgroup dir {}", d.display()));
        }
        for m in leaks::mounts_under(dirs) {
            found.push(format!("mount {} ({})", m.mount_point.display(), m.fs_type));
        }
        found
    }

    /// Everything this test has left behind right now.
    pub fn leaks(&self) -> Vec<String> {
        let t = self.tracked.lock().unwrap();
        let mut found = vec![];
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                found.push(format!("state root entry {}", e.path().display()));
            }
        }
        for p in leaks::processes(&t.cgroups, &[self.tmp.clone()]) {
            found.push(format!("process {p}"));
        }
        for cg in &t.cgroups {
            for d in leaks::cgroup_dirs(cg) {
                found.push(format!("cgroup dir {}", d.display()));
            }
        }
        for m in leaks::mounts_under(&[self.tmp.clone(), self.rootfs.clone()]) {
            found.push(format!("mount {} ({} from {})", m.mount_point.display(), m.fs_type, m.source));
        }
        found
    }

    /// Force-deletes every container still in the state root.
    fn force_delete_all(&self) {
        let mut ids: Vec<String> = self.tracked.lock().unwrap().ids.clone();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if let Some(n) = e.file_name().to_str() {
                    if !ids.iter().any(|i| i == n) {
                        ids.push(n.to_string());
                    }
                }
            }
        }
        for id in ids {
            if self.state_dir(&id).exists() {
                let o = self.command(&["delete", "--force", &id]).timeout(Duration::from_secs(15)).run();
                eprintln!("[{}] guard: container {id} still existed at the end: delete --force -> {:?}", self.test, o.code);
            }
        }
    }

    /// Removes leftovers the hard way, after they have been reported.
    fn scrub(&self) {
        let t = self.tracked.lock().unwrap();
        for p in leaks::processes(&t.cgroups, &[self.tmp.clone()]) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = crate::wait::poll(Duration::from_secs(2), || leaks::processes(&t.cgroups, &[self.tmp.clone()]).is_empty());
        let mut mounts = leaks::mounts_under(&[self.tmp.clone(), self.rootfs.clone()]);
        mounts.reverse(); // children after parents in mountinfo: undo in reverse
        for m in mounts {
            let _ = nix::mount::umount2(&m.mount_point, nix::mount::MntFlags::MNT_DETACH);
        }
        for cg in &t.cgroups {
            for d in leaks::cgroup_dirs(cg) {
                leaks::remove_cgroup_tree(&d);
            }
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        // State the runtime should already have removed (before the forced
        // delete below hides it).
        let mut stale = vec![];
        for id in &self.tracked.lock().unwrap().deleted {
            if self.state_dir(id).exists() {
                stale.push(format!("state dir {} of a deleted/exited container", self.state_dir(id).display()));
            }
        }
        self.force_delete_all();
        let start = Instant::now();
        let mut found = self.leaks();
        while !found.is_empty() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
            found = self.leaks();
        }
        if !found.is_empty() {
            self.scrub();
        }
        stale.dedup();
        found.extend(stale);
        let keep = std::env::var_os("BERTH_TEST_KEEP").is_some();
        let mounted = !leaks::mounts_under(&[self.tmp.clone()]).is_empty();
        if mounted {
            eprintln!("[{}] not removing {}: mounts remain below it", self.test, self.tmp.display());
        } else if keep {
            eprintln!("[{}] BERTH_TEST_KEEP: leaving {}", self.test, self.tmp.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
        if !found.is_empty() {
            let msg = format!("[{}] LEAKS after the test:\n  {}", self.test, found.join("\n  "));
            if failing {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
