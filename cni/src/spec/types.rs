//! The plugin's inputs: environment variables and the network config on stdin.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{code, Error};
use super::result::{CniResult, Dns};

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

impl Command {
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "STATUS" => Command::Status,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Version => "VERSION",
            Command::Gc => "GC",
        }
    }

    /// Which variables the command needs (as the spec lists them; CNI_NETNS is
    /// optional for DEL, which must work after the netns is gone).
    fn needs(self) -> (bool, bool, bool, bool) {
        // (CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_PATH)
        match self {
            Command::Add | Command::Check => (true, true, true, true),
            Command::Del => (true, false, true, true),
            Command::Gc | Command::Status => (false, false, false, true),
            Command::Version => (false, false, false, false),
        }
    }
}

/// The CNI environment variables of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    pub command: Command,
    /// Empty for GC/STATUS/VERSION.
    pub container_id: String,
    /// None when not given (DEL may omit it).
    pub netns: Option<PathBuf>,
    /// Empty for GC/STATUS/VERSION.
    pub ifname: String,
    /// `CNI_ARGS` as `K=V` pairs, in order.
    pub args: Vec<(String, String)>,
    /// `CNI_PATH` directories, in order.
    pub path: Vec<PathBuf>,
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Result<Env, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `get` (tests pass a map). Missing or invalid
    /// variables are code 4.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let get = |k: &str| get(k).filter(|v| !v.is_empty());
        let cmd = get("CNI_COMMAND").ok_or_else(|| Error::invalid_env("required env variable CNI_COMMAND missing"))?;
        let command = Command::parse(&cmd).ok_or_else(|| Error::invalid_env(format!("unknown CNI_COMMAND: {cmd}")))?;
        let (need_id, need_ns, need_if, need_path) = command.needs();
        let mut missing = Vec::new();
        for (name, needed) in [("CNI_CONTAINERID", need_id), ("CNI_NETNS", need_ns), ("CNI_IFNAME", need_if), ("CNI_PATH", need_path)] {
            if needed && get(name).is_none() {
                missing.push(name);
            }
        }
        if !missing.is_empty() {
            return Err(Error::invalid_env(format!(
                "required env variable{} {} missing for {}",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                command.as_str()
            )));
        }
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        if !container_id.is_empty() && !valid_name(&container_id) {
            return Err(Error::invalid_env(format!("invalid CNI_CONTAINERID {container_id:?}"))
                .details("must start with a letter or digit and hold only letters, digits, '_', '.', '-'"));
        }
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        if !ifname.is_empty() {
            valid_ifname(&ifname).map_err(|why| Error::invalid_env(format!("invalid CNI_IFNAME {ifname:?}: {why}")))?;
        }
        let args = match get("CNI_ARGS") {
            None => Vec::new(),
            Some(raw) => parse_args(&raw)?,
        };
        let path = get("CNI_PATH")
            .map(|p| p.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect())
            .unwrap_or_default();
        Ok(Env { command, container_id, netns: get("CNI_NETNS").map(PathBuf::from), ifname, args, path })
    }

    /// The value of `key` in CNI_ARGS.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The variables that reproduce this environment (for delegation).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![("CNI_COMMAND", self.command.as_str().to_string())];
        if !self.container_id.is_empty() {
            v.push(("CNI_CONTAINERID", self.container_id.clone()));
        }
        if let Some(ns) = &self.netns {
            v.push(("CNI_NETNS", ns.display().to_string()));
        }
        if !self.ifname.is_empty() {
            v.push(("CNI_IFNAME", self.ifname.clone()));
        }
        if !self.args.is_empty() {
            v.push(("CNI_ARGS", self.args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")));
        }
        let p: Vec<String> = self.path.iter().map(|p| p.display().to_string()).collect();
        v.push(("CNI_PATH", p.join(":")));
        v
    }
}

/// `K1=V1;K2=V2`.
fn parse_args(raw: &str) -> Result<Vec<(String, String)>, Error> {
    raw.split(';')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Error::invalid_env(format!("invalid CNI_ARGS pair {pair:?}")).details("expected K=V pairs separated by ';'")),
        })
        .collect()
}

