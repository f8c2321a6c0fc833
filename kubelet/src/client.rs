//! A gRPC channel to a running berthlet over its unix socket (the CLI's and
//! other local clients' way in).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to berthlet at {}: {reason} (is the daemon running? --socket picks another)", socket.display())]
pub struct ConnectError {
    pub socket: PathBuf,
    pub reason: String,
}

/// Connects now (not lazily), so a missing daemon is reported here.
pub async fn connect(socket: &Path) -> Result<Channel, ConnectError> {
    let path = socket.to_path_buf();
    // The URI is required by the API but unused: the connector dials the socket.
    let endpoint = Endpoint::from_static("http://[::]:50051");
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| {
            // tonic wraps the io error; the innermost message is the useful one.
            let mut reason = e.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
            while let Some(s) = src {
                reason = s.to_string();
                src = s.source();
            }
            ConnectError {
                socket: socket.to_path_buf(),
                reason,
            }
        })
}
