//! `berthlet [flags]` runs the daemon; `berthlet image ...` and `berthlet version`
//! are clients of a running one. Arguments only: the work is in the library.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use berthlet::config::{Config, Overrides, DEFAULT_RUN_DIR, SOCKET_NAME};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berthlet",
    version,
    about = "Berth's node daemon: CRI v1 on a unix socket, and its clients"
)]
struct Cli {
    /// TOML config file (see kubelet/README.md); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Images, snapshots and metadata [default: /var/lib/berth].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Socket, locks and runtime state [default: /run/berthlet].
    #[arg(long, value_name = "DIR", global = true)]
    run_dir: Option<PathBuf>,
    /// The gRPC socket [default: <run-dir>/berthlet.sock]; for the client commands, the daemon's.
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// A registry (host:port) that may be reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    insecure_registries: Vec<String>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Images in the running daemon.
    Image {
        #[command(subcommand)]
        command: ImageCommand,
    },
    /// The daemon's CRI Version answer.
    Version,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Pull an image, showing progress per layer.
    Pull {
        reference: String,
        /// Registry credentials.
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
    /// Import an OCI layout (directory or tar) or a docker-archive tar.
    Import { file: PathBuf },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Show an image's status and record as JSON.
    Inspect { reference: String },
    /// Remove images (their blobs go at the next gc).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove blobs and layers no image uses.
    Gc,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => daemon(cli),
        Some(command) => client(cli.socket, cli.run_dir, command),
    };
    if let Err(e) = result {
        eprintln!("berthlet: {e:#}");
        std::process::exit(1);
    }
}

fn daemon(cli: Cli) -> anyhow::Result<()> {
    let flags = Overrides {
        state_dir: cli.state_dir,
        run_dir: cli.run_dir,
        socket: cli.socket,
        log_level: cli.log_level,
        insecure_registries: cli.insecure_registries,
    };
    let config = Config::load(cli.config.as_deref(), flags)?;
    init_logging(&config.log_level)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(berthlet::server::run(config))?;
    Ok(())
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    Ok(())
}

fn client(
    socket: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    command: Command,
) -> anyhow::Result<()> {
    let socket = socket.unwrap_or_else(|| {
        run_dir
            .unwrap_or_else(|| DEFAULT_RUN_DIR.into())
            .join(SOCKET_NAME)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio runtime")?;
    rt.block_on(run_client(&socket, command))?;
    Ok(())
}

async fn run_client(socket: &Path, command: Command) -> Result<(), berthlet::cli::CliError> {
    use berthlet::cli;
    match command {
        Command::Version => cli::version(socket).await,
        Command::Image { command } => match command {
            ImageCommand::Pull { reference, creds } => {
                cli::pull(socket, &reference, creds.as_deref()).await
            }
            ImageCommand::Import { file } => cli::import(socket, &file).await,
            ImageCommand::Ls => cli::list(socket).await,
            ImageCommand::Inspect { reference } => cli::inspect(socket, &reference).await,
            ImageCommand::Rm { references } => cli::remove(socket, &references).await,
            ImageCommand::Gc => cli::gc(socket).await,
        },
    }
}
