//! Pulls through a running `berthlet`: CRI `PullImage` with our gRPC client,
//! the streaming `berth.images.v1.Pull`, and `berthlet image pull`, from a real
//! registry (Debian's docker-registry on 127.0.0.1). Covers the images of the
//! issue (busybox by tag and digest, whiteouts, a two-platform index, zstd, the
//! Debian image), basic auth (CRI `AuthConfig` and the config file), TLS with a
//! CA from the config file, the bad cases as CRI status codes (unknown image,
//! corrupted blob, registry down mid-pull), and a daemon restart between pull
//! and list. After the daemon stops, the test opens its store and mounts the
//! pulled snapshots to check their content; nothing partial is left behind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_tests::berthlet_daemon::{cri, images_v1, Daemon};
use berth_tests::images::{debian_layout, with_image_rootfs, TestImages};
use berth_tests::registry::{self, Proxy, ProxyMode, Registry, RegistryOptions, PASSWORD, USER};
use base64::Engine as _;
use berthlet::images::Store;
use images_v1::pull_progress::Event;
use tonic::Code;

fn images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(TestImages::cached)
}

/// Root, the registry binary and the berthlet binary; else `None` after a SKIP line.
fn daemon() -> Option<Daemon> {
    if !registry::available() {
        return None;
    }
    Daemon::for_test()
}

/// A registry holding `pushes` (layout tag, repository:tag) and a daemon
/// trusting it over plain HTTP; `None` (after a SKIP line) without root or the registry.
fn registry_and_daemon(pushes: &[(&str, &str)]) -> Option<(Daemon, Registry)> {
    let mut d = daemon()?;
    let reg = Registry::start(RegistryOptions::default());
    for (tag, dest) in pushes {
        reg.push(&images().layout, tag, dest, *tag == "multiarch");
    }
    d.start(&["--insecure-registry", &reg.host()]);
    Some((d, reg))
}

/// berth.images.v1.Pull to the end: every event, in order (panics on an error status).
fn stream_pull(d: &Daemon, image: &str) -> Vec<Event> {
    d.block_on(async {
        let req = images_v1::PullRequest { image: image.to_string(), auth: None };
        let mut s = d.images().await.pull(req).await.unwrap().into_inner();
        let mut events = vec![];
        while let Some(m) = s.message().await.unwrap() {
            events.push(m.event.expect("an event in every message"));
        }
        events
    })
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec { image: image.to_string(), ..Default::default() })
}

/// CRI PullImage: the image ref, or the gRPC status.
fn cri_pull(d: &Daemon, image: &str, auth: Option<cri::AuthConfig>) -> Result<String, tonic::Status> {
    d.block_on(async {
        let req = cri::PullImageRequest { image: spec(image), auth, sandbox_config: None };
        d.cri_images().await.pull_image(req).await.map(|r| r.into_inner().image_ref)
    })
}

#[track_caller]
fn cri_pull_ok(d: &Daemon, image: &str) -> String {
    cri_pull(d, image, None).unwrap_or_else(|s| panic!("PullImage {image}: {s:?}\ndaemon log:\n{}", d.log_text()))
}

fn list_ids(d: &Daemon) -> Vec<String> {
    d.block_on(async {
        let r = d.cri_images().await.list_images(cri::ListImagesRequest::default()).await.unwrap();
        r.into_inner().images.into_iter().map(|i| i.id).collect()
    })
}

fn status(d: &Daemon, image: &str) -> Option<cri::Image> {
    d.block_on(async {
        let req = cri::ImageStatusRequest { image: spec(image), verbose: false };
        d.cri_images().await.image_status(req).await.unwrap().into_inner().image
    })
}

/// Writes a config file in the daemon's temp dir and returns its path.
fn config_file(d: &Daemon, toml: &str) -> String {
    let p = d.tmp.join("berthlet.toml");
    std::fs::write(&p, toml).unwrap();
    p.display().to_string()
}

/// Partial downloads left in the daemon's store.
fn partials(d: &Daemon) -> Vec<PathBuf> {
    match std::fs::read_dir(d.state_dir.join("images/ingest")) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![],
    }
}

/// With the daemon stopped: opens its store and runs `f` on `image_id`'s mounted snapshot.
fn with_rootfs(d: &Daemon, image_id: &str, f: impl FnOnce(&Path)) {
    let store = Store::open(&d.state_dir.join("images")).unwrap();
    with_image_rootfs(&store, &d.tmp, image_id, f);
}

