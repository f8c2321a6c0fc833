//! berthlet: Berth's node daemon. It serves CRI v1 (`runtime.v1`) and Berth's own
//! `berth.images.v1` over gRPC on one unix socket; see kubelet/README.md.

pub mod cli;
pub mod client;
pub mod config;
pub mod cri;
pub mod image_manager;
pub mod images;
pub mod images_api;
pub mod lock;
pub mod proto;
pub mod server;
#[cfg(test)]
pub(crate) mod testhttp;
