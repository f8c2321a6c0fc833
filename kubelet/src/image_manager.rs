//! The daemon's side of images, shared by CRI's ImageService and
//! `berth.images.v1`: name resolution, pulls (logged as they go), import,
//! and garbage collection by command and by disk-usage threshold.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::config::{Config, GcPolicy};
use crate::images::pull::{PullOptions, Progress};
use crate::images::reference::{Reference, ReferenceError};
use crate::images::registry::{Auth, RegistryConfig, RegistryHost};
use crate::images::{self, FsUsage, GcReport, ImageRecord, Store};

/// How often a running pull logs how far it has got.
const PULL_LOG_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Image(#[from] images::Error),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what}: background task failed: {detail}")]
    Task { what: String, detail: String },
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub struct ImageManager {
    store: Store,
    registries: RegistryConfig,
    gc: GcPolicy,
    /// Wakes the threshold gc early (after a pull or import).
    gc_kick: Notify,
}

/// The registry settings the pull code takes, from the daemon's config.
pub fn registry_config(config: &Config) -> RegistryConfig {
    let hosts = config
        .registries
        .iter()
        .map(|(host, r)| {
            let h = RegistryHost {
                username: r.username.clone(),
                password: r.password.clone(),
                token: r.token.clone(),
                ca_files: r.ca_file.iter().cloned().collect(),
                insecure: r.insecure,
            };
            (host.clone(), h)
        })
        .collect();
    RegistryConfig { insecure: config.insecure_registries.clone(), hosts }
}

async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> images::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(ImageError::Task { what: what.to_string(), detail: e.to_string() }),
    }
}

