//! Unpacks one layer tar into an overlayfs-ready diff directory.
//!
//! The `tar` crate only parses (headers, PAX and GNU long names); every file
//! is created here, following the OCI layer rules:
//! - `.wh.<name>` becomes an overlay whiteout (char device 0:0) named `<name>`;
//!   `.wh..wh..opq` marks its directory opaque (`trusted.overlay.opaque=y`);
//!   other `.wh..wh.*` (aufs metadata) are skipped.
//! - ownership, modes (setuid/setgid/sticky included), mtimes and
//!   `SCHILY.xattr.*` PAX xattrs are applied; hard links must point into
//!   the same layer; symlinks, device nodes and fifos are created as such.
//! - Path safety: names are split into components; `..` and absolute names
//!   are refused; every parent component is checked with lstat and a symlink
//!   or non-directory parent is refused; the final component is never
//!   followed (O_NOFOLLOW / l* calls). The checks are race-free because the
//!   target is a fresh private temp directory only this unpack writes to.
//! - The diff_id (sha256 of the uncompressed tar, to its very end) is computed
//!   while reading and returned for the caller to check.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::fsutil;
use super::oci::Compression;
use super::{Error, Result};

const OPAQUE: &str = ".wh..wh..opq";
const WH_PREFIX: &str = ".wh.";
const WH_META_PREFIX: &str = ".wh..wh.";

/// A reader that hashes everything read through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// After the stream ends, yields up to one block of padding plus the two
/// end-of-archive blocks as zeros. Go's archive/tar accepts tars that stop
/// right after the last entry's data (umoci writes such layers), so every
/// engine does; the zeros are not hashed, so the diff_id still covers only
/// the real bytes and a layer truncated in transit fails its diff_id check.
struct ZeroTail<R> {
    inner: R,
    tail: usize,
    ended: bool,
}

impl<R: Read> Read for ZeroTail<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.ended {
            let n = self.inner.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            self.ended = true;
        }
        let n = buf.len().min(self.tail);
        buf[..n].fill(0);
        self.tail -= n;
        Ok(n)
    }
}

/// Opens a decompressing reader over a layer blob.
pub fn decompressed(blob: &Path, compression: Compression) -> Result<Box<dyn Read>> {
    let f = File::open(blob).map_err(|e| Error::io("open", blob, e))?;
    let f = BufReader::with_capacity(256 * 1024, f);
    Ok(match compression {
        Compression::None => Box::new(f),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(f)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(f).map_err(|e| Error::io("zstd init", blob, e))?),
    })
}

/// Unpacks the layer blob at `blob` into the existing empty directory `dest`;
/// returns the diff_id. `digest` names the layer in errors.
pub fn unpack_layer(blob: &Path, compression: Compression, dest: &Path, digest: &str) -> Result<String> {
    let reader = decompressed(blob, compression)?;
    unpack_tar(reader, dest, digest)
}

/// Unpacks an uncompressed tar stream into `dest`; returns its diff_id.
pub fn unpack_tar<R: Read>(reader: R, dest: &Path, digest: &str) -> Result<String> {
    let mut hr = Hashing { inner: reader, hasher: Sha256::new() };
    let read_err = |e: io::Error| Error::Unpack { digest: digest.to_string(), path: "(reading the tar stream)".into(), source: e };
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    {
        let mut ar = tar::Archive::new(ZeroTail { inner: &mut hr, tail: 3 * 512, ended: false });
        let entries = ar.entries().map_err(read_err)?;
        for entry in entries {
            let mut entry = entry.map_err(read_err)?;
            apply_entry(dest, &mut entry, digest, &mut dirs)?;
        }
    }
    // The diff_id covers the whole stream, including end-of-archive padding.
    io::copy(&mut hr, &mut io::sink()).map_err(read_err)?;
    // Directory modes and mtimes last, deepest first: creating children
    // changes a directory's mtime, and a read-only mode would block them.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, meta) in &dirs {
        meta.apply_mode_and_time(p, true).map_err(|e| unpack_err(digest, p, dest, e))?;
    }
    Ok(super::digest_of(hr.hasher))
}

fn unpack_err(digest: &str, p: &Path, dest: &Path, e: io::Error) -> Error {
    let rel = p.strip_prefix(dest).unwrap_or(p);
    Error::Unpack { digest: digest.to_string(), path: rel.display().to_string(), source: e }
}

