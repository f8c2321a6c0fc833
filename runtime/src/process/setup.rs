//! The last steps before exec, shared by a container's init and an exec'd process:
//! limits, scheduling, LSM label, user and groups, capabilities, no_new_privs, the
//! program's path and environment, the descriptors it inherits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use oci_spec::runtime::{LinuxSchedulerFlag, LinuxSchedulerPolicy, Process, Spec};

use crate::error::SysContext;
use crate::{Error, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// "0-3,7" → [0,1,2,3,7]
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>> {
    let bad = || Error::Config(format!("cpu list {s:?}: expected e.g. \"0-3,7\""));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Limits, personality, scheduler, I/O priority: set while still privileged.
pub fn attributes(spec: &Spec, p: &Process) -> Result<()> {
    crate::rlimits::apply(p.rlimits().as_deref().unwrap_or_default())?;
    if let Some(pers) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        let domain: u64 = match pers.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
        };
        if pers.flags().as_ref().is_some_and(|f| !f.is_empty()) {
            return Err(Error::Unsupported("linux.personality.flags: no flags are supported".into()));
        }
        crate::syscalls::personality(domain).ctx("personality", domain)?;
    }
    if let Some(s) = p.scheduler() {
        let policy = match s.policy() {
            LinuxSchedulerPolicy::SchedOther => libc::SCHED_OTHER,
            LinuxSchedulerPolicy::SchedFifo => libc::SCHED_FIFO,
            LinuxSchedulerPolicy::SchedRr => libc::SCHED_RR,
            LinuxSchedulerPolicy::SchedBatch => libc::SCHED_BATCH,
            LinuxSchedulerPolicy::SchedIso => 4,
            LinuxSchedulerPolicy::SchedIdle => libc::SCHED_IDLE,
            LinuxSchedulerPolicy::SchedDeadline => 6,
        };
        let mut flags = 0u64;
        for f in s.flags().as_deref().unwrap_or_default() {
            flags |= match f {
                LinuxSchedulerFlag::SchedResetOnFork => 0x01,
                LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
                LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
                LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
                LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
                LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
                LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
            };
        }
        let mut attr = crate::syscalls::SchedAttr {
            sched_policy: policy as u32,
            sched_flags: flags,
            sched_nice: s.nice().unwrap_or(0),
            sched_priority: s.priority().unwrap_or(0).max(0) as u32,
            sched_runtime: s.runtime().unwrap_or(0),
            sched_deadline: s.deadline().unwrap_or(0),
            sched_period: s.period().unwrap_or(0),
            ..Default::default()
        };
        crate::syscalls::sched_setattr(&mut attr).ctx("sched_setattr", format_args!("policy {:?}", s.policy()))?;
    }
    if let Some(io) = p.io_priority() {
        let class = match io.class() {
            oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
            oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
            oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
        };
        if !(0..=7).contains(&io.priority()) {
            return Err(Error::Config(format!("process.ioPriority.priority {}: must be 0..7", io.priority())));
        }
        crate::syscalls::ioprio_set(class, io.priority()).ctx("ioprio_set", format_args!("class {class} level {}", io.priority()))?;
    }
    Ok(())
}

