//! Running another plugin (IPAM delegation): find it in CNI_PATH, run it with the CNI
//! environment and the network config on stdin, read its result or error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};

use crate::spec::{code, CniResult, Command, Env, Error, NetConf};

/// Finds `plugin_type` in the `CNI_PATH` directories (first match wins).
pub fn find_plugin(plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf, Error> {
    if plugin_type.is_empty() || plugin_type.contains('/') || plugin_type == "." || plugin_type == ".." {
        return Err(Error::invalid_config(format!("invalid plugin type {plugin_type:?}")));
    }
    for d in dirs {
        let p = d.join(plugin_type);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    Err(Error::invalid_config(format!("failed to find plugin {plugin_type:?} in CNI_PATH {dirs:?}")))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// `CNI_PATH` of this process, split.
pub fn cni_path() -> Vec<PathBuf> {
    std::env::var("CNI_PATH")
        .map(|p| p.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect())
        .unwrap_or_default()
}

/// Runs plugin `plugin_type` (found in this process's CNI_PATH) with `CNI_COMMAND=command`,
/// the rest of this process's environment plus `env` overrides, and `stdin`.
/// Returns its stdout as JSON (Null when it printed nothing). When it fails, its error
/// keeps the delegate's code and message; a failure without error JSON is code 999
/// naming the plugin.
pub fn exec_plugin(plugin_type: &str, command: &str, env: &[(&str, &str)], stdin: &[u8]) -> Result<serde_json::Value, Error> {
    let path = find_plugin(plugin_type, &cni_path())?;
    exec_path(&path, command, env, stdin)
}

/// [`exec_plugin`] with the plugin's path given.
pub fn exec_path(path: &Path, command: &str, env: &[(&str, &str)], stdin: &[u8]) -> Result<serde_json::Value, Error> {
    let name = path.display();
    let mut child = Proc::new(path)
        .env("CNI_COMMAND", command)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::internal(format!("cannot run plugin {name}: {e}")))?;
    let mut input = child.stdin.take().expect("piped stdin");
    // Configs are small, but a writer thread rules out a pipe deadlock whatever the size.
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let out = child.wait_with_output().map_err(|e| Error::internal(format!("waiting for plugin {name}: {e}")))?;
    // A plugin may exit without reading stdin (e.g. VERSION): EPIPE there is no error.
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if stdout.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        return serde_json::from_str(&stdout).map_err(|e| Error::new(code::DECODE, format!("plugin {name} printed invalid JSON: {e}")).details(stdout.trim().to_string()));
    }
    if let Ok(e) = serde_json::from_str::<Error>(&stdout) {
        return Err(e);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(Error::internal(format!("plugin {name} failed ({})", out.status)).details(
        format!("stdout: {} stderr: {}", stdout.trim(), stderr.trim()),
    ))
}

/// Delegates `command` to the IPAM plugin named in `conf.ipam.type`, giving it the whole
/// network config (as the spec says). ADD returns the parsed result; the others None.
///
/// When that plugin is berth-ipam (found in CNI_PATH like any other), its code runs in
/// this process instead of an exec: same library, same store and lock, same result, one
/// process start less per call (the exec was a third of an ADD here).
pub fn delegate(conf: &NetConf, command: Command) -> Result<Option<CniResult>, Error> {
    let t = conf.ipam_type()?;
    let path = find_plugin(t, &cni_path())?;
    if t == crate::ipam::PLUGIN_NAME {
        return delegate_in_process(conf, command);
    }
    let stdin = serde_json::to_vec(&conf.raw).expect("config serialises");
    let out = exec_path(&path, command.as_str(), &[], &stdin)?;
    match command {
        Command::Add => CniResult::parse(&out, &format!("result of IPAM plugin {t:?}")).map(Some),
        _ => Ok(None),
    }
}

fn delegate_in_process(conf: &NetConf, command: Command) -> Result<Option<CniResult>, Error> {
    use crate::skel::Plugin;
    let ipam = crate::ipam::Ipam;
    // The delegate sees this process's CNI environment with CNI_COMMAND = `command`.
    let env = Env::from_lookup(|k| if k == "CNI_COMMAND" { Some(command.as_str().to_string()) } else { std::env::var(k).ok() })?;
    crate::spec::version::check_supported(&conf.cni_version, ipam.versions())?;
    match command {
        Command::Add => {
            let r = ipam.add(&env, conf)?;
            r.validate("result of IPAM plugin \"berth-ipam\"")?;
            Ok(Some(r))
        }
        Command::Del => ipam.del(&env, conf).map(|_| None),
        Command::Check => ipam.check(&env, conf).map(|_| None),
        Command::Status => ipam.status(conf).map(|_| None),
        Command::Gc => ipam.gc(conf, &conf.valid_attachments()?).map(|_| None),
        Command::Version => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-cni-invoke-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn finds_in_order() {
        let a = tmpdir("a");
        let b = tmpdir("b");
        script(&b, "p", "true");
        std::fs::write(a.join("p"), "not executable").unwrap();
        assert_eq!(find_plugin("p", &[a.clone(), b.clone()]).unwrap(), b.join("p"));
        let e = find_plugin("q", &[a.clone(), b.clone()]).unwrap_err();
        assert!(e.msg.contains("\"q\""), "{e}");
        assert!(find_plugin("../p", &[a.clone()]).is_err());
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn runs_and_maps_errors() {
        let d = tmpdir("run");
        // Echoes its command and stdin back as JSON.
        script(&d, "ok", r#"in=$(cat); printf '{"cmd":"%s","id":"%s","in":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$in""#);
        script(&d, "fails", r#"cat >/dev/null; echo '{"cniVersion":"1.0.0","code":11,"msg":"range full","details":"10.0.0.0/30"}'; exit 1"#);
        script(&d, "crashes", "echo oops >&2; exit 3");
        script(&d, "quiet", "exit 0");
        let v = exec_path(&d.join("ok"), "ADD", &[("CNI_CONTAINERID", "c9")], br#"{"a":1}"#).unwrap();
        assert_eq!(v, serde_json::json!({"cmd":"ADD","id":"c9","in":{"a":1}}));
        let e = exec_path(&d.join("fails"), "ADD", &[], b"{}").unwrap_err();
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (11, "range full", "10.0.0.0/30"));
        let e = exec_path(&d.join("crashes"), "ADD", &[], b"{}").unwrap_err();
        assert_eq!(e.code, 999);
        assert!(e.details.contains("oops"), "{e}");
        assert_eq!(exec_path(&d.join("quiet"), "DEL", &[], b"{}").unwrap(), serde_json::Value::Null);
        std::fs::remove_dir_all(d).unwrap();
    }
}
