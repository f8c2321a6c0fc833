//! Loading and validating a bundle's config.json.
//!
//! Validation happens before anything is created on disk or in the kernel, so a bad config
//! leaves nothing behind. What berth cannot enforce yet is refused, never silently ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, LinuxResources, Spec};

use crate::{Error, Result};

/// Read and parse `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec> {
    load_raw(bundle).map(|(s, _)| s)
}

/// The parsed config and its text (kept verbatim in the container's state).
pub fn load_raw(bundle: &Path) -> Result<(Spec, Box<serde_json::value::RawValue>)> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Config(format!("{}: no such file (is --bundle right?)", path.display()))
        } else {
            Error::io(format!("read {}", path.display()), e)
        }
    })?;
    let text = String::from_utf8(data).map_err(|e| Error::Config(format!("{}: not UTF-8: {e}", path.display())))?;
    match crate::config::parse_spec(&text) {
        Ok(spec) => {
            let raw = serde_json::value::RawValue::from_string(text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Ok((spec, raw))
        }
        Err(msg) => Err(explain(&path, &text, msg)),
    }
}

/// On the error path only: name the field the parser was in. serde_json reports the
/// position just past the offending value; the nearest `"key":` before it is the field.
/// (A field-path tracking deserializer would do this exactly, but it doubles the
/// deserialiser code in a binary whose resident size is a benchmark target.)
fn explain(path: &Path, text: &str, msg: String) -> Error {
    let e = match crate::config::json_error(text) {
        None => return Error::Config(format!("{}: {msg}", path.display())),
        Some(e) => e,
    };
    let offset = text
        .split_inclusive('\n')
        .take(e.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + e.column();
    match field_before(&text[..offset.min(text.len())]) {
        Some(key) if e.is_data() => Error::Config(format!("{}: field \"{key}\": {e}", path.display())),
        _ => Error::Config(format!("{}: {e}", path.display())),
    }
}

/// The last `"key":` in `text`.
fn field_before(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(colon) = rest.rfind(':') {
        let before = rest[..colon].trim_end();
        if let Some(b) = before.strip_suffix('"') {
            if let Some(q) = b.rfind('"') {
                return Some(&b[q + 1..]);
            }
        }
        rest = &rest[..colon];
    }
    None
}

/// The rootfs path, absolute (relative paths are relative to the bundle).
pub fn rootfs(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| Error::Config("root: missing".into()))?;
    let p = root.path();
    Ok(if p.is_absolute() { p.clone() } else { bundle.join(p) })
}

/// Namespace types the container asks for, with their optional paths.
pub fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| (n.typ(), n.path().clone())).collect())
        .unwrap_or_default()
}

pub fn has_namespace(spec: &Spec, t: LinuxNamespaceType) -> bool {
    namespaces(spec).iter().any(|(n, _)| *n == t)
}