/// Entry metadata applied after creation.
#[derive(Debug, Clone)]
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, i64),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn apply_owner_xattrs(&self, p: &Path, symlink: bool) -> io::Result<()> {
        match fsutil::lchown(p, self.uid as u32, self.gid as u32) {
            Ok(()) => {}
            // Rootless unpack keeps the caller's ownership.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !is_root() => {}
            Err(e) => return Err(e),
        }
        // chmod after chown: chown clears setuid/setgid.
        if !symlink {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(self.mode & 0o7777))?;
        }
        for (k, v) in &self.xattrs {
            match fsutil::lsetxattr(p, k, v) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) => {}
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && !is_root() => {}
                Err(e) => {
                    return Err(io::Error::new(e.kind(), format!("set xattr {}: {e}", String::from_utf8_lossy(k))))
                }
            }
        }
        Ok(())
    }

    fn apply_mode_and_time(&self, p: &Path, with_mode: bool) -> io::Result<()> {
        if with_mode {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(self.mode & 0o7777))?;
        }
        fsutil::lutimes(p, self.mtime.0, self.mtime.1)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Splits an entry name into normal components, refusing escapes.
/// A name that is only "/" (umoci writes one for the layer root) means the root.
fn components(name: &Path) -> std::result::Result<Vec<&std::ffi::OsStr>, &'static str> {
    let mut out = Vec::new();
    let mut absolute = false;
    for c in name.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("'..' component escapes the layer"),
            Component::RootDir | Component::Prefix(_) => absolute = true,
        }
    }
    if absolute && !out.is_empty() {
        return Err("absolute path");
    }
    Ok(out)
}

/// Makes sure every parent component exists as a real directory inside
/// `dest` (creating missing ones 0755), refusing symlinks and non-directories.
fn ensure_parents(dest: &Path, parents: &[&std::ffi::OsStr]) -> std::result::Result<PathBuf, String> {
    let mut p = dest.to_path_buf();
    for c in parents {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => return Err(format!("parent {:?} is a symlink", c)),
            Ok(_) => return Err(format!("parent {:?} is not a directory", c)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&p).map_err(|e| format!("mkdir parent {:?}: {e}", c))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(format!("lstat parent {:?}: {e}", c)),
        }
    }
    Ok(p)
}

/// Removes whatever an earlier entry of this layer left at `p` (a later
/// entry of the same name wins), except a directory replaced by a directory.
fn clear_target(p: &Path, new_is_dir: bool) -> io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() && new_is_dir => Ok(true),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p).map(|_| false),
        Ok(_) => std::fs::remove_file(p).map(|_| false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn pax_meta<R: Read>(entry: &mut tar::Entry<R>) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        mode: h.mode()?,
        uid: h.uid()?,
        gid: h.gid()?,
        mtime: (h.mtime()? as i64, 0),
        xattrs: Vec::new(),
    };
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                meta.xattrs.push((name.as_bytes().to_vec(), value.to_vec()));
            } else if key == "uid" || key == "gid" {
                if let Some(n) = std::str::from_utf8(value).ok().and_then(|s| s.trim().parse().ok()) {
                    if key == "uid" { meta.uid = n } else { meta.gid = n }
                }
            } else if key == "mtime" {
                if let Some(t) = std::str::from_utf8(value).ok().and_then(parse_pax_time) {
                    meta.mtime = t;
                }
            }
        }
    }
    Ok(meta)
}

