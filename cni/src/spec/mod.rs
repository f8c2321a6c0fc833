//! The CNI protocol (spec 1.1, with 0.3.0–1.0.0 compatibility): inputs, results, errors,
//! versions.

pub mod error;
pub mod result;
pub mod types;
pub mod version;

pub use error::{code, Error};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use types::{Attachment, Command, Env, NetConf};
pub use version::{Version, CURRENT, SUPPORTED};
