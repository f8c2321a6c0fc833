//! Pulling an image from a registry into the [`Store`].
//!
//! 1. GET the manifest by tag or digest (a digest reference is checked against the body);
//!    an index / manifest list is resolved to the wanted platform and that manifest fetched
//!    by digest (checked too).
//! 2. The config and layer blobs not yet in the store are downloaded, at most
//!    [`CONCURRENT_DOWNLOADS`] at a time, into the store's ingest files; a partial file
//!    left by an interrupted pull is continued with a Range request. `commit_blob`
//!    checks each one's size and sha256 before it enters `blobs/`: a wrong blob is
//!    deleted, never committed. One transport failure per blob is retried (resuming).
//! 3. The manifest (and index) go in with `put_blob`; `add_image` unpacks and records.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use super::oci::{self, Descriptor, Document, LayerKind};
use super::reference::Reference;
use super::registry::{self, platform, Auth, Client, Platform, RegistryConfig};
use super::{Error, ImageRecord, Result, Store};

/// Layers downloaded at the same time.
pub const CONCURRENT_DOWNLOADS: usize = 3;
/// Attempts per blob when the connection breaks (each resumes where the last stopped).
const ATTEMPTS: usize = 2;

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Credentials for this pull (CRI `AuthConfig`); else the config's for the registry.
    pub auth: Option<Auth>,
    /// Platform wanted from an index; this host's by default.
    pub platform: Platform,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { auth: None, platform: Platform::host() }
    }
}

/// Progress of a pull, for a terminal display or logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The manifest is known: its digest and the layers (digest, size) to have.
    Resolved { manifest_digest: String, layers: Vec<(String, u64)> },
    /// Bytes of a layer present so far (includes a resumed prefix).
    Layer { digest: String, done: u64, total: u64 },
    /// A layer is in the store (downloaded and verified, or already there).
    LayerDone { digest: String },
    Unpacking,
    Done,
}

