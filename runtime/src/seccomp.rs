//! `linux.seccomp`: compile the OCI profile into a BPF program and install it.
//!
//! Dependency: the `libseccomp` crate over Debian's libseccomp 2.5.4, linked statically
//! (`.cargo/config.toml` sets `LIBSECCOMP_LINK_TYPE=static`, so the static `berth` needs
//! no shared library). Why not a pure-Rust compiler: `seccompiler` has no NOTIFY action
//! and no syscall tables for foreign architectures, and writing our own means carrying
//! name→number tables for every architecture of the spec plus the multiplexed-syscall
//! (socketcall/ipc) and x32 rules libseccomp already gets right. Cost, measured with
//! `scripts/bench runtime`: see runtime/README.md.
//!
//! libseccomp is used only as a compiler: the filter is exported as BPF ([`compile`],
//! called while the channel to the runtime is still open, so warnings reach the log) and
//! loaded with a raw `seccomp(2)` ([`Filter::install`]). That gives us every filter flag
//! the kernel has, including `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` that libseccomp
//! 2.5.4 lacks, leaves no_new_privs to `process.noNewPrivileges`, and makes the
//! install itself one system call with no allocation, so it can sit right before execve.
//!
//! Where it is installed (process/init.rs, process/setup.rs): without no_new_privs the
//! kernel wants CAP_SYS_ADMIN, so the filter goes on before the user and capabilities
//! change (as runc); with no_new_privs, right before execve, after the exec fifo and
//! the startContainer hooks — except a NOTIFY filter of a container's init, which goes
//! on before the init reports ready, so `create` can hand the listener fd to
//! `listenerPath` (and fail if it cannot, as the spec requires).

use std::io::{Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompFilterFlag as F, LinuxSeccompOperator as Op};

use crate::{Error, Result};

/// Kernel filter flags (linux/seccomp.h).
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_NEW_LISTENER: u32 = 8;
const FLAG_TSYNC_ESRCH: u32 = 16;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// The names `berth features` reports.
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP",
];
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE",
];
pub const ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64",
];
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Does this kernel know the filter flag? seccomp(2) checks the flags before it reads
/// the program, so a NULL program answers EFAULT for a known flag and EINVAL otherwise.
fn kernel_has_flag(flag: u32) -> bool {
    let flag = if flag == FLAG_WAIT_KILLABLE_RECV { flag | FLAG_NEW_LISTENER } else { flag };
    // SAFETY: a NULL program is never dereferenced by the kernel past the flag checks.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, 1, flag, std::ptr::null::<libc::sock_fprog>()) };
    r < 0 && nix::errno::Errno::last() == nix::errno::Errno::EFAULT
}

fn flag_bit(f: F) -> u32 {
    match f {
        F::SeccompFilterFlagTsync => FLAG_TSYNC,
        F::SeccompFilterFlagLog => FLAG_LOG,
        F::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
        F::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
    }
}

/// The flags of [`FLAGS`] this kernel supports (`berth features`).
#[cold]
#[inline(never)]
pub fn supported_flags() -> Vec<&'static str> {
    let all = [F::SeccompFilterFlagLog, F::SeccompFilterFlagSpecAllow, F::SeccompFilterFlagTsync, F::SeccompFilterFlagWaitKillableRecv];
    FLAGS.iter().zip(all).filter(|(_, f)| kernel_has_flag(flag_bit(*f))).map(|(n, _)| *n).collect()
}

/// A compiled profile, ready to load.
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: u32,
    /// Warnings for the log (unknown syscall names).
    pub warnings: Vec<String>,
}

/// The config's errors, checked at `create` before anything runs.
#[cold]
#[inline(never)]
pub fn validate(s: &LinuxSeccomp) -> Result<()> {
    let bad = |m: String| Err(Error::Config(format!("linux.seccomp: {m}")));
    if s.default_action() == A::ScmpActNotify {
        return bad("defaultAction SCMP_ACT_NOTIFY: the notify action needs syscall names (the runtime's own calls would block)".into());
    }
    for a in s.architectures().as_deref().unwrap_or_default() {
        arch(*a)?;
    }
    let rules = s.syscalls().as_deref().unwrap_or_default();
    let notify = rules.iter().any(|r| r.action() == A::ScmpActNotify);
    if notify && s.listener_path().as_ref().is_none_or(|p| p.as_os_str().is_empty()) {
        return bad("SCMP_ACT_NOTIFY needs listenerPath (where the runtime sends the listener fd)".into());
    }
    if let Some(p) = s.listener_path() {
        if notify && !p.is_absolute() {
            return bad(format!("listenerPath {p:?} must be absolute"));
        }
    }
    let flags = s.flags().as_deref().unwrap_or_default();
    if flags.contains(&F::SeccompFilterFlagWaitKillableRecv) && !notify {
        return bad("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule".into());
    }
    for (i, r) in rules.iter().enumerate() {
        if r.names().is_empty() {
            return bad(format!("syscalls[{i}]: names must not be empty"));
        }
        // The process tells the runtime about its listener with send(2) (sendto) after
        // the filter is on: a notification for that call would wait for nobody.
        if r.action() == A::ScmpActNotify && r.names().iter().any(|n| n == "sendto" || n == "send") {
            return bad(format!(
                "syscalls[{i}]: SCMP_ACT_NOTIFY on sendto: berth hands the listener over with it after the filter is on, so this would deadlock"
            ));
        }
        for a in r.args().as_deref().unwrap_or_default() {
            if a.index() > 5 {
                return bad(format!("syscalls[{i}]: argument index {} out of range 0..5", a.index()));
            }
        }
    }
    Ok(())
}

