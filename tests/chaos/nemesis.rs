//! A seeded random nemesis: while a producer writes to the source without
//! pause, it runs N rounds (`KAFKA_RELAY_NEMESIS_ROUNDS`, default
//! [`DEFAULT_ROUNDS`]), each one fault drawn by the scenario's seeded
//! randomness, 0.5–4 s apart:
//! - a SIGKILL of the relay at that random instant;
//! - a SIGKILL aimed at a transaction in flight: either 0–40 ms after
//!   `/metrics` shows the committed-transaction count move (it lands between
//!   that commit and the WAL ack after it, or in the next transaction), or
//!   while the link to the target is blackholed, so the open transaction's
//!   records or its commit are held on the wire (and reach the broker late,
//!   after the kill);
//! - a cut of the link to the target: a blackhole of 2–6 s, or connection
//!   resets;
//! - a restart of the target broker, or of the source broker (SIGKILL or
//!   graceful).
//!
//! Every kind occurs at least once per run (the last rounds force the ones
//! the dice missed). At the end it heals everything, lets the relay catch up
//! and stops it; then it proves the promise in its name twice over: the
//! sequence checker finds every produced record exactly once in order, and
//! an independent `read_committed` reader of both clusters finds the target
//! equal to the source, partition by partition, record by record, byte for
//! byte (key, value, headers, timestamp).
//!
//! The long version, for a soak outside CI (239 kills in 21 min when measured):
//! `KAFKA_RELAY_NEMESIS_ROUNDS=300 cargo test --locked --test chaos nemesis -- --nocapture`.

use std::time::{Duration, Instant};

use rand::Rng;

use super::harness::admin::{sum, try_scrape, with_admin};
use super::harness::{checker, kafka};
use super::{Scenario, PARTITIONS};

/// Rounds of the default run: about 2–3 minutes on the project machine.
const DEFAULT_ROUNDS: usize = 30;
/// With steady input a healthy relay commits several times a second once
/// started: far longer without a commit means it is stuck, and the aimed
/// kill falls back to a plain one (and says so in the figures).
const COMMIT_WAIT: Duration = Duration::from_secs(45);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    MidTransactionKill,
    LinkCut,
    TargetRestart,
    SourceRestart,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::Kill,
        Fault::MidTransactionKill,
        Fault::LinkCut,
        Fault::TargetRestart,
        Fault::SourceRestart,
    ];

    /// Relative odds out of 20: kills are cheap and are what the long run
    /// counts (80% of rounds); broker restarts are slow (5–15 s each).
    fn weight(self) -> u32 {
        match self {
            Fault::Kill => 10,
            Fault::MidTransactionKill => 6,
            Fault::LinkCut => 2,
            Fault::TargetRestart | Fault::SourceRestart => 1,
        }
    }
}

/// What the nemesis did, for the closing line.
#[derive(Debug, Default)]
struct Figures {
    rounds: usize,
    random_kills: usize,
    /// Aimed kills that landed right after a commit.
    commit_timed_kills: usize,
    /// Aimed kills that landed while the target link was blackholed.
    held_link_kills: usize,
    /// Aimed kills that saw no commit within [`COMMIT_WAIT`] and became plain kills.
    aimed_without_commit: usize,
    blackholes: usize,
    reset_rounds: usize,
    connections_reset: usize,
    /// (SIGKILL, graceful)
    target_restarts: (usize, usize),
    /// (SIGKILL, graceful)
    source_restarts: (usize, usize),
}

impl Figures {
    fn kills(&self) -> usize {
        self.random_kills + self.commit_timed_kills + self.held_link_kills
    }

    fn count(&self, fault: Fault) -> usize {
        match fault {
            Fault::Kill => self.random_kills,
            Fault::MidTransactionKill => self.commit_timed_kills + self.held_link_kills,
            Fault::LinkCut => self.blackholes + self.reset_rounds,
            Fault::TargetRestart => self.target_restarts.0 + self.target_restarts.1,
            Fault::SourceRestart => self.source_restarts.0 + self.source_restarts.1,
        }
    }
}

