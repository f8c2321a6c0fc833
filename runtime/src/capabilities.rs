//! The five capability sets: bounding dropped first (while still privileged), then
//! effective/permitted/inheritable in one capset, then ambient raised one by one.

use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::SysContext;
use crate::{Error, Result};

/// Capability sets as bit masks (bit n = capability number n).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
    /// Names the config asked for that this kernel does not know (left out, warned).
    pub unknown: Vec<String>,
}

pub fn number(c: &Capability) -> Result<u8> {
    let name = format!("CAP_{c}");
    caps::Capability::from_str(&name).map(|c| c.index()).map_err(|_| Error::Config(format!("unknown capability {name}")))
}

pub fn parse_name(name: &str) -> Result<Capability> {
    let n = name.to_ascii_uppercase();
    let n = n.strip_prefix("CAP_").unwrap_or(&n);
    Capability::from_str(n).map_err(|_| Error::Config(format!("unknown capability {name:?}")))
}

/// Highest capability number this kernel knows.
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn mask(set: &Option<Capabilities>, known: u64, unknown: &mut Vec<String>) -> Result<u64> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let bit = 1u64 << number(c)?;
        // Capabilities newer than the running kernel cannot be granted: left out, warned.
        if bit & known == 0 {
            let name = format!("CAP_{c}");
            if !unknown.contains(&name) {
                unknown.push(name);
            }
        }
        m |= bit;
    }
    Ok(m & known)
}

pub fn from_spec(c: Option<&LinuxCapabilities>) -> Result<CapSets> {
    let known = if last_cap() >= 63 { u64::MAX } else { (1u64 << (last_cap() + 1)) - 1 };
    let Some(c) = c else { return Ok(CapSets::default()) };
    let mut unknown = Vec::new();
    Ok(CapSets {
        bounding: mask(c.bounding(), known, &mut unknown)?,
        effective: mask(c.effective(), known, &mut unknown)?,
        inheritable: mask(c.inheritable(), known, &mut unknown)?,
        permitted: mask(c.permitted(), known, &mut unknown)?,
        ambient: mask(c.ambient(), known, &mut unknown)?,
        unknown,
    })
}

/// Drop every capability outside `keep` from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding(keep: u64) -> Result<()> {
    for n in 0..=last_cap() {
        if keep & (1u64 << n) == 0 {
            nix::errno::Errno::result(unsafe {
                // SAFETY: prctl with integer arguments only.
                libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0)
            })
            .ctx("drop bounding capability", n)?;
        }
    }
    Ok(())
}

/// Set effective/permitted/inheritable, then the ambient set. An ambient capability
/// outside permitted ∩ inheritable cannot be raised (the kernel refuses): it is skipped
/// and reported in the returned warnings, as runc does.
pub fn apply(s: &CapSets) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    crate::syscalls::capset(s.effective, s.permitted, s.inheritable).ctx("capset", "effective/permitted/inheritable")?;
    // SAFETY: prctl with integer arguments only.
    nix::errno::Errno::result(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) })
        .ctx("clear ambient capabilities", "")?;
    let raisable = s.permitted & s.inheritable;
    for n in 0..=last_cap() {
        if s.ambient & (1u64 << n) != 0 && raisable & (1u64 << n) == 0 {
            warnings.push(format!("ambient capability {n} skipped: it is not in both the permitted and inheritable sets"));
            continue;
        }
        if s.ambient & (1u64 << n) != 0 {
            // SAFETY: prctl with integer arguments only.
            nix::errno::Errno::result(unsafe {
                libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, n as libc::c_ulong, 0, 0)
            })
            .ctx("raise ambient capability", n)?;
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_kernel_numbers() {
        assert_eq!(number(&Capability::Chown).unwrap(), 0);
        assert_eq!(number(&Capability::SysAdmin).unwrap(), 21);
        assert_eq!(number(&parse_name("CAP_NET_BIND_SERVICE").unwrap()).unwrap(), 10);
        assert_eq!(number(&parse_name("kill").unwrap()).unwrap(), 5);
        assert!(parse_name("CAP_NOPE").is_err());
    }
}
