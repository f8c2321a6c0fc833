//! Parsing config.json (and exec's process.json) into oci-spec's types.
//!
//! Not through `Spec`'s own `Deserialize`: its `process.execCPUAffinity` validation
//! compiles a regular expression, which links the `regex` crate (~400 KiB of code) into
//! a binary whose resident size is a benchmark target (runtime/README.md). The mirror
//! types below read the same JSON — the oci-spec types for every part but `process` —
//! and the CPU lists are checked by berth's own parser instead.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{
    ExecCPUAffinity, Hooks, Linux, LinuxCapabilities, LinuxIOPriority, Mount, PosixRlimit, Process, Root, Scheduler, Spec, User,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct SpecDe {
    #[serde(default, rename = "ociVersion")]
    version: String,
    #[serde(default)]
    root: Option<Root>,
    #[serde(default)]
    mounts: Option<Vec<Mount>>,
    #[serde(default)]
    process: Option<ProcessDe>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    domainname: Option<String>,
    #[serde(default)]
    hooks: Option<Hooks>,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    linux: Option<Linux>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessDe {
    #[serde(default)]
    terminal: Option<bool>,
    #[serde(default)]
    console_size: Option<oci_spec::runtime::Box>,
    user: User,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    command_line: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    cwd: PathBuf,
    #[serde(default)]
    capabilities: Option<LinuxCapabilities>,
    #[serde(default)]
    rlimits: Option<Vec<PosixRlimit>>,
    #[serde(default)]
    no_new_privileges: Option<bool>,
    #[serde(default)]
    apparmor_profile: Option<String>,
    #[serde(default)]
    oom_score_adj: Option<i32>,
    #[serde(default)]
    selinux_label: Option<String>,
    #[serde(default)]
    io_priority: Option<LinuxIOPriority>,
    #[serde(default)]
    scheduler: Option<Scheduler>,
    #[serde(default, rename = "execCPUAffinity")]
    exec_cpu_affinity: Option<CpuAffinityDe>,
}

#[derive(Deserialize)]
struct CpuAffinityDe {
    #[serde(default)]
    initial: Option<String>,
    #[serde(default, rename = "final")]
    last: Option<String>,
}

fn cpu_list(s: Option<String>) -> Result<Option<String>, String> {
    match s {
        Some(s) => crate::process::setup::parse_cpu_list(&s).map(|_| Some(s)).map_err(|e| format!("process.execCPUAffinity: {e}")),
        None => Ok(None),
    }
}

impl ProcessDe {
    fn into_oci(self) -> Result<Process, String> {
        let mut p = Process::default();
        p.set_terminal(self.terminal)
            .set_console_size(self.console_size)
            .set_user(self.user)
            .set_args(self.args)
            .set_env(self.env)
            .set_cwd(self.cwd)
            .set_capabilities(self.capabilities)
            .set_rlimits(self.rlimits)
            .set_no_new_privileges(self.no_new_privileges)
            .set_apparmor_profile(self.apparmor_profile)
            .set_oom_score_adj(self.oom_score_adj)
            .set_selinux_label(self.selinux_label)
            .set_io_priority(self.io_priority)
            .set_scheduler(self.scheduler);
        *p.command_line_mut() = self.command_line;
        let aff = match self.exec_cpu_affinity {
            Some(a) => {
                let mut e = ExecCPUAffinity::default();
                e.set_initial(cpu_list(a.initial)?).set_cpu_affinity_final(cpu_list(a.last)?);
                Some(e)
            }
            None => None,
        };
        p.set_exec_cpu_affinity(aff);
        Ok(p)
    }
}

/// A config.json's text → Spec. Errors carry serde_json's line and column.
pub fn parse_spec(text: &str) -> Result<Spec, String> {
    let de: SpecDe = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut s = Spec::default();
    let process = de.process.map(ProcessDe::into_oci).transpose()?;
    s.set_version(de.version)
        .set_root(de.root)
        .set_mounts(de.mounts)
        .set_process(process)
        .set_hostname(de.hostname)
        .set_domainname(de.domainname)
        .set_hooks(de.hooks)
        .set_annotations(de.annotations)
        .set_linux(de.linux);
    Ok(s)
}

/// The serde_json error of a config's text, if the failure is a JSON/type one
/// (for naming the field).
pub fn json_error(text: &str) -> Option<serde_json::Error> {
    serde_json::from_str::<SpecDe>(text).err()
}

/// exec's `--process` file → Process.
pub fn parse_process(bytes: &[u8]) -> Result<Process, String> {
    let de: ProcessDe = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    de.into_oci()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_part_and_checks_cpu_lists() {
        let text = r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"hostname":"h","annotations":{"a":"b"},
            "process":{"user":{"uid":1,"gid":2},"cwd":"/","args":["sh"],"terminal":true,"consoleSize":{"height":3,"width":4},
                       "execCPUAffinity":{"initial":"0-1","final":"1"},"rlimits":[{"type":"RLIMIT_NOFILE","soft":1,"hard":2}]},
            "linux":{"namespaces":[{"type":"pid"}]},"mounts":[{"destination":"/proc","type":"proc"}]}"#;
        let s = parse_spec(text).unwrap();
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.user().uid(), 1);
        assert_eq!(p.console_size().unwrap().width(), 4);
        assert_eq!(p.exec_cpu_affinity().as_ref().unwrap().cpu_affinity_final().as_deref(), Some("1"));
        assert_eq!(p.rlimits().as_ref().unwrap().len(), 1);
        assert_eq!(s.hostname().as_deref(), Some("h"));
        assert_eq!(s.mounts().as_ref().unwrap().len(), 1);
        let bad = text.replace("\"0-1\"", "\"0-x\"");
        assert!(parse_spec(&bad).unwrap_err().contains("execCPUAffinity"));
        assert!(parse_spec(r#"{"process":{"cwd":"/"}}"#).unwrap_err().contains("user"));
    }
}
