//! Engine harnesses for `runtime_engines.rs`: a private podman and a private
//! containerd, each confined to one temporary directory, driving the runtime
//! under test by its absolute path.
//!
//! Isolation (every path below is under the harness's temp dir):
//! - podman: `--root`, `--runroot`, `--tmpdir`, `--network-config-dir`,
//!   `CONTAINERS_CONF` / `CONTAINERS_STORAGE_CONF` / `CONTAINERS_REGISTRIES_CONF`
//!   (own config files, so nothing under /etc/containers changes behaviour),
//!   `lock_type = "file"` (podman's default shm lock `/dev/shm/libpod_lock` is
//!   shared by every podman on the host), `--network-backend cni` (the netavark
//!   backend creates `/run/containers/networks` on every start), vfs storage (no
//!   mounts), its own `--cgroup-parent`. `podman import` runs in a private mount
//!   namespace with a tmpfs over `/var/lib`: containers/image writes its blob-info
//!   cache to the fixed path `/var/lib/containers/cache` for root (no flag in
//!   podman 4.3), and that must not be left on the host.
//! - podman cannot give the runtime its own `--root`: `--runtime-flag root=...`
//!   is dropped by the `podman container cleanup` exit command (4.3), whose
//!   `delete` then misses the container and leaves its state and cgroups behind.
//!   So the runtime uses its default root (`/run/berth` for berth); ids are
//!   podman's unique 64-hex ids and the teardown checks that each is gone.
//!   podman runs the runtime with `XDG_RUNTIME_DIR=` (empty, for root); the
//!   harness's own `state`/`delete` calls do the same (crun would otherwise
//!   use `$XDG_RUNTIME_DIR/crun`, which is set in the VM).
//! - containerd: own config (root, state, gRPC/ttrpc sockets, `opt` plugin path
//!   — its default creates `/opt/containerd`), no CRI plugin, `TMPDIR` in the
//!   temp dir; `ctr run --runc-binary <runtime> --runc-root <tmp>/rt --fifo-dir`.
//!   The runc v2 shim always puts its socket in `/run/containerd/s/` (hard-coded
//!   in containerd 1.6); the teardown removes that directory again if it made it.
//!
//! Security profile of the generated config (see `Profile`): berth's part 1
//! rejects seccomp and cgroup limits, so by default the tests ask the engines
//! for a config with neither, except an allow-all device list.

#![allow(dead_code)]

use std::ffi::CString;
use std::fmt;
use std::fs;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_tests::{leaks, poll};
use serde_json::Value;

/// Default deadline for one engine command. Generous: the cgroup v2 VM runs
/// without KVM, where everything is several times slower.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(300);

static SEQ: AtomicUsize = AtomicUsize::new(0);

// ---------------------------------------------------------------------------
// Environment

/// The runtime under test (the test library's choice), made absolute: the
/// engines get it by path.
pub fn runtime_under_test() -> PathBuf {
    let p = berth_tests::runtime();
    let p = if p.is_absolute() {
        p
    } else {
        std::env::current_dir().unwrap().join(p)
    };
    assert!(
        p.is_file(),
        "runtime under test {} does not exist: build it (scripts/test sets BERTH_BIN_DIR) \
         or set BERTH_TEST_RUNTIME to a runc-compatible binary",
        p.display()
    );
    p
}

/// Finds `name` on PATH (plus the sbin dirs, which a non-login root shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Panics with a clear message if a tool the test drives is missing.
pub fn require_tools(names: &[&str]) {
    let missing: Vec<&str> = names.iter().copied().filter(|n| which(n).is_none()).collect();
    assert!(missing.is_empty(), "missing tools {missing:?}: run scripts/setup");
}

/// Which security settings the engines are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// No seccomp profile, no cgroup limits except an allow-all device list:
    /// what berth part 1 accepts. podman: `--privileged` (+ `pids_limit = 0`
    /// in containers.conf, `--security-opt no-new-privileges`, podman's default
    /// masked paths back via `--security-opt mask=`); ctr: `--privileged
    /// --cpu-shares 0`.
    Part1,
    /// The engines' defaults (podman: its seccomp profile, a deny-all device
    /// list and pids limit 2048; ctr: `--seccomp`, device allow-list, cpu
    /// shares 1024), which berth enforces since the runtime's part 2. The
    /// default; `BERTH_ENGINE_PROFILE=part1` selects the other.
    Defaults,
}