fn rounds() -> usize {
    let rounds = std::env::var("KAFKA_RELAY_NEMESIS_ROUNDS")
        .ok()
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("KAFKA_RELAY_NEMESIS_ROUNDS={s:?} is not a number"))
        })
        .unwrap_or(DEFAULT_ROUNDS);
    assert!(
        rounds >= Fault::ALL.len(),
        "KAFKA_RELAY_NEMESIS_ROUNDS must be at least {} (one round per fault kind)",
        Fault::ALL.len()
    );
    rounds
}

/// The relay's committed-transaction count, `None` while it does not answer.
fn committed(admin: &str) -> Option<f64> {
    try_scrape(admin).map(|m| sum(&m, "kafka_relay_transactions_committed_total", &[]))
}

struct Nemesis {
    s: Scenario,
    admin: String,
    figures: Figures,
}

impl Nemesis {
    /// Draws this round's fault; in the last rounds, the kinds not yet seen
    /// (then `true`: forced).
    fn draw(&mut self, round: usize, rounds: usize) -> (Fault, bool) {
        let unseen: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| self.figures.count(*f) == 0)
            .collect();
        if unseen.len() >= rounds - round {
            return (unseen[0], true);
        }
        let total: u32 = Fault::ALL.iter().map(|f| f.weight()).sum();
        let mut roll = self.s.rng.random_range(0..total);
        for f in Fault::ALL {
            if roll < f.weight() {
                return (f, false);
            }
            roll -= f.weight();
        }
        unreachable!("the roll is below the sum of the weights")
    }

    fn run(&mut self, fault: Fault) -> String {
        let c = self.s.c();
        match fault {
            Fault::Kill => {
                self.s.kill_and_restart_relay();
                self.figures.random_kills += 1;
                "SIGKILL".into()
            }
            Fault::MidTransactionKill => {
                if self.s.rng.random_bool(0.5) {
                    self.kill_after_commit()
                } else {
                    self.kill_into_blackhole()
                }
            }
            Fault::LinkCut => {
                if self.s.rng.random_bool(0.5) {
                    self.s.blackhole_target();
                    let ms = self.s.rng.random_range(2000..6000);
                    std::thread::sleep(Duration::from_millis(ms));
                    c.target.proxy.clear();
                    self.figures.blackholes += 1;
                    format!("target link blackholed for {ms} ms")
                } else {
                    let times = self.s.rng.random_range(1..=3);
                    let mut sockets = 0;
                    for i in 0..times {
                        if i > 0 {
                            self.s.sleep_random(300..1500);
                        }
                        sockets += c.target.proxy.reset_connections();
                    }
                    self.figures.reset_rounds += 1;
                    self.figures.connections_reset += sockets;
                    format!("target connections reset {times} times ({sockets} sockets)")
                }
            }
            Fault::TargetRestart => {
                let hard = self.s.rng.random_bool(0.5);
                c.target.restart(hard);
                let n = &mut self.figures.target_restarts;
                if hard {
                    n.0 += 1;
                } else {
                    n.1 += 1;
                }
                format!("target broker restart ({})", how(hard))
            }
            Fault::SourceRestart => {
                let hard = self.s.rng.random_bool(0.5);
                c.source.restart(hard);
                let n = &mut self.figures.source_restarts;
                if hard {
                    n.0 += 1;
                } else {
                    n.1 += 1;
                }
                format!("source broker restart ({})", how(hard))
            }
        }
    }

    /// Blackholes the target link, kills the relay once the open
    /// transaction's records (or its commit) went into the hole, restarts it
    /// and heals the link a little later: the held bytes then reach the
    /// broker after their sender died, beside its successor's.
    fn kill_into_blackhole(&mut self) -> String {
        self.s.blackhole_target();
        let held = self.s.rng.random_range(300..2500);
        std::thread::sleep(Duration::from_millis(held));
        self.s.kill_and_restart_relay();
        let after = self.s.rng.random_range(0..2000);
        std::thread::sleep(Duration::from_millis(after));
        self.s.c().target.proxy.clear();
        self.figures.held_link_kills += 1;
        format!("SIGKILL {held} ms into a target blackhole, healed {after} ms later")
    }

    /// Waits for the committed-transaction count to move, then kills 0–40 ms
    /// later: between that commit and its WAL ack, or in the next transaction.
    fn kill_after_commit(&mut self) -> String {
        let deadline = Instant::now() + COMMIT_WAIT;
        let mut before = committed(&self.admin);
        loop {
            let now = committed(&self.admin);
            if let (Some(b), Some(n)) = (before, now) {
                if n > b {
                    let delay = self.s.rng.random_range(0..40);
                    std::thread::sleep(Duration::from_millis(delay));
                    self.s.kill_and_restart_relay();
                    self.figures.commit_timed_kills += 1;
                    return format!("SIGKILL {delay} ms after commit number {n}");
                }
            }
            if before.is_none() {
                before = now;
            }
            if Instant::now() > deadline {
                self.s.kill_and_restart_relay();
                self.figures.random_kills += 1;
                self.figures.aimed_without_commit += 1;
                return format!("SIGKILL (no commit seen within {COMMIT_WAIT:?})");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn how(hard: bool) -> &'static str {
    if hard {
        "SIGKILL"
    } else {
        "graceful"
    }
}

#[test]
fn random_kills_cuts_and_broker_restarts_neither_lose_nor_duplicate() {
    let rounds = rounds();
    let mut admin = String::new();
    let s = Scenario::start("nemesis", |setup| admin = with_admin(setup));
    let mut n = Nemesis {
        s,
        admin,
        figures: Figures::default(),
    };
    for round in 0..rounds {
        n.s.sleep_random(500..4000);
        let (fault, forced) = n.draw(round, rounds);
        let did = n.run(fault);
        n.figures.rounds += 1;
        kafka::log(format!(
            "nemesis round {}/{rounds} at {:.1}s: {did}{}",
            round + 1,
            n.s.started.elapsed().as_secs_f64(),
            if forced {
                " (forced: not drawn yet)"
            } else {
                ""
            }
        ));
    }
    for fault in Fault::ALL {
        assert!(n.figures.count(fault) > 0, "no {fault:?} in this run");
    }

    let Nemesis { s, figures, .. } = n;
    let started = s.started;
    let c = s.c();
    // Heals the link, waits for the relay to catch up, stops it and runs
    // the sequence checker; both brokers are up (restarts wait for them).
    let (setup, per_partition) = s.finish_counted();
    let produced = PARTITIONS as u64 * per_partition;
    let compared = checker::assert_identical_to_source(
        &c.source.bootstrap,
        &setup.source_topic,
        &c.target.bootstrap,
        &setup.target_topic,
    );
    assert_eq!(
        compared.source_records as u64, produced,
        "the source must hold every record the producer wrote"
    );
    let f = &figures;
    kafka::log(format!(
        "nemesis on Kafka {}: {} rounds, {} SIGKILLs of the relay ({} at random, {} aimed at a transaction: \
         {} right after a commit, {} with the target link held{}), {} target link cuts ({} blackholes, \
         {} rounds of resets, {} sockets), target broker restarts {} ({} SIGKILL, {} graceful), \
         source broker restarts {} ({} SIGKILL, {} graceful); {produced} records produced, \
         {} checked on the target against the source byte for byte: 0 duplicates, 0 missing, \
         order kept ({:.0}s)",
        kafka::kafka_version(),
        f.rounds,
        f.kills(),
        f.random_kills,
        f.commit_timed_kills + f.held_link_kills,
        f.commit_timed_kills,
        f.held_link_kills,
        if f.aimed_without_commit > 0 {
            format!(
                "; {} aimed kills saw no commit and were plain",
                f.aimed_without_commit
            )
        } else {
            String::new()
        },
        f.blackholes + f.reset_rounds,
        f.blackholes,
        f.reset_rounds,
        f.connections_reset,
        f.target_restarts.0 + f.target_restarts.1,
        f.target_restarts.0,
        f.target_restarts.1,
        f.source_restarts.0 + f.source_restarts.1,
        f.source_restarts.0,
        f.source_restarts.1,
        compared.target_records,
        started.elapsed().as_secs_f64()
    ));
}
