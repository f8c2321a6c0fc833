//! The daemon's configuration: a TOML file (`--config`) with flags on top.
//!
//! ```toml
//! state_dir = "/var/lib/berth"          # images, snapshots, metadata
//! run_dir = "/run/berthlet"             # socket, lock, runtime root, shims
//! socket = "/run/berthlet/berthlet.sock" # default: <run_dir>/berthlet.sock
//! log_level = "info"                    # or tracing directives: "info,berthlet=debug"
//! insecure_registries = ["127.0.0.1:5000"] # plain HTTP allowed for these host:port
//! image_gc_high_threshold_percent = 85  # images fs usage that starts a gc
//! image_gc_low_threshold_percent = 80   # the usage a gc aims for
//! image_gc_interval_seconds = 300       # how often usage is checked
//!
//! [registries."registry.example:5000"]
//! username = "user"
//! password = "secret"
//! ca_file = "/etc/berth/certs/registry.example.pem"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth";
pub const DEFAULT_RUN_DIR: &str = "/run/berthlet";
pub const SOCKET_NAME: &str = "berthlet.sock";
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's own Display quotes the offending source line, which may hold a password:
    /// this carries only its message (string values hidden) and where it is.
    #[error("config file {path}: line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config: {0}")]
    Invalid(String),
}

/// Credentials and trust for one registry (`[registries."host:port"]`).
/// Its `Debug` hides the password and token.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub username: Option<String>,
    pub password: Option<String>,
    /// A bearer token sent as is, instead of username/password.
    pub token: Option<String>,
    /// Plain HTTP for this registry (same as listing it in insecure_registries).
    #[serde(default)]
    pub insecure: bool,
    /// PEM file with the CA(s) that sign this registry's certificate, in
    /// addition to the system's.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RegistryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "***");
        f.debug_struct("RegistryEntry")
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("insecure", &self.insecure)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The file as written; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub log_level: Option<String>,
    #[serde(default)]
    pub insecure_registries: Vec<String>,
    #[serde(default)]
    pub registries: BTreeMap<String, RegistryEntry>,
    pub image_gc_high_threshold_percent: Option<u8>,
    pub image_gc_low_threshold_percent: Option<u8>,
    pub image_gc_interval_seconds: Option<u64>,
}

/// Flags given on the command line; each one set wins over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub log_level: Option<String>,
    /// Added to the file's list.
    pub insecure_registries: Vec<String>,
}

/// When image garbage collection runs on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GcPolicy {
    /// Usage (percent of the images filesystem) at or above which a gc runs.
    pub high_threshold_percent: u8,
    /// The usage a gc aims to get under (unused images removal, which needs
    /// containers to know what is unused, comes with the runtime service).
    pub low_threshold_percent: u8,
    pub interval: Duration,
}