fn arch(a: Arch) -> Result<ScmpArch> {
    Ok(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        // libseccomp 2.5.4 has no tables for these.
        a @ (Arch::ScmpArchLoongarch64 | Arch::ScmpArchM68k | Arch::ScmpArchSh | Arch::ScmpArchSheb) => {
            return Err(Error::Unsupported(format!(
                "linux.seccomp.architectures: {} is not supported by this berth build (libseccomp 2.5.4)",
                serde_json::to_value(a).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            )))
        }
    })
}

fn action(a: A, errno: Option<u32>) -> ScmpAction {
    let errno = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno),
        A::ScmpActTrace => ScmpAction::Trace(errno as u16),
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    }
}

fn op(o: Op, value: u64) -> ScmpCompareOp {
    match o {
        Op::ScmpCmpNe => ScmpCompareOp::NotEqual,
        Op::ScmpCmpLt => ScmpCompareOp::Less,
        Op::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        Op::ScmpCmpEq => ScmpCompareOp::Equal,
        Op::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        Op::ScmpCmpGt => ScmpCompareOp::Greater,
        Op::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

fn lib_err(what: impl std::fmt::Display, e: libseccomp::error::SeccompError) -> Error {
    Error::Config(format!("linux.seccomp: {what}: {e}"))
}

/// Compile the profile into BPF (libseccomp as a compiler only; nothing is loaded).
#[cold]
#[inline(never)]
pub fn compile(s: &LinuxSeccomp) -> Result<Filter> {
    validate(s)?;
    let mut warnings = Vec::new();
    let default = action(s.default_action(), s.default_errno_ret());
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| lib_err("defaultAction", e))?;
    for a in s.architectures().as_deref().unwrap_or_default() {
        let a = arch(*a)?;
        if a != ScmpArch::Native && !ctx.is_arch_present(a).map_err(|e| lib_err("architecture", e))? {
            ctx.add_arch(a).map_err(|e| lib_err(format_args!("architecture {a:?}"), e))?;
        }
    }
    let mut notify = false;
    for (i, r) in s.syscalls().as_deref().unwrap_or_default().iter().enumerate() {
        let act = action(r.action(), r.errno_ret());
        // libseccomp refuses a rule that repeats the default action; it would change nothing.
        if act == default {
            continue;
        }
        notify |= r.action() == A::ScmpActNotify;
        let args = r.args().as_deref().unwrap_or_default();
        let conds: Vec<ScmpArgCompare> =
            args.iter().map(|a| {
                // OCI: value is the datum, or the mask for MASKED_EQ (then valueTwo is the datum).
                let datum = if a.op() == Op::ScmpCmpMaskedEq { a.value_two().unwrap_or(0) } else { a.value() };
                ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value()), datum)
            }).collect();
        // Two conditions on one argument cannot be ANDed by libseccomp: as runc, each
        // becomes a rule of its own (so they match as OR).
        let mut seen = [false; 6];
        let repeated = args.iter().any(|a| std::mem::replace(&mut seen[a.index().min(5)], true));
        for name in r.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                warnings.push(format!("linux.seccomp.syscalls[{i}]: unknown syscall {name:?} skipped"));
                continue;
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, sc).map(|_| ())
            } else if repeated {
                conds.iter().try_for_each(|c| ctx.add_rule_conditional(act, sc, &[*c]).map(|_| ()))
            } else {
                ctx.add_rule_conditional(act, sc, &conds).map(|_| ())
            };
            res.map_err(|e| lib_err(format_args!("syscalls[{i}] {name}"), e))?;
        }
    }
    let mut flags = if notify { FLAG_NEW_LISTENER } else { 0 };
    for f in s.flags().as_deref().unwrap_or_default() {
        if !kernel_has_flag(flag_bit(*f)) {
            return Err(Error::Unsupported(format!("linux.seccomp.flags: {f} is not supported by this kernel")));
        }
        flags |= flag_bit(*f);
        // With a listener the kernel takes TSYNC only with TSYNC_ESRCH (we are single-threaded).
        if *f == F::SeccompFilterFlagTsync && notify {
            flags |= FLAG_TSYNC_ESRCH;
        }
    }
    Ok(Filter { prog: export(&ctx)?, flags, warnings })
}

fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    // SAFETY: memfd_create with a valid C string; the fd is owned right away.
    let fd = unsafe { libc::memfd_create(c"berth-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::sys("memfd_create", "seccomp filter", nix::errno::Errno::last()));
    }
    // SAFETY: fd is a new descriptor nothing else owns.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&f).map_err(|e| lib_err("export BPF", e))?;
    let mut bytes = Vec::new();
    f.rewind().and_then(|_| f.read_to_end(&mut bytes)).map_err(|e| Error::io("read seccomp BPF", e))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

impl Filter {
    /// Has a NOTIFY rule: installing it returns the listener fd.
    pub fn notify(&self) -> bool {
        self.flags & FLAG_NEW_LISTENER != 0
    }

    /// Load the filter into this thread: one `seccomp(2)`, no allocation.
    #[cold]
    #[inline(never)]
    pub fn install(&self) -> Result<Option<OwnedFd>> {
        let prog = libc::sock_fprog { len: self.prog.len() as u16, filter: self.prog.as_ptr() as *mut _ };
        // SAFETY: prog points at our BPF array, alive for the call; the kernel copies it.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, self.flags, &prog) };
        if r < 0 {
            let e = nix::errno::Errno::last();
            let hint = match e {
                nix::errno::Errno::EINVAL => " (a flag this kernel does not support?)",
                nix::errno::Errno::EACCES => " (needs CAP_SYS_ADMIN or noNewPrivileges)",
                _ => "",
            };
            return Err(Error::sys(format!("seccomp: load filter{hint}"), format_args!("flags {:#x}", self.flags), e));
        }
        // SAFETY: with NEW_LISTENER the return value is a new descriptor that we own.
        Ok(self.notify().then(|| unsafe { OwnedFd::from_raw_fd(r as i32) }))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.prog.len()
    }
}

/// The runtime's side of NOTIFY: connect to `listenerPath`, send the container process
/// state (runtime-spec "container process state") with the listener fd as SCM_RIGHTS.
#[cold]
#[inline(never)]
pub fn send_listener(s: &LinuxSeccomp, state: serde_json::Value, pid: i32, fd: &OwnedFd) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let path = s.listener_path().as_deref().unwrap_or(Path::new(""));
    let msg = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": s.listener_metadata().clone().unwrap_or_default(),
        "state": state,
    });
    let body = serde_json::to_vec(&msg).expect("json");
    let sock = std::os::unix::net::UnixStream::connect(path)
        .map_err(|e| Error::io(format!("seccomp listenerPath {}: connect", path.display()), e))?;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(&body)];
    let n = sendmsg::<UnixAddr>(sock.as_raw_fd(), &iov, &[ControlMessage::ScmRights(&fds)], MsgFlags::MSG_NOSIGNAL, None)
        .map_err(|e| Error::sys("seccomp listenerPath: send state and fd to", path.display(), e))?;
    if n < body.len() {
        use std::io::Write;
        (&sock).write_all(&body[n..]).map_err(|e| Error::io(format!("seccomp listenerPath {}: send state", path.display()), e))?;
    }
    Ok(())
}

