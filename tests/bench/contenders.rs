//! The four relays the benchmark compares, each started as a process of its
//! own against the same brokers and the same source topic, writing to a
//! target topic of its own:
//!
//! 1. kafka-relay with its defaults (WAL fsync'd per batch, transactions);
//! 2. MirrorMaker 2, exactly-once (see `mirror_maker`);
//! 3. MirrorMaker 2, at-least-once (its default);
//! 4. the plain pipe (see `pipe`), the ceiling;
//! 5. on request only (`pipe-idem`), the same pipe with an idempotent
//!    producer: what per-partition ordering alone costs a relay;
//! 6. on request only (`relay-units`), one kafka-relay process with
//!    `[scale] units = 8` and 8 MiB transactions: eight transactional
//!    producers, and so eight transactions and connections in flight, for
//!    long links (docs/benchmarks.md, "Over a long link").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::kafka;
use crate::harness::Clusters;
use crate::mirror_maker::{self, MirrorMaker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Relay,
    RelayUnits,
    MirrorMakerEos,
    MirrorMakerAlo,
    Pipe,
    IdempotentPipe,
}

/// `relay-units`' additions to kafka-relay's defaults.
const RELAY_UNITS_SECTIONS: &str = "[scale]\nunits = 8\n\n[transaction]\nmax_bytes = \"8MiB\"\n";

impl Contender {
    /// The four the issue asks for, in the default order.
    pub const DEFAULT: [Contender; 4] = [
        Contender::Relay,
        Contender::MirrorMakerEos,
        Contender::MirrorMakerAlo,
        Contender::Pipe,
    ];
    const ALL: [Contender; 6] = [
        Contender::Relay,
        Contender::RelayUnits,
        Contender::MirrorMakerEos,
        Contender::MirrorMakerAlo,
        Contender::Pipe,
        Contender::IdempotentPipe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Relay => "kafka-relay",
            Contender::RelayUnits => "kafka-relay, 8 units",
            Contender::MirrorMakerEos => "MM2 exactly-once",
            Contender::MirrorMakerAlo => "MM2 at-least-once",
            Contender::Pipe => "plain pipe",
            Contender::IdempotentPipe => "idempotent pipe",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            Contender::Relay => "relay",
            Contender::RelayUnits => "relay-units",
            Contender::MirrorMakerEos => "mm2-eos",
            Contender::MirrorMakerAlo => "mm2-alo",
            Contender::Pipe => "pipe",
            Contender::IdempotentPipe => "pipe-idem",
        }
    }

    pub fn parse(slug: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.slug() == slug)
    }

    /// Where this contender writes `topic` on the target.
    pub fn target_topic(self, topic: &str) -> String {
        match self {
            Contender::Relay
            | Contender::RelayUnits
            | Contender::Pipe
            | Contender::IdempotentPipe => {
                format!("{topic}.{}", self.slug())
            }
            Contender::MirrorMakerEos => {
                MirrorMaker::target_topic(topic, mirror_maker::Mode::ExactlyOnce)
            }
            Contender::MirrorMakerAlo => {
                MirrorMaker::target_topic(topic, mirror_maker::Mode::AtLeastOnce)
            }
        }
    }

    pub fn start(self, run: &Run) -> Running {
        let dir = run.dir.join(run.name(self));
        std::fs::create_dir_all(&dir).expect("contender dir");
        match self {
            Contender::Relay | Contender::RelayUnits => {
                let wal = dir.join("wal");
                let config = dir.join("relay.toml");
                let mut toml = relay_config(run, &self.target_topic(run.topic), &wal);
                let mut instance = run.instance.clone();
                if self == Contender::RelayUnits {
                    toml.push_str(RELAY_UNITS_SECTIONS);
                    instance.get_or_insert_with(|| "bench".to_string());
                }
                std::fs::write(&config, toml).expect("write relay.toml");
                let relay = env!("CARGO_BIN_EXE_kafka-relay");
                // For profiles: e.g. KAFKA_RELAY_BENCH_WRAPPER="heaptrack -o /tmp/relay".
                let mut cmd = match std::env::var("KAFKA_RELAY_BENCH_WRAPPER") {
                    Ok(wrapper) if !wrapper.trim().is_empty() => {
                        let mut words = wrapper.split_whitespace();
                        let mut cmd = Command::new(words.next().expect("a wrapper command"));
                        cmd.args(words).arg(relay);
                        cmd
                    }
                    _ => Command::new(relay),
                };
                // KAFKA_RELAY_BENCH_LOG=debug adds each transaction's timings.
                let level =
                    std::env::var("KAFKA_RELAY_BENCH_LOG").unwrap_or_else(|_| "info".to_string());
                cmd.args(["--log", &level, "run", "--config"]).arg(&config);
                if let Some(instance) = &instance {
                    cmd.args(["--instance", instance]);
                }
                Running::process(cmd, dir.join("relay.log"), Some(wal))
            }
            Contender::Pipe | Contender::IdempotentPipe => {
                let mut cmd = Command::new(std::env::current_exe().expect("own path"));
                cmd.args(["pipe", "--source", run.source, "--target", run.target])
                    .args(["--topic", run.topic, "--target-topic"])
                    .arg(self.target_topic(run.topic))
                    .args(["--partitions", &run.partitions.to_string()]);
                if self == Contender::IdempotentPipe {
                    cmd.arg("--idempotent");
                }
                Running::process(cmd, dir.join("pipe.log"), None)
            }
            Contender::MirrorMakerEos | Contender::MirrorMakerAlo => {
                let mode = if self == Contender::MirrorMakerEos {
                    mirror_maker::Mode::ExactlyOnce
                } else {
                    mirror_maker::Mode::AtLeastOnce
                };
                Running::MirrorMaker(MirrorMaker::start(
                    run.source,
                    run.target,
                    run.topic,
                    &format!("{}-{}", run.topic, run.round),
                    mode,
                    &dir,
                ))
            }
        }
    }
}