/// User, groups, working directory, capabilities and no_new_privs, in the order that
/// keeps the needed privileges until the last moment.
pub fn credentials(p: &Process) -> Result<Vec<String>> {
    let caps = crate::capabilities::from_spec(p.capabilities().as_ref())?;
    crate::capabilities::drop_bounding(caps.bounding)?;
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }).ctx("prctl", "PR_SET_KEEPCAPS")?;
    let u = p.user();
    let setgroups_allowed = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true);
    if setgroups_allowed {
        let groups: Vec<nix::unistd::Gid> = u.additional_gids().as_deref().unwrap_or_default().iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&groups).ctx("setgroups", format_args!("{:?}", u.additional_gids()))?;
    } else if u.additional_gids().as_ref().is_some_and(|g| !g.is_empty()) {
        return Err(Error::Config("process.user.additionalGids: setgroups is denied in this user namespace".into()));
    }
    let (uid, gid) = (nix::unistd::Uid::from_raw(u.uid()), nix::unistd::Gid::from_raw(u.gid()));
    nix::unistd::setresgid(gid, gid, gid).ctx("setresgid", u.gid())?;
    nix::unistd::setresuid(uid, uid, uid).ctx("setresuid", u.uid())?;
    nix::unistd::chdir(p.cwd()).ctx("chdir to process.cwd", p.cwd().display())?;
    // The working directory must be inside the container's root (a leaked host fd used
    // as cwd would show as "(unreachable)"): the defence against runc's CVE-2024-21626.
    match nix::unistd::getcwd() {
        Ok(d) if d.is_absolute() => {}
        _ => return Err(Error::Container(format!("process.cwd {}: not reachable from the container's root", p.cwd().display()))),
    }
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) }).ctx("prctl", "PR_SET_KEEPCAPS")?;
    let mut warnings = crate::capabilities::apply(&caps)?;
    if !caps.unknown.is_empty() {
        warnings.push(format!("capabilities unknown to this kernel left out: {}", caps.unknown.join(", ")));
    }
    if p.no_new_privileges() == Some(true) {
        // SAFETY: prctl with integer arguments.
        Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).ctx("prctl", "PR_SET_NO_NEW_PRIVS")?;
    }
    Ok(warnings)
}

/// The environment of the program: the process env, HOME if missing, LISTEN_* if asked.
pub fn environment(p: &Process, listen_fds: u32) -> Vec<String> {
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(p.user().uid())));
    }
    if listen_fds > 0 {
        env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
        env.push(format!("LISTEN_FDS={listen_fds}"));
        env.push("LISTEN_PID=1".into());
    }
    env
}

fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) {
            return f[5].to_string();
        }
    }
    "/".into()
}

/// Resolve the program as execvp would, in the container, with the process' PATH.
pub fn find_program(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        check_exec(&p).map_err(|e| Error::Container(format!("exec {arg0:?}: {e}")))?;
        return Ok(p);
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let cand = Path::new(if dir.is_empty() { "." } else { dir }).join(arg0);
        if check_exec(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(Error::Container(format!("exec: {arg0:?}: executable file not found in $PATH")))
}

fn check_exec(p: &Path) -> std::result::Result<(), Errno> {
    let meta = std::fs::metadata(p).map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if meta.is_dir() {
        return Err(Errno::EACCES);
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK)
}

/// Descriptors: 3..3+n stay open for the program, everything above closes on exec.
pub fn descriptors(preserve: u32) -> Result<()> {
    for fd in 3..3 + preserve as i32 {
        // SAFETY: F_SETFD on a descriptor number; a closed one just fails with EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
    crate::syscalls::cloexec_from(3 + preserve).ctx("close_range", "inherited descriptors")
}

/// execve; returns only on failure. `last` runs right before it, after every allocation
/// (it installs the seccomp filter, so as few of our own syscalls as possible follow).
pub fn exec(path: &Path, args: &[String], env: &[String], last: Option<&dyn Fn() -> Result<()>>) -> Error {
    let c = |s: &str| CString::new(s).unwrap_or_default();
    let path_c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = args.iter().map(|a| c(a)).collect();
    let envp: Vec<CString> = env.iter().map(|e| c(e)).collect();
    let argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    if let Some(Err(e)) = last.map(|f| f()) {
        return e;
    }
    // SAFETY: NUL-terminated arrays of pointers into CStrings that outlive the call.
    unsafe { libc::execve(path_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let e = nix::errno::Errno::last();
    Error::sys("exec", path.display(), e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("3").unwrap(), vec![3]);
        assert!(parse_cpu_list("2-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
