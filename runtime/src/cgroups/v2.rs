//! cgroup v2 (unified): one directory. Controllers must be enabled in every ancestor's
//! `cgroup.subtree_control` before the container's cgroup has files for them; OCI's
//! v1-shaped values are converted as runc converts them (shares → weight, memory+swap →
//! swap, blkio weight → io.weight).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxRdma, LinuxResources};
use serde_json::{json, Map, Value};

use super::{kv, read, read_kv, read_u64, settle, write, Controller};
use crate::log::Logger;
use crate::{Error, Result};

pub struct V2 {
    pub path: PathBuf,
}

/// Enable every available controller in the ancestors of `p` (a v2 cgroup about to be
/// populated), from the top down. Best effort: an ancestor holding processes cannot
/// enable controllers (the "no internal processes" rule); a setting that then lacks its
/// file fails with a clear error in `apply`.
pub fn enable_controllers(p: &Path) {
    let mut chain: Vec<&Path> = p.ancestors().skip(1).take_while(|a| a.join("cgroup.subtree_control").exists()).collect();
    chain.reverse();
    for a in chain {
        let avail = read(a, "cgroup.controllers").unwrap_or_default();
        let on = read(a, "cgroup.subtree_control").unwrap_or_default();
        for c in avail.split_whitespace().filter(|c| !on.split_whitespace().any(|o| o == *c)) {
            let _ = write(a, "cgroup.subtree_control", &format!("+{c}"));
        }
    }
}

/// `rdma.max` line for one device.
pub(crate) fn rdma_line(dev: &str, l: &LinuxRdma) -> String {
    let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "max".into());
    format!("{dev} hca_handle={} hca_object={}", n(l.hca_handles()), n(l.hca_objects()))
}

fn limit(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

impl V2 {
    fn set(&self, what: &str, file: &str, value: &str) -> Result<()> {
        if !self.path.join(file).exists() {
            let controller = file.split('.').next().unwrap_or(file);
            return Err(Error::Unsupported(format!(
                "linux.resources.{what}: the cgroup v2 {controller} controller is not available in {} (no {file}; is it enabled in the parent's cgroup.subtree_control?)",
                self.path.display()
            )));
        }
        write(&self.path, file, value)
    }

    fn memory(&self, r: &LinuxResources, update: bool, log: &Logger) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        if update && m.check_before_update() == Some(true) {
            if let Some(l) = m.limit().filter(|l| *l > 0) {
                let usage = read_u64(&self.path, "memory.current");
                if (l as u64) < usage {
                    return Err(Error::Container(format!("memory.limit {l}: below the current usage {usage} (memory.checkBeforeUpdate)")));
                }
            }
        }
        if let Some(s) = m.swap() {
            let sw = super::swap_v2(s, m.limit().unwrap_or(0))?;
            if sw != 0 || s != 0 {
                self.set("memory.swap", "memory.swap.max", &limit(sw))?;
            }
        }
        if let Some(l) = m.limit() {
            self.set("memory", "memory.max", &limit(l))?;
        }
        if let Some(v) = m.reservation() {
            self.set("memory.reservation", "memory.low", &limit(v))?;
        }
        if m.swappiness().is_some() {
            return Err(Error::Unsupported("linux.resources.memory.swappiness: cgroup v2 has no per-cgroup swappiness".into()));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(Error::Unsupported("linux.resources.memory.disableOOMKiller: cgroup v2 cannot disable the OOM killer".into()));
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            log.warn("linux.resources.memory.kernel/kernelTCP: cgroup v2 accounts kernel memory inside memory.max; ignored (as runc does)");
        }
        Ok(())
    }

    fn cpu(&self, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if c.realtime_runtime().is_some_and(|v| v != 0) || c.realtime_period().is_some_and(|v| v != 0) {
            return Err(Error::Unsupported("linux.resources.cpu.realtimeRuntime/realtimePeriod: cgroup v2 has no realtime group scheduling".into()));
        }
        if let Some(s) = c.shares().filter(|s| *s != 0) {
            self.set("cpu.shares", "cpu.weight", &super::shares_to_weight(s).to_string())?;
        }
        let (q, p) = (c.quota().unwrap_or(0), c.period().unwrap_or(0));
        if q != 0 || p != 0 {
            let mut v = if q > 0 { q.to_string() } else { "max".into() };
            if p > 0 {
                v = format!("{v} {p}");
            }
            self.set("cpu.quota", "cpu.max", &v)?;
        }
        if let Some(b) = c.burst() {
            self.set("cpu.burst", "cpu.max.burst", &b.to_string())?;
        }
        if let Some(i) = c.idle() {
            self.set("cpu.idle", "cpu.idle", &i.to_string())?;
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpu.cpus", "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpu.mems", "cpuset.mems", v)?;
        }
        Ok(())
    }

    fn io(&self, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        if b.leaf_weight().is_some() || b.weight_device().as_deref().unwrap_or_default().iter().any(|d| d.leaf_weight().is_some()) {
            return Err(Error::Unsupported("linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weights".into()));
        }
        // BFQ's io.bfq.weight takes the v1 scale as is; io.weight the converted one.
        let bfq = self.path.join("io.bfq.weight").exists();
        if let Some(w) = b.weight() {
            if bfq {
                self.set("blockIO.weight", "io.bfq.weight", &w.to_string())?;
            } else {
                self.set("blockIO.weight", "io.weight", &super::blkio_to_io_weight(w).to_string())?;
            }
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            if let Some(w) = d.weight() {
                let (file, v) = if bfq { ("io.bfq.weight", u64::from(w)) } else { ("io.weight", super::blkio_to_io_weight(w)) };
                self.set("blockIO.weightDevice", file, &format!("{}:{} {v}", d.major(), d.minor()))?;
            }
        }
        for (list, key) in [
            (b.throttle_read_bps_device(), "rbps"),
            (b.throttle_write_bps_device(), "wbps"),
            (b.throttle_read_iops_device(), "riops"),
            (b.throttle_write_iops_device(), "wiops"),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                let v = if d.rate() == 0 { "max".to_string() } else { d.rate().to_string() };
                self.set("blockIO throttle", "io.max", &format!("{}:{} {key}={v}", d.major(), d.minor()))?;
            }
        }
        Ok(())
    }
}

