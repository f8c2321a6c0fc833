//! The persisted state of one container: `<root>/<id>/state.json`, written crash-safely.
//!
//! While a container is `created`, `<root>/<id>/exec.fifo` also exists: its init is blocked
//! opening it for writing, and `start` opens it for reading to release the init.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hooks, Spec};
use serde_json::value::RawValue;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of that pid (ticks since boot), so a reused pid is never mistaken for it.
    pub pid_start: u64,
    /// While `create` runs: its pid and start time (the state is provisional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<(i32, u64)>,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: BTreeMap<String, String>,
    /// Absolute cgroup directories the container was placed in.
    pub cgroup_paths: Vec<PathBuf>,
    /// The config's hooks (start and delete run them; kept apart so they need no full parse).
    pub hooks: Option<Hooks>,
    /// The container has its own pid namespace (its init's death ends every process).
    pub own_pidns: bool,
    /// The config the container was created from, verbatim (exec parses it).
    pub config: Box<RawValue>,
}

/// Container ids follow runc's rule: letters, digits, `_ + - .`, not `.` or `..`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Container(format!("invalid container id {id:?}: use letters, digits, '_', '+', '-', '.'")))
    }
}

pub fn state_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl State {
    /// The full config (parsed on demand: only exec needs all of it).
    pub fn spec(&self) -> Result<Spec> {
        crate::config::parse_spec(self.config.get()).map_err(|e| Error::Container(format!("container {}: stored config: {e}", self.id)))
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        state_dir(root, &self.id)
    }

    pub fn load(root: &Path, id: &str) -> Result<State> {
        check_id(id)?;
        let path = state_dir(root, id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Container(format!("container {id} does not exist")))
            }
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Container(format!("{}: corrupt state: {e}", path.display())))
    }

    /// temp file, fsync, rename, fsync the directory.
    pub fn save(&self, root: &Path) -> Result<()> {
        self.write(root, true)
    }

    /// temp file and rename only: for the provisional state of a create in progress,
    /// which the final `save` replaces (and which means nothing after a machine crash).
    pub fn save_fast(&self, root: &Path) -> Result<()> {
        self.write(root, false)
    }

    fn write(&self, root: &Path, durable: bool) -> Result<()> {
        let dir = self.dir(root);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self).expect("state serialises");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .with_ctx(|| format!("create {}", tmp.display()))?;
        f.write_all(&data).with_ctx(|| format!("write {}", tmp.display()))?;
        if durable {
            f.sync_all().with_ctx(|| format!("fsync {}", tmp.display()))?;
        }
        fs::rename(&tmp, dir.join(STATE_FILE)).with_ctx(|| format!("rename {}", tmp.display()))?;
        if durable {
            fs::File::open(&dir).and_then(|d| d.sync_all()).with_ctx(|| format!("fsync {}", dir.display()))?;
        }
        Ok(())
    }

    /// Is the init process (the very one we started) still there and not a zombie?
    pub fn init_alive(&self) -> bool {
        crate::syscalls::process_start_time(self.pid) == Some(self.pid_start)
            && crate::syscalls::process_state(self.pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    pub fn status(&self, root: &Path) -> Status {
        if let Some((pid, start)) = self.creator {
            // A create still at work, or one that died half-way (then: stopped, deletable).
            let alive = crate::syscalls::process_start_time(pid) == Some(start);
            return if alive { Status::Creating } else { Status::Stopped };
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir(root).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if crate::cgroups::is_frozen(&self.cgroup_paths) {
            return Status::Paused;
        }
        Status::Running
    }

    /// The state JSON of the OCI runtime spec (plus runc's extra fields).
    pub fn to_oci_json(&self, root: &Path) -> serde_json::Value {
        let status = self.status(root);
        let pid = if status == Status::Stopped { 0 } else { self.pid };
        serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "id": self.id,
            "pid": pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }

    /// The state passed to hooks on stdin (the spec's state object).
    pub fn hook_json(&self, status: Status) -> String {
        serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "id": self.id,
            "pid": self.pid,
            "status": status.as_str(),
            "bundle": self.bundle,
            "annotations": self.annotations,
        })
        .to_string()
    }
}

/// Create `<root>` (0700) and `<root>/<id>` (0711); a second container with the same id fails.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf> {
    check_id(id)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .with_ctx(|| format!("create state root {}", root.display()))?;
    let dir = state_dir(root, id);
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(Error::Container(format!("container {id} already exists")))
        }
        Err(e) => Err(Error::io(format!("create {}", dir.display()), e)),
    }
}

/// Every container id under `root`.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io(format!("read {}", root.display()), e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("abc-1_2+3.4").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }
}
