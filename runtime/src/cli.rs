//! The command line, runc's: global flags, then one subcommand. Parsing only.
//!
//! Hand-rolled over `lexopt` rather than clap: berth starts for every container
//! operation, and clap's command tree cost about 1 MiB of resident memory per call
//! (measured: `berth --version` 2.5 MiB with clap, 1.5 MiB without), more than the
//! rest of `create` together. lexopt only tokenises (`--flag=value`, `-abc`, `--`).

use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::prelude::*;
use lexopt::Parser;

#[derive(Debug)]
pub struct Cli {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub log_format: LogFormat,
    pub debug: bool,
    pub systemd_cgroup: bool,
    /// `spec --rootless`; elsewhere accepted for runc compatibility (auto|true|false).
    pub rootless: Option<String>,
    pub version: bool,
    pub help: Option<String>,
    pub command: Option<Command>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// `create`/`run` arguments are the library's own options.
pub use crate::container::create::Opts as CreateArgs;
/// `exec` arguments are the library's own options.
pub use crate::container::exec::Opts as ExecArgs;

#[derive(Debug)]
pub enum Command {
    Create(CreateArgs),
    Start { id: String },
    Run { create: CreateArgs, detach: bool },
    State { id: String },
    Kill { id: String, signal: String, all: bool },
    Delete { ids: Vec<String>, force: bool },
    List { format: ListFormat, quiet: bool },
    Ps { id: String, format: ListFormat, ps_args: Vec<String> },
    Exec(ExecArgs),
    Spec { bundle: PathBuf },
    Features,
    Pause { id: String },
    Resume { id: String },
    Update(crate::container::update::Opts),
    Events { id: String, stats: bool, interval: String },
}

pub const USAGE: &str = "\
berth: an OCI container runtime (runc-compatible command line)

usage: berth [global options] <command> [options] [arguments]

commands:
  create <id>      create a container; its process waits before the user program
  start <id>       start a created container
  run <id>         create and start; wait for the container unless --detach
  state <id>       print the container's state JSON
  kill <id> [sig]  send a signal (default SIGTERM; --all: every process)
  delete <id>...   delete containers (--force: kill running ones first)
  list             list containers (--format table|json, -q)
  ps <id> [args]   processes of a container (--format table|json)
  exec <id> <cmd>  run a process in a running container
  pause <id>       freeze every process of the container
  resume <id>      thaw a paused container
  update <id>      change resource limits (--resources file|-, --memory, ...)
  events <id>      stats and OOM events as JSON lines (--stats, --interval)
  spec             write a default config.json (--bundle, --rootless)
  features         what this runtime supports (JSON)

global options:
  --root <dir>             state directory (default /run/berth)
  --log <file>             log file (default stderr)
  --log-format text|json   log format (default text)
  --debug                  debug logging
  --systemd-cgroup         systemd cgroup driver (not supported: refused)
  -v, --version            version, commit and spec version
  -h, --help               this text; `berth <command> --help` for a command
";

fn command_help(cmd: &str) -> String {
    let text = match cmd {
        "create" | "run" => "options:\n  -b, --bundle <dir>       bundle with config.json (default .)\n  --pid-file <file>        write the container's pid\n  --console-socket <path>  unix socket that receives the pty master\n  --no-pivot               MS_MOVE + chroot instead of pivot_root\n  --no-new-keyring         keep the caller's session keyring\n  --preserve-fds <n>       pass descriptors 3..3+n to the container\n  -d, --detach             (run) do not wait for the container\n",
        "kill" => "usage: berth kill [-a|--all] <id> [signal]\n",
        "delete" => "usage: berth delete [-f|--force] <id>...\n",
        "list" => "usage: berth list [-f|--format table|json] [-q|--quiet]\n",
        "ps" => "usage: berth ps [-f|--format table|json] <id> [ps arguments]\n",
        "exec" => "usage: berth exec [options] <id> <command> [args...]\noptions:\n  --process <file>  process.json to run instead of a command line\n  -t, --tty  -d, --detach  --pid-file <file>  --console-socket <path>\n  --cwd <dir>  -e, --env K=V  -u, --user uid[:gid]  -g, --additional-gids <gid>\n  -c, --cap CAP_X  --no-new-privs  --apparmor <p>  --process-label <l>\n  --preserve-fds <n>\n",
        "spec" => "usage: berth spec [-b|--bundle <dir>] [--rootless]\n",
        "pause" | "resume" => "usage: berth pause|resume <id>\n",
        "update" => "usage: berth update [options] <id>\noptions:\n  -r, --resources <file|->  linux.resources JSON\n  --memory <size>  --memory-swap <size>  --memory-reservation <size>\n  --kernel-memory <size>  --kernel-memory-tcp <size>\n  --cpu-shares <n>  --cpu-quota <us>  --cpu-period <us>  --cpu-burst <us>\n  --cpu-rt-period <us>  --cpu-rt-runtime <us>  --cpuset-cpus <list>  --cpuset-mems <list>\n  --pids-limit <n>  --blkio-weight <10-1000>\n",
        "events" => "usage: berth events [--stats] [--interval 5s] <id>\n",
        _ => "",
    };
    format!("usage: berth {cmd} ...\n{text}")
}

/// Parse the process' arguments.
pub fn parse() -> Result<Cli, String> {
    parse_from(std::env::args_os())
}

pub fn parse_from(args: impl IntoIterator<Item = OsString>) -> Result<Cli, String> {
    let mut p = Parser::from_iter(args);
    let mut cli = Cli {
        root: PathBuf::from("/run/berth"),
        log: None,
        log_format: LogFormat::Text,
        debug: false,
        systemd_cgroup: false,
        rootless: None,
        version: false,
        help: None,
        command: None,
    };
    let mut cmd_name: Option<String> = None;
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("root") => cli.root = p.value().map_err(|e| e.to_string())?.into(),
            Long("log") => cli.log = Some(p.value().map_err(|e| e.to_string())?.into()),
            Long("log-format") => {
                cli.log_format = match string(p.value())?.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    f => return Err(format!("--log-format {f:?}: expected text or json")),
                }
            }
            Long("debug") => cli.debug = true,
            Long("systemd-cgroup") => cli.systemd_cgroup = true,
            Long("rootless") => cli.rootless = Some(p.optional_value().map(|v| v.to_string_lossy().into_owned()).unwrap_or_else(|| "true".into())),
            // Accepted and ignored by runc as well.
            Long("criu") | Long("log-level") => {
                let _ = p.value();
            }
            Short('v') | Long("version") => cli.version = true,
            Short('h') | Long("help") => cli.help = Some(USAGE.to_string()),
            Value(v) => {
                cmd_name = Some(v.to_string_lossy().into_owned());
                break;
            }
            a => return Err(a.unexpected().to_string()),
        }
    }
    let Some(name) = cmd_name else { return Ok(cli) };
    let mut positional: Vec<String> = Vec::new();
    let mut c = CreateArgs { bundle: PathBuf::from("."), ..Default::default() };
    let mut e = ExecArgs::default();
    let (mut detach, mut all, mut force, mut quiet) = (false, false, false, false);
    let mut format = ListFormat::Table;
    let mut spec_bundle = PathBuf::from(".");
    let mut u = crate::container::update::Opts::default();
    let (mut stats, mut interval) = (false, "5s".to_string());
    // After the first positional, `ps` and `exec` take everything verbatim.
    let verbatim_after = match name.as_str() {
        "ps" => Some(1),
        "exec" => Some(1),
        _ => None,
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match (name.as_str(), arg) {
            (_, Short('h') | Long("help")) => {
                cli.help = Some(command_help(&name));
                return Ok(cli);
            }
            ("create" | "run", Short('b') | Long("bundle")) => c.bundle = p.value().map_err(|e| e.to_string())?.into(),
            ("create" | "run", Long("pid-file")) => c.pid_file = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("create" | "run", Long("console-socket")) => c.console_socket = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("create" | "run", Long("no-pivot")) => c.no_pivot = true,
            ("create" | "run", Long("no-new-keyring")) => c.no_new_keyring = true,
            ("create" | "run", Long("preserve-fds")) => c.preserve_fds = number(p.value(), "--preserve-fds")?,
            ("run", Short('d') | Long("detach")) => detach = true,
            ("run", Long("keep")) => {}
            ("kill", Short('a') | Long("all")) => all = true,
            ("delete", Short('f') | Long("force")) => force = true,
            ("list", Short('q') | Long("quiet")) => quiet = true,
            ("list" | "ps", Short('f') | Long("format")) => {
                format = match string(p.value())?.as_str() {
                    "table" => ListFormat::Table,
                    "json" => ListFormat::Json,
                    f => return Err(format!("--format {f:?}: expected table or json")),
                }
            }
            ("exec", Long("process") | Short('p')) => e.process = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("exec", Short('t') | Long("tty")) => e.tty = true,
            ("exec", Short('d') | Long("detach")) => e.detach = true,
            ("exec", Long("pid-file")) => e.pid_file = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("exec", Long("console-socket")) => e.console_socket = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("exec", Long("cwd")) => e.cwd = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("exec", Short('e') | Long("env")) => e.env.push(string(p.value())?),
            ("exec", Short('u') | Long("user")) => e.user = Some(string(p.value())?),
            ("exec", Short('g') | Long("additional-gids")) => e.additional_gids.push(number(p.value(), "--additional-gids")?),
            ("exec", Short('c') | Long("cap")) => e.caps.push(string(p.value())?),
            ("exec", Long("no-new-privs")) => e.no_new_privs = true,
            ("exec", Long("apparmor")) => e.apparmor = Some(string(p.value())?),
            ("exec", Long("process-label")) => e.process_label = Some(string(p.value())?),
            ("exec", Long("preserve-fds")) => e.preserve_fds = number(p.value(), "--preserve-fds")?,
            ("spec", Short('b') | Long("bundle")) => spec_bundle = p.value().map_err(|e| e.to_string())?.into(),
            ("spec", Long("rootless")) => cli.rootless = Some("true".into()),
            ("update", Short('r') | Long("resources")) => u.resources = Some(p.value().map_err(|e| e.to_string())?.into()),
            ("update", Long(flag)) if UPDATE_FLAGS.contains(&flag) => {
                let flag = flag.to_string();
                let v = Some(string(p.value())?);
                match flag.as_str() {
                    "memory" => u.memory = v,
                    "memory-swap" => u.memory_swap = v,
                    "memory-reservation" => u.memory_reservation = v,
                    "kernel-memory" => u.kernel_memory = v,
                    "kernel-memory-tcp" => u.kernel_memory_tcp = v,
                    "cpu-shares" => u.cpu_shares = v,
                    "cpu-quota" => u.cpu_quota = v,
                    "cpu-period" => u.cpu_period = v,
                    "cpu-burst" => u.cpu_burst = v,
                    "cpu-rt-period" => u.cpu_rt_period = v,
                    "cpu-rt-runtime" => u.cpu_rt_runtime = v,
                    "cpuset-cpus" => u.cpuset_cpus = v,
                    "cpuset-mems" => u.cpuset_mems = v,
                    "pids-limit" => u.pids_limit = v,
                    _ => u.blkio_weight = v,
                }
            }
            ("update", Long(flag)) if flag.starts_with("l3-cache") || flag.starts_with("mem-bw") => {
                return Err(format!("update --{flag}: Intel RDT is not supported by berth"))
            }
            ("events", Long("stats")) => stats = true,
            ("events", Long("interval")) => interval = string(p.value())?,
            (_, Value(v)) => {
                positional.push(v.to_string_lossy().into_owned());
                if verbatim_after == Some(positional.len()) {
                    for rest in p.raw_args().map_err(|e| e.to_string())? {
                        positional.push(rest.to_string_lossy().into_owned());
                    }
                }
            }
            (_, a) => return Err(format!("{name}: {}", a.unexpected())),
        }
    }
    let need_id = |pos: &[String]| pos.first().cloned().ok_or_else(|| format!("{name}: a container id is required"));
    cli.command = Some(match name.as_str() {
        "create" | "run" => {
            c.id = need_id(&positional)?;
            if positional.len() > 1 {
                return Err(format!("{name}: unexpected argument {:?}", positional[1]));
            }
            if name == "run" {
                Command::Run { create: c, detach }
            } else {
                Command::Create(c)
            }
        }
        "start" => Command::Start { id: need_id(&positional)? },
        "state" => Command::State { id: need_id(&positional)? },
        "kill" => Command::Kill {
            id: need_id(&positional)?,
            signal: positional.get(1).cloned().unwrap_or_else(|| "SIGTERM".into()),
            all,
        },
        "delete" => {
            need_id(&positional)?;
            Command::Delete { ids: positional, force }
        }
        "list" => Command::List { format, quiet },
        "ps" => {
            let id = need_id(&positional)?;
            let mut rest: Vec<String> = positional[1..].to_vec();
            if rest.first().map(String::as_str) == Some("--") {
                rest.remove(0);
            }
            Command::Ps { id, format, ps_args: rest }
        }
        "exec" => {
            e.id = need_id(&positional)?;
            let mut rest: Vec<String> = positional[1..].to_vec();
            if rest.first().map(String::as_str) == Some("--") {
                rest.remove(0);
            }
            e.args = rest;
            Command::Exec(e)
        }
        "spec" => Command::Spec { bundle: spec_bundle },
        "features" => Command::Features,
        "pause" => Command::Pause { id: need_id(&positional)? },
        "resume" => Command::Resume { id: need_id(&positional)? },
        "update" => {
            u.id = need_id(&positional)?;
            Command::Update(u)
        }
        "events" => Command::Events { id: need_id(&positional)?, stats, interval },
        "checkpoint" | "restore" => return Err(format!("{name}: checkpoint/restore (CRIU) is not supported by berth")),
        other => return Err(format!("unknown command {other:?} (see berth --help)")),
    });
    Ok(cli)
}

