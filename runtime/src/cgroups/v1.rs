//! cgroup v1 (also the hybrid layout: v1 controllers, a v2 mount with none). One
//! directory per hierarchy; each setting goes to the directory whose hierarchy has the
//! file, and a controller that is not mounted is a clear error, never a skipped limit.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde_json::{json, Map, Value};

use super::{kv, read, read_kv, read_u64, settle, write, Controller};
use crate::log::Logger;
use crate::{Error, Result};

pub struct V1 {
    pub paths: Vec<PathBuf>,
}

impl V1 {
    /// The container's directory in the hierarchy that has `file`.
    fn dir(&self, file: &str) -> Option<&Path> {
        self.paths.iter().map(PathBuf::as_path).find(|p| p.join(file).exists())
    }

    fn need(&self, what: &str, controller: &str, file: &str) -> Result<&Path> {
        self.dir(file).ok_or_else(|| {
            Error::Unsupported(format!(
                "linux.resources.{what}: the cgroup v1 {controller} controller is not mounted on this host (no {file} in the container's cgroups)"
            ))
        })
    }

    fn set(&self, what: &str, controller: &str, file: &str, value: &str) -> Result<()> {
        write(self.need(what, controller, file)?, file, value)
    }

    fn memory(&self, r: &LinuxResources, update: bool, log: &Logger) -> Result<()> {
        let Some(m) = r.memory() else { return Ok(()) };
        if update && m.check_before_update() == Some(true) {
            if let (Some(limit), Some(d)) = (m.limit(), self.dir("memory.usage_in_bytes")) {
                let usage = read_u64(d, "memory.usage_in_bytes");
                if limit > 0 && (limit as u64) < usage {
                    return Err(Error::Container(format!(
                        "memory.limit {limit}: below the current usage {usage} (memory.checkBeforeUpdate)"
                    )));
                }
            }
        }
        let lim = |v: i64| v.to_string();
        match (m.limit(), m.swap()) {
            (Some(l), Some(s)) => {
                // memsw must stay >= the limit: raise memsw first when the limit grows.
                if self.set("memory", "memory", "memory.limit_in_bytes", &lim(l)).is_err() {
                    self.set("memory.swap", "memory", "memory.memsw.limit_in_bytes", &lim(s))?;
                    self.set("memory", "memory", "memory.limit_in_bytes", &lim(l))?;
                } else {
                    self.set("memory.swap", "memory", "memory.memsw.limit_in_bytes", &lim(s))?;
                }
            }
            (Some(l), None) => {
                let d = self.need("memory", "memory", "memory.limit_in_bytes")?;
                if write(d, "memory.limit_in_bytes", &lim(l)).is_err() && d.join("memory.memsw.limit_in_bytes").exists() {
                    // The old memsw limit is below the new limit: lift memsw along.
                    write(d, "memory.memsw.limit_in_bytes", &lim(l))?;
                    write(d, "memory.limit_in_bytes", &lim(l))?;
                } else {
                    write(d, "memory.limit_in_bytes", &lim(l))?;
                }
            }
            (None, Some(s)) => self.set("memory.swap", "memory", "memory.memsw.limit_in_bytes", &lim(s))?,
            (None, None) => {}
        }
        if let Some(v) = m.reservation() {
            self.set("memory.reservation", "memory", "memory.soft_limit_in_bytes", &lim(v))?;
        }
        if let Some(v) = m.swappiness() {
            self.set("memory.swappiness", "memory", "memory.swappiness", &v.to_string())?;
        }
        if let Some(v) = m.disable_oom_killer() {
            self.set("memory.disableOOMKiller", "memory", "memory.oom_control", if v { "1" } else { "0" })?;
        }
        for (what, file, v) in [("kernel", "memory.kmem.limit_in_bytes", m.kernel()), ("kernelTCP", "memory.kmem.tcp.limit_in_bytes", m.kernel_tcp())] {
            let Some(v) = v else { continue };
            // Kernels >= 5.16 keep memory.kmem.limit_in_bytes but ignore writes to it: read back.
            let taken = self.dir(file).is_some_and(|d| write(d, file, &lim(v)).is_ok() && (v < 0 || read_u64(d, file) == v as u64));
            if !taken {
                log.warn(&format!("linux.resources.memory.{what}: this kernel has no settable {file} (kernel memory is accounted in the memory limit); ignored, as runc does"));
            }
        }
        Ok(())
    }

