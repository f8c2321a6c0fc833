//! Overlay snapshots: one per container, `<snapshots_root>/<key>/` holding
//! `upper/`, `work/` and `snapshot.json`; the lower layers are the image's
//! diff directories in the store, top layer first.
//!
//! Mounting: the new mount API (`fsopen`/`fsconfig`/`fsmount`) passes each
//! layer with its own `lowerdir+` option (Linux 6.8+), so no layer count
//! hits mount(2)'s one-page data limit. On older kernels the classic mount(2)
//! with absolute paths is used while the options fit in 4096 bytes (about
//! 40 layers under /var/lib/berth); beyond that the mount is done from a
//! thread with its own working directory (unshare(CLONE_FS) + chdir to the
//! layers dir) using relative 64-character names, about 60 layers. The
//! process's working directory is never changed.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fsutil;
use super::store::{Store, SNAPSHOT_REFS};
use super::{Error, Result};

/// A prepared snapshot of an image for one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub key: String,
    pub image_id: String,
    /// `<snapshots_root>/<key>`.
    pub dir: PathBuf,
    /// The image's layer directories, top layer first.
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
    /// The overlay mount options as one string (as mount(8) -o takes them).
    pub options: String,
}

#[derive(Serialize, Deserialize)]
struct SnapshotRef {
    dir: PathBuf,
    image_id: String,
    layers: Vec<String>,
}

const PAGE_LIMIT: usize = 4096;

fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && key != "."
        && key != ".."
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Snapshot { key: key.into(), reason: "key must be 1-200 characters of [A-Za-z0-9._-]".into() })
    }
}

impl Snapshot {
    /// Mounts the overlay on `target` (an existing directory).
    pub fn mount(&self, target: &Path) -> Result<()> {
        let merr = |source| Error::Mount { target: target.to_path_buf(), source };
        let upper = self.upperdir.to_str().ok_or_else(|| merr(io::Error::from_raw_os_error(libc::EINVAL)))?;
        let work = self.workdir.to_str().ok_or_else(|| merr(io::Error::from_raw_os_error(libc::EINVAL)))?;
        let lowers: Vec<&str> = self.lowerdirs.iter().map(|p| p.to_str().unwrap_or("")).collect();
        if lowers.iter().any(|l| l.is_empty() || l.contains([':', ','])) || upper.contains([':', ',']) || work.contains([':', ',']) {
            return Err(merr(io::Error::new(io::ErrorKind::InvalidInput, "overlay paths must not contain ':' or ','")));
        }
        // 1. New mount API, one lowerdir+ per layer.
        let mut opts: Vec<(&str, &str)> = lowers.iter().map(|l| ("lowerdir+", *l)).collect();
        opts.push(("upperdir", upper));
        opts.push(("workdir", work));
        let first = match fsutil::overlay_fsmount(target, &opts) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // 2. Classic mount(2) when the options fit in a page.
        if self.options.len() < PAGE_LIMIT {
            return fsutil::mount("overlay", target, "overlay", 0, &self.options).map_err(merr);
        }
        // 3. Relative names from a thread with its own cwd (all layers share one parent).
        let parent = self.lowerdirs[0].parent().map(Path::to_path_buf);
        let same_parent = self.lowerdirs.iter().all(|l| l.parent() == parent.as_deref());
        let rel: Vec<String> = self.lowerdirs.iter().filter_map(|l| l.file_name()?.to_str().map(String::from)).collect();
        let data = format!("lowerdir={},upperdir={upper},workdir={work}", rel.join(":"));
        if !same_parent || data.len() >= PAGE_LIMIT {
            return Err(merr(io::Error::new(
                first.kind(),
                format!(
                    "{} layers exceed the overlay mount data limit on this kernel (no lowerdir+ support: {first})",
                    self.lowerdirs.len()
                ),
            )));
        }
        let parent = parent.expect("lowerdirs checked non-empty");
        let target = target.to_path_buf();
        std::thread::scope(|s| {
            s.spawn(|| fsutil::mount_from_dir(&parent, "overlay", &target, "overlay", &data)).join().expect("mount thread")
        })
        .map_err(merr)
    }

    /// Unmounts `target`; not mounted is fine.
    pub fn unmount(target: &Path) -> Result<()> {
        match fsutil::umount(target, 0) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            Err(e) => Err(Error::Unmount { target: target.to_path_buf(), source: e }),
        }
    }
}

impl Store {
    fn snapshot_ref_path(&self, dir: &Path) -> PathBuf {
        let hex = super::sha256_digest(dir.as_os_str().as_encoded_bytes());
        self.dir(SNAPSHOT_REFS).join(format!("{}.json", &hex[7..]))
    }

