//! The image store on disk (all under one root, `<state-dir>/images`):
//!
//! ```text
//! blobs/sha256/<hex>          content-addressed blobs (manifests, configs, layer tars)
//! ingest/sha256-<hex>.partial downloads in progress (resumable), temp files
//! layers/<chain-id hex>/      one unpacked diff directory per layer chain id
//! layers/tmp-<hex>-<n>/       a layer being unpacked (renamed when complete)
//! records/<image-id hex>.json image records
//! snapshot-refs/<hash>.json   which snapshot uses which layers (kept from gc)
//! ```
//!
//! Every write is crash-safe (temp, fsync, rename, fsync dir); the store
//! keeps no state in memory that a restart would need.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::fsutil;
use super::oci::{self, Compression, Document, LayerKind, Platform};
use super::{digest_hex, Error, Result};

/// What a container of the image runs (from the image config's `config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub stop_signal: String,
}

/// One image, as stored in `records/<id hex>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest, "sha256:<hex>".
    pub id: String,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    /// Bytes of the image's blobs (config plus compressed layers), as registries count it.
    pub size: u64,
    /// The platform manifest (an index, if the image came from one, is in `blobs`).
    pub manifest_digest: String,
    /// Chain ids, bottom layer first; `layers/<hex>` holds each diff directory.
    pub layers: Vec<String>,
    pub config: ImageConfig,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub pinned: bool,
    /// Layer diff ids (uncompressed tar digests), bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
    /// Every blob the image needs (index, manifest, config, layers): kept by gc.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// "os/arch[/variant]" from the config.
    #[serde(default)]
    pub platform: String,
}

/// Usage of the images directory (CRI ImageFsInfo).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsUsage {
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The image store: cheap to clone, shareable between threads; blocking
/// filesystem calls (async callers use `spawn_blocking`).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    /// Serialises record updates (a tag moves between records atomically
    /// with respect to other writers of this process).
    pub(crate) records_lock: Mutex<()>,
    /// Writers (ingest, add_image, import, snapshots) share it; gc takes it
    /// exclusively so it never sees half-added images.
    pub(crate) gc_lock: RwLock<()>,
    /// Blobs committed but not yet referenced by a record (a pull in
    /// progress): gc spares them for a grace period.
    pub(crate) fresh: Mutex<HashMap<String, Instant>>,
    /// Digests whose ingest file a download of this process is writing.
    pub(crate) ingesting: Mutex<HashSet<String>>,
    /// Chain ids being unpacked by this process: a second `add_image` needing one waits
    /// on `unpacked` for the first and reuses its layer (or unpacks it itself if the
    /// first failed), so a layer shared by concurrent pulls is unpacked once.
    pub(crate) unpacking: Mutex<HashSet<String>>,
    pub(crate) unpacked: Condvar,
    /// Layers this store has unpacked (started), for tests and logs.
    pub(crate) unpack_count: AtomicUsize,
    /// Dropped with the last clone of the store (see [`Store::open_holding`]).
    _held: Option<Box<dyn std::any::Any + Send + Sync>>,
}

/// Held while one download writes `ingest_path(digest)`; dropping it lets
/// the next one in. See [`Store::try_lock_ingest`].
pub struct IngestGuard {
    store: Store,
    digest: String,
}

/// Held while this process unpacks one chain id; dropping it wakes the waiters.
struct UnpackClaim<'a> {
    store: &'a Store,
    chain_id: String,
}

impl Drop for UnpackClaim<'_> {
    fn drop(&mut self) {
        self.store.inner.unpacking.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.chain_id);
        self.store.inner.unpacked.notify_all();
    }
}

impl Drop for IngestGuard {
    fn drop(&mut self) {
        self.store.inner.ingesting.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.digest);
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.inner.root).finish()
    }
}

pub(crate) const BLOBS: &str = "blobs/sha256";
pub(crate) const INGEST: &str = "ingest";
pub(crate) const LAYERS: &str = "layers";
pub(crate) const RECORDS: &str = "records";
pub(crate) const SNAPSHOT_REFS: &str = "snapshot-refs";

impl Store {
    /// Opens (creating) the store at `root`. Takes no lock: the daemon holds the state lock.
    pub fn open(root: &Path) -> Result<Store> {
        Store::open_inner(root, None)
    }

    /// Opens the store and keeps `guard` (the daemon's state-dir lock) until the
    /// last clone of the store is dropped. Blocking work holds a clone, so an
    /// unpack still running when the daemon shuts down keeps the lock until it
    /// ends: a new instance can never start (and gc) beside a writer.
    pub fn open_holding(root: &Path, guard: impl std::any::Any + Send + Sync) -> Result<Store> {
        Store::open_inner(root, Some(Box::new(guard)))
    }

    fn open_inner(root: &Path, held: Option<Box<dyn std::any::Any + Send + Sync>>) -> Result<Store> {
        for d in [BLOBS, INGEST, LAYERS, RECORDS, SNAPSHOT_REFS] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).map_err(|e| Error::io("mkdir", &p, e))?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                records_lock: Mutex::new(()),
                gc_lock: RwLock::new(()),
                fresh: Mutex::new(HashMap::new()),
                ingesting: Mutex::new(HashSet::new()),
                unpacking: Mutex::new(HashSet::new()),
                unpacked: Condvar::new(),
                unpack_count: AtomicUsize::new(0),
                _held: held,
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn dir(&self, sub: &str) -> PathBuf {
        self.inner.root.join(sub)
    }

