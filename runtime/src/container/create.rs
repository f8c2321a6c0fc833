//! `berth create`: everything up to a process blocked before the user program.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::Ctx;
use crate::error::{IoContext, SysContext};
use crate::hooks::{self, Kind};
use crate::process::{self, Launch, Role};
use crate::state::{self, State, Status};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct Opts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// Socket-activation descriptors handed to us (LISTEN_FDS for this very process).
pub fn listen_fds() -> u32 {
    let Some(n) = std::env::var("LISTEN_FDS").ok().and_then(|v| v.parse().ok()) else { return 0 };
    // Only descriptors meant for this very process (as sd_listen_fds checks).
    match std::env::var("LISTEN_PID").ok().and_then(|v| v.parse::<u32>().ok()) {
        Some(p) if p == std::process::id() => n,
        _ => 0,
    }
}

/// Create the container. `console` overrides `--console-socket` with an already connected
/// socket (used by a foreground `run` that proxies the terminal itself).
pub fn create(ctx: &Ctx, o: &Opts, console: Option<OwnedFd>) -> Result<State> {
    ctx.check_cgroup_driver()?;
    state::check_id(&o.id)?;
    let bundle = std::fs::canonicalize(&o.bundle).with_ctx(|| format!("bundle {}", o.bundle.display()))?;
    let (spec, raw) = crate::spec::load_raw(&bundle)?;
    crate::spec::validate(&spec, &bundle)?;
    let process = spec.process().as_ref().expect("validated");
    if process.terminal() == Some(true) && o.console_socket.is_none() && console.is_none() {
        return Err(Error::Config("process.terminal is true but no --console-socket was given".into()));
    }
    // An interrupted create must not leave a half-made container: termination signals
    // wait until it is done (the launch stages unblock them for themselves); a foreground
    // `run` then forwards them to the container.
    block_termination_signals();
    let dir = state::create_dir(&ctx.root, &o.id)?;
    let mut cgroup_paths = Vec::new();
    let res = create_in(ctx, o, &spec, raw, &bundle, &dir, console, &mut cgroup_paths);
    if res.is_err() {
        // The launch already killed and reaped our init; a cgroup still busy holds other
        // containers (a shared cgroupsPath) and must keep them: never kill there.
        let _ = crate::cgroups::remove(&cgroup_paths, true);
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}

fn create_in(
    ctx: &Ctx,
    o: &Opts,
    spec: &oci_spec::runtime::Spec,
    raw: Box<serde_json::value::RawValue>,
    bundle: &Path,
    dir: &Path,
    console: Option<OwnedFd>,
    cgroup_paths: &mut Vec<PathBuf>,
) -> Result<State> {
    let process = spec.process().as_ref().expect("validated");
    let listen = listen_fds();
    let preserve = o.preserve_fds + listen;
    let min_fd = 3 + preserve as i32;

    let fifo_path = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo_path, Mode::from_bits_truncate(0o622)).ctx("mkfifo", fifo_path.display())?;
    // mkfifo applies the umask; the init may run as any user and must be able to write.
    std::fs::set_permissions(&fifo_path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .with_ctx(|| format!("chmod {}", fifo_path.display()))?;
    let fifo = nix::fcntl::open(&fifo_path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ctx("open", fifo_path.display())?;
    let fifo = process::lift(fifo, min_fd)?;
    let console = match (console, &o.console_socket) {
        (Some(c), _) => Some(process::lift(c, min_fd)?),
        (None, Some(p)) if process.terminal() == Some(true) => Some(process::lift(crate::console::connect(p)?, min_fd)?),
        _ => None,
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    let idmapped = crate::rootfs::idmap::prepare(&mounts, bundle)?
        .into_iter()
        .map(|f| f.map(|f| process::lift(f, min_fd)).transpose())
        .collect::<Result<Vec<_>>>()?;
    let linux = spec.linux().as_ref().expect("validated");
    // An empty cgroupsPath means none given.
    let cg = linux.cgroups_path().as_deref().filter(|p| !p.as_os_str().is_empty());
    let paths = crate::cgroups::paths_for(cg, &o.id)?;
    refuse_shared_with_host(cg, &paths)?;
    *cgroup_paths = paths;
    let (joins, new_ns, new_user, new_cgroup, new_time) = Launch::plan_namespaces(spec)?;
    if !new_ns.contains(nix::sched::CloneFlags::CLONE_NEWNS) {
        return Err(Error::Config("linux.namespaces: berth needs a new mount namespace for the container".into()));
    }
    let rootfs = crate::spec::rootfs(spec, bundle)?;
    let rootfs = std::fs::canonicalize(&rootfs).with_ctx(|| format!("root.path {}", rootfs.display()))?;

    let mut st = State {
        id: o.id.clone(),
        pid: 0,
        pid_start: 0,
        creator: Some((std::process::id() as i32, crate::syscalls::process_start_time(std::process::id() as i32).unwrap_or(0))),
        bundle: bundle.to_path_buf(),
        rootfs: rootfs.clone(),
        created: crate::timefmt::now(),
        owner: owner(),
        annotations: spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        cgroup_paths: cgroup_paths.clone(),
        hooks: spec.hooks().clone(),
        own_pidns: crate::spec::namespaces(spec).iter().any(|(t, p)| *t == oci_spec::runtime::LinuxNamespaceType::Pid && p.is_none()),
        config: raw,
    };
    let launch = Launch {
        id: &o.id,
        spec,
        process,
        bundle,
        rootfs,
        role: Role::Init { fifo },
        console,
        preserve_fds: preserve,
        listen_fds: listen,
        no_pivot: o.no_pivot,
        no_new_keyring: o.no_new_keyring,
        joins,
        new_ns,
        new_user,
        new_cgroup,
        new_time,
        idmapped,
        cgroup_paths: cgroup_paths.clone(),
        log: &ctx.log,
        init_pid: None,
    };
    // Provisional state: `state` shows "creating", and if this process dies mid-way,
    // `delete` still finds the cgroups to remove.
    st.save_fast(&ctx.root)?;
    let hooks_state = st.clone();
    let started = process::launch(&launch, |pid| {
        let mut s = hooks_state.clone();
        s.pid = pid;
        let json = s.hook_json(Status::Creating);
        hooks::run_all(spec.hooks(), Kind::Prestart, &json)?;
        hooks::run_all(spec.hooks(), Kind::CreateRuntime, &json)?;
        Ok(s.hook_json(Status::Created))
    })?;
    st.pid = started.pid;
    st.creator = None;
    st.pid_start = crate::syscalls::process_start_time(started.pid)
        .ok_or_else(|| Error::Child("container init vanished right after creation".into()))?;
    let saved = st.save(&ctx.root).and_then(|_| match &o.pid_file {
        Some(p) => super::write_pid_file(p, st.pid),
        None => Ok(()),
    });
    if let Err(e) = saved {
        // SAFETY: plain FFI; the init is our (re-parented) child.
        unsafe { libc::kill(st.pid, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(st.pid), None);
        return Err(e);
    }
    ctx.log.debug(&format!("created container {} (pid {})", st.id, st.pid));
    Ok(st)
}

fn block_termination_signals() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
}

/// The container must get a cgroup of its own: not a hierarchy's root and not the
/// cgroup berth itself runs in (delete would kill everything in it).
fn refuse_shared_with_host(given: Option<&Path>, paths: &[PathBuf]) -> Result<()> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for (p, h) in paths.iter().zip(crate::cgroups::hierarchies()) {
        let mine = own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            let same = if h.v2 { ctrl.is_empty() } else { !ctrl.is_empty() && ctrl.split(',').eq(h.controllers.iter().map(String::as_str)) };
            same.then(|| h.mountpoint.join(path.trim_start_matches('/')))
        });
        if *p == h.mountpoint || Some(p) == mine.as_ref() {
            return Err(Error::Config(format!(
                "linux.cgroupsPath {:?} resolves to {}, the root of a cgroup hierarchy or berth's own cgroup: the container needs a cgroup of its own",
                given.map(|g| g.display().to_string()).unwrap_or_default(),
                p.display()
            )));
        }
    }
    Ok(())
}

fn owner() -> String {
    // Straight from /etc/passwd: no NSS modules loaded on the hot path.
    let uid = nix::unistd::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}