    /// Creates `<snapshots_root>/<key>/{upper,work}` over the image's layers.
    /// The layers are recorded as in use, so gc keeps them until `remove_snapshot`.
    pub fn prepare_snapshot(&self, snapshots_root: &Path, key: &str, image_id: &str) -> Result<Snapshot> {
        check_key(key)?;
        let _g = self.read_guard();
        let rec = self.get(image_id)?.ok_or_else(|| Error::ImageNotFound(image_id.into()))?;
        let dir = snapshots_root.join(key);
        if dir.exists() {
            return Err(Error::Snapshot { key: key.into(), reason: format!("{} already exists", dir.display()) });
        }
        let mut lowerdirs: Vec<PathBuf> = rec.layers.iter().rev().map(|c| self.layer_path(c)).collect();
        for l in &lowerdirs {
            if !l.is_dir() {
                return Err(Error::Snapshot { key: key.into(), reason: format!("layer {} of image {} is missing", l.display(), rec.id) });
            }
        }
        // The ref first: from here on gc keeps the layers.
        let sref = SnapshotRef { dir: dir.clone(), image_id: rec.id.clone(), layers: rec.layers.clone() };
        fsutil::write_atomic(&self.snapshot_ref_path(&dir), &serde_json::to_vec(&sref).expect("snapshot ref serialises"))?;
        std::fs::create_dir_all(snapshots_root).map_err(|e| Error::io("mkdir", snapshots_root, e))?;
        let tmp = snapshots_root.join(format!(".tmp-{key}-{}", fsutil::unique_suffix()));
        let upperdir = dir.join("upper");
        let workdir = dir.join("work");
        if lowerdirs.is_empty() {
            // overlay needs a lower: an image without layers gets an empty one.
            lowerdirs.push(dir.join("empty"));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowerdirs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
            upperdir.display(),
            workdir.display()
        );
        let snap = Snapshot { key: key.into(), image_id: rec.id.clone(), dir: dir.clone(), lowerdirs, upperdir, workdir, options };
        let res = (|| {
            for sub in ["upper", "work"] {
                let p = tmp.join(sub);
                std::fs::create_dir_all(&p).map_err(|e| Error::io("mkdir", &p, e))?;
            }
            if rec.layers.is_empty() {
                std::fs::create_dir(tmp.join("empty")).map_err(|e| Error::io("mkdir", tmp.join("empty"), e))?;
            }
            fsutil::write_atomic(&tmp.join("snapshot.json"), &serde_json::to_vec_pretty(&snap).expect("snapshot serialises"))?;
            std::fs::rename(&tmp, &dir).map_err(|e| Error::io("rename into", &dir, e))?;
            fsutil::fsync_dir(snapshots_root)
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
            let _ = std::fs::remove_file(self.snapshot_ref_path(&dir));
        }
        res.map(|()| snap)
    }

    /// Reads back a prepared snapshot (after a restart).
    pub fn snapshot(&self, snapshots_root: &Path, key: &str) -> Result<Option<Snapshot>> {
        check_key(key)?;
        let p = snapshots_root.join(key).join("snapshot.json");
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| Error::Snapshot { key: key.into(), reason: format!("{}: {e}", p.display()) }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    /// Deletes a snapshot's directories (it must be unmounted) and its layer
    /// references. Returns false when there was none.
    pub fn remove_snapshot(&self, snapshots_root: &Path, key: &str) -> Result<bool> {
        check_key(key)?;
        let dir = snapshots_root.join(key);
        let existed = dir.exists();
        if existed {
            // Renamed away first so a crash never leaves a half-deleted snapshot under its key.
            let doomed = snapshots_root.join(format!(".rm-{key}-{}", fsutil::unique_suffix()));
            std::fs::rename(&dir, &doomed).map_err(|e| Error::io("rename", &dir, e))?;
            std::fs::remove_dir_all(&doomed).map_err(|e| Error::io("remove", &doomed, e))?;
            fsutil::fsync_dir(snapshots_root)?;
        }
        let r = self.snapshot_ref_path(&dir);
        match std::fs::remove_file(&r) {
            Ok(()) => fsutil::fsync_dir(&self.dir(SNAPSHOT_REFS))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &r, e)),
        }
        Ok(existed)
    }

