//! berth-ipam: host-local style address allocation (see `config` for the config, `store`
//! for the on-disk layout and why it is crash-safe).
//!
//! One address per range set, keyed by (container id, ifname); round robin from the last
//! reserved address; gateways, IPv4 network and broadcast addresses never handed out.
//! ADD is idempotent (the same attachment gets its existing addresses back). An exhausted
//! range set is code 11 (try again later: it clears when addresses are released).

pub mod config;
pub mod range;
pub mod store;

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

pub use config::IpamConfig;
use store::{Allocation, Store};

use crate::skel::Plugin;
use crate::spec::{code, Attachment, CniResult, Env, Error, IpConfig, NetConf};

/// The plugin's name (its binary, its `ipam.type`).
pub const PLUGIN_NAME: &str = "berth-ipam";

/// The berth-ipam plugin.
pub struct Ipam;

impl Plugin for Ipam {
    fn name(&self) -> &'static str {
        PLUGIN_NAME
    }

    fn add(&self, env: &Env, conf: &NetConf) -> Result<CniResult, Error> {
        let cfg = IpamConfig::from_netconf(conf)?;
        let requested = requested_ips(env, conf)?;
        let dns = cfg.dns()?;
        let store = Store::open(&cfg.dir)?;
        let ips = allocate(&cfg, &store, &env.container_id, &env.ifname, &requested)?;
        Ok(CniResult { interfaces: Vec::new(), ips, routes: cfg.routes.clone(), dns })
    }

    fn del(&self, env: &Env, conf: &NetConf) -> Result<(), Error> {
        let cfg = IpamConfig::from_netconf(conf)?;
        let Some(store) = Store::open_existing(&cfg.dir)? else { return Ok(()) };
        let mine: Vec<Allocation> = store.allocations()?.into_iter().filter(|a| owned(a, &env.container_id, &env.ifname)).collect();
        for a in &mine {
            store.release(a.ip)?;
        }
        Ok(())
    }

    fn check(&self, env: &Env, conf: &NetConf) -> Result<(), Error> {
        let cfg = IpamConfig::from_netconf(conf)?;
        let allocs = match Store::open_existing(&cfg.dir)? {
            Some(s) => s.allocations()?,
            None => Vec::new(),
        };
        let mine: Vec<&Allocation> = allocs.iter().filter(|a| owned(a, &env.container_id, &env.ifname)).collect();
        for (i, set) in cfg.range_sets.iter().enumerate() {
            let Some(a) = mine.iter().find(|a| set.position(a.ip).is_some()) else {
                return Err(Error::internal(format!(
                    "network {:?}: no address allocated to container {} ifname {} in range set {i} ({set})",
                    cfg.network, env.container_id, env.ifname
                )));
            };
            if let Some(prev) = &conf.prev_result {
                if !prev.ips.iter().any(|ip| ip.address.addr() == a.ip) {
                    return Err(Error::internal(format!(
                        "network {:?}: address {} allocated to container {} ifname {} is not in prevResult",
                        cfg.network, a.ip, env.container_id, env.ifname
                    )));
                }
            }
        }
        Ok(())
    }

    fn status(&self, conf: &NetConf) -> Result<(), Error> {
        IpamConfig::from_netconf(conf).map(|_| ())
    }

    fn gc(&self, conf: &NetConf, valid: &[Attachment]) -> Result<(), Error> {
        let cfg = IpamConfig::from_netconf(conf)?;
        let Some(store) = Store::open_existing(&cfg.dir)? else { return Ok(()) };
        let valid: HashSet<(&str, &str)> = valid.iter().map(|a| (a.container_id.as_str(), a.ifname.as_str())).collect();
        for a in store.allocations()? {
            if !valid.contains(&(a.container_id.as_str(), a.ifname.as_str())) {
                store.release(a.ip)?;
            }
        }
        Ok(())
    }
}

fn owned(a: &Allocation, id: &str, ifname: &str) -> bool {
    a.container_id == id && a.ifname == ifname
}

