//! Pulling images from a real registry (Debian's docker-registry on 127.0.0.1) into a
//! berthlet image store in a temp dir: tags, digests, whiteouts, an index, zstd, a
//! Debian image, basic auth, bearer-token auth, TLS with a test CA, and the bad cases (unknown image,
//! corrupted blob, registry down mid-pull), each leaving the store clean and usable.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_tests::images::{debian_layout, with_image_rootfs, TestImages};
use berth_tests::registry::{
    self, tempdir, Proxy, ProxyMode, Registry, RegistryOptions, TokenKey, TokenRequest, PASSWORD, TOKEN_SERVICE, USER,
};
use berthlet::images::pull::{pull, Progress, PullOptions};
use berthlet::images::reference::Reference;
use berthlet::images::registry::{Auth, ErrorKind, Platform, RegistryConfig, RegistryHost};
use berthlet::images::{Error, ImageRecord, Store};

/// The small images (cached under .cache/images).
fn images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(TestImages::cached)
}

/// A temp store, removed (with any mounts under it checked) on drop.
struct TestStore {
    dir: PathBuf,
    store: Store,
}

impl TestStore {
    fn new() -> TestStore {
        let dir = tempdir("berth-pull-store");
        let store = Store::open(&dir.join("images")).unwrap();
        TestStore { dir, store }
    }

    fn reopen(&mut self) {
        self.store = Store::open(&self.dir.join("images")).unwrap();
    }

    /// Files left in the store's ingest dir (partial downloads).
    fn partials(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.dir.join("images/ingest")) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(_) => vec![],
        }
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(self.dir.to_str().unwrap())).collect();
        let _ = std::fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts left under {}: {leaked:?}", self.dir.display());
        }
    }
}

fn insecure(hosts: &[&str]) -> RegistryConfig {
    RegistryConfig { insecure: hosts.iter().map(|h| h.to_string()).collect(), ..Default::default() }
}

fn do_pull(store: &Store, cfg: &RegistryConfig, reference: &str, opts: &PullOptions) -> (Result<ImageRecord, Error>, Vec<Progress>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let r = Reference::parse(reference).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let res = rt.block_on(pull(store, cfg, &r, opts, tx));
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (res, events)
}

fn pull_ok(store: &Store, cfg: &RegistryConfig, reference: &str) -> ImageRecord {
    let (res, events) = do_pull(store, cfg, reference, &PullOptions::default());
    let rec = res.unwrap_or_else(|e| panic!("pull {reference}: {e}"));
    assert!(matches!(events.first(), Some(Progress::Resolved { .. })), "first event: {events:?}");
    assert_eq!(events.last(), Some(&Progress::Done));
    rec
}

fn setup() -> bool {
    berth_tests::require_root() && registry::available()
}

/// Mounts the image's snapshot, runs `f` on the mount point, unmounts.
fn with_rootfs(ts: &TestStore, image_id: &str, f: impl FnOnce(&Path)) {
    with_image_rootfs(&ts.store, &ts.dir, image_id, f);
}

#[test]
fn busybox_by_tag_and_digest_survives_reopen() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    let digest = reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    assert_eq!(digest, imgs.busybox.manifest.digest);
    let cfg = insecure(&[&reg.host()]);
    let mut ts = TestStore::new();

    let name = format!("{}/test/busybox:v1", reg.host());
    let rec = pull_ok(&ts.store, &cfg, &name);
    assert_eq!(rec.id, imgs.busybox.config.digest);
    assert_eq!(rec.manifest_digest, digest);
    assert!(rec.repo_tags.contains(&name), "{rec:?}");
    for l in &imgs.busybox.layers {
        assert!(ts.store.has_blob(&l.digest), "layer {} not in store", l.digest);
    }
    assert!(ts.partials().is_empty(), "partials left: {:?}", ts.partials());

    // Again by digest: nothing downloaded, the digest reference is recorded.
    let by_digest = format!("{}/test/busybox@{digest}", reg.host());
    let rec2 = pull_ok(&ts.store, &cfg, &by_digest);
    assert_eq!(rec2.id, rec.id);
    assert!(rec2.repo_digests.contains(&by_digest), "{rec2:?}");

    // A wrong digest for an existing repository: not found, nothing added.
    let wrong = format!("{}/test/busybox@sha256:{}", reg.host(), "0".repeat(64));
    let (res, _) = do_pull(&ts.store, &cfg, &wrong, &PullOptions::default());
    let e = res.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::NotFound), "{e}");

    // A restarted daemon reopens the store: the image is there under both names.
    ts.reopen();
    let list = ts.store.list().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(ts.store.get(&name).unwrap().is_some());
    assert!(ts.store.get(&by_digest).unwrap().is_some());
    with_rootfs(&ts, &rec.id, |root| assert!(root.join("bin/busybox").is_file()));
}