    /// Chain ids used by snapshots that still exist (refs of vanished snapshot dirs are dropped).
    pub(crate) fn snapshot_layer_refs(&self) -> Result<HashSet<String>> {
        let d = self.dir(SNAPSHOT_REFS);
        let mut out = HashSet::new();
        let rd = std::fs::read_dir(&d).map_err(|e| Error::io("read dir", &d, e))?;
        for e in rd.flatten() {
            let p = e.path();
            let Ok(bytes) = std::fs::read(&p) else { continue };
            let Ok(r) = serde_json::from_slice::<SnapshotRef>(&bytes) else { continue };
            if r.dir.exists() {
                out.extend(r.layers);
            } else {
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::Compression;
    use crate::images::store::tests::put_image;
    use crate::images::unpack::tests::LayerBuilder;

    #[test]
    fn snapshot_mounts_the_merged_view_and_keeps_layers_from_gc() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("SKIP: overlay mounts need root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("images")).unwrap();
        let l1 = LayerBuilder::new().file("a/gone", "x").file("a/kept", "k").dir("o", 0o755).file("o/old", "old").build();
        let l2 = LayerBuilder::new().file("a/.wh.gone", "").file("o/.wh..wh..opq", "").file("o/new", "new").build();
        let m = put_image(&store, &[(l1, Compression::Gzip), (l2, Compression::None)], "sh");
        let rec = store.add_image(Some("r/s:1"), &m).unwrap();
        let snaps = d.path().join("snapshots");
        let s = store.prepare_snapshot(&snaps, "c1", &rec.id).unwrap();
        assert_eq!(s.lowerdirs, vec![store.layer_path(&rec.layers[1]), store.layer_path(&rec.layers[0])]);
        assert!(store.prepare_snapshot(&snaps, "c1", &rec.id).is_err());
        assert!(store.prepare_snapshot(&snaps, "../x", &rec.id).is_err());
        assert_eq!(store.snapshot(&snaps, "c1").unwrap().unwrap(), s);

        // The image goes, the snapshot keeps its layers.
        store.remove(&rec.id).unwrap();
        store.gc_with(&crate::images::GcOptions { grace: std::time::Duration::ZERO }).unwrap();
        assert!(s.lowerdirs.iter().all(|l| l.is_dir()));

        let target = d.path().join("rootfs");
        std::fs::create_dir(&target).unwrap();
        s.mount(&target).unwrap();
        let names = |p: &str| {
            let mut v: Vec<String> = std::fs::read_dir(target.join(p)).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
            v.sort();
            v
        };
        let merged = (names("a"), names("o"));
        std::fs::write(target.join("written"), "w").unwrap();
        Snapshot::unmount(&target).unwrap();
        assert_eq!(merged, (vec!["kept".to_string()], vec!["new".to_string()]));
        assert!(s.upperdir.join("written").exists());
        // On 6.8+ the first way (one `lowerdir+` per layer) is the one used.
        let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut v = rel.split(['.', '-']).map(|x| x.parse::<u32>().unwrap_or(0));
        if (v.next().unwrap(), v.next().unwrap()) >= (6, 8) {
            let lowers: Vec<&str> = s.lowerdirs.iter().map(|l| l.to_str().unwrap()).collect();
            let mut opts: Vec<(&str, &str)> = lowers.iter().map(|l| ("lowerdir+", *l)).collect();
            opts.push(("upperdir", s.upperdir.to_str().unwrap()));
            opts.push(("workdir", s.workdir.to_str().unwrap()));
            crate::images::fsutil::overlay_fsmount(&target, &opts).unwrap();
            assert!(target.join("written").exists() && !target.join("a/gone").exists());
            Snapshot::unmount(&target).unwrap();
        }
        // The mount(2) fallbacks (kernels before 6.8), called directly.
        crate::images::fsutil::mount("overlay", &target, "overlay", 0, &s.options).unwrap();
        assert!(target.join("written").exists() && !target.join("a/gone").exists());
        Snapshot::unmount(&target).unwrap();
        // The relative-name fallback: a thread of its own cwd; the process's stays put.
        let cwd = std::env::current_dir().unwrap();
        let rel: Vec<_> = s.lowerdirs.iter().map(|l| l.file_name().unwrap().to_str().unwrap().to_string()).collect();
        let data = format!("lowerdir={},upperdir={},workdir={}", rel.join(":"), s.upperdir.display(), s.workdir.display());
        let parent = s.lowerdirs[0].parent().unwrap().to_path_buf();
        std::thread::scope(|sc| sc.spawn(|| crate::images::fsutil::mount_from_dir(&parent, "overlay", &target, "overlay", &data)).join().unwrap())
            .unwrap();
        assert_eq!(std::env::current_dir().unwrap(), cwd);
        assert!(target.join("written").exists() && target.join("a/kept").exists());
        Snapshot::unmount(&target).unwrap();

        assert!(store.remove_snapshot(&snaps, "c1").unwrap());
        assert!(!store.remove_snapshot(&snaps, "c1").unwrap());
        assert!(!snaps.join("c1").exists());
        let rep = store.gc_with(&crate::images::GcOptions { grace: std::time::Duration::ZERO }).unwrap();
        assert_eq!(rep.layers_removed, 2);
    }
}
