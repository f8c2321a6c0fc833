//! The CNI error type: what a plugin prints (as JSON on stdout) when it fails.

use serde::{Deserialize, Serialize};

/// Well-known error codes (CNI spec, "Error"; 4 and 7 as in the spec, see CORRECTIONS.md).
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin cannot serve ADDs now.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing attachments may be damaged.
    pub const NOT_AVAILABLE_DAMAGED: u32 = 51;
    /// Anything else (as the reference skel reports non-CNI errors).
    pub const INTERNAL: u32 = 999;
}

/// A CNI error: `{"code", "msg", "details"}` (skel adds `cniVersion` when printing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("CNI error {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
pub struct Error {
    pub code: u32,
    pub msg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl Error {
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Error { code, msg: msg.into(), details: String::new() }
    }

    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_CONFIG, msg)
    }

    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENV, msg)
    }

    /// An I/O failure on `what` (a path or object name).
    pub fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self::new(code::IO, format!("{what}: {e}"))
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }

    /// The error JSON as printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let mut v = serde_json::json!({ "cniVersion": cni_version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = self.details.clone().into();
        }
        v
    }

    /// Decoding `what` failed: syntax errors are code 6 (decode), well-formed JSON
    /// with a wrong or missing field is code 7 (invalid config).
    pub fn from_serde(what: &str, e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Self::invalid_config(format!("invalid {what}: {e}")),
            _ => Self::new(code::DECODE, format!("cannot decode {what}: {e}")),
        }
    }
}