/// "1700000000.123456789" (PAX times may carry a fraction, maybe negative).
fn parse_pax_time(s: &str) -> Option<(i64, i64)> {
    let (sec, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let secs: i64 = sec.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nsec: i64 = digits.parse().ok()?;
    Some((secs, nsec))
}

fn apply_entry<R: Read>(dest: &Path, entry: &mut tar::Entry<R>, digest: &str, dirs: &mut Vec<(PathBuf, Meta)>) -> Result<()> {
    let name: PathBuf = entry
        .path()
        .map_err(|e| Error::Unpack { digest: digest.into(), path: String::new(), source: e })?
        .into_owned();
    let shown = name.display().to_string();
    let unsafe_entry = |reason: String| Error::UnsafeEntry { digest: digest.into(), path: shown.clone(), reason };
    let io_err = |e: io::Error| Error::Unpack { digest: digest.into(), path: shown.clone(), source: e };
    let comps = components(&name).map_err(|r| unsafe_entry(r.into()))?;
    let kind = entry.header().entry_type();
    let Some((last, parents)) = comps.split_last() else {
        // "./": the layer root itself; the container's upper dir owns the
        // merged root's attributes, so nothing to do.
        return Ok(());
    };
    let last_str = last.to_string_lossy();
    let parent = ensure_parents(dest, parents).map_err(unsafe_entry)?;

    if last_str == OPAQUE {
        fsutil::lsetxattr(&parent, b"trusted.overlay.opaque", b"y").map_err(io_err)?;
        return Ok(());
    }
    if last_str.starts_with(WH_META_PREFIX) {
        return Ok(());
    }
    if let Some(hidden) = last_str.strip_prefix(WH_PREFIX) {
        if hidden.is_empty() {
            return Err(unsafe_entry("empty whiteout name".into()));
        }
        let target = parent.join(hidden);
        clear_target(&target, false).map_err(io_err)?;
        fsutil::mknod(&target, libc::S_IFCHR, 0, 0, 0).map_err(io_err)?;
        return Ok(());
    }

    let target = parent.join(last);
    let meta = pax_meta(entry).map_err(io_err)?;
    match kind {
        tar::EntryType::Directory => {
            if !clear_target(&target, true).map_err(io_err)? {
                std::fs::create_dir(&target).map_err(io_err)?;
            }
            let mut m = meta.clone();
            m.xattrs.clear();
            // Owner and xattrs now, mode and mtime after the children.
            let owner = Meta { mode: 0o700 | (meta.mode & 0o7777), ..meta.clone() };
            owner.apply_owner_xattrs(&target, false).map_err(io_err)?;
            dirs.push((target, m));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            clear_target(&target, false).map_err(io_err)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&target)
                .map_err(io_err)?;
            copy_data(entry, &mut f).map_err(io_err)?;
            drop(f);
            meta.apply_owner_xattrs(&target, false).map_err(io_err)?;
            meta.apply_mode_and_time(&target, false).map_err(io_err)?;
        }
        tar::EntryType::Symlink => {
            let link = entry.link_name().map_err(io_err)?.ok_or_else(|| unsafe_entry("symlink without target".into()))?;
            clear_target(&target, false).map_err(io_err)?;
            // The target text is stored as is: a symlink is never followed while unpacking.
            std::os::unix::fs::symlink(link.as_ref(), &target).map_err(io_err)?;
            meta.apply_owner_xattrs(&target, true).map_err(io_err)?;
            meta.apply_mode_and_time(&target, false).map_err(io_err)?;
        }
        tar::EntryType::Link => {
            let link: Cow<Path> = entry.link_name().map_err(io_err)?.ok_or_else(|| unsafe_entry("hard link without target".into()))?;
            let lcomps = components(&link).map_err(|r| unsafe_entry(format!("hard link target {}: {r}", link.display())))?;
            let Some((llast, lparents)) = lcomps.split_last() else {
                return Err(unsafe_entry("hard link to the layer root".into()));
            };
            let mut src = dest.to_path_buf();
            for c in lparents {
                src.push(c);
                match std::fs::symlink_metadata(&src) {
                    Ok(m) if m.is_dir() => {}
                    _ => return Err(unsafe_entry(format!("hard link target {} is not a file of this layer", link.display()))),
                }
            }
            src.push(llast);
            match std::fs::symlink_metadata(&src) {
                Ok(m) if !m.is_dir() => {}
                Ok(_) => return Err(unsafe_entry(format!("hard link to directory {}", link.display()))),
                Err(_) => return Err(unsafe_entry(format!("hard link target {} is not in this layer", link.display()))),
            }
            if src == target {
                return Ok(());
            }
            clear_target(&target, false).map_err(io_err)?;
            // link(2) does not follow a symlink source: the link shares the entry itself.
            std::fs::hard_link(&src, &target).map_err(io_err)?;
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (fmt, major, minor) = match kind {
                tar::EntryType::Char | tar::EntryType::Block => {
                    let h = entry.header();
                    let major = h.device_major().map_err(io_err)?.unwrap_or(0);
                    let minor = h.device_minor().map_err(io_err)?.unwrap_or(0);
                    (if kind == tar::EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK }, major, minor)
                }
                _ => (libc::S_IFIFO, 0, 0),
            };
            clear_target(&target, false).map_err(io_err)?;
            fsutil::mknod(&target, fmt, 0o600, major, minor).map_err(io_err)?;
            meta.apply_owner_xattrs(&target, false).map_err(io_err)?;
            meta.apply_mode_and_time(&target, false).map_err(io_err)?;
        }
        // PAX/GNU extension headers are consumed by the tar crate; anything
        // else (volume labels, ...) carries no file.
        _ => {}
    }
    Ok(())
}