/// Everything that can be checked without touching the kernel.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<()> {
    let v = spec.version();
    if !v.starts_with("1.") {
        return Err(Error::Config(format!("ociVersion {v:?}: berth supports 1.x (up to {})", crate::OCI_VERSION)));
    }
    let rootfs = rootfs(spec, bundle)?;
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::Config(format!("root.path {}: not a directory", rootfs.display()))),
        Err(e) => return Err(Error::io(format!("root.path {}", rootfs.display()), e)),
    }
    let process = spec.process().as_ref().ok_or_else(|| Error::Config("process: missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("process.args: must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::Config(format!("process.cwd {:?}: must be absolute", process.cwd())));
    }
    if let Some(rl) = process.rlimits() {
        let mut seen = HashSet::new();
        for r in rl {
            if !seen.insert(crate::rlimits::name(r)) {
                return Err(Error::Config(format!("process.rlimits: {:?} given twice", r.typ())));
            }
            if r.soft() > r.hard() {
                return Err(Error::Config(format!("process.rlimits: {:?} soft limit above hard limit", r.typ())));
            }
        }
    }
    crate::lsm::check(process.apparmor_profile().as_deref(), process.selinux_label().as_deref())?;

    let linux = spec.linux().as_ref().ok_or_else(|| Error::Config("linux: missing".into()))?;
    let mut types = HashSet::new();
    for (t, path) in namespaces(spec) {
        if !types.insert(t) {
            return Err(Error::Config(format!("linux.namespaces: {t} listed twice")));
        }
        if let Some(p) = path {
            if !p.exists() {
                return Err(Error::Config(format!("linux.namespaces: {t} path {}: no such file", p.display())));
            }
        }
    }
    let new_userns = namespaces(spec).iter().any(|(t, p)| *t == LinuxNamespaceType::User && p.is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_userns && !has_maps {
        return Err(Error::Config("linux.namespaces: a new user namespace needs uidMappings and gidMappings".into()));
    }
    if has_maps && !new_userns {
        return Err(Error::Config("linux.uidMappings/gidMappings given without a new user namespace".into()));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        if !namespaces(spec).iter().any(|(t, p)| *t == LinuxNamespaceType::Time && p.is_none()) {
            return Err(Error::Config("linux.timeOffsets need a new time namespace".into()));
        }
        for k in linux.time_offsets().as_ref().unwrap().keys() {
            if k != "monotonic" && k != "boottime" {
                return Err(Error::Config(format!("linux.timeOffsets: unknown clock {k:?} (monotonic, boottime)")));
            }
        }
    }
    if (spec.hostname().is_some() || spec.domainname().is_some()) && !types.contains(&LinuxNamespaceType::Uts) {
        return Err(Error::Config("hostname/domainname: the container has no uts namespace of its own; setting them would change the host's".into()));
    }
    if let Some(sysctl) = linux.sysctl() {
        for key in sysctl.keys() {
            check_sysctl(key, &types)?;
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        crate::rootfs::propagation_flag(prop)
            .ok_or_else(|| Error::Config(format!("linux.rootfsPropagation {prop:?}: unknown")))?;
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        crate::rootfs::mounts::check(m)?;
    }
    if let Some(devs) = linux.devices() {
        for d in devs {
            if !d.path().is_absolute() {
                return Err(Error::Config(format!("linux.devices: path {:?} must be absolute", d.path())));
            }
        }
    }
    if let Some(r) = linux.resources() {
        check_resources(r)?;
    }
    if let Some(s) = linux.seccomp() {
        crate::seccomp::validate(s)?;
    }
    if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) && !crate::lsm::selinux_enabled() {
        return Err(Error::Unsupported("linux.mountLabel: SELinux is not enabled on this host".into()));
    }
    if linux.intel_rdt().is_some() {
        return Err(Error::Unsupported("linux.intelRdt: Intel RDT is not supported".into()));
    }
    if linux.memory_policy().is_some() {
        return Err(Error::Unsupported("linux.memoryPolicy: not supported".into()));
    }
    if linux.net_devices().as_ref().is_some_and(|n| !n.is_empty()) {
        return Err(Error::Unsupported("linux.netDevices: not supported".into()));
    }
    if let Some(hooks) = spec.hooks() {
        for h in crate::hooks::all(hooks) {
            if !h.path().is_absolute() {
                return Err(Error::Config(format!("hooks: path {:?} must be absolute", h.path())));
            }
        }
    }
    Ok(())
}

