//! berth-shim: the per-container monitor (one process per container).
//!
//! The protocol the daemon relies on (arguments, files, the sync pipe) is
//! documented in `shim/README.md`. Modules:
//! - [`config`]: the command line;
//! - [`protocol`]: what the daemon reads (exit file, pid file, sync report);
//! - [`io`]: the CRI log writer (partial lines, rotation, reopen);
//! - [`oom`]: whether the container's memory cgroup OOM-killed anything;
//! - [`reaper`]: waiting for the container and turning its status into an exit record;
//! - [`shim`]: detaching, driving the runtime;
//! - [`events`]: the poll loop (log, stdin, signals, control socket, execs);
//! - [`control`]: the control socket's requests, responses and frames;
//! - [`term`]: the pty master from a console socket, window size;
//! - [`base64`]: `exec_sync` output encoding.

pub mod base64;
pub mod config;
pub mod control;
pub mod events;
pub mod io;
pub mod oom;
pub mod protocol;
pub mod reaper;
pub mod shim;
pub mod term;

/// A failure, naming the object it happened on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}
