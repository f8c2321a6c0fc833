//! A real registry for pull tests: Debian's `docker-registry` (distribution 2.8) on
//! 127.0.0.1 with a free port and a temp storage dir, optionally with htpasswd basic
//! auth or bearer-token auth (a [`TokenServer`] of our own as the realm) and TLS from a
//! CA made for this run; stopped and removed on drop. Images are
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

use base64::Engine as _;

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
            crate::skip(format_args!("{b} missing (scripts/setup installs it)"));
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
    /// The token server when started with [`Registry::start_token_auth`].
    token: Option<TokenServer>,
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
        Registry::start_with_dir(tempdir("berth-registry"), opts, None)
    }

    /// A registry with distribution's token auth (`auth: token:`): a [`TokenServer`] on
    /// 127.0.0.1 signs the bearer tokens, naming its key as `key` says. `opts.basic_auth`
    /// must be false (a registry has one auth scheme); TLS may be on. Pushes go through
    /// the token flow with [`USER`] / [`PASSWORD`].
    pub fn start_token_auth(opts: RegistryOptions, key: TokenKey) -> Registry {
        assert!(!opts.basic_auth, "token auth replaces basic auth: pick one");
        let dir = tempdir("berth-registry");
        let token = TokenServer::start(&dir, key);
        Registry::start_with_dir(dir, opts, Some(token))
    }

    fn start_with_dir(dir: PathBuf, opts: RegistryOptions, token: Option<TokenServer>) -> Registry {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut extra = String::new();
        if let Some(t) = &token {
            extra += &format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                t.realm(),
                t.cert_file().display()
            );
        }
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
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {REGISTRY_BIN}: {e}"));
            if wait_ready(&mut child, port) {
                return Registry { child: Some(child), dir, port, opts, token };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
        drop(token);
        if std::env::var_os("BERTH_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("docker-registry did not start; log:\n{log}");
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
        let mut flags = vec!["--preserve-digests"];
        if all {
            flags.push("--all");
        }
        self.skopeo_push(host, layout, tag, dest, &flags)
    }

    /// As [`push`](Self::push), converted by skopeo to Docker's schema 2 (manifest,
    /// config and layer media types; new digests). Returns the manifest digest.
    pub fn push_docker(&self, layout: &Path, tag: &str, dest: &str) -> String {
        self.skopeo_push(&self.host(), layout, tag, dest, &["--format", "v2s2"])
    }

    fn skopeo_push(&self, host: &str, layout: &Path, tag: &str, dest: &str, flags: &[&str]) -> String {
        let digestfile = self.dir.join(format!("digest-{}", std::process::id()));
        let mut cmd = Command::new(SKOPEO);
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]).args(flags);
        if self.opts.basic_auth || self.token.is_some() {
            cmd.arg(format!("--dest-creds={USER}:{PASSWORD}"));
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
        let child = self.child.insert(child);
        assert!(wait_ready(child, self.port), "docker-registry did not restart on port {}", self.port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// The token server of a registry started with [`Registry::start_token_auth`].
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let pid = self.child.as_ref().map(|c| c.id() as i32);
        self.stop();
        // Its thread is joined (and checked) before the directory holding its key goes.
        drop(self.token.take());
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

/// Waits until `child` listens on `port` (false when it exits or 15 s pass).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
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

/// The `service` a token registry names in its challenge (the token's `aud`).
pub const TOKEN_SERVICE: &str = "berth-test-registry";
/// The `issuer` the registry trusts (the token's `iss`).
pub const TOKEN_ISSUER: &str = "berth-test-token-issuer";
/// Repositories under this prefix are public: anonymous clients get pull tokens for them.
pub const PUBLIC_PREFIX: &str = "public/";
/// Repositories under this prefix are granted to nobody, not even [`USER`].
pub const DENIED_PREFIX: &str = "denied/";

/// How a token names the key that signed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKey {
    /// `x5c`: the signing certificate itself, which must chain to `rootcertbundle`.
    X5c,
    /// `kid`: the libtrust fingerprint of a key in `rootcertbundle` (what distribution 2.x
    /// looks up; 3.x expects an RFC 7638 thumbprint instead).
    LibtrustKid,
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Username of the Basic credentials, if any were sent (right or wrong).
    pub user: Option<String>,
    pub service: Option<String>,
    /// Every `scope` asked for (`repository:test/busybox:pull`).
    pub scopes: Vec<String>,
    /// 200 (a token, maybe granting nothing), 401 (wrong credentials), 400, 404, 405.
    pub status: u16,
    /// What the token granted, as scopes (`repository:test/busybox:pull,push`).
    pub granted: Vec<String>,
}

struct TokenState {
    stop: AtomicBool,
    dir: PathBuf,
    key: TokenKey,
    x5c: String,
    kid: String,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A distribution token server (the `realm` of `auth: token:`) on 127.0.0.1, answering
/// `GET /token?service=..&scope=..` one connection at a time, as Docker Hub's does:
/// [`USER`] / [`PASSWORD`] get every action asked for; anonymous clients get pull on
/// repositories under [`PUBLIC_PREFIX`] and a token granting nothing elsewhere (the
/// registry then refuses it); nobody gets anything under [`DENIED_PREFIX`]; wrong
/// credentials get 401. Tokens are RS256 JWTs signed
/// with a key made for this server (`openssl dgst -sha256 -sign`). Stopped on drop.
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    accept: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes an RSA key and a self-signed certificate in `dir` and starts serving.
    pub fn start(dir: &Path, key: TokenKey) -> TokenServer {
        run(Command::new("openssl").current_dir(dir).args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.crt", "-days", "2", "-subj",
            "/CN=berth test token issuer",
        ]));
        let der = Command::new("openssl").current_dir(dir).args(["x509", "-in", "token.crt", "-outform", "DER"]).output().unwrap();
        assert!(der.status.success() && !der.stdout.is_empty(), "openssl x509 -outform DER failed");
        let spki = Command::new("openssl").current_dir(dir).args(["pkey", "-in", "token.key", "-pubout", "-outform", "DER"]).output().unwrap();
        assert!(spki.status.success() && !spki.stdout.is_empty(), "openssl pkey -pubout failed");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(TokenState {
            stop: AtomicBool::new(false),
            dir: dir.to_path_buf(),
            key,
            x5c: base64::engine::general_purpose::STANDARD.encode(&der.stdout),
            kid: libtrust_key_id(&spki.stdout),
            requests: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    serve_token(&st, c);
                }
            }
        });
        TokenServer { addr, state, accept: Some(accept) }
    }

    /// `http://127.0.0.1:<port>/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The signing certificate (PEM): the registry's `rootcertbundle`.
    pub fn cert_file(&self) -> PathBuf {
        self.state.dir.join("token.crt")
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// How many tokens were issued (200 answers).
    pub fn issued(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 200).count()
    }

    /// A token for `sub` granting `actions` on `repository`, signed as the server signs,
    /// without a request (as if obtained elsewhere: CRI's `registry_token`). Not recorded.
    pub fn issue(&self, sub: &str, repository: &str, actions: &[&str]) -> String {
        sign_token(&self.state, sub, vec![serde_json::json!({"type": "repository", "name": repository, "actions": actions})], usize::MAX)
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake accept()
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        if !std::thread::panicking() {
            assert!(TcpStream::connect(self.addr).is_err(), "token server still listening on {} after drop", self.addr);
        }
    }
}

