//! The daemon's side of images, shared by CRI's ImageService and
//! `berth.images.v1`: name resolution, pulls (logged as they go), import,
//! and garbage collection by command and by disk-usage threshold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::{watch, Notify};
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
    /// The failure of a pull, shared by every caller that asked for it meanwhile.
    #[error(transparent)]
    Shared(Arc<ImageError>),
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub struct ImageManager {
    store: Store,
    registries: RegistryConfig,
    gc: GcPolicy,
    /// Wakes the threshold gc early (after a pull or import).
    gc_kick: Notify,
    /// Pulls running, by normalised reference and credentials: an identical pull
    /// joins the running one instead of starting another.
    inflight: Mutex<HashMap<PullKey, Arc<InFlight>>>,
    /// Pulls started (not joined), for tests.
    pulls_started: AtomicUsize,
}

type PullKey = (String, Option<Auth>);
type PullOutcome = std::result::Result<ImageRecord, Arc<ImageError>>;

/// One running pull: its progress so far (replayed to a caller that joins), the
/// callers' progress channels, and its outcome once there.
struct InFlight {
    events: Mutex<(Vec<Progress>, Vec<UnboundedSender<Progress>>)>,
    done: watch::Sender<Option<PullOutcome>>,
}

impl InFlight {
    fn subscribe(&self, tx: UnboundedSender<Progress>) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        for e in &ev.0 {
            let _ = tx.send(e.clone());
        }
        ev.1.push(tx);
    }

    fn publish(&self, e: &Progress) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.1.retain(|tx| tx.send(e.clone()).is_ok());
        ev.0.push(e.clone());
    }
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
        Arc::new(ImageManager {
            store,
            registries,
            gc,
            gc_kick: Notify::new(),
            inflight: Mutex::new(HashMap::new()),
            pulls_started: AtomicUsize::new(0),
        })
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
    ///
    /// Identical pulls (same normalised reference, same credentials) share one: a
    /// caller that asks while one runs gets its progress so far, then the rest, and
    /// its result.
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
        let key: PullKey = (reference.to_string(), auth.clone());
        let (flight, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(InFlight { events: Mutex::new((Vec::new(), Vec::new())), done: watch::channel(None).0 });
                    map.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if let Some(p) = progress {
            flight.subscribe(p);
        }
        let mut done = flight.done.subscribe();
        if leader {
            self.pulls_started.fetch_add(1, Ordering::Relaxed);
            let (me, flight, what) = (self.clone(), flight.clone(), format!("pull {image}"));
            tokio::spawn(async move {
                let task = tokio::spawn(me.clone().run_pull(reference, auth, flight.clone()));
                let result = match task.await {
                    Ok(r) => r.map_err(Arc::new),
                    Err(e) => Err(Arc::new(ImageError::Task { what, detail: e.to_string() })),
                };
                // Off the map first: a pull asked for from now on starts afresh.
                me.inflight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                // Every event is sent: close the callers' progress channels, then answer.
                flight.events.lock().unwrap_or_else(|p| p.into_inner()).1.clear();
                let _ = flight.done.send(Some(result));
            });
        } else {
            debug!(image, "joining the same pull in progress");
        }
        let outcome = match done.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().expect("waited for Some"),
            Err(e) => return Err(ImageError::Task { what: format!("pull {image}"), detail: e.to_string() }),
        };
        outcome.map_err(ImageError::Shared)
    }

    /// One pull, as its own task (see `pull`); its events go to `flight`.
    async fn run_pull(self: Arc<Self>, reference: Reference, auth: Option<Auth>, flight: Arc<InFlight>) -> Result<ImageRecord> {
        let me = self;
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
                    flight.publish(&ev);
                }
            }
        };
        // Events sent just before the end.
        while let Ok(ev) = rx.try_recv() {
            log.event(&ev);
            flight.publish(&ev);
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
        Ok(result?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry that answers every request, after `delay`, with 404 manifest unknown;
    /// returns its host and the count of requests it got.
    async fn slow_registry(delay: Duration) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = l.local_addr().unwrap().to_string();
        let count = Arc::new(AtomicUsize::new(0));
        let c2 = count.clone();
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let count = c2.clone();
                tokio::spawn(async move {
                    if crate::testhttp::read_request(&mut c).await.is_none() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    crate::testhttp::answer(&mut c, &crate::testhttp::json_response("404 Not Found", body)).await;
                });
            }
        });
        (host, count)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn identical_pulls_share_one() {
        let d = tempfile::tempdir().unwrap();
        let (host, requests) = slow_registry(Duration::from_millis(400)).await;
        let cfg = RegistryConfig { insecure: vec![host.clone()], ..Default::default() };
        let m = ImageManager::new(Store::open(d.path()).unwrap(), cfg, GcPolicy::default());
        let image = format!("{host}/x/y:latest");
        let (tx, mut rx) = unbounded_channel();
        let untagged = format!("{host}/x/y");
        let (a, b, c) = tokio::join!(m.pull(&image, None, None), m.pull(&untagged, None, Some(tx)), async {
            // Other credentials: a pull of its own.
            tokio::time::sleep(Duration::from_millis(50)).await;
            m.pull(&image, Some(Auth::Token("t".into())), None).await
        });
        for r in [&a, &b, &c] {
            let e = r.as_ref().unwrap_err();
            assert_eq!(crate::cri::status_of(e).code(), tonic::Code::NotFound, "{e}");
            assert!(e.to_string().contains("manifest unknown"), "{e}");
        }
        assert_eq!(m.pulls_started.load(Ordering::SeqCst), 2, "x/y:1 and x/y are one pull; other credentials another");
        assert_eq!(requests.load(Ordering::SeqCst), 2);
        assert!(rx.try_recv().is_err(), "no progress before the manifest");
        assert!(m.inflight.lock().unwrap().is_empty());
        // Once done, the same pull runs again.
        assert!(m.pull(&image, None, None).await.is_err());
        assert_eq!(m.pulls_started.load(Ordering::SeqCst), 3);
    }
}
