//! Typed errors. Every error that touches the kernel names the operation and the object.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed: `mount /proc on /run/x/rootfs/proc: EPERM: Operation not permitted`.
    #[error("{op} {obj}: {errno}")]
    Sys { op: String, obj: String, errno: nix::Error },
    /// File or other I/O failure on a named object.
    #[error("{ctx}: {source}")]
    Io { ctx: String, source: std::io::Error },
    /// The bundle's config.json is missing, malformed or asks for something invalid.
    #[error("config: {0}")]
    Config(String),
    /// The config asks for something this build of berth cannot do, and must not ignore.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Operation not valid for the container in its current state, unknown id, duplicate id.
    #[error("{0}")]
    Container(String),
    /// A hook failed or timed out.
    #[error("hook: {0}")]
    Hook(String),
    /// An error reported by a child stage of the launch sequence.
    #[error("{0}")]
    Child(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn sys(op: impl Into<String>, obj: impl fmt::Display, errno: nix::Error) -> Error {
        Error::Sys { op: op.into(), obj: obj.to_string(), errno }
    }
    pub fn io(ctx: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io { ctx: ctx.into(), source }
    }
    /// The errno behind this error, if it came from a system call.
    pub fn errno(&self) -> Option<nix::Error> {
        match self {
            Error::Sys { errno, .. } => Some(*errno),
            Error::Io { source, .. } => source.raw_os_error().map(nix::Error::from_raw),
            _ => None,
        }
    }
}

/// Attach "op object" context to a nix result.
pub trait SysContext<T> {
    fn ctx(self, op: &str, obj: impl fmt::Display) -> Result<T>;
}

impl<T> SysContext<T> for nix::Result<T> {
    fn ctx(self, op: &str, obj: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::sys(op, obj, e))
    }
}

/// Attach context to an io result.
pub trait IoContext<T> {
    fn with_ctx(self, f: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn with_ctx(self, f: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}
