//! An OCI bundle for one container: a directory, a config.json built from a
//! runc-spec-like base, and a rootfs (the shared busybox tree, or a private
//! copy when the test needs to write into it).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::json as j;

/// What `Runtime::create` writes to `config.json`.
#[derive(Debug, Clone)]
enum ConfigFile {
    Json,
    Raw(String),
    Missing,
}

/// A bundle under the test's temporary directory. Made by
/// [`crate::Runtime::bundle`], which registers its id and cgroup path for the
/// leak checks. Dropping it removes nothing: the `Runtime` guard cleans up.
#[derive(Debug, Clone)]
pub struct Bundle {
    id: String,
    dir: PathBuf,
    rootfs: PathBuf,
    private_rootfs: bool,
    cgroups_path: String,
    config: Value,
    file: ConfigFile,
}

/// The base config: `runc spec` output minus `linux.resources` (and minus the
/// /sys/fs/cgroup mount), with `terminal: false`, the given absolute rootfs
/// writable (tests must not write into the shared one), and a per-test
/// `cgroupsPath`.
pub fn base_config(rootfs: &Path, cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "ambient": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": rootfs.to_str().expect("utf-8 rootfs path"), "readonly": false},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

impl Bundle {
    pub(crate) fn new(id: String, dir: PathBuf, shared_rootfs: PathBuf, cgroups_path: String) -> Bundle {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let config = base_config(&shared_rootfs, &cgroups_path);
        Bundle { id, dir, rootfs: shared_rootfs, private_rootfs: false, cgroups_path, config, file: ConfigFile::Json }
    }

    /// The container id (unique per test run).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bundle directory (passed as `--bundle`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the bundle directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `linux.cgroupsPath` as set in the config (`/berth-test/<id>`).
    pub fn cgroups_path(&self) -> &str {
        &self.cgroups_path
    }

    /// Host path of the rootfs the container will use.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// Host path of `p` (absolute, container view) inside the rootfs.
    pub fn rootfs_path(&self, p: &str) -> PathBuf {
        self.rootfs.join(p.trim_start_matches('/'))
    }

    /// Container stdout/stderr files for `create` / `run` (the runtime's own
    /// stderr also lands in the stderr file).
    pub fn stdout_path(&self) -> PathBuf {
        self.dir.join("ctr.stdout")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.join("ctr.stderr")
    }

    /// What the container has written to stdout so far.
    pub fn stdout(&self) -> String {
        crate::cmd::read_lossy(&self.stdout_path())
    }

    pub fn stderr(&self) -> String {
        crate::cmd::read_lossy(&self.stderr_path())
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// Value at a dotted path (`"process.args"`), see [`crate::json`].
    pub fn get(&self, path: &str) -> Option<&Value> {
        j::get(&self.config, path)
    }

    /// Sets a dotted path (`set("process.cwd", json!("/tmp"))`).
    pub fn set(&mut self, path: &str, v: Value) -> &mut Self {
        j::set(&mut self.config, path, v);
        self
    }

    /// Sets a path given as segments (for keys with dots, e.g. annotations).
    pub fn set_at(&mut self, path: &[&str], v: Value) -> &mut Self {
        j::set_at(&mut self.config, path, v);
        self
    }

    /// Appends to the array at a dotted path.
    pub fn push(&mut self, path: &str, v: Value) -> &mut Self {
        j::push(&mut self.config, path, v);
        self
    }

    pub fn remove(&mut self, path: &str) -> &mut Self {
        j::remove(&mut self.config, path);
        self
    }

    /// Arbitrary edit of the config.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self
    }

    /// `process.args`.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("process.args", json!(args))
    }

    /// `process.args = ["sh", "-c", script]`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// A container that just waits (`sleep 1000`) until killed.
    pub fn sleeper(&mut self) -> &mut Self {
        self.args(&["sleep", "1000"])
    }

    /// Adds `KEY=value` to `process.env`.
    pub fn env(&mut self, kv: &str) -> &mut Self {
        self.push("process.env", json!(kv))
    }

    pub fn terminal(&mut self, on: bool) -> &mut Self {
        self.set("process.terminal", json!(on))
    }

    /// Adds an annotation (keys may contain dots).
    pub fn annotation(&mut self, k: &str, v: &str) -> &mut Self {
        self.set_at(&["annotations", k], json!(v))
    }

    /// Removes the namespace entry of this type, if present.
    pub fn without_namespace(&mut self, ty: &str) -> &mut Self {
        if let Some(a) = self.config.pointer_mut("/linux/namespaces").and_then(Value::as_array_mut) {
            a.retain(|n| n.get("type").and_then(Value::as_str) != Some(ty));
        }
        self
    }

    /// Adds a namespace entry (`{"type": ty}` plus `path` when given).
    pub fn with_namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        self.without_namespace(ty);
        let mut ns = json!({"type": ty});
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        self.push("linux.namespaces", ns)
    }

    /// Appends a hook (`kind`: prestart, createRuntime, createContainer,
    /// startContainer, poststart, poststop).
    pub fn hook(&mut self, kind: &str, path: &str, args: &[&str], env: &[&str], timeout: Option<u32>) -> &mut Self {
        let mut h = json!({"path": path});
        if !args.is_empty() {
            h["args"] = json!(args);
        }
        if !env.is_empty() {
            h["env"] = json!(env);
        }
        if let Some(t) = timeout {
            h["timeout"] = json!(t);
        }
        self.push(&format!("hooks.{kind}"), h)
    }

    /// Bind-mounts host directory `host` at `dest` in the container
    /// (`dest` should exist in the rootfs: the shared one must not be
    /// written to, not even to create a mount point).
    pub fn bind(&mut self, host: &Path, dest: &str, options: &[&str]) -> &mut Self {
        let mut opts = vec!["rbind"];
        opts.extend_from_slice(options);
        self.push(
            "mounts",
            json!({"destination": dest, "type": "bind", "source": host.to_str().unwrap(), "options": opts}),
        )
    }

    /// A host directory (`<bundle>/shared`, mode 1777) bind-mounted at the
    /// container's `/tmp`: how a container hands files to the test. Returns
    /// the host path. Idempotent.
    pub fn shared_tmp(&mut self) -> PathBuf {
        let host = self.dir.join("shared");
        if !host.exists() {
            std::fs::create_dir(&host).unwrap();
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o1777)).unwrap();
            self.bind(&host.clone(), "/tmp", &["rw"]);
        }
        host
    }

    /// Switches to a private copy of the rootfs (`cp -a` of the shared tree
    /// into `<bundle>/rootfs`, `root.path = "rootfs"` relative), for tests
    /// that write into the rootfs. Idempotent.
    pub fn private_rootfs(&mut self) -> &mut Self {
        if self.private_rootfs {
            return self;
        }
        let dst = self.dir.join("rootfs");
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.rootfs)
            .arg(&dst)
            .status()
            .expect("spawn cp");
        assert!(st.success(), "cp -a {} {} failed", self.rootfs.display(), dst.display());
        self.rootfs = dst;
        self.private_rootfs = true;
        self.set("root.path", json!("rootfs"))
    }

    pub fn has_private_rootfs(&self) -> bool {
        self.private_rootfs
    }

    /// Writes a file into the (private) rootfs; `p` is the container path.
    pub fn write_in_rootfs(&mut self, p: &str, contents: &str, mode: u32) -> &mut Self {
        assert!(self.private_rootfs, "write_in_rootfs({p}) needs private_rootfs() first: the shared rootfs is read-only by contract");
        let host = self.rootfs_path(p);
        if let Some(parent) = host.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        write_mode(&host, contents, mode);
        self
    }

    /// Writes an executable `#!/bin/sh` script into the bundle dir (host
    /// side) and returns its absolute path.
    pub fn host_script(&self, name: &str, body: &str) -> PathBuf {
        let p = self.dir.join(name);
        write_mode(&p, &format!("#!/bin/sh\n{body}\n"), 0o755);
        p
    }

    /// Writes an executable `#!/bin/sh` script into the private rootfs at
    /// container path `p`.
    pub fn rootfs_script(&mut self, p: &str, body: &str) -> &mut Self {
        self.write_in_rootfs(p, &format!("#!/bin/sh\n{body}\n"), 0o755)
    }

    /// Writes `text` as config.json instead of the JSON config (for
    /// malformed-config tests).
    pub fn raw_config(&mut self, text: &str) -> &mut Self {
        self.file = ConfigFile::Raw(text.to_string());
        self
    }

    /// Writes no config.json at all (and removes one written before).
    pub fn no_config(&mut self) -> &mut Self {
        self.file = ConfigFile::Missing;
        self
    }

    /// Writes config.json (done by `Runtime::create`/`run` automatically).
    pub fn write_config(&self) {
        let p = self.dir.join("config.json");
        match &self.file {
            ConfigFile::Json => {
                std::fs::write(&p, serde_json::to_string_pretty(&self.config).unwrap()).unwrap()
            }
            ConfigFile::Raw(t) => std::fs::write(&p, t).unwrap(),
            ConfigFile::Missing => {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

pub(crate) fn write_mode(p: &Path, contents: &str, mode: u32) {
    std::fs::write(p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}