    fn cpu(&self, r: &LinuxResources) -> Result<()> {
        let Some(c) = r.cpu() else { return Ok(()) };
        if let Some(v) = c.shares() {
            self.set("cpu.shares", "cpu", "cpu.shares", &v.to_string())?;
        }
        if let Some(v) = c.period() {
            self.set("cpu.period", "cpu", "cpu.cfs_period_us", &v.to_string())?;
        }
        if let Some(v) = c.quota() {
            self.set("cpu.quota", "cpu", "cpu.cfs_quota_us", &v.to_string())?;
        }
        if let Some(v) = c.burst() {
            self.set("cpu.burst", "cpu", "cpu.cfs_burst_us", &v.to_string())?;
        }
        if let Some(v) = c.realtime_period() {
            self.set("cpu.realtimePeriod", "cpu (with RT group scheduling)", "cpu.rt_period_us", &v.to_string())?;
        }
        if let Some(v) = c.realtime_runtime() {
            self.set("cpu.realtimeRuntime", "cpu (with RT group scheduling)", "cpu.rt_runtime_us", &v.to_string())?;
        }
        if let Some(v) = c.idle() {
            self.set("cpu.idle", "cpu", "cpu.idle", &v.to_string())?;
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpu.cpus", "cpuset", "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            self.set("cpu.mems", "cpuset", "cpuset.mems", v)?;
        }
        Ok(())
    }

    fn block_io(&self, r: &LinuxResources) -> Result<()> {
        let Some(b) = r.block_io() else { return Ok(()) };
        // CFQ's blkio.weight is gone from current kernels; BFQ's is the same scale.
        let weight_file = if self.dir("blkio.weight").is_some() { "blkio.weight" } else { "blkio.bfq.weight" };
        if let Some(w) = b.weight() {
            self.set("blockIO.weight", "blkio (with a proportional-weight scheduler)", weight_file, &w.to_string())?;
        }
        if let Some(w) = b.leaf_weight() {
            self.set("blockIO.leafWeight", "blkio (CFQ, which has leaf weights)", "blkio.leaf_weight", &w.to_string())?;
        }
        for d in b.weight_device().as_deref().unwrap_or_default() {
            let file = format!("{weight_file}_device");
            if let Some(w) = d.weight() {
                self.set("blockIO.weightDevice", "blkio (with a proportional-weight scheduler)", &file, &format!("{}:{} {w}", d.major(), d.minor()))?;
            }
            if let Some(w) = d.leaf_weight() {
                self.set("blockIO.weightDevice.leafWeight", "blkio (CFQ)", "blkio.leaf_weight_device", &format!("{}:{} {w}", d.major(), d.minor()))?;
            }
        }
        for (list, file) in [
            (b.throttle_read_bps_device(), "blkio.throttle.read_bps_device"),
            (b.throttle_write_bps_device(), "blkio.throttle.write_bps_device"),
            (b.throttle_read_iops_device(), "blkio.throttle.read_iops_device"),
            (b.throttle_write_iops_device(), "blkio.throttle.write_iops_device"),
        ] {
            for d in list.as_deref().unwrap_or_default() {
                self.set("blockIO throttle", "blkio", file, &format!("{}:{} {}", d.major(), d.minor(), d.rate()))?;
            }
        }
        Ok(())
    }
}

