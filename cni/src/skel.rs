//! The plugin skeleton: reads the environment and stdin, checks versions and
//! commands, dispatches to a [`Plugin`], prints the result or error JSON.

use std::io::{Read, Write};

use crate::spec::{self, code, Command, Env, Error, NetConf, Version};

pub trait Plugin {
    /// e.g. "berth-bridge"; used in messages
    fn name(&self) -> &'static str;
    fn add(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<spec::CniResult, spec::Error>;
    fn del(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<(), spec::Error>;
    fn check(&self, env: &spec::Env, conf: &spec::NetConf) -> Result<(), spec::Error>;
    fn status(&self, _conf: &spec::NetConf) -> Result<(), spec::Error> {
        Ok(())
    }
    /// cni.dev/valid-attachments: [{containerID, ifname}]
    fn gc(&self, conf: &spec::NetConf, valid: &[spec::Attachment]) -> Result<(), spec::Error>;
    /// The cniVersions the plugin speaks (VERSION prints them; others get code 1).
    fn versions(&self) -> &'static [&'static str] {
        spec::SUPPORTED
    }
}

/// Runs one invocation from the process environment and stdin, printing to stdout.
/// Returns the exit code (0, or 1 after printing an error).
pub fn run<P: Plugin>(p: P) -> i32 {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_with(&p, |k| std::env::var(k).ok(), || read_stdin(), &mut out)
}

fn read_stdin() -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf).map_err(|e| Error::io("stdin", e))?;
    Ok(buf)
}

/// [`run`] with the inputs and output given (unit tests call this).
/// `stdin` is read only once the environment is valid.
pub fn run_with<P: Plugin + ?Sized>(
    p: &P,
    env: impl Fn(&str) -> Option<String>,
    stdin: impl FnOnce() -> Result<Vec<u8>, Error>,
    out: &mut dyn Write,
) -> i32 {
    let (version, res) = dispatch(p, env, stdin);
    let json = match res {
        Ok(None) => return 0,
        Ok(Some(j)) => j,
        Err(e) => {
            let _ = writeln!(out, "{}", e.to_json(&version));
            let _ = out.flush();
            return 1;
        }
    };
    match writeln!(out, "{json}").and_then(|_| out.flush()) {
        Ok(()) => 0,
        // Nobody can read an error either; the exit code says it.
        Err(_) => 1,
    }
}

/// Returns the version to print errors in and what to print on success (None: nothing).
fn dispatch<P: Plugin + ?Sized>(
    p: &P,
    env: impl Fn(&str) -> Option<String>,
    stdin: impl FnOnce() -> Result<Vec<u8>, Error>,
) -> (String, Result<Option<serde_json::Value>, Error>) {
    let mut version = spec::CURRENT.to_string();
    let env = match Env::from_lookup(env) {
        Ok(e) => e,
        Err(e) => return (version, Err(e)),
    };
    let input = match stdin() {
        Ok(b) => b,
        Err(e) => return (version, Err(e)),
    };
    if env.command == Command::Version {
        return (version.clone(), Ok(Some(version_info(p, &input))));
    }
    let conf = match NetConf::parse(&input) {
        Ok(c) => c,
        Err(e) => {
            // Answer in the caller's version when it is readable and ours.
            if let Some(v) = serde_json::from_slice::<serde_json::Value>(&input).ok().and_then(|v| v.get("cniVersion")?.as_str().map(String::from)) {
                if p.versions().contains(&v.as_str()) {
                    version = v;
                }
            }
            return (version, Err(e));
        }
    };
    let v = match spec::version::check_supported(&conf.cni_version, p.versions()) {
        Ok(v) => v,
        Err(e) => return (version, Err(e)),
    };
    version = conf.cni_version.clone();
    let res = (|| -> Result<Option<serde_json::Value>, Error> {
        let not_in = |what: &str| {
            Error::new(code::INCOMPATIBLE_VERSION, format!("config version {} does not allow {what}", conf.cni_version))
                .details(format!("{what} needs cniVersion {} or later", if what == "CHECK" { "0.4.0" } else { "1.1.0" }))
        };
        match env.command {
            Command::Add => {
                let r = p.add(&env, &conf)?;
                r.validate(&format!("{} result", p.name()))?;
                Ok(Some(r.to_json(&conf.cni_version)))
            }
            Command::Del => p.del(&env, &conf).map(|_| None),
            Command::Check if !v.has_check() => Err(not_in("CHECK")),
            Command::Check => p.check(&env, &conf).map(|_| None),
            Command::Status | Command::Gc if !v.has_gc_status() => Err(not_in(env.command.as_str())),
            Command::Status => p.status(&conf).map(|_| None),
            Command::Gc => {
                let valid = conf.valid_attachments()?;
                p.gc(&conf, &valid).map(|_| None)
            }
            Command::Version => unreachable!("handled above"),
        }
    })();
    (version, res)
}

