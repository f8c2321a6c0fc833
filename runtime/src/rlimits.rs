//! Resource limits (`process.rlimits`), set with prlimit on the calling process.

use oci_spec::runtime::PosixRlimit;

use crate::error::SysContext;
use crate::{Error, Result};

fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    })
}

pub fn name(r: &PosixRlimit) -> String {
    serde_json::to_value(r.typ()).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for r in limits {
        let n = name(r);
        let res = resource(&n).ok_or_else(|| Error::Config(format!("process.rlimits: unknown type {n}")))?;
        let lim = libc::rlimit { rlim_cur: r.soft(), rlim_max: r.hard() };
        // SAFETY: `lim` is a valid rlimit for the duration of the call.
        nix::errno::Errno::result(unsafe { libc::setrlimit(res, &lim) })
            .ctx("setrlimit", format!("{n} soft={} hard={}", r.soft(), r.hard()))?;
    }
    Ok(())
}