/// Runtime side of a launch: the process told us its listener fd; pass it to listenerPath
/// with the container process state (status `creating` for an init, `running` for exec).
#[cold]
#[inline(never)]
pub fn hand_off(l: &crate::process::Launch, pid: i32, fd: i32) -> Result<()> {
    // Our copy of the process' listener (as runc does): pidfd_getfd needs no fd passing
    // code on the channel every launch goes through.
    let pidfd = crate::syscalls::pidfd_open(pid).map_err(|e| Error::sys("pidfd_open", pid, e))?;
    // SAFETY: plain syscall; on success it returns a new close-on-exec descriptor we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(Error::sys("pidfd_getfd: seccomp listener of process", pid, nix::errno::Errno::last()));
    }
    // SAFETY: as above.
    let fd = unsafe { OwnedFd::from_raw_fd(r as i32) };
    let Some(s) = l.spec.linux().as_ref().and_then(|x| x.seccomp().as_ref()) else {
        return Err(Error::Child("seccomp listener fd without linux.seccomp".into()));
    };
    let init = matches!(l.role, crate::process::Role::Init { .. });
    let mut state = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "id": l.id,
        "status": if init { "creating" } else { "running" },
        "bundle": l.bundle,
        "annotations": l.spec.annotations().clone().unwrap_or_default(),
    });
    // The state's pid is the container's (its init's), also when the listener is an
    // exec'd process's.
    state["pid"] = if init { pid } else { l.init_pid.unwrap_or(pid) }.into();
    send_listener(s, state, pid, &fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(v: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    /// Run `f` in a forked child with the filter on; returns its wait status.
    fn in_child(filter: &Filter, f: impl FnOnce() -> i32) -> nix::sys::wait::WaitStatus {
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                let code = match filter.install() {
                    Ok(_) => f(),
                    Err(_) => 99,
                };
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => nix::sys::wait::waitpid(child, None).unwrap(),
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r < 0 { nix::errno::Errno::last_raw() } else { 0 }
    }

    #[test]
    fn errno_rule_and_default() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42 },
                         { "names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO" }]
        })))
        .unwrap();
        assert!(f.len() > 0);
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        let st = in_child(&f, || errno_of(unsafe { libc::syscall(libc::SYS_getppid) }));
        assert_eq!(st, nix::sys::wait::WaitStatus::Exited(st.pid().unwrap(), 42));
    }

    #[test]
    fn operators() {
        // getpriority(which, who): errno 7 when `who` matches the condition.
        let cases = [("SCMP_CMP_EQ", 5, None, 5, true), ("SCMP_CMP_EQ", 5, None, 6, false), ("SCMP_CMP_NE", 5, None, 6, true),
            ("SCMP_CMP_LT", 5, None, 4, true), ("SCMP_CMP_LT", 5, None, 5, false), ("SCMP_CMP_LE", 5, None, 5, true),
            ("SCMP_CMP_GE", 5, None, 5, true), ("SCMP_CMP_GE", 5, None, 4, false), ("SCMP_CMP_GT", 5, None, 6, true),
            ("SCMP_CMP_GT", 5, None, 5, false), ("SCMP_CMP_MASKED_EQ", 0xf0, Some(0x30), 0x3a, true),
            ("SCMP_CMP_MASKED_EQ", 0xf0, Some(0x30), 0x4a, false)];
        for (op, value, two, arg, hit) in cases {
            let mut a = serde_json::json!({ "index": 1, "value": value, "op": op });
            if let Some(t) = two {
                a["valueTwo"] = t.into();
            }
            let f = compile(&profile(serde_json::json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 7, "args": [a] }]
            })))
            .unwrap();
            let st = in_child(&f, || errno_of(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, arg as u64) }));
            let code = match st { nix::sys::wait::WaitStatus::Exited(_, c) => c, s => panic!("{s:?}") };
            assert_eq!(code == 7, hit, "{op} {value} vs {arg}: exit {code}");
        }
    }

    #[test]
    fn repeated_argument_is_or() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 9,
                "args": [{ "index": 1, "value": 3, "op": "SCMP_CMP_EQ" }, { "index": 1, "value": 4, "op": "SCMP_CMP_EQ" }] }]
        })))
        .unwrap();
        for (arg, want) in [(3u64, 9), (4, 9), (5, 0)] {
            let st = in_child(&f, || errno_of(unsafe { libc::syscall(libc::SYS_getpriority, libc::PRIO_PROCESS, arg) }));
            assert_eq!(st, nix::sys::wait::WaitStatus::Exited(st.pid().unwrap(), want), "arg {arg}");
        }
    }

    #[test]
    fn kill_process_and_notify_flag() {
        let f = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS" }]
        })))
        .unwrap();
        let st = in_child(&f, || unsafe { libc::syscall(libc::SYS_getppid) as i32 });
        assert!(matches!(st, nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGSYS, _)), "{st:?}");
        let n = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
            "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_NOTIFY" }]
        })))
        .unwrap();
        assert!(n.notify());
    }

    #[test]
    fn bad_profiles() {
        let bad = |v: serde_json::Value| compile(&profile(v)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }] })).contains("listenerPath"));
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_NOTIFY" })).contains("defaultAction"));
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
            "syscalls": [{ "names": ["sendto"], "action": "SCMP_ACT_NOTIFY" }] })).contains("deadlock"));
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_M68K"] })).contains("M68K"));
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{ "index": 6, "value": 1, "op": "SCMP_CMP_EQ" }] }] }))
        .contains("index"));
        assert!(bad(serde_json::json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"] }))
            .contains("NOTIFY"));
        assert!(serde_json::from_value::<LinuxSeccomp>(serde_json::json!({ "defaultAction": "SCMP_ACT_NOPE" })).is_err());
    }
}
