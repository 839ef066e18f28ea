//! `cargo bench --bench compare -- <what>`: kafka-relay side by side with
//! MirrorMaker 2 (exactly-once and at-least-once) and a plain rdkafka pipe,
//! on the test harness's two real Kafka brokers, in one run.
//!
//! - `throughput`: the source is preloaded with a fixed workload per record
//!   size; each contender in turn copies it to a target topic of its own,
//!   and the clock stops when the last record is visible to an independent
//!   `read_committed` consumer of the target. Peak RSS, CPU seconds and
//!   bytes written to disk come from `/proc` of the contender's process.
//! - `--links` (throughput) and `--link` (latency): the same over a long
//!   link to the target (delay, window, loss: the fault proxy's model).
//! - `latency`: each contender copies a steady stream; the target consumer
//!   records, per record, the time since it was handed to the producer.
//! - `backlog`: kafka-relay with its target blackholed (the harness's fault
//!   proxy) until the WAL holds gigabytes, resident memory sampled all along;
//!   then the proxy heals and the drain is timed.
//! - `wal`: the WAL alone (append + fsync + ack) against the disk's own
//!   fsync'd write rate, measured in the same run.
//! - `partitions`: kafka-relay on 1,000 and 5,000 source partitions: its
//!   start-up, a copy of a few records per partition, a steady load, and
//!   its memory and WAL files all along.
//! - `scale`: kafka-relay scaled out (`[scale]`) as 1, 2 and 3 instances:
//!   the copy of a preloaded topic, and the hand-over of a stopped
//!   instance's units while records flow.
//!
//! Figures are printed as Markdown for `docs/benchmarks.md`; nothing here
//! asserts a speed. Progress goes to stderr.

#[path = "../it/harness/mod.rs"]
#[allow(dead_code)] // shared with tests/it, which uses parts this binary does not
mod harness;

mod backlog;
mod contenders;
mod latency;
mod link;
mod measure;
mod mirror_maker;
mod observe;
mod partitions;
mod pipe;
mod scale;
mod throughput;
mod wal_disk;
mod workload;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use contenders::Contender;

