//! Thousands of source partitions: what kafka-relay costs when the work is
//! spread thin, on the same brokers for every count.
//!
//! For each partition count, a fresh source topic of that many partitions
//! is preloaded with a few records per partition, and a relay with its
//! defaults is started on it (its target topic made beforehand, as in
//! `throughput`):
//! - start-up: from the launch until the first record is visible to an
//!   independent `read_committed` consumer of the target, and until the
//!   whole preload is (the copy rate counts from the first record);
//! - steady load: the same relay then copies `rate` records a second,
//!   spread round-robin over every partition, for `seconds`; every record's
//!   end-to-end latency is taken, as in `latency`;
//! - resident memory (the kernel's high-water mark, `VmHWM`) and the files
//!   in the relay's WAL directory, sampled every 200 ms in each phase.
//!
//! The point is the shape more than the figures: memory and WAL files that
//! do not multiply with the partition count. Nothing here asserts a speed.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::contenders::{Contender, Run};
use crate::harness::{clients, clusters, kafka};
use crate::measure::{dir_files, quantile, ProcStats, Sample, Sampler};
use crate::observe::{self, Latencies};
use crate::{mib, say, workload};

pub struct Row {
    pub partitions: i32,
    pub preloaded: u64,
    /// Launch until the first record was visible on the target.
    pub first: Duration,
    /// Launch until the last preloaded record was visible.
    pub copied: Duration,
    /// Records/s from the first to the last preloaded record.
    pub copy_rate: f64,
    pub copy: ProcStats,
    pub copy_wal_files: u64,
    pub steady_written: u64,
    /// Sorted, µs.
    pub latencies: Vec<u64>,
    pub steady: ProcStats,
    pub steady_wal_files: u64,
}

pub struct Load {
    pub per_partition: u64,
    pub size: usize,
    pub rate: u64,
    pub seconds: Duration,
}

pub fn run(counts: &[i32], load: &Load, dir: &Path) -> Vec<Row> {
    if std::env::var_os("KAFKA_RELAY_BROKER_HEAP").is_none() {
        say(format!(
            "the brokers get the tests' {} heap, which thousands of partitions fill: \
             the figures will be the brokers' garbage collection; set KAFKA_RELAY_BROKER_HEAP=4g",
            kafka::broker_heap()
        ));
    }
    let c = clusters();
    let mut rows = Vec::new();
    for (round, &partitions) in counts.iter().enumerate() {
        let topic = clients::unique_name(&format!("partitions-{partitions}"));
        let target_topic = Contender::Relay.target_topic(&topic);
        let made = Instant::now();
        clients::create_topic(&c.source.bootstrap, &topic, partitions, &[]);
        clients::create_topic(&c.target.bootstrap, &target_topic, partitions, &[]);
        let preloaded = load.per_partition * partitions as u64;
        say(format!(
            "{topic}: both topics made in {:.1}s; preloading {preloaded} records of {} B",
            made.elapsed().as_secs_f64(),
            load.size
        ));
        workload::preload(
            &c.source.bootstrap,
            &topic,
            partitions,
            preloaded,
            load.size,
        );
        let run = Run {
            round,
            ..Run::direct(c, &topic, partitions, dir)
        };
        let started = Instant::now();
        let running = Contender::Relay.start(&run);
        let wal = running.wal_dir().expect("the relay's WAL").to_path_buf();
        let sampler = wal_sampler(running.pid(), &wal);
        let arrival = observe::wait_for(
            started,
            &c.target.bootstrap,
            &target_topic,
            partitions,
            preloaded,
            Duration::from_secs(1800),
            || running.log_tail(),
        );
        let copied = started.elapsed();
        let (copy, series) = sampler.finish();
        say(format!(
            "{partitions} partitions: first record after {:.1}s, all {preloaded} after {:.1}s; \
             peak RSS {:.0} MiB; {rate} records/s for {}s next",
            arrival.first.as_secs_f64(),
            copied.as_secs_f64(),
            mib(copy.peak_rss_bytes as f64),
            load.seconds.as_secs(),
            rate = load.rate,
        ));

        let sampler = wal_sampler(running.pid(), &wal);
        let observer = Latencies::start(
            &c.target.bootstrap,
            &target_topic,
            partitions,
            load.seconds + Duration::from_secs(900),
        );
        let mut writer =
            workload::Writer::new(&c.source.bootstrap, &topic, partitions, load.size, 1);
        let written = workload::steady(&mut writer, load.rate, load.seconds);
        let latencies = observer.finish(written);
        let (steady, steady_series) = sampler.finish();
        let last_words = running.stop();
        if !last_words.is_empty() {
            say(format!("{partitions} partitions: {last_words}"));
        }
        let row = Row {
            partitions,
            preloaded,
            first: arrival.first,
            copied,
            copy_rate: arrival.steady_rate(),
            copy,
            copy_wal_files: most_files(&series),
            steady_written: written,
            latencies,
            steady,
            steady_wal_files: most_files(&steady_series),
        };
        say(format!(
            "{partitions} partitions: steady p50 {:.1} ms, p99 {:.1} ms; peak RSS {:.0} MiB; \
             at most {} WAL files",
            quantile(&row.latencies, 0.5) as f64 / 1000.0,
            quantile(&row.latencies, 0.99) as f64 / 1000.0,
            mib(row.steady.peak_rss_bytes as f64),
            row.steady_wal_files,
        ));
        rows.push(row);
        clients::delete_topic(&c.target.bootstrap, &target_topic);
        clients::delete_topic(&c.source.bootstrap, &topic);
    }
    rows
}

/// Samples the relay, with the number of files under its WAL directory.
fn wal_sampler(pid: u32, wal: &Path) -> Sampler {
    let wal = wal.to_path_buf();
    Sampler::with_probe(pid, move || dir_files(&wal))
}

fn most_files(series: &[Sample]) -> u64 {
    series.iter().map(|&(_, _, files)| files).max().unwrap_or(0)
}

pub fn print(load: &Load, rows: &[Row]) {
    println!(
        "| source partitions | preloaded ({} per partition, {} B) | first visible (s) | all visible (s) | copy records/s | peak RSS after copy (MiB) | WAL files, copy | steady records ({} a second, {} s) | p50 (ms) | p99 (ms) | peak RSS after steady (MiB) | WAL files, steady | CPU, steady (s) |",
        load.per_partition,
        load.size,
        load.rate,
        load.seconds.as_secs()
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        let ms = |q: f64| quantile(&row.latencies, q) as f64 / 1000.0;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {:.1} | {:.1} | {:.0} | {} | {:.1} |",
            row.partitions,
            row.preloaded,
            row.first.as_secs_f64(),
            row.copied.as_secs_f64(),
            row.copy_rate,
            mib(row.copy.peak_rss_bytes as f64),
            row.copy_wal_files,
            row.steady_written,
            ms(0.5),
            ms(0.99),
            mib(row.steady.peak_rss_bytes as f64),
            row.steady_wal_files,
            row.steady.cpu_secs - row.copy.cpu_secs,
        );
    }
}
