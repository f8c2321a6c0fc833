//! Generated gRPC code: Berth's own `berth.images.v1` (server and client) and,
//! re-exported, CRI v1 from the `k8s-cri` crate.

/// `berth.images.v1`: pull with progress, import, gc (proto/berth/images/v1/images.proto).
pub mod images_v1 {
    tonic::include_proto!("berth.images.v1");
}

/// CRI v1 (`runtime.v1`) messages, clients and servers.
pub use k8s_cri::v1 as cri;
