//! Paths inside the container's rootfs, resolved by the kernel with `RESOLVE_IN_ROOT`:
//! a symlink (or `..`) in the rootfs can never lead a mount, device or file outside it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::SysContext;
use crate::syscalls::openat2;
use crate::Result;

const RESOLVE: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

pub struct Root {
    pub fd: OwnedFd,
    pub path: PathBuf,
}

/// `/proc/self/fd/N`: the path through which a mount lands exactly on the resolved object.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn relative(p: &Path) -> PathBuf {
    p.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx("open rootfs", path.display())?;
        Ok(Root { fd, path: path.to_path_buf() })
    }

    /// The host-side path of a container path (for messages).
    pub fn display(&self, p: &Path) -> String {
        self.path.join(relative(p)).display().to_string()
    }

    /// Open an existing path inside the root (O_PATH).
    pub fn resolve(&self, p: &Path) -> nix::Result<OwnedFd> {
        let rel = relative(p);
        let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
        openat2(self.fd.as_raw_fd(), &rel, libc::O_PATH | libc::O_CLOEXEC, 0, RESOLVE)
    }

    /// mkdir -p inside the root; returns the directory (O_PATH).
    pub fn mkdir_all(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        let rel = relative(p);
        let mut cur = PathBuf::new();
        let mut dir = self.resolve(Path::new(".")).ctx("open", self.path.display())?;
        for c in rel.components() {
            cur.push(c);
            match self.resolve(&cur) {
                Ok(fd) => dir = fd,
                Err(Errno::ENOENT) => {
                    match nix::sys::stat::mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(mode)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(crate::Error::sys("mkdir", self.display(&cur), e)),
                    }
                    dir = self.resolve(&cur).ctx("open", self.display(&cur))?;
                }
                Err(e) => return Err(crate::Error::sys("open", self.display(&cur), e)),
            }
        }
        Ok(dir)
    }

    /// Create the parents and an empty file at `p` unless something exists there; O_PATH fd.
    pub fn create_file(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        if let Ok(fd) = self.resolve(p) {
            return Ok(fd);
        }
        let rel = relative(p);
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().ok_or_else(|| crate::Error::Config(format!("{}: not a file path", p.display())))?;
        let dir = self.mkdir_all(parent, 0o755)?;
        let f = openat2(dir.as_raw_fd(), Path::new(name), libc::O_CREAT | libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW, mode, RESOLVE)
            .ctx("create", self.display(p))?;
        drop(f);
        self.resolve(p).ctx("open", self.display(p))
    }
}
