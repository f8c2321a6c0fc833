//! Import without a registry: an OCI image layout (directory or tar) or a
//! docker-archive tar (`docker save`, `skopeo copy ... docker-archive:`).
//!
//! A tar is read once, front to back: every file goes straight into the
//! blob store under its content digest (files named `blobs/sha256/<hex>` must
//! match their name), small metadata files are kept in memory. Then the
//! layout's index.json or the archive's manifest.json says which images to
//! register. A directory is read in place, only the blobs its images need.
//! Either way, every blob is verified and the images are added with
//! `add_image`, so unpacking and records work exactly as for a pull.
//!
//! Names: OCI layouts name images by the `io.containerd.image.name`
//! annotation, else `org.opencontainers.image.ref.name` when it is a full
//! reference (has a '/' or ':'; a bare tag such as "latest" names no
//! repository, so the image is imported without a name); docker-archives by
//! RepoTags. Names are normalised like docker (`busybox` →
//! `docker.io/library/busybox:latest`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use super::oci::{self, Descriptor, Document, Manifest, Platform};
use super::reference::Reference;
use super::store::{ImageRecord, Store};
use super::{digest_hex, Error, Result};

/// Files kept in memory while reading a tar (everything else is a blob).
const SMALL_FILES: &[&str] = &["index.json", "manifest.json", "oci-layout", "repositories"];
const SMALL_MAX: u64 = 16 << 20;

enum Source<'a> {
    Dir(&'a Path),
    Tar { blobs: HashMap<String, String>, small: HashMap<String, Vec<u8>> },
}

