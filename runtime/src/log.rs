//! runc-compatible logging: `--log <file>` with `--log-format text|json`.
//!
//! containerd and podman read the log file after a failed call and show the last
//! `"level":"error"` message, so the JSON shape matches runc's (logrus) exactly:
//! `{"level":"error","msg":"...","time":"2026-11-23T13:29:25.123Z"}`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Where log lines go. Passed explicitly; never global.
#[derive(Debug)]
pub struct Logger {
    file: Option<File>,
    format: Format,
    min: Level,
}

impl Logger {
    /// Logs to `path` (append, created 0644) or to stderr when none.
    pub fn open(path: Option<&Path>, format: Format, debug: bool) -> std::io::Result<Logger> {
        let file = match path {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o644)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(Logger { file, format, min: if debug { Level::Debug } else { Level::Info } })
    }

    pub fn stderr() -> Logger {
        Logger { file: None, format: Format::Text, min: Level::Info }
    }

    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    pub fn debug_enabled(&self) -> bool {
        self.min <= Level::Debug
    }

    pub fn log(&self, level: Level, msg: &str) {
        if level < self.min {
            return;
        }
        let line = format_line(self.format, level, msg);
        match &self.file {
            // One write per line so concurrent writers (parent and init) never interleave.
            Some(f) => {
                let _ = (&*f).write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    pub fn debug(&self, msg: &str) {
        self.log(Level::Debug, msg)
    }
    pub fn info(&self, msg: &str) {
        self.log(Level::Info, msg)
    }
    pub fn warn(&self, msg: &str) {
        self.log(Level::Warn, msg)
    }
    /// Errors go to the log file (if any) and always one line to stderr.
    pub fn error(&self, msg: &str) {
        if self.file.is_some() {
            self.log(Level::Error, msg);
        }
        let _ = writeln!(std::io::stderr(), "berth: {msg}");
    }
}

fn format_line(format: Format, level: Level, msg: &str) -> String {
    let time = crate::timefmt::now();
    match format {
        Format::Json => {
            let v = serde_json::json!({ "level": level.as_str(), "msg": msg, "time": time });
            format!("{v}\n")
        }
        Format::Text => {
            format!("time=\"{time}\" level={} msg={}\n", level.as_str(), quote(msg))
        }
    }
}

/// logrus-style quoting: bare if simple, else a JSON-escaped string.
fn quote(s: &str) -> String {
    let simple = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    if simple {
        s.to_string()
    } else {
        serde_json::Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_runc_fields() {
        let line = format_line(Format::Json, Level::Error, "start x: boom");
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "start x: boom");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn text_line_quotes_spaces() {
        let line = format_line(Format::Text, Level::Warn, "a b");
        assert!(line.contains("level=warning msg=\"a b\""), "{line}");
    }
}