/// Resource values that are wrong on any host (checked before anything exists; the
/// cgroup layer enforces them). Device rules: type a/b/c, access from r/w/m, major/minor
/// a number or -1 (`crate::devices`).
pub fn check_resources(r: &LinuxResources) -> Result<()> {
    if let Some(devs) = r.devices() {
        crate::devices::check_all(devs)?;
    }
    // The cgroup layer (`crate::cgroups`) enforces the rest; here only what is wrong
    // whatever the host: negative values other than -1 (unlimited).
    let bad = |what: &str, v: i64| Err(Error::Config(format!("linux.resources.{what} {v}: must be positive, or -1 for unlimited")));
    if let Some(m) = r.memory() {
        for (what, v) in [("memory.limit", m.limit()), ("memory.reservation", m.reservation()), ("memory.swap", m.swap()), ("memory.kernel", m.kernel()), ("memory.kernelTCP", m.kernel_tcp())] {
            if let Some(v) = v.filter(|v| *v < -1) {
                return bad(what, v);
            }
        }
        if let Some(s) = m.swappiness().filter(|s| *s > 100) {
            return Err(Error::Config(format!("linux.resources.memory.swappiness {s}: must be 0..=100")));
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err(Error::Config(format!("linux.resources.memory.swap {s}: memory+swap must be >= memory.limit {l}")));
            }
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(q) = c.quota().filter(|q| *q < -1 || (*q > 0 && *q < 1000)) {
            return Err(Error::Config(format!("linux.resources.cpu.quota {q}: must be >= 1000 (µs), or -1 for unlimited")));
        }
        if let Some(p) = c.period().filter(|p| *p != 0 && !(1000..=1_000_000).contains(p)) {
            return Err(Error::Config(format!("linux.resources.cpu.period {p}: must be 1000..=1000000 (µs)")));
        }
        if let Some(i) = c.idle().filter(|i| !(0..=1).contains(i)) {
            return Err(Error::Config(format!("linux.resources.cpu.idle {i}: must be 0 or 1")));
        }
    }
    if let Some(l) = r.pids().map(|p| p.limit()).filter(|l| *l < -1) {
        return bad("pids.limit", l);
    }
    if let Some(b) = r.block_io() {
        if let Some(w) = b.weight().filter(|w| *w != 0 && !(10..=1000).contains(w)) {
            return Err(Error::Config(format!("linux.resources.blockIO.weight {w}: must be 10..=1000")));
        }
    }
    Ok(())
}

/// A sysctl may only be set when it lives in a namespace the container owns (as runc checks).
pub fn check_sysctl(key: &str, ns: &HashSet<LinuxNamespaceType>) -> Result<()> {
    const IPC: &[&str] = &["kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"];
    let need = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(Error::Config(format!("linux.sysctl {key:?}: not a namespaced sysctl; it would change the host")));
    };
    if !ns.contains(&need) {
        return Err(Error::Config(format!("linux.sysctl {key:?}: the container has no {need} namespace of its own")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_needs_its_namespace() {
        let mut ns = HashSet::new();
        assert!(check_sysctl("net.ipv4.ip_forward", &ns).is_err());
        ns.insert(LinuxNamespaceType::Network);
        assert!(check_sysctl("net.ipv4.ip_forward", &ns).is_ok());
        assert!(check_sysctl("kernel.shmmax", &ns).is_err());
        ns.insert(LinuxNamespaceType::Ipc);
        assert!(check_sysctl("kernel.shmmax", &ns).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", &ns).is_ok());
        assert!(check_sysctl("vm.swappiness", &ns).is_err());
    }

    #[test]
    fn resources_refused_unless_empty_or_allow_all() {
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#).unwrap();
        assert!(check_resources(&r).is_ok());
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwm"}]}"#).unwrap();
        assert!(check_resources(&r).is_ok());
        let r: LinuxResources = serde_json::from_str(r#"{"devices":[{"allow":false,"access":"rwq"}]}"#).unwrap();
        let e = check_resources(&r).unwrap_err().to_string();
        assert!(e.contains("linux.resources.devices[0]: access \"rwq\""), "{e}");
        let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":0},"memory":{},"cpu":{}}"#).unwrap();
        assert!(check_resources(&r).is_ok());
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":1048576}}"#).unwrap();
        assert!(check_resources(&r).is_ok());
        let r: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":-5}}"#).unwrap();
        let e = check_resources(&r).unwrap_err().to_string();
        assert!(e.contains("linux.resources.memory.limit -5"), "{e}");
        let r: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":-2}}"#).unwrap();
        assert!(check_resources(&r).is_err());
    }
}

#[cfg(test)]
mod explain_tests {
    use super::*;

    #[test]
    fn names_the_field_of_a_type_error() {
        let text = "{\"ociVersion\": \"1.2.0\", \"root\": {\"path\": \"r\"},\n \"process\": {\"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0},\n  \"args\": \"sh -c true\"}}";
        let e = explain(Path::new("config.json"), text, String::new()).to_string();
        assert!(e.contains("field \"args\""), "{e}");
        assert_eq!(field_before("{\"a\": 1, \"b\" : "), Some("b"));
        assert_eq!(field_before("{"), None);
    }
}