impl Store {
    /// Imports every image of an OCI layout directory, OCI layout tar or
    /// docker-archive tar (optionally gzip/zstd compressed); returns their records.
    pub fn import(&self, path: &Path) -> Result<Vec<ImageRecord>> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
        let src = if meta.is_dir() { Source::Dir(path) } else { self.read_tar(path)? };
        let ierr = |reason: String| Error::Import { path: path.to_path_buf(), reason };
        if let Some(bytes) = self.small(&src, path, "manifest.json")? {
            let entries: Vec<oci::DockerArchiveEntry> =
                serde_json::from_slice(&bytes).map_err(|e| ierr(format!("manifest.json: {e}")))?;
            let mut out = Vec::new();
            for e in entries {
                out.push(self.import_docker_entry(&src, path, &e)?);
            }
            return Ok(out);
        }
        let Some(index) = self.small(&src, path, "index.json")? else {
            return Err(ierr("neither an OCI image layout (index.json) nor a docker-archive (manifest.json)".into()));
        };
        if self.small(&src, path, "oci-layout")?.is_none() {
            return Err(ierr("index.json without an oci-layout file".into()));
        }
        let index: oci::Index = serde_json::from_slice(&index).map_err(|e| ierr(format!("index.json: {e}")))?;
        let mut out: Vec<ImageRecord> = Vec::new();
        for desc in &index.manifests {
            self.import_tree(&src, path, desc, 0)?;
            let name = image_name(desc).map(|n| normalise(&n).map_err(ierr)).transpose()?;
            let rec = self.add_image(name.as_deref(), &desc.digest)?;
            out.retain(|r| r.id != rec.id);
            out.push(rec);
        }
        if out.is_empty() {
            return Err(ierr("index.json lists no images".into()));
        }
        Ok(out)
    }

    /// Reads a tar front to back: blobs into the store, small files into memory.
    fn read_tar(&self, path: &Path) -> Result<Source<'static>> {
        let ierr = |reason: String| Error::Import { path: path.to_path_buf(), reason };
        let mut f = File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(|e| Error::io("read", path, e))?;
        let compression = oci::sniff_compression(&head[..n]);
        drop(f);
        let reader = super::unpack::decompressed(path, compression)?;
        let mut ar = tar::Archive::new(reader);
        let mut blobs = HashMap::new();
        let mut small = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = ar.entries().map_err(|e| ierr(format!("not a tar: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| ierr(format!("reading tar: {e}")))?;
            let raw = entry.path().map_err(|e| ierr(format!("entry name: {e}")))?.into_owned();
            let Some(name) = clean(&raw) else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    if SMALL_FILES.contains(&name.as_str()) && entry.size() <= SMALL_MAX {
                        let mut b = Vec::new();
                        entry.read_to_end(&mut b).map_err(|e| ierr(format!("{name}: {e}")))?;
                        small.insert(name, b);
                        continue;
                    }
                    let expect = name.strip_prefix("blobs/sha256/").map(|h| format!("sha256:{h}"));
                    let (digest, _) = self.put_blob_from(&mut entry, expect.as_deref())?;
                    blobs.insert(name, digest);
                }
                // Older `docker save` links duplicate layers to one file.
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Ok(Some(target)) = entry.link_name() else { continue };
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name).parent().unwrap_or(Path::new("")).join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = resolve_in_archive(&target) {
                        links.push((name, t));
                    }
                }
                _ => {}
            }
        }
        for (name, target) in links {
            if let Some(d) = blobs.get(&target).cloned() {
                blobs.insert(name, d);
            }
        }
        Ok(Source::Tar { blobs, small })
    }

    fn small(&self, src: &Source, path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
        match src {
            Source::Tar { small, .. } => Ok(small.get(name).cloned()),
            Source::Dir(d) => match std::fs::read(d.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("read", path.join(name), e)),
            },
        }
    }

    /// Puts the file `rel` of the source into the store; returns its digest.
    fn ingest_file(&self, src: &Source, path: &Path, rel: &str, expect: Option<&str>) -> Result<String> {
        let ierr = |reason: String| Error::Import { path: path.to_path_buf(), reason };
        let rel = clean(Path::new(rel)).ok_or_else(|| ierr(format!("bad file name {rel:?}")))?;
        match src {
            Source::Tar { blobs, .. } => {
                let d = blobs.get(&rel).ok_or_else(|| ierr(format!("{rel} is missing from the archive")))?;
                if let Some(want) = expect {
                    if want != d {
                        return Err(Error::DigestMismatch { digest: want.into(), actual: d.clone() });
                    }
                }
                Ok(d.clone())
            }
            Source::Dir(dir) => {
                if let Some(want) = expect {
                    if self.has_blob(want) {
                        return Ok(want.to_string());
                    }
                }
                let p = dir.join(&rel);
                let f = File::open(&p).map_err(|e| Error::io("open", &p, e))?;
                Ok(self.put_blob_from(&mut BufReader::with_capacity(256 * 1024, f), expect)?.0)
            }
        }
    }

    fn ingest_blob(&self, src: &Source, path: &Path, digest: &str) -> Result<()> {
        let hex = digest_hex(digest)?;
        self.ingest_file(src, path, &format!("blobs/sha256/{hex}"), Some(digest)).map(|_| ())
    }

    /// Brings a manifest (or index, then this platform's manifest) and
    /// everything it needs from an OCI layout into the store.
    fn import_tree(&self, src: &Source, path: &Path, desc: &Descriptor, depth: u32) -> Result<()> {
        let ierr = |reason: String| Error::Import { path: path.to_path_buf(), reason };
        if depth > 2 {
            return Err(ierr("image indexes nested too deep".into()));
        }
        self.ingest_blob(src, path, &desc.digest)?;
        let bytes = self.read_blob(&desc.digest)?;
        match oci::parse_document(&bytes).map_err(|r| ierr(format!("{}: {r}", desc.digest)))? {
            Document::Index(idx) => {
                let host = Platform::host();
                let pick = idx
                    .manifests
                    .iter()
                    .find(|d| d.platform.as_ref().map(|p| host.matches(p)).unwrap_or(idx.manifests.len() == 1))
                    .ok_or_else(|| Error::NoMatchingPlatform { digest: desc.digest.clone(), platform: host.to_string() })?;
                self.import_tree(src, path, pick, depth + 1)
            }
            Document::Manifest(m) => {
                self.ingest_blob(src, path, &m.config.digest)?;
                for l in &m.layers {
                    if oci::layer_kind(&l.media_type) == oci::LayerKind::Foreign {
                        return Err(Error::ForeignLayer { digest: l.digest.clone(), media_type: l.media_type.clone() });
                    }
                    self.ingest_blob(src, path, &l.digest)?;
                }
                Ok(())
            }
        }
    }

    /// One image of a docker-archive: blobs in, a Docker v2 schema 2 manifest
    /// made for it, then registered under each RepoTag.
    fn import_docker_entry(&self, src: &Source, path: &Path, e: &oci::DockerArchiveEntry) -> Result<ImageRecord> {
        let ierr = |reason: String| Error::Import { path: path.to_path_buf(), reason };
        let config = self.ingest_file(src, path, &e.config, None)?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let d = self.ingest_file(src, path, l, None)?;
            let p = self.blob_path(&d);
            let mut head = [0u8; 4];
            let n = File::open(&p).and_then(|mut f| f.read(&mut head)).map_err(|e| Error::io("read", &p, e))?;
            let media_type = match oci::sniff_compression(&head[..n]) {
                oci::Compression::None => oci::DOCKER_LAYER,
                oci::Compression::Gzip => oci::DOCKER_LAYER_GZIP,
                oci::Compression::Zstd => oci::DOCKER_LAYER_ZSTD,
            };
            let size = std::fs::metadata(&p).map_err(|e| Error::io("stat", &p, e))?.len();
            layers.push(Descriptor { media_type: media_type.into(), digest: d, size, ..Default::default() });
        }
        let csize = std::fs::metadata(self.blob_path(&config)).map(|m| m.len()).unwrap_or(0);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::DOCKER_MANIFEST.into()),
            config: Descriptor { media_type: oci::DOCKER_CONFIG.into(), digest: config, size: csize, ..Default::default() },
            layers,
            annotations: Default::default(),
        };
        let mdigest = self.put_blob(&serde_json::to_vec(&manifest).expect("manifest serialises"))?;
        let tags = e.repo_tags.clone().unwrap_or_default();
        let mut rec = self.add_image(None, &mdigest)?;
        for t in tags {
            let name = normalise(&t).map_err(ierr)?;
            rec = self.add_image(Some(&name), &mdigest)?;
        }
        Ok(rec)
    }
}

