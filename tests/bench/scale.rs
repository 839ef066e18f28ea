//! Scale-out (`[scale]`): one relay run as 1, 2 or 3 instances that share
//! its source partitions in units, on the same brokers.
//!
//! - Throughput: one preloaded source topic, copied from its beginning by
//!   each fleet in turn (a plain relay without `[scale]`, then 1, 2, 3
//!   instances of `units` units), each fleet with a relay id, WALs and a
//!   target topic of its own. The instances start paused (`enabled =
//!   false`) and are resumed through their admin endpoints once the group
//!   has shared the units out and every unit's pipeline runs, so the copy
//!   is timed on a settled fleet; the start-up until then is its own
//!   column. The clock stops, as in `throughput`, when the last record is
//!   visible to an independent `read_committed` consumer of the target.
//! - Hand-over: records flow at a steady rate through a fleet; one instance
//!   is stopped (SIGKILL, or SIGTERM for a clean stop), and the survivors'
//!   logs and the target tell when its units were reassigned, when their
//!   pipelines were up again (`init_transactions`, checkpoints read,
//!   source positioned) and when each of their partitions moved again on
//!   the target. Times are wall-clock, from the signal; the relay's log
//!   lines carry their own (UTC) time stamps.
//!
//! The brokers and every instance share the machine's cores: on one
//! machine more instances cannot add CPU. Nothing here asserts a speed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use kafka_relay::record::TopicPartition;
use kafka_relay::scale::unit_of;

use crate::contenders::{Contender, Run, Running};
use crate::harness::relay::{units_changes, units_owned, UnitsChange};
use crate::harness::{clients, clusters, kafka, Clusters};
use crate::measure::{quantile, CpuWindow, ProcStats, Sampler};
use crate::observe::{self, Seen, Tape};
use crate::{mib, say, workload};

/// Which relay copies: a plain one, or `n` instances of a scaled-out one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fleet {
    Plain,
    Instances(usize),
}

impl Fleet {
    /// `plain`, or an instance count (1 to 26).
    pub fn parse(s: &str) -> Option<Fleet> {
        match s {
            "plain" => Some(Fleet::Plain),
            n => n
                .parse()
                .ok()
                .filter(|n| (1..=26).contains(n))
                .map(Fleet::Instances),
        }
    }

    fn name(self, units: u32) -> String {
        match self {
            Fleet::Plain => "plain relay (no [scale])".to_string(),
            Fleet::Instances(1) => format!("1 instance, {units} units"),
            Fleet::Instances(n) => format!("{n} instances, {units} units"),
        }
    }

    /// The instances' names: a, b, c, …; the plain relay has none.
    fn instances(self) -> Vec<String> {
        match self {
            Fleet::Plain => vec![String::new()],
            Fleet::Instances(n) => (b'a'..)
                .take(n)
                .map(|c| char::from(c).to_string())
                .collect(),
        }
    }
}

/// How an instance is stopped in a hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGKILL: a crash.
    Kill,
    /// SIGTERM: a clean stop (its open transactions finish).
    Term,
}

/// One hand-over to measure: `kill:3:10000` is SIGKILL to one of 3
/// instances whose `session_timeout_ms` is 10000.
#[derive(Clone, Copy, Debug)]
pub struct Handover {
    pub stop: Stop,
    pub instances: usize,
    pub session_timeout_ms: u64,
}

impl Handover {
    pub fn parse(s: &str) -> Option<Handover> {
        let mut parts = s.split(':');
        let stop = match parts.next()? {
            "kill" => Stop::Kill,
            "term" => Stop::Term,
            _ => return None,
        };
        let instances = parts
            .next()?
            .parse()
            .ok()
            .filter(|n| (2..=26).contains(n))?;
        let session_timeout_ms = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Handover {
            stop,
            instances,
            session_timeout_ms,
        })
    }
}

/// What the scale benchmark shares between its parts.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    pub size: usize,
    pub partitions: i32,
    pub units: u32,
    pub dir: &'a Path,
}

/// A fleet's instances, started.
struct Started {
    /// Instance name ("" for the plain relay) and its process.
    instances: Vec<(String, Running)>,
    /// The admin endpoint of each instance (throughput only).
    admins: Vec<String>,
    /// Launch until every unit ran.
    ready: Duration,
}