/// Container ids and network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphanumeric()) && b.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// Linux interface names: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace.
pub fn valid_ifname(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > 15 {
        return Err("longer than 15 bytes");
    }
    if s == "." || s == ".." {
        return Err("not a valid name");
    }
    if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err("contains '/', ':' or whitespace");
    }
    Ok(())
}

/// One `cni.dev/valid-attachments` entry (GC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The network config on stdin: the fields every plugin shares; `raw` keeps the whole
/// object for plugin-specific fields (each plugin deserialises those itself).
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    /// `args` (conventions: `args.cni`).
    pub args: Value,
    /// The `ipam` object, for delegation; None when absent.
    pub ipam: Option<Value>,
    pub dns: Option<Dns>,
    /// `prevResult` parsed into the 1.x model.
    pub prev_result: Option<CniResult>,
    /// `runtimeConfig`, Null when absent.
    pub runtime_config: Value,
    /// The whole config as given.
    pub raw: Value,
}

struct Common {
    cni_version: String,
    name: String,
    plugin_type: String,
    args: Value,
    ipam: Option<Value>,
    dns: Option<Dns>,
    prev_result: Option<Value>,
    runtime_config: Value,
}

/// Field `key` of the config decoded as `T` (default when absent or null); errors name it.
fn field<T: serde::de::DeserializeOwned + Default>(raw: &Value, key: &str) -> Result<T, Error> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::invalid_config(format!("invalid network config field {key:?}: {e}"))),
    }
}