/// libtrust's key ID: SHA-256 of the DER public key, first 240 bits, base32 in 12 groups of 4.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    use sha2::Digest as _;
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = sha2::Sha256::digest(spki_der);
    let mut b32 = String::new();
    // 30 bytes = 48 groups of 5 bits, no padding.
    for chunk in hash[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |n, b| n << 8 | *b as u64);
        for i in (0..8).rev() {
            b32.push(ALPHABET[(n >> (i * 5) & 31) as usize] as char);
        }
    }
    b32.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `%XX` and `+` decoding of one query component.
fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one HTTP/1.1 request (head only: token requests are GETs), answers it, closes.
fn serve_token(st: &TokenState, mut conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 64 << 10 {
            return;
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut req_line = lines.next().unwrap_or("").split(' ');
    let (method, target) = (req_line.next().unwrap_or(""), req_line.next().unwrap_or(""));
    let mut basic = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                let v = v.trim();
                if let Some(enc) = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")) {
                    let dec = base64::engine::general_purpose::STANDARD.decode(enc.trim()).unwrap_or_default();
                    let dec = String::from_utf8_lossy(&dec).into_owned();
                    let (u, p) = dec.split_once(':').unwrap_or((&dec, ""));
                    basic = Some((u.to_string(), p.to_string()));
                }
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut service = None;
    let mut scopes = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match url_decode(k).as_str() {
            "service" => service = Some(url_decode(v)),
            // Several scopes come as repeated parameters or space-separated in one.
            "scope" => scopes.extend(url_decode(v).split(' ').filter(|s| !s.is_empty()).map(String::from)),
            _ => {}
        }
    }
    let mut record = TokenRequest { user: basic.as_ref().map(|(u, _)| u.clone()), service: service.clone(), scopes: scopes.clone(), status: 200, granted: vec![] };
    let (status, body) = if method != "GET" {
        (405, r#"{"errors":[{"code":"UNSUPPORTED","message":"only GET is served"}]}"#.to_string())
    } else if path != "/token" {
        (404, r#"{"errors":[{"code":"NOT_FOUND","message":"no such endpoint"}]}"#.to_string())
    } else if service.as_deref() != Some(TOKEN_SERVICE) {
        (400, format!(r#"{{"errors":[{{"code":"DENIED","message":"unknown service {service:?}"}}]}}"#))
    } else if basic.as_ref().is_some_and(|(u, p)| u != USER || p != PASSWORD) {
        (401, r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#.to_string())
    } else {
        let authenticated = basic.is_some();
        let mut access = Vec::new();
        for scope in &scopes {
            // type:name:actions (the name holds no ':' on this registry: no host part)
            let mut parts = scope.splitn(3, ':');
            let (Some(typ), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let grantable = typ == "repository" && !name.starts_with(DENIED_PREFIX);
            let allowed: Vec<&str> = actions
                .split(',')
                .filter(|a| grantable && matches!(*a, "pull" | "push"))
                .filter(|a| authenticated || (*a == "pull" && name.starts_with(PUBLIC_PREFIX)))
                .collect();
            if !allowed.is_empty() {
                record.granted.push(format!("{typ}:{name}:{}", allowed.join(",")));
                access.push(serde_json::json!({"type": typ, "name": name, "actions": allowed}));
            }
        }
        let sub = basic.as_ref().map(|(u, _)| u.as_str()).unwrap_or("");
        let n = st.requests.lock().unwrap().len();
        let token = sign_token(st, sub, access, n);
        (200, serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string())
    };
    record.status = status;
    st.requests.lock().unwrap().push(record);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let mut resp = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if status == 401 {
        resp += "WWW-Authenticate: Basic realm=\"berth-test-token\"\r\n";
    }
    resp += "\r\n";
    resp += &body;
    let _ = conn.write_all(resp.as_bytes());
    let _ = conn.shutdown(Shutdown::Both);
}

/// A signed JWT (RS256) for `access`, valid 5 minutes.
fn sign_token(st: &TokenState, sub: &str, access: Vec<serde_json::Value>, n: usize) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = match st.key {
        TokenKey::X5c => serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [st.x5c]}),
        TokenKey::LibtrustKid => serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": st.kid}),
    };
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": sub, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now, "iat": now,
        "jti": format!("berth-{}-{n}-{now}", std::process::id()),
        "access": access,
    });
    let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl")
        .current_dir(&st.dir)
        .args(["dgst", "-sha256", "-sign", "token.key"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl dgst");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && !out.stdout.is_empty(), "openssl dgst -sign: {}", String::from_utf8_lossy(&out.stderr));
    format!("{input}.{}", b64url(&out.stdout))
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
