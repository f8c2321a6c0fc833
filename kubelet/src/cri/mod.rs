//! The CRI v1 gRPC services: thin translations between `runtime.v1` messages
//! and the modules that do the work.
//!
//! Errors become gRPC codes by what the caller can do about them:
//!
//! | error | code |
//! |---|---|
//! | no such image (local or in the registry), blob missing, no manifest for this platform | `NotFound` |
//! | bad reference or digest, ambiguous id prefix, bad manifest/config/layer content, unsupported media type, unsafe layer entry, bad import file | `InvalidArgument` |
//! | registry refused the credentials | `Unauthenticated` |
//! | registry unreachable, connection broken mid-pull, unexpected HTTP status | `Unavailable` (retry) |
//! | content does not match its digest or size (blob, manifest, layer diff_id) | `DataLoss` (nothing is committed) |
//! | image in use by a container | `FailedPrecondition` |
//! | local I/O, unpack, mount failures; a pull's blocking task panicked or cancelled | `Internal` |

pub mod image_service;
pub mod runtime_service;

pub use image_service::ImageServiceImpl;
pub use runtime_service::RuntimeServiceImpl;

use tonic::{Code, Status};

use crate::image_manager::ImageError;
use crate::images::Error as E;

/// The gRPC status for an image error; the message is the error's own text,
/// which names the object.
pub fn status_of(e: &ImageError) -> Status {
    Status::new(code_of(e), e.to_string())
}

fn code_of(e: &ImageError) -> Code {
    match e {
        ImageError::Image(e) => image_code(e),
        ImageError::Reference(_) | ImageError::InvalidArgument(_) => Code::InvalidArgument,
        ImageError::Task { .. } => Code::Internal,
        ImageError::Shared(e) => code_of(e),
    }
}

fn image_code(e: &E) -> Code {
    match e {
        E::ImageNotFound(_) | E::BlobNotFound(_) | E::NoMatchingPlatform { .. } => Code::NotFound,
        E::InvalidDigest(_)
        | E::AmbiguousId(_)
        | E::InvalidContent { .. }
        | E::UnsupportedMediaType { .. }
        | E::ForeignLayer { .. }
        | E::UnsafeEntry { .. }
        | E::Import { .. } => Code::InvalidArgument,
        E::DigestMismatch { .. } | E::SizeMismatch { .. } | E::DiffIdMismatch { .. } => Code::DataLoss,
        E::InUse { .. } => Code::FailedPrecondition,
        E::Task { .. } => Code::Internal,
        E::Reference(_) => Code::InvalidArgument,
        E::Registry(r) => {
            use crate::images::registry::ErrorKind as K;
            match r.kind() {
                K::NotFound => Code::NotFound,
                K::Unauthenticated => Code::Unauthenticated,
                K::Unavailable => Code::Unavailable,
                K::DataLoss => Code::DataLoss,
                K::InvalidArgument => Code::InvalidArgument,
                K::Internal => Code::Internal,
            }
        }
        _ => Code::Internal,
    }
}
