//! Device nodes in the container's /dev: the spec's default set plus `linux.devices`.
//! In a user namespace mknod is not allowed, so the host's node is bind-mounted instead.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::paths::{fd_path, Root};
use crate::error::SysContext;
use crate::Result;

pub struct Device {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// null, zero, full, random, urandom, tty: what every container gets (runtime-spec).
pub fn defaults() -> Vec<Device> {
    [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
        .iter()
        .map(|(n, ma, mi)| Device { path: PathBuf::from("/dev").join(n), kind: SFlag::S_IFCHR, major: *ma, minor: *mi, mode: 0o666, uid: 0, gid: 0 })
        .collect()
}

pub fn from_spec(d: &LinuxDevice) -> Device {
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR, // c, u (unbuffered char), a is refused by serde for devices
    };
    Device {
        path: d.path().clone(),
        kind,
        major: d.major().max(0) as u64,
        minor: d.minor().max(0) as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

pub fn create(root: &Root, d: &Device, bind: bool) -> Result<()> {
    if bind && d.kind != SFlag::S_IFIFO {
        // Bind the host's node of the same path onto an empty file.
        let target = root.create_file(&d.path, 0o000)?;
        nix::mount::mount(Some(d.path.as_path()), &fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .ctx("bind device", format_args!("{} on {}", d.path.display(), root.display(&d.path)))?;
        return Ok(());
    }
    let parent = d.path.parent().unwrap_or(Path::new("/"));
    let name = d.path.file_name().ok_or_else(|| crate::Error::Config(format!("device path {}", d.path.display())))?;
    let dir = root.mkdir_all(parent, 0o755)?;
    let dev = nix::sys::stat::makedev(d.major, d.minor);
    // Through the directory's /proc/self/fd path: mknodat needs a real dirfd, not O_PATH.
    let dirp = fd_path(&dir);
    let dirfd = nix::fcntl::open(&dirp, nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", root.display(parent))?;
    match nix::sys::stat::mknodat(&dirfd, name, d.kind, Mode::from_bits_truncate(d.mode), dev) {
        Ok(()) => {}
        Err(Errno::EEXIST) => return Ok(()), // the rootfs already has it: keep it
        Err(e) => return Err(crate::Error::sys("mknod", root.display(&d.path), e)),
    }
    nix::sys::stat::fchmodat(&dirfd, name, Mode::from_bits_truncate(d.mode), nix::sys::stat::FchmodatFlags::FollowSymlink)
        .ctx("chmod", root.display(&d.path))?;
    nix::unistd::fchownat(
        &dirfd,
        name,
        Some(nix::unistd::Uid::from_raw(d.uid)),
        Some(nix::unistd::Gid::from_raw(d.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx("chown", root.display(&d.path))?;
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err} (and /dev/core when /proc/kcore exists).
pub fn symlinks(root: &Root) -> Result<()> {
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let dirfd = nix::fcntl::open(&fd_path(&dev), nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", root.display(Path::new("/dev")))?;
    let mut links = vec![("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, &dirfd, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(crate::Error::sys("symlink", root.display(&Path::new("/dev").join(name)), e)),
        }
    }
    Ok(())
}

/// /dev/ptmx → pts/ptmx, so the container's own devpts instance serves new ptys.
pub fn ptmx(root: &Root) -> Result<()> {
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let dirfd = nix::fcntl::open(&fd_path(&dev), nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", root.display(Path::new("/dev")))?;
    match nix::unistd::unlinkat(&dirfd, "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(crate::Error::sys("remove", root.display(Path::new("/dev/ptmx")), e)),
    }
    nix::unistd::symlinkat("pts/ptmx", &dirfd, "ptmx").ctx("symlink", root.display(Path::new("/dev/ptmx")))?;
    Ok(())
}