#[test]
fn whiteouts_and_opaque_dirs() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    reg.push(&imgs.layout, "layered", "test/layered:v1", false);
    let ts = TestStore::new();
    let rec = pull_ok(&ts.store, &insecure(&[&reg.host()]), &format!("{}/test/layered:v1", reg.host()));
    assert_eq!(rec.layers.len(), 4);
    with_rootfs(&ts, &rec.id, |root| {
        assert!(!root.join("data/gone").exists(), "whiteout did not delete data/gone");
        assert_eq!(std::fs::read_to_string(root.join("data/kept")).unwrap(), "kept\n");
        let mut opaque: Vec<String> = std::fs::read_dir(root.join("data/opaque")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        opaque.sort();
        assert_eq!(opaque, ["new"], "opaque dir shows lower entries");
        assert_eq!(std::fs::read_to_string(root.join("data/added")).unwrap(), "third layer\n");
        assert!(root.join("bin/busybox").is_file());
    });
}

#[test]
fn index_resolves_to_this_platform_and_zstd_layers() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    let idx = reg.push(&imgs.layout, "multiarch", "test/multi:v1", true);
    assert_eq!(idx, imgs.multiarch.digest);
    reg.push(&imgs.layout, "zstd", "test/zstd:v1", false);
    let cfg = insecure(&[&reg.host()]);
    let ts = TestStore::new();

    let rec = pull_ok(&ts.store, &cfg, &format!("{}/test/multi:v1", reg.host()));
    assert_eq!(Platform::host().architecture, "amd64", "this test expects an amd64 host");
    assert_eq!(rec.id, imgs.multiarch_amd64.config.digest, "pulled the wrong platform");
    assert_eq!(rec.manifest_digest, imgs.multiarch_amd64.manifest.digest);
    with_rootfs(&ts, &rec.id, |root| assert_eq!(std::fs::read_to_string(root.join("platform")).unwrap(), "amd64\n"));
    // The repo digest is what the tag resolved to (the index), as containerd reports it;
    // the record lists the index, so gc keeps it.
    assert_eq!(rec.repo_digests, vec![format!("{}/test/multi@{idx}", reg.host())]);
    assert!(rec.blobs.contains(&idx) && rec.blobs.contains(&rec.manifest_digest), "{:?}", rec.blobs);
    ts.store.gc_with(&berthlet::images::GcOptions { grace: std::time::Duration::ZERO }).unwrap();
    assert!(ts.store.has_blob(&idx), "gc removed the index blob");
    assert_eq!(ts.store.get(&format!("{}/test/multi@{idx}", reg.host())).unwrap().map(|r| r.id), Some(rec.id.clone()));

    // Asking for arm64 (v8 implied) gets the other manifest.
    let opts = PullOptions { auth: None, platform: Platform::parse("linux/arm64").unwrap() };
    let (res, _) = do_pull(&ts.store, &cfg, &format!("{}/test/multi:v1", reg.host()), &opts);
    assert_eq!(res.unwrap().id, imgs.multiarch_arm64.config.digest);
    // No s390x manifest: a clear not-found naming the platforms there are.
    let opts = PullOptions { auth: None, platform: Platform::parse("linux/s390x").unwrap() };
    let e = do_pull(&ts.store, &cfg, &format!("{}/test/multi:v1", reg.host()), &opts).0.unwrap_err().to_string();
    assert!(e.contains("linux/s390x") && e.contains("linux/amd64") && e.contains("test/multi"), "{e}");

    let rec = pull_ok(&ts.store, &cfg, &format!("{}/test/zstd:v1", reg.host()));
    assert_eq!(rec.id, imgs.zstd.config.digest);
    with_rootfs(&ts, &rec.id, |root| assert!(root.join("bin/busybox").is_file()));
}