const UPDATE_FLAGS: &[&str] = &[
    "memory", "memory-swap", "memory-reservation", "kernel-memory", "kernel-memory-tcp", "cpu-shares", "cpu-quota",
    "cpu-period", "cpu-burst", "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems", "pids-limit", "blkio-weight",
];

fn string(v: Result<OsString, lexopt::Error>) -> Result<String, String> {
    v.map_err(|e| e.to_string())?.into_string().map_err(|s| format!("{s:?}: not valid UTF-8"))
}

fn number<T: std::str::FromStr>(v: Result<OsString, lexopt::Error>, what: &str) -> Result<T, String> {
    let s = string(v)?;
    s.parse().map_err(|_| format!("{what} {s:?}: not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        parse_from(std::iter::once("berth").chain(args.iter().copied()).map(OsString::from))
    }

    #[test]
    fn create_with_engine_flags() {
        let c = parse(&["--root", "/r", "--log=/l", "--log-format", "json", "create", "--bundle", "/b", "--pid-file", "/p", "--console-socket=/s", "--no-pivot", "--preserve-fds", "2", "id1"]).unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.log_format, LogFormat::Json);
        let Some(Command::Create(a)) = c.command else { panic!() };
        assert_eq!((a.id.as_str(), a.preserve_fds, a.no_pivot), ("id1", 2, true));
        assert_eq!(a.console_socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn exec_takes_the_command_verbatim() {
        let c = parse(&["exec", "-e", "A=1", "--user", "1:2", "id1", "sh", "-c", "echo --help"]).unwrap();
        let Some(Command::Exec(e)) = c.command else { panic!() };
        assert_eq!(e.args, vec!["sh", "-c", "echo --help"]);
        assert_eq!(e.env, vec!["A=1"]);
        let c = parse(&["exec", "id1", "--", "ls", "-l"]).unwrap();
        let Some(Command::Exec(e)) = c.command else { panic!() };
        assert_eq!(e.args, vec!["ls", "-l"]);
    }

    #[test]
    fn kill_delete_list_ps() {
        let Some(Command::Kill { signal, all, .. }) = parse(&["kill", "--all", "x", "KILL"]).unwrap().command else { panic!() };
        assert_eq!((signal.as_str(), all), ("KILL", true));
        let Some(Command::Delete { ids, force }) = parse(&["delete", "-f", "a", "b"]).unwrap().command else { panic!() };
        assert_eq!((ids.len(), force), (2, true));
        let Some(Command::List { format, quiet }) = parse(&["list", "--format", "json"]).unwrap().command else { panic!() };
        assert_eq!((format, quiet), (ListFormat::Json, false));
        let Some(Command::Ps { ps_args, .. }) = parse(&["ps", "x", "-o", "pid"]).unwrap().command else { panic!() };
        assert_eq!(ps_args, vec!["-o", "pid"]);
    }

    #[test]
    fn part_two_commands() {
        let Some(Command::Update(u)) = parse(&["update", "--memory", "64m", "--cpu-quota=5000", "-r", "-", "x"]).unwrap().command else { panic!() };
        assert_eq!((u.id.as_str(), u.memory.as_deref(), u.cpu_quota.as_deref()), ("x", Some("64m"), Some("5000")));
        assert_eq!(u.resources, Some(PathBuf::from("-")));
        let Some(Command::Events { stats, interval, .. }) = parse(&["events", "--stats", "--interval", "1s", "x"]).unwrap().command else { panic!() };
        assert_eq!((stats, interval.as_str()), (true, "1s"));
        assert!(matches!(parse(&["pause", "x"]).unwrap().command, Some(Command::Pause { .. })));
        assert!(parse(&["update", "--bogus", "1", "x"]).is_err());
    }

    #[test]
    fn errors_are_clear() {
        assert!(parse(&["create"]).unwrap_err().contains("container id is required"));
        assert!(parse(&["bogus"]).unwrap_err().contains("unknown command"));
        assert!(parse(&["create", "--nope", "x"]).is_err());
        assert!(parse(&["--log-format", "xml", "list"]).is_err());
    }
}
