//! The CRI v1 gRPC services: thin translations between `runtime.v1` messages
//! and the modules that do the work.

pub mod runtime_service;

pub use runtime_service::RuntimeServiceImpl;
