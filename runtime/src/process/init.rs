//! Stage 3: the container process itself (the init of a new container, or a process
//! exec'd into a running one). Everything here runs in the container's namespaces.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxNamespaceType;

use super::channel::{Channel, Msg};
use super::{setup, Launch, Role};
use crate::error::SysContext;
use crate::hooks::{self, Kind};
use crate::{Error, Result};

pub fn run(l: &Launch, ch: &Channel) -> ! {
    match stage(l, ch) {
        // After Ready the channel is closed: the failure was already told where it could be.
        Ok(_) => unsafe { libc::_exit(127) },
        Err(e) => {
            let _ = ch.send(&Msg::Error(e.to_string()));
            // SAFETY: _exit skips destructors and atexit handlers, as a forked child must.
            unsafe { libc::_exit(1) }
        }
    }
}

/// Returns only on failure (as Ok(err) after the point of no return, or Err before).
fn stage(l: &Launch, ch: &Channel) -> Result<Error> {
    ch.expect("Continue", |m| *m == Msg::Continue)?;
    if l.new_cgroup {
        unshare(CloneFlags::CLONE_NEWCGROUP).ctx("unshare", "cgroup namespace")?;
    }
    match &l.role {
        Role::Init { fifo } => init(l, ch, fifo),
        Role::Exec => exec(l, ch),
    }
}

