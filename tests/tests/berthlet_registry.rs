//! The registry client on its own against a real registry (Debian's docker-registry on
//! 127.0.0.1): manifests by tag and digest in OCI and Docker schema 2 form, blob
//! download with Range resume, basic auth, TLS with a per-registry CA.

use std::path::Path;

use berth_tests::images::{sha256, TestImages};
use berth_tests::registry::{self, tempdir, Registry, RegistryOptions, PASSWORD, USER};
use berthlet::images::registry::{Auth, Client, Error, RegistryConfig, RegistryHost, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_MANIFEST};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn setup() -> bool {
    berth_tests::require_root() && registry::available()
}

fn build_images() -> (std::path::PathBuf, TestImages) {
    (tempdir("berth-registry-test"), TestImages::cached())
}

fn client(cfg: &RegistryConfig, host: &str, auth: Option<Auth>) -> Client {
    Client::new(cfg, host, host, auth).unwrap()
}

#[test]
fn manifests_and_resumed_blobs() {
    if !setup() {
        return;
    }
    let (dir, imgs) = build_images();
    let reg = Registry::start(RegistryOptions::default());
    let oci = reg.push(&imgs.layout, "busybox", "test/busybox:oci", false);
    let cfg = RegistryConfig { insecure: vec![reg.host()], ..Default::default() };
    let c = client(&cfg, &reg.host(), None);
    let rt = rt();

    let m = rt.block_on(c.manifest("img", "test/busybox", "oci")).unwrap();
    assert_eq!(m.digest, oci);
    assert_eq!(m.media_type, MEDIA_OCI_MANIFEST);
    let again = rt.block_on(c.manifest("img", "test/busybox", &oci)).unwrap();
    assert_eq!(again.bytes, m.bytes);

    // skopeo converts to Docker schema 2 on request; the Accept header must take it.
    let docker = reg.push_docker(&imgs.layout, "busybox", "test/busybox:docker");
    let d = rt.block_on(c.manifest("img", "test/busybox", "docker")).unwrap();
    assert_eq!(d.digest, docker);
    assert_eq!(d.media_type, MEDIA_DOCKER_MANIFEST);
    assert_eq!(d.digest, sha256(&d.bytes));

    // Blob in full, then resumed from half a file.
    let layer = &imgs.busybox.layers[0];
    let want = std::fs::read(imgs.layout.join("blobs/sha256").join(layer.digest.trim_start_matches("sha256:"))).unwrap();
    let dest = dir.join("blob.partial");
    let resumed = rt.block_on(c.fetch_blob("img", "test/busybox", &layer.digest, layer.size, &dest, &|_| {})).unwrap();
    assert!(!resumed);
    assert_eq!(std::fs::read(&dest).unwrap(), want);
    std::fs::write(&dest, &want[..want.len() / 2]).unwrap();
    let seen = std::sync::Mutex::new(vec![]);
    let resumed = rt.block_on(c.fetch_blob("img", "test/busybox", &layer.digest, layer.size, &dest, &|n| seen.lock().unwrap().push(n))).unwrap();
    assert!(resumed, "registry ignored the Range request");
    assert_eq!(std::fs::read(&dest).unwrap(), want);
    assert_eq!(seen.lock().unwrap()[0], (want.len() / 2) as u64);

    // Unknown things.
    let e = rt.block_on(c.manifest("img", "test/busybox", "nope")).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    let e = rt.block_on(c.fetch_blob("img", "test/busybox", &format!("sha256:{}", "1".repeat(64)), 1, &dir.join("x"), &|_| {})).unwrap_err();
    assert!(matches!(e, Error::BlobNotFound { .. }), "{e}");
    drop(reg);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn basic_auth_and_tls() {
    if !setup() {
        return;
    }
    let (dir, imgs) = build_images();
    let reg = Registry::start(RegistryOptions { basic_auth: true, tls: true });
    let digest = reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let rt = rt();
    let fetch = |c: &Client| rt.block_on(c.manifest("img", "test/busybox", "v1"));

    let no_ca = client(&RegistryConfig::default(), &reg.host(), None);
    let e = fetch(&no_ca).unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }) && e.to_string().to_lowercase().contains("certificate"), "{e}");

    let mut cfg = RegistryConfig::default();
    cfg.hosts.insert(reg.host(), RegistryHost { ca_files: vec![reg.ca_file().unwrap()], ..Default::default() });
    let e = fetch(&client(&cfg, &reg.host(), None)).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e}");
    let good = Auth::Basic { username: USER.into(), password: PASSWORD.into() };
    assert_eq!(fetch(&client(&cfg, &reg.host(), Some(good))).unwrap().digest, digest);

    // Plain HTTP to a TLS registry is refused by the server, not silently downgraded.
    cfg.insecure.push(reg.host());
    assert!(fetch(&client(&cfg, &reg.host(), None)).is_err());
    drop(reg);
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}
