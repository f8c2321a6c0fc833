//! The container's filesystem: propagation, mounts, /dev, pivot_root (or MS_MOVE+chroot),
//! masked and read-only paths, a read-only root.

pub mod devices;
pub mod idmap;
pub mod mounts;
pub mod paths;

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

use crate::error::SysContext;
use crate::{Error, Result};

pub fn propagation_flag(p: &str) -> Option<MsFlags> {
    Some(match p {
        "shared" | "rshared" => MsFlags::MS_SHARED,
        "slave" | "rslave" => MsFlags::MS_SLAVE,
        "private" | "rprivate" => MsFlags::MS_PRIVATE,
        "unbindable" | "runbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    })
}

pub struct Plan<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroupns: bool,
    pub userns: bool,
    pub idmapped: &'a [Option<OwnedFd>],
}

/// Before pivot_root, inside the container's mount namespace: make the host's mounts
/// stop propagating in, make the rootfs a mount point, do every mount, create /dev.
pub fn prepare(p: &Plan) -> Result<()> {
    let linux = p.spec.linux().as_ref();
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        // An unbindable root could not be bound onto itself: applied at the end instead.
        .filter(|f| *f != MsFlags::MS_UNBINDABLE)
        .unwrap_or(MsFlags::MS_SLAVE);
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | prop, None::<&str>).ctx("set propagation of", "/")?;
    make_parent_private(p.rootfs)?;
    mount(Some(p.rootfs), p.rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .ctx("bind rootfs onto itself", p.rootfs.display())?;

    let root = paths::Root::open(p.rootfs)?;
    let ctx = mounts::Ctx { root: &root, bundle: p.bundle, cgroupns: p.cgroupns, userns: p.userns, idmapped: p.idmapped };
    let mut has_devpts = false;
    for (i, m) in p.spec.mounts().as_deref().unwrap_or_default().iter().enumerate() {
        mounts::mount_entry(&ctx, i, m)?;
        if m.destination() == Path::new("/dev/pts") {
            has_devpts = true;
        }
    }
    // Default devices, then the config's own.
    for d in devices::defaults() {
        devices::create(&root, &d, p.userns)?;
    }
    for d in linux.and_then(|l| l.devices().as_deref()).unwrap_or_default() {
        devices::create(&root, &devices::from_spec(d), p.userns)?;
    }
    devices::symlinks(&root)?;
    if has_devpts {
        devices::ptmx(&root)?;
    }
    Ok(())
}

/// pivot_root needs the parent of the new root's mount to be non-shared: that is the
/// mount the rootfs lives on now (before it is bound onto itself).
fn make_parent_private(rootfs: &Path) -> Result<()> {
    let best = crate::mountinfo::read_self()
        .into_iter()
        .filter(|m| rootfs.starts_with(&m.mountpoint))
        .max_by_key(|m| m.mountpoint.as_os_str().len());
    if let Some(m) = best {
        if m.optional.iter().any(|o| o.starts_with("shared:")) {
            mount(None::<&str>, &m.mountpoint, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
                .ctx("make private", m.mountpoint.display())?;
        }
    }
    Ok(())
}

/// Switch root to the rootfs with pivot_root; the old root is detached and gone.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = nix::fcntl::open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).ctx("open", "/")?;
    let new = nix::fcntl::open(rootfs, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx("open", rootfs.display())?;
    nix::unistd::fchdir(&new).ctx("chdir", rootfs.display())?;
    nix::unistd::pivot_root(".", ".").ctx("pivot_root", rootfs.display())?;
    // The old root is now stacked under "."; detach it without propagating to the host.
    nix::unistd::fchdir(&old).ctx("chdir", "old root")?;
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).ctx("make old root slave", "")?;
    umount2(".", MntFlags::MNT_DETACH).ctx("unmount old root", "")?;
    nix::unistd::chdir("/").ctx("chdir", "/")?;
    Ok(())
}

/// `--no-pivot`: move the rootfs over / and chroot into it (for ramdisk roots).
pub fn move_root(rootfs: &Path) -> Result<()> {
    // Without pivot_root the host's mounts stay in this mount namespace, under the new
    // root: detach every one that is neither inside the rootfs nor on the way to it (as
    // runc does), so none can be reached by climbing out of the chroot. Deepest first.
    let mut others: Vec<std::path::PathBuf> = crate::mountinfo::read_self()
        .into_iter()
        .map(|m| m.mountpoint)
        .filter(|mp| !mp.starts_with(rootfs) && !rootfs.starts_with(mp))
        .collect();
    others.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    others.dedup();
    for mp in others {
        match umount2(&mp, MntFlags::MNT_DETACH) {
            // Already gone with a parent detached before it.
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys("detach host mount", mp.display(), e)),
        }
    }
    nix::unistd::chdir(rootfs).ctx("chdir", rootfs.display())?;
    mount(Some(rootfs), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).ctx("move mount", format_args!("{} to /", rootfs.display()))?;
    nix::unistd::chroot(".").ctx("chroot", rootfs.display())?;
    nix::unistd::chdir("/").ctx("chdir", "/")?;
    Ok(())
}

/// Bind the pty slave onto /dev/console.
pub fn mount_console(slave: &str) -> Result<()> {
    let root = paths::Root::open(Path::new("/"))?;
    let target = root.create_file(Path::new("/dev/console"), 0o600)?;
    mount(Some(slave), &paths::fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .ctx("bind", format_args!("{slave} on /dev/console"))
}

/// After pivot: masked paths are hidden (a dir under an empty read-only tmpfs, a file
/// under /dev/null); a path that does not exist needs no hiding.
pub fn mask(paths: &[String]) -> Result<()> {
    for p in paths {
        match mount(Some("/dev/null"), p.as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) | Err(Errno::EISDIR) if Path::new(p).is_dir() => {
                mount(Some("tmpfs"), p.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>).ctx("mask", p)?;
            }
            Err(e) => return Err(Error::sys("mask", p, e)),
        }
    }
    Ok(())
}

/// After pivot: read-only paths become read-only bind mounts of themselves.
pub fn readonly(paths: &[String]) -> Result<()> {
    for p in paths {
        match mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(Error::sys("bind", p, e)),
        }
        remount_ro(Path::new(p))?;
    }
    Ok(())
}

/// Remount a mount read-only, keeping the flags the kernel locked on it.
pub fn remount_ro(p: &Path) -> Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    match mount(None::<&str>, p, None::<&str>, flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            mount(None::<&str>, p, None::<&str>, flags | mounts::locked_flags(p), None::<&str>).ctx("remount read-only", p.display())
        }
        Err(e) => Err(Error::sys("remount read-only", p.display(), e)),
    }
}

/// The final propagation of the new root, when the config names one.
pub fn set_root_propagation(spec: &Spec) -> Result<()> {
    if let Some(f) = spec.linux().as_ref().and_then(|l| l.rootfs_propagation().as_deref()).and_then(propagation_flag) {
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | f, None::<&str>).ctx("set propagation of", "/")?;
    }
    Ok(())
}
