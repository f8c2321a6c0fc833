//! A real registry for pull tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with a free port and a temp storage dir, optionally with htpasswd basic
//! auth and TLS from a CA made for this run; stopped and removed on drop. Images are
//! pushed with `skopeo copy` from OCI layouts (see `images.rs`). [`Proxy`] sits in
//! front of a registry to corrupt one blob or to fail mid-pull.
//!
//! ```no_run
//! use berth_tests::registry::{Registry, RegistryOptions};
//! let reg = Registry::start(RegistryOptions::default());
//! // reg.push(&layout, "busybox", "repo/busybox:v1") → manifest digest
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const SKOPEO: &str = "/usr/bin/skopeo";
pub const USER: &str = "berth";
pub const PASSWORD: &str = "s3cret-pull";

#[derive(Debug, Clone, Copy, Default)]
pub struct RegistryOptions {
    /// htpasswd basic auth with [`USER`] / [`PASSWORD`].
    pub basic_auth: bool,
    /// HTTPS with a certificate for 127.0.0.1 signed by a CA made for this registry.
    pub tls: bool,
}

/// True when docker-registry and skopeo are installed; otherwise prints why the test skips.
pub fn available() -> bool {
    for b in [REGISTRY_BIN, SKOPEO, "/usr/bin/openssl", "/usr/bin/htpasswd"] {
        if !Path::new(b).exists() {
            println!("SKIP: {b} missing (scripts/setup installs it)");
            return false;
        }
    }
    true
}

pub struct Registry {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    opts: RegistryOptions,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().unwrap().port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Registry {
    pub fn start(opts: RegistryOptions) -> Registry {
        let dir = tempdir("berth-registry");
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut extra = String::new();
        if opts.basic_auth {
            run(Command::new("htpasswd").args(["-Bbc"]).arg(dir.join("htpasswd")).args([USER, PASSWORD]));
            extra += &format!("auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n", dir.join("htpasswd").display());
        }
        let mut tls = String::new();
        if opts.tls {
            make_tls(&dir);
            tls = format!("  tls:\n    certificate: {}\n    key: {}\n", dir.join("server.crt").display(), dir.join("server.key").display());
        }
        // A port can be taken between probing and binding: retry a few times.
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n{tls}{extra}",
                storage.display()
            );
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {REGISTRY_BIN}: {e}"));
            let mut reg = Registry { child: Some(child), dir: dir.clone(), port, opts };
            if reg.wait_ready() {
                return reg;
            }
            reg.stop();
        }
        panic!("docker-registry did not start; log:\n{}", std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default());
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) when started with TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.opts.tls.then(|| self.dir.join("ca.crt"))
    }

    /// Pushes image `tag` of the OCI layout at `layout` to `<host>/<dest>` (e.g. `test/busybox:v1`)
    /// with `skopeo copy`, blobs as they are; `all` copies a whole index. Returns the manifest digest.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, all: bool) -> String {
        self.push_to(&self.host(), layout, tag, dest, all)
    }

    /// As [`push`](Self::push) but through another address (a proxy) of this registry.
    pub fn push_to(&self, host: &str, layout: &Path, tag: &str, dest: &str, all: bool) -> String {
        let digestfile = self.dir.join(format!("digest-{}", std::process::id()));
        let mut cmd = Command::new(SKOPEO);
        cmd.args(["copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false"]);
        if self.opts.basic_auth {
            cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
        }
        if all {
            cmd.arg("--all");
        }
        cmd.arg("--digestfile").arg(&digestfile);
        cmd.arg(format!("oci:{}:{tag}", layout.display())).arg(format!("docker://{host}/{dest}"));
        // skopeo reads ~/.docker and registries.conf; keep it on defaults.
        cmd.env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"));
        run(&mut cmd);
        let d = std::fs::read_to_string(&digestfile).unwrap();
        let _ = std::fs::remove_file(&digestfile);
        d.trim().to_string()
    }

    /// Path of a blob in the registry's storage (to read bytes a proxy should corrupt).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.dir.join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops and starts the registry process again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        assert!(self.wait_ready(), "docker-registry did not restart on port {}", self.port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let pid = self.child.as_ref().map(|c| c.id() as i32);
        self.stop();
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        if let Some(pid) = pid {
            if !std::thread::panicking() {
                assert!(!crate::pid_alive(pid), "docker-registry pid {pid} still alive after drop");
            }
        }
    }
}

