//! Memory with a backlog: kafka-relay reaches its target only through the
//! harness's fault proxy, which is blackholed (traffic held, nothing
//! answered) once the relay runs. The source then receives `bytes` of
//! records, which the relay can only put in its WAL. Resident memory and
//! the WAL's size on disk are sampled every 200 ms all along. When the
//! relay has taken in everything (its committed source offsets reach the
//! end of the topic), the proxy heals and the drain to the target is timed.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::contenders::{Contender, Run};
use crate::harness::proxy::Faults;
use crate::harness::{clients, clusters};
use crate::measure::{dir_bytes, ProcStats, Sample, Sampler};
use crate::{mib, observe, say, workload};

pub struct Report {
    pub size: usize,
    pub records: u64,
    pub fill: Duration,
    pub drain: Duration,
    /// (s, RSS, WAL bytes on disk) through fill and drain.
    pub series: Vec<Sample>,
    /// When the drain began, in the series' clock.
    pub drain_began: f64,
    pub stats: ProcStats,
}

const WARM_UP: u64 = 1000;

pub fn run(bytes: u64, size: usize, partitions: i32, dir: &Path) -> Report {
    let c = clusters();
    let records = (bytes / size as u64).max(1);
    let topic = clients::unique_name(&format!("backlog-{size}"));
    let target_topic = Contender::Relay.target_topic(&topic);
    clients::create_topic(&c.source.bootstrap, &topic, partitions, &[]);
    clients::create_topic(&c.target.bootstrap, &target_topic, partitions, &[]);
    c.target.proxy.clear();
    let run = Run {
        target: &c.target.proxied_bootstrap,
        // Room for the whole backlog: this run is about memory, not the limit.
        wal_max_bytes: Some(bytes * 2 + (1 << 30)),
        ..Run::direct(c, &topic, partitions, dir)
    };
    let running = Contender::Relay.start(&run);
    // A relay needs its target once at start-up (to read its checkpoints).
    workload::preload(&c.source.bootstrap, &topic, partitions, WARM_UP, size);
    observe::wait_for(
        Instant::now(),
        &c.target.bootstrap,
        &target_topic,
        partitions,
        WARM_UP,
        Duration::from_secs(300),
        || running.log_tail(),
    );
    let wal = running.wal_dir().expect("relay has a WAL").to_path_buf();
    let sampler = Sampler::with_probe(running.pid(), move || dir_bytes(&wal));
    let sampling_since = Instant::now();
    c.target.proxy.set(Faults {
        blackhole: true,
        ..Faults::default()
    });
    say(format!(
        "target blackholed; writing {records} records of {size} B ({:.0} MiB) to the source",
        mib((records * size as u64) as f64)
    ));
    let started = Instant::now();
    workload::preload(&c.source.bootstrap, &topic, partitions, records, size);
    let group = format!("kafka-relay-{}", run.relay_id());
    wait_until_taken_in(&c.source.bootstrap, &group, &topic, partitions, || {
        running.log_tail()
    });
    let fill = started.elapsed();
    say(format!(
        "relay took in the backlog in {:.0}s; healing the target link",
        fill.as_secs_f64()
    ));
    c.target.proxy.clear();
    let drain_started = Instant::now();
    observe::wait_for(
        drain_started,
        &c.target.bootstrap,
        &target_topic,
        partitions,
        WARM_UP + records,
        Duration::from_secs(7200),
        || running.log_tail(),
    );
    let drain = drain_started.elapsed();
    let (stats, series) = sampler.finish();
    running.stop();
    clients::delete_topic(&c.target.bootstrap, &target_topic);
    clients::delete_topic(&c.source.bootstrap, &topic);
    Report {
        size,
        records,
        fill,
        drain,
        drain_began: (drain_started - sampling_since).as_secs_f64(),
        series,
        stats,
    }
}

/// Waits until the relay's committed source offsets (committed only after
/// the WAL fsync) reach the end of every partition.
fn wait_until_taken_in(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    context: impl Fn() -> String,
) {
    let consumer: BaseConsumer = clients::client_config(bootstrap)
        .set("group.id", group)
        .create()
        .expect("offsets reader");
    let deadline = Instant::now() + Duration::from_secs(7200);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    loop {
        let committed = consumer
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .expect("committed offsets of the relay");
        let behind: i64 = (0..partitions)
            .map(|p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                let at = match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                };
                high - at
            })
            .sum();
        if behind == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the relay still had {behind} records to take in\n{}",
            context()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn print(r: &Report) {
    let data = (r.records * r.size as u64) as f64;
    let fill: Vec<&Sample> = r.series.iter().filter(|s| s.0 <= r.drain_began).collect();
    let drain: Vec<&Sample> = r.series.iter().filter(|s| s.0 > r.drain_began).collect();
    let max_rss = |s: &[&Sample]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let peak_wal = r.series.iter().map(|s| s.2).max().unwrap_or(0);
    println!(
        "Backlog of {} records of {} B ({:.0} MiB): taken in in {:.0}s ({:.1} MiB/s) with the target unreachable; drained in {:.0}s ({:.0} records/s, {:.1} MiB/s).",
        r.records,
        r.size,
        mib(data),
        r.fill.as_secs_f64(),
        mib(data / r.fill.as_secs_f64()),
        r.drain.as_secs_f64(),
        r.records as f64 / r.drain.as_secs_f64(),
        mib(data / r.drain.as_secs_f64())
    );
    println!(
        "Peak WAL on disk {:.0} MiB; peak RSS {:.0} MiB while filling, {:.0} MiB while draining, high-water mark {:.0} MiB; {:.0} CPU s.",
        mib(peak_wal as f64),
        mib(max_rss(&fill) as f64),
        mib(max_rss(&drain) as f64),
        mib(r.stats.peak_rss_bytes as f64),
        r.stats.cpu_secs
    );
    println!();
    println!("| t (s) | phase | WAL on disk (MiB) | RSS (MiB) |");
    println!("|---|---|---|---|");
    // About twenty rows, evenly spaced in time.
    let step = (r.series.len() / 20).max(1);
    for s in r.series.iter().step_by(step) {
        let phase = if s.0 <= r.drain_began {
            "fill"
        } else {
            "drain"
        };
        println!(
            "| {:.0} | {phase} | {:.0} | {:.0} |",
            s.0,
            mib(s.2 as f64),
            mib(s.1 as f64)
        );
    }
}
