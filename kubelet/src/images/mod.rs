//! Images: references, registry pulls, the content-addressed store, OCI/Docker
//! types, layer unpacking, overlay snapshots, import and garbage collection.

pub mod gc;
pub mod import;
pub mod oci;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod snapshot;
pub mod store;
pub mod unpack;

mod fsutil;

use std::path::PathBuf;

pub use fsutil::lgetxattr;
pub use gc::{GcOptions, GcReport};
pub use snapshot::Snapshot;
pub use store::{FsUsage, ImageConfig, ImageRecord, IngestGuard, Store};

/// Errors of the image store; each names the object it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("invalid digest {0:?} (want sha256:<64 hex>)")]
    InvalidDigest(String),
    #[error("blob {digest}: content has digest {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("blob {digest}: size {actual}, expected {expected}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("blob {0} not found in the store")]
    BlobNotFound(String),
    #[error("{what} {digest}: {reason}")]
    InvalidContent { what: &'static str, digest: String, reason: String },
    #[error("{what} {digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: &'static str, digest: String, media_type: String },
    #[error("layer {digest}: foreign/non-distributable layer ({media_type}) refused: its content is not in the image")]
    ForeignLayer { digest: String, media_type: String },
    #[error("image index {digest}: no manifest for platform {platform}")]
    NoMatchingPlatform { digest: String, platform: String },
    #[error("layer {digest}: uncompressed content has diff_id {actual}, config says {expected}")]
    DiffIdMismatch { digest: String, expected: String, actual: String },
    #[error("layer {digest}: entry {path:?}: {reason}")]
    UnsafeEntry { digest: String, path: String, reason: String },
    #[error("layer {digest}: entry {path:?}: {source}")]
    Unpack { digest: String, path: String, source: std::io::Error },
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    #[error("image id prefix {0:?} is ambiguous")]
    AmbiguousId(String),
    #[error("image {image} is in use by {by}")]
    InUse { image: String, by: String },
    #[error("import {}: {reason}", path.display())]
    Import { path: PathBuf, reason: String },
    #[error("snapshot {key}: {reason}")]
    Snapshot { key: String, reason: String },
    #[error("mount overlay on {}: {source}", target.display())]
    Mount { target: PathBuf, source: std::io::Error },
    #[error("unmount {}: {source}", target.display())]
    Unmount { target: PathBuf, source: std::io::Error },
    /// A blocking task of a pull (download, commit, unpack) panicked or was cancelled: a bug
    /// or a shutdown, not the caller's fault (CRI Internal).
    #[error("image {image}: {what} task failed: {detail}")]
    Task { image: String, what: &'static str, detail: String },
    /// A pull failed talking to the registry; `kind()` of the inner error gives its class.
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// True for errors that mean "no such image/blob" (CRI NotFound).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::ImageNotFound(_) | Error::BlobNotFound(_) => true,
            Error::Registry(e) => e.kind() == registry::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Splits "sha256:<hex>" into its hex part, checking the form.
pub fn digest_hex(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(h),
        _ => Err(Error::InvalidDigest(digest.to_string())),
    }
}

/// "sha256:<hex>" of a finished hasher.
pub(crate) fn digest_of(h: sha2::Sha256) -> String {
    use sha2::Digest;
    let out = h.finalize();
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in out {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// "sha256:<hex>" of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(bytes);
    digest_of(h)
}