/// Pulls `reference` into `store` and records it under its normalised name (or digest
/// reference). Progress events go to `progress` (a closed receiver is fine).
pub async fn pull(
    store: &Store,
    registries: &RegistryConfig,
    reference: &Reference,
    opts: &PullOptions,
    progress: UnboundedSender<Progress>,
) -> Result<ImageRecord> {
    let image = reference.to_string();
    let client = Arc::new(Client::new(registries, reference.registry(), reference.api_host(), opts.auth.clone())?);
    let repo = reference.repository();

    let top = client.manifest(&image, repo, reference.manifest_reference()).await?;
    let mut stored_docs = vec![top.bytes.clone()];
    let top_digest = top.digest.clone();
    let (manifest_digest, manifest_bytes) = match parse(&image, &top.digest, &top.bytes)? {
        Document::Manifest(_) => (top.digest.clone(), top.bytes.clone()),
        Document::Index(_) => {
            let idx: platform::Index = serde_json::from_slice(&top.bytes)
                .map_err(|e| registry::Error::BadManifest { image: image.clone(), detail: format!("index {}: {e}", top.digest) })?;
            let entry = platform::select(&idx, &opts.platform).map_err(|available| registry::Error::NoMatchingPlatform {
                image: image.clone(),
                platform: opts.platform.to_string(),
                available,
            })?;
            tracing::debug!(image, index = top.digest, manifest = entry.digest, platform = %opts.platform, "resolved index");
            let m = client.manifest(&image, repo, &entry.digest).await?;
            stored_docs.push(m.bytes.clone());
            (m.digest, m.bytes)
        }
    };
    let manifest = match parse(&image, &manifest_digest, &manifest_bytes)? {
        Document::Manifest(m) => m,
        Document::Index(_) => {
            return Err(registry::Error::BadManifest { image: image.clone(), detail: format!("index {manifest_digest} nests another index") }.into())
        }
    };
    check_manifest(&image, &manifest_digest, &manifest)?;
    let _ = progress.send(Progress::Resolved {
        manifest_digest: manifest_digest.clone(),
        layers: manifest.layers.iter().map(|l| (l.digest.clone(), l.size)).collect(),
    });

    // Config first (small), then the layers, bounded in parallel.
    fetch(store, &client, &image, repo, &manifest.config, None).await?;
    let sem = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_DOWNLOADS));
    let mut tasks = tokio::task::JoinSet::new();
    for layer in manifest.layers.iter().cloned() {
        let (store, client, image, repo, progress, sem) = (store.clone(), client.clone(), image.clone(), repo.to_string(), progress.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore never closed");
            fetch(&store, &client, &image, &repo, &layer, Some(&progress)).await?;
            let _ = progress.send(Progress::LayerDone { digest: layer.digest.clone() });
            Ok::<_, Error>(())
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        let r = r.unwrap_or_else(|e| Err(Error::Task { image: image.clone(), what: "download", detail: e.to_string() }));
        if let Err(e) = r {
            if first_err.is_none() {
                // Stop the others: their partial files stay for a resume.
                tasks.abort_all();
                first_err = Some(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    let _ = progress.send(Progress::Unpacking);
    let name = match reference.digest() {
        Some(d) => reference.digest_reference(d),
        None => reference.to_string(),
    };
    let store2 = store.clone();
    let needed: Vec<String> = std::iter::once(&manifest.config).chain(manifest.layers.iter()).map(|d| d.digest.clone()).collect();
    let record = tokio::task::spawn_blocking(move || {
        // Renew the gc grace of every blob this pull relies on: a long pull may have
        // outlasted the grace of the first ones. A blob gone already fails the pull here.
        store2.claim_blobs(needed.iter().map(String::as_str))?;
        // The documents last: a manifest in the store means its blobs are too.
        for doc in stored_docs.iter().rev() {
            store2.put_blob(doc)?;
        }
        // Recorded under the digest the reference resolved to (the index, for a
        // multi-platform tag): it is the repo digest, and gc keeps the index.
        store2.add_resolved_image(Some(&name), &top_digest, &manifest_digest)
    })
    .await
    .map_err(|e| Error::Task { image: image.clone(), what: "unpack", detail: e.to_string() })??;
    let _ = progress.send(Progress::Done);
    Ok(record)
}

fn parse(image: &str, digest: &str, bytes: &[u8]) -> Result<Document> {
    oci::parse_document(bytes).map_err(|detail| registry::Error::BadManifest { image: image.into(), detail: format!("{digest}: {detail}") }.into())
}

/// Refuses what the store could not unpack before downloading anything.
fn check_manifest(image: &str, digest: &str, m: &oci::Manifest) -> Result<()> {
    let bad = |detail: String| -> Error { registry::Error::BadManifest { image: image.into(), detail: format!("{digest}: {detail}") }.into() };
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        if super::digest_hex(&d.digest).is_err() {
            return Err(bad(format!("bad digest {:?}", d.digest)));
        }
    }
    for l in &m.layers {
        match oci::layer_kind(&l.media_type) {
            LayerKind::Tar(_) => {}
            LayerKind::Foreign => return Err(bad(format!("layer {} is a foreign layer ({}), not served by registries", l.digest, l.media_type))),
            LayerKind::Unknown => {
                return Err(registry::Error::UnsupportedMediaType { image: image.into(), media_type: format!("{} (layer {})", l.media_type, l.digest) }.into())
            }
        }
    }
    Ok(())
}

/// Ensures blob `d` is in the store: download (resuming), then `commit_blob` verifies it.
async fn fetch(store: &Store, client: &Client, image: &str, repo: &str, d: &Descriptor, progress: Option<&UnboundedSender<Progress>>) -> Result<()> {
    let have = || {
        // Already there: claim it (marked fresh under the store's lock) so a gc before
        // add_image does not remove it, unreferenced as it may be (left by a removed image).
        if store.claim_blob(&d.digest) {
            if let Some(p) = progress {
                let _ = p.send(Progress::Layer { digest: d.digest.clone(), done: d.size, total: d.size });
            }
            return true;
        }
        false
    };
    // One writer per ingest file: a pull sharing this blob with another waits for it.
    let mut guard = loop {
        if have() {
            return Ok(());
        }
        match store.try_lock_ingest(&d.digest) {
            Some(g) => break Some(g),
            None => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    };
    // Another pull may have committed it between our check and the lock.
    if have() {
        return Ok(());
    }
    let ingest = store.ingest_path(&d.digest);
    let report = |done: u64| {
        if let Some(p) = progress {
            let _ = p.send(Progress::Layer { digest: d.digest.clone(), done, total: d.size });
        }
    };
    let mut restarted = false;
    let mut resumed = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match client.fetch_blob(image, repo, &d.digest, d.size, &ingest, &report).await {
            Ok(r) => resumed |= r,
            Err(e @ (registry::Error::Interrupted { .. } | registry::Error::Unreachable { .. })) if attempt < ATTEMPTS => {
                tracing::warn!(image, digest = d.digest, "{e}; retrying");
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let (s, digest, size) = (store.clone(), d.digest.clone(), d.size);
        // The ingest guard goes into the commit: it lives until the commit ends even if
        // this pull is dropped (aborted) meanwhile, so no other download of the blob
        // writes the ingest file under a running commit.
        let g = guard.take();
        let (committed, g) = tokio::task::spawn_blocking(move || (s.commit_blob(&digest, size), g))
            .await
            .map_err(|e| Error::Task { image: image.into(), what: "commit", detail: e.to_string() })?;
        guard = g;
        match committed {
            Ok(_) => return Ok(()),
            // A resumed file may have held a stale prefix; the store deleted it: start over once.
            Err(Error::DigestMismatch { .. } | Error::SizeMismatch { .. }) if resumed && !restarted => {
                tracing::warn!(image, digest = d.digest, "resumed blob failed verification; downloading it again");
                restarted = true;
                resumed = false;
                attempt = 0;
            }
            Err(e @ (Error::DigestMismatch { .. } | Error::SizeMismatch { .. })) => {
                return Err(registry::Error::BlobMismatch { image: image.into(), digest: d.digest.clone(), detail: e.to_string() }.into())
            }
            Err(e) => return Err(e),
        }
    }
}