/// What every contender of one measurement shares.
pub struct Run<'a> {
    pub source: &'a str,
    /// The bootstrap the contender connects to (the fault proxy's, in the backlog run).
    pub target: &'a str,
    pub topic: &'a str,
    pub partitions: i32,
    pub dir: &'a Path,
    /// `wal.max_bytes` for kafka-relay; its default when `None`.
    pub wal_max_bytes: Option<u64>,
    /// Which copy of `topic` this is (0 for the first). A contender run again
    /// on the same topic gets a fresh identity from it: its own directory,
    /// transactional id and Connect state, so it starts from the source's
    /// beginning like the first copy, not from where that one stopped.
    pub round: usize,
    /// kafka-relay only: top-level keys put before its first section
    /// (`enabled = false`).
    pub relay_top: String,
    /// kafka-relay only: sections added to its configuration (`[scale]`, `[admin]`).
    pub relay_sections: String,
    /// kafka-relay only: `--instance` of a scaled-out relay. The instance
    /// gets a directory, and so a WAL, of its own; it shares the round's
    /// relay id with the other instances of the round.
    pub instance: Option<String>,
}

impl<'a> Run<'a> {
    /// Both clusters reached directly, kafka-relay's default WAL limit.
    pub fn direct(c: &'a Clusters, topic: &'a str, partitions: i32, dir: &'a Path) -> Run<'a> {
        Run {
            source: &c.source.bootstrap,
            target: &c.target.bootstrap,
            topic,
            partitions,
            dir,
            wal_max_bytes: None,
            round: 0,
            relay_top: String::new(),
            relay_sections: String::new(),
            instance: None,
        }
    }

    /// kafka-relay's `transactional_id`, and so its relay id: its source
    /// consumer group is `kafka-relay-<this>`.
    pub fn relay_id(&self) -> String {
        format!("bench-{}-{}", self.topic, self.round)
    }

    /// The contender's name in this round: its directory, its identities.
    fn name(&self, contender: Contender) -> String {
        match &self.instance {
            Some(instance) => format!("{}-{}-{instance}", contender.slug(), self.round),
            None => format!("{}-{}", contender.slug(), self.round),
        }
    }
}

/// kafka-relay's defaults: only what has no default is set (and the
/// target topic, so contenders do not share one).
fn relay_config(run: &Run, target_topic: &str, wal: &Path) -> String {
    let wal_max = run
        .wal_max_bytes
        .map(|b| format!("max_bytes = {b}\n"))
        .unwrap_or_default();
    format!(
        r#"{top}
[source]
bootstrap_servers = "{source}"
topics = ["{topic}"]

[target]
bootstrap_servers = "{target}"
transactional_id = "{relay_id}"
topic = "{target_topic}"

[wal]
dir = "{wal}"
{wal_max}
{sections}"#,
        source = run.source,
        target = run.target,
        topic = run.topic,
        relay_id = run.relay_id(),
        wal = wal.display(),
        top = run.relay_top,
        sections = run.relay_sections,
    )
}

pub enum Running {
    Process {
        pid: u32,
        log: PathBuf,
        wal: Option<PathBuf>,
    },
    MirrorMaker(MirrorMaker),
}

impl Running {
    /// Started through the harness, so it dies with the benchmark even if
    /// the benchmark panics or is killed.
    fn process(mut cmd: Command, log: PathBuf, wal: Option<PathBuf>) -> Running {
        let file = std::fs::File::create(&log).expect("contender log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file));
        let label = log.display().to_string();
        let pid = kafka::spawn_tied(cmd, &label, None).expect("start contender");
        Running::Process { pid, log, wal }
    }

    pub fn pid(&self) -> u32 {
        match self {
            Running::Process { pid, .. } => *pid,
            Running::MirrorMaker(mm) => mm.pid(),
        }
    }

    /// kafka-relay's WAL directory.
    pub fn wal_dir(&self) -> Option<&Path> {
        match self {
            Running::Process { wal, .. } => wal.as_deref(),
            Running::MirrorMaker(_) => None,
        }
    }

    /// The log file of a contender run as a process.
    pub fn log(&self) -> Option<&Path> {
        match self {
            Running::Process { log, .. } => Some(log),
            Running::MirrorMaker(_) => None,
        }
    }

    pub fn log_tail(&self) -> String {
        match self {
            Running::Process { log, .. } => {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(40)..].join("\n")
            }
            Running::MirrorMaker(mm) => mm.log_tail(),
        }
    }

    /// SIGKILL: a crash, nothing finished (the scale bench's hand-over).
    pub fn kill(self) {
        kafka::stop_tied(self.pid(), true);
    }

    /// SIGTERM, then SIGKILL if it lingers: the figures are already taken.
    /// Returns the last line the process logged (kafka-relay's run summary).
    pub fn stop(self) -> String {
        match self {
            Running::Process { pid, log, .. } => {
                kafka::stop_tied(pid, false);
                let text = std::fs::read_to_string(log).unwrap_or_default();
                text.lines().last().unwrap_or_default().to_string()
            }
            Running::MirrorMaker(mm) => {
                mm.stop();
                String::new()
            }
        }
    }
}
