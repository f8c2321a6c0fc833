//! The config's `mounts`: option parsing and one function per kind of mount.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::paths::{fd_path, Root};
use crate::error::SysContext;
use crate::{Error, Result};

/// What a mount's `options` say, split into kernel flags, propagation and fs data.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
    /// `idmap`/`ridmap`: an id-mapped bind mount (mappings from the mount's uid/gidMappings).
    pub idmap: bool,
    /// Recursive attributes (`rro`, `rnosuid`, ...): MOUNT_ATTR_* to set and clear with
    /// mount_setattr(AT_RECURSIVE) on the whole tree.
    pub rec_set: u64,
    pub rec_clr: u64,
}

/// MS_NOSYMFOLLOW (Linux 5.10); not in nix's MsFlags.
pub const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

/// Flags that change the filesystem (superblock), not the mount: a bind mount cannot
/// apply them without changing the source for everyone.
const SUPERBLOCK_FLAGS: MsFlags = MsFlags::MS_SYNCHRONOUS
    .union(MsFlags::MS_DIRSYNC)
    .union(MsFlags::MS_MANDLOCK)
    .union(MsFlags::MS_LAZYTIME)
    .union(MsFlags::MS_SILENT)
    .union(MsFlags::MS_REMOUNT);

/// `r*` options: (set, clear) of MOUNT_ATTR_* bits.
fn recursive_attr(o: &str) -> Option<(u64, u64)> {
    use crate::syscalls::*;
    Some(match o {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR_ATIME_MASK),
        "rnoatime" => (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

const ATTR_FLAGS: MsFlags = MS_NOSYMFOLLOW
    .union(MsFlags::MS_RDONLY)
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

pub fn parse(opts: &[String]) -> Options {
    let mut o = Options { flags: MsFlags::empty(), propagation: vec![], data: vec![], bind: false, recursive: false, idmap: false, rec_set: 0, rec_clr: 0 };
    for opt in opts {
        let (set, clear): (MsFlags, MsFlags) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "nosymfollow" => (MS_NOSYMFOLLOW, MsFlags::empty()),
            "symfollow" => (MsFlags::empty(), MS_NOSYMFOLLOW),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "idmap" | "ridmap" => {
                o.idmap = true;
                if opt == "ridmap" {
                    o.recursive = true;
                }
                continue;
            }
            p => {
                if let Some((set, clr)) = recursive_attr(p) {
                    o.rec_set = (o.rec_set & !clr) | set;
                    o.rec_clr = (o.rec_clr & !set) | clr;
                } else if let Some(f) = propagation(p) {
                    o.propagation.push(f);
                } else {
                    o.data.push(p.to_string());
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o
}

pub fn propagation(p: &str) -> Option<MsFlags> {
    Some(match p {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

pub fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || parse(m.options().as_deref().unwrap_or_default()).bind
}

pub fn has_idmap(m: &Mount) -> bool {
    m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty()) || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
}

/// Static checks, before anything is created.
pub fn check(m: &Mount) -> Result<()> {
    let dest = m.destination();
    if dest.as_os_str().is_empty() {
        return Err(Error::Config("mounts: empty destination".into()));
    }
    let opts = parse(m.options().as_deref().unwrap_or_default());
    if has_idmap(m) || opts.idmap {
        if !is_bind(m) {
            return Err(Error::Config(format!("mount {}: uidMappings/gidMappings are only supported on bind mounts", dest.display())));
        }
        let u = m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty());
        let g = m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty());
        if !(u && g) {
            return Err(Error::Config(format!("mount {}: an idmapped mount needs both uidMappings and gidMappings", dest.display())));
        }
    }
    if m.typ().is_none() && !opts.bind {
        return Err(Error::Config(format!("mount {}: no type and not a bind mount", dest.display())));
    }
    if is_bind(m) {
        // Nothing the config asks of a bind mount may go unapplied.
        if !opts.data.is_empty() {
            return Err(Error::Config(format!("mount {}: option(s) {} do not apply to a bind mount", dest.display(), opts.data.join(","))));
        }
        if opts.flags.intersects(SUPERBLOCK_FLAGS) {
            return Err(Error::Config(format!(
                "mount {}: sync/dirsync/mand/lazytime/silent/remount change the source filesystem, not a bind mount",
                dest.display()
            )));
        }
    }
    Ok(())
}

/// Everything a mount needs besides the entry itself.
pub struct Ctx<'a> {
    pub root: &'a Root,
    pub bundle: &'a Path,
    /// The container has its own cgroup namespace (mount cgroupfs fresh, it shows its root).
    pub cgroupns: bool,
    /// The container has its own user namespace (bind instead of mount where needed).
    pub userns: bool,
    /// Detached, already id-mapped mount trees, by index into `mounts` (made by the parent).
    pub idmapped: &'a [Option<OwnedFd>],
}

pub fn mount_entry(ctx: &Ctx, index: usize, m: &Mount) -> Result<()> {
    let opts = parse(m.options().as_deref().unwrap_or_default());
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("bind");
    if opts.bind || typ == "bind" {
        return bind(ctx, index, m, &opts);
    }
    if typ == "cgroup" || typ == "cgroup2" {
        return cgroup(ctx, dest, &opts);
    }
    let target = ctx.root.mkdir_all(dest, 0o755)?;
    check_not_proc(ctx, dest, &target, false)?;
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let data = opts.data.join(",");
    let res = mount(Some(source.as_path()), &fd_path(&target), Some(typ), opts.flags, Some(data.as_str()).filter(|d| !d.is_empty()));
    match res {
        Ok(()) => {}
        // Without its own network namespace, a user namespace may not mount sysfs: bind the host's.
        Err(Errno::EPERM) if typ == "sysfs" && ctx.userns => {
            mount(Some("/sys"), &fd_path(&target), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .ctx("bind", format_args!("/sys on {}", ctx.root.display(dest)))?;
            if opts.flags.intersects(ATTR_FLAGS) {
                remount(ctx, dest, opts.flags)?;
            }
        }
        Err(e) => return Err(Error::sys("mount", format_args!("{typ} on {}", ctx.root.display(dest)), e)),
    }
    set_recursive_attrs(ctx, dest, &opts)?;
    set_propagation(ctx, dest, &opts.propagation)
}

/// A mount may not land inside procfs (a symlink in the image pointing into /proc would
/// otherwise cover e.g. /proc/self/attr and defeat the LSM label). runc allows a few
/// files lxcfs-style tools bind over; so does berth.
fn check_not_proc(ctx: &Ctx, dest: &Path, target: &OwnedFd, bind: bool) -> Result<()> {
    const ALLOWED: &[&str] = &["/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid"];
    if crate::syscalls::fs_type(target).ctx("statfs", ctx.root.display(dest))? != crate::syscalls::PROC_SUPER_MAGIC {
        return Ok(());
    }
    if bind && ALLOWED.iter().any(|a| Path::new(a) == dest) {
        return Ok(());
    }
    Err(Error::Config(format!("mount {}: the destination resolves into /proc inside the container; refusing to mount there", dest.display())))
}

fn set_recursive_attrs(ctx: &Ctx, dest: &Path, opts: &Options) -> Result<()> {
    if opts.rec_set == 0 && opts.rec_clr == 0 {
        return Ok(());
    }
    let fd = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
    crate::syscalls::mount_setattr(&fd, opts.rec_set, opts.rec_clr, 0, true).ctx("set recursive mount attributes of", ctx.root.display(dest))
}

fn bind(ctx: &Ctx, index: usize, m: &Mount, opts: &Options) -> Result<()> {
    let dest = m.destination();
    let src = m.source().clone().ok_or_else(|| Error::Config(format!("bind mount {}: no source", dest.display())))?;
    let src = if src.is_absolute() { src } else { ctx.bundle.join(src) };
    let meta = std::fs::metadata(&src).map_err(|e| Error::io(format!("bind mount source {}", src.display()), e))?;
    let target = if meta.is_dir() { ctx.root.mkdir_all(dest, 0o755)? } else { ctx.root.create_file(dest, 0o644)? };
    check_not_proc(ctx, dest, &target, true)?;
    if let Some(Some(tree)) = ctx.idmapped.get(index) {
        crate::syscalls::move_mount_fd(tree, &target)
            .ctx("attach idmapped mount", format_args!("{} on {}", src.display(), ctx.root.display(dest)))?;
    } else {
        let mut f = MsFlags::MS_BIND;
        if opts.recursive {
            f |= MsFlags::MS_REC;
        }
        mount(Some(src.as_path()), &fd_path(&target), None::<&str>, f, None::<&str>)
            .ctx("bind", format_args!("{} on {}", src.display(), ctx.root.display(dest)))?;
    }
    if opts.flags.intersects(ATTR_FLAGS) {
        remount(ctx, dest, opts.flags)?;
    }
    set_recursive_attrs(ctx, dest, opts)?;
    set_propagation(ctx, dest, &opts.propagation)
}

/// Change per-mount flags of the mount now at `dest`. Flags the kernel locked (a user
/// namespace may not clear nosuid/nodev/noexec/atime of a mount it did not make) are kept.
fn remount(ctx: &Ctx, dest: &Path, flags: MsFlags) -> Result<()> {
    let fd = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
    let p = fd_path(&fd);
    let want = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | (flags & ATTR_FLAGS);
    match mount(None::<&str>, &p, None::<&str>, want, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => {
            let locked = locked_flags(&p);
            mount(None::<&str>, &p, None::<&str>, want | locked, None::<&str>).ctx("remount", ctx.root.display(dest))
        }
        Err(e) => Err(Error::sys("remount", ctx.root.display(dest), e)),
    }
}

/// The nosuid/nodev/noexec/atime flags a mount currently has.
pub fn locked_flags(p: &Path) -> MsFlags {
    use nix::sys::statvfs::FsFlags;
    let Ok(st) = nix::sys::statvfs::statvfs(p) else { return MsFlags::empty() };
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (s, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(s) {
            m |= ms;
        }
    }
    m
}

fn set_propagation(ctx: &Ctx, dest: &Path, props: &[MsFlags]) -> Result<()> {
    for p in props {
        let fd = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
        mount(None::<&str>, &fd_path(&fd), None::<&str>, *p, None::<&str>).ctx("set propagation of", ctx.root.display(dest))?;
    }
    Ok(())
}

/// `/sys/fs/cgroup`: cgroup2 on a pure v2 host; on v1/hybrid a tmpfs holding one mount per
/// hierarchy (named as on the host). With a cgroup namespace each is mounted fresh (the
/// kernel shows the namespace's root); without, the container's own cgroup is bind-mounted.
fn cgroup(ctx: &Ctx, dest: &Path, opts: &Options) -> Result<()> {
    let hs = crate::cgroups::hierarchies();
    let own = own_cgroups();
    let target = ctx.root.mkdir_all(dest, 0o755)?;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let ro = opts.flags & MsFlags::MS_RDONLY;
    if crate::cgroups::is_pure_v2(&hs) {
        return cgroup_one(ctx, &target, dest, &hs[0], &own, base | ro);
    }
    mount(Some("tmpfs"), &fd_path(&target), Some("tmpfs"), base, Some("mode=755"))
        .ctx("mount", format_args!("tmpfs on {}", ctx.root.display(dest)))?;
    for h in &hs {
        let name = h.mountpoint.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(h.controllers.join(",")));
        let sub = dest.join(&name);
        let t = ctx.root.mkdir_all(&sub, 0o755)?;
        cgroup_one(ctx, &t, &sub, h, &own, base | ro)?;
        // cpu,cpuacct is also reachable as cpu and cpuacct.
        if h.controllers.len() > 1 {
            let dir = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
            let dirfd = nix::fcntl::open(&fd_path(&dir), nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                .ctx("open", ctx.root.display(dest))?;
            for c in &h.controllers {
                if PathBuf::from(c) != name && !c.contains('=') {
                    match nix::unistd::symlinkat(&name, &dirfd, c.as_str()) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Error::sys("symlink", ctx.root.display(&dest.join(c)), e)),
                    }
                }
            }
        }
    }
    if !ro.is_empty() {
        let fd = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
        mount(None::<&str>, &fd_path(&fd), None::<&str>, MsFlags::MS_REMOUNT | base | ro, Some("mode=755"))
            .ctx("remount read-only", ctx.root.display(dest))?;
    }
    Ok(())
}

fn cgroup_one(ctx: &Ctx, target: &OwnedFd, dest: &Path, h: &crate::cgroups::Hierarchy, own: &[(String, String)], flags: MsFlags) -> Result<()> {
    let key = if h.v2 { String::new() } else { h.controllers.join(",") };
    let mine = own.iter().find(|(k, _)| *k == key).map(|(_, p)| p.clone()).unwrap_or_else(|| "/".into());
    if ctx.cgroupns {
        let (fstype, data) = if h.v2 { ("cgroup2", String::new()) } else { ("cgroup", h.controllers.join(",")) };
        let data = if h.controllers.iter().any(|c| c.starts_with("name=")) { format!("none,{data}") } else { data };
        match mount(Some("cgroup"), &fd_path(target), Some(fstype), flags, Some(data.as_str()).filter(|d| !d.is_empty())) {
            Ok(()) => return Ok(()),
            // Some hierarchies can't be mounted again from inside a user namespace: bind.
            Err(Errno::EPERM) | Err(Errno::EBUSY) if ctx.userns => {}
            Err(e) => return Err(Error::sys("mount", format_args!("{fstype} ({data}) on {}", ctx.root.display(dest)), e)),
        }
    }
    let src = h.mountpoint.join(mine.trim_start_matches('/'));
    mount(Some(src.as_path()), &fd_path(target), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .ctx("bind", format_args!("{} on {}", src.display(), ctx.root.display(dest)))?;
    let fd = ctx.root.resolve(dest).ctx("open", ctx.root.display(dest))?;
    mount(None::<&str>, &fd_path(&fd), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags, None::<&str>)
        .ctx("remount", ctx.root.display(dest))
}

/// (controllers, path) pairs of /proc/self/cgroup; "" is the v2 entry.
fn own_cgroups() -> Vec<(String, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse(&s(&["nosuid", "noexec", "ro", "rslave", "mode=755", "size=65536k", "rbind"]));
        assert!(o.flags.contains(MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY));
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data, s(&["mode=755", "size=65536k"]));
        assert!(o.bind && o.recursive);
        let o = parse(&s(&["ro", "rw"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }
}