impl NetConf {
    /// Decodes stdin: malformed JSON is code 6, a wrong or missing field code 7.
    /// The version is not checked here (skel does, against the plugin's list).
    pub fn parse(stdin: &[u8]) -> Result<NetConf, Error> {
        let raw: Value = serde_json::from_slice(stdin).map_err(|e| Error::new(code::DECODE, format!("cannot decode network config: {e}")))?;
        if !raw.is_object() {
            return Err(Error::new(code::DECODE, "cannot decode network config: not a JSON object"));
        }
        let c = Common {
            cni_version: field(&raw, "cniVersion")?,
            name: field(&raw, "name")?,
            plugin_type: field(&raw, "type")?,
            args: field(&raw, "args")?,
            ipam: field(&raw, "ipam")?,
            dns: field(&raw, "dns")?,
            prev_result: field(&raw, "prevResult")?,
            runtime_config: field(&raw, "runtimeConfig")?,
        };
        if c.name.is_empty() {
            return Err(Error::invalid_config("missing network name"));
        }
        if !valid_name(&c.name) {
            return Err(Error::invalid_config(format!("invalid network name {:?}", c.name))
                .details("must start with a letter or digit and hold only letters, digits, '_', '.', '-'"));
        }
        if c.plugin_type.is_empty() {
            return Err(Error::invalid_config(format!("network {:?}: missing plugin type", c.name)));
        }
        if let Some(ipam) = &c.ipam {
            if !ipam.is_object() {
                return Err(Error::invalid_config(format!("network {:?}: ipam is not an object", c.name)));
            }
        }
        let prev_result = match c.prev_result {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::parse(&v, "prevResult")?),
        };
        Ok(NetConf {
            cni_version: c.cni_version,
            name: c.name,
            plugin_type: c.plugin_type,
            args: c.args,
            ipam: c.ipam,
            dns: c.dns,
            prev_result,
            runtime_config: c.runtime_config,
            raw,
        })
    }

    /// `ipam.type`, or code 7 naming the network.
    pub fn ipam_type(&self) -> Result<&str, Error> {
        self.ipam
            .as_ref()
            .and_then(|i| i.get("type"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::invalid_config(format!("network {:?}: missing ipam.type", self.name)))
    }

    /// `cni.dev/valid-attachments` (GC); empty when absent.
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>, Error> {
        match self.raw.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| Error::invalid_config(format!("invalid cni.dev/valid-attachments: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, Error> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::from_lookup(|k| m.get(k).cloned())
    }

    const FULL: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc-1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
    ];

    #[test]
    fn env_full() {
        let e = env(FULL).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(e.container_id, "abc-1");
        assert_eq!(e.netns.as_deref(), Some(std::path::Path::new("/var/run/netns/x")));
        assert_eq!(e.path, vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]);
        assert_eq!(e.arg("K8S_POD_NAME"), Some("p"));
        assert_eq!(e.arg("nope"), None);
        let again = env(&e.vars().iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn env_missing_is_code_4() {
        for skip in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            let v: Vec<_> = FULL.iter().copied().filter(|(k, _)| *k != skip).collect();
            let e = env(&v).unwrap_err();
            assert_eq!(e.code, 4, "{skip}: {e}");
            assert!(e.msg.contains(skip), "{e}");
        }
        // Empty counts as missing.
        let v: Vec<_> = FULL.iter().map(|&(k, v)| if k == "CNI_IFNAME" { (k, "") } else { (k, v) }).collect();
        assert_eq!(env(&v).unwrap_err().code, 4);
    }

    #[test]
    fn env_per_command() {
        let del = env(&[("CNI_COMMAND", "DEL"), ("CNI_CONTAINERID", "c"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/x")]).unwrap();
        assert_eq!(del.netns, None);
        env(&[("CNI_COMMAND", "VERSION")]).unwrap();
        env(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")]).unwrap();
        env(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")]).unwrap();
        assert_eq!(env(&[("CNI_COMMAND", "GC")]).unwrap_err().code, 4);
        let e = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("FROB"));
    }

    #[test]
    fn env_invalid_values() {
        let with = |k: &str, val: &str| {
            let v: Vec<_> = FULL.iter().map(|&(kk, vv)| if kk == k { (kk, val) } else { (kk, vv) }).collect();
            env(&v)
        };
        for bad in ["-x", "a b", "a/b", "_a"] {
            assert_eq!(with("CNI_CONTAINERID", bad).unwrap_err().code, 4, "{bad}");
        }
        for bad in ["eth0:1", "a/b", ".", "..", "a234567890123456", "e th"] {
            assert_eq!(with("CNI_IFNAME", bad).unwrap_err().code, 4, "{bad}");
        }
        assert_eq!(with("CNI_ARGS", "novalue").unwrap_err().code, 4);
        assert_eq!(with("CNI_ARGS", "=v").unwrap_err().code, 4);
        assert!(with("CNI_ARGS", "A=;B=c=d").is_ok());
    }

    #[test]
    fn conf_parse() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.0.0","name":"net1","type":"berth-bridge","bridge":"cni0",
                 "ipam":{"type":"berth-ipam","subnet":"10.0.0.0/24"},
                 "prevResult":{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/24"}]},
                 "runtimeConfig":{"portMappings":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert_eq!(c.plugin_type, "berth-bridge");
        assert_eq!(c.ipam_type().unwrap(), "berth-ipam");
        assert_eq!(c.raw["bridge"], "cni0");
        assert_eq!(c.prev_result.unwrap().ips[0].address.to_string(), "10.0.0.2/24");
        assert!(c.runtime_config["portMappings"].is_array());
    }

    #[test]
    fn conf_errors() {
        let code = |s: &str| NetConf::parse(s.as_bytes()).unwrap_err().code;
        assert_eq!(code(""), 6);
        assert_eq!(code("{"), 6);
        assert_eq!(code("{\"name\":\"a\",}"), 6);
        assert_eq!(code("[1]"), 6);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","type":"x"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"a b","type":"x"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":1,"name":"n","type":"x"}"#), 7);
        let e = NetConf::parse(br#"{"cniVersion":"1.0.0","name":5,"type":"x"}"#).unwrap_err();
        assert!(e.msg.contains("\"name\""), "{e}");
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":"host-local"}"#), 7);
        assert_eq!(code(r#"{"cniVersion":"1.0.0","name":"n","type":"x","prevResult":{"ips":[{"address":"bad"}]}}"#), 7);
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"x"}"#).unwrap();
        assert_eq!(c.ipam_type().unwrap_err().code, 7);
    }

    #[test]
    fn attachments() {
        let c = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"x","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}"#,
        )
        .unwrap();
        assert_eq!(c.valid_attachments().unwrap(), vec![Attachment { container_id: "a".into(), ifname: "eth0".into() }]);
        let c = NetConf::parse(br#"{"cniVersion":"1.1.0","name":"n","type":"x","cni.dev/valid-attachments":[{"id":1}]}"#).unwrap();
        assert_eq!(c.valid_attachments().unwrap_err().code, 7);
    }
}