impl Setup<'_> {
    /// Starts `fleet` on `topic` as round `round`: the relay's defaults plus
    /// `[scale]` (`session_timeout_ms`), paused with an admin endpoint
    /// each when `paused`; returns once every unit's pipeline runs.
    fn start(
        &self,
        c: &Clusters,
        topic: &str,
        round: usize,
        fleet: Fleet,
        session_timeout_ms: u64,
        paused: bool,
    ) -> Started {
        let launched = Instant::now();
        let mut instances = Vec::new();
        let mut admins = Vec::new();
        for name in fleet.instances() {
            let mut sections = String::new();
            if let Fleet::Instances(_) = fleet {
                sections.push_str(&format!(
                    "[scale]\nunits = {}\nsession_timeout_ms = {session_timeout_ms}\n",
                    self.units
                ));
            }
            if paused {
                let [port] = kafka::free_ports();
                let addr = format!("127.0.0.1:{port}");
                sections.push_str(&format!("[admin]\nlisten = \"{addr}\"\n"));
                admins.push(addr);
            }
            let run = Run {
                round,
                relay_top: if paused { "enabled = false\n" } else { "" }.to_string(),
                relay_sections: sections,
                instance: (!name.is_empty()).then(|| name.clone()),
                ..Run::direct(c, topic, self.partitions, self.dir)
            };
            instances.push((name, Contender::Relay.start(&run)));
        }
        let started = Started {
            instances,
            admins,
            ready: Duration::ZERO,
        };
        started.wait_until_running(fleet, self.units);
        Started {
            ready: launched.elapsed(),
            ..started
        }
    }
}

impl Started {
    fn logs(&self) -> Vec<String> {
        self.instances.iter().map(|(_, r)| log_text(r)).collect()
    }