impl Controller for V2 {
    fn apply(&self, r: &LinuxResources, update: bool, log: &Logger) -> Result<()> {
        self.memory(r, update, log)?;
        self.cpu(r)?;
        if let Some(p) = r.pids() {
            self.set("pids", "pids.max", &if p.limit() > 0 { p.limit().to_string() } else { "max".into() })?;
        }
        self.io(r)?;
        for h in r.hugepage_limits().as_deref().unwrap_or_default() {
            self.set("hugepageLimits", &format!("hugetlb.{}.max", h.page_size()), &h.limit().to_string())?;
        }
        if r.network().as_ref().is_some_and(|n| n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty())) {
            return Err(Error::Unsupported(
                "linux.resources.network: net_cls/net_prio are cgroup v1 controllers; cgroup v2 has none (use eBPF in the network layer)".into(),
            ));
        }
        if let Some(rdma) = r.rdma() {
            for (dev, l) in rdma {
                self.set("rdma", "rdma.max", &rdma_line(dev, l))?;
            }
        }
        if let Some(u) = r.unified() {
            let mut keys: Vec<_> = u.iter().collect();
            keys.sort();
            for (k, v) in keys {
                if k.contains('/') || k.starts_with("cgroup.") || !k.contains('.') {
                    return Err(Error::Config(format!("linux.resources.unified: key {k:?} is not a controller file name")));
                }
                self.set(&format!("unified[{k:?}]"), k, v)?;
            }
        }
        Ok(())
    }

    fn stats(&self) -> Value {
        let d = &self.path;
        let cpu = read_kv(d, "cpu.stat");
        let mem_raw: Map<String, Value> = read_kv(d, "memory.stat").into_iter().map(|(k, v)| (k, json!(v))).collect();
        let events = read_kv(d, "memory.events");
        let mut memory = Map::new();
        if d.join("memory.current").exists() {
            memory.insert("cache".into(), mem_raw.get("file").cloned().unwrap_or(json!(0)));
            memory.insert(
                "usage".into(),
                json!({"limit": read_u64(d, "memory.max"), "usage": read_u64(d, "memory.current"), "max": read_u64(d, "memory.peak"), "failcnt": kv(&events, "max")}),
            );
            // runc reports v2 swap as memory+swap, the v1 meaning.
            memory.insert(
                "swap".into(),
                json!({"limit": read_u64(d, "memory.swap.max"), "usage": read_u64(d, "memory.swap.current").saturating_add(read_u64(d, "memory.current")), "failcnt": kv(&read_kv(d, "memory.swap.events"), "fail")}),
            );
            memory.insert("raw".into(), Value::Object(mem_raw));
        }
        let pids = if d.join("pids.current").exists() {
            let l = read_u64(d, "pids.max");
            json!({"current": read_u64(d, "pids.current"), "limit": if l == u64::MAX { 0 } else { l }})
        } else {
            json!({})
        };
        let mut bytes = Vec::new();
        let mut ios = Vec::new();
        for l in read(d, "io.stat").unwrap_or_default().lines() {
            let mut f = l.split_whitespace();
            let Some((maj, min)) = f.next().and_then(|dev| dev.split_once(':')) else { continue };
            let (Ok(maj), Ok(min)) = (maj.parse::<u64>(), min.parse::<u64>()) else { continue };
            for kvp in f {
                let Some((k, v)) = kvp.split_once('=') else { continue };
                let v: u64 = v.parse().unwrap_or(0);
                let e = |op: &str| json!({"major": maj, "minor": min, "op": op, "value": v});
                match k {
                    "rbytes" => bytes.push(e("Read")),
                    "wbytes" => bytes.push(e("Write")),
                    "rios" => ios.push(e("Read")),
                    "wios" => ios.push(e("Write")),
                    _ => {}
                }
            }
        }
        let mut hugetlb = Map::new();
        for size in super::v1::hugepage_sizes(d, ".max") {
            hugetlb.insert(
                size.clone(),
                json!({"usage": read_u64(d, &format!("hugetlb.{size}.current")), "failcnt": kv(&read_kv(d, &format!("hugetlb.{size}.events")), "max")}),
            );
        }
        json!({
            "cpu": {
                "usage": {"total": kv(&cpu, "usage_usec") * 1000, "kernel": kv(&cpu, "system_usec") * 1000, "user": kv(&cpu, "user_usec") * 1000},
                "throttling": {"periods": kv(&cpu, "nr_periods"), "throttledPeriods": kv(&cpu, "nr_throttled"), "throttledTime": kv(&cpu, "throttled_usec") * 1000},
            },
            "memory": memory,
            "pids": pids,
            "blkio": {"ioServiceBytesRecursive": bytes, "ioServicedRecursive": ios},
            "hugetlb": hugetlb,
        })
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let v = if frozen { "1" } else { "0" };
        write(&self.path, "cgroup.freeze", v)?;
        let want = format!("frozen {v}");
        settle(&format!("write {v} to {}", self.path.join("cgroup.freeze").display()), || {
            read(&self.path, "cgroup.events").is_some_and(|e| e.lines().any(|l| l == want))
        })
    }

    fn oom_kills(&self) -> u64 {
        kv(&read_kv(&self.path, "memory.events"), "oom_kill")
    }
}
