//! The throughput measurement: one preloaded source topic per record size,
//! copied by each contender in turn, one at a time, so no two contenders
//! share the machine's two cores. A contender may be listed more than once
//! (`--contenders pipe,relay,pipe`): each copy is a round of its own and
//! starts from the source's beginning. Each contender's target topic is deleted
//! after its run to keep the disk's free space (and so its speed) the same
//! for the next, and the disk is synced before each starts. An unmeasured
//! copy by the pipe goes first, so the first contender measured meets
//! brokers as warm as the last one does. With several links (`link`), each
//! size's topic is copied by every contender over each link in turn.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::contenders::{Contender, Run};
use crate::harness::{clients, clusters};
use crate::link::LinkSpec;
use crate::measure::{ProcStats, Sampler};
use crate::{mib, observe, say, workload};

pub struct Row {
    pub size: usize,
    pub link: LinkSpec,
    pub contender: Contender,
    pub records: u64,
    /// Start of the contender until the last record was visible.
    pub total: Duration,
    /// Until the first record was visible (start-up and first commit).
    pub first: Duration,
    /// Records/s from the first to the last visible record.
    pub steady_rate: f64,
    pub stats: ProcStats,
}

impl Row {
    pub fn records_per_sec(&self) -> f64 {
        self.steady_rate
    }

    pub fn mib_per_sec(&self) -> f64 {
        mib(self.steady_rate * self.size as f64)
    }
}

pub fn run(
    sizes: &[usize],
    bytes: u64,
    max_records: u64,
    partitions: i32,
    contenders: &[Contender],
    links: &[LinkSpec],
    dir: &Path,
) -> Vec<Row> {
    let c = clusters();
    let mut rows = Vec::new();
    for (&size, &link) in sizes.iter().flat_map(|s| links.iter().map(move |l| (s, l))) {
        let records = (bytes / size as u64).clamp(1, max_records);
        let topic = clients::unique_name(&format!("bench-{size}"));
        clients::create_topic(&c.source.bootstrap, &topic, partitions, &[]);
        say(format!(
            "{topic}: preloading {records} records of {size} B over {partitions} partitions"
        ));
        let took = workload::preload(&c.source.bootstrap, &topic, partitions, records, size);
        say(format!(
            "{topic}: preloaded in {:.1}s ({:.0} records/s)",
            took.as_secs_f64(),
            records as f64 / took.as_secs_f64()
        ));
        // A first copy by the pipe, not measured, warms the brokers (their
        // JIT, the page cache) for every measured contender alike. Without it
        // the first one measured met brokers that had only taken the preload:
        // the pipe measured 208 MiB/s with 64 KiB records there, 307 MiB/s
        // right after. It warms the brokers, not the link: it copies over
        // loopback.
        let via_link = link.apply(c);
        let warm_up = std::iter::once((Contender::Pipe, false));
        let all = warm_up.chain(contenders.iter().map(|c| (*c, true)));
        for (round, (contender, measured)) in all.enumerate() {
            let target_topic = contender.target_topic(&topic);
            clients::create_topic(&c.target.bootstrap, &target_topic, partitions, &[]);
            let run = Run {
                round,
                target: if measured {
                    via_link
                } else {
                    &c.target.bootstrap
                },
                ..Run::direct(c, &topic, partitions, dir)
            };
            let name = if measured {
                format!("{} ({})", contender.name(), link.label())
            } else {
                format!("{} (warm-up, not measured)", contender.name())
            };
            say(format!("{name}: copying {records} records of {size} B"));
            settle_disk();
            let started = Instant::now();
            let running = contender.start(&run);
            let sampler = Sampler::start(running.pid());
            let arrival = observe::wait_for(
                started,
                &c.target.bootstrap,
                &target_topic,
                partitions,
                records,
                Duration::from_secs(3600),
                || running.log_tail(),
            );
            let total = started.elapsed();
            let (stats, _) = sampler.finish();
            let last_words = running.stop();
            if !last_words.is_empty() {
                say(format!("{name}: {last_words}"));
            }
            // The observer started with the contender: its clock is the contender's.
            let row = Row {
                size,
                link,
                contender,
                records,
                total,
                first: arrival.first,
                steady_rate: arrival.steady_rate(),
                stats,
            };
            say(format!(
                "{name}: {:.0} records/s, {:.1} MiB/s, {:.1}s in all, peak RSS {:.0} MiB, {:.1} CPU s",
                row.records_per_sec(),
                row.mib_per_sec(),
                total.as_secs_f64(),
                mib(stats.peak_rss_bytes as f64),
                stats.cpu_secs
            ));
            if measured {
                rows.push(row);
            }
            clients::delete_topic(&c.target.bootstrap, &target_topic);
        }
        clients::delete_topic(&c.source.bootstrap, &topic);
    }
    c.target.proxy.clear();
    rows
}

pub fn print(rows: &[Row]) {
    println!("| record size | link | contender | records | records/s | MiB/s | first visible (s) | total (s) | peak RSS (MiB) | CPU (s) | disk written / record (B) | vs MM2 EOS | vs pipe |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        // A contender listed more than once is compared by its mean rate.
        let rate_of = |c: Contender| {
            let rates: Vec<f64> = rows
                .iter()
                .filter(|r| r.size == row.size && r.link == row.link && r.contender == c)
                .map(|r| r.steady_rate)
                .collect();
            (!rates.is_empty()).then(|| rates.iter().sum::<f64>() / rates.len() as f64)
        };
        let ratio = |c: Contender| match rate_of(c) {
            Some(other) if other > 0.0 => format!("{:.2}x", row.steady_rate / other),
            _ => "-".to_string(),
        };
        println!(
            "| {} B | {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.1} | {:.0} | {} | {} |",
            row.size,
            row.link.label(),
            row.contender.name(),
            row.records,
            row.records_per_sec(),
            row.mib_per_sec(),
            row.first.as_secs_f64(),
            row.total.as_secs_f64(),
            mib(row.stats.peak_rss_bytes as f64),
            row.stats.cpu_secs,
            row.stats.write_bytes as f64 / row.records as f64,
            ratio(Contender::MirrorMakerEos),
            ratio(Contender::Pipe),
        );
    }
}

/// Waits until the kernel has written back every dirty page: the preload's
/// (a gigabyte of broker log) and the last contender's, so that no contender
/// shares the disk with the writeback of another's work. (Run right after
/// its preload, the pipe once measured 218 MiB/s with 64 KiB records; run
/// last, 416-452 MiB/s.)
fn settle_disk() {
    match std::process::Command::new("sync").status() {
        Ok(status) if status.success() => {}
        other => say(format!("sync failed ({other:?}); measuring without it")),
    }
}
