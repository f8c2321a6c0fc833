//! The on-disk allocation store, host-local's layout: in `<dataDir>/<network>/`, one file
//! per allocated address, named by the address and holding `<containerid>\r\n<ifname>`;
//! `last_reserved_ip.<range set index>` holding the last address handed out there; and
//! `lock`, flock'ed around every operation (so concurrent plugins are serialised).
//!
//! Crash safety: a reservation is written to a temp file (`.tmp.<ip>.<pid>`, O_CREAT|O_EXCL)
//! and then hard-linked to its final name. link(2) is atomic and fails when the name
//! exists, so the address's file appears complete or not at all: a plugin killed at any
//! point leaves either no reservation or a whole one, plus at most a stray temp file,
//! which the next operation (holding the lock, so no writer can be active) removes. A
//! reservation that is whole but whose ADD never answered is a normal leftover: the
//! runtime's DEL or GC releases it.
//!
//! No fsync, deliberately (two fsyncs cost ~11 ms of a ~15 ms ADD on this disk; host-local does
//! none either): a killed process cannot lose written data, the kernel keeps it. Only a
//! power loss or kernel crash could, and that kills every pod on the node too, so an
//! allocation has nothing left to protect; the worst it leaves is a lost reservation (of a
//! dead pod) or an empty file, which belongs to no valid attachment and goes at the next GC.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::spec::Error;

const LOCK: &str = "lock";
const LAST: &str = "last_reserved_ip.";
const TMP: &str = ".tmp.";

/// One reservation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: IpAddr,
    pub container_id: String,
    pub ifname: String,
}

/// The store of one network, locked for as long as it lives.
pub struct Store {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Store {
    /// Creates the directory when needed and takes the lock.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("ipam data dir {}", dir.display()), e))?;
        Self::lock(dir)
    }

    /// Takes the lock when the directory exists; None when it does not (nothing allocated).
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, Error> {
        match std::fs::metadata(dir) {
            Ok(_) => Self::lock(dir).map(Some),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("ipam data dir {}", dir.display()), e)),
        }
    }

    fn lock(dir: &Path) -> Result<Store, Error> {
        let p = dir.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(|e| Error::io(format!("ipam lock {}", p.display()), e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::io(format!("flock {}", p.display()), e))?;
        Ok(Store { dir: dir.to_path_buf(), _lock: lock })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every reservation, after removing temp files left by killed plugins.
    pub fn allocations(&self) -> Result<Vec<Allocation>, Error> {
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io(format!("ipam data dir {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(format!("ipam data dir {}", self.dir.display()), e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP) {
                let _ = std::fs::remove_file(ent.path());
                continue;
            }
            let Ok(ip) = name.parse::<IpAddr>() else { continue };
            let text = match std::fs::read_to_string(ent.path()) {
                Ok(t) => t,
                // Released meanwhile cannot happen under the lock, but a reader must not fail on it.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("ipam reservation {}", ent.path().display()), e)),
            };
            let mut lines = text.lines().map(|l| l.trim());
            let container_id = lines.next().unwrap_or("").to_string();
            let ifname = lines.next().unwrap_or("").to_string();
            out.push(Allocation { ip, container_id, ifname });
        }
        out.sort_by_key(|a| a.ip);
        Ok(out)
    }

    /// Reserves `ip` for (container id, ifname); false when it is taken.
    pub fn reserve(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool, Error> {
        let fin = self.dir.join(ip.to_string());
        let tmp = self.dir.join(format!("{TMP}{ip}.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o644).custom_flags(libc::O_CLOEXEC).open(&tmp)?;
            f.write_all(format!("{container_id}\r\n{ifname}").as_bytes())
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(format!("ipam reservation {}", tmp.display()), e));
        }
        let linked = std::fs::hard_link(&tmp, &fin);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io(format!("ipam reservation {}", fin.display()), e)),
        }
    }

    /// Removes the reservation of `ip`; nothing to do when it is gone.
    pub fn release(&self, ip: IpAddr) -> Result<(), Error> {
        let p = self.dir.join(ip.to_string());
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("ipam reservation {}", p.display()), e)),
        }
    }

    /// The last address handed out from range set `set`; None when unknown or unreadable
    /// (it only steers round robin).
    pub fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        std::fs::read_to_string(self.dir.join(format!("{LAST}{set}"))).ok()?.trim().parse().ok()
    }

    /// Records the last address of range set `set` (temp + rename: never a torn file).
    pub fn set_last_reserved(&self, set: usize, ip: IpAddr) -> Result<(), Error> {
        let fin = self.dir.join(format!("{LAST}{set}"));
        let tmp = self.dir.join(format!("{TMP}{LAST}{set}.{}", std::process::id()));
        std::fs::write(&tmp, ip.to_string())
            .and_then(|_| std::fs::rename(&tmp, &fin))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::io(format!("ipam {}", fin.display()), e)
            })
    }

    /// Addresses currently reserved.
    pub fn taken(allocs: &[Allocation]) -> HashSet<IpAddr> {
        allocs.iter().map(|a| a.ip).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-ipam-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reserve_release_and_layout() {
        let d = tmpdir("basic");
        let s = Store::open(&d).unwrap();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(s.reserve(ip, "c1", "eth0").unwrap());
        assert!(!s.reserve(ip, "c2", "eth0").unwrap());
        assert_eq!(std::fs::read_to_string(d.join("10.0.0.2")).unwrap(), "c1\r\neth0");
        s.set_last_reserved(0, ip).unwrap();
        assert_eq!(s.last_reserved(0), Some(ip));
        assert_eq!(s.last_reserved(1), None);
        // A stray temp file (killed plugin) disappears on the next scan.
        std::fs::write(d.join(".tmp.10.0.0.3.999999"), "c3").unwrap();
        let a = s.allocations().unwrap();
        assert_eq!(a, vec![Allocation { ip, container_id: "c1".into(), ifname: "eth0".into() }]);
        assert!(!d.join(".tmp.10.0.0.3.999999").exists());
        // host-local's files without \r read the same.
        std::fs::write(d.join("fd00::5"), "c9\neth1").unwrap();
        assert_eq!(s.allocations().unwrap()[1].ifname, "eth1");
        s.release(ip).unwrap();
        s.release(ip).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["fd00::5", "last_reserved_ip.0", "lock"]);
        drop(s);
        assert!(Store::open_existing(&d.join("nope")).unwrap().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
