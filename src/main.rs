//! The `logwharf` binary: command line, logging, metrics endpoint, signals — thin wiring around
//! the config, collector and sinks crates.

mod api;
mod recorder;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logwharf::{builtin_default, load_config};
use logwharf_collector::{Config, Health, Shutdown, Topology};
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
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::ImportDaemonJson { file, output } => import_daemon_json(&file, output.as_deref()),
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
        Command::Run { config, once, api } => {
            let (config, origin) = match find_and_load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => {
                    eprint!("{e}");
                    return ExitCode::from(2);
                }
            };
            tracing::info!(config = %origin, once, "logwharf {} starting", env!("CARGO_PKG_VERSION"));
            match run(config, &origin, once, api) {
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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// `with_api`: `--once --api`. A daemon serves the API when `api.enabled`; a `--once` run
/// (typically a backfill beside the daemon, whose port is taken) only when asked.
fn run(config: Config, origin: &str, once: bool, with_api: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let health = Health::new();
        if config.api.enabled && (!once || with_api) {
            api::start(config.api.address, health.clone()).await?;
        }
        let shutdown = Shutdown::new();
        tokio::spawn(watch_signals(shutdown.clone(), origin.to_string()));
        Topology::run(&config, once, shutdown, health).await
    })
}

/// SIGTERM/SIGINT: graceful shutdown; a second one: exit now. SIGHUP (systemd's
/// `ExecReload`): the config file is checked again and the result logged; the running
/// pipeline goes on unchanged (live reload is not built yet — a restart applies a change), so
/// a reload never stops the daemon.
async fn watch_signals(shutdown: Shutdown, origin: String) {
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
                check_on_hangup(&origin);
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

fn check_on_hangup(origin: &str) {
    let path = Path::new(origin);
    if !path.is_file() {
        tracing::warn!(config = %origin, "SIGHUP: no config file to read again; the running configuration goes on");
        return;
    }
    match load_config(path) {
        Ok(_) => {
            tracing::warn!(config = %origin, "SIGHUP: the config file is valid, but live reload is not supported yet: the running configuration goes on unchanged; restart logwharf to apply it")
        }
        Err(e) => {
            tracing::error!(config = %origin, errors = %e.to_string().trim_end(), "SIGHUP: the config file is not valid; the running configuration goes on unchanged")
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