impl Profile {
    pub fn from_env() -> Profile {
        match std::env::var("BERTH_ENGINE_PROFILE").as_deref() {
            Ok("part1") => Profile::Part1,
            Ok("defaults") | Ok("") | Err(_) => Profile::Defaults,
            Ok(other) => panic!("BERTH_ENGINE_PROFILE={other}: expected part1 or defaults"),
        }
    }
}

// ---------------------------------------------------------------------------
// Temporary directory

/// A directory under `$TMPDIR` (default /tmp), removed (after unmounting
/// anything left below it) on drop. The name is short on purpose: conmon's
/// attach socket lives below it, and unix socket paths are limited to 108
/// bytes. In the VM `$TMPDIR` is a tmpfs, which containerd's overlayfs
/// snapshotter needs (an overlay cannot be an upper dir).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let tmpl = std::env::temp_dir().join(format!("{prefix}-XXXXXX"));
        let tmpl = CString::new(tmpl.into_os_string().into_encoded_bytes()).unwrap();
        let mut buf = tmpl.into_bytes_with_nul();
        let p = unsafe { libc::mkdtemp(buf.as_mut_ptr() as *mut libc::c_char) };
        assert!(!p.is_null(), "mkdtemp: {}", std::io::Error::last_os_error());
        buf.pop();
        TempDir {
            path: PathBuf::from(String::from_utf8(buf).unwrap()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_below(&self.path);
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Commands

/// A finished command.
pub struct Out {
    pub argv: String,
    /// Exit code, or 128+signal, or -1 on timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "$ {}\n  exit: {}", self.argv, self.code)?;
        writeln!(f, "  stdout: {}", self.stdout.trim_end().replace('\n', "\n          "))?;
        write!(f, "  stderr: {}", self.stderr.trim_end().replace('\n', "\n          "))
    }
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Out {
        assert_eq!(self.code, 0, "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn code_is(self, code: i32) -> Out {
        assert_eq!(self.code, code, "unexpected exit code:\n{self}");
        self
    }
}

/// Runs `cmd` with stdout/stderr in files under `logdir` (never pipes: conmon
/// and shims inherit descriptors and would keep a pipe open) and a deadline;
/// on timeout the whole process group is killed.
pub fn run(mut cmd: Command, logdir: &Path, timeout: Duration) -> Out {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    let (o, e) = (logdir.join(format!("cmd{n}.out")), logdir.join(format!("cmd{n}.err")));
    let argv = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("+ {argv}");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&o).unwrap())
        .stderr(fs::File::create(&e).unwrap())
        .process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|err| panic!("spawn {argv}: {err}"));
    let start = Instant::now();
    let code = loop {
        match child.try_wait().unwrap() {
            Some(st) => break st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            None if start.elapsed() > timeout => {
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break -1;
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let out = Out {
        argv,
        code,
        stdout: fs::read_to_string(&o).unwrap_or_default(),
        stderr: fs::read_to_string(&e).unwrap_or_default(),
    };
    if code == -1 {
        panic!("timed out after {timeout:?}:\n{out}");
    }
    out
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let mut v = None;
    poll(timeout, || {
        v = f();
        v.is_some()
    });
    v
}

// ---------------------------------------------------------------------------
// Host scans and cleanup

pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    leaks::mounts_under(&[dir.to_path_buf()])
        .into_iter()
        .map(|m| m.mount_point)
        .collect()
}

/// Lazily unmounts everything at or below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    for _ in 0..8 {
        let mut ms = mounts_below(dir);
        if ms.is_empty() {
            return;
        }
        ms.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in ms {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Removes the cgroup directory tree `rel` (e.g. `/x`) in every hierarchy.
/// Only empty cgroups can be removed; what stays is reported by the caller.
pub fn remove_cgroup_tree(rel: &str) {
    for d in leaks::cgroup_dirs(rel) {
        leaks::remove_cgroup_tree(&d);
    }
}

/// Waits (up to `timeout`) for the processes in `cgroups` or naming `dir` to
/// go (zombies excepted: PID 1 reaps reparented conmons/shims late); returns
/// a leak description for each that stayed, after killing it.
fn settle_processes(dir: &Path, cgroups: &[String], timeout: Duration) -> Vec<String> {
    let find = || -> Vec<leaks::ProcInfo> {
        leaks::processes(cgroups, &[dir.to_path_buf()])
            .into_iter()
            .filter(|p| !p.state.starts_with('Z') && !p.state.starts_with('X'))
            .collect()
    };
    let mut left = vec![];
    poll(timeout, || {
        left = find();
        left.is_empty()
    });
    for p in &left {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
    }
    left.iter().map(|p| format!("process left: {p}")).collect()
}

fn json_file(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

/// The parts of a generated config.json that berth part 1 cares about.
pub fn security_summary(cfg: &Value) -> String {
    let l = &cfg["linux"];
    let seccomp = match &l["seccomp"] {
        Value::Null => "none".to_string(),
        s => format!(
            "defaultAction {} with {} syscall rules",
            s["defaultAction"],
            s["syscalls"].as_array().map_or(0, |a| a.len())
        ),
    };
    format!(
        "linux.resources = {}\n    linux.seccomp = {}\n    linux.devices: {} entries, capabilities.bounding: {}, \
         maskedPaths: {}, readonlyPaths: {}, noNewPrivileges: {}",
        l["resources"],
        seccomp,
        l["devices"].as_array().map_or(0, |a| a.len()),
        cfg["process"]["capabilities"]["bounding"]
            .as_array()
            .map_or(0, |a| a.len()),
        l["maskedPaths"].as_array().map_or(0, |a| a.len()),
        l["readonlyPaths"].as_array().map_or(0, |a| a.len()),
        cfg["process"]["noNewPrivileges"],
    )
}

/// Asserts what `Profile::Part1` promises: no seccomp, and `linux.resources`
/// is exactly an allow-all device list.
#[track_caller]
pub fn assert_part1_config(cfg: &Value) {
    assert!(
        cfg["linux"]["seccomp"].is_null(),
        "config carries seccomp: {}",
        security_summary(cfg)
    );
    let want = serde_json::json!({"devices": [{"allow": true, "access": "rwm"}]});
    assert_eq!(
        cfg["linux"]["resources"],
        want,
        "resources beyond an allow-all device list: {}",
        security_summary(cfg)
    );
}

// ---------------------------------------------------------------------------
// Image

/// Podman's default masked paths (podman 4.3, unprivileged), put back with
/// `--security-opt mask=` since `--privileged` drops them.
pub const PODMAN_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

pub const IMAGE: &str = "localhost/berth-busybox:test";
const IMAGE_PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---------------------------------------------------------------------------
// podman

pub struct Podman {
    pub dir: TempDir,
    pub runtime: PathBuf,
    pub profile: Profile,
    /// `--cgroup-parent` of every container (conmon goes to `<parent>/conmon`).
    pub cgroup_parent: String,
    logs: PathBuf,
    /// Full ids of containers created, for the teardown checks.
    ids: Vec<String>,
    /// The runtime's default root when this harness created it (removed again
    /// at teardown if empty).
    made_default_root: Option<PathBuf>,
    torn_down: bool,
}

/// Default `--root` of the runtimes we know (podman never passes one).
pub fn default_runtime_root(runtime: &Path) -> Option<PathBuf> {
    let name = runtime.file_name()?.to_str()?;
    ["berth", "runc", "crun", "youki"]
        .contains(&name)
        .then(|| PathBuf::from(format!("/run/{name}")))
}

impl Podman {
    pub fn new(runtime: &Path, profile: Profile) -> Podman {
        let dir = TempDir::new("be-podman");
        for d in ["root", "runroot", "tmp", "net", "logs", "bigtmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let rt_name = runtime.file_name().unwrap().to_string_lossy().into_owned();
        // pids_limit = 0: no `linux.resources.pids` at all (the `--pids-limit 0`
        // flag instead writes `"pids": {"limit": 0}`). runtime_supports_json:
        // podman passes `--log-format=json` only to runtimes named here (by
        // file name); berth writes runc's JSON log lines, so list it.
        let pids = match profile {
            Profile::Part1 => "pids_limit = 0\n",
            Profile::Defaults => "",
        };
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\n{pids}\n[engine]\nlock_type = \"file\"\n\
                 runtime_supports_json = [\"crun\", \"runc\", \"berth\", \"{rt_name}\"]\n"
            ),
        )
        .unwrap();
        fs::write(
            dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("runroot").display()
            ),
        )
        .unwrap();
        fs::write(dir.join("registries.conf"), "unqualified-search-registries = []\n").unwrap();
        let cgroup_parent = format!(
            "/berth-engines-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let logs = dir.join("logs");
        Podman {
            dir,
            runtime: runtime.to_path_buf(),
            profile,
            cgroup_parent,
            logs,
            ids: vec![],
            made_default_root: default_runtime_root(runtime).filter(|r| !r.exists()),
            torn_down: false,
        }
    }

    fn command(&self) -> Command {
        let d = &self.dir;
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
            .env("TMPDIR", d.join("bigtmp"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args(["--storage-driver", "vfs", "--network-backend", "cni"])
            .args(["--cgroup-manager=cgroupfs", "--events-backend=file"])
            .arg("--runtime")
            .arg(&self.runtime);
        c
    }

    /// `podman <global flags> <args>`.
    pub fn cmd(&self, args: &[&str]) -> Out {
        let mut c = self.command();
        c.args(args);
        run(c, &self.logs, CMD_TIMEOUT)
    }

    /// Imports the busybox rootfs as `IMAGE` (tar of the rootfs, `podman import`).
    pub fn import_busybox(&self) {
        let tar = self.dir.join("busybox.tar");
        let mut t = Command::new("tar");
        t.arg("-C").arg(berth_tests::rootfs()).arg("-cf").arg(&tar).arg(".");
        run(t, &self.logs, CMD_TIMEOUT).ok();
        let mut c = self.command();
        c.args([
            "import",
            "--change",
            "CMD [\"/bin/sh\"]",
            "--change",
            &format!("ENV {IMAGE_PATH_ENV}"),
        ])
        .arg(&tar)
        .arg(IMAGE);
        // Private mount namespace, tmpfs over /var/lib: see the module docs.
        unsafe {
            c.pre_exec(|| {
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(
                        c"none".as_ptr(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    || libc::mount(
                        c"berth-test".as_ptr(),
                        c"/var/lib".as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        c"mode=755,size=64m".as_ptr() as *const libc::c_void,
                    ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run(c, &self.logs, CMD_TIMEOUT).ok();
    }

    /// Flags for `podman run`/`create`: isolation, the MACHINE.md flags and the
    /// security profile.
    pub fn run_flags(&self) -> Vec<String> {
        let mut f: Vec<String> = [
            "--network",
            "none",
            "--pull",
            "never",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
            "--cgroup-parent",
            &self.cgroup_parent,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if self.profile == Profile::Part1 {
            f.push("--privileged".into());
            f.push("--security-opt".into());
            f.push("no-new-privileges".into());
            f.push("--security-opt".into());
            f.push(format!("mask={}", PODMAN_MASKED_PATHS.join(":")));
        }
        f
    }

    /// `podman run <run_flags> <extra> IMAGE <cmd>`.
    pub fn run_container(&mut self, extra: &[&str], cmd: &[&str]) -> Out {
        let flags = self.run_flags();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(|s| s.as_str()));
        args.extend(extra);
        args.push(IMAGE);
        args.extend(cmd);
        self.cmd(&args)
    }

    /// Full id of container `name`, remembered for the teardown checks.
    pub fn id_of(&mut self, name: &str) -> String {
        let id = self
            .cmd(&["inspect", "--format", "{{.Id}}", name])
            .ok()
            .stdout
            .trim()
            .to_string();
        assert_eq!(id.len(), 64, "podman inspect id: {id:?}");
        if !self.ids.contains(&id) {
            self.ids.push(id.clone());
        }
        id
    }

    pub fn inspect(&self, name: &str, fmt: &str) -> String {
        self.cmd(&["inspect", "--format", fmt, name])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// The config.json podman generated for container `id` (its bundle is the
    /// container's userdata dir).
    pub fn config_of(&self, id: &str) -> Value {
        json_file(&self.dir.join(&format!("root/vfs-containers/{id}/userdata/config.json")))
    }

    pub fn runtime_state(&self, id: &str) -> Out {
        let mut c = Command::new(&self.runtime);
        // As podman calls it: XDG_RUNTIME_DIR empty for root (crun would
        // otherwise pick $XDG_RUNTIME_DIR/crun as its root, e.g. in the VM).
        c.env("XDG_RUNTIME_DIR", "").args(["state", id]);
        run(c, &self.logs, CMD_TIMEOUT)
    }

    /// `<runtime> state <id>` (default root, as podman uses it) as JSON.
    pub fn runtime_state_json(&self, id: &str) -> Value {
        let out = self.runtime_state(id).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("state JSON: {e}\n{out}"))
    }

    /// Removes every container and image through podman, then checks that
    /// nothing is left: processes (conmon, cleanup, container), the runtime's
    /// state for each container, container cgroups, mounts. Force-cleans
    /// whatever it reports. Returns the leaks.
    pub fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        let mut leaks = vec![];
        let out = self.cmd(&["rm", "--all", "--force", "--time", "0"]);
        if out.code != 0 {
            leaks.push(format!("podman rm --all failed:\n{out}"));
        }
        let _ = self.cmd(&["rmi", "--all", "--force"]);
        leaks.extend(self.sweep());
        leaks
    }

    fn sweep(&mut self) -> Vec<String> {
        let mut leaks = settle_processes(self.dir.path(), &[self.cgroup_parent.clone()], Duration::from_secs(60));
        for id in &self.ids {
            let st = self.runtime_state(id);
            if st.code == 0 {
                leaks.push(format!("runtime still knows container {id}: {}", st.stdout.trim()));
                let mut c = Command::new(&self.runtime);
                c.env("XDG_RUNTIME_DIR", "").args(["delete", "--force", id]);
                let _ = run(c, &self.logs, CMD_TIMEOUT);
            }
            let cg = format!("{}/libpod-{id}", self.cgroup_parent);
            let dirs = leaks::cgroup_dirs(&cg);
            if !dirs.is_empty() {
                leaks.push(format!("container cgroup left: {dirs:?}"));
            }
        }
        let ms = mounts_below(self.dir.path());
        if !ms.is_empty() {
            leaks.push(format!("mounts left: {ms:?}"));
        }
        unmount_below(self.dir.path());
        remove_cgroup_tree(&self.cgroup_parent);
        let dirs = leaks::cgroup_dirs(&self.cgroup_parent);
        if !dirs.is_empty() {
            leaks.push(format!("cgroups could not be removed: {dirs:?}"));
        }
        if let Some(r) = &self.made_default_root {
            let _ = fs::remove_dir(r); // only if empty: others may use it
        }
        leaks
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if !self.torn_down {
            // A test failed part-way: remove what podman can, then sweep.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.torn_down = true;
                let _ = self.cmd(&["rm", "--all", "--force", "--time", "0"]);
                let _ = self.sweep();
            }));
        }
    }
}

// ---------------------------------------------------------------------------
// containerd + ctr

pub struct Containerd {
    pub dir: TempDir,
    pub runtime: PathBuf,
    pub profile: Profile,
    /// containerd namespace; `ctr run` puts containers in cgroup `/<ns>/<id>`.
    pub ns: String,
    sock: PathBuf,
    logs: PathBuf,
    daemon: Option<Child>,
    made_run_containerd: bool,
    /// crun makes its default root (/run/crun) even when given `--root`;
    /// removed again at teardown if this harness created it and it is empty.
    made_default_root: Option<PathBuf>,
    torn_down: bool,
}

impl Containerd {
    /// Starts a private containerd and waits until it answers.
    pub fn start(runtime: &Path, profile: Profile) -> Containerd {
        let dir = TempDir::new("be-ctrd");
        for d in ["root", "state", "opt", "tmp", "rt", "fifo", "logs"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let sock = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            opt = dir.join("opt").display(),
        );
        fs::write(dir.join("config.toml"), config).unwrap();
        let made_run_containerd = !Path::new("/run/containerd").exists();
        let log = fs::File::create(dir.join("containerd.log")).unwrap();
        let mut c = Command::new("containerd");
        c.arg("--config")
            .arg(dir.join("config.toml"))
            .env("TMPDIR", dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        println!("+ containerd --config {}", dir.join("config.toml").display());
        let daemon = c.spawn().expect("spawn containerd");
        let ns = format!(
            "berth-engines-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let logs = dir.join("logs");
        let mut me = Containerd {
            dir,
            runtime: runtime.to_path_buf(),
            profile,
            ns,
            sock,
            logs,
            daemon: Some(daemon),
            made_run_containerd,
            made_default_root: default_runtime_root(runtime).filter(|r| !r.exists()),
            torn_down: false,
        };
        let up = wait_for(Duration::from_secs(120), || {
            if let Some(st) = me.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("containerd exited ({st}):\n{}", me.daemon_log());
            }
            if !me.sock.exists() {
                return None;
            }
            let mut c = Command::new("ctr");
            c.arg("--address").arg(&me.sock).arg("version");
            (run(c, &me.logs, CMD_TIMEOUT).code == 0).then_some(())
        });
        assert!(up.is_some(), "containerd did not come up:\n{}", me.daemon_log());
        me
    }

    pub fn daemon_log(&self) -> String {
        fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address <sock> -n <ns> <args>`.
    pub fn ctr(&self, args: &[&str]) -> Out {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.sock)
            .args(["--namespace", &self.ns])
            .args(args);
        run(c, &self.logs, CMD_TIMEOUT)
    }

    /// Builds an OCI image layout of the busybox rootfs with umoci (no
    /// registry), and `ctr images import`s it as `IMAGE`.
    pub fn import_busybox(&self) {
        let layout = self.dir.join("oci");
        let image = format!("{}:test", layout.display());
        let rootfs = berth_tests::rootfs();
        let steps: Vec<Vec<String>> = vec![
            vec!["init".into(), "--layout".into(), layout.display().to_string()],
            vec!["new".into(), "--image".into(), image.clone()],
            vec![
                "insert".into(),
                "--image".into(),
                image.clone(),
                rootfs.display().to_string(),
                "/".into(),
            ],
            vec![
                "config".into(),
                "--image".into(),
                image.clone(),
                "--config.cmd".into(),
                "/bin/sh".into(),
                "--config.env".into(),
                IMAGE_PATH_ENV.into(),
            ],
            vec!["gc".into(), "--layout".into(), layout.display().to_string()],
        ];
        for s in steps {
            let mut c = Command::new("umoci");
            c.args(&s).env("TMPDIR", self.dir.join("tmp"));
            run(c, &self.logs, CMD_TIMEOUT).ok();
        }
        let tar = self.dir.join("busybox-oci.tar");
        let mut t = Command::new("tar");
        t.arg("-C").arg(&layout).arg("-cf").arg(&tar).arg(".");
        run(t, &self.logs, CMD_TIMEOUT).ok();
        // The layout's ref name "test" becomes "<base-name>:test".
        self.ctr(&[
            "images",
            "import",
            "--base-name",
            IMAGE.trim_end_matches(":test"),
            &tar.display().to_string(),
        ])
        .ok();
    }

    /// The runtime root ctr hands the shim (`--runc-root`); the shim runs the
    /// runtime with `--root <this>/<namespace>`.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("rt")
    }

    /// Flags for `ctr run`: runtime by path, its root, FIFOs, security profile.
    pub fn run_flags(&self) -> Vec<String> {
        let mut f = vec![
            "--runc-binary".to_string(),
            self.runtime.display().to_string(),
            "--runc-root".into(),
            self.runtime_root().display().to_string(),
            "--fifo-dir".into(),
            self.dir.join("fifo").display().to_string(),
        ];
        match self.profile {
            // `ctr run` writes `cpu.shares: 1024` unless told 0.
            Profile::Part1 => f.extend(["--privileged".into(), "--cpu-shares".into(), "0".into()]),
            Profile::Defaults => f.push("--seccomp".into()),
        }
        f
    }

    /// `ctr run <run_flags> <extra> IMAGE <id> <cmd>`.
    pub fn run_container(&self, extra: &[&str], id: &str, cmd: &[&str]) -> Out {
        let flags = self.run_flags();
        let mut args: Vec<&str> = vec!["run"];
        args.extend(flags.iter().map(|s| s.as_str()));
        args.extend(extra);
        args.push(IMAGE);
        args.push(id);
        args.extend(cmd);
        self.ctr(&args)
    }

    /// The config.json in the shim's bundle for a live task.
    pub fn config_of(&self, id: &str) -> Value {
        json_file(&self.dir.join(&format!(
            "state/io.containerd.runtime.v2.task/{}/{id}/config.json",
            self.ns
        )))
    }

    /// `<runtime> --root <runtime_root>/<ns> state <id>`.
    pub fn runtime_state(&self, id: &str) -> Out {
        let mut c = Command::new(&self.runtime);
        c.arg("--root")
            .arg(self.runtime_root().join(&self.ns))
            .args(["state", id]);
        run(c, &self.logs, CMD_TIMEOUT)
    }

    /// Status column of `ctr task ls` for `id` (None if no such task).
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ctr(&["task", "ls"]).ok();
        out.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(2).map(|s| s.to_string()))
    }

    /// Kills/deletes every task and container, removes images, stops
    /// containerd, then checks that nothing is left (shims, container
    /// processes, runtime state, cgroups, mounts). Returns the leaks.
    pub fn teardown(&mut self) -> Vec<String> {
        self.torn_down = true;
        let mut leaks = vec![];
        let tasks = self.ctr(&["task", "ls", "--quiet"]);
        for id in tasks.stdout.split_whitespace() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
            wait_for(Duration::from_secs(30), || {
                (self.task_status(id).as_deref() != Some("RUNNING")).then_some(())
            });
            let out = self.ctr(&["task", "delete", "--force", id]);
            leaks.push(format!(
                "task {id} was still there at teardown (delete: exit {})",
                out.code
            ));
        }
        for id in self.ctr(&["containers", "ls", "--quiet"]).stdout.split_whitespace() {
            let out = self.ctr(&["containers", "rm", id]);
            if out.code != 0 {
                leaks.push(format!("ctr containers rm {id} failed:\n{out}"));
            }
        }
        let _ = self.ctr(&["images", "rm", IMAGE]);
        leaks.extend(self.sweep());
        leaks
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let gone = wait_for(Duration::from_secs(30), || d.try_wait().unwrap().map(|_| ()));
            if gone.is_none() {
                unsafe { libc::kill(d.id() as i32, libc::SIGKILL) };
                let _ = d.wait();
            }
        }
    }

    fn sweep(&mut self) -> Vec<String> {
        self.stop_daemon();
        let cg = format!("/{}", self.ns);
        let mut leaks = settle_processes(self.dir.path(), &[cg.clone()], Duration::from_secs(60));
        let rtns = self.runtime_root().join(&self.ns);
        if let Ok(rd) = fs::read_dir(&rtns) {
            for e in rd.flatten() {
                leaks.push(format!("runtime state left: {}", e.path().display()));
            }
        }
        for d in leaks::cgroup_dirs(&cg) {
            for e in fs::read_dir(&d)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
            {
                leaks.push(format!("container cgroup left: {}", e.path().display()));
            }
        }
        let ms = mounts_below(self.dir.path());
        if !ms.is_empty() {
            leaks.push(format!("mounts left: {ms:?}"));
        }
        unmount_below(self.dir.path());
        remove_cgroup_tree(&cg);
        let dirs = leaks::cgroup_dirs(&cg);
        if !dirs.is_empty() {
            leaks.push(format!("cgroups could not be removed: {dirs:?}"));
        }
        if self.made_run_containerd {
            // Only empty directories go: another containerd may be using them.
            let _ = fs::remove_dir("/run/containerd/s");
            let _ = fs::remove_dir("/run/containerd");
        }
        if let Some(r) = &self.made_default_root {
            let _ = fs::remove_dir(r);
        }
        leaks
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if !self.torn_down {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.torn_down = true;
                for id in self.ctr(&["task", "ls", "--quiet"]).stdout.split_whitespace() {
                    let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
                    let _ = self.ctr(&["task", "delete", "--force", id]);
                }
                let _ = self.sweep();
            }));
        }
        self.stop_daemon();
    }
}