/// A fresh directory under the system temp dir.
pub fn tempdir(prefix: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// CA + server certificate for IP 127.0.0.1 (EC P-256, two days).
fn make_tls(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509"])
        .args(ec)
        .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=berth test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    run(Command::new("openssl").current_dir(dir).args(["req"]).args(ec).args(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]));
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(Command::new("openssl").current_dir(dir).args([
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2",
        "-extfile", "server.ext",
    ]));
}

/// What a [`Proxy`] does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Pass everything through.
    Forward = 0,
    /// Flip a byte where the registry's answer holds the needle (one blob's bytes).
    Corrupt = 1,
    /// Forward `cut_after` bytes of answers in total, then drop every connection and
    /// refuse new ones (a registry going down mid-pull) until set back to Forward.
    CutAfter = 2,
    /// Accept and close at once.
    Down = 3,
}

struct ProxyState {
    mode: AtomicU8,
    forwarded: AtomicU64,
    cut_after: AtomicU64,
    corrupted: AtomicU64,
    needle: Mutex<Vec<u8>>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy on 127.0.0.1 in front of `upstream`, one thread per connection direction.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            mode: AtomicU8::new(ProxyMode::Forward as u8),
            forwarded: AtomicU64::new(0),
            cut_after: AtomicU64::new(u64::MAX),
            corrupted: AtomicU64::new(0),
            needle: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
        });
        let upstream = upstream.to_string();
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                if st.mode.load(Ordering::SeqCst) == ProxyMode::Down as u8 {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut c = st.conns.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, s2, None));
                let st2 = st.clone();
                std::thread::spawn(move || pipe(server, c2, Some(st2)));
            }
        });
        Proxy { addr, state, accept: Some(accept) }
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_mode(&self, mode: ProxyMode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Corrupt mode, flipping the first byte where `needle` appears in an answer.
    pub fn corrupt(&self, needle: &[u8]) {
        *self.state.needle.lock().unwrap() = needle.to_vec();
        self.set_mode(ProxyMode::Corrupt);
    }

    /// Cut mode: go down after `n` more answer bytes.
    pub fn cut_after(&self, n: u64) {
        self.state.cut_after.store(self.state.forwarded.load(Ordering::SeqCst) + n, Ordering::SeqCst);
        self.set_mode(ProxyMode::CutAfter);
    }

    /// How many times a byte was flipped.
    pub fn corrupted(&self) -> u64 {
        self.state.corrupted.load(Ordering::SeqCst)
    }

    fn close_all(state: &ProxyState) {
        for c in state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        Proxy::close_all(&self.state);
        let _ = TcpStream::connect(self.addr); // wake accept()
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Copies `from` → `to`; with `state`, this is the answer direction and applies the mode.
fn pipe(mut from: TcpStream, mut to: TcpStream, state: Option<Arc<ProxyState>>) {
    let mut buf = vec![0u8; 64 << 10];
    // The tail of the previous chunk, so a needle split across reads is still found.
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        if let Some(st) = &state {
            let mode = st.mode.load(Ordering::SeqCst);
            if mode == ProxyMode::Down as u8 {
                break;
            }
            if mode == ProxyMode::Corrupt as u8 {
                let needle = st.needle.lock().unwrap().clone();
                if !needle.is_empty() {
                    let mut window = carry.clone();
                    window.extend_from_slice(chunk);
                    if let Some(pos) = window.windows(needle.len()).position(|w| w == needle.as_slice()) {
                        // Flip the needle's last byte: it always lies in the current chunk.
                        let at = pos + needle.len() - 1 - carry.len();
                        chunk[at] ^= 0xff;
                        st.corrupted.fetch_add(1, Ordering::SeqCst);
                    }
                    let keep = needle.len().saturating_sub(1).min(chunk.len());
                    carry = chunk[chunk.len() - keep..].to_vec();
                }
            }
            if mode == ProxyMode::CutAfter as u8 {
                let before = st.forwarded.load(Ordering::SeqCst);
                let limit = st.cut_after.load(Ordering::SeqCst);
                if before + n as u64 >= limit {
                    let part = (limit.saturating_sub(before)) as usize;
                    let _ = to.write_all(&chunk[..part]);
                    st.forwarded.fetch_add(part as u64, Ordering::SeqCst);
                    st.mode.store(ProxyMode::Down as u8, Ordering::SeqCst);
                    Proxy::close_all(st);
                    break;
                }
            }
            st.forwarded.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