#[derive(Parser)]
#[command(about = "kafka-relay vs MirrorMaker 2 vs a plain pipe, on real brokers")]
struct Cli {
    /// `cargo bench` passes this to every bench target.
    #[arg(long, hide = true, global = true)]
    bench: bool,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Time to copy a preloaded topic, per record size and contender.
    Throughput {
        /// Record sizes in bytes.
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1024, 65536])]
        sizes: Vec<usize>,
        /// Bytes of workload per size (records = bytes / size, at most `max_records`).
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        #[arg(long, default_value_t = 2_000_000)]
        max_records: u64,
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        /// Contenders by slug (relay, mm2-eos, mm2-alo, pipe; also pipe-idem),
        /// run in this order; one listed twice runs twice and is compared by its mean.
        #[arg(long, value_delimiter = ',', default_values_t = Contender::DEFAULT.map(|c| c.slug().to_string()))]
        contenders: Vec<String>,
        /// Links to the target, each measured with every contender:
        /// `loopback`, `<rtt>ms`, `<rtt>ms/<loss>%`.
        #[arg(long, value_delimiter = ',', default_values_t = ["loopback".to_string()])]
        links: Vec<String>,
    },
    /// End-to-end latency under a steady rate.
    Latency {
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 8)]
        partitions: i32,
        #[arg(long, value_delimiter = ',', default_values_t = Contender::DEFAULT.map(|c| c.slug().to_string()))]
        contenders: Vec<String>,
        /// The link to the target: `loopback`, `<rtt>ms`, `<rtt>ms/<loss>%`.
        #[arg(long, default_value = "loopback")]
        link: String,
    },
    /// Memory of kafka-relay while its WAL grows, then the drain rate.
    Backlog {
        /// Bytes of backlog to build up in the WAL.
        #[arg(long, default_value_t = 4 << 30)]
        bytes: u64,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 8)]
        partitions: i32,
    },
    /// The WAL's append + fsync + ack rate against the disk's fsync'd write rate.
    Wal {
        /// Bytes to write in each of the two measurements.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        #[arg(long, value_delimiter = ',', default_values_t = [100, 1024, 65536])]
        sizes: Vec<usize>,
        /// Where to write (defaults to the system temp dir, where the harness keeps the brokers' data).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// kafka-relay on thousands of source partitions: start-up, copy, steady load, memory, WAL files.
    Partitions {
        /// Source partition counts, each measured on a topic of its own.
        #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000])]
        counts: Vec<i32>,
        /// Records preloaded into each partition.
        #[arg(long, default_value_t = 10)]
        per_partition: u64,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Steady load after the copy: records a second, over all partitions.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// kafka-relay scaled out: throughput of 1, 2, 3 instances, and hand-over times.
    Scale {
        /// Which parts to run: throughput, handover.
        #[arg(long, value_delimiter = ',', default_values_t = ["throughput".to_string(), "handover".to_string()])]
        parts: Vec<String>,
        #[arg(long, default_value_t = 1024)]
        size: usize,
        #[arg(long, default_value_t = 12)]
        partitions: i32,
        /// `scale.units` of every scaled-out fleet.
        #[arg(long, default_value_t = 12)]
        units: u32,
        /// Throughput: bytes of workload (records = bytes / size, at most `max_records`).
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        #[arg(long, default_value_t = 2_000_000)]
        max_records: u64,
        /// Throughput: the fleets, in this order: `plain` (a relay without
        /// `[scale]`) or a number of instances; one listed twice runs twice.
        #[arg(long, value_delimiter = ',', default_values_t = ["plain", "1", "2", "3"].map(String::from))]
        fleets: Vec<String>,
        /// Hand-over: records a second while an instance is stopped.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        /// Hand-over: seconds the records keep flowing past the session
        /// timeout after the stop.
        #[arg(long, default_value_t = 40)]
        tail_secs: u64,
        /// Hand-over cases, `<kill|term>:<instances>:<session_timeout_ms>`:
        /// SIGKILL or SIGTERM to one of that many instances.
        #[arg(long, value_delimiter = ',', default_values_t = ["kill:3:10000", "kill:3:6000", "term:3:10000", "term:3:6000"].map(String::from))]
        handovers: Vec<String>,
    },
    /// The plain pipe contender (run by the benchmark itself).
    #[command(hide = true)]
    Pipe {
        #[arg(long)]
        source: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        target_topic: String,
        #[arg(long)]
        partitions: i32,
        /// An idempotent producer (the `pipe-idem` contender).
        #[arg(long)]
        idempotent: bool,
    },
}

fn contenders(slugs: &[String]) -> Vec<Contender> {
    parse_all(
        slugs,
        Contender::parse,
        "contender",
        "relay, mm2-eos, mm2-alo, pipe or pipe-idem",
    )
}

const LINK_FORMS: &str = "loopback, <rtt>ms or <rtt>ms/<loss>%, e.g. 150ms/1%";

/// Each of `items` by `parse`; panics at the first it does not know.
fn parse_all<T>(
    items: &[String],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
    use_instead: &str,
) -> Vec<T> {
    items
        .iter()
        .map(|s| parse(s).unwrap_or_else(|| panic!("unknown {what} {s:?}: use {use_instead}")))
        .collect()
}

/// The run's working dir: contender configs, logs and WALs. Kept after
/// the run when `KAFKA_RELAY_KEEP_TEST_DIRS` is set, as the tests' are.
fn work_dir() -> tempfile::TempDir {
    let keep = std::env::var_os("KAFKA_RELAY_KEEP_TEST_DIRS").is_some();
    let dir = tempfile::Builder::new()
        .prefix("kafka-relay-bench-")
        .disable_cleanup(keep)
        .tempdir()
        .expect("bench dir");
    if keep {
        say(format!("working dir {} (kept)", dir.path().display()));
    }
    dir
}

fn main() {
    let cli = Cli::parse();
    match cli.what {
        What::Pipe {
            source,
            target,
            topic,
            target_topic,
            partitions,
            idempotent,
        } => pipe::run(
            &source,
            &target,
            &topic,
            &target_topic,
            partitions,
            idempotent,
        ),
        What::Throughput {
            sizes,
            bytes,
            max_records,
            partitions,
            contenders: slugs,
            links,
        } => {
            let dir = work_dir();
            let rows = throughput::run(
                &sizes,
                bytes,
                max_records,
                partitions,
                &contenders(&slugs),
                &parse_all(&links, link::LinkSpec::parse, "link", LINK_FORMS),
                dir.path(),
            );
            throughput::print(&rows);
        }
        What::Latency {
            size,
            rate,
            seconds,
            partitions,
            contenders: slugs,
            link,
        } => {
            let dir = work_dir();
            let link = parse_all(&[link], link::LinkSpec::parse, "link", LINK_FORMS)[0];
            let rows = latency::run(
                size,
                rate,
                std::time::Duration::from_secs(seconds),
                partitions,
                &contenders(&slugs),
                link,
                dir.path(),
            );
            latency::print(size, rate, link, &rows);
        }
        What::Backlog {
            bytes,
            size,
            partitions,
        } => {
            let dir = work_dir();
            let report = backlog::run(bytes, size, partitions, dir.path());
            backlog::print(&report);
        }
        What::Partitions {
            counts,
            per_partition,
            size,
            rate,
            seconds,
        } => {
            let dir = work_dir();
            let load = partitions::Load {
                per_partition,
                size,
                rate,
                seconds: std::time::Duration::from_secs(seconds),
            };
            let rows = partitions::run(&counts, &load, dir.path());
            partitions::print(&load, &rows);
        }
        What::Scale {
            parts,
            size,
            partitions,
            units,
            bytes,
            max_records,
            fleets,
            rate,
            tail_secs,
            handovers,
        } => {
            let dir = work_dir();
            let setup = scale::Setup {
                size,
                partitions,
                units,
                dir: dir.path(),
            };
            let wants = |part: &str| parts.iter().any(|p| p == part);
            if wants("throughput") {
                let fleets = parse_all(
                    &fleets,
                    scale::Fleet::parse,
                    "fleet",
                    "plain or a number of instances",
                );
                let rows = scale::throughput(&setup, bytes, max_records, &fleets);
                scale::print_throughput(&setup, &rows);
            }
            if wants("handover") {
                let cases = parse_all(
                    &handovers,
                    scale::Handover::parse,
                    "hand-over",
                    "e.g. kill:3:10000 or term:2:6000",
                );
                let rows = scale::handovers(
                    &setup,
                    rate,
                    std::time::Duration::from_secs(tail_secs),
                    &cases,
                );
                println!();
                scale::print_handovers(&setup, rate, &rows);
            }
        }
        What::Wal { bytes, sizes, dir } => {
            let dir = dir.unwrap_or_else(std::env::temp_dir);
            let rows = wal_disk::run(&dir, bytes, &sizes);
            wal_disk::print(&rows);
        }
    }
}

/// Progress line on stderr.
pub fn say(line: impl AsRef<str>) {
    eprintln!("[bench] {}", line.as_ref());
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}
