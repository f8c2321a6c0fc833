//! The daemon's life: directories and single-instance locks, the unix socket,
//! the gRPC services on it, background tasks, and shutdown on SIGTERM/SIGINT.

use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::config::Config;
use crate::cri::{ImageServiceImpl, RuntimeServiceImpl};
use crate::image_manager::ImageManager;
use crate::images::Store;
use crate::images_api::ImagesApi;
use crate::proto::images_v1::images_server::ImagesServer;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use crate::lock::{InstanceLock, LockError};
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

/// The lock file's name, in both the state dir and the run dir.
pub const LOCK_NAME: &str = "berthlet.lock";
/// How long in-flight calls may run on after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists and is not a socket: refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    #[error("serve gRPC on {}: {source}", socket.display())]
    Serve {
        socket: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("open image store: {0}")]
    Store(#[from] crate::images::Error),
    #[error("install signal handler: {0}")]
    Signal(std::io::Error),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io { op, path, source }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
    let shutdown = async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!("{name} received: shutting down");
    };
    serve(config, shutdown).await
}

/// Runs the daemon until `shutdown` completes.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let mut node = Node::prepare(&config)?;
    // Only the lock holder opens the store: it is the store's only writer.
    let state_lock = node.state_lock.take().expect("the state lock is taken once");
    let store = Store::open_holding(&config.images_dir(), state_lock)?;
    let images = ImageManager::new(store, crate::image_manager::registry_config(&config), config.image_gc);
    let listener = node.listen()?;
    let gc_task = tokio::spawn(images.clone().gc_loop());
    info!(
        socket = %config.socket.display(),
        state_dir = %config.state_dir.display(),
        run_dir = %config.run_dir.display(),
        "berthlet {} serving CRI v1 and berth.images.v1",
        env!("CARGO_PKG_VERSION")
    );

    // Fires when the signal arrives; the socket goes first so no new client connects.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let socket = node.socket.clone();
    let socket_id = node.socket_id;
    tokio::spawn(async move {
        shutdown.await;
        remove_socket(&socket, socket_id);
        let _ = stop_tx.send(true);
    });
    let mut stop_for_server = stop_rx.clone();
    let stopping = async move {
        let _ = stop_for_server.wait_for(|s| *s).await;
    };

    let router = tonic::transport::Server::builder()
        .add_service(RuntimeServiceServer::new(RuntimeServiceImpl))
        .add_service(ImageServiceServer::new(ImageServiceImpl::new(images.clone())))
        .add_service(ImagesServer::new(ImagesApi::new(images)));
    let server = router.serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopping);

    let mut stop_for_grace = stop_rx;
    let grace = async move {
        let _ = stop_for_grace.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = server => r.map_err(|source| ServerError::Serve { socket: config.socket.clone(), source }),
        _ = grace => {
            warn!("in-flight calls still running {}s after the shutdown signal: leaving them", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    gc_task.abort();
    remove_socket(&node.socket, node.socket_id);
    info!("stopped");
    drop(node);
    result
}

/// What one running daemon holds: its locks and its socket's identity.
struct Node {
    socket: PathBuf,
    /// (dev, ino) of the socket we bound, so we only ever remove our own.
    socket_id: (u64, u64),
    _run_lock: InstanceLock,
    /// Taken by the store (`Store::open_holding`), which keeps it while any of
    /// its writers run.
    state_lock: Option<InstanceLock>,
}

impl Node {
    /// Creates the directories and takes both locks (state dir first).
    fn prepare(config: &Config) -> Result<Node, ServerError> {
        for dir in [&config.state_dir, &config.run_dir] {
            create_dir(dir)?;
        }
        let state_lock = InstanceLock::acquire(&config.state_dir.join(LOCK_NAME))?;
        let run_lock = InstanceLock::acquire(&config.run_dir.join(LOCK_NAME))?;
        if let Some(parent) = config.socket.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir(parent)?;
        }
        Ok(Node {
            socket: config.socket.clone(),
            socket_id: (0, 0),
            _run_lock: run_lock,
            state_lock: Some(state_lock),
        })
    }

    /// Binds the socket: under a temporary name first, made 0660 and root's, then
    /// renamed into place, so nobody ever connects to it with other permissions.
    /// A socket left by a crashed instance is replaced (we hold the locks, so
    /// no live instance owns it).
    fn listen(&mut self) -> Result<UnixListener, ServerError> {
        let path = &self.socket;
        match std::fs::symlink_metadata(path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
                warn!(socket = %path.display(), "replacing a stale socket (its daemon is gone)");
            }
            Ok(_) => return Err(ServerError::NotASocket(path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("stat", path)(e)),
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(io_err("bind", &tmp))?;
        let setup = || -> Result<(), ServerError> {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
                .map_err(io_err("chmod", &tmp))?;
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::chown(&tmp, Some(0), Some(0)).map_err(io_err("chown", &tmp))?;
            }
            std::fs::rename(&tmp, path).map_err(io_err("rename", &tmp))
        };
        if let Err(e) = setup() {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let m = std::fs::symlink_metadata(path).map_err(io_err("stat", path))?;
        self.socket_id = (m.dev(), m.ino());
        Ok(listener)
    }
}

fn create_dir(dir: &Path) -> Result<(), ServerError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(io_err("create directory", dir))
}

use std::os::unix::fs::DirBuilderExt;

/// Removes the socket if it is still the one we bound.
fn remove_socket(path: &Path, id: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if (m.dev(), m.ino()) == id => {
            if let Err(e) = std::fs::remove_file(path) {
                warn!(socket = %path.display(), "remove socket: {e}");
            }
        }
        _ => {}
    }
}