#[test]
fn unknown_image_and_tag_are_not_found() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let cfg = insecure(&[&reg.host()]);
    let ts = TestStore::new();
    for name in [format!("{}/test/nope:v1", reg.host()), format!("{}/test/busybox:nope", reg.host())] {
        let (res, _) = do_pull(&ts.store, &cfg, &name, &PullOptions::default());
        let e = res.unwrap_err();
        assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::NotFound), "{name}: {e}");
        assert!(e.to_string().contains(&name) && e.to_string().contains("not found"), "{e}");
    }
    assert!(ts.store.list().unwrap().is_empty());
    // Nothing listening: unreachable, naming the registry.
    let port = registry::free_port();
    let name = format!("127.0.0.1:{port}/test/busybox:v1");
    let e = do_pull(&ts.store, &insecure(&[&format!("127.0.0.1:{port}")]), &name, &PullOptions::default()).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unavailable), "{e}");
    assert!(e.to_string().contains("unreachable") && e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
}

#[test]
fn basic_auth_registry() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions { basic_auth: true, tls: false });
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let name = format!("{}/test/busybox:v1", reg.host());
    let ts = TestStore::new();
    let cfg = insecure(&[&reg.host()]);

    let e = do_pull(&ts.store, &cfg, &name, &PullOptions::default()).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unauthenticated), "{e}");
    assert!(e.to_string().contains("credentials") && e.to_string().contains(&reg.host()), "{e}");

    let bad = PullOptions { auth: Some(Auth::Basic { username: USER.into(), password: "wrong".into() }), ..Default::default() };
    let e = do_pull(&ts.store, &cfg, &name, &bad).0.unwrap_err();
    assert!(e.to_string().contains("rejected"), "{e}");
    assert!(ts.store.list().unwrap().is_empty());

    // Credentials from the request (CRI AuthConfig) ...
    let good = PullOptions { auth: Some(Auth::Basic { username: USER.into(), password: PASSWORD.into() }), ..Default::default() };
    do_pull(&ts.store, &cfg, &name, &good).0.unwrap();
    // ... or from the config.
    let ts2 = TestStore::new();
    let mut cfg2 = cfg.clone();
    cfg2.hosts.insert(reg.host(), RegistryHost { username: Some(USER.into()), password: Some(PASSWORD.into()), ..Default::default() });
    pull_ok(&ts2.store, &cfg2, &name);
}

/// The token request a pull with [`USER`]'s credentials makes for `repo`.
fn user_pull_request(repo: &str) -> TokenRequest {
    let scope = format!("repository:{repo}:pull");
    TokenRequest { user: Some(USER.into()), service: Some(TOKEN_SERVICE.into()), scopes: vec![scope.clone()], status: 200, granted: vec![scope] }
}

#[test]
fn token_auth_registry() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start_token_auth(RegistryOptions::default(), TokenKey::X5c);
    let tokens = reg.token_server().unwrap();
    // skopeo (containers/image) pushes through the same token flow, with credentials.
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    reg.push(&imgs.layout, "busybox", "public/busybox:v1", false);
    let pushes = tokens.requests();
    assert!(
        pushes.iter().any(|r| r.user.as_deref() == Some(USER) && r.granted.iter().any(|g| g == "repository:test/busybox:pull,push")),
        "skopeo did not get a push token: {pushes:?}"
    );
    let name = format!("{}/test/busybox:v1", reg.host());
    let cfg = insecure(&[&reg.host()]);
    let ts = TestStore::new();

    // Anonymous: the token server hands out a token granting nothing (as Docker Hub does
    // for a private repository) and the registry refuses it.
    tokens.clear();
    let e = do_pull(&ts.store, &cfg, &name, &PullOptions::default()).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unauthenticated), "{e}");
    assert!(e.to_string().contains("credentials") && e.to_string().contains(&reg.host()), "{e}");
    let anon = TokenRequest { user: None, granted: vec![], ..user_pull_request("test/busybox") };
    assert_eq!(tokens.requests(), [anon]);

    // A wrong password: the token server answers 401, nothing is pulled.
    tokens.clear();
    let bad = PullOptions { auth: Some(Auth::Basic { username: USER.into(), password: "wrong".into() }), ..Default::default() };
    let e = do_pull(&ts.store, &cfg, &name, &bad).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unauthenticated), "{e}");
    assert!(e.to_string().contains("rejected") && e.to_string().contains(&reg.host()), "{e}");
    assert_eq!(tokens.requests(), [TokenRequest { status: 401, granted: vec![], ..user_pull_request("test/busybox") }]);
    assert!(ts.store.list().unwrap().is_empty());

    // Credentials from the request (CRI AuthConfig): one token serves the whole pull
    // (manifest, config and layers).
    tokens.clear();
    let good = PullOptions { auth: Some(Auth::Basic { username: USER.into(), password: PASSWORD.into() }), ..Default::default() };
    let rec = do_pull(&ts.store, &cfg, &name, &good).0.unwrap();
    assert_eq!(rec.id, imgs.busybox.config.digest);
    assert_eq!(tokens.requests(), [user_pull_request("test/busybox")]);

    // Known credentials, but the token grants nothing on this repository.
    tokens.clear();
    let denied = format!("{}/denied/busybox:v1", reg.host());
    let e = do_pull(&ts.store, &cfg, &denied, &good).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unauthenticated), "{e}");
    assert!(e.to_string().contains("access denied") && e.to_string().contains("repository:denied/busybox:pull"), "{e}");
    assert_eq!(tokens.requests(), [TokenRequest { granted: vec![], ..user_pull_request("denied/busybox") }]);

    // ... or from the config.
    tokens.clear();
    let ts2 = TestStore::new();
    let mut cfg2 = cfg.clone();
    cfg2.hosts.insert(reg.host(), RegistryHost { username: Some(USER.into()), password: Some(PASSWORD.into()), ..Default::default() });
    pull_ok(&ts2.store, &cfg2, &name);
    assert_eq!(tokens.requests(), [user_pull_request("test/busybox")]);

    // A public repository: anonymous clients get a pull token.
    tokens.clear();
    let ts3 = TestStore::new();
    let rec = pull_ok(&ts3.store, &cfg, &format!("{}/public/busybox:v1", reg.host()));
    assert_eq!(rec.id, imgs.busybox.config.digest);
    assert_eq!(tokens.requests(), [TokenRequest { user: None, ..user_pull_request("public/busybox") }]);
}