    fn tails(&self) -> String {
        self.instances
            .iter()
            .map(|(n, r)| format!("--- instance {n:?}:\n{}", r.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Until the group has given every unit to one instance, none idle, and
    /// each instance runs a pipeline for every unit it owns (the plain
    /// relay: its one pipeline).
    fn wait_until_running(&self, fleet: Fleet, units: u32) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let logs = self.logs();
            let owned: Vec<BTreeSet<u32>> = logs.iter().map(|l| units_owned(l)).collect();
            let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
            let shared_out = match fleet {
                Fleet::Plain => true,
                Fleet::Instances(_) => {
                    all.len() == units as usize
                        && owned.iter().map(BTreeSet::len).sum::<usize>() == units as usize
                        && owned.iter().all(|o| !o.is_empty())
                }
            };
            let running = logs.iter().zip(&owned).all(|(log, o)| {
                let want = if fleet == Fleet::Plain { 1 } else { o.len() };
                running_pipelines(log) == want
            });
            if shared_out && running {
                say(format!(
                    "{}: units {owned:?}, every pipeline running",
                    fleet.name(units)
                ));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: units not shared out and running within 180 s: {owned:?}\n{}",
                fleet.name(units),
                self.tails()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Resumes every instance (`POST /resume` on its admin endpoint).
    fn resume(&self) {
        for addr in &self.admins {
            if let Err(e) = ureq::post(format!("http://{addr}/resume")).send_empty() {
                panic!("resume {addr}: {e}\n{}", self.tails());
            }
        }
    }

    /// SIGTERM to every instance at once; returns once all exited.
    fn stop(self) {
        std::thread::scope(|s| {
            for (_, running) in self.instances {
                s.spawn(move || running.stop());
            }
        });
    }
}

fn log_text(running: &Running) -> String {
    running
        .log()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// Pipelines a relay's log says are running: started, not stopped.
fn running_pipelines(log: &str) -> usize {
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    count("relay running").saturating_sub(count("relay stopped"))
}

/// One fleet's copy of the preloaded topic.
pub struct CopyRow {
    pub fleet: Fleet,
    pub records: u64,
    /// Launch until every unit's pipeline ran, paused.
    pub ready: Duration,
    /// From the resume until the first record was visible.
    pub first: Duration,
    /// From the resume until the last record was visible.
    pub total: Duration,
    /// Records/s from the first to the last visible record.
    pub steady_rate: f64,
    /// Per instance, at the last record.
    pub stats: Vec<ProcStats>,
    /// CPU seconds of processes not this benchmark's during the copy.
    pub others_cpu: f64,
}

/// The throughput part: `fleets` in this order, after an unmeasured copy
/// by a plain relay that warms the brokers.
pub fn throughput(setup: &Setup, bytes: u64, max_records: u64, fleets: &[Fleet]) -> Vec<CopyRow> {
    let c = clusters();
    let (size, partitions) = (setup.size, setup.partitions);
    let records = (bytes / size as u64).clamp(1, max_records);
    let topic = clients::unique_name(&format!("scale-{size}"));
    clients::create_topic(&c.source.bootstrap, &topic, partitions, &[]);
    say(format!(
        "{topic}: preloading {records} records of {size} B over {partitions} partitions"
    ));
    let took = workload::preload(&c.source.bootstrap, &topic, partitions, records, size);
    say(format!("{topic}: preloaded in {:.1}s", took.as_secs_f64()));
    let target_topic = Contender::Relay.target_topic(&topic);
    let warm_up = std::iter::once((Fleet::Plain, false));
    let all = warm_up.chain(fleets.iter().map(|f| (*f, true)));
    let mut rows = Vec::new();
    for (round, (fleet, measured)) in all.enumerate() {
        clients::create_topic(&c.target.bootstrap, &target_topic, partitions, &[]);
        let name = match measured {
            true => fleet.name(setup.units),
            false => format!("{} (warm-up, not measured)", fleet.name(setup.units)),
        };
        say(format!("{name}: starting, paused"));
        let started = setup.start(c, &topic, round, fleet, 10_000, true);
        let samplers: Vec<Sampler> = started
            .instances
            .iter()
            .map(|(_, r)| Sampler::start(r.pid()))
            .collect();
        say(format!("{name}: copying {records} records of {size} B"));
        let window = CpuWindow::start();
        let resumed = Instant::now();
        started.resume();
        let arrival = observe::wait_for(
            resumed,
            &c.target.bootstrap,
            &target_topic,
            partitions,
            records,
            Duration::from_secs(3600),
            || started.tails(),
        );
        let others_cpu = window.others();
        let stats: Vec<ProcStats> = samplers.into_iter().map(|s| s.finish().0).collect();
        let row = CopyRow {
            fleet,
            records,
            ready: started.ready,
            first: arrival.first,
            total: arrival.last,
            steady_rate: arrival.steady_rate(),
            stats,
            others_cpu,
        };
        started.stop();
        say(format!(
            "{name}: {:.0} records/s, {:.1} MiB/s, {:.1}s from the resume, peak RSS {:.0} MiB, {:.1} CPU s, others {:.1} CPU s",
            row.steady_rate,
            mib(row.steady_rate * size as f64),
            row.total.as_secs_f64(),
            mib(row.stats.iter().map(|s| s.peak_rss_bytes).sum::<u64>() as f64),
            row.stats.iter().map(|s| s.cpu_secs).sum::<f64>(),
            others_cpu
        ));
        if measured {
            rows.push(row);
        }
        clients::delete_topic(&c.target.bootstrap, &target_topic);
    }
    clients::delete_topic(&c.source.bootstrap, &topic);
    rows
}

pub fn print_throughput(setup: &Setup, rows: &[CopyRow]) {
    println!("| fleet ({} B records, {} partitions) | records | records/s | MiB/s | start-up until every unit runs (s) | first visible (s) | total (s) | peak RSS per instance (MiB) | CPU, all instances (s) | CPU of other processes (s) | vs plain relay |", setup.size, setup.partitions);
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let plain: Vec<f64> = rows
        .iter()
        .filter(|r| r.fleet == Fleet::Plain)
        .map(|r| r.steady_rate)
        .collect();
    let plain = (!plain.is_empty()).then(|| plain.iter().sum::<f64>() / plain.len() as f64);
    for row in rows {
        let rss: Vec<String> = row
            .stats
            .iter()
            .map(|s| format!("{:.0}", mib(s.peak_rss_bytes as f64)))
            .collect();
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {:.1} | {:.1} | {} |",
            row.fleet.name(setup.units),
            row.records,
            row.steady_rate,
            mib(row.steady_rate * setup.size as f64),
            row.ready.as_secs_f64(),
            row.first.as_secs_f64(),
            row.total.as_secs_f64(),
            rss.join(" / "),
            row.stats.iter().map(|s| s.cpu_secs).sum::<f64>(),
            row.others_cpu,
            match plain {
                Some(p) if p > 0.0 => format!("{:.2}x", row.steady_rate / p),
                _ => "-".to_string(),
            }
        );
    }
}

/// One hand-over, its times in seconds from the signal.
pub struct HandoverRow {
    pub case: Handover,
    pub units_moved: usize,
    pub partitions_moved: usize,
    /// SIGTERM only: until the stopped instance exited.
    pub exited: Option<f64>,
    /// The first and the last of the survivors' "units assigned" lines
    /// that took one of the stopped instance's units.
    pub assigned: (f64, f64),
    /// The last survivor log line of each start-up step, for the moved
    /// units: `init_transactions` done, checkpoints read, pipeline running.
    pub initialised: Option<f64>,
    pub checkpoints_read: Option<f64>,
    pub running: Option<f64>,
    /// First record of a moved partition visible on the target after its
    /// unit was reassigned: the first and the last partition.
    pub moving: (f64, f64),
    /// Longest time without a new record visible, on the moved partitions
    /// and on the survivors' own ones.
    pub gap_moved: f64,
    pub gap_others: f64,
    /// Largest end-to-end latency of a record on a moved partition.
    pub max_latency_moved: f64,
    /// The last record of a moved partition that was written before that
    /// partition moved again: the hand-over's backlog delivered.
    pub backlog_delivered: f64,
    /// Latency (p50, max) of the records written in the 5 s before the
    /// signal, every partition: whether the fleet kept up before the stop.
    pub latency_before: (f64, f64),
    /// Units the survivors had revoked after the signal (a sticky
    /// assignment revokes none).
    pub survivors_revoked: usize,
    /// Until the workload stopped writing: a unit that moved only later
    /// was held up by the flow itself.
    pub flow_end: f64,
    pub written: u64,
    pub seen: u64,
    /// CPU seconds of processes not this benchmark's, from the start of
    /// the writer to the last record seen.
    pub others_cpu: f64,
}

/// Records flow this long through the whole fleet before the stop.
const BEFORE_STOP: Duration = Duration::from_secs(8);

/// The hand-over part: each case on a fresh topic and relay, records
/// flowing at `rate` a second, and for `tail` past the session timeout
/// after the stop (a moved unit's start can wait for a lull in the other
/// units' commits: see `docs/benchmarks.md`).
pub fn handovers(setup: &Setup, rate: u64, tail: Duration, cases: &[Handover]) -> Vec<HandoverRow> {
    let c = clusters();
    // Rounds of their own: not the throughput part's directories.
    let dir = setup.dir.join("handover");
    let setup = &Setup {
        dir: &dir,
        ..*setup
    };
    let mut rows = Vec::new();
    for (round, case) in cases.iter().enumerate() {
        let topic = clients::unique_name("handover");
        let target_topic = Contender::Relay.target_topic(&topic);
        clients::create_topic(&c.source.bootstrap, &topic, setup.partitions, &[]);
        clients::create_topic(&c.target.bootstrap, &target_topic, setup.partitions, &[]);
        let fleet = Fleet::Instances(case.instances);
        say(format!(
            "hand-over {case:?}: starting {}",
            fleet.name(setup.units)
        ));
        let mut started = setup.start(c, &topic, round, fleet, case.session_timeout_ms, false);
        let flow = BEFORE_STOP + Duration::from_millis(case.session_timeout_ms) + tail;
        let tape = Tape::start(
            &c.target.bootstrap,
            &target_topic,
            setup.partitions,
            // Past the flow: a unit's checkpoint read gives up after 120 s.
            flow + Duration::from_secs(180),
        );
        let window = CpuWindow::start();
        let writer = {
            let (bootstrap, topic) = (c.source.bootstrap.clone(), topic.clone());
            let (partitions, size) = (setup.partitions, setup.size);
            std::thread::spawn(move || {
                let mut writer = workload::Writer::new(&bootstrap, &topic, partitions, size, 1);
                workload::steady(&mut writer, rate, flow)
            })
        };
        std::thread::sleep(BEFORE_STOP);
        let (victim_name, victim) = started.instances.pop().expect("an instance to stop");
        let victim_log = log_text(&victim);
        let moved = units_owned(&victim_log);
        let signal = workload::now_micros();
        say(format!(
            "hand-over {case:?}: stopping instance {victim_name} (units {moved:?})"
        ));
        let exited = match case.stop {
            Stop::Kill => {
                victim.kill();
                None
            }
            Stop::Term => {
                victim.stop();
                Some(secs_between(signal, workload::now_micros()))
            }
        };
        let written = writer.join().expect("workload writer");
        let flow_end = secs_between(signal, workload::now_micros());
        let seen = tape.finish(written);
        // For a post-mortem (KAFKA_RELAY_KEEP_TEST_DIRS keeps the dir).
        let tape_csv: String = seen
            .iter()
            .map(|s| format!("{},{},{}\n", s.partition, s.at, s.sent))
            .collect();
        let tape_file = dir.join(format!("tape-{round}.csv"));
        if let Err(e) = std::fs::write(&tape_file, format!("partition,at_us,sent_us\n{tape_csv}")) {
            say(format!("cannot write {}: {e}", tape_file.display()));
        }
        let others_cpu = window.others();
        let logs = started.logs();
        started.stop();
        let mut row = handover_row(setup, *case, &topic, &moved, signal, &logs, &seen);
        row.exited = exited;
        row.flow_end = flow_end;
        row.written = written;
        row.others_cpu = others_cpu;
        say(format!(
            "hand-over {case:?}: units reassigned after {:.1}–{:.1} s, all moved partitions moving after {:.1} s",
            row.assigned.0, row.assigned.1, row.moving.1
        ));
        rows.push(row);
        clients::delete_topic(&c.target.bootstrap, &target_topic);
        clients::delete_topic(&c.source.bootstrap, &topic);
    }
    rows
}

fn secs_between(from_micros: u64, to_micros: u64) -> f64 {
    (to_micros as f64 - from_micros as f64) / 1e6
}

/// What the survivors' logs and the target's records tell of a hand-over
/// of the units `moved` at `signal` (µs since the epoch); the fields the
/// caller measured itself are left at zero.
fn handover_row(
    setup: &Setup,
    case: Handover,
    topic: &str,
    moved: &BTreeSet<u32>,
    signal: u64,
    survivor_logs: &[String],
    seen: &[Seen],
) -> HandoverRow {
    let unit_of_partition = |p: i32| unit_of(&TopicPartition::new(topic, p), setup.units);
    // When a survivor was given each moved unit, and what it had revoked.
    let mut assigned_at: BTreeMap<u32, u64> = BTreeMap::new();
    let mut survivors_revoked = 0;
    for log in survivor_logs {
        for (line, change) in units_changes(log) {
            let Some(at) = line_micros(line).filter(|at| *at >= signal) else {
                continue;
            };
            match change {
                UnitsChange::Assigned(units) => {
                    for u in units.into_iter().filter(|u| moved.contains(u)) {
                        assigned_at.entry(u).or_insert(at);
                    }
                }
                UnitsChange::Revoked(units) => survivors_revoked += units.len(),
            }
        }
    }
    // The start-up steps the survivors logged after the signal: only the
    // moved units' pipelines start then.
    let last_step = |what: &str| {
        survivor_logs
            .iter()
            .flat_map(|log| log.lines())
            .filter(|l| l.contains(what))
            .filter_map(line_micros)
            .filter(|at| *at >= signal)
            .max()
            .map(|at| secs_between(signal, at))
    };
    let moved_partitions: BTreeSet<i32> = (0..setup.partitions)
        .filter(|p| moved.contains(&unit_of_partition(*p)))
        .collect();
    let mut by_partition: BTreeMap<i32, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        by_partition.entry(s.partition).or_default().push(s);
    }
    // Per moved partition: its first record after its unit was
    // reassigned, and the last record written before that one arrived.
    let (moving, backlog): (Vec<f64>, Vec<f64>) = moved_partitions
        .iter()
        .filter_map(|p| {
            let since = *assigned_at.get(&unit_of_partition(*p))?;
            let records = by_partition.get(p)?;
            let first = records.iter().find(|s| s.at >= since)?;
            let backlog = records
                .iter()
                .filter(|s| s.sent < first.at)
                .map(|s| s.at)
                .max()?;
            Some((
                secs_between(signal, first.at),
                secs_between(signal, backlog),
            ))
        })
        .unzip();
    let mut before: Vec<u64> = seen
        .iter()
        .filter(|s| s.sent < signal && s.sent + 5_000_000 >= signal)
        .map(Seen::latency)
        .collect();
    before.sort_unstable();
    let longest_gap = |moved_side: bool| {
        by_partition
            .iter()
            .filter(|(p, _)| moved_partitions.contains(p) == moved_side)
            .flat_map(|(_, s)| s.windows(2).map(|w| secs_between(w[0].at, w[1].at)))
            .fold(0.0, f64::max)
    };
    let assigned: Vec<f64> = assigned_at
        .values()
        .map(|at| secs_between(signal, *at))
        .collect();
    let span = |v: &[f64]| {
        (
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    };
    HandoverRow {
        case,
        units_moved: moved.len(),
        partitions_moved: moved_partitions.len(),
        exited: None,
        assigned: span(&assigned),
        initialised: last_step("transactions initialised on the target"),
        checkpoints_read: last_step("loaded delivered progress from the target"),
        running: last_step("relay running"),
        moving: span(&moving),
        gap_moved: longest_gap(true),
        gap_others: longest_gap(false),
        max_latency_moved: seen
            .iter()
            .filter(|s| moved_partitions.contains(&s.partition))
            .map(|s| s.latency() as f64 / 1e6)
            .fold(0.0, f64::max),
        backlog_delivered: backlog.iter().copied().fold(0.0, f64::max),
        latency_before: (
            quantile(&before, 0.5) as f64 / 1e6,
            quantile(&before, 1.0) as f64 / 1e6,
        ),
        survivors_revoked,
        flow_end: 0.0,
        written: 0,
        seen: seen.len() as u64,
        others_cpu: 0.0,
    }
}

pub fn print_handovers(setup: &Setup, rate: u64, rows: &[HandoverRow]) {
    println!("| stop ({rate} records/s of {} B, {} partitions, {} units) | instances | session timeout (ms) | units (partitions) moved | stopped instance exited (s) | units reassigned (s) | init_transactions done (s) | checkpoints read (s) | pipelines running (s) | moved partitions visible again, first–last (s) | longest gap, moved partitions (s) | longest gap, survivors' partitions (s) | max latency, moved partitions (s) | their backlog delivered (s) | latency in the 5 s before the stop, p50 / max (s) | survivors' units revoked | workload stopped (s) | records written / seen | CPU of other processes (s) |", setup.size, setup.partitions, setup.units);
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for row in rows {
        println!(
            "| {} | {} | {} | {} ({}) | {} | {:.2}–{:.2} | {} | {} | {} | {:.2}–{:.2}{} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} / {:.2} | {} | {:.1} | {} / {} | {:.1} |",
            match row.case.stop {
                Stop::Kill => "SIGKILL",
                Stop::Term => "SIGTERM",
            },
            row.case.instances,
            row.case.session_timeout_ms,
            row.units_moved,
            row.partitions_moved,
            opt(row.exited),
            row.assigned.0,
            row.assigned.1,
            opt(row.initialised),
            opt(row.checkpoints_read),
            opt(row.running),
            row.moving.0,
            row.moving.1,
            if row.moving.1 > row.flow_end {
                " (after the workload stopped)"
            } else {
                ""
            },
            row.gap_moved,
            row.gap_others,
            row.max_latency_moved,
            row.backlog_delivered,
            row.latency_before.0,
            row.latency_before.1,
            row.survivors_revoked,
            row.flow_end,
            row.written,
            row.seen,
            row.others_cpu,
        );
    }
}

/// The time stamp a relay log line starts with (`2026-12-02T10:11:12.123456Z`,
/// UTC), in µs since the epoch.
fn line_micros(line: &str) -> Option<u64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let mut ymd = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    let micros: i64 = format!("{fraction:0<6}").get(..6)?.parse().ok()?;
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
