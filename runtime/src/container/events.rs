//! `berth events`: runc-compatible JSON lines. `--stats`: one `{"type":"stats","id",
//! "data":{cpu,memory,pids,blkio,hugetlb}}` and exit. Otherwise a stats line every
//! `--interval` and an `{"type":"oom","id"}` line for each OOM kill in the container's
//! cgroup from then on, until the container stops.
//!
//! OOM kills are found by polling the kernel's counter (v1 memory.oom_control `oom_kill`,
//! v2 memory.events `oom_kill`) every 100 ms rather than a v1 eventfd / v2 inotify: one
//! code path for both versions, no extra descriptors, and the count is exact (an eventfd
//! also fires for OOM situations that end without a kill).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::Ctx;
use crate::state::{State, Status};
use crate::{Error, Result};

const POLL: Duration = Duration::from_millis(100);

/// `5s`, `500ms`, `1m`, `1h`, `1.5s` (Go durations, as runc takes them).
pub fn parse_interval(s: &str) -> Result<Duration> {
    let bad = || Error::Config(format!("--interval {s:?}: expected a duration such as 5s, 500ms or 1m"));
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ns" => n / 1e9,
        "us" | "µs" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(Error::Config(format!("--interval {s:?}: must be positive")));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn emit(out: &mut impl Write, v: serde_json::Value) -> Result<()> {
    writeln!(out, "{v}").and_then(|_| out.flush()).map_err(|e| Error::io("write events", e))
}

pub fn events(ctx: &Ctx, id: &str, stats_once: bool, interval: Duration, out: &mut impl Write) -> Result<()> {
    let st = State::load(&ctx.root, id)?;
    if st.status(&ctx.root) == Status::Stopped {
        return Err(Error::Container(format!("container {id} is not running")));
    }
    let cg = crate::cgroups::open(&st.cgroup_paths);
    let stats = |cg: &dyn crate::cgroups::Controller| json!({"type": "stats", "id": id, "data": cg.stats()});
    if stats_once {
        return emit(out, stats(&*cg));
    }
    let mut ooms = cg.oom_kills();
    let mut next_stats = Instant::now();
    loop {
        let now_ooms = cg.oom_kills();
        for _ in ooms..now_ooms {
            emit(out, json!({"type": "oom", "id": id}))?;
        }
        ooms = now_ooms;
        if st.status(&ctx.root) == Status::Stopped {
            return Ok(());
        }
        if Instant::now() >= next_stats {
            emit(out, stats(&*cg))?;
            next_stats = Instant::now() + interval;
        }
        std::thread::sleep(POLL.min(interval));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("0s").is_err());
    }
}