impl Controller for V1 {
    fn apply(&self, r: &LinuxResources, update: bool, log: &Logger) -> Result<()> {
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::Unsupported(
                "linux.resources.unified: cgroup v2 key/values, and this host runs cgroup v1 controllers (v1 or hybrid)".into(),
            ));
        }
        self.memory(r, update, log)?;
        self.cpu(r)?;
        if let Some(p) = r.pids() {
            let v = if p.limit() > 0 { p.limit().to_string() } else { "max".into() };
            self.set("pids", "pids", "pids.max", &v)?;
        }
        self.block_io(r)?;
        for h in r.hugepage_limits().as_deref().unwrap_or_default() {
            self.set("hugepageLimits", "hugetlb", &format!("hugetlb.{}.limit_in_bytes", h.page_size()), &h.limit().to_string())?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                self.set("network.classID", "net_cls", "net_cls.classid", &id.to_string())?;
            }
            for p in n.priorities().as_deref().unwrap_or_default() {
                self.set("network.priorities", "net_prio", "net_prio.ifpriomap", &format!("{} {}", p.name(), p.priority()))?;
            }
        }
        if let Some(rdma) = r.rdma() {
            for (dev, l) in rdma {
                self.set("rdma", "rdma", "rdma.max", &super::v2::rdma_line(dev, l))?;
            }
        }
        Ok(())
    }

    fn stats(&self) -> Value {
        let mut cpu_usage = Map::new();
        if let Some(d) = self.dir("cpuacct.usage") {
            cpu_usage.insert("total".into(), json!(read_u64(d, "cpuacct.usage")));
            let list = |f: &str| -> Vec<u64> { read(d, f).unwrap_or_default().split_whitespace().filter_map(|v| v.parse().ok()).collect() };
            for (k, f) in [("percpu", "cpuacct.usage_percpu"), ("percpu_kernel", "cpuacct.usage_percpu_sys"), ("percpu_user", "cpuacct.usage_percpu_user")] {
                let l = list(f);
                if !l.is_empty() {
                    cpu_usage.insert(k.into(), json!(l));
                }
            }
            // cpuacct.stat counts USER_HZ (100 Hz) ticks.
            let st = read_kv(d, "cpuacct.stat");
            cpu_usage.insert("kernel".into(), json!(kv(&st, "system") * 10_000_000));
            cpu_usage.insert("user".into(), json!(kv(&st, "user") * 10_000_000));
        }
        let mut throttling = Map::new();
        if let Some(d) = self.dir("cpu.stat") {
            let st = read_kv(d, "cpu.stat");
            throttling.insert("periods".into(), json!(kv(&st, "nr_periods")));
            throttling.insert("throttledPeriods".into(), json!(kv(&st, "nr_throttled")));
            throttling.insert("throttledTime".into(), json!(kv(&st, "throttled_time")));
        }
        let mut memory = Map::new();
        if let Some(d) = self.dir("memory.usage_in_bytes") {
            let entry = |prefix: &str| {
                json!({
                    "limit": read_u64(d, &format!("{prefix}limit_in_bytes")),
                    "usage": read_u64(d, &format!("{prefix}usage_in_bytes")),
                    "max": read_u64(d, &format!("{prefix}max_usage_in_bytes")),
                    "failcnt": read_u64(d, &format!("{prefix}failcnt")),
                })
            };
            let raw: Map<String, Value> = read_kv(d, "memory.stat").into_iter().map(|(k, v)| (k, json!(v))).collect();
            memory.insert("cache".into(), raw.get("cache").cloned().unwrap_or(json!(0)));
            memory.insert("usage".into(), entry("memory."));
            memory.insert("swap".into(), entry("memory.memsw."));
            memory.insert("kernel".into(), entry("memory.kmem."));
            memory.insert("kernelTCP".into(), entry("memory.kmem.tcp."));
            memory.insert("raw".into(), Value::Object(raw));
        }
        let pids = match self.dir("pids.current") {
            Some(d) => {
                let l = read_u64(d, "pids.max");
                json!({"current": read_u64(d, "pids.current"), "limit": if l == u64::MAX { 0 } else { l }})
            }
            None => json!({}),
        };
        let mut blkio = Map::new();
        if let Some(d) = self.dir("blkio.throttle.io_service_bytes_recursive") {
            blkio.insert("ioServiceBytesRecursive".into(), blkio_entries(d, "blkio.throttle.io_service_bytes_recursive"));
            blkio.insert("ioServicedRecursive".into(), blkio_entries(d, "blkio.throttle.io_serviced_recursive"));
        }
        let mut hugetlb = Map::new();
        if let Some(d) = self.paths.iter().find(|p| p.join("cgroup.procs").exists() && has_prefix(p, "hugetlb.")) {
            for size in hugepage_sizes(d, ".limit_in_bytes") {
                hugetlb.insert(
                    size.clone(),
                    json!({
                        "usage": read_u64(d, &format!("hugetlb.{size}.usage_in_bytes")),
                        "max": read_u64(d, &format!("hugetlb.{size}.max_usage_in_bytes")),
                        "failcnt": read_u64(d, &format!("hugetlb.{size}.failcnt")),
                    }),
                );
            }
        }
        json!({
            "cpu": {"usage": cpu_usage, "throttling": throttling},
            "memory": memory,
            "pids": pids,
            "blkio": blkio,
            "hugetlb": hugetlb,
        })
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let d = self.dir("freezer.state").ok_or_else(|| Error::Unsupported("pause/resume: the cgroup v1 freezer controller is not mounted on this host".into()))?;
        let want = if frozen { "FROZEN" } else { "THAWED" };
        write(d, "freezer.state", want)?;
        settle(&format!("write {want} to {}", d.join("freezer.state").display()), || {
            let s = read(d, "freezer.state").unwrap_or_default();
            // A FREEZING cgroup needs the request repeated once its tasks can be caught.
            if s == "FREEZING" {
                let _ = write(d, "freezer.state", want);
            }
            s == want
        })
    }

    fn oom_kills(&self) -> u64 {
        self.dir("memory.oom_control").map(|d| kv(&read_kv(d, "memory.oom_control"), "oom_kill")).unwrap_or(0)
    }
}

fn has_prefix(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir).map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix))).unwrap_or(false)
}

/// Page sizes from `hugetlb.<size><suffix>` file names.
pub(crate) fn hugepage_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let size = n.strip_prefix("hugetlb.")?.strip_suffix(suffix)?.to_string();
                    (!size.contains('.')).then_some(size)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `maj:min Op value` lines into runc's BlkioEntry list.
fn blkio_entries(d: &Path, file: &str) -> Value {
    let list: Vec<Value> = read(d, file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, v) = (f.first()?, f.get(1)?, f.get(2)?);
            let (maj, min) = dev.split_once(':')?;
            Some(json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?, "op": op, "value": v.parse::<u64>().ok()?}))
        })
        .collect();
    Value::Array(list)
}
