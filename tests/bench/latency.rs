//! End-to-end latency under a steady rate: from the moment a record is
//! handed to the source producer to the moment a `read_committed` consumer
//! of the target receives it. Each contender gets a fresh source topic, is
//! warmed up (1000 records copied and visible) and then fed `rate` records
//! a second for the run's duration. The rate must stay below every
//! contender's capacity, or the figure measures a growing queue.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::contenders::{Contender, Run};
use crate::harness::{clients, clusters};
use crate::link::LinkSpec;
use crate::measure::quantile;
use crate::observe::{self, Latencies};
use crate::{say, workload};

pub struct Row {
    pub contender: Contender,
    pub records: u64,
    /// Sorted, µs.
    pub latencies: Vec<u64>,
}

const WARM_UP: u64 = 1000;

pub fn run(
    size: usize,
    rate: u64,
    duration: Duration,
    partitions: i32,
    contenders: &[Contender],
    link: LinkSpec,
    dir: &Path,
) -> Vec<Row> {
    let c = clusters();
    let via_link = link.apply(c);
    let mut rows = Vec::new();
    for (round, &contender) in contenders.iter().enumerate() {
        let topic = clients::unique_name(&format!("latency-{}", contender.slug()));
        let target_topic = contender.target_topic(&topic);
        clients::create_topic(&c.source.bootstrap, &topic, partitions, &[]);
        clients::create_topic(&c.target.bootstrap, &target_topic, partitions, &[]);
        let run = Run {
            round,
            target: via_link,
            ..Run::direct(c, &topic, partitions, dir)
        };
        let running = contender.start(&run);
        workload::preload(&c.source.bootstrap, &topic, partitions, WARM_UP, size);
        observe::wait_for(
            Instant::now(),
            &c.target.bootstrap,
            &target_topic,
            partitions,
            WARM_UP,
            Duration::from_secs(600),
            || running.log_tail(),
        );
        say(format!(
            "{}: warmed up; {rate} records/s of {size} B for {}s",
            contender.name(),
            duration.as_secs()
        ));
        let observer = Latencies::start(
            &c.target.bootstrap,
            &target_topic,
            partitions,
            duration + Duration::from_secs(600),
        );
        let mut writer = workload::Writer::new(&c.source.bootstrap, &topic, partitions, size, 1);
        let written = workload::steady(&mut writer, rate, duration);
        let latencies = observer.finish(written);
        running.stop();
        let row = Row {
            contender,
            records: written,
            latencies,
        };
        say(format!(
            "{}: p50 {:.1} ms, p99 {:.1} ms over {written} records",
            contender.name(),
            quantile(&row.latencies, 0.5) as f64 / 1000.0,
            quantile(&row.latencies, 0.99) as f64 / 1000.0
        ));
        rows.push(row);
        clients::delete_topic(&c.target.bootstrap, &target_topic);
        clients::delete_topic(&c.source.bootstrap, &topic);
    }
    c.target.proxy.clear();
    rows
}

pub fn print(size: usize, rate: u64, link: LinkSpec, rows: &[Row]) {
    println!(
        "| contender ({rate} records/s of {size} B, {}) | records | p50 (ms) | p99 (ms) | max (ms) |",
        link.label()
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        let ms = |q: f64| quantile(&row.latencies, q) as f64 / 1000.0;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} |",
            row.contender.name(),
            row.records,
            ms(0.5),
            ms(0.99),
            ms(1.0)
        );
    }
}