#[test]
fn pull_through_cri_then_restart_and_check_content() {
    let pushes = [("busybox", "test/busybox:v1"), ("layered", "test/layered:v1"), ("multiarch", "test/multi:v1"), ("zstd", "test/zstd:v1")];
    let Some((mut d, reg)) = registry_and_daemon(&pushes) else { return };
    let (imgs, host) = (images(), reg.host());
    let digest = imgs.busybox.manifest.digest.clone();

    let busybox = format!("{host}/test/busybox:v1");
    let by_digest = format!("{host}/test/busybox@{digest}");
    assert_eq!(cri_pull_ok(&d, &busybox), imgs.busybox.config.digest, "PullImage answers the image id");
    assert_eq!(cri_pull_ok(&d, &by_digest), imgs.busybox.config.digest);
    assert_eq!(cri_pull_ok(&d, &format!("{host}/test/layered:v1")), imgs.layered.config.digest);
    assert_eq!(cri_pull_ok(&d, &format!("{host}/test/multi:v1")), imgs.multiarch_amd64.config.digest, "index resolved to linux/amd64");
    // ImageStatus gives the digest the tag resolved to (the index), as containerd does.
    let st = status(&d, &format!("{host}/test/multi:v1")).expect("status of the index image");
    assert_eq!(st.repo_digests, vec![format!("{host}/test/multi@{}", imgs.multiarch.digest)], "{st:?}");
    assert_eq!(cri_pull_ok(&d, &format!("{host}/test/zstd:v1")), imgs.zstd.config.digest);
    // Docker's schema 2 (skopeo converts the media types; the config bytes stay,
    // so it is the busybox image under one more name and manifest digest).
    let docker_digest = reg.push_docker(&imgs.layout, "busybox", "test/docker:v1");
    assert_ne!(docker_digest, digest);
    assert_eq!(cri_pull_ok(&d, &format!("{host}/test/docker:v1")), imgs.busybox.config.digest);
    let st = status(&d, &format!("{host}/test/docker:v1")).expect("status of the Docker-format image");
    assert!(st.repo_digests.contains(&format!("{host}/test/docker@{docker_digest}")), "{st:?}");

    let st = status(&d, &busybox).expect("status of the pulled busybox");
    assert!(st.repo_tags.contains(&busybox), "{st:?}");
    assert!(st.repo_digests.contains(&by_digest), "{st:?}");
    assert!(st.size > 0);
    // The CRI call logs what it pulled.
    let log = d.log_text();
    assert!(log.contains("PullImage") && log.contains("image pulled") && log.contains(&busybox), "daemon log:\n{log}");

    // Restart between pull and list: everything is there.
    let before = list_ids(&d);
    // The zstd and Docker-format images have busybox's config: one image, several names.
    let mut want = vec![&imgs.busybox.config.digest, &imgs.layered.config.digest, &imgs.multiarch_amd64.config.digest, &imgs.zstd.config.digest];
    want.sort();
    want.dedup();
    assert_eq!(before.len(), want.len(), "{before:?}");
    assert!(want.iter().all(|id| before.contains(id)), "{before:?}");
    d.stop();
    d.start(&["--insecure-registry", &host]);
    let mut after = list_ids(&d);
    let mut sorted = before.clone();
    sorted.sort();
    after.sort();
    assert_eq!(after, sorted, "images lost over a restart");
    assert_eq!(status(&d, &by_digest).map(|i| i.id), Some(imgs.busybox.config.digest.clone()));
    d.stop();
    assert!(partials(&d).is_empty(), "partial downloads left: {:?}", partials(&d));

    with_rootfs(&d, &imgs.layered.config.digest, |root| {
        assert!(!root.join("data/gone").exists(), "whiteout did not delete data/gone");
        assert_eq!(std::fs::read_to_string(root.join("data/kept")).unwrap(), "kept\n");
        let opaque: Vec<_> = std::fs::read_dir(root.join("data/opaque")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(opaque, ["new"], "the opaque dir shows lower entries");
    });
    with_rootfs(&d, &imgs.multiarch_amd64.config.digest, |root| {
        assert_eq!(std::fs::read_to_string(root.join("platform")).unwrap(), "amd64\n");
    });
    with_rootfs(&d, &imgs.zstd.config.digest, |root| assert!(root.join("bin/busybox").is_file()));
}

#[test]
fn streaming_pull_and_cli_progress() {
    let Some((mut d, reg)) = registry_and_daemon(&[("busybox", "test/busybox:v1"), ("layered", "test/layered:v1")]) else { return };
    let (imgs, host) = (images(), reg.host());

    // berth.images.v1.Pull: resolved first, per-layer bytes, the image last.
    let name = format!("{host}/test/layered:v1");
    let events = stream_pull(&d, &name);
    let Some(Event::Resolved(r)) = events.first() else { panic!("first event: {:?}", events.first()) };
    assert_eq!(r.reference, name);
    assert_eq!(r.layers.len(), imgs.layered.layers.len());
    let Some(Event::Done(img)) = events.last() else { panic!("last event: {:?}", events.last()) };
    assert_eq!(img.id, imgs.layered.config.digest);
    assert!(img.repo_tags.contains(&name));
    for l in &r.layers {
        let full = events.iter().any(|e| matches!(e, Event::Layer(p) if p.digest == l.digest && p.done == l.size && p.total == l.size));
        assert!(full, "no final byte count for layer {}", l.digest);
        assert!(events.iter().any(|e| matches!(e, Event::LayerDone(x) if *x == l.digest)), "no layer_done for {}", l.digest);
    }
    assert!(events.iter().any(|e| matches!(e, Event::Unpacking(_))));

    // A bad name fails the call itself.
    let st = d.block_on(async {
        let req = images_v1::PullRequest { image: "Bad Name".into(), auth: None };
        d.images().await.pull(req).await.err().expect("a bad reference must fail")
    });
    assert_eq!(st.code(), Code::InvalidArgument, "{st:?}");

    // `berthlet image pull` without a terminal: plain progress lines, the id last.
    let busybox = format!("{host}/test/busybox:v1");
    let out = d.cli(&["image", "pull", &busybox]);
    assert!(out.success(), "berthlet image pull: {out:?}");
    let text = out.stdout.clone();
    assert!(text.contains(&format!("resolved {busybox}")), "{text}");
    assert!(text.contains(&format!("Image is up to date for {}", imgs.busybox.config.digest)), "{text}");
    for l in &imgs.busybox.layers {
        let short = &l.digest["sha256:".len().."sha256:".len() + 12];
        assert!(text.contains(&format!("layer {short}")), "no line for layer {short}:\n{text}");
    }
    // And a failing one: a clear message and a non-zero exit.
    let out = d.cli(&["image", "pull", &format!("{host}/test/nope:v1")]);
    assert!(!out.success());
    assert!(out.stderr.contains("test/nope") && out.stderr.contains("not found"), "{out:?}");
    d.stop();
}

#[test]
fn bad_cases_are_clear_cri_errors_and_leave_nothing() {
    let Some(mut d) = daemon() else { return };
    let imgs = images();
    let reg = Registry::start(RegistryOptions::default());
    let host = reg.host();
    reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let proxy = Proxy::start(&host);
    let via_proxy = format!("{}/test/busybox:v1", proxy.host());
    d.start(&["--insecure-registry", &host, "--insecure-registry", &proxy.host()]);

    // Unknown repository and unknown tag: NotFound, naming the image.
    for name in [format!("{host}/test/nope:v1"), format!("{host}/test/busybox:nope")] {
        let st = cri_pull(&d, &name, None).unwrap_err();
        assert_eq!(st.code(), Code::NotFound, "{name}: {st:?}");
        assert!(st.message().contains(&name), "{st:?}");
    }
    // A registry nobody listens on: Unavailable.
    let dead = format!("127.0.0.1:{}", registry::free_port());
    let st = cri_pull(&d, &format!("{dead}/test/busybox:v1"), None).unwrap_err();
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(st.message().contains(&dead), "{st:?}");

    // A corrupted layer: DataLoss naming the blob; nothing committed, nothing partial.
    let layer = &imgs.busybox.layers[0];
    let bytes = std::fs::read(reg.blob_path(&layer.digest)).unwrap();
    proxy.corrupt(&bytes[bytes.len() / 2..bytes.len() / 2 + 32]);
    let st = cri_pull(&d, &via_proxy, None).unwrap_err();
    assert!(proxy.corrupted() > 0, "the proxy never saw the blob");
    assert_eq!(st.code(), Code::DataLoss, "{st:?}");
    assert!(st.message().contains(&layer.digest), "{st:?}");
    assert!(partials(&d).is_empty(), "corrupt partial kept: {:?}", partials(&d));
    assert!(list_ids(&d).is_empty());

    // The registry goes down mid-layer: Unavailable; once it is back the pull resumes.
    assert!(layer.size > 400_000, "busybox layer too small for this test: {}", layer.size);
    proxy.set_mode(ProxyMode::Forward);
    proxy.cut_after(300_000);
    let st = cri_pull(&d, &via_proxy, None).unwrap_err();
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(st.message().contains(&via_proxy), "{st:?}");
    assert!(list_ids(&d).is_empty());
    proxy.set_mode(ProxyMode::Forward);
    let events = stream_pull(&d, &via_proxy);
    let first = events.iter().find_map(|e| match e {
        Event::Layer(p) if p.digest == layer.digest => Some(p.done),
        _ => None,
    });
    assert!(first.unwrap_or(0) > 100_000, "the layer did not resume from its partial file: first progress {first:?}");
    assert!(matches!(events.last(), Some(Event::Done(i)) if i.id == imgs.busybox.config.digest), "{:?}", events.last());
    assert!(partials(&d).is_empty(), "{:?}", partials(&d));
    d.stop();
    with_rootfs(&d, &imgs.busybox.config.digest, |root| assert!(root.join("bin/busybox").is_file()));
}

#[test]
fn basic_auth_from_request_and_config_and_tls_ca_from_config() {
    let Some(mut d) = daemon() else { return };
    let imgs = images();
    let auth_reg = Registry::start(RegistryOptions { basic_auth: true, tls: false });
    auth_reg.push(&imgs.layout, "busybox", "test/busybox:v1", false);
    let tls_reg = Registry::start(RegistryOptions { basic_auth: false, tls: true });
    tls_reg.push(&imgs.layout, "layered", "test/layered:v1", false);
    let (ah, th) = (auth_reg.host(), tls_reg.host());
    let with_auth = format!("{ah}/test/busybox:v1");
    let over_tls = format!("{th}/test/layered:v1");

    // No credentials, no CA: Unauthenticated and Unavailable (the unknown CA).
    d.start(&["--insecure-registry", &ah]);
    let st = cri_pull(&d, &with_auth, None).unwrap_err();
    assert_eq!(st.code(), Code::Unauthenticated, "{st:?}");
    assert!(st.message().contains(&ah), "{st:?}");
    let wrong = cri::AuthConfig { username: USER.into(), password: "wrong".into(), ..Default::default() };
    assert_eq!(cri_pull(&d, &with_auth, Some(wrong)).unwrap_err().code(), Code::Unauthenticated);
    let st = cri_pull(&d, &over_tls, None).unwrap_err();
    assert_eq!(st.code(), Code::Unavailable, "{st:?}");
    assert!(st.message().to_lowercase().contains("certificate"), "{st:?}");

    // CRI AuthConfig, as the kubelet sends it from an imagePullSecret (base64 user:password).
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let good = cri::AuthConfig { auth: b64, ..Default::default() };
    assert_eq!(cri_pull(&d, &with_auth, Some(good)).unwrap(), imgs.busybox.config.digest);
    d.block_on(async {
        d.cri_images().await.remove_image(cri::RemoveImageRequest { image: spec(&with_auth) }).await.unwrap();
    });
    d.stop();

    // Credentials and the CA from the config file.
    let ca = tls_reg.ca_file().unwrap();
    let cfg = config_file(
        &d,
        &format!(
            "insecure_registries = [\"{ah}\"]\n\n[registries.\"{ah}\"]\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\n[registries.\"{th}\"]\nca_file = \"{}\"\n",
            ca.display()
        ),
    );
    d.start(&["--config", &cfg]);
    assert_eq!(cri_pull_ok(&d, &with_auth), imgs.busybox.config.digest);
    assert_eq!(cri_pull_ok(&d, &over_tls), imgs.layered.config.digest);
    // The password never reaches the log.
    assert!(!d.log_text().contains(PASSWORD), "the registry password is in the daemon log");
    d.stop();
}

#[test]
fn debian_image_through_cri() {
    let Some(mut d) = daemon() else { return };
    let layout = debian_layout();
    let reg = Registry::start(RegistryOptions::default());
    let host = reg.host();
    let digest = reg.push(&layout, "debian", "test/debian:bookworm", false);
    d.start(&["--insecure-registry", &host]);
    let name = format!("{host}/test/debian:bookworm");

    // A client that gives up (its deadline passes) does not stop the pull:
    // the image shows up without another request.
    let t = std::time::Instant::now();
    let st = d.block_on(async {
        let mut req = tonic::Request::new(cri::PullImageRequest { image: spec(&name), auth: None, sandbox_config: None });
        req.set_timeout(std::time::Duration::from_millis(200));
        d.cri_images().await.pull_image(req).await.unwrap_err()
    });
    assert!(matches!(st.code(), Code::DeadlineExceeded | Code::Cancelled), "{st:?}");
    let id = loop {
        if let Some(i) = status(&d, &name) {
            break i.id;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(120), "the abandoned pull never finished; log:\n{}", d.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    println!("Debian image pulled in the background in {:?}", t.elapsed());
    // Pulling it again fetches nothing and answers at once.
    let t = std::time::Instant::now();
    assert_eq!(cri_pull_ok(&d, &name), id);
    println!("PullImage of the Debian image, already there: {:?}", t.elapsed());
    let st = status(&d, &name).unwrap();
    assert_eq!(st.id, id);
    assert!(st.repo_digests.contains(&format!("{host}/test/debian@{digest}")), "{st:?}");
    assert!(st.size > 50_000_000, "{st:?}");
    d.stop();
    with_rootfs(&d, &id, |root| {
        assert!(root.join("usr/sbin/nginx").is_file());
        assert!(std::fs::read_to_string(root.join("etc/os-release")).unwrap().contains("bookworm"));
    });
}

#[test]
fn concurrent_pulls_share_the_work() {
    let Some((mut d, reg)) = registry_and_daemon(&[("layered", "test/layered:v1"), ("busybox", "test/busybox:v1")]) else { return };
    let (imgs, host) = (images(), reg.host());
    // Six pulls at once, of two images sharing the busybox layer.
    let names: Vec<String> = (0..6).map(|i| format!("{host}/test/{}:v1", if i % 2 == 0 { "layered" } else { "busybox" })).collect();
    let results = d.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, n) in names.iter().enumerate() {
            let mut c = d.cri_images().await;
            let req = cri::PullImageRequest { image: spec(n), auth: None, sandbox_config: None };
            set.spawn(async move { (i, c.pull_image(req).await.map(|r| r.into_inner().image_ref)) });
        }
        let mut out = vec![];
        while let Some(r) = set.join_next().await {
            out.push(r.unwrap());
        }
        out
    });
    for (i, r) in results {
        let want = if i % 2 == 0 { &imgs.layered.config.digest } else { &imgs.busybox.config.digest };
        assert_eq!(r.as_ref().ok(), Some(want), "pull {i} of {}: {r:?}\nlog:\n{}", names[i], d.log_text());
    }
    let mut ids = list_ids(&d);
    ids.sort();
    let mut want = vec![imgs.layered.config.digest.clone(), imgs.busybox.config.digest.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert!(partials(&d).is_empty(), "{:?}", partials(&d));
    d.stop();
    // One unpacked directory per layer: the shared busybox layer was not unpacked twice.
    let layers: Vec<_> = std::fs::read_dir(d.state_dir.join("images/layers")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(layers.len(), imgs.layered.layers.len(), "{layers:?}");
}

#[test]
fn daemon_stopped_mid_pull_then_pull_again() {
    let Some(mut d) = daemon() else { return };
    let layout = debian_layout();
    let reg = Registry::start(RegistryOptions::default());
    let host = reg.host();
    reg.push(&layout, "debian", "test/debian:bookworm", false);
    let name = format!("{host}/test/debian:bookworm");
    d.start(&["--insecure-registry", &host]);
    // Start a pull, let it get going, then SIGTERM: a clean exit (code 0, socket gone).
    let st = d.block_on(async {
        let mut req = tonic::Request::new(cri::PullImageRequest { image: spec(&name), auth: None, sandbox_config: None });
        req.set_timeout(std::time::Duration::from_millis(300));
        d.cri_images().await.pull_image(req).await.unwrap_err()
    });
    assert!(matches!(st.code(), Code::DeadlineExceeded | Code::Cancelled), "{st:?}");
    d.stop();
    // Whatever the pull had done is either complete or resumable: the next pull works
    // and leaves no partial download or half-unpacked layer behind.
    d.start(&["--insecure-registry", &host]);
    let id = cri_pull_ok(&d, &name);
    let gc = d.block_on(async { d.images().await.gc(images_v1::GcRequest {}).await.unwrap().into_inner() });
    println!("gc after the restarted pull: {gc:?}");
    d.stop();
    assert!(partials(&d).is_empty(), "{:?}", partials(&d));
    let tmp: Vec<_> = std::fs::read_dir(d.state_dir.join("images/layers"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .map(|e| e.path())
        .collect();
    assert!(tmp.is_empty(), "half-unpacked layers left: {tmp:?}");
    with_rootfs(&d, &id, |root| assert!(root.join("usr/sbin/nginx").is_file()));
}