impl Default for GcPolicy {
    fn default() -> Self {
        // kubelet's defaults
        GcPolicy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            interval: Duration::from_secs(300),
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub log_level: String,
    pub insecure_registries: Vec<String>,
    pub registries: BTreeMap<String, RegistryEntry>,
    pub image_gc: GcPolicy,
}

/// 1-based line and column (in characters) of byte offset `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// serde writes an unexpected string value as `string "<value>"` (escaped as Debug):
/// a password in the wrong place would be printed. Replaces each such value.
fn hide_string_values(msg: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find(MARK) {
        out.push_str(&rest[..i]);
        out.push_str("string (value not shown)");
        let mut chars = rest[i + MARK.len()..].char_indices();
        let mut end = rest.len();
        while let Some((j, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i + MARK.len() + j + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl Config {
    /// Reads `file` (if any) and applies `flags` on top.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Config, ConfigError> {
        let fc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::parse_file(&text).map_err(|e| match e {
                    ConfigError::Parse {
                        line,
                        column,
                        message,
                        ..
                    } => ConfigError::Parse {
                        path: path.to_path_buf(),
                        line,
                        column,
                        message,
                    },
                    e => e,
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(fc, flags)
    }

    fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let (line, column) = match e.span() {
                Some(span) => line_column(text, span.start),
                None => (0, 0),
            };
            ConfigError::Parse {
                path: PathBuf::new(),
                line,
                column,
                message: hide_string_values(e.message().trim_end()),
            }
        })
    }

    /// Merges the file's values with the flags and checks the result.
    pub fn resolve(fc: FileConfig, flags: Overrides) -> Result<Config, ConfigError> {
        let state_dir = flags
            .state_dir
            .or(fc.state_dir)
            .unwrap_or_else(|| DEFAULT_STATE_DIR.into());
        let run_dir_flag = flags.run_dir.is_some();
        let run_dir = flags
            .run_dir
            .or(fc.run_dir)
            .unwrap_or_else(|| DEFAULT_RUN_DIR.into());
        // A --run-dir flag moves the default socket with it, even when the file names one.
        let file_socket = if run_dir_flag { None } else { fc.socket };
        let socket = flags
            .socket
            .or(file_socket)
            .unwrap_or_else(|| run_dir.join(SOCKET_NAME));
        let log_level = flags
            .log_level
            .or(fc.log_level)
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.into());
        let mut insecure_registries = fc.insecure_registries;
        for r in flags.insecure_registries {
            if !insecure_registries.contains(&r) {
                insecure_registries.push(r);
            }
        }
        let defaults = GcPolicy::default();
        let image_gc = GcPolicy {
            high_threshold_percent: fc
                .image_gc_high_threshold_percent
                .unwrap_or(defaults.high_threshold_percent),
            low_threshold_percent: fc
                .image_gc_low_threshold_percent
                .unwrap_or(defaults.low_threshold_percent),
            interval: fc
                .image_gc_interval_seconds
                .map(Duration::from_secs)
                .unwrap_or(defaults.interval),
        };
        let cfg = Config {
            state_dir,
            run_dir,
            socket,
            log_level,
            insecure_registries,
            registries: fc.registries,
            image_gc,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (name, p) in [
            ("state_dir", &self.state_dir),
            ("run_dir", &self.run_dir),
            ("socket", &self.socket),
        ] {
            if p.as_os_str().is_empty() {
                return bad(format!("{name} is empty"));
            }
        }
        if self.socket.as_os_str().len() > MAX_SOCKET_PATH {
            return bad(format!(
                "socket path {} is {} bytes, longer than a unix socket allows ({MAX_SOCKET_PATH})",
                self.socket.display(),
                self.socket.as_os_str().len()
            ));
        }
        let gc = &self.image_gc;
        if gc.high_threshold_percent > 100 || gc.low_threshold_percent > 100 {
            return bad(format!(
                "image_gc thresholds are percentages (0-100), got high {} low {}",
                gc.high_threshold_percent, gc.low_threshold_percent
            ));
        }
        if gc.low_threshold_percent > gc.high_threshold_percent {
            return bad(format!(
                "image_gc_low_threshold_percent ({}) is above image_gc_high_threshold_percent ({})",
                gc.low_threshold_percent, gc.high_threshold_percent
            ));
        }
        if gc.interval.is_zero() {
            return bad("image_gc_interval_seconds must be at least 1".into());
        }
        for r in self
            .insecure_registries
            .iter()
            .chain(self.registries.keys())
        {
            if r.is_empty() || r.contains('/') || r.contains("://") {
                return bad(format!(
                    "registry {r:?}: expected host or host:port, without scheme or path"
                ));
            }
        }
        Ok(())
    }

    /// `<state_dir>/images`: the image store's root.
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    /// `<state_dir>/snapshots`: container root filesystems (next issue).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.state_dir.join("snapshots")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, flags: Overrides) -> Result<Config, ConfigError> {
        Config::resolve(Config::parse_file(text)?, flags)
    }

    #[test]
    fn defaults() {
        let c = parse("", Overrides::default()).unwrap();
        assert_eq!(c.state_dir, Path::new("/var/lib/berth"));
        assert_eq!(c.run_dir, Path::new("/run/berthlet"));
        assert_eq!(c.socket, Path::new("/run/berthlet/berthlet.sock"));
        assert_eq!(c.log_level, "info");
        assert_eq!(c.image_gc, GcPolicy::default());
        assert_eq!(c.images_dir(), Path::new("/var/lib/berth/images"));
    }

    #[test]
    fn file_values_and_flag_overrides() {
        let text = r#"
            state_dir = "/s"
            run_dir = "/r"
            log_level = "debug"
            insecure_registries = ["127.0.0.1:5000"]
            image_gc_high_threshold_percent = 90
            image_gc_low_threshold_percent = 70
            image_gc_interval_seconds = 10
            [registries."127.0.0.1:5443"]
            username = "u"
            password = "p"
            ca_file = "/ca.pem"
        "#;
        let c = parse(text, Overrides::default()).unwrap();
        assert_eq!(c.state_dir, Path::new("/s"));
        assert_eq!(c.socket, Path::new("/r/berthlet.sock"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.image_gc.high_threshold_percent, 90);
        assert_eq!(c.image_gc.interval, Duration::from_secs(10));
        let r = &c.registries["127.0.0.1:5443"];
        assert_eq!(r.username.as_deref(), Some("u"));
        assert_eq!(r.ca_file.as_deref(), Some(Path::new("/ca.pem")));

        let flags = Overrides {
            state_dir: Some("/s2".into()),
            log_level: Some("warn".into()),
            insecure_registries: vec!["127.0.0.1:5000".into(), "127.0.0.1:6000".into()],
            ..Default::default()
        };
        let c = parse(text, flags).unwrap();
        assert_eq!(c.state_dir, Path::new("/s2"));
        assert_eq!(c.run_dir, Path::new("/r"));
        assert_eq!(c.log_level, "warn");
        assert_eq!(c.insecure_registries, ["127.0.0.1:5000", "127.0.0.1:6000"]);
    }

    #[test]
    fn socket_follows_run_dir_flag() {
        let text = "socket = \"/r/x.sock\"";
        assert_eq!(
            parse(text, Overrides::default()).unwrap().socket,
            Path::new("/r/x.sock")
        );
        let flags = Overrides {
            run_dir: Some("/r2".into()),
            ..Default::default()
        };
        assert_eq!(
            parse(text, flags).unwrap().socket,
            Path::new("/r2/berthlet.sock")
        );
        let flags = Overrides {
            run_dir: Some("/r2".into()),
            socket: Some("/y.sock".into()),
            ..Default::default()
        };
        assert_eq!(parse(text, flags).unwrap().socket, Path::new("/y.sock"));
    }

    #[test]
    fn refusals_name_the_problem() {
        let e = parse("stat_dir = \"/x\"", Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("stat_dir"), "{e}");
        let e = parse(
            "image_gc_high_threshold_percent = 50\nimage_gc_low_threshold_percent = 60",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("above"), "{e}");
        let e = parse(
            "insecure_registries = [\"http://x:5000\"]",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("http://x:5000"), "{e}");
        // toml would quote the bad line; a password on it must not reach the log.
        let text = "state_dir = \"/x\"\n[registries.\"r:5000\"]\nusername = \"u\"\npassword = \"s3cret-pw\" oops\n";
        let e = parse(text, Overrides::default()).unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("line 4, column "), "{e}");
        let e = parse(
            "[registries.\"r:5000\"]\ninsecure = \"s3cret-pw\"\n",
            Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cret") && e.contains("line 2, column "), "{e}");
        let long = format!("socket = \"/{}\"", "a".repeat(120));
        let e = parse(&long, Overrides::default()).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
    }
}
