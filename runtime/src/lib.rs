//! berth-runtime: an OCI runtime (runtime-spec 1.2, Linux) with runc's command line.
//!
//! The binary (`berth`) only parses arguments; everything else lives here:
//! - [`container`]: the lifecycle operations, one file each, over persisted [`state`];
//! - [`process`]: the launch sequence (bootstrap → init) and the sync channel between stages;
//! - one module per kernel area: [`namespaces`], [`rootfs`], [`capabilities`], [`rlimits`],
//!   [`cgroups`], [`hooks`], [`console`], [`lsm`], and [`syscalls`] for the raw calls.

pub mod capabilities;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod devices;
pub mod error;
pub mod features;
pub mod hooks;
pub mod log;
pub mod mountinfo;
pub mod lsm;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod state;
pub mod syscalls;
pub mod timefmt;

pub use error::{Error, Result};

/// The OCI runtime-spec version berth implements.
pub const OCI_VERSION: &str = "1.2.0";
/// Lowest spec version accepted in a config.json.
pub const OCI_VERSION_MIN: &str = "1.0.0";
