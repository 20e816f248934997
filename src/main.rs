//! The `logwharf` binary: command line, logging, metrics endpoint, signals — thin wiring around
//! the config, collector and sinks crates.

mod api;
mod check;
mod client;
mod progress;
mod recorder;
mod reload;
mod tap;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logwharf::{builtin_default, load_config};
use logwharf_collector::{Config, Health, Shutdown, Topology};
use progress::Progress;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Log collection and shipping daemon for Docker hosts.
#[derive(Parser)]
#[command(name = "logwharf", version, about, propagate_version = true)]
struct Cli {
    /// More internal logging (-v debug, -vv trace); LOGWHARF_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline (without a config: every container's json-file log → console).
    Run {
        /// Config file; default $LOGWHARF_CONFIG, then /etc/logwharf/logwharf.toml, then the
        /// built-in default.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Ship everything present, write checkpoints, exit (backfills and benchmarks). Serves
        /// no metrics/health API (a daemon may hold its port) unless --api is given too.
        #[arg(long)]
        once: bool,
        /// With --once: serve the API (`api.address`) anyway.
        #[arg(long, requires = "once")]
        api: bool,
        /// Apply changes to the config file as they are saved (as SIGHUP does).
        #[arg(long, conflicts_with = "once")]
        watch_config: bool,
    },
    /// Write a logwharf config that ships every container's log the way daemon.json's
    /// logging driver does (syslog, fluentd, awslogs, json-file, local), then the change to
    /// make in daemon.json. 0 when written, 2 when the file cannot be read or translated.
    ImportDaemonJson {
        /// Docker's daemon config.
        #[arg(default_value = "/etc/docker/daemon.json")]
        file: PathBuf,
        /// Write the config here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Ask the running daemon (the config's `api.address`) where every container and sink
    /// stands: lag, state, losses, time left before Docker's rotation deletes undelivered
    /// lines. 2 when no daemon answers.
    Status {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Print the API's JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Print the events flowing through the running daemon now (NDJSON, as `encoding =
    /// "json"` writes them). Never slows the pipeline: what this tap has no room for is
    /// dropped and counted in a `{"tap_dropped":N}` line.
    Tap {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Only containers whose name (or id) matches this glob (repeatable).
        #[arg(long = "container", value_name = "GLOB")]
        containers: Vec<String>,
        /// Only this source's events.
        #[arg(long, value_name = "NAME")]
        source: Option<String>,
        /// The events as this sink gets them (after its filter); default: as the sources send
        /// them.
        #[arg(long, value_name = "NAME")]
        sink: Option<String>,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// A live view of the running daemon: containers by rate or lag, sinks, errors.
    Top {
        #[arg(short, long)]
        config: Option<PathBuf>,
    },
    /// Verify the checkpoints (and disk buffers) in data_dir, one line per problem with its
    /// file and offset: 0 clean, 1 problems found, 2 cannot run. Read-only, so it runs beside
    /// a daemon; --repair (refused while a daemon holds data_dir) fixes what is safe.
    Check {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Remove stale checkpoints and move bad offsets back to a line start.
        #[arg(long)]
        repair: bool,
    },
    /// Check a config file and exit: 0 when valid, 2 with every error listed.
    Validate {
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Also try the peers the sources need (the Docker daemon); 1 when one is unreachable.
        #[arg(long)]
        connect: bool,
    },
}

const DEFAULT_CONFIG: &str = "/etc/logwharf/logwharf.toml";

fn main() -> ExitCode {
    logwharf_collector::memory::tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::ImportDaemonJson { file, output } => import_daemon_json(&file, output.as_deref()),
        Command::Status { config, json } => {
            ask_daemon(config.as_deref(), |addr| client::status::run(addr, json))
        }
        Command::Tap {
            config,
            containers,
            source,
            sink,
            limit,
        } => {
            let q = tap::TapQuery {
                containers,
                source,
                sink,
                limit,
            };
            ask_daemon(config.as_deref(), |addr| client::tap::run(addr, &q))
        }
        Command::Top { config } => ask_daemon(config.as_deref(), client::top::run),
        Command::Validate { config, connect } => match find_and_load(config.as_deref()) {
            Ok((c, origin)) => {
                println!(
                    "{origin}: valid ({} source{}, {} sink{})",
                    c.sources.len(),
                    plural(c.sources.len()),
                    c.sinks.len(),
                    plural(c.sinks.len())
                );
                if connect {
                    return check_connections(&c);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Check { config, repair } => match find_and_load(config.as_deref()) {
            Ok((c, origin)) => check::run(&c, &origin, repair),
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            config,
            once,
            api,
            watch_config,
        } => {
            let (config, origin) = match find_and_load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(config = %origin, once, "logwharf {} starting", env!("CARGO_PKG_VERSION"));
            match run(config, &origin, once, api, watch_config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("logwharf: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Runs a command that talks to the daemon at the config's `api.address`: 2 when the config
/// cannot be read or no daemon answers, 1 on other errors.
fn ask_daemon(
    config: Option<&Path>,
    f: impl FnOnce(std::net::SocketAddr) -> anyhow::Result<()>,
) -> ExitCode {
    let (config, _) = match find_and_load(config) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    match f(config.api.address) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logwharf: {e:#}");
            if e.downcast_ref::<client::NoDaemon>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `validate --connect`: every peer a source needs, reachable or not.
fn check_connections(config: &Config) -> ExitCode {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        eprintln!("cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let results = rt.block_on(logwharf_collector::sources::check_connections(config));
    let mut ok = true;
    for (what, r) in results {
        match r {
            Ok(m) => println!("{what}: ok ({m})"),
            Err(e) => {
                ok = false;
                eprintln!("{what}: unreachable: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn find_and_load(
    explicit: Option<&Path>,
) -> Result<(Config, String), logwharf_config::ConfigErrors> {
    let env = std::env::var_os("LOGWHARF_CONFIG").map(PathBuf::from);
    let path = explicit.map(Path::to_path_buf).or(env).or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| DEFAULT_CONFIG.into())
    });
    match path {
        Some(p) => load_config(&p).map(|c| (c, p.display().to_string())),
        None => Ok((builtin_default(), "<built-in default>".to_string())),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOGWHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `with_api`: `--once --api`. A daemon serves the API when `api.enabled`; a `--once` run
/// (typically a backfill beside the daemon, whose port is taken) only when asked. A daemon
/// reloads on SIGHUP (and with `watch_config`, when the file changes).
fn run(
    config: Config,
    origin: &str,
    once: bool,
    with_api: bool,
    watch_config: bool,
) -> anyhow::Result<()> {
    // Before anything else (the API's port included): a second process on this data_dir
    // stops here, naming the directory and the other pid.
    let _lock = logwharf_collector::lock::DataDirLock::acquire(&config.data_dir)?;
    // A bounded blocking pool, whatever the number of containers: the file sources' jobs
    // take at most two sets of slots (see `tail::blocking`), the rest is for checkpoint
    // writes and the sinks' file and console writes.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(2 * logwharf_collector::tail::blocking::slots() + 4)
        .build()
        .context("starting the runtime")?;
    // `--once` on a terminal draws a progress line; elsewhere (pipes, journald) plain logs.
    let progress = (once && std::io::stderr().is_terminal()).then(Progress::new);
    rt.block_on(async move {
        let health = Health::new();
        if config.api.enabled && (!once || with_api) {
            api::start(config.api.address, health.clone(), progress.clone()).await?;
        } else if let Some(p) = &progress {
            recorder::install_progress_only(p.clone())?;
        }
        let _drawing = progress.as_ref().map(|p| p.draw());
        let shutdown = Shutdown::new();
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        if watch_config {
            reload::watch(origin.to_string(), reload_tx.clone())?;
        }
        // `--once` takes no reloads: SIGHUP only checks the file then.
        let reload_tx = (!once).then_some(reload_tx);
        tokio::spawn(watch_signals(
            shutdown.clone(),
            origin.to_string(),
            reload_tx,
        ));
        if !once {
            tokio::spawn(logwharf_collector::memory::trim_now_and_then(
                shutdown.clone(),
            ));
        }
        let reloads = (!once).then_some(reload_rx);
        Topology::run_reloadable(&config, once, shutdown, health, reloads).await
    })
}

/// SIGTERM/SIGINT: graceful shutdown; a second one: exit now. SIGHUP (systemd's
/// `ExecReload`): the config file is read again and, when valid, applied (`reloads`; `None`
/// under `--once`, which only checks it); an invalid one is logged and changes nothing.
async fn watch_signals(
    shutdown: Shutdown,
    origin: String,
    reloads: Option<tokio::sync::mpsc::UnboundedSender<Config>>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {
                match (reload::read_again(&origin, "SIGHUP"), &reloads) {
                    (Some(c), Some(tx)) => { let _ = tx.send(c); }
                    (Some(_), None) => tracing::warn!("SIGHUP: run --once applies no reloads"),
                    _ => {}
                }
                continue;
            }
        }
        seen += 1;
        if seen == 1 {
            tracing::info!(
                "signal received: stopping sources, draining sinks (again to exit at once)"
            );
            shutdown.trigger();
        } else {
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        }
    }
}

fn import_daemon_json(file: &Path, output: Option<&Path>) -> ExitCode {
    let origin = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{origin}: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match logwharf::import::import(&text, &origin) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match output {
        None => print!("{config}"),
        Some(out) => {
            if let Err(e) = std::fs::write(out, &config) {
                eprintln!("{}: {e}", out.display());
                return ExitCode::from(2);
            }
            eprintln!(
                "wrote {}; check it with `logwharf validate -c {}`",
                out.display(),
                out.display()
            );
        }
    }
    ExitCode::SUCCESS
}