/// One address per range set for (id, ifname), under the store's lock. On any failure
/// the addresses reserved by this call are released again.
pub fn allocate(cfg: &IpamConfig, store: &Store, id: &str, ifname: &str, requested: &[IpAddr]) -> Result<Vec<IpConfig>, Error> {
    let allocs = store.allocations()?;
    let mut taken = Store::taken(&allocs);
    let mut new: Vec<IpAddr> = Vec::new();
    let res = (|| {
        let mut out = Vec::new();
        let mut used = vec![false; requested.len()];
        for (i, set) in cfg.range_sets.iter().enumerate() {
            let existing = allocs.iter().find(|a| owned(a, id, ifname) && set.position(a.ip).is_some()).map(|a| a.ip);
            let wanted = requested.iter().position(|ip| set.position(*ip).is_some());
            let ip = match (existing, wanted) {
                (Some(ip), Some(w)) if requested[w] != ip => {
                    return Err(Error::internal(format!(
                        "network {:?}: container {id} ifname {ifname} already has {ip} in range set {i}, not the requested {}",
                        cfg.network, requested[w]
                    )))
                }
                (Some(ip), w) => {
                    if let Some(w) = w {
                        used[w] = true;
                    }
                    ip
                }
                (None, Some(w)) => {
                    used[w] = true;
                    let ip = requested[w];
                    let is_gw = set.ranges.iter().any(|r| r.gateway == Some(ip));
                    if is_gw || taken.contains(&ip) || !store.reserve(ip, id, ifname)? {
                        return Err(Error::internal(format!("network {:?}: requested address {ip} is not available in range set {i} ({set})", cfg.network)));
                    }
                    new.push(ip);
                    ip
                }
                (None, None) => {
                    let start = set.start_after(store.last_reserved(i));
                    let mut got = None;
                    for ip in set.candidates(start) {
                        if !taken.contains(&ip) && store.reserve(ip, id, ifname)? {
                            got = Some(ip);
                            break;
                        }
                    }
                    let ip = got.ok_or_else(|| {
                        Error::new(code::TRY_AGAIN_LATER, format!("network {:?}: no IP addresses available in range set {i} ({set})", cfg.network))
                            .details("every address is allocated; it clears when attachments are deleted")
                    })?;
                    new.push(ip);
                    store.set_last_reserved(i, ip)?;
                    ip
                }
            };
            taken.insert(ip);
            let r = &set.ranges[set.position(ip).expect("address is in its set").0];
            let address = IpNet::new(ip, r.subnet.prefix_len()).expect("prefix of a valid subnet");
            out.push(IpConfig { address, gateway: r.gateway, interface: None });
        }
        if let Some(w) = used.iter().position(|u| !u) {
            return Err(Error::invalid_config(format!("network {:?}: requested address {} is in none of its ranges", cfg.network, requested[w])));
        }
        Ok(out)
    })();
    if res.is_err() {
        for ip in &new {
            let _ = store.release(*ip);
        }
    }
    res
}

