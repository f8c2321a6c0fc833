//! `berth exec`: a new process in a running container's namespaces and cgroup.

use std::path::PathBuf;

use oci_spec::runtime::{Capability, LinuxCapabilities, Process};

use super::Ctx;
use crate::namespaces::Joins;
use crate::process::{self, Launch, Role};
use crate::state::{State, Status};
use crate::{Error, Result};

#[derive(Debug, Default)]
pub struct Opts {
    pub id: String,
    pub process: Option<PathBuf>,
    pub tty: bool,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub preserve_fds: u32,
    pub args: Vec<String>,
}

/// The process to run: `--process` file as is, else the container's process with the
/// command line's overrides (as runc builds it).
fn build_process(spec: &oci_spec::runtime::Spec, o: &Opts) -> Result<Process> {
    if let Some(f) = &o.process {
        let data = std::fs::read(f).map_err(|e| Error::io(format!("read process file {}", f.display()), e))?;
        let p: Process = crate::config::parse_process(&data).map_err(|e| Error::Config(format!("process file {}: {e}", f.display())))?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Config(format!("process file {}: args must not be empty", f.display())));
        }
        return Ok(p);
    }
    if o.args.is_empty() {
        return Err(Error::Config("exec: no command given (use --process or give args)".into()));
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(o.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(c) = &o.cwd {
        p.set_cwd(c.clone());
    }
    if let Some(u) = &o.user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a.parse().ok(), b.parse().ok()),
            None => (u.parse().ok(), Some(0)),
        };
        let (Some(uid), Some(gid)) = (uid, gid) else {
            return Err(Error::Config(format!("--user {u:?}: expected uid[:gid] as numbers")));
        };
        p.user_mut().set_uid(uid);
        p.user_mut().set_gid(gid);
    }
    if !o.additional_gids.is_empty() {
        p.user_mut().set_additional_gids(Some(o.additional_gids.clone()));
    }
    if !o.caps.is_empty() {
        let mut c = p.capabilities().clone().unwrap_or_else(|| {
            let mut e = LinuxCapabilities::default();
            e.set_bounding(Some(Default::default()));
            e.set_effective(Some(Default::default()));
            e.set_permitted(Some(Default::default()));
            e.set_inheritable(None);
            e.set_ambient(None);
            e
        });
        for name in &o.caps {
            let cap: Capability = crate::capabilities::parse_name(name)?;
            let add = |s: &Option<std::collections::HashSet<Capability>>| {
                let mut s = s.clone().unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            c.set_bounding(add(c.bounding()));
            c.set_effective(add(c.effective()));
            c.set_permitted(add(c.permitted()));
            // Ambient needs inheritable: only when the config already has some (as runc).
            if c.inheritable().is_some() {
                c.set_ambient(add(c.ambient()));
            }
        }
        p.set_capabilities(Some(c));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

pub fn exec(ctx: &Ctx, o: &Opts) -> Result<i32> {
    let st = State::load(&ctx.root, &o.id)?;
    match st.status(&ctx.root) {
        Status::Running | Status::Created => {}
        s => return Err(Error::Container(format!("cannot exec in container {}: it is {s}", o.id))),
    }
    let spec = st.spec()?;
    let process = build_process(&spec, o)?;
    crate::lsm::check(process.apparmor_profile().as_deref(), process.selinux_label().as_deref())?;
    if !process.cwd().is_absolute() {
        return Err(Error::Config(format!("cwd {:?}: must be absolute", process.cwd())));
    }
    let terminal = process.terminal() == Some(true);
    let proxy = terminal && o.console_socket.is_none();
    if proxy && o.detach {
        return Err(Error::Config("--tty with --detach needs --console-socket".into()));
    }
    let min_fd = 3 + o.preserve_fds as i32;
    let (ours, console) = if proxy {
        let (a, b) = super::foreground::console_pair()?;
        (Some(a), Some(process::lift(b, min_fd)?))
    } else if terminal {
        let c = crate::console::connect(o.console_socket.as_ref().unwrap())?;
        (None, Some(process::lift(c, min_fd)?))
    } else {
        (None, None)
    };
    // Enter every namespace the container's init is in.
    let list: Vec<_> = crate::spec::namespaces(&spec)
        .into_iter()
        .map(|(t, _)| (t, crate::namespaces::of_pid(st.pid, t)))
        .collect();
    let joins = Joins::open(&list)?;
    if !st.init_alive() {
        return Err(Error::Container(format!("cannot exec in container {}: it has stopped", o.id)));
    }
    let launch = Launch {
        id: &o.id,
        spec: &spec,
        process: &process,
        bundle: &st.bundle,
        rootfs: st.rootfs.clone(),
        role: Role::Exec,
        console,
        preserve_fds: o.preserve_fds,
        listen_fds: 0,
        no_pivot: false,
        no_new_keyring: true,
        joins,
        new_ns: nix::sched::CloneFlags::empty(),
        new_user: false,
        new_cgroup: false,
        new_time: false,
        idmapped: vec![],
        cgroup_paths: st.cgroup_paths.clone(),
        log: &ctx.log,
        init_pid: Some(st.pid),
    };
    let started = process::launch(&launch, |_| Err(Error::Child("exec does not run hooks".into())))?;
    if let Some(p) = &o.pid_file {
        super::write_pid_file(p, started.pid)?;
    }
    if o.detach {
        return Ok(0);
    }
    let master = match ours {
        Some(s) => Some(super::foreground::receive_master(&s)?),
        None => None,
    };
    super::foreground::wait(started.pid, master)
}