/// The image name an OCI layout gives a manifest, if it names a repository.
fn image_name(desc: &Descriptor) -> Option<String> {
    if let Some(n) = desc.annotations.get(oci::ANNOTATION_CONTAINERD_NAME) {
        return Some(n.clone());
    }
    let n = desc.annotations.get(oci::ANNOTATION_REF_NAME)?;
    (n.contains('/') || n.contains(':')).then(|| n.clone())
}

fn normalise(name: &str) -> std::result::Result<String, String> {
    Reference::parse(name).map(|r| r.to_string()).map_err(|e| format!("image name {name:?}: {e}"))
}

/// A link target inside the archive, '..' resolved lexically ("y/../x/f" -> "x/f");
/// None when it leaves the archive.
fn resolve_in_archive(p: &Path) -> Option<String> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop()?;
            }
            _ => return None,
        }
    }
    clean(&out.iter().collect::<PathBuf>())
}

/// "./a/b" -> "a/b"; None for names with '..' or absolute ones.
fn clean(p: &Path) -> Option<String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    let s = out.to_str()?.to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::oci::Compression;
    use crate::images::store::tests::{compress, put_image};
    use crate::images::unpack::tests::LayerBuilder;

    fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// An OCI layout (as files) holding one image made in a scratch store.
    fn layout_files() -> (Vec<(String, Vec<u8>)>, String) {
        let scratch = tempfile::tempdir().unwrap();
        let s = Store::open(scratch.path()).unwrap();
        let l = LayerBuilder::new().file("hello", "hi\n").build();
        let m = put_image(&s, &[(l, Compression::Gzip)], "cat");
        let man: Manifest = serde_json::from_slice(&s.read_blob(&m).unwrap()).unwrap();
        let mut files = vec![("oci-layout".to_string(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())];
        for d in std::iter::once(&m).chain([&man.config.digest]).chain(man.layers.iter().map(|l| &l.digest)) {
            files.push((format!("blobs/sha256/{}", &d[7..]), s.read_blob(d).unwrap()));
        }
        let msize = s.read_blob(&m).unwrap().len();
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": oci::OCI_MANIFEST, "digest": m, "size": msize,
            "annotations": {oci::ANNOTATION_REF_NAME: "example.com/hello:1"}}]});
        files.push(("index.json".into(), serde_json::to_vec(&index).unwrap()));
        (files, m)
    }

    #[test]
    fn oci_layout_dir_and_tar() {
        let (files, m) = layout_files();
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("layout");
        for (n, b) in &files {
            let p = dir.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b).unwrap();
        }
        let store = Store::open(&d.path().join("store")).unwrap();
        let recs = store.import(&dir).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].repo_tags, vec!["example.com/hello:1"]);
        assert_eq!(recs[0].manifest_digest, m);
        assert_eq!(std::fs::read_to_string(store.layer_path(&recs[0].layers[0]).join("hello")).unwrap(), "hi\n");

        // The same layout as a (gzipped) tar, into a fresh store.
        let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let t = d.path().join("layout.tar.gz");
        std::fs::write(&t, compress(&tar_of(&refs), Compression::Gzip)).unwrap();
        let store2 = Store::open(&d.path().join("store2")).unwrap();
        let recs2 = store2.import(&t).unwrap();
        assert_eq!(recs2[0].id, recs[0].id);

        // A corrupted blob is refused.
        let mut bad = refs.clone();
        let i = bad.iter().position(|(n, _)| n.starts_with("blobs/") && n.ends_with(&m[7..])).unwrap();
        bad[i].1.push(b' ');
        let t = d.path().join("bad.tar");
        std::fs::write(&t, tar_of(&bad)).unwrap();
        let store3 = Store::open(&d.path().join("store3")).unwrap();
        assert!(matches!(store3.import(&t).unwrap_err(), Error::DigestMismatch { .. }));
        assert!(store3.list().unwrap().is_empty());
    }

    #[test]
    fn docker_archive_with_symlinked_layers() {
        // Older `docker save`: a repeated layer is a symlink to the first copy.
        let l = LayerBuilder::new().file("a", "1").build();
        let diff = crate::images::sha256_digest(&l);
        let cfg = serde_json::json!({"architecture": Platform::host().architecture, "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff, diff]}});
        let manifest = serde_json::json!([{"Config": "c.json", "RepoTags": null, "Layers": ["x/layer.tar", "y/layer.tar"]}]);
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [("c.json", serde_json::to_vec(&cfg).unwrap()), ("x/layer.tar", l), ("manifest.json", serde_json::to_vec(&manifest).unwrap())] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "y/layer.tar", "../x/layer.tar").unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("old.tar");
        std::fs::write(&p, b.into_inner().unwrap()).unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        let rec = store.import(&p).unwrap().remove(0);
        assert_eq!(rec.layers.len(), 2);
        assert!(rec.repo_tags.is_empty());
    }

    #[test]
    fn docker_archive() {
        let l1 = LayerBuilder::new().file("a", "1").build();
        let l2 = LayerBuilder::new().file("b", "2").build();
        let cfg = serde_json::json!({"architecture": Platform::host().architecture, "os": "linux", "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [crate::images::sha256_digest(&l1), crate::images::sha256_digest(&l2)]}});
        let cfg = serde_json::to_vec(&cfg).unwrap();
        let manifest = serde_json::json!([{"Config": "abc.json", "RepoTags": ["busybox:latest", "example.com/x:2"],
            "Layers": ["l1/layer.tar", "l2/layer.tar"]}]);
        let t = tar_of(&[
            ("abc.json", cfg),
            ("l1/layer.tar", l1),
            ("l2/layer.tar", compress(&l2, Compression::Gzip)),
            ("manifest.json", serde_json::to_vec(&manifest).unwrap()),
        ]);
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img.tar");
        std::fs::write(&p, t).unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        let recs = store.import(&p).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].repo_tags, vec!["docker.io/library/busybox:latest", "example.com/x:2"]);
        assert_eq!(recs[0].config.cmd, vec!["sh"]);
        assert!(store.layer_path(&recs[0].layers[1]).join("b").exists());
        let err = store.import(&d.path().join("store")).unwrap_err().to_string();
        assert!(err.contains("neither an OCI image layout"), "{err}");
    }
}
