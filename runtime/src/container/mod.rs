//! The lifecycle operations, one file each, over the persisted [`crate::state`].

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod foreground;
pub mod kill;
pub mod list;
pub mod pause;
pub mod ps;
pub mod run;
pub mod start;
pub mod state;
pub mod update;

use std::path::PathBuf;

use crate::log::Logger;

/// What every operation needs: the global flags.
pub struct Ctx {
    pub root: PathBuf,
    pub log: Logger,
    pub systemd_cgroup: bool,
}

impl Ctx {
    pub fn check_cgroup_driver(&self) -> crate::Result<()> {
        if self.systemd_cgroup {
            return Err(crate::Error::Unsupported(
                "--systemd-cgroup: berth has no systemd cgroup driver; use the cgroupfs driver (drop --systemd-cgroup)".into(),
            ));
        }
        Ok(())
    }
}

/// Write a pid file atomically (engines read it as soon as the runtime exits).
pub fn write_pid_file(path: &std::path::Path, pid: i32) -> crate::Result<()> {
    use crate::error::IoContext;
    let tmp = path.with_file_name(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")));
    std::fs::write(&tmp, pid.to_string()).with_ctx(|| format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_ctx(|| format!("write pid file {}", path.display()))
}
