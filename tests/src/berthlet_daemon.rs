//! A real `berthlet` daemon on temporary dirs, and gRPC clients for it.
//!
//! ```no_run
//! use berth_tests::berthlet_daemon::Daemon;
//! let Some(mut d) = Daemon::for_test() else { return }; // SKIP when not root
//! d.start(&[]);                                        // waits for the socket
//! let v = d.block_on(async { d.cri_runtime().await.version(Default::default()).await }).unwrap();
//! assert_eq!(v.into_inner().runtime_name, "berth");
//! d.stop();                                            // SIGTERM, exit 0, socket gone
//! // dropping `d` stops a running daemon and asserts: process gone, socket
//! // removed, no mount under its temp dir; then removes the dir.
//! ```

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::transport::{Channel, Endpoint, Uri};

pub use berthlet::proto::images_v1;
pub use berthlet::proto::images_v1::images_client::ImagesClient;
pub use k8s_cri::v1 as cri;

use crate::cmd::{Cmd, Output};
use crate::leaks;

/// How long a daemon may take to open its socket, or to exit after SIGTERM.
pub const DAEMON_WAIT: Duration = Duration::from_secs(20);

/// `$BERTH_BIN_DIR/berthlet` (else `<repo>/target/bin/berthlet`).
pub fn berthlet_bin() -> PathBuf {
    let dir = std::env::var_os("BERTH_BIN_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target/bin"));
    dir.join("berthlet")
}

/// A gRPC channel over a unix socket (tonic needs a URI; the connector ignores it).
pub async fn channel(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
}

pub struct Daemon {
    /// The test's temp dir; everything below lives in it.
    pub tmp: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    /// The daemon's stderr (its tracing log), appended across restarts.
    pub log: PathBuf,
    pub bin: PathBuf,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    seq: AtomicUsize,
}

impl Daemon {
    /// Root check plus [`Daemon::new`] (not started): `None` after `SKIP: ...` when not root.
    pub fn for_test() -> Option<Daemon> {
        if !crate::require_root() {
            return None;
        }
        Some(Daemon::new())
    }

    /// Temp dirs for a daemon; the socket path is kept short (sun_path is 108 bytes).
    pub fn new() -> Daemon {
        let bin = berthlet_bin();
        assert!(
            bin.is_file(),
            "berthlet binary {} not found: build it (`scripts/build`), or set BERTH_BIN_DIR",
            bin.display()
        );
        let template = std::env::temp_dir().join("bl-XXXXXX");
        let tmp = nix::unistd::mkdtemp(&template).unwrap_or_else(|e| panic!("mkdtemp {}: {e}", template.display()));
        let run_dir = tmp.join("run");
        Daemon {
            state_dir: tmp.join("state"),
            socket: run_dir.join("berthlet.sock"),
            run_dir,
            log: tmp.join("berthlet.log"),
            tmp,
            bin,
            child: None,
            rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
            seq: AtomicUsize::new(0),
        }
    }

    /// The flags every start passes: this daemon's dirs, debug logs.
    pub fn base_args(&self) -> Vec<String> {
        vec![
            "--state-dir".into(),
            self.state_dir.display().to_string(),
            "--run-dir".into(),
            self.run_dir.display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ]
    }

    /// Spawns `berthlet args...` with stderr appended to [`Daemon::log`]; does not wait.
    pub fn spawn(&self, args: &[String]) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        Command::new(&self.bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()))
    }

    /// Starts the daemon with [`Daemon::base_args`] plus `extra`, and waits until
    /// its socket accepts connections.
    #[track_caller]
    pub fn start(&mut self, extra: &[&str]) {
        let mut args = self.base_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.start_args(&args);
    }

    /// Starts the daemon with exactly `args`; the socket awaited is [`Daemon::socket`].
    #[track_caller]
    pub fn start_args(&mut self, args: &[String]) {
        assert!(self.child.is_none(), "daemon already running");
        let mut child = self.spawn(args);
        let start = Instant::now();
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("berthlet exited ({st}) before opening {}; log:\n{}", self.socket.display(), self.log_text());
            }
            if start.elapsed() > DAEMON_WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthlet did not open {} within {DAEMON_WAIT:?}; log:\n{}", self.socket.display(), self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn log_text(&self) -> String {
        crate::cmd::read_lossy(&self.log)
    }

    /// SIGTERM, then waits (bounded) for the exit; asserts exit 0 and the socket removed.
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        let st = self.signal_and_wait(Signal::SIGTERM).expect("stop: daemon not running");
        assert!(st.success(), "berthlet exited with {st} after SIGTERM; log:\n{}", self.log_text());
        assert!(!self.socket.exists(), "socket {} left after a clean stop", self.socket.display());
        st
    }

    /// SIGKILL: a crash, leaving the socket behind.
    pub fn crash(&mut self) {
        self.signal_and_wait(Signal::SIGKILL);
    }

    fn signal_and_wait(&mut self, sig: Signal) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), sig);
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            if start.elapsed() > DAEMON_WAIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("berthlet still running {DAEMON_WAIT:?} after {sig}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a future on this fixture's tokio runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub async fn channel(&self) -> Channel {
        channel(&self.socket).await.unwrap_or_else(|e| panic!("connect {}: {e:?}", self.socket.display()))
    }

    pub async fn cri_runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn cri_images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    pub async fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel().await)
    }

    /// `berthlet --socket <ours> args...` (a client command), bounded.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut argv = vec!["--socket".to_string(), self.socket.display().to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        self.command(&argv).run()
    }

    /// `berthlet args...` as a bounded command, output captured in the temp dir.
    pub fn command(&self, args: &[String]) -> Cmd {
        let n = self.seq.fetch_add(1, Ordering::SeqCst);
        Cmd::new(&self.bin, args, self.tmp.join(format!("cmd-{n}.out")), self.tmp.join(format!("cmd-{n}.err")))
    }

    /// Asserts nothing of this daemon remains: no process, no socket, no mount
    /// under the temp dir, no process with the temp dir on its command line.
    #[track_caller]
    pub fn assert_no_leaks(&self) {
        assert!(self.child.is_none(), "daemon still running");
        let sock = std::fs::symlink_metadata(&self.socket).map(|m| m.file_type().is_socket()).unwrap_or(false);
        assert!(!sock, "socket {} left behind", self.socket.display());
        let mounts = leaks::mounts_under(&[self.tmp.clone()]);
        assert!(mounts.is_empty(), "mounts left under {}: {mounts:?}", self.tmp.display());
        let procs = leaks::processes(&[], &[self.tmp.clone()]);
        assert!(procs.is_empty(), "processes left using {}: {procs:?}", self.tmp.display());
    }
}

impl Default for Daemon {
    fn default() -> Self {
        Daemon::new()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
            let start = Instant::now();
            while !matches!(c.try_wait(), Ok(Some(_))) {
                if start.elapsed() > DAEMON_WAIT {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !std::thread::panicking() {
            self.assert_no_leaks();
        }
        if std::env::var_os("BERTH_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.tmp.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}
