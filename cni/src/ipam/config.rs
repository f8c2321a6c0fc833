//! berth-ipam's config (host-local's format): `ipam.ranges` as a list of range sets, or
//! the older top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway`; `routes`, `dataDir`,
//! `resolvConf`.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use super::range::{Range, RangeSet};
use crate::spec::{Dns, Error, NetConf, Route};

/// Allocations live in `<dataDir>/<network name>/` (CORRECTIONS.md).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/berth/cni/networks";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangeConf {
    #[serde(default)]
    subnet: String,
    range_start: Option<IpAddr>,
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
struct RouteConf {
    dst: IpNet,
    gw: Option<IpAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    ranges: Vec<Vec<RangeConf>>,
    #[serde(default)]
    subnet: String,
    range_start: Option<IpAddr>,
    range_end: Option<IpAddr>,
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<RouteConf>,
    data_dir: Option<PathBuf>,
    resolv_conf: Option<PathBuf>,
}

/// The checked config of one network.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    pub network: String,
    pub range_sets: Vec<RangeSet>,
    pub routes: Vec<Route>,
    /// `<dataDir>/<network>`.
    pub dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
}

impl IpamConfig {
    /// Reads `conf.ipam`; every problem is code 7 naming the network and the field.
    pub fn from_netconf(conf: &NetConf) -> Result<IpamConfig, Error> {
        let net = &conf.name;
        let ipam = conf.ipam.as_ref().ok_or_else(|| Error::invalid_config(format!("network {net:?}: missing ipam")))?;
        let raw: Raw = serde_json::from_value(ipam.clone()).map_err(|e| Error::invalid_config(format!("network {net:?}: invalid ipam config: {e}")))?;
        let mut sets = Vec::new();
        if !raw.subnet.is_empty() {
            let old = RangeConf { subnet: raw.subnet.clone(), range_start: raw.range_start, range_end: raw.range_end, gateway: raw.gateway };
            sets.push(vec![old]);
        }
        sets.extend(raw.ranges);
        if sets.is_empty() {
            return Err(Error::invalid_config(format!("network {net:?}: ipam has no ranges (give ipam.ranges or ipam.subnet)")));
        }
        let mut range_sets = Vec::new();
        for (i, set) in sets.into_iter().enumerate() {
            if set.is_empty() {
                return Err(Error::invalid_config(format!("network {net:?}: ipam range set {i} is empty")));
            }
            let mut ranges = Vec::new();
            for (j, r) in set.into_iter().enumerate() {
                let subnet: IpNet = r.subnet.parse().map_err(|e| {
                    Error::invalid_config(format!("network {net:?}: ipam range set {i} range {j}: invalid subnet {:?}: {e}", r.subnet))
                })?;
                let range = Range::new(subnet, r.range_start, r.range_end, r.gateway)
                    .map_err(|why| Error::invalid_config(format!("network {net:?}: ipam range set {i} range {j} ({subnet}): {why}")))?;
                ranges.push(range);
            }
            let set = RangeSet::new(ranges).map_err(|why| Error::invalid_config(format!("network {net:?}: ipam range set {i}: {why}")))?;
            for (k, other) in range_sets.iter().enumerate() {
                if set.overlaps(other) {
                    return Err(Error::invalid_config(format!("network {net:?}: ipam range set {i} overlaps range set {k}")));
                }
            }
            range_sets.push(set);
        }
        let dir = raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)).join(net);
        let routes = raw.routes.into_iter().map(|r| Route::new(r.dst, r.gw)).collect();
        Ok(IpamConfig { network: net.clone(), range_sets, routes, dir, resolv_conf: raw.resolv_conf })
    }

    /// DNS from `resolvConf` (nameserver, domain, search, options lines); empty without one.
    pub fn dns(&self) -> Result<Dns, Error> {
        let Some(p) = &self.resolv_conf else { return Ok(Dns::default()) };
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(format!("resolvConf {}", p.display()), e))?;
        Ok(parse_resolv_conf(&text))
    }
}

pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => dns.nameservers.extend(f.next().map(String::from)),
            Some("domain") => dns.domain = f.next().unwrap_or("").to_string(),
            Some("search") => dns.search = f.map(String::from).collect(),
            Some("options") => dns.options.extend(f.map(String::from)),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(ipam: serde_json::Value) -> Result<IpamConfig, Error> {
        let c = NetConf::parse(json!({"cniVersion":"1.0.0","name":"n1","type":"berth-ipam","ipam":ipam}).to_string().as_bytes()).unwrap();
        IpamConfig::from_netconf(&c)
    }

    #[test]
    fn ranges_and_defaults() {
        let c = conf(json!({"type":"berth-ipam","subnet":"10.9.0.0/24",
            "ranges":[[{"subnet":"10.10.0.0/16","rangeStart":"10.10.1.20","rangeEnd":"10.10.3.50","gateway":"10.10.0.254"},{"subnet":"172.16.5.0/24"}],
                      [{"subnet":"fd00:1::/64"}]],
            "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.10.5.1"}]}))
        .unwrap();
        assert_eq!(c.range_sets.len(), 3);
        assert_eq!(c.dir, PathBuf::from("/var/lib/berth/cni/networks/n1"));
        let r = &c.range_sets[0].ranges[0];
        assert_eq!(r.gateway, Some("10.9.0.1".parse().unwrap()));
        assert_eq!(r.first().to_string(), "10.9.0.1");
        assert_eq!(r.last().to_string(), "10.9.0.254");
        assert_eq!(c.range_sets[1].ranges[0].first().to_string(), "10.10.1.20");
        assert_eq!(c.range_sets[1].ranges[0].gateway, Some("10.10.0.254".parse().unwrap()));
        assert_eq!(c.range_sets[2].ranges[0].last().to_string(), "fd00:1::ffff:ffff:ffff:ffff");
        assert_eq!(c.routes[1].gw, Some("10.10.5.1".parse().unwrap()));
    }

    #[test]
    fn bad_configs_are_code_7() {
        for (ipam, want) in [
            (json!({"type":"x"}), "no ranges"),
            (json!({"type":"x","subnet":"10.0.0.0/33"}), "invalid subnet"),
            (json!({"type":"x","subnet":"banana"}), "invalid subnet"),
            (json!({"type":"x","subnet":"10.0.0.1/24"}), "host bits"),
            (json!({"type":"x","subnet":"10.0.0.0/31"}), "too small"),
            (json!({"type":"x","subnet":"10.0.0.0/24","rangeStart":"10.0.1.5"}), "rangeStart"),
            (json!({"type":"x","subnet":"10.0.0.0/24","rangeStart":"10.0.0.9","rangeEnd":"10.0.0.3"}), "rangeStart"),
            (json!({"type":"x","subnet":"10.0.0.0/24","rangeEnd":"10.0.0.255"}), "rangeEnd"),
            (json!({"type":"x","subnet":"10.0.0.0/24","gateway":"fd00::1"}), "gateway"),
            (json!({"type":"x","ranges":[[]]}), "empty"),
            (json!({"type":"x","ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"10.0.0.0/25"}]]}), "overlap"),
            (json!({"type":"x","ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/16"}]]}), "overlaps"),
            (json!({"type":"x","ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]}), "family"),
            (json!({"type":"x","ranges":"10.0.0.0/24"}), "invalid ipam config"),
        ] {
            let e = conf(ipam.clone()).unwrap_err();
            assert_eq!(e.code, 7, "{ipam}: {e}");
            assert!(e.msg.contains(want) && e.msg.contains("n1"), "{ipam}: {e}");
        }
    }

    #[test]
    fn resolv_conf() {
        let d = parse_resolv_conf("# c\nnameserver 10.0.0.53\nnameserver fd00::53 ; x\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\n");
        assert_eq!(d.nameservers, vec!["10.0.0.53", "fd00::53"]);
        assert_eq!(d.domain, "example.test");
        assert_eq!(d.search, vec!["a.test", "b.test"]);
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
    }
}
