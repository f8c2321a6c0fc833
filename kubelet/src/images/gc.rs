//! Garbage collection: blobs and layers no image record (or snapshot)
//! references, and stale ingest and temp files.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::fsutil;
use super::store::{Store, BLOBS, INGEST, LAYERS, RECORDS};
use super::{Error, Result};

/// What a gc run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: u64,
    pub layers_removed: u64,
    pub bytes_freed: u64,
}

/// How eager gc is.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Blobs committed by this process but not yet in a record (a pull in
    /// progress), and partial downloads, younger than this are kept.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { grace: Duration::from_secs(3600) }
    }
}

impl Store {
    /// Removes unreferenced blobs and layers and stale temp files (default grace).
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_with(&GcOptions::default())
    }

    pub fn gc_with(&self, opts: &GcOptions) -> Result<GcReport> {
        // Exclusive: no add_image, import or commit runs while we decide.
        let _w = self.inner.gc_lock.write().unwrap_or_else(|p| p.into_inner());
        let mut report = GcReport::default();
        let records = self.list()?;
        let mut blobs: HashSet<String> = HashSet::new();
        let mut layers: HashSet<String> = HashSet::new();
        for r in &records {
            blobs.extend(r.blobs.iter().cloned());
            blobs.insert(r.id.clone());
            blobs.insert(r.manifest_digest.clone());
            layers.extend(r.layers.iter().cloned());
        }
        layers.extend(self.snapshot_layer_refs()?);
        {
            let mut fresh = self.inner.fresh.lock().unwrap_or_else(|p| p.into_inner());
            fresh.retain(|_, t| t.elapsed() < opts.grace);
            blobs.extend(fresh.keys().cloned());
        }

        let bdir = self.dir(BLOBS);
        for (name, path) in entries(&bdir)? {
            let keep = !name.starts_with('.') && blobs.contains(&format!("sha256:{name}"));
            if !keep {
                report.bytes_freed += fsutil::lstat_usage(&path).map(|u| u.0).unwrap_or(0);
                remove_any(&path)?;
                if !name.starts_with('.') {
                    report.blobs_removed += 1;
                }
            }
        }
        fsutil::fsync_dir(&bdir)?;

        let ldir = self.dir(LAYERS);
        for (name, path) in entries(&ldir)? {
            let referenced = layers.contains(&format!("sha256:{name}"));
            if !referenced {
                report.bytes_freed += du(&path);
                remove_any(&path)?;
                if !name.starts_with("tmp-") {
                    report.layers_removed += 1;
                }
            }
        }
        fsutil::fsync_dir(&ldir)?;

        let idir = self.dir(INGEST);
        let now = SystemTime::now();
        let busy = self.inner.ingesting.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (name, path) in entries(&idir)? {
            let digest = name.strip_prefix("sha256-").and_then(|n| n.strip_suffix(".partial")).map(|h| format!("sha256:{h}"));
            if digest.is_some_and(|d| busy.contains(&d)) {
                continue;
            }
            // Downloads are written by pulls outside our lock: only old ones go.
            // Import temp files are written under the store lock, so any left is stale.
            let old = std::fs::symlink_metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= opts.grace)
                .unwrap_or(true);
            if old || name.starts_with("import-") {
                report.bytes_freed += fsutil::lstat_usage(&path).map(|u| u.0).unwrap_or(0);
                remove_any(&path)?;
            }
        }

        let rdir = self.dir(RECORDS);
        for (name, path) in entries(&rdir)? {
            if name.starts_with(".tmp-") {
                remove_any(&path)?;
            }
        }
        Ok(report)
    }

    /// Percentage of the store's filesystem in use (for threshold gc).
    pub fn disk_usage_percent(&self) -> Result<f64> {
        fsutil::used_percent(self.root()).map_err(|e| Error::io("statvfs", self.root(), e))
    }

    /// Threshold gc (kubelet-style): when the filesystem is at least
    /// `high_percent` full, remove unreferenced content and then unpinned
    /// images nobody uses (`in_use` says who does), oldest first, until usage
    /// drops below `low_percent`. Returns None when below the threshold.
    pub fn gc_threshold(
        &self,
        high_percent: f64,
        low_percent: f64,
        in_use: &dyn Fn(&super::ImageRecord) -> Option<String>,
    ) -> Result<Option<GcReport>> {
        if self.disk_usage_percent()? < high_percent {
            return Ok(None);
        }
        let opts = GcOptions::default();
        let mut total = self.gc_with(&opts)?;
        let mut candidates: Vec<_> = self.list()?.into_iter().filter(|r| !r.pinned && in_use(r).is_none()).collect();
        candidates.sort_by(|a, b| a.created.cmp(&b.created));
        for r in candidates {
            if self.disk_usage_percent()? < low_percent {
                break;
            }
            if self.remove_with(&r.id, in_use)? {
                let rep = self.gc_with(&opts)?;
                total.blobs_removed += rep.blobs_removed;
                total.layers_removed += rep.layers_removed;
                total.bytes_freed += rep.bytes_freed;
            }
        }
        Ok(Some(total))
    }
}

fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read dir", dir, e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io("read dir", dir, e))?;
        out.push((e.file_name().to_string_lossy().into_owned(), e.path()));
    }
    Ok(out)
}

fn remove_any(p: &Path) -> Result<()> {
    let r = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(|e| Error::io("remove", p, e))
}

/// Disk usage of a tree (hard links once), best effort.
pub(crate) fn du(p: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        use std::os::unix::fs::MetadataExt;
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    total
}
