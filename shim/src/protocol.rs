//! What the daemon reads: the exit file, the pid file, the sync report.
//! Every file is written atomically (temp file, fsync, rename, fsync of the
//! directory), so a reader sees either nothing or the whole record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{io_err, Result};

/// `<exit-dir>/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status; `128 + signal` when killed by a signal (the shell's convention).
    pub exit_code: i32,
    /// The signal that killed the container's init, if any.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339 (UTC, nanoseconds) time `start` succeeded, when the shim ran it; else null.
    pub started_at: Option<String>,
    /// RFC 3339 time the shim reaped the init.
    pub finished_at: String,
}

/// What the shim's first process prints (or writes to `--sync-fd`): one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The container exists (created, and started when `--start` was given).
    Pid(i32),
    /// Anything failed; the text is the runtime's own message when it has one.
    Error(String),
}

impl Report {
    pub fn line(&self) -> String {
        match self {
            Report::Pid(p) => format!("{p}\n"),
            // One line: the caller reads up to the newline.
            Report::Error(e) => format!("error: {}\n", e.trim().replace('\n', "; ")),
        }
    }

    pub fn parse(s: &str) -> Option<Report> {
        let s = s.strip_suffix('\n').unwrap_or(s);
        if let Some(e) = s.strip_prefix("error: ") {
            return Some(Report::Error(e.to_string()));
        }
        s.parse().ok().map(Report::Pid)
    }
}

/// Writes `data` to `path` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io_err(format!("create {}", tmp.display())))?;
        f.write_all(data).map_err(io_err(format!("write {}", tmp.display())))?;
        f.sync_all().map_err(io_err(format!("fsync {}", tmp.display())))?;
        std::fs::rename(&tmp, path).map_err(io_err(format!("rename {} to {}", tmp.display(), path.display())))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("fsync directory {}", dir.display())))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

pub fn write_exit_file(path: &Path, rec: &ExitRecord) -> Result<()> {
    let mut data = serde_json::to_vec(rec).expect("exit record serialises");
    data.push(b'\n');
    write_atomic(path, &data)
}

pub fn read_exit_file(path: &Path) -> Result<ExitRecord> {
    let text = std::fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| crate::Error::Usage(format!("{}: {e}", path.display())))
}

/// A pid file: the decimal pid and a newline.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    write_atomic(path, format!("{pid}\n").as_bytes())
}

/// RFC 3339 with nanoseconds, UTC (`2026-11-23T13:29:25.000000005Z`): the shape Go's
/// `time.RFC3339Nano` parses (kubelet's CRI log reader). The runtime's formatter.
pub use berth_runtime::timefmt::{now, rfc3339_nanos as rfc3339_nano};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_rfc3339_nano() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.000000005Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339_nano(t), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn report_round_trips() {
        assert_eq!(Report::Pid(42).line(), "42\n");
        assert_eq!(Report::parse("42\n"), Some(Report::Pid(42)));
        let e = Report::Error("berth: no such file\nsecond".into());
        assert_eq!(e.line(), "error: berth: no such file; second\n");
        assert_eq!(Report::parse(&e.line()), Some(Report::Error("berth: no such file; second".into())));
        assert_eq!(Report::parse(""), None);
    }

    #[test]
    fn exit_file_is_atomic_json() {
        let dir = std::env::temp_dir().join(format!("berth-shim-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        let rec = ExitRecord { exit_code: 137, signal: Some(9), oom_killed: false, started_at: None, finished_at: now() };
        write_exit_file(&p, &rec).unwrap();
        assert_eq!(read_exit_file(&p).unwrap(), rec);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        for k in ["exit_code", "signal", "oom_killed", "started_at", "finished_at"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
        // Only the final file remains.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