impl ImageManager {
    pub fn new(store: Store, registries: RegistryConfig, gc: GcPolicy) -> Arc<ImageManager> {
        Arc::new(ImageManager { store, registries, gc, gc_kick: Notify::new() })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Finds an image by what a CRI client may send: a reference in any
    /// docker form (`busybox`, `host:5000/x:tag`, `x@sha256:...`), an id
    /// (`sha256:<hex>` or hex) or a unique id prefix.
    pub async fn resolve(&self, image: &str) -> Result<Option<ImageRecord>> {
        if image.is_empty() {
            return Err(ImageError::InvalidArgument("empty image name".into()));
        }
        let mut candidates = Vec::new();
        if let Ok(r) = Reference::parse(image) {
            candidates.push(r.to_string());
        }
        candidates.push(image.to_string());
        let store = self.store.clone();
        blocking("look up image", move || {
            for c in &candidates {
                if let Some(r) = store.get(c)? {
                    return Ok(Some(r));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Pulls `image` from its registry (credentials: `auth`, else the
    /// config's for that registry) and returns its record. The pull runs as its
    /// own task: a caller that goes away (a CRI deadline, a closed stream) does
    /// not cut it short, so a retry finds the blobs already in. Progress goes
    /// to the log every few seconds, and every event to `progress` if given.
    pub async fn pull(
        self: &Arc<Self>,
        image: &str,
        auth: Option<Auth>,
        progress: Option<UnboundedSender<Progress>>,
    ) -> Result<ImageRecord> {
        if image.is_empty() {
            return Err(ImageError::InvalidArgument("empty image name".into()));
        }
        let reference = Reference::parse(image)?;
        let me = self.clone();
        let task = tokio::spawn(async move {
            let name = reference.to_string();
            let started = Instant::now();
            let (tx, mut rx) = unbounded_channel();
            let opts = PullOptions { auth, ..PullOptions::default() };
            let store = me.store.clone();
            let registries = me.registries.clone();
            let r2 = reference.clone();
            let work = async move { images::pull::pull(&store, &registries, &r2, &opts, tx).await };
            tokio::pin!(work);
            let mut log = PullLog::new(&name);
            let result = loop {
                tokio::select! {
                    r = &mut work => break r,
                    Some(ev) = rx.recv() => {
                        log.event(&ev);
                        if let Some(p) = &progress {
                            let _ = p.send(ev);
                        }
                    }
                }
            };
            // Events sent just before the end.
            while let Ok(ev) = rx.try_recv() {
                log.event(&ev);
                if let Some(p) = &progress {
                    let _ = p.send(ev);
                }
            }
            match &result {
                Ok(rec) => {
                    let secs = started.elapsed().as_secs_f64();
                    info!(
                        image = name,
                        id = rec.id,
                        bytes = log.total(),
                        seconds = format!("{secs:.2}"),
                        "image pulled"
                    );
                    me.gc_kick.notify_one();
                }
                Err(e) => warn!(image = name, "pull failed: {e}"),
            }
            result
        });
        match task.await {
            Ok(r) => Ok(r?),
            Err(e) => Err(ImageError::Task { what: format!("pull {image}"), detail: e.to_string() }),
        }
    }

    pub async fn list(&self) -> Result<Vec<ImageRecord>> {
        let store = self.store.clone();
        blocking("list images", move || store.list()).await
    }

    /// Removes an image's record (all its names); absent is not an error
    /// (returns false), as in containerd. Its blobs go at the next gc.
    pub async fn remove(&self, image: &str) -> Result<bool> {
        let Some(rec) = self.resolve(image).await? else { return Ok(false) };
        let store = self.store.clone();
        let id = rec.id.clone();
        let removed = blocking("remove image", move || store.remove(&id)).await?;
        if removed {
            info!(image, id = rec.id, "image removed");
        }
        Ok(removed)
    }

    pub async fn fs_info(&self) -> Result<FsUsage> {
        let store = self.store.clone();
        blocking("image fs info", move || store.fs_info()).await
    }

    /// Imports an OCI layout (dir or tar) or docker-archive the daemon can read.
    pub async fn import(&self, path: &std::path::Path) -> Result<Vec<ImageRecord>> {
        if !path.is_absolute() {
            return Err(ImageError::InvalidArgument(format!(
                "import path {:?} is relative: the daemon needs an absolute path",
                path
            )));
        }
        let store = self.store.clone();
        let p = path.to_path_buf();
        let recs = blocking("import", move || store.import(&p)).await?;
        for r in &recs {
            info!(path = %path.display(), id = r.id, names = ?r.repo_tags, "image imported");
        }
        self.gc_kick.notify_one();
        Ok(recs)
    }

    /// Removes unreferenced blobs and layers now.
    pub async fn gc(&self) -> Result<GcReport> {
        let store = self.store.clone();
        let report = blocking("gc", move || store.gc()).await?;
        info!(
            blobs = report.blobs_removed,
            layers = report.layers_removed,
            bytes = report.bytes_freed,
            "image gc done"
        );
        Ok(report)
    }

    /// Threshold gc, forever: every interval, and after each pull or import,
    /// when the images filesystem is at least `image_gc_high_threshold_percent`
    /// full, removes unreferenced blobs and layers. Removing unused *images*
    /// (least recently used first, down to the low threshold) needs to know
    /// which images containers use: it comes with containers.
    pub async fn gc_loop(self: Arc<Self>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.gc.interval) => {}
                _ = self.gc_kick.notified() => {}
            }
            let store = self.store.clone();
            let usage = match blocking("disk usage", move || store.disk_usage_percent()).await {
                Ok(u) => u,
                Err(e) => {
                    warn!("image gc: {e}");
                    continue;
                }
            };
            if usage < f64::from(self.gc.high_threshold_percent) {
                debug!(usage, "image gc: below the threshold");
                continue;
            }
            info!(usage, threshold = self.gc.high_threshold_percent, "image fs above the gc threshold: collecting");
            if let Err(e) = self.gc().await {
                warn!("image gc: {e}");
            }
        }
    }
}

/// What a pull logs: the resolved manifest once, then bytes so far every
/// [`PULL_LOG_INTERVAL`].
struct PullLog<'a> {
    image: &'a str,
    layers: Vec<(String, u64)>,
    done: std::collections::HashMap<String, u64>,
    last: Instant,
}

impl<'a> PullLog<'a> {
    fn new(image: &'a str) -> Self {
        PullLog { image, layers: Vec::new(), done: Default::default(), last: Instant::now() }
    }

    /// The image's layer bytes (compressed, as in the registry).
    fn total(&self) -> u64 {
        self.layers.iter().map(|l| l.1).sum()
    }

    fn event(&mut self, ev: &Progress) {
        match ev {
            Progress::Resolved { manifest_digest, layers } => {
                self.layers = layers.clone();
                info!(image = self.image, manifest = manifest_digest, layers = layers.len(), bytes = self.total(), "pulling");
            }
            Progress::Layer { digest, done, .. } => {
                self.done.insert(digest.clone(), *done);
                if self.last.elapsed() >= PULL_LOG_INTERVAL {
                    self.last = Instant::now();
                    let have: u64 = self.done.values().sum();
                    info!(image = self.image, bytes = have, of = self.total(), "pull in progress");
                }
            }
            Progress::LayerDone { digest } => debug!(image = self.image, layer = digest, "layer in the store"),
            Progress::Unpacking => debug!(image = self.image, "unpacking"),
            Progress::Done => {}
        }
    }
}