#[test]
fn token_auth_with_libtrust_key_id_and_a_given_token() {
    if !setup() {
        return;
    }
    let imgs = images();
    // The token names its key by libtrust fingerprint (`kid`) instead of carrying the certificate.
    let reg = Registry::start_token_auth(RegistryOptions::default(), TokenKey::LibtrustKid);
    let tokens = reg.token_server().unwrap();
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let name = format!("{}/test/busybox:v1", reg.host());
    let cfg = insecure(&[&reg.host()]);

    tokens.clear();
    let ts = TestStore::new();
    let good = PullOptions { auth: Some(Auth::Basic { username: USER.into(), password: PASSWORD.into() }), ..Default::default() };
    assert_eq!(do_pull(&ts.store, &cfg, &name, &good).0.unwrap().id, imgs.busybox.config.digest);
    assert_eq!(tokens.requests(), [user_pull_request("test/busybox")]);

    // A bearer token from elsewhere (CRI AuthConfig.registry_token, or `token` in the
    // config) is sent as is: the token server sees nothing.
    tokens.clear();
    let ts2 = TestStore::new();
    let token = tokens.issue(USER, "test/busybox", &["pull"]);
    let given = PullOptions { auth: Some(Auth::Token(token.clone())), ..Default::default() };
    assert_eq!(do_pull(&ts2.store, &cfg, &name, &given).0.unwrap().id, imgs.busybox.config.digest);
    let ts3 = TestStore::new();
    let mut cfg3 = cfg.clone();
    cfg3.hosts.insert(reg.host(), RegistryHost { token: Some(token), ..Default::default() });
    pull_ok(&ts3.store, &cfg3, &name);
    assert_eq!(tokens.requests(), []);

    // The registry checks the signature: one flipped signature character and the token is refused.
    let mut forged = tokens.issue(USER, "test/busybox", &["pull"]).into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = PullOptions { auth: Some(Auth::Token(String::from_utf8(forged).unwrap())), ..Default::default() };
    let e = do_pull(&TestStore::new().store, &cfg, &name, &forged).0.unwrap_err();
    assert!(e.to_string().contains("credentials rejected"), "{e}");

    // A given token for another repository is refused, naming what it lacks.
    let other = PullOptions { auth: Some(Auth::Token(tokens.issue(USER, "test/other", &["pull"]))), ..Default::default() };
    let e = do_pull(&TestStore::new().store, &cfg, &name, &other).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unauthenticated), "{e}");
    assert!(e.to_string().contains("does not grant repository:test/busybox:pull"), "{e}");
}

