//! The result model (CNI 1.x) and its conversion to and from every supported version.
//!
//! One model serves all versions: 0.3.x/0.4.0 results differ only by a `"version"` ("4"/"6")
//! in each ip, which parsing ignores and output adds back; 1.1.0 adds optional fields
//! (interface `mtu`/`socketPath`/`pciID`, route `mtu`/`advmss`/`priority`/`table`/`scope`),
//! which output for older versions leaves out.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::error::Error;
use super::version::Version;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// 1.1.0
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Path of the netns for container-side interfaces; absent for host-side ones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// 1.1.0
    #[serde(default, rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    /// 1.1.0
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.22.0.5/24`.
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// 1.1.0 fields below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Self {
        Route { dst, gw, mtu: None, advmss: None, priority: None, table: None, scope: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_empty() && self.search.is_empty() && self.options.is_empty()
    }
}

impl CniResult {
    /// Parses a result (a prevResult, or a delegate's output) written in any supported
    /// version. `what` names it in errors.
    pub fn parse(v: &serde_json::Value, what: &str) -> Result<CniResult, Error> {
        let r: CniResult = serde_json::from_value(v.clone()).map_err(|e| Error::from_serde(what, &e))?;
        r.validate(what)?;
        Ok(r)
    }

    /// Interface indexes must point into `interfaces`.
    pub fn validate(&self, what: &str) -> Result<(), Error> {
        for ip in &self.ips {
            if let Some(i) = ip.interface {
                if i >= self.interfaces.len() {
                    return Err(Error::invalid_config(format!(
                        "{what}: ip {} names interface {i}, but there are {} interfaces",
                        ip.address,
                        self.interfaces.len()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The result as JSON of `version` (which must be a supported one), `cniVersion` included.
    pub fn to_json(&self, version: &str) -> serde_json::Value {
        let v = Version::parse(version).unwrap_or(Version::V1_1_0);
        let mut out = self.clone();
        if v < Version::V1_1_0 {
            for i in &mut out.interfaces {
                i.mtu = None;
                i.socket_path.clear();
                i.pci_id.clear();
            }
            for r in &mut out.routes {
                *r = Route::new(r.dst, r.gw);
            }
        }
        let mut j = serde_json::to_value(&out).expect("result serialises");
        if v.ips_carry_version() {
            if let Some(ips) = j.get_mut("ips").and_then(|x| x.as_array_mut()) {
                for (ip, model) in ips.iter_mut().zip(&out.ips) {
                    let fam = if model.address.addr().is_ipv4() { "4" } else { "6" };
                    ip["version"] = fam.into();
                }
            }
        }
        // cniVersion first, as every other implementation prints it.
        let mut m = serde_json::Map::new();
        m.insert("cniVersion".into(), version.into());
        if let serde_json::Value::Object(o) = j {
            m.extend(o);
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface { name: "cni0".into(), mac: "0a:00:00:00:00:01".into(), ..Default::default() },
                Interface {
                    name: "eth0".into(),
                    mac: "0a:00:00:00:00:02".into(),
                    mtu: Some(1400),
                    sandbox: "/var/run/netns/p".into(),
                    ..Default::default()
                },
            ],
            ips: vec![
                IpConfig { address: "10.1.0.5/24".parse().unwrap(), gateway: Some("10.1.0.1".parse().unwrap()), interface: Some(1) },
                IpConfig { address: "fd00::5/64".parse().unwrap(), gateway: None, interface: Some(1) },
            ],
            routes: vec![Route { table: Some(100), ..Route::new("0.0.0.0/0".parse().unwrap(), Some("10.1.0.1".parse().unwrap())) }],
            dns: Dns { nameservers: vec!["10.1.0.1".into()], ..Default::default() },
        }
    }

    #[test]
    fn output_per_version() {
        let r = sample();
        let v11 = r.to_json("1.1.0");
        assert_eq!(v11["cniVersion"], "1.1.0");
        assert_eq!(v11["interfaces"][1]["mtu"], 1400);
        assert_eq!(v11["routes"][0]["table"], 100);
        assert!(v11["ips"][0].get("version").is_none());
        assert_eq!(v11["ips"][0]["address"], "10.1.0.5/24");
        assert_eq!(v11["ips"][0]["interface"], 1);

        let v10 = r.to_json("1.0.0");
        assert!(v10["interfaces"][1].get("mtu").is_none());
        assert!(v10["routes"][0].get("table").is_none());
        assert!(v10["ips"][0].get("version").is_none());

        for old in ["0.3.0", "0.3.1", "0.4.0"] {
            let j = r.to_json(old);
            assert_eq!(j["cniVersion"], old);
            assert_eq!(j["ips"][0]["version"], "4");
            assert_eq!(j["ips"][1]["version"], "6");
            assert_eq!(j["ips"][0]["gateway"], "10.1.0.1");
            assert_eq!(j["dns"]["nameservers"][0], "10.1.0.1");
        }
    }

    #[test]
    fn roundtrip_every_version() {
        let r = sample();
        for v in crate::spec::version::SUPPORTED {
            let back = CniResult::parse(&r.to_json(v), "prevResult").unwrap();
            if *v == "1.1.0" {
                assert_eq!(back, r);
            } else {
                assert_eq!(back.ips, r.ips, "{v}");
                assert_eq!(back.routes[0].dst, r.routes[0].dst);
                assert_eq!(back.routes[0].table, None);
            }
        }
    }

    #[test]
    fn parse_old_result() {
        let j = json!({"cniVersion":"0.3.1","interfaces":[{"name":"eth0","sandbox":"/x"}],
            "ips":[{"version":"4","address":"10.0.0.2/16","gateway":"10.0.0.1","interface":0}],
            "routes":[{"dst":"0.0.0.0/0"}],"dns":{}});
        let r = CniResult::parse(&j, "prevResult").unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/16");
        assert_eq!(r.routes[0].gw, None);
        assert!(r.dns.is_empty());
    }

    #[test]
    fn bad_results() {
        let e = CniResult::parse(&json!({"ips":[{"address":"10.0.0.300/24"}]}), "prevResult").unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        let e = CniResult::parse(&json!({"ips":[{"address":"10.0.0.3/24","interface":2}]}), "prevResult").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("interface 2"), "{e}");
        let e = CniResult::parse(&json!({"ips":"x"}), "prevResult").unwrap_err();
        assert_eq!(e.code, 7);
    }
}