fn copy_data<R: Read>(src: &mut R, dst: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// Builds layer tars in memory for the tests.
    pub(crate) struct LayerBuilder {
        b: tar::Builder<Vec<u8>>,
    }

    impl LayerBuilder {
        pub fn new() -> Self {
            LayerBuilder { b: tar::Builder::new(Vec::new()) }
        }
        fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(1_600_000_000);
            h.set_uid(0);
            h.set_gid(0);
            h
        }
        pub fn dir(mut self, path: &str, mode: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, mode, 0);
            self.b.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        pub fn file(self, path: &str, data: &str) -> Self {
            self.file_with(path, data, 0o644, 0, 0)
        }
        pub fn file_with(mut self, path: &str, data: &str, mode: u32, uid: u64, gid: u64) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
            h.set_uid(uid);
            h.set_gid(gid);
            self.b.append_data(&mut h, path, data.as_bytes()).unwrap();
            self
        }
        pub fn xattr(mut self, key: &str, value: &[u8]) -> Self {
            self.b.append_pax_extensions([(format!("SCHILY.xattr.{key}").as_str(), value)]).unwrap();
            self
        }
        pub fn symlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
            self.b.append_link(&mut h, path, target).unwrap();
            self
        }
        pub fn hardlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
            self.b.append_link(&mut h, path, target).unwrap();
            self
        }
        pub fn device(mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Self {
            let mut h = Self::header(kind, 0o666, 0);
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
            self.b.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        /// An entry whose raw name is written unchecked (the tar crate's
        /// builder refuses `..`, as it should).
        pub fn raw_name(mut self, name: &str, data: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            self.b.append(&h, data.as_bytes()).unwrap();
            self
        }
        pub fn build(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    fn unpack(tar: &[u8]) -> (tempfile::TempDir, Result<String>) {
        let d = tempfile::tempdir().unwrap();
        let r = unpack_tar(tar, d.path(), "sha256:test");
        (d, r)
    }

    #[test]
    fn diff_id_is_sha256_of_whole_tar() {
        let tar = LayerBuilder::new().file("a", "hello").build();
        let (_d, r) = unpack(&tar);
        assert_eq!(r.unwrap(), crate::images::sha256_digest(&tar));
    }

    #[test]
    fn files_dirs_modes_owners_times() {
        let tar = LayerBuilder::new()
            .dir("etc/", 0o755)
            .file_with("etc/passwd", "root:x:0:0\n", 0o644, 0, 0)
            .file_with("bin/su", "#!", 0o4755, 0, 0)
            .dir("tmp", 0o1777)
            .file_with("home/u/f", "x", 0o600, 1000, 1001)
            .dir("ro", 0o555)
            .file("ro/inside", "y")
            .build();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let m = |p: &str| std::fs::symlink_metadata(d.path().join(p)).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("etc/passwd")).unwrap(), "root:x:0:0\n");
        assert_eq!(m("bin/su").mode() & 0o7777, 0o4755);
        assert_eq!(m("tmp").mode() & 0o7777, 0o1777);
        assert_eq!(m("ro").mode() & 0o7777, 0o555);
        assert_eq!(m("etc/passwd").mtime(), 1_600_000_000);
        assert_eq!(m("etc").mtime(), 1_600_000_000);
        if is_root() {
            assert_eq!((m("home/u/f").uid(), m("home/u/f").gid()), (1000, 1001));
        }
    }

    #[test]
    fn whiteouts_and_opaque_dirs_become_overlay_markers() {
        if !is_root() {
            println!("SKIP: whiteouts need mknod and trusted xattrs (root)");
            return;
        }
        let tar = LayerBuilder::new().file("etc/.wh.gone", "").dir("var/cache", 0o755).file("var/cache/.wh..wh..opq", "").file("var/cache/new", "n").file(".wh..wh.plnk", "").build();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let wh = std::fs::symlink_metadata(d.path().join("etc/gone")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!d.path().join("etc/.wh.gone").exists());
        let opq = fsutil::lgetxattr(&d.path().join("var/cache"), "trusted.overlay.opaque").unwrap();
        assert_eq!(opq.as_deref(), Some(&b"y"[..]));
        assert!(d.path().join("var/cache/new").exists());
        assert!(!d.path().join(".wh..wh.plnk").exists());
    }

    #[test]
    fn hard_links_share_the_inode_and_must_stay_in_the_layer() {
        let tar = LayerBuilder::new().file("a/f", "data").hardlink("b/g", "a/f").hardlink("a/h", "./a/f").build();
        let (d, r) = unpack(&tar);
        r.unwrap();
        let i = |p: &str| std::fs::metadata(d.path().join(p)).unwrap().ino();
        assert_eq!(i("a/f"), i("b/g"));
        assert_eq!(i("a/f"), i("a/h"));
        assert_eq!(std::fs::metadata(d.path().join("a/f")).unwrap().nlink(), 3);

        let tar = LayerBuilder::new().hardlink("x", "missing/file").build();
        let err = unpack(&tar).1.unwrap_err().to_string();
        assert!(err.contains("not a file of this layer") || err.contains("not in this layer"), "{err}");
    }

    #[test]
    fn symlinks_devices_fifos_xattrs() {
        let mut lb = LayerBuilder::new().symlink("lib", "usr/lib").symlink("abs", "/etc/passwd").device("p", tar::EntryType::Fifo, 0, 0);
        if is_root() {
            lb = lb.device("dev/null", tar::EntryType::Char, 1, 3).device("dev/loop9", tar::EntryType::Block, 7, 9);
        }
        let tar = lb.xattr("user.test", b"v1").file("x", "x").xattr("security.capability", &[1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).file("cap", "c").build();
        let (d, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(std::fs::read_link(d.path().join("lib")).unwrap(), Path::new("usr/lib"));
        assert_eq!(std::fs::read_link(d.path().join("abs")).unwrap(), Path::new("/etc/passwd"));
        assert!(std::fs::symlink_metadata(d.path().join("p")).unwrap().file_type().is_fifo());
        if is_root() {
            let n = std::fs::symlink_metadata(d.path().join("dev/null")).unwrap();
            assert!(n.file_type().is_char_device());
            assert_eq!(n.rdev(), libc::makedev(1, 3));
            assert!(std::fs::symlink_metadata(d.path().join("dev/loop9")).unwrap().file_type().is_block_device());
            assert!(fsutil::lgetxattr(&d.path().join("cap"), "security.capability").unwrap().is_some());
        }
        assert_eq!(fsutil::lgetxattr(&d.path().join("x"), "user.test").unwrap().as_deref(), Some(&b"v1"[..]));
    }

    #[test]
    fn escapes_are_refused() {
        for (name, why) in [("../evil", "'..'"), ("a/../../evil", "'..'"), ("/etc/evil", "absolute")] {
            let tar = LayerBuilder::new().raw_name(name, "x").build();
            let err = unpack(&tar).1.unwrap_err().to_string();
            assert!(err.contains(why), "{name}: {err}");
        }
        // Through a symlink of the layer: refused, nothing written outside.
        let outside = tempfile::tempdir().unwrap();
        let tar = LayerBuilder::new().symlink("link", outside.path().to_str().unwrap()).file("link/evil", "x").build();
        let err = unpack(&tar).1.unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
        assert!(!outside.path().join("evil").exists());
        // A hard link to something outside the layer.
        let tar = LayerBuilder::new().hardlink("h", "../../etc/passwd").build();
        assert!(unpack(&tar).1.unwrap_err().to_string().contains("'..'"));
        // "/" alone is the layer root (umoci writes it), not an escape.
        let tar = LayerBuilder::new().raw_name("/", "").build();
        unpack(&tar).1.unwrap();
    }

    #[test]
    fn later_entry_of_the_same_name_wins() {
        let tar = LayerBuilder::new().file("f", "one").file("f", "two").dir("d", 0o755).file("d/x", "x").dir("d", 0o700).build();
        let (d, r) = unpack(&tar);
        r.unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("f")).unwrap(), "two");
        assert!(d.path().join("d/x").exists());
        assert_eq!(std::fs::metadata(d.path().join("d")).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn a_tar_without_final_padding_and_end_blocks_unpacks() {
        // As umoci writes them: the stream stops right after the last file's data.
        let full = LayerBuilder::new().file("a", "one").file("b", "xy").build();
        let cut = &full[..512 * 3 + 2];
        let (d, r) = unpack(cut);
        assert_eq!(r.unwrap(), crate::images::sha256_digest(cut));
        assert_eq!(std::fs::read_to_string(d.path().join("b")).unwrap(), "xy");
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("7"), Some((7, 0)));
    }
}