fn init(l: &Launch, ch: &Channel, fifo: &std::os::fd::OwnedFd) -> Result<Error> {
    let spec = l.spec;
    nix::sys::stat::umask(Mode::empty());
    nix::unistd::setsid().ctx("setsid", "container init")?;
    if let Some(h) = spec.hostname() {
        nix::unistd::sethostname(h).ctx("sethostname", h)?;
    }
    if let Some(d) = spec.domainname() {
        crate::syscalls::setdomainname(d).ctx("setdomainname", d)?;
    }
    let userns = crate::spec::has_namespace(spec, LinuxNamespaceType::User);
    crate::rootfs::prepare(&crate::rootfs::Plan {
        spec,
        rootfs: &l.rootfs,
        bundle: l.bundle,
        cgroupns: crate::spec::has_namespace(spec, LinuxNamespaceType::Cgroup),
        userns,
        idmapped: &l.idmapped,
    })?;

    ch.send(&Msg::RunHooks)?;
    let state_json = match ch.expect("HooksDone", |m| matches!(m, Msg::HooksDone(_)))? {
        Msg::HooksDone(s) => s,
        _ => unreachable!(),
    };
    hooks::run_all(spec.hooks(), Kind::CreateContainer, &state_json)?;

    if l.no_pivot {
        crate::rootfs::move_root(&l.rootfs)?;
    } else {
        crate::rootfs::pivot(&l.rootfs)?;
    }
    if l.process.terminal() == Some(true) {
        let slave = terminal(l)?;
        crate::rootfs::mount_console(&slave)?;
    }
    let linux = spec.linux().as_ref();
    if let Some(sysctl) = linux.and_then(|x| x.sysctl().as_ref()) {
        for (k, v) in sysctl {
            let p = Path::new("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&p, v).map_err(|e| Error::io(format!("sysctl {k}={v} ({})", p.display()), e))?;
        }
    }
    crate::rootfs::readonly(linux.and_then(|x| x.readonly_paths().as_deref()).unwrap_or_default())?;
    crate::rootfs::mask(linux.and_then(|x| x.masked_paths().as_deref()).unwrap_or_default())?;
    if spec.root().as_ref().is_some_and(|r| r.readonly() == Some(true)) {
        crate::rootfs::remount_ro(Path::new("/"))?;
    }
    crate::rootfs::set_root_propagation(spec)?;
    if !l.no_new_keyring {
        match crate::syscalls::join_session_keyring(l.id) {
            Ok(()) | Err(nix::errno::Errno::ENOSYS) => {}
            // A user namespace may not be allowed a keyring of its own; runc goes on too.
            Err(nix::errno::Errno::EACCES) | Err(nix::errno::Errno::EDQUOT) if userns => {}
            Err(e) => return Err(Error::sys("join session keyring", l.id, e)),
        }
    }
    // An image need not contain its working directory: create it (as runc does).
    crate::rootfs::paths::Root::open(Path::new("/"))?.mkdir_all(l.process.cwd(), 0o755)?;
    let (filter, program, args, env) = become_the_process(l, ch)?;
    // A NOTIFY filter goes on while `create` can still hand its fd to the listener.
    let filter = match filter {
        Some(f) if f.notify() => {
            install_seccomp(&f, Some(ch))?;
            None
        }
        f => f,
    };

    // Ready: the runtime records the container as created and exits.
    ch.send(&Msg::Ready)?;
    // SAFETY: closing our own descriptor; the Channel is never used again by this process.
    unsafe { libc::close(ch.0.as_raw_fd()) };

    // Blocks until `start` opens the fifo for reading.
    let fifo_path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
    let w = nix::fcntl::open(fifo_path.as_str(), OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty());
    let w = match w {
        Ok(w) => w,
        Err(e) => return Ok(Error::sys("open exec fifo (is /proc mounted in the container?)", &fifo_path, e)),
    };
    let mut wf = std::fs::File::from(w);
    if let Err(e) = hooks::run_all(spec.hooks(), Kind::StartContainer, &state_json) {
        let _ = wf.write_all(format!("E{e}").as_bytes());
        return Ok(e);
    }
    let _ = wf.write_all(b"0");
    drop(wf);
    setup::descriptors(l.preserve_fds)?;
    let install = filter.as_ref().map(|f| move || install_seccomp(f, None));
    let e = setup::exec(&program, &args, &env, install.as_ref().map(|f| f as &dyn Fn() -> Result<()>));
    let _ = writeln!(std::io::stderr(), "berth: {e}");
    Ok(e)
}

/// Compile `linux.seccomp` (warnings to the runtime's log). Without no_new_privs the
/// kernel wants CAP_SYS_ADMIN to install a filter, so then it goes on now, before
/// credentials() changes the user and drops capabilities (as runc does); otherwise the
/// caller installs it as late as it can. Returns the filter still to install.
#[cold]
#[inline(never)]
fn seccomp_before_credentials(l: &Launch, ch: &Channel) -> Result<Option<crate::seccomp::Filter>> {
    let Some(s) = l.spec.linux().as_ref().and_then(|x| x.seccomp().as_ref()) else {
        return Ok(None);
    };
    let f = crate::seccomp::compile(s)?;
    for w in &f.warnings {
        ch.send(&Msg::Warn(w.clone()))?;
    }
    if l.process.no_new_privileges() == Some(true) {
        return Ok(Some(f));
    }
    install_seccomp(&f, Some(ch))?;
    Ok(None)
}

/// Load the filter; a NOTIFY filter's listener fd goes to the runtime (which passes it
/// to listenerPath) and we wait until it has, so no notification waits for nobody.
#[cold]
#[inline(never)]
fn install_seccomp(f: &crate::seccomp::Filter, ch: Option<&Channel>) -> Result<()> {
    if let Some(fd) = f.install()? {
        let ch = ch.ok_or_else(|| Error::Child("seccomp listener fd but no channel to the runtime".into()))?;
        // The runtime copies the descriptor out of this process (pidfd_getfd): keep it open until it says so.
        ch.send(&Msg::SeccompListener(fd.as_raw_fd()))?;
        ch.expect("SeccompDone", |m| *m == Msg::SeccompDone)?;
        drop(fd);
    }
    Ok(())
}

fn exec(l: &Launch, ch: &Channel) -> Result<Error> {
    if let Some(cpus) = l.process.exec_cpu_affinity().as_ref().and_then(|a| a.cpu_affinity_final().clone()) {
        crate::syscalls::set_affinity(&setup::parse_cpu_list(&cpus)?).ctx("set cpu affinity", &cpus)?;
    }
    // A session of its own, tty or not: the caller's terminal signals reach it only
    // through the runtime's forwarding (as runc).
    nix::unistd::setsid().ctx("setsid", "exec process")?;
    if l.process.terminal() == Some(true) {
        terminal(l)?;
    }
    let (filter, program, args, env) = become_the_process(l, ch)?;
    setup::descriptors(l.preserve_fds)?;
    // On success the channel closes with the exec: the runtime reads that as "started".
    // The channel is open until then, so even a NOTIFY filter goes on right before execve.
    let install = filter.as_ref().map(|f| move || install_seccomp(f, Some(ch)));
    Err(setup::exec(&program, &args, &env, install.as_ref().map(|f| f as &dyn Fn() -> Result<()>)))
}

/// Shared by init and exec: umask, limits and scheduling, LSM label, seccomp (when it
/// must precede the credentials), user and capabilities; then the program to exec.
#[allow(clippy::type_complexity)]
fn become_the_process(l: &Launch, ch: &Channel) -> Result<(Option<crate::seccomp::Filter>, std::path::PathBuf, Vec<String>, Vec<String>)> {
    let umask = l.process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(Mode::from_bits_truncate(umask));
    setup::attributes(l.spec, l.process)?;
    crate::lsm::apply(l.process.apparmor_profile().as_deref(), l.process.selinux_label().as_deref())?;
    let filter = if l.spec.linux().as_ref().is_some_and(|x| x.seccomp().is_some()) { seccomp_before_credentials(l, ch)? } else { None };
    for w in setup::credentials(l.process)? {
        ch.send(&Msg::Warn(w))?;
    }
    let env = setup::environment(l.process, l.listen_fds);
    let args = l.process.args().clone().unwrap_or_default();
    let program = setup::find_program(&args[0], &env)?;
    Ok((filter, program, args, env))
}

/// A pty from the container's devpts: master to the console socket, slave as stdio and
/// controlling terminal. Returns the slave's path.
fn terminal(l: &Launch) -> Result<String> {
    let sock = l.console.as_ref().ok_or_else(|| Error::Config("process.terminal needs --console-socket".into()))?;
    let (master, name, slave) = crate::console::open_pty()?;
    if let Some(size) = l.process.console_size() {
        crate::console::set_size(master.as_raw_fd(), size.height() as u16, size.width() as u16)?;
    }
    crate::console::send_master(sock, &master)?;
    drop(master);
    crate::console::make_stdio(&slave)?;
    Ok(name)
}
