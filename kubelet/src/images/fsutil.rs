//! Crash-safe file writes and the few raw syscalls the store needs (the only
//! `unsafe` of the images module lives here).

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Error, Result};

/// A name unique within this process for temporary files: pid plus a counter.
pub(crate) fn unique_suffix() -> String {
    // Not global state in the sense of the rules: a monotonic counter only
    // makes names unique, nothing reads it back.
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// fsync a directory so a rename or create inside it survives a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", dir, e))
}

/// Writes `bytes` to `path` crash-safely: temp file in the same directory,
/// fsync, rename over `path`, fsync the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("atomic write target has a parent");
    let name = path.file_name().expect("atomic write target has a name");
    let tmp = dir.join(format!(".tmp-{}-{}", name.to_string_lossy(), unique_suffix()));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into", path, e))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res?;
    fsync_dir(dir)
}

pub(crate) fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mknod(2): device nodes, fifos and overlay whiteouts (char 0:0).
pub(crate) fn mknod(p: &Path, kind: libc::mode_t, perm: u32, major: u32, minor: u32) -> io::Result<()> {
    let c = cpath(p)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    check(unsafe { libc::mknod(c.as_ptr(), kind | (perm as libc::mode_t & 0o7777), dev) })
}

/// lchown(2): never follows a final symlink.
pub(crate) fn lchown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = cpath(p)?;
    // SAFETY: valid NUL-terminated path; plain integer arguments.
    check(unsafe { libc::lchown(c.as_ptr(), uid, gid) })
}

/// lsetxattr(2): sets an xattr on the entry itself, not a symlink's target.
pub(crate) fn lsetxattr(p: &Path, name: &[u8], value: &[u8]) -> io::Result<()> {
    let c = cpath(p)?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // value pointer/length pair describes a live slice.
    check(unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) })
}

/// lgetxattr(2) (tests and checks): None when the attribute is absent.
pub fn lgetxattr(p: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let c = cpath(p)?;
    let n = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: strings are NUL-terminated; `buf` is a live writable buffer of the given length.
    let rc = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) { Ok(None) } else { Err(e) };
    }
    buf.truncate(rc as usize);
    Ok(Some(buf))
}

/// utimensat(2) with AT_SYMLINK_NOFOLLOW: sets atime=mtime on the entry itself.
pub(crate) fn lutimes(p: &Path, secs: i64, nsecs: i64) -> io::Result<()> {
    let c = cpath(p)?;
    let ts = libc::timespec { tv_sec: secs as libc::time_t, tv_nsec: nsecs as _ };
    let times = [ts, ts];
    // SAFETY: valid path, `times` is an array of two timespecs as required.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
}

/// syncfs(2) on the filesystem holding `fd`: one flush for a whole unpacked
/// layer instead of an fsync per file.
pub(crate) fn syncfs(f: &File) -> io::Result<()> {
    // SAFETY: `f` is an open file descriptor for the duration of the call.
    check(unsafe { libc::syncfs(f.as_raw_fd()) })
}

/// statvfs-free usage walk helper: (st_blocks*512, inode, dev) via lstat.
pub(crate) fn lstat_usage(p: &Path) -> io::Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p)?;
    Ok((m.blocks() * 512, m.ino(), m.dev()))
}

/// mount(2) with a data string.
pub(crate) fn mount(source: &str, target: &Path, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let s = CString::new(source).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let t = cpath(target)?;
    let f = CString::new(fstype).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let d = CString::new(data).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: all pointers are NUL-terminated strings alive across the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })
}

/// umount2(2).
pub(crate) fn umount(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cpath(target)?;
    // SAFETY: valid NUL-terminated path.
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
}

/// The new mount API for overlay: fsopen("overlay"), one fsconfig call per
/// option (so `lowerdir+` can pass each layer separately, free of the
/// one-page limit of mount(2)'s data), fsmount, move_mount onto `target`.
pub(crate) fn overlay_fsmount(target: &Path, opts: &[(&str, &str)]) -> io::Result<()> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
    let fstype = CString::new("overlay").unwrap();
    // SAFETY: fsopen takes a NUL-terminated name and flags; returns an fd or -1.
    let fsfd = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) } as libc::c_int;
    if fsfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsfd is a fresh descriptor we own; OwnedFd closes it once.
    let fsfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fsfd) };
    for (k, v) in opts {
        let k = CString::new(*k).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let v = CString::new(*v).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: fsfd is open; key and value are NUL-terminated strings alive across the call.
        let rc = unsafe { libc::syscall(libc::SYS_fsconfig, fsfd.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: fsfd is open; CMD_CREATE takes null key/value.
    let rc = unsafe {
        libc::syscall(libc::SYS_fsconfig, fsfd.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsfd is a configured fs context; returns a mount fd or -1.
    let mfd = unsafe { libc::syscall(libc::SYS_fsmount, fsfd.as_raw_fd(), FSMOUNT_CLOEXEC, 0) } as libc::c_int;
    if mfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: mfd is a fresh descriptor we own.
    let mfd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(mfd) };
    let t = cpath(target)?;
    let empty = CString::new("").unwrap();
    // SAFETY: mfd is a detached mount; empty path + F_EMPTY_PATH moves it to the NUL-terminated target.
    let rc = unsafe {
        libc::syscall(libc::SYS_move_mount, mfd.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, t.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Percentage of the filesystem holding `p` in use (statvfs(2)).
pub(crate) fn used_percent(p: &Path) -> io::Result<f64> {
    let c = cpath(p)?;
    // SAFETY: statvfs is a plain C struct of integers; all-zero is a valid value.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path; `s` is a writable statvfs.
    check(unsafe { libc::statvfs(c.as_ptr(), &mut s) })?;
    let total = s.f_blocks as f64;
    if total == 0.0 {
        return Ok(0.0);
    }
    Ok(100.0 * (total - s.f_bavail as f64) / total)
}

/// mount(2) with relative paths in `data`, resolved against `dir`: call from
/// a thread of its own; it unshares its filesystem context (cwd) first, so
/// the process's working directory never changes.
pub(crate) fn mount_from_dir(dir: &Path, source: &str, target: &Path, fstype: &str, data: &str) -> io::Result<()> {
    // SAFETY: unshare(CLONE_FS) only detaches this thread's cwd/umask/root from the others.
    check(unsafe { libc::unshare(libc::CLONE_FS) })?;
    std::env::set_current_dir(dir)?;
    mount(source, target, fstype, 0, data)
}