/// `{"cniVersion", "supportedVersions"}`; cniVersion echoes the caller's when it is ours.
fn version_info<P: Plugin + ?Sized>(p: &P, input: &[u8]) -> serde_json::Value {
    let asked = serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(String::from))
        .filter(|v| p.versions().contains(&v.as_str()) && Version::parse(v).is_some());
    serde_json::json!({
        "cniVersion": asked.unwrap_or_else(|| spec::CURRENT.to_string()),
        "supportedVersions": p.versions(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Attachment, CniResult, IpConfig};
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Records what it was called with; ADD returns one address.
    #[derive(Default)]
    struct Rec {
        calls: RefCell<Vec<String>>,
        fail: Option<Error>,
    }

    impl Plugin for Rec {
        fn name(&self) -> &'static str {
            "rec"
        }
        fn add(&self, env: &Env, _conf: &NetConf) -> Result<CniResult, Error> {
            self.calls.borrow_mut().push(format!("ADD {}", env.container_id));
            if let Some(e) = &self.fail {
                return Err(e.clone());
            }
            Ok(CniResult {
                ips: vec![IpConfig { address: "10.0.0.2/24".parse().unwrap(), gateway: Some("10.0.0.1".parse().unwrap()), interface: None }],
                ..Default::default()
            })
        }
        fn del(&self, env: &Env, _conf: &NetConf) -> Result<(), Error> {
            self.calls.borrow_mut().push(format!("DEL {}", env.container_id));
            Ok(())
        }
        fn check(&self, _env: &Env, _conf: &NetConf) -> Result<(), Error> {
            self.calls.borrow_mut().push("CHECK".into());
            Ok(())
        }
        fn status(&self, _conf: &NetConf) -> Result<(), Error> {
            self.calls.borrow_mut().push("STATUS".into());
            Ok(())
        }
        fn gc(&self, _conf: &NetConf, valid: &[Attachment]) -> Result<(), Error> {
            self.calls.borrow_mut().push(format!("GC {}", valid.len()));
            Ok(())
        }
    }

    fn call(p: &Rec, cmd: &str, stdin: &str) -> (i32, Value) {
        let mut m: HashMap<&str, &str> =
            [("CNI_CONTAINERID", "c1"), ("CNI_NETNS", "/proc/self/ns/net"), ("CNI_IFNAME", "eth0"), ("CNI_PATH", "/nowhere")].into();
        m.insert("CNI_COMMAND", cmd);
        call_env(p, &m, stdin)
    }

    fn call_env(p: &Rec, m: &HashMap<&str, &str>, stdin: &str) -> (i32, Value) {
        let mut out = Vec::new();
        let input = stdin.as_bytes().to_vec();
        let rc = run_with(p, |k| m.get(k).map(|v| v.to_string()), || Ok(input), &mut out);
        let s = String::from_utf8(out).unwrap();
        let v = if s.is_empty() { Value::Null } else { serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}")) };
        (rc, v)
    }

    fn conf(v: &str) -> String {
        json!({"cniVersion": v, "name": "net", "type": "rec"}).to_string()
    }

    #[test]
    fn add_in_every_version() {
        for v in spec::SUPPORTED {
            let p = Rec::default();
            let (rc, out) = call(&p, "ADD", &conf(v));
            assert_eq!(rc, 0, "{out}");
            assert_eq!(out["cniVersion"], *v);
            assert_eq!(out["ips"][0]["address"], "10.0.0.2/24");
            assert_eq!(out["ips"][0].get("version").is_some(), v.starts_with("0."), "{v}: {out}");
            assert_eq!(*p.calls.borrow(), vec!["ADD c1".to_string()]);
        }
    }

    #[test]
    fn del_prints_nothing() {
        let p = Rec::default();
        assert_eq!(call(&p, "DEL", &conf("0.3.0")), (0, Value::Null));
        assert_eq!(*p.calls.borrow(), vec!["DEL c1".to_string()]);
    }

    #[test]
    fn check_gc_status_gated_by_version() {
        for (cmd, ok_from) in [("CHECK", "0.4.0"), ("GC", "1.1.0"), ("STATUS", "1.1.0")] {
            for v in spec::SUPPORTED {
                let p = Rec::default();
                let (rc, out) = call(&p, cmd, &conf(v));
                if Version::parse(v) >= Version::parse(ok_from) {
                    assert_eq!((rc, &out), (0, &Value::Null), "{cmd} {v}");
                    assert_eq!(p.calls.borrow().len(), 1);
                } else {
                    assert_eq!(rc, 1, "{cmd} {v}");
                    assert_eq!(out["code"], 1, "{cmd} {v}: {out}");
                    assert_eq!(out["cniVersion"], *v);
                    assert!(out["msg"].as_str().unwrap().contains(cmd));
                    assert!(p.calls.borrow().is_empty());
                }
            }
        }
    }

    #[test]
    fn gc_gets_attachments() {
        let p = Rec::default();
        let c = json!({"cniVersion":"1.1.0","name":"n","type":"rec",
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth0"}]});
        let m: HashMap<&str, &str> = [("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")].into();
        assert_eq!(call_env(&p, &m, &c.to_string()).0, 0);
        assert_eq!(*p.calls.borrow(), vec!["GC 2".to_string()]);
    }

    #[test]
    fn version_command() {
        let p = Rec::default();
        let m: HashMap<&str, &str> = [("CNI_COMMAND", "VERSION")].into();
        let (rc, out) = call_env(&p, &m, "");
        assert_eq!(rc, 0);
        assert_eq!(out, json!({"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}));
        let (_, out) = call_env(&p, &m, r#"{"cniVersion":"0.4.0"}"#);
        assert_eq!(out["cniVersion"], "0.4.0");
        let (_, out) = call_env(&p, &m, r#"{"cniVersion":"9.9.9"}"#);
        assert_eq!(out["cniVersion"], "1.1.0");
    }

    #[test]
    fn errors_as_json() {
        let p = Rec::default();
        let (rc, out) = call(&p, "ADD", "{nope");
        assert_eq!((rc, out["code"].as_u64()), (1, Some(6)));
        assert_eq!(out["cniVersion"], "1.1.0");
        assert!(out["msg"].as_str().unwrap().contains("decode"));

        let (rc, out) = call(&p, "ADD", r#"{"cniVersion":"0.4.0","type":"rec"}"#);
        assert_eq!((rc, out["code"].as_u64()), (1, Some(7)));
        assert_eq!(out["cniVersion"], "0.4.0");

        let (rc, out) = call(&p, "ADD", &conf("0.2.0"));
        assert_eq!((rc, out["code"].as_u64()), (1, Some(1)));
        assert!(out["details"].as_str().unwrap().contains("0.2.0"));

        let (rc, out) = call(&p, "ADD", r#"{"name":"n","type":"rec"}"#);
        assert_eq!((rc, out["code"].as_u64()), (1, Some(1)));

        let m: HashMap<&str, &str> = [("CNI_COMMAND", "ADD")].into();
        let (rc, out) = call_env(&p, &m, &conf("1.0.0"));
        assert_eq!((rc, out["code"].as_u64()), (1, Some(4)));
        assert!(p.calls.borrow().is_empty());

        let p = Rec { fail: Some(Error::new(11, "busy").details("later")), ..Default::default() };
        let (rc, out) = call(&p, "ADD", &conf("1.0.0"));
        assert_eq!(rc, 1);
        assert_eq!(out, json!({"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}));
    }

    #[test]
    fn stdin_not_read_when_env_invalid() {
        let p = Rec::default();
        let mut out = Vec::new();
        let rc = run_with(&p, |_| None, || panic!("stdin read"), &mut out);
        assert_eq!(rc, 1);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["code"], 4);
    }
}
