//! The command-line edge: parses arguments, sets up logging, runs a command
//! and turns the typed errors of the layers below into messages for people
//! and exit codes.
//!
//! Exit codes: 0 success, 1 the command failed (a problem outside the
//! relay: unreachable cluster, missing topic, corrupt data), 2 the
//! configuration or the command line is wrong.

mod admin_client;
mod check;
mod config;
mod demo;
mod dlq;
mod offsets;
mod run;
mod status;
mod verify;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, ConfigError};

#[derive(Parser)]
#[command(
    name = "kafka-relay",
    version,
    about = "Durable, exactly-once relay between Kafka clusters"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "KAFKA_RELAY_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax (e.g.
    /// `info,kafka_relay=debug`). Default: `info`; for `demo`, warnings of
    /// kafka-relay only, so its narrative stays readable.
    #[arg(long, global = true, env = "KAFKA_RELAY_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay until SIGINT or SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// This instance's name among the instances of a relay with
        /// `[scale]` (default: KAFKA_RELAY_INSTANCE, else HOSTNAME); unique
        /// per instance, and kept across its restarts.
        #[arg(long)]
        instance: Option<String>,
    },
    /// Validate the configuration and reach both clusters; one line per problem.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Inspect, replay or purge the dead-letter queue (relay stopped).
    Dlq {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: dlq::DlqAction,
    },
    /// The per-partition picture: WAL depth, last checkpoint, dead letters,
    /// lag. Asks the running relay (`[admin] listen`), else reads the WAL.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Pause a running relay: nothing is read or shipped; the WAL and the
    /// partition assignment are kept (needs `[admin] listen`).
    Pause {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Resume a paused (or `enabled = false`) running relay.
    Resume {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// List the WAL's entries or verify its checksums (relay stopped).
    Wal {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: wal::WalAction,
    },
    /// Compare a source range with the target: matched, missing, duplicated,
    /// differing records per partition; exit 1 on any difference.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        args: verify::VerifyArgs,
    },
    /// Consumer-group offsets translated from the source to the target with
    /// the relay's offset map (needs `[offsets]`).
    Offsets {
        #[arg(long, short)]
        config: PathBuf,
        #[command(subcommand)]
        action: offsets::OffsetsAction,
    },
    /// The configuration on its own, without reaching any cluster.
    Config {
        #[command(subcommand)]
        action: config::ConfigAction,
    },
    /// Run the whole path on two in-process librdkafka mock clusters, with a
    /// target outage part-way, and print a tally.
    Demo {
        /// Records the demo producer writes to the source.
        #[arg(long, default_value_t = 20_000)]
        records: u64,
    },
}

/// Entry point of the `kafka-relay` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        // The mock clusters do not serve DescribeConfigs; that warning is noise here.
        Command::Demo { .. } => {
            "warn,kafka_relay::shipper::limits=error,librdkafka=off,rdkafka=off"
        }
        _ => "info",
    };
    let filter = cli.log.as_deref().unwrap_or(default_filter);
    if let Err(message) = init_logging(cli.log_format, filter) {
        eprintln!("error: --log: {message}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Run { config, instance } => run::run(load(&config)?, instance).await,
            Command::Check { config } => check::check(load(&config)?).await,
            Command::Config { action } => config::run(action),
            Command::Demo { records } => demo::demo(records).await,
            Command::Dlq { config, action } => dlq::dlq(load(&config)?, action).await,
            Command::Offsets { config, action } => offsets::offsets(load(&config)?, action).await,
            Command::Status { config, json } => status::status(load(&config)?, json).await,
            Command::Pause { config } => status::steer(load(&config)?, status::Steer::Pause).await,
            Command::Resume { config } => {
                status::steer(load(&config)?, status::Steer::Resume).await
            }
            Command::Wal { config, action } => wal::wal(load(&config)?, action).await,
            Command::Verify { config, args } => verify::verify(load(&config)?, args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(failure.code)
        }
    }
}

/// A failed command: the message printed and the exit code.
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn runtime(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: format!("error: {e}"),
            code: 1,
        }
    }
}

/// A WAL error as it stands (what `?` gives the walks of `wal::check`);
/// where a variant wants its own words (a held lock), map it first.
impl From<crate::wal::WalError> for Failure {
    fn from(e: crate::wal::WalError) -> Failure {
        Failure::runtime(e)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path, std::env::vars()).map_err(|e: ConfigError| Failure {
        // Parse and read errors name the file themselves; problems do not.
        message: match e {
            ConfigError::Invalid(_) => format!("error: configuration {}:\n{e}", path.display()),
            e => format!("error: configuration: {e}"),
        },
        code: 2,
    })
}

/// Opens the WAL of a relay that must be stopped (offline commands): a
/// held lock means it is running, a missing WAL is an error, not created.
/// An instance of a scaled-out relay has one WAL per unit: the command
/// works on one of them at a time, named by `KAFKA_RELAY_WAL__DIR`.
fn open_stopped_wal(config: &Config) -> Result<crate::wal::Wal, Failure> {
    if let Some(units) = unit_wal_dirs(config)?.filter(|u| !u.is_empty()) {
        let listed: Vec<String> = units.iter().map(|d| d.display().to_string()).collect();
        return Err(Failure::runtime(format!(
            "with [scale], {} holds one WAL per unit: name one with KAFKA_RELAY_WAL__DIR=<dir> (one of: {})",
            config.wal.dir.display(),
            listed.join(", ")
        )));
    }
    crate::wal::Wal::open_existing_with_key(&config.wal.dir, config.wal_options(), config.wal_key())
        .map_err(|e| match e {
            crate::wal::WalError::Locked { .. } => Failure::runtime(format!(
                "the WAL at {} is in use: stop the relay first",
                config.wal.dir.display()
            )),
            e => Failure::runtime(e),
        })
}

/// With `[scale]`, the WAL directories of this instance's units
/// (`unit-<n>` in `wal.dir`); `None` without `[scale]`.
fn unit_wal_dirs(config: &Config) -> Result<Option<Vec<std::path::PathBuf>>, Failure> {
    if config.scale.is_none() {
        return Ok(None);
    }
    let entries = match std::fs::read_dir(&config.wal.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        Err(e) => {
            return Err(Failure::runtime(format!(
                "cannot list {}: {e}",
                config.wal.dir.display()
            )))
        }
    };
    let mut dirs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("unit-"))
        })
        .collect();
    dirs.sort();
    Ok(Some(dirs))
}

fn init_logging(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| e.to_string())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the relay");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
