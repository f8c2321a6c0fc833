//! AppArmor and SELinux labels: applied when the host has the LSM, a clear error when a
//! label is asked for and the LSM is absent (never silently run unconfined).

use std::fs;

use crate::{Error, Result};

pub fn apparmor_enabled() -> bool {
    fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y")
}

pub fn selinux_enabled() -> bool {
    fs::metadata("/sys/fs/selinux/enforce").is_ok()
}

/// Before launching: refuse labels the host cannot apply.
pub fn check(apparmor: Option<&str>, selinux: Option<&str>) -> Result<()> {
    if let Some(p) = apparmor.filter(|p| !p.is_empty()) {
        if !apparmor_enabled() {
            return Err(Error::Unsupported(format!(
                "process.apparmorProfile {p:?}: AppArmor is not enabled on this host"
            )));
        }
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        if !selinux_enabled() {
            return Err(Error::Unsupported(format!("process.selinuxLabel {l:?}: SELinux is not enabled on this host")));
        }
    }
    Ok(())
}

/// Just before exec: label the next program. Needs /proc mounted in the container.
pub fn apply(apparmor: Option<&str>, selinux: Option<&str>) -> Result<()> {
    if let Some(p) = apparmor.filter(|p| !p.is_empty()) {
        let attr = if fs::metadata("/proc/self/attr/apparmor/exec").is_ok() {
            "/proc/self/attr/apparmor/exec"
        } else {
            "/proc/self/attr/exec"
        };
        write_proc(attr, &format!("exec {p}")).map_err(|e| Error::io(format!("set apparmor profile {p:?} via {attr}"), e))?;
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        write_proc("/proc/self/attr/exec", l).map_err(|e| Error::io(format!("set selinux label {l:?}"), e))?;
    }
    Ok(())
}

/// Write a /proc file, making sure it really is procfs (not something mounted over it).
pub fn write_proc(path: &str, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    let st = nix::sys::statfs::fstatfs(&f).map_err(std::io::Error::from)?;
    if st.filesystem_type().0 as i64 != crate::syscalls::PROC_SUPER_MAGIC {
        return Err(std::io::Error::other(format!("{path} is not on procfs")));
    }
    f.write_all(value.as_bytes())
}
