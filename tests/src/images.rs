//! Test images as OCI image layouts, built with GNU tar, gzip and zstd from plain
//! directories (whiteouts are ordinary `.wh.` files in a layer directory):
//!
//! - `busybox`: the busybox-static rootfs (`.cache/rootfs/busybox`), one gzip layer.
//! - `layered`: busybox plus two layers: the second deletes `/data/gone` (whiteout) and
//!   makes `/data/opaque` opaque, the third adds `/data/added`.
//! - `multiarch`: an image index with linux/amd64 and linux/arm64; `/platform` in each
//!   holds its architecture, so a test can tell which one was pulled.
//! - `zstd`: busybox with a zstd-compressed layer.
//! - `debian`: `debootstrap --variant=minbase --include=nginx-light bookworm` in two gzip
//!   layers, cached in `.cache/images/debian/oci` (it downloads from the Debian mirror
//!   once: a build step like `scripts/setup`'s apt, not test traffic).
//!
//! Every small layout is rebuilt per test run under a temp dir (it takes well under a
//! second); only the Debian one is cached.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Bumped when the Debian recipe changes, so the cache is rebuilt.
const DEBIAN_RECIPE: &str = "v1 debootstrap --variant=minbase --include=nginx-light bookworm; layers: all but usr/share, usr/share; gzip -6";
const DEBIAN_MIRROR_DEFAULT: &str = "http://deb.debian.org/debian";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A descriptor as written in manifests and indexes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    fn json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

/// What an image built into a layout consists of.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BuiltImage {
    pub manifest: Desc,
    pub config: Desc,
    pub layers: Vec<Desc>,
}

impl Layout {
    pub fn create(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout { dir: dir.to_path_buf(), refs: Vec::new() }
    }

