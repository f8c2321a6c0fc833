//! `berth update`: change a container's resource limits, from `--resources file.json|-`
//! (an OCI `linux.resources` object) and/or runc's individual flags (these win).

use std::io::Read;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Value};

use super::Ctx;
use crate::state::{State, Status};
use crate::{Error, Result};

/// runc's flags, as given (values are validated here, not by the parser).
#[derive(Debug, Default)]
pub struct Opts {
    pub id: String,
    pub resources: Option<PathBuf>,
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
    pub cpu_shares: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_period: Option<String>,
    pub cpu_rt_period: Option<String>,
    pub cpu_rt_runtime: Option<String>,
    pub cpu_burst: Option<String>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<String>,
    pub blkio_weight: Option<String>,
}

/// Sizes as runc's flags take them (docker's RAMInBytes): `1048576`, `64k`, `64m`, `1g`,
/// `512MiB`; `-1` is unlimited.
pub fn parse_size(flag: &str, s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(lower.len());
    let (num, unit) = lower.split_at(digits);
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(Error::Config(format!("{flag} {s:?}: not a size (e.g. 1048576, 64m, 1g, or -1)"))),
    };
    let n: f64 = num.parse().map_err(|_| Error::Config(format!("{flag} {s:?}: not a size (e.g. 1048576, 64m, 1g, or -1)")))?;
    Ok((n * mult) as i64)
}

fn int(flag: &str, s: &str) -> Result<i64> {
    s.parse().map_err(|_| Error::Config(format!("{flag} {s:?}: not an integer")))
}

fn uint(flag: &str, s: &str) -> Result<u64> {
    s.parse().map_err(|_| Error::Config(format!("{flag} {s:?}: not a non-negative integer")))
}

/// The resources object the flags and file ask for.
pub fn resources(o: &Opts) -> Result<LinuxResources> {
    let mut v: Value = match &o.resources {
        None => json!({}),
        Some(p) => {
            let mut text = String::new();
            if p.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text).map_err(|e| Error::io("read resources from stdin", e))?;
            } else {
                text = std::fs::read_to_string(p).map_err(|e| Error::io(format!("read {}", p.display()), e))?;
            }
            serde_json::from_str(&text).map_err(|e| Error::Config(format!("--resources {}: {e}", p.display())))?
        }
    };
    if !v.is_object() {
        return Err(Error::Config("--resources: expected a JSON object (linux.resources)".into()));
    }
    let mut put = |section: &str, key: &str, val: Value| {
        let obj = v.as_object_mut().expect("object");
        let s = obj.entry(section).or_insert_with(|| json!({}));
        if !s.is_object() {
            *s = json!({});
        }
        s[key] = val;
    };
    if let Some(s) = &o.memory {
        put("memory", "limit", json!(parse_size("--memory", s)?));
    }
    if let Some(s) = &o.memory_swap {
        put("memory", "swap", json!(parse_size("--memory-swap", s)?));
    }
    if let Some(s) = &o.memory_reservation {
        put("memory", "reservation", json!(parse_size("--memory-reservation", s)?));
    }
    if let Some(s) = &o.kernel_memory {
        put("memory", "kernel", json!(parse_size("--kernel-memory", s)?));
    }
    if let Some(s) = &o.kernel_memory_tcp {
        put("memory", "kernelTCP", json!(parse_size("--kernel-memory-tcp", s)?));
    }
    if let Some(s) = &o.cpu_shares {
        put("cpu", "shares", json!(uint("--cpu-shares", s)?));
    }
    if let Some(s) = &o.cpu_quota {
        put("cpu", "quota", json!(int("--cpu-quota", s)?));
    }
    if let Some(s) = &o.cpu_period {
        put("cpu", "period", json!(uint("--cpu-period", s)?));
    }
    if let Some(s) = &o.cpu_burst {
        put("cpu", "burst", json!(uint("--cpu-burst", s)?));
    }
    if let Some(s) = &o.cpu_rt_period {
        put("cpu", "realtimePeriod", json!(uint("--cpu-rt-period", s)?));
    }
    if let Some(s) = &o.cpu_rt_runtime {
        put("cpu", "realtimeRuntime", json!(int("--cpu-rt-runtime", s)?));
    }
    if let Some(s) = &o.cpuset_cpus {
        put("cpu", "cpus", json!(s));
    }
    if let Some(s) = &o.cpuset_mems {
        put("cpu", "mems", json!(s));
    }
    if let Some(s) = &o.pids_limit {
        put("pids", "limit", json!(int("--pids-limit", s)?));
    }
    if let Some(s) = &o.blkio_weight {
        let w = uint("--blkio-weight", s)?;
        put("blockIO", "weight", json!(u16::try_from(w).map_err(|_| Error::Config(format!("--blkio-weight {w}: must be 10..=1000")))?));
    }
    serde_json::from_value(v).map_err(|e| Error::Config(format!("resources: {e}")))
}

pub fn update(ctx: &Ctx, o: &Opts) -> Result<()> {
    let st = State::load(&ctx.root, &o.id)?;
    if st.status(&ctx.root) == Status::Stopped {
        return Err(Error::Container(format!("container {} is stopped: nothing to update", o.id)));
    }
    let r = resources(o)?;
    crate::spec::check_resources(&r)?;
    crate::cgroups::open(&st.cgroup_paths).apply(&r, true, &ctx.log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_runc_takes_them() {
        assert_eq!(parse_size("--memory", "1048576").unwrap(), 1048576);
        assert_eq!(parse_size("--memory", "64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("--memory", "512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("--memory", "-1").unwrap(), -1);
        assert!(parse_size("--memory", "lots").is_err());
    }

    #[test]
    fn flags_override_the_file_shape() {
        let o = Opts { memory: Some("32m".into()), cpu_quota: Some("50000".into()), pids_limit: Some("10".into()), ..Default::default() };
        let r = resources(&o).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(32 << 20));
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(50000));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 10);
        assert!(resources(&Opts { cpu_shares: Some("-3".into()), ..Default::default() }).is_err());
    }
}
