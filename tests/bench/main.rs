//! `cargo bench --bench compare -- <what>`: kafka-relay side by side with
//! MirrorMaker 2 (exactly-once and at-least-once) and a plain rdkafka pipe,
//! on the test harness's two real Kafka brokers, in one run.
//!
//! - `throughput`: the source is preloaded with a fixed workload per record
//!   size; each contender in turn copies it to a target topic of its own,
//!   and the clock stops when the last record is visible to an independent
//!   `read_committed` consumer of the target. Peak RSS, CPU seconds and
//!   bytes written to disk come from `/proc` of the contender's process.
//! - `latency`: each contender copies a steady stream; the target consumer
//!   records, per record, the time since it was handed to the producer.
//! - `backlog`: kafka-relay with its target blackholed (the harness's fault
//!   proxy) until the WAL holds gigabytes, resident memory sampled all along;
//!   then the proxy heals and the drain is timed.
//! - `wal`: the WAL alone (append + fsync + ack) against the disk's own
//!   fsync'd write rate, measured in the same run.
//!
//! Figures are printed as Markdown for `docs/benchmarks.md`; nothing here
//! asserts a speed. Progress goes to stderr.

#[path = "../it/harness/mod.rs"]
#[allow(dead_code)] // shared with tests/it, which uses parts this binary does not
mod harness;

mod backlog;
mod contenders;
mod latency;
mod measure;
mod mirror_maker;
mod observe;
mod pipe;
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
    slugs
        .iter()
        .map(|s| {
            Contender::parse(s).unwrap_or_else(|| {
                panic!("unknown contender {s:?}: use relay, mm2-eos, mm2-alo, pipe or pipe-idem")
            })
        })
        .collect()
}

/// The run's working dir: contender configs, logs and WALs.
fn work_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("kafka-relay-bench-")
        .tempdir()
        .expect("bench dir")
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
        } => {
            let dir = work_dir();
            let rows = throughput::run(
                &sizes,
                bytes,
                max_records,
                partitions,
                &contenders(&slugs),
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
        } => {
            let dir = work_dir();
            let rows = latency::run(
                size,
                rate,
                std::time::Duration::from_secs(seconds),
                partitions,
                &contenders(&slugs),
                dir.path(),
            );
            latency::print(size, rate, &rows);
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