/// Addresses asked for: `CNI_ARGS` `IP=a,b`, `runtimeConfig.ips`, `args.cni.ips`
/// (each an address, optionally with a prefix length, which is ignored).
fn requested_ips(env: &Env, conf: &NetConf) -> Result<Vec<IpAddr>, Error> {
    let parse = |s: &str| s.split('/').next().unwrap_or("").trim().parse::<IpAddr>();
    let mut out = Vec::new();
    if let Some(v) = env.arg("IP") {
        for s in v.split(',').filter(|s| !s.is_empty()) {
            out.push(parse(s).map_err(|e| Error::invalid_env(format!("invalid CNI_ARGS IP {s:?}: {e}")))?);
        }
    }
    for (what, list) in [("runtimeConfig.ips", conf.runtime_config.get("ips")), ("args.cni.ips", conf.args.get("cni").and_then(|c| c.get("ips")))] {
        let Some(list) = list else { continue };
        let arr = list.as_array().ok_or_else(|| Error::invalid_config(format!("{what} is not a list")))?;
        for v in arr {
            let s = v.as_str().ok_or_else(|| Error::invalid_config(format!("{what}: {v} is not a string")))?;
            let ip = parse(s).map_err(|e| Error::invalid_config(format!("{what}: invalid address {s:?}: {e}")))?;
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    struct T {
        dir: PathBuf,
    }

    impl T {
        fn new(tag: &str) -> T {
            let dir = std::env::temp_dir().join(format!("berth-ipam-unit-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            T { dir }
        }
        fn conf(&self, ipam: serde_json::Value) -> NetConf {
            let mut ipam = ipam;
            ipam["type"] = "berth-ipam".into();
            ipam["dataDir"] = self.dir.display().to_string().into();
            NetConf::parse(json!({"cniVersion":"1.1.0","name":"net","type":"berth-ipam","ipam":ipam}).to_string().as_bytes()).unwrap()
        }
        fn files(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(self.dir.join("net")).map(|r| r.map(|e| e.unwrap().file_name().into_string().unwrap()).collect()).unwrap_or_default();
            v.sort();
            v
        }
    }

    impl Drop for T {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn env(id: &str, ifname: &str) -> Env {
        Env { command: crate::spec::Command::Add, container_id: id.into(), netns: None, ifname: ifname.into(), args: vec![], path: vec![] }
    }

    #[test]
    fn allocate_release_round_robin() {
        let t = T::new("rr");
        let c = t.conf(json!({"subnet":"10.5.0.0/29","routes":[{"dst":"0.0.0.0/0"}]}));
        let r = Ipam.add(&env("a", "eth0"), &c).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.2/29");
        assert_eq!(r.ips[0].gateway, Some("10.5.0.1".parse().unwrap()));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        // Idempotent ADD.
        assert_eq!(Ipam.add(&env("a", "eth0"), &c).unwrap().ips, r.ips);
        // Other ifname = other attachment.
        assert_eq!(Ipam.add(&env("a", "eth1"), &c).unwrap().ips[0].address.to_string(), "10.5.0.3/29");
        Ipam.del(&env("a", "eth0"), &c).unwrap();
        Ipam.del(&env("a", "eth0"), &c).unwrap();
        // Round robin: after .3 comes .4, not the freed .2.
        assert_eq!(Ipam.add(&env("b", "eth0"), &c).unwrap().ips[0].address.to_string(), "10.5.0.4/29");
        assert_eq!(t.files(), ["10.5.0.3", "10.5.0.4", "last_reserved_ip.0", "lock"]);
        Ipam.check(&env("b", "eth0"), &c).unwrap();
        assert_eq!(Ipam.check(&env("a", "eth0"), &c).unwrap_err().code, 999);
        Ipam.gc(&c, &[Attachment { container_id: "b".into(), ifname: "eth0".into() }]).unwrap();
        assert_eq!(t.files(), ["10.5.0.4", "last_reserved_ip.0", "lock"]);
    }

    #[test]
    fn exhaustion_is_code_11_and_rolls_back() {
        let t = T::new("full");
        let c = t.conf(json!({"ranges":[[{"subnet":"10.6.0.0/30"}],[{"subnet":"10.7.0.0/30"}]]}));
        Ipam.add(&env("a", "eth0"), &c).unwrap();
        // Set 0 has one address (.2): full now.
        let e = Ipam.add(&env("b", "eth0"), &c).unwrap_err();
        assert_eq!(e.code, 11);
        assert!(e.msg.contains("10.6.0.0/30"), "{e}");
        assert_eq!(t.files(), ["10.6.0.2", "10.7.0.2", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
        let c2 = t.conf(json!({"ranges":[[{"subnet":"10.7.0.0/30"}],[{"subnet":"10.6.0.0/30"}]]}));
        // Set 0 (10.7) gets reserved then rolled back when set 1 (10.6) is full.
        assert_eq!(Ipam.add(&env("c", "eth0"), &c2).unwrap_err().code, 11);
        assert_eq!(t.files().len(), 5);
    }

    #[test]
    fn requested_and_v6() {
        let t = T::new("req");
        let c = t.conf(json!({"ranges":[[{"subnet":"10.8.0.0/24"}],[{"subnet":"fd00:8::/120","gateway":"fd00:8::fe"}]],
            "routes":[{"dst":"::/0"}]}));
        let mut e = env("a", "eth0");
        e.args = vec![("IP".into(), "10.8.0.77/24".into())];
        let r = Ipam.add(&e, &c).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.8.0.77/24");
        assert_eq!(r.ips[1].address.to_string(), "fd00:8::1/120");
        assert_eq!(r.ips[1].gateway, Some("fd00:8::fe".parse().unwrap()));
        let mut e2 = env("b", "eth0");
        e2.args = vec![("IP".into(), "10.8.0.77".into())];
        assert_eq!(Ipam.add(&e2, &c).unwrap_err().code, 999);
        e2.args = vec![("IP".into(), "10.99.0.1".into())];
        assert_eq!(Ipam.add(&e2, &c).unwrap_err().code, 7);
        e2.args = vec![("IP".into(), "10.8.0.1".into())];
        assert!(Ipam.add(&e2, &c).unwrap_err().msg.contains("not available"));
        // Failed ADDs left no reservation (the round-robin hint may move).
        let files = t.files();
        assert_eq!(files.iter().filter(|f| f.parse::<IpAddr>().is_ok()).collect::<Vec<_>>(), ["10.8.0.77", "fd00:8::1"]);
    }

    #[test]
    fn del_without_anything() {
        let t = T::new("none");
        let c = t.conf(json!({"subnet":"10.9.0.0/24"}));
        Ipam.del(&env("a", "eth0"), &c).unwrap();
        Ipam.gc(&c, &[]).unwrap();
        assert!(!t.dir.exists(), "DEL/GC create nothing");
    }
}