    pub fn put(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let digest = sha256(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            std::fs::write(&path, bytes).unwrap();
        }
        Desc { media_type: media_type.into(), digest, size: bytes.len() as u64 }
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    /// Writes a layer from a directory tree; returns (descriptor, diff id).
    pub fn layer_from_dir(&self, dir: &Path, compression: Compression) -> (Desc, String) {
        self.layer_from_tar(&tar_dir(dir, &[], &[]), compression)
    }

    pub fn layer_from_tar(&self, tar: &[u8], compression: Compression) -> (Desc, String) {
        let diff_id = sha256(tar);
        let (media, bytes) = match compression {
            Compression::Gzip => (MEDIA_LAYER_GZIP, filter(&["gzip", "-n", "-6", "-c"], tar)),
            Compression::Zstd => (MEDIA_LAYER_ZSTD, filter(&["zstd", "-q", "-3", "-c"], tar)),
            Compression::None => (MEDIA_LAYER_TAR, tar.to_vec()),
        };
        (self.put(media, &bytes), diff_id)
    }

    /// Writes config + manifest for `layers` (descriptor, diff id); `tag` (if any) goes in index.json.
    pub fn image(&mut self, tag: Option<&str>, arch: &str, layers: &[(Desc, String)], cmd: &[&str]) -> BuiltImage {
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": cmd,
                "WorkingDir": "/",
                "Labels": {"org.berth.test": "1"},
                "StopSignal": "SIGTERM",
            },
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>()},
            "history": layers.iter().map(|_| json!({"created_by": "berth tests"})).collect::<Vec<_>>(),
        });
        let config = self.put(MEDIA_CONFIG, serde_json::to_vec(&config).unwrap().as_slice());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.json(),
            "layers": layers.iter().map(|(d, _)| d.json()).collect::<Vec<_>>(),
        });
        let manifest = self.put(MEDIA_MANIFEST, serde_json::to_vec(&manifest).unwrap().as_slice());
        if let Some(t) = tag {
            self.add_ref(&manifest, t, None);
        }
        BuiltImage { manifest, config, layers: layers.iter().map(|(d, _)| d.clone()).collect() }
    }

    /// Writes an image index over `(manifest, arch)` pairs, tagged `tag`.
    pub fn index(&mut self, tag: &str, images: &[(&BuiltImage, &str, Option<&str>)]) -> Desc {
        let manifests: Vec<Value> = images
            .iter()
            .map(|(img, arch, variant)| {
                let mut d = img.manifest.json();
                let mut p = json!({"os": "linux", "architecture": arch});
                if let Some(v) = variant {
                    p["variant"] = json!(v);
                }
                d["platform"] = p;
                d
            })
            .collect();
        let idx = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests});
        let desc = self.put(MEDIA_INDEX, serde_json::to_vec(&idx).unwrap().as_slice());
        self.add_ref(&desc, tag, None);
        desc
    }

    fn add_ref(&mut self, d: &Desc, tag: &str, platform: Option<Value>) {
        let mut v = d.json();
        v["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        if let Some(p) = platform {
            v["platform"] = p;
        }
        self.refs.retain(|r| r["annotations"]["org.opencontainers.image.ref.name"] != json!(tag));
        self.refs.push(v);
        let index = json!({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": self.refs});
        let tmp = self.dir.join("index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&index).unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("index.json")).unwrap();
    }
}

/// `tar` of a directory's contents (numeric owners, xattrs, sorted names, fixed mtime
/// so a rebuild gives the same digest), with optional excludes / only-these paths.
pub fn tar_dir(dir: &Path, exclude: &[&str], only: &[&str]) -> Vec<u8> {
    let mut cmd = Command::new("tar");
    cmd.args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name", "--mtime=2024-01-01 00:00:00Z", "--format=posix"])
        .args(["--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"]);
    for e in exclude {
        cmd.arg(format!("--exclude={e}"));
    }
    cmd.arg("-C").arg(dir).arg("-cf").arg("-");
    if only.is_empty() {
        cmd.arg(".");
    } else {
        cmd.args(only);
    }
    let out = cmd.stderr(Stdio::inherit()).output().expect("spawn tar");
    assert!(out.status.success(), "tar of {} failed", dir.display());
    out.stdout
}

/// Pipes `input` through a command (`gzip -c`, `zstd -c`).
fn filter(cmd: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new(cmd[0]).args(&cmd[1..]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", cmd[0]));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    out.stdout
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Bumped when the small images' recipe changes.
const SMALL_RECIPE: &str = "small-v1";

/// The small test images, in one layout under `dir`, tags: busybox, layered, multiarch, zstd.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TestImages {
    pub layout: PathBuf,
    pub busybox: BuiltImage,
    pub layered: BuiltImage,
    pub multiarch: Desc,
    pub multiarch_amd64: BuiltImage,
    pub multiarch_arm64: BuiltImage,
    pub zstd: BuiltImage,
}

impl TestImages {
    /// Built once and kept in `<repo>/.cache/images/<recipe>-<busybox stamp hash>` (made
    /// in a temp dir and renamed into place, so parallel test binaries are safe).
    pub fn cached() -> TestImages {
        let stamp = std::fs::read(crate::repo_root().join(".cache/rootfs/busybox.stamp")).unwrap_or_default();
        let key = &sha256(&stamp)[7..19];
        let dir = crate::repo_root().join(".cache/images").join(format!("{SMALL_RECIPE}-{key}"));
        let meta = dir.join("images.json");
        if let Ok(b) = std::fs::read(&meta) {
            if let Ok(mut t) = serde_json::from_slice::<TestImages>(&b) {
                t.layout = dir.join("layout");
                return t;
            }
        }
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let t = TestImages::build(&tmp);
        std::fs::write(tmp.join("images.json"), serde_json::to_vec(&t).unwrap()).unwrap();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another process won the race: use its copy.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let mut t: TestImages = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        t.layout = dir.join("layout");
        t
    }

    pub fn build(dir: &Path) -> TestImages {
        let rootfs = crate::rootfs();
        let work = dir.join("work");
        let mut l = Layout::create(&dir.join("layout"));
        let base = l.layer_from_tar(&tar_dir(&rootfs, &["./dev/*", "./proc/*", "./sys/*"], &[]), Compression::Gzip);
        let busybox = l.image(Some("busybox"), "amd64", &[base.clone()], &["sh"]);

        // layered: /data/{gone,kept,opaque/{old1,old2}} then whiteouts, then an addition.
        let l1 = work.join("l1");
        write(&l1, "data/gone", "deleted later\n");
        write(&l1, "data/kept", "kept\n");
        write(&l1, "data/opaque/old1", "hidden by opaque\n");
        write(&l1, "data/opaque/old2", "hidden by opaque\n");
        let l2 = work.join("l2");
        write(&l2, "data/.wh.gone", "");
        write(&l2, "data/opaque/.wh..wh..opq", "");
        write(&l2, "data/opaque/new", "after opaque\n");
        let l3 = work.join("l3");
        write(&l3, "data/added", "third layer\n");
        let layers = [base.clone(), l.layer_from_dir(&l1, Compression::Gzip), l.layer_from_dir(&l2, Compression::Gzip), l.layer_from_dir(&l3, Compression::None)];
        let layered = l.image(Some("layered"), "amd64", &layers, &["sh"]);

        // multiarch: the amd64 image says amd64; the arm64 one (not runnable here) says arm64.
        let pa = work.join("amd64");
        write(&pa, "platform", "amd64\n");
        let parm = work.join("arm64");
        write(&parm, "platform", "arm64\n");
        let amd = l.image(None, "amd64", &[base.clone(), l.layer_from_dir(&pa, Compression::Gzip)], &["sh"]);
        let arm = l.image(None, "arm64", &[l.layer_from_dir(&parm, Compression::Gzip)], &["sh"]);
        let multiarch = l.index("multiarch", &[(&arm, "arm64", Some("v8")), (&amd, "amd64", None)]);

        let zbase = l.layer_from_tar(&tar_dir(&rootfs, &["./dev/*", "./proc/*", "./sys/*"], &[]), Compression::Zstd);
        let zstd = l.image(Some("zstd"), "amd64", &[zbase], &["sh"]);
        let _ = std::fs::remove_dir_all(&work);
        TestImages { layout: l.dir.clone(), busybox, layered, multiarch, multiarch_amd64: amd, multiarch_arm64: arm, zstd }
    }
}

/// The Debian + nginx-light image: `(layout dir, tag "debian")`, built once and cached in
/// `<repo>/.cache/images/debian/oci`. Needs network access to the Debian mirror the first
/// time only ($BERTH_DEBIAN_MIRROR, else the host's apt source, else deb.debian.org).
pub fn debian_layout() -> PathBuf {
    let cache = crate::repo_root().join(".cache/images/debian");
    let oci = cache.join("oci");
    let stamp = cache.join("stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(DEBIAN_RECIPE) && oci.join("index.json").exists() {
        return oci;
    }
    std::fs::create_dir_all(&cache).unwrap();
    // One builder at a time (test binaries may run in parallel).
    let lock = std::fs::File::create(cache.join("lock")).unwrap();
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e).expect("lock the Debian image cache");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(DEBIAN_RECIPE) && oci.join("index.json").exists() {
        return oci;
    }
    let rootfs = cache.join("rootfs.tmp");
    if !rootfs.join("usr/sbin/nginx").exists() {
        let _ = std::fs::remove_dir_all(&rootfs);
        let mirror = debian_mirror();
        eprintln!("berth tests: building the Debian test image once (debootstrap from {mirror}, a few minutes; cached in {})", cache.display());
        let st = Command::new("debootstrap")
            .args(["--variant=minbase", "--include=nginx-light", "bookworm"])
            .arg(&rootfs)
            .arg(&mirror)
            .stdout(Stdio::null())
            .status()
            .expect("spawn debootstrap");
        assert!(st.success(), "debootstrap into {} failed", rootfs.display());
    }
    let _ = std::fs::remove_dir_all(&oci);
    let mut l = Layout::create(&oci);
    let excl = ["./dev/*", "./proc/*", "./sys/*", "./var/cache/apt/archives/*.deb", "./var/lib/apt/lists/*", "./usr/share"];
    let base = l.layer_from_tar(&tar_dir(&rootfs, &excl, &[]), Compression::Gzip);
    let share = l.layer_from_tar(&tar_dir(&rootfs, &[], &["./usr/share"]), Compression::Gzip);
    l.image(Some("debian"), "amd64", &[base, share], &["nginx", "-g", "daemon off;"]);
    std::fs::write(&stamp, DEBIAN_RECIPE).unwrap();
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_file(cache.join("rootfs.tar"));
    oci
}

fn debian_mirror() -> String {
    if let Ok(m) = std::env::var("BERTH_DEBIAN_MIRROR") {
        return m;
    }
    // First "URIs:" / "deb" line of the host's apt sources that serves bookworm main.
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(rd.flatten().map(|e| e.path()));
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for line in text.lines() {
            let line = line.trim();
            if let Some(u) = line.strip_prefix("URIs:") {
                let u = u.trim();
                if u.ends_with("/debian") {
                    return u.to_string();
                }
            }
            if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(u) = rest.split_whitespace().find(|w| w.starts_with("http")) {
                    if u.ends_with("/debian") {
                        return u.to_string();
                    }
                }
            }
        }
    }
    DEBIAN_MIRROR_DEFAULT.to_string()
}

/// Mounts the overlay snapshot of `image_id` from `store` (scratch dirs under
/// `scratch`), runs `f` on the mount point, then unmounts and removes the
/// snapshot, also when `f` panics.
pub fn with_image_rootfs(store: &berthlet::images::Store, scratch: &Path, image_id: &str, f: impl FnOnce(&Path)) {
    let snaps = scratch.join("test-snapshots");
    let target = scratch.join("mnt");
    std::fs::create_dir_all(&target).unwrap();
    let snap = store.prepare_snapshot(&snaps, "check", image_id).unwrap_or_else(|e| panic!("snapshot of {image_id}: {e}"));
    snap.mount(&target).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&target)));
    berthlet::images::Snapshot::unmount(&target).unwrap();
    store.remove_snapshot(&snaps, "check").unwrap();
    if let Err(p) = r {
        std::panic::resume_unwind(p);
    }
}