#[test]
fn tls_registry_with_test_ca() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions { basic_auth: false, tls: true });
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let name = format!("{}/test/busybox:v1", reg.host());
    let ts = TestStore::new();

    // System CAs only: the test CA is unknown.
    let e = do_pull(&ts.store, &RegistryConfig::default(), &name, &PullOptions::default()).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unavailable), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&reg.host()) && msg.to_lowercase().contains("certificate"), "{msg}");

    let mut cfg = RegistryConfig::default();
    cfg.hosts.insert(reg.host(), RegistryHost { ca_files: vec![reg.ca_file().unwrap()], ..Default::default() });
    pull_ok(&ts.store, &cfg, &name);

    // A missing CA file is a clear configuration error.
    cfg.hosts.insert(reg.host(), RegistryHost { ca_files: vec![ts.dir.join("missing.pem")], ..Default::default() });
    let e = do_pull(&ts.store, &cfg, &name, &PullOptions::default()).0.unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
}

#[test]
fn corrupted_blob_is_refused_and_store_stays_usable() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let proxy = Proxy::start(&reg.host());
    let layer = &imgs.busybox.layers[0];
    let bytes = std::fs::read(reg.blob_path(&layer.digest)).unwrap();
    proxy.corrupt(&bytes[bytes.len() / 2..bytes.len() / 2 + 32]);
    let cfg = insecure(&[&reg.host(), &proxy.host()]);
    let ts = TestStore::new();

    let name = format!("{}/test/busybox:v1", proxy.host());
    let e = do_pull(&ts.store, &cfg, &name, &PullOptions::default()).0.unwrap_err();
    assert!(proxy.corrupted() > 0, "the proxy never saw the blob");
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::DataLoss), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&layer.digest) && msg.contains(&name), "{msg}");
    assert!(!ts.store.has_blob(&layer.digest), "corrupt blob committed");
    assert!(ts.partials().is_empty(), "corrupt partial kept: {:?}", ts.partials());
    assert!(ts.store.list().unwrap().is_empty());

    // Same store, honest path: works.
    proxy.set_mode(ProxyMode::Forward);
    let rec = pull_ok(&ts.store, &cfg, &name);
    assert_eq!(rec.id, imgs.busybox.config.digest);
}

#[test]
fn registry_down_mid_pull_then_resumes() {
    if !setup() {
        return;
    }
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let proxy = Proxy::start(&reg.host());
    let layer = &imgs.busybox.layers[0];
    assert!(layer.size > 400_000, "busybox layer too small for this test: {}", layer.size);
    let cfg = insecure(&[&proxy.host()]);
    let ts = TestStore::new();
    let name = format!("{}/test/busybox:v1", proxy.host());

    // Manifest + config are a few KiB: the cut lands inside the layer.
    proxy.cut_after(300_000);
    let e = do_pull(&ts.store, &cfg, &name, &PullOptions::default()).0.unwrap_err();
    assert!(matches!(&e, Error::Registry(r) if r.kind() == ErrorKind::Unavailable), "{e}");
    assert!(e.to_string().contains(&name), "{e}");
    assert!(!ts.store.has_blob(&layer.digest));
    assert!(ts.store.list().unwrap().is_empty());

    // The registry is back: the pull continues the partial layer.
    proxy.set_mode(ProxyMode::Forward);
    let (res, events) = do_pull(&ts.store, &cfg, &name, &PullOptions::default());
    res.unwrap();
    let first = events.iter().find_map(|e| match e {
        Progress::Layer { digest, done, .. } if *digest == layer.digest => Some(*done),
        _ => None,
    });
    assert!(first.unwrap_or(0) > 100_000, "layer did not resume from the partial file: first progress {first:?}");
    assert!(ts.partials().is_empty());
}

#[test]
fn debian_image() {
    if !setup() {
        return;
    }
    let layout = debian_layout();
    let reg = Registry::start(RegistryOptions::default());
    let digest = reg.push(&layout, "debian", "test/debian:bookworm", false);
    let ts = TestStore::new();
    let t = std::time::Instant::now();
    let rec = pull_ok(&ts.store, &insecure(&[&reg.host()]), &format!("{}/test/debian:bookworm", reg.host()));
    println!("pulled and unpacked the Debian image in {:?}", t.elapsed());
    assert_eq!(rec.manifest_digest, digest);
    assert_eq!(rec.layers.len(), 2);
    with_rootfs(&ts, &rec.id, |root| {
        assert!(root.join("usr/sbin/nginx").is_file());
        assert!(root.join("usr/share/doc").is_dir());
        assert!(std::fs::read_to_string(root.join("etc/os-release")).unwrap().contains("bookworm"));
    });
}
