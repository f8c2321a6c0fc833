//! `berth`: parse the command line and hand over to the library.

use std::process::ExitCode;

use berth_runtime::cli::{Command, ListFormat, LogFormat};
use berth_runtime::container::{self, Ctx};
use berth_runtime::log::{Format, Logger};

fn main() -> ExitCode {
    let cli = match berth_runtime::cli::parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(h) = &cli.help {
        print!("{h}");
        return ExitCode::SUCCESS;
    }
    if cli.version {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        println!("commit: {}", env!("BERTH_COMMIT"));
        println!("spec: {}", berth_runtime::OCI_VERSION);
        return ExitCode::SUCCESS;
    }
    let format = match cli.log_format {
        LogFormat::Text => Format::Text,
        LogFormat::Json => Format::Json,
    };
    let log = match Logger::open(cli.log.as_deref(), format, cli.debug) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth: open log file {}: {e}", cli.log.as_ref().unwrap().display());
            return ExitCode::FAILURE;
        }
    };
    let Some(command) = cli.command else {
        eprint!("berth: no command given\n\n{}", berth_runtime::cli::USAGE);
        return ExitCode::FAILURE;
    };
    let rootless = cli.rootless.as_deref().is_some_and(|v| v == "true");
    let ctx = Ctx { root: cli.root, log, systemd_cgroup: cli.systemd_cgroup };
    match dispatch(&ctx, command, rootless) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            ctx.log.error(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

fn dispatch(ctx: &Ctx, command: Command, rootless: bool) -> berth_runtime::Result<i32> {
    berth_runtime::process::stdio::ensure_open();
    match command {
        Command::Create(o) => {
            berth_runtime::process::stdio::check_preserved(o.preserve_fds + container::create::listen_fds())?;
            container::create::create(ctx, &o, None).map(|_| 0)
        }
        Command::Start { id } => container::start::start(ctx, &id).map(|_| 0),
        Command::Run { create: o, detach } => {
            berth_runtime::process::stdio::check_preserved(o.preserve_fds + container::create::listen_fds())?;
            container::run::run(ctx, &o, detach)
        }
        Command::State { id } => container::state::state(ctx, &id).map(|s| {
            println!("{s}");
            0
        }),
        Command::Kill { id, signal, all } => container::kill::kill(ctx, &id, &signal, all).map(|_| 0),
        Command::Delete { ids, force } => {
            for id in ids {
                container::delete::delete(ctx, &id, force)?;
            }
            Ok(0)
        }
        Command::List { format, quiet } => {
            let f = if format == ListFormat::Json { container::list::Format::Json } else { container::list::Format::Table };
            container::list::list(ctx, f, quiet).map(|s| {
                print!("{s}");
                0
            })
        }
        Command::Ps { id, format, ps_args } => container::ps::ps(ctx, &id, format == ListFormat::Json, &ps_args).map(|s| {
            print!("{s}");
            0
        }),
        Command::Exec(o) => {
            berth_runtime::process::stdio::check_preserved(o.preserve_fds)?;
            container::exec::exec(ctx, &o)
        }
        Command::Pause { id } => container::pause::pause(ctx, &id).map(|_| 0),
        Command::Resume { id } => container::pause::resume(ctx, &id).map(|_| 0),
        Command::Update(o) => container::update::update(ctx, &o).map(|_| 0),
        Command::Events { id, stats, interval } => {
            let interval = container::events::parse_interval(&interval)?;
            container::events::events(ctx, &id, stats, interval, &mut std::io::stdout().lock()).map(|_| 0)
        }
        Command::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(berth_runtime::Error::Config(format!("{}: already exists; remove it first", path.display())));
            }
            let text = serde_json::to_string_pretty(&berth_runtime::features::default_spec(rootless)).expect("json");
            std::fs::write(&path, text + "\n").map_err(|e| berth_runtime::Error::io(format!("write {}", path.display()), e))?;
            Ok(0)
        }
        Command::Features => {
            println!("{}", serde_json::to_string_pretty(&berth_runtime::features::features()).expect("json"));
            Ok(0)
        }
    }
}