    pub(crate) fn read_guard(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.inner.gc_lock.read().unwrap_or_else(|p| p.into_inner())
    }

    /// `blobs/sha256/<hex>` (digest must be valid: "sha256:<64 hex>"; panics are avoided by
    /// mapping an invalid digest to a path that cannot exist).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        match digest_hex(digest) {
            Ok(h) => self.dir(BLOBS).join(h),
            Err(_) => self.dir(BLOBS).join("invalid-digest"),
        }
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        digest_hex(digest).is_ok() && self.blob_path(digest).is_file()
    }

    /// `ingest/sha256-<hex>.partial`: where a download writes; it may already
    /// hold a prefix of the blob from an interrupted download (resume from its length).
    pub fn ingest_path(&self, digest: &str) -> PathBuf {
        let h = digest_hex(digest).unwrap_or("invalid-digest");
        self.dir(INGEST).join(format!("sha256-{h}.partial"))
    }

    /// Claims the ingest file of `digest` for one writer in this process:
    /// None while another download of the same blob (say, a base layer two
    /// concurrent pulls share) holds it; that caller waits and then finds
    /// the blob committed (`has_blob`) or takes over the partial file.
    pub fn try_lock_ingest(&self, digest: &str) -> Option<IngestGuard> {
        let mut set = self.inner.ingesting.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(digest.to_string()).then(|| IngestGuard { store: self.clone(), digest: digest.to_string() })
    }

    /// Claims a blob already in the store for a pull that will reference it: under the
    /// store's lock (so no gc runs in between) checks it exists and marks it fresh, so gc
    /// spares it for the grace period even if no record lists it (say, it was left by a
    /// removed image). False when the blob is not there.
    pub fn claim_blob(&self, digest: &str) -> bool {
        self.claim_blobs([digest]).is_ok()
    }

    /// `claim_blob` for each digest: renews the grace of a pull's blobs right before
    /// `add_image` (a long pull may outlast the grace). Fails on the first one missing.
    pub fn claim_blobs<'a>(&self, digests: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let _g = self.read_guard();
        for d in digests {
            if !self.has_blob(d) {
                return Err(Error::BlobNotFound(d.to_string()));
            }
            self.mark_fresh(d);
        }
        Ok(())
    }

    fn mark_fresh(&self, digest: &str) {
        self.inner.fresh.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.to_string(), Instant::now());
    }

    /// Verifies the partial download of `digest` (size, then sha256), fsyncs it
    /// and moves it into `blobs/`. On a mismatch the partial file is deleted.
    pub fn commit_blob(&self, digest: &str, size: u64) -> Result<PathBuf> {
        let _g = self.read_guard();
        digest_hex(digest)?;
        let part = self.ingest_path(digest);
        let dst = self.blob_path(digest);
        if dst.is_file() {
            let _ = std::fs::remove_file(&part);
            self.mark_fresh(digest);
            return Ok(dst);
        }
        let mut f = File::open(&part).map_err(|e| Error::io("open", &part, e))?;
        let len = f.metadata().map_err(|e| Error::io("stat", &part, e))?.len();
        if len != size {
            let _ = std::fs::remove_file(&part);
            return Err(Error::SizeMismatch { digest: digest.into(), expected: size, actual: len });
        }
        let actual = hash_reader(&mut f).map_err(|e| Error::io("read", &part, e))?.0;
        if actual != digest {
            let _ = std::fs::remove_file(&part);
            return Err(Error::DigestMismatch { digest: digest.into(), actual });
        }
        f.sync_all().map_err(|e| Error::io("fsync", &part, e))?;
        std::fs::rename(&part, &dst).map_err(|e| Error::io("rename into", &dst, e))?;
        fsutil::fsync_dir(&self.dir(BLOBS))?;
        self.mark_fresh(digest);
        Ok(dst)
    }

    /// Stores a small blob (manifest, config, index); returns "sha256:<hex>".
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let _g = self.read_guard();
        let digest = super::sha256_digest(bytes);
        let dst = self.blob_path(&digest);
        if !dst.is_file() {
            fsutil::write_atomic(&dst, bytes)?;
        }
        self.mark_fresh(&digest);
        Ok(digest)
    }

    /// Streams a blob of unknown digest into the store (import); returns (digest, size).
    /// When `expect` is given the content must match it.
    pub fn put_blob_from(&self, reader: &mut dyn Read, expect: Option<&str>) -> Result<(String, u64)> {
        let _g = self.read_guard();
        let tmp = self.dir(INGEST).join(format!("import-{}.partial", fsutil::unique_suffix()));
        let res = (|| {
            let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut n_total = 0u64;
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read source of", &tmp, e)),
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n]).map_err(|e| Error::io("write", &tmp, e))?;
                n_total += n as u64;
            }
            let digest = super::digest_of(h);
            if let Some(want) = expect {
                if want != digest {
                    return Err(Error::DigestMismatch { digest: want.into(), actual: digest });
                }
            }
            let dst = self.blob_path(&digest);
            if !dst.is_file() {
                f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
                std::fs::rename(&tmp, &dst).map_err(|e| Error::io("rename into", &dst, e))?;
                fsutil::fsync_dir(&self.dir(BLOBS))?;
            }
            Ok((digest, n_total))
        })();
        let _ = std::fs::remove_file(&tmp);
        if let Ok((d, _)) = &res {
            self.mark_fresh(d);
        }
        res
    }

    /// Reads a whole blob (small JSON documents).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        digest_hex(digest)?;
        let p = self.blob_path(digest);
        match std::fs::read(&p) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::BlobNotFound(digest.into())),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    /// Path of the unpacked diff directory of a chain id.
    pub fn layer_path(&self, chain_id: &str) -> PathBuf {
        let h = digest_hex(chain_id).unwrap_or("invalid-digest");
        self.dir(LAYERS).join(h)
    }

    /// Registers an image whose manifest (or index: this platform's manifest
    /// is picked), config and layer blobs are in the store: unpacks missing
    /// layers and writes the record. `name` is a normalised
    /// "registry/repo:tag" (moved here from any other image) or a digest
    /// reference "registry/repo@sha256:..." (added to repo_digests).
    pub fn add_image(&self, name: Option<&str>, manifest_digest: &str) -> Result<ImageRecord> {
        self.add_image_inner(name, manifest_digest, None)
    }

    /// As `add_image` for a pull that already resolved `top` (the digest the reference
    /// resolved to: an index, or the manifest itself) to `manifest` (for the pull's
    /// platform, which need not be this host's). The record keeps both blobs, and its repo
    /// digest is `repo@<top>`, as containerd reports it.
    pub fn add_resolved_image(&self, name: Option<&str>, top: &str, manifest: &str) -> Result<ImageRecord> {
        self.add_image_inner(name, top, Some(manifest))
    }

    fn add_image_inner(&self, name: Option<&str>, top: &str, resolved: Option<&str>) -> Result<ImageRecord> {
        let _g = self.read_guard();
        let mut blobs = vec![top.to_string()];
        let (mdigest, manifest) = match resolved {
            Some(m) if m != top => {
                if !self.has_blob(top) {
                    return Err(Error::BlobNotFound(top.into()));
                }
                blobs.push(m.to_string());
                match self.read_document(m)? {
                    Document::Manifest(man) => (m.to_string(), man),
                    Document::Index(_) => {
                        return Err(Error::InvalidContent { what: "manifest", digest: m.into(), reason: format!("an index, resolved from {top}") })
                    }
                }
            }
            _ => self.resolve_manifest(top, &mut blobs)?,
        };
        let (config_file, config_bytes) = self.read_config(&manifest)?;
        blobs.push(manifest.config.digest.clone());

        let diff_ids = config_file.rootfs.diff_ids.clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::InvalidContent {
                what: "image config",
                digest: manifest.config.digest.clone(),
                reason: format!("{} diff_ids for {} layers in manifest {mdigest}", diff_ids.len(), manifest.layers.len()),
            });
        }
        let mut kinds = Vec::with_capacity(manifest.layers.len());
        for l in &manifest.layers {
            digest_hex(&l.digest)?;
            let c = match oci::layer_kind(&l.media_type) {
                LayerKind::Tar(c) => c,
                LayerKind::Foreign => return Err(Error::ForeignLayer { digest: l.digest.clone(), media_type: l.media_type.clone() }),
                LayerKind::Unknown => {
                    return Err(Error::UnsupportedMediaType { what: "layer", digest: l.digest.clone(), media_type: l.media_type.clone() })
                }
            };
            if !self.has_blob(&l.digest) {
                return Err(Error::BlobNotFound(l.digest.clone()));
            }
            kinds.push(c);
        }
        let chain = oci::chain_ids(&diff_ids);
        for (i, l) in manifest.layers.iter().enumerate() {
            self.ensure_layer(&l.digest, kinds[i], &diff_ids[i], &chain[i])?;
            blobs.push(l.digest.clone());
        }

        let rc = config_file.config.clone().unwrap_or_default();
        let keys = |m: Option<BTreeMap<String, serde_json::Value>>| m.map(|m| m.into_keys().collect()).unwrap_or_default();
        let platform = Platform { architecture: config_file.architecture.clone(), os: config_file.os.clone(), variant: config_file.variant.clone() };
        let size = config_bytes as u64 + manifest.layers.iter().map(|l| self.blob_size(&l.digest)).sum::<u64>();
        let fresh = ImageRecord {
            id: manifest.config.digest.clone(),
            repo_tags: vec![],
            repo_digests: vec![],
            size,
            manifest_digest: mdigest.clone(),
            layers: chain,
            config: ImageConfig {
                entrypoint: rc.entrypoint.unwrap_or_default(),
                cmd: rc.cmd.unwrap_or_default(),
                env: rc.env.unwrap_or_default(),
                working_dir: rc.working_dir.unwrap_or_default(),
                user: rc.user.unwrap_or_default(),
                exposed_ports: keys(rc.exposed_ports),
                volumes: keys(rc.volumes),
                labels: rc.labels.unwrap_or_default(),
                stop_signal: rc.stop_signal.unwrap_or_default(),
            },
            created: config_file.created.clone(),
            pinned: false,
            diff_ids,
            blobs: dedup(blobs),
            platform: platform.to_string(),
        };

        let _r = self.inner.records_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = match self.read_record(&fresh.id)? {
            // Same config: keep its names and pin, refresh the rest (a newer manifest of it).
            Some(old) => ImageRecord { repo_tags: old.repo_tags, repo_digests: old.repo_digests, pinned: old.pinned, ..fresh },
            None => fresh,
        };
        if let Some(name) = name {
            if name.contains('@') {
                push_unique(&mut rec.repo_digests, name);
            } else {
                // A tag belongs to one image: take it from any other record first.
                for mut other in self.list_unlocked()? {
                    if other.id != rec.id && other.repo_tags.iter().any(|t| t == name) {
                        other.repo_tags.retain(|t| t != name);
                        self.write_record(&other)?;
                    }
                }
                push_unique(&mut rec.repo_tags, name);
                push_unique(&mut rec.repo_digests, &format!("{}@{top}", repo_of(name)));
            }
        }
        self.write_record(&rec)?;
        let mut fresh = self.inner.fresh.lock().unwrap_or_else(|p| p.into_inner());
        for b in &rec.blobs {
            fresh.remove(b);
        }
        Ok(rec)
    }

    fn blob_size(&self, digest: &str) -> u64 {
        std::fs::metadata(self.blob_path(digest)).map(|m| m.len()).unwrap_or(0)
    }

    /// Follows an index to this platform's manifest (at most two levels deep).
    fn resolve_manifest(&self, digest: &str, blobs: &mut Vec<String>) -> Result<(String, oci::Manifest)> {
        let mut digest = digest.to_string();
        for _ in 0..3 {
            match self.read_document(&digest)? {
                Document::Manifest(m) => return Ok((digest, m)),
                Document::Index(idx) => {
                    let host = Platform::host();
                    let pick = idx
                        .manifests
                        .iter()
                        .filter(|d| d.platform.as_ref().map(|p| host.matches(p)).unwrap_or(idx.manifests.len() == 1))
                        // Attestation manifests (buildkit) claim unknown/unknown; skipped by the filter.
                        .find(|d| self.has_blob(&d.digest));
                    match pick {
                        Some(d) => {
                            digest = d.digest.clone();
                            blobs.push(digest.clone());
                        }
                        None => return Err(Error::NoMatchingPlatform { digest: digest.clone(), platform: host.to_string() }),
                    }
                }
            }
        }
        Err(Error::InvalidContent { what: "image index", digest, reason: "indexes nested too deep".into() })
    }

    /// The manifest or index stored as blob `digest`.
    fn read_document(&self, digest: &str) -> Result<Document> {
        let bytes = self.read_blob(digest)?;
        oci::parse_document(&bytes).map_err(|reason| Error::InvalidContent { what: "manifest", digest: digest.into(), reason })
    }

    fn read_config(&self, m: &oci::Manifest) -> Result<(oci::ImageConfigFile, usize)> {
        let d = &m.config.digest;
        let bytes = self.read_blob(d)?;
        let cfg: oci::ImageConfigFile = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidContent { what: "image config", digest: d.clone(), reason: e.to_string() })?;
        Ok((cfg, bytes.len()))
    }

    /// Unpacks one layer into `layers/<chain hex>` unless it is there already.
    ///
    /// One unpack per chain id at a time in this process: a caller that finds another
    /// unpacking it waits, then reuses the result, or unpacks it itself if that one
    /// failed. Callers hold the store's read lock while waiting; that cannot deadlock
    /// with gc's write lock because the unpack being waited for already holds its read
    /// lock and needs no other, and a caller waits only while it holds no claim itself.
    fn ensure_layer(&self, blob_digest: &str, compression: Compression, diff_id: &str, chain_id: &str) -> Result<()> {
        let dir = self.layer_path(chain_id);
        digest_hex(chain_id)?;
        let _claim = loop {
            if dir.is_dir() {
                return Ok(());
            }
            let mut busy = self.inner.unpacking.lock().unwrap_or_else(|p| p.into_inner());
            if busy.insert(chain_id.to_string()) {
                break UnpackClaim { store: self, chain_id: chain_id.to_string() };
            }
            while busy.contains(chain_id) {
                busy = self.inner.unpacked.wait(busy).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Another unpack may have finished between the check and the claim.
        if dir.is_dir() {
            return Ok(());
        }
        self.inner.unpack_count.fetch_add(1, Ordering::Relaxed);
        let layers = self.dir(LAYERS);
        let tmp = layers.join(format!("tmp-{}-{}", digest_hex(chain_id)?, fsutil::unique_suffix()));
        std::fs::create_dir(&tmp).map_err(|e| Error::io("mkdir", &tmp, e))?;
        let res = (|| {
            let actual = super::unpack::unpack_layer(&self.blob_path(blob_digest), compression, &tmp, blob_digest)?;
            if actual != diff_id {
                return Err(Error::DiffIdMismatch { digest: blob_digest.into(), expected: diff_id.into(), actual });
            }
            let f = File::open(&tmp).map_err(|e| Error::io("open", &tmp, e))?;
            fsutil::syncfs(&f).map_err(|e| Error::io("syncfs", &tmp, e))?;
            match std::fs::rename(&tmp, &dir) {
                Ok(()) => fsutil::fsync_dir(&layers),
                // Another unpack of the same chain id won the race: same content.
                Err(_) if dir.is_dir() => Ok(()),
                Err(e) => Err(Error::io("rename into", &dir, e)),
            }
        })();
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res
    }

    fn record_path(&self, id: &str) -> Result<PathBuf> {
        Ok(self.dir(RECORDS).join(format!("{}.json", digest_hex(id)?)))
    }

    fn read_record(&self, id: &str) -> Result<Option<ImageRecord>> {
        let p = self.record_path(id)?;
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::InvalidContent { what: "image record", digest: id.into(), reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    fn write_record(&self, rec: &ImageRecord) -> Result<()> {
        let p = self.record_path(&rec.id)?;
        let bytes = serde_json::to_vec_pretty(rec).expect("image record serialises");
        fsutil::write_atomic(&p, &bytes)
    }

    fn list_unlocked(&self) -> Result<Vec<ImageRecord>> {
        let dir = self.dir(RECORDS);
        let rd = std::fs::read_dir(&dir).map_err(|e| Error::io("read dir", &dir, e))?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Error::io("read dir", &dir, e))?;
            let name = e.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            if hex.starts_with('.') {
                continue;
            }
            if let Some(r) = self.read_record(&format!("sha256:{hex}"))? {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// All image records.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        self.list_unlocked()
    }

    /// Finds an image by id ("sha256:<hex>" or hex), a unique id prefix, a
    /// tag or a digest reference (already normalised by the caller).
    pub fn get(&self, name_or_id: &str) -> Result<Option<ImageRecord>> {
        let recs = self.list_unlocked()?;
        let s = name_or_id;
        if let Some(r) = recs.iter().find(|r| r.id == s || r.id.strip_prefix("sha256:") == Some(s)) {
            return Ok(Some(r.clone()));
        }
        if let Some(r) = recs.iter().find(|r| r.repo_tags.iter().chain(&r.repo_digests).any(|n| n == s)) {
            return Ok(Some(r.clone()));
        }
        let prefix = s.strip_prefix("sha256:").unwrap_or(s);
        if !prefix.is_empty() && prefix.len() < 64 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut m = recs.iter().filter(|r| r.id[7..].starts_with(prefix));
            return match (m.next(), m.next()) {
                (Some(r), None) => Ok(Some(r.clone())),
                (Some(_), Some(_)) => Err(Error::AmbiguousId(s.into())),
                _ => Ok(None),
            };
        }
        Ok(None)
    }

    /// Removes an image record (all its names); blobs and layers stay for gc.
    pub fn remove(&self, name_or_id: &str) -> Result<bool> {
        self.remove_with(name_or_id, &|_| None)
    }

    /// As `remove`, refused with `Error::InUse` when `in_use` names a user of
    /// the image (the runtime service passes "which container uses it").
    pub fn remove_with(&self, name_or_id: &str, in_use: &dyn Fn(&ImageRecord) -> Option<String>) -> Result<bool> {
        let _g = self.read_guard();
        let _r = self.inner.records_lock.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = self.get(name_or_id)? else { return Ok(false) };
        if let Some(by) = in_use(&rec) {
            return Err(Error::InUse { image: rec.id, by });
        }
        let p = self.record_path(&rec.id)?;
        std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        fsutil::fsync_dir(&self.dir(RECORDS))?;
        Ok(true)
    }

    /// Marks an image pinned (kept by threshold gc; CRI `pinned`).
    pub fn set_pinned(&self, name_or_id: &str, pinned: bool) -> Result<ImageRecord> {
        let _r = self.inner.records_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = self.get(name_or_id)?.ok_or_else(|| Error::ImageNotFound(name_or_id.into()))?;
        rec.pinned = pinned;
        self.write_record(&rec)?;
        Ok(rec)
    }

    /// Bytes and inodes used under the store root (hard links counted once).
    pub fn fs_info(&self) -> Result<FsUsage> {
        let root = self.root().to_path_buf();
        let mut seen = HashSet::new();
        let mut used = 0u64;
        let mut stack = vec![root.clone()];
        while let Some(p) = stack.pop() {
            let (bytes, ino, dev) = match fsutil::lstat_usage(&p) {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("lstat", &p, e)),
            };
            if !seen.insert((dev, ino)) {
                continue;
            }
            used += bytes;
            if std::fs::symlink_metadata(&p).map(|m| m.is_dir()).unwrap_or(false) {
                let rd = match std::fs::read_dir(&p) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io("read dir", &p, e)),
                };
                for e in rd.flatten() {
                    stack.push(e.path());
                }
            }
        }
        Ok(FsUsage { mountpoint: root, used_bytes: used, inodes_used: seen.len() as u64 })
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    v.into_iter().filter(|d| seen.insert(d.clone())).collect()
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// "registry/repo:tag" -> "registry/repo" (a ':' before the last '/' is a port).
pub(crate) fn repo_of(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// sha256 and length of everything `r` yields.
pub(crate) fn hash_reader(r: &mut dyn Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut n_total = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                n_total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((super::digest_of(h), n_total))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::images::gc::GcOptions;
    use crate::images::oci::{Descriptor, Manifest};
    use crate::images::unpack::tests::LayerBuilder;
    use std::time::Duration;

    pub(crate) fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
        match c {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
        }
    }

    /// Puts layers, config and manifest into the store; returns the manifest digest.
    pub(crate) fn put_image(store: &Store, layers: &[(Vec<u8>, Compression)], cmd: &str) -> String {
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (tar, c) in layers {
            let blob = compress(tar, *c);
            let digest = store.put_blob(&blob).unwrap();
            let mt = match c {
                Compression::None => oci::OCI_LAYER,
                Compression::Gzip => oci::OCI_LAYER_GZIP,
                Compression::Zstd => oci::OCI_LAYER_ZSTD,
            };
            descs.push(Descriptor { media_type: mt.into(), digest, size: blob.len() as u64, ..Default::default() });
            diff_ids.push(crate::images::sha256_digest(tar));
        }
        let config = serde_json::json!({
            "architecture": Platform::host().architecture, "os": "linux",
            "config": {"Cmd": [cmd], "Env": ["PATH=/bin"], "WorkingDir": "/w", "User": "1:2",
                       "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}, "Labels": {"a": "b"}, "StopSignal": "SIGQUIT"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let cbytes = serde_json::to_vec(&config).unwrap();
        let cdigest = store.put_blob(&cbytes).unwrap();
        let m = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: Descriptor { media_type: oci::OCI_CONFIG.into(), digest: cdigest, size: cbytes.len() as u64, ..Default::default() },
            layers: descs,
            annotations: Default::default(),
        };
        store.put_blob(&serde_json::to_vec(&m).unwrap()).unwrap()
    }

    fn base() -> Vec<u8> {
        LayerBuilder::new().dir("etc", 0o755).file("etc/os", "base\n").file("etc/gone", "x").build()
    }

    #[test]
    fn add_image_unpacks_records_and_survives_restart() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let top = LayerBuilder::new().file("etc/top", "top\n").build();
        let m = put_image(&store, &[(base(), Compression::Gzip), (top, Compression::Zstd)], "sh");
        let rec = store.add_image(Some("example.com/a/b:1"), &m).unwrap();
        assert_eq!(rec.layers.len(), 2);
        assert_eq!(rec.config.cmd, vec!["sh"]);
        assert_eq!(rec.config.exposed_ports, vec!["80/tcp"]);
        assert_eq!(rec.config.volumes, vec!["/data"]);
        assert_eq!(rec.config.stop_signal, "SIGQUIT");
        assert_eq!(rec.repo_tags, vec!["example.com/a/b:1"]);
        assert_eq!(rec.repo_digests, vec![format!("example.com/a/b@{m}")]);
        assert_eq!(std::fs::read_to_string(store.layer_path(&rec.layers[0]).join("etc/os")).unwrap(), "base\n");
        assert_eq!(std::fs::read_to_string(store.layer_path(&rec.layers[1]).join("etc/top")).unwrap(), "top\n");
        drop(store);
        let store = Store::open(d.path()).unwrap();
        assert_eq!(store.list().unwrap(), vec![rec.clone()]);
        assert_eq!(store.get("example.com/a/b:1").unwrap().unwrap().id, rec.id);
        assert_eq!(store.get(&rec.id[7..19]).unwrap().unwrap().id, rec.id);
        assert_eq!(store.get(&format!("example.com/a/b@{m}")).unwrap().unwrap().id, rec.id);
        assert!(store.get("nope:1").unwrap().is_none());
        // Nothing temporary left behind.
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join(LAYERS)).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("tmp-")).collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn layers_are_shared_by_chain_id_and_unpacked_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m1 = put_image(&store, &[(base(), Compression::Gzip)], "one");
        let r1 = store.add_image(Some("r/x:1"), &m1).unwrap();
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(store.layer_path(&r1.layers[0]).join("etc/os")).unwrap().ino();
        let m2 = put_image(&store, &[(base(), Compression::Gzip), (LayerBuilder::new().file("two", "2").build(), Compression::None)], "two");
        let r2 = store.add_image(Some("r/x:2"), &m2).unwrap();
        assert_eq!(r1.layers[0], r2.layers[0]);
        assert_eq!(std::fs::metadata(store.layer_path(&r2.layers[0]).join("etc/os")).unwrap().ino(), ino);
        assert_eq!(std::fs::read_dir(d.path().join(LAYERS)).unwrap().count(), 2);
    }

    #[test]
    fn tags_move_and_remove_honours_the_in_use_hook() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m1 = put_image(&store, &[(base(), Compression::None)], "one");
        let m2 = put_image(&store, &[(base(), Compression::None)], "two");
        let r1 = store.add_image(Some("r/x:latest"), &m1).unwrap();
        let r2 = store.add_image(Some("r/x:latest"), &m2).unwrap();
        assert_ne!(r1.id, r2.id);
        assert!(store.get(&r1.id).unwrap().unwrap().repo_tags.is_empty());
        assert_eq!(store.get("r/x:latest").unwrap().unwrap().id, r2.id);
        let err = store.remove_with("r/x:latest", &|r| Some(format!("container c1 ({})", r.id))).unwrap_err();
        assert!(matches!(err, Error::InUse { .. }), "{err}");
        assert!(store.remove("r/x:latest").unwrap());
        assert!(!store.remove("r/x:latest").unwrap());
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn commit_resumes_partials_and_refuses_bad_content() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let data = vec![7u8; 100_000];
        let digest = crate::images::sha256_digest(&data);
        // An interrupted download left a prefix; the resumed one appends the rest.
        std::fs::write(store.ingest_path(&digest), &data[..40_000]).unwrap();
        let have = std::fs::metadata(store.ingest_path(&digest)).unwrap().len() as usize;
        let mut f = std::fs::OpenOptions::new().append(true).open(store.ingest_path(&digest)).unwrap();
        f.write_all(&data[have..]).unwrap();
        drop(f);
        let p = store.commit_blob(&digest, data.len() as u64).unwrap();
        assert_eq!(std::fs::read(p).unwrap(), data);
        assert!(!store.ingest_path(&digest).exists());

        let other = crate::images::sha256_digest(b"other");
        std::fs::write(store.ingest_path(&other), b"corrupt").unwrap();
        let err = store.commit_blob(&other, 7).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!store.ingest_path(&other).exists() && !store.has_blob(&other));
        std::fs::write(store.ingest_path(&other), b"other-too-long").unwrap();
        assert!(matches!(store.commit_blob(&other, 5).unwrap_err(), Error::SizeMismatch { .. }));
        assert!(!store.ingest_path(&other).exists());
        assert!(matches!(store.commit_blob("sha256:xyz", 1).unwrap_err(), Error::InvalidDigest(_)));
    }

    #[test]
    fn diff_id_mismatch_and_foreign_layers_are_refused_cleanly() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m = put_image(&store, &[(base(), Compression::Gzip)], "x");
        // Rewrite the config with a wrong diff_id.
        let mut man: Manifest = serde_json::from_slice(&store.read_blob(&m).unwrap()).unwrap();
        let mut cfg: serde_json::Value = serde_json::from_slice(&store.read_blob(&man.config.digest).unwrap()).unwrap();
        cfg["rootfs"]["diff_ids"][0] = serde_json::json!(crate::images::sha256_digest(b"wrong"));
        let cb = serde_json::to_vec(&cfg).unwrap();
        man.config.digest = store.put_blob(&cb).unwrap();
        let bad = store.put_blob(&serde_json::to_vec(&man).unwrap()).unwrap();
        let err = store.add_image(Some("r/bad:1"), &bad).unwrap_err();
        assert!(matches!(err, Error::DiffIdMismatch { .. }), "{err}");
        assert_eq!(std::fs::read_dir(d.path().join(LAYERS)).unwrap().count(), 0, "no layer dir or temp left");
        assert!(store.list().unwrap().is_empty());

        man.layers[0].media_type = oci::DOCKER_FOREIGN.into();
        let foreign = store.put_blob(&serde_json::to_vec(&man).unwrap()).unwrap();
        let err = store.add_image(None, &foreign).unwrap_err();
        assert!(matches!(err, Error::ForeignLayer { .. }), "{err}");
        assert!(err.to_string().contains("foreign"));
    }

    #[test]
    fn an_index_resolves_to_this_platform() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m = put_image(&store, &[(base(), Compression::None)], "x");
        let msize = store.read_blob(&m).unwrap().len() as u64;
        let other = Platform { architecture: "s390x".into(), os: "linux".into(), variant: None };
        let idx = serde_json::json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": [
            {"mediaType": oci::OCI_MANIFEST, "digest": crate::images::sha256_digest(b"absent"), "size": 1, "platform": other},
            {"mediaType": oci::OCI_MANIFEST, "digest": m, "size": msize, "platform": Platform::host()},
        ]});
        let i = store.put_blob(&serde_json::to_vec(&idx).unwrap()).unwrap();
        let rec = store.add_image(Some("r/multi:1"), &i).unwrap();
        assert_eq!(rec.manifest_digest, m);
        assert_eq!(rec.repo_digests, vec![format!("r/multi@{i}")]);
        assert!(rec.blobs.contains(&i));
        // A pull that resolved the index itself: same record, the index kept by gc.
        assert!(store.remove(&rec.id).unwrap());
        let rec = store.add_resolved_image(Some("r/multi:2"), &i, &m).unwrap();
        assert_eq!(rec.manifest_digest, m);
        assert_eq!(rec.repo_digests, vec![format!("r/multi@{i}")]);
        assert!(rec.blobs.contains(&i) && rec.blobs.contains(&m));
        store.gc_with(&GcOptions { grace: Duration::ZERO }).unwrap();
        assert!(store.has_blob(&i) && store.has_blob(&m));
        assert_eq!(store.get(&format!("r/multi@{i}")).unwrap().unwrap().id, rec.id);
    }

    #[test]
    fn gc_frees_unreferenced_content_and_stale_files() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m1 = put_image(&store, &[(base(), Compression::Gzip)], "one");
        let m2 = put_image(&store, &[(base(), Compression::Gzip), (LayerBuilder::new().file("f", "f").build(), Compression::Gzip)], "two");
        store.add_image(Some("r/a:1"), &m1).unwrap();
        store.add_image(Some("r/b:1"), &m2).unwrap();
        // Stale leftovers of a crash: a partial download, a half-unpacked layer.
        let stale = store.ingest_path(&crate::images::sha256_digest(b"stale"));
        std::fs::write(&stale, b"sta").unwrap();
        std::fs::create_dir_all(d.path().join(LAYERS).join("tmp-abc-1/x")).unwrap();
        // Default grace keeps a fresh partial download (a pull may be writing it).
        store.gc().unwrap();
        assert!(stale.exists());
        let zero = GcOptions { grace: Duration::ZERO };
        let rep = store.gc_with(&zero).unwrap();
        assert_eq!((rep.blobs_removed, rep.layers_removed), (0, 0));
        assert!(!stale.exists());
        assert!(!d.path().join(LAYERS).join("tmp-abc-1").exists());

        assert!(store.remove("r/b:1").unwrap());
        let rep = store.gc_with(&zero).unwrap();
        assert_eq!(rep.layers_removed, 1, "the top layer of b only; the base is shared");
        assert_eq!(rep.blobs_removed, 3, "b's manifest, config, top layer");
        assert!(rep.bytes_freed > 0);
        assert!(store.remove("r/a:1").unwrap());
        let rep = store.gc_with(&zero).unwrap();
        assert_eq!((rep.blobs_removed, rep.layers_removed), (3, 1));
        assert_eq!(std::fs::read_dir(d.path().join(BLOBS)).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(d.path().join(LAYERS)).unwrap().count(), 0);
        let u = store.fs_info().unwrap();
        assert!(u.inodes_used >= 5 && u.used_bytes > 0);
    }

    #[test]
    fn concurrent_adds_of_one_image_unpack_each_layer_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m = put_image(&store, &[(base(), Compression::Gzip), (LayerBuilder::new().file("t", "t").build(), Compression::Zstd)], "x");
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|i| {
                let (store, m) = (store.clone(), m.clone());
                s.spawn(move || store.add_image(Some(&format!("r/c:{i}")), &m).unwrap().id)
            }).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(std::fs::read_dir(d.path().join(LAYERS)).unwrap().count(), 2, "two layer dirs, no temp left");
        assert_eq!(store.inner.unpack_count.load(Ordering::Relaxed), 2, "each layer unpacked once, not once per add_image");
        let rec = store.get(&ids[0]).unwrap().unwrap();
        assert_eq!(rec.repo_tags.len(), 4, "{:?}", rec.repo_tags);
    }

    #[test]
    fn concurrent_adds_sharing_a_big_layer_unpack_it_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        // Big enough that the unpacks would overlap without the single flight.
        let mut big = LayerBuilder::new().dir("d", 0o755);
        for i in 0..2000 {
            big = big.file(&format!("d/f{i}"), &"x".repeat(512));
        }
        let big = big.build();
        let ms: Vec<String> = (0..6)
            .map(|i| put_image(&store, &[(big.clone(), Compression::Gzip), (LayerBuilder::new().file("t", &i.to_string()).build(), Compression::None)], &format!("c{i}")))
            .collect();
        std::thread::scope(|s| {
            for (i, m) in ms.iter().enumerate() {
                let store = store.clone();
                s.spawn(move || store.add_image(Some(&format!("r/s:{i}")), m).unwrap());
            }
        });
        assert_eq!(store.inner.unpack_count.load(Ordering::Relaxed), 1 + 6, "the shared layer once, each top layer once");
        assert_eq!(std::fs::read_dir(d.path().join(LAYERS)).unwrap().count(), 7, "no temp left");
    }

    #[test]
    fn threshold_gc_removes_unused_unpinned_images() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        for (i, tag) in ["r/a:1", "r/b:1", "r/c:1"].iter().enumerate() {
            let m = put_image(&store, &[(LayerBuilder::new().file("f", &i.to_string()).build(), Compression::Gzip)], tag);
            store.add_image(Some(tag), &m).unwrap();
        }
        store.set_pinned("r/a:1", true).unwrap();
        let used = store.get("r/b:1").unwrap().unwrap().id;
        // Far below 101%: nothing happens.
        assert!(store.gc_threshold(101.0, 100.0, &|_| None).unwrap().is_none());
        // Always above: everything unpinned and unused goes.
        let rep = store.gc_threshold(0.0, 0.0, &|r| (r.id == used).then(|| "container x".to_string())).unwrap().unwrap();
        assert_eq!(rep.layers_removed, 1);
        let left: Vec<String> = store.list().unwrap().into_iter().flat_map(|r| r.repo_tags).collect();
        assert_eq!(left.len(), 2);
        assert!(left.contains(&"r/a:1".to_string()) && left.contains(&"r/b:1".to_string()));
    }

    #[test]
    fn one_ingest_writer_per_digest() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let g = store.try_lock_ingest("sha256:aa").unwrap();
        assert!(store.clone().try_lock_ingest("sha256:aa").is_none());
        assert!(store.try_lock_ingest("sha256:bb").is_some());
        drop(g);
        assert!(store.try_lock_ingest("sha256:aa").is_some());
    }

    #[test]
    fn a_claimed_blob_left_by_a_removed_image_survives_gc() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let m = put_image(&store, &[(base(), Compression::Gzip)], "x");
        let rec = store.add_image(Some("r/old:1"), &m).unwrap();
        let layer = store.read_blob(&m).map(|b| serde_json::from_slice::<Manifest>(&b).unwrap().layers[0].digest.clone()).unwrap();
        // add_image took the blobs off the fresh list; the record goes: unreferenced, not fresh.
        assert!(store.remove(&rec.id).unwrap());
        // A pull finds the layer on disk and claims it instead of downloading it.
        assert!(store.claim_blob(&layer));
        assert!(!store.claim_blob(&crate::images::sha256_digest(b"absent")));
        let rep = store.gc().unwrap();
        assert!(store.has_blob(&layer), "claimed blob removed by gc: {rep:?}");
        assert!(!store.has_blob(&m), "unclaimed blobs of the removed image go");
        // Renewing the claims of all a pull's blobs: missing ones are an error.
        assert!(store.claim_blobs([layer.as_str()]).is_ok());
        assert!(matches!(store.claim_blobs([m.as_str()]).unwrap_err(), Error::BlobNotFound(_)));
        // Without the claim (grace zero) it would have gone.
        store.gc_with(&GcOptions { grace: Duration::ZERO }).unwrap();
        assert!(!store.has_blob(&layer));
    }

    #[test]
    fn unreferenced_fresh_blobs_survive_gc_within_the_grace() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let b = store.put_blob(b"being pulled").unwrap();
        store.gc().unwrap();
        assert!(store.has_blob(&b));
        store.gc_with(&GcOptions { grace: Duration::ZERO }).unwrap();
        assert!(!store.has_blob(&b));
    }
}
