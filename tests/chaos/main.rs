//! The chaos suite: real faults between the relay and the target (a TCP
//! fault proxy the target advertises), broker restarts and SIGKILLs of the
//! relay, each while a producer keeps writing to the source. Every scenario
//! ends with the independent exactly-once checker.
//!
//! A separate test binary from `tests/it`, because restarting a broker would
//! disturb tests running beside it; here scenarios run one at a time.
//! `KAFKA_RELAY_TEST_SEED` replays a scenario's random choices;
//! `KAFKA_RELAY_CHAOS_OUTAGE_SECS` sets the outage length (default 60);
//! `KAFKA_RELAY_NEMESIS_ROUNDS` the length of the random nemesis
//! ([`nemesis`], default 30 rounds).

#[path = "../it/harness/mod.rs"]
#[allow(dead_code)] // shared with tests/it, which uses parts this binary does not
mod harness;
mod nemesis;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use harness::admin::{scrape, sum, with_admin};
use harness::proxy::Faults;
use harness::relay::{background_producer, RelayProcess, RelaySetup};
use harness::{checker, clusters, kafka, seed, Clusters};

const PARTITIONS: i32 = 3;

/// One scenario in flight: its relay, its producer, its randomness.
struct Scenario {
    name: &'static str,
    started: Instant,
    rng: StdRng,
    setup: RelaySetup,
    relay: Option<RelayProcess>,
    producer: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<u64>,
    )>,
    _serial: MutexGuard<'static, ()>,
}

impl Scenario {
    /// Starts a producer on the source and the relay binary, with the relay
    /// talking to the target through the fault proxy.
    fn start(name: &'static str, configure: impl FnOnce(&mut RelaySetup)) -> Scenario {
        static SERIAL: Mutex<()> = Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let c = clusters();
        c.target.proxy.clear();
        let rng = StdRng::seed_from_u64(seed(name));
        let mut setup = RelaySetup::new(c, name, PARTITIONS);
        setup.target_bootstrap = c.target.proxied_bootstrap.clone();
        configure(&mut setup);
        let producer = background_producer(
            c.source.bootstrap.clone(),
            setup.source_topic.clone(),
            PARTITIONS,
        );
        let mut scenario = Scenario {
            name,
            started: Instant::now(),
            rng,
            setup,
            relay: None,
            producer: Some(producer),
            _serial: serial,
        };
        scenario.start_relay();
        // Faults must hit a running relay: start-up needs the target once
        // (to fence and read checkpoints) before the source starts.
        scenario.wait_for_log("relay running", Duration::from_secs(90));
        scenario
    }

    fn c(&self) -> &'static Clusters {
        clusters()
    }

    fn start_relay(&mut self) {
        let log = self.setup.dir.path().join("relay.log");
        self.relay = Some(RelayProcess::start(&self.setup.config_file(), &log));
    }

    /// SIGKILL, then a fresh incarnation.
    fn kill_and_restart_relay(&mut self) {
        if let Some(relay) = self.relay.take() {
            relay.kill9();
        }
        self.start_relay();
    }

    /// The target stops answering: every byte held, both ways.
    fn blackhole_target(&self) {
        self.c().target.proxy.set(Faults {
            blackhole: true,
            ..Faults::default()
        });
    }

    fn sleep_random(&mut self, range: std::ops::Range<u64>) {
        std::thread::sleep(Duration::from_millis(self.rng.random_range(range)));
    }

    fn relay_log(&self) -> String {
        std::fs::read_to_string(self.setup.dir.path().join("relay.log")).unwrap_or_default()
    }

    fn wait_for_log(&self, needle: &str, limit: Duration) {
        self.wait_for_log_count(needle, 1, limit);
    }

    /// Until the relay log (all incarnations) holds `needle` `count` times.
    fn wait_for_log_count(&self, needle: &str, count: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.relay_log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "{}: {needle:?} not {count} times in the relay log within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until the relay commits its next transaction (its metrics, polled
    /// every 20 ms).
    fn await_next_commit(&self, admin: &str) {
        let committed = || {
            sum(
                &scrape(admin),
                "kafka_relay_transactions_committed_total",
                &[],
            )
        };
        let before = committed();
        let deadline = Instant::now() + Duration::from_secs(20);
        while committed() == before {
            assert!(
                Instant::now() < deadline,
                "{}: no transaction committed within 20 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Which of `needles` the relay log holds first past its first `from`
    /// bytes, polling until `limit`; `None` if none does by then.
    fn first_in_log<'n>(
        &self,
        from: usize,
        needles: &[&'n str],
        limit: Duration,
    ) -> Option<&'n str> {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.relay_log();
            let new = log.get(from..).unwrap_or_default();
            if let Some(found) = needles.iter().find(|n| new.contains(**n)) {
                return Some(found);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn delivered(&self) -> usize {
        harness::clients::consume_all(
            &self.c().target.bootstrap,
            &self.setup.target_topic,
            harness::clients::Isolation::ReadCommitted,
        )
        .len()
    }

    /// Stops the producer, lifts every fault, waits for the relay to catch
    /// up, stops it cleanly and runs the exactly-once checker. Returns the
    /// setup (its WAL dir lives as long as it does).
    fn finish(self) -> RelaySetup {
        self.finish_counted().0
    }

    /// As [`Self::finish`], and how many records per partition the producer wrote.
    fn finish_counted(mut self) -> (RelaySetup, u64) {
        let c = self.c();
        c.target.proxy.clear();
        let (stop, handle) = self.producer.take().expect("producer");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let per_partition = handle.join().expect("producer thread");
        let total = PARTITIONS as u64 * per_partition;
        let relay = self.relay.as_ref();
        self.setup
            .wait_for_target_or_report(c, total as usize, Duration::from_secs(240), || {
                relay.map_or_else(String::new, |r| format!("relay log:\n{}", r.log_tail()))
            });
        if let Some(relay) = self.relay.take() {
            relay.stop();
        }
        checker::assert_exactly_once(
            &c.target.bootstrap,
            &self.setup.target_topic,
            PARTITIONS,
            per_partition,
        );
        kafka::log(format!(
            "chaos scenario {}: {total} records produced, {total} delivered exactly once in order, no duplicates, no gaps ({:.0}s)",
            self.name,
            self.started.elapsed().as_secs_f64()
        ));
        (self.setup, per_partition)
    }
}

fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("KAFKA_RELAY_CHAOS_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    )
}

fn wal_appends(log: &str) -> usize {
    log.matches("batch written to WAL").count()
}

#[test]
fn target_unreachable_wal_grows_then_drains_with_a_sigkill_during_the_outage() {
    let mut s = Scenario::start("outage", |_| {});
    s.sleep_random(2000..4000);
    s.blackhole_target();
    let before = s.delivered();
    let appends_before = wal_appends(&s.relay_log());
    let outage = outage();
    std::thread::sleep(outage / 2);
    // The relay dies mid-outage; its successor must recover without the target at hand.
    s.kill_and_restart_relay();
    std::thread::sleep(outage / 2);
    let during = s.delivered() - before;
    let appends_during = wal_appends(&s.relay_log()) - appends_before;
    kafka::log(format!(
        "outage: {}s, {appends_during} batches written to the WAL and {during} records reached the target meanwhile",
        outage.as_secs()
    ));
    assert!(
        appends_during > 0,
        "the source must keep filling the WAL during a target outage"
    );
    let _ = s.finish();
}

#[test]
fn connection_resets_every_few_seconds() {
    let mut s = Scenario::start("resets", |_| {});
    let until = Instant::now() + Duration::from_secs(30);
    let (mut resets, mut kills, mut round) = (0, 0, 0);
    // One SIGKILL in the third round for certain, more at random.
    while Instant::now() < until {
        s.sleep_random(1000..4000);
        resets += s.c().target.proxy.reset_connections();
        round += 1;
        if round == 3 || s.rng.random_bool(0.15) {
            s.kill_and_restart_relay();
            kills += 1;
        }
    }
    kafka::log(format!(
        "resets: {resets} connections reset and {kills} SIGKILLs in 30s"
    ));
    assert!(kills > 0, "the scenario must combine resets with a SIGKILL");
    assert!(resets > 0, "the relay must have had connections to reset");
    let _ = s.finish();
}

#[test]
fn high_latency_with_jitter_and_throttled_bandwidth() {
    let mut s = Scenario::start("slow-link", |_| {});
    s.c().target.proxy.set(Faults {
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(200),
        bytes_per_sec: Some(256 * 1024),
        ..Faults::default()
    });
    s.sleep_random(10_000..15_000);
    s.kill_and_restart_relay();
    std::thread::sleep(Duration::from_secs(15));
    let _ = s.finish();
}

#[test]
fn target_broker_restart_mid_transaction() {
    let mut s = Scenario::start("target-restart", |_| {});
    s.sleep_random(3000..6000);
    s.c().target.restart(true);
    s.sleep_random(2000..5000);
    s.kill_and_restart_relay();
    s.sleep_random(2000..5000);
    s.c().target.restart(false);
    std::thread::sleep(Duration::from_secs(5));
    let _ = s.finish();
}

/// The target goes away while a restarted relay reads its checkpoints, the
/// last step of start-up before the source starts (in CI once, a target
/// broker restart landed there and the relay exited). The relay must wait as
/// for any outage. A slow link first stretches the read so the cut lands in
/// it; the cut lasts longer than any of the read's calls waits.
#[test]
fn target_lost_while_a_restarted_relay_reads_its_checkpoints() {
    const READING: &str = "reading its checkpoints";
    let mut s = Scenario::start("checkpoint-read", |_| {});
    s.sleep_random(2000..4000);
    let slow = Faults {
        latency: Duration::from_millis(400),
        jitter: Duration::from_millis(200),
        ..Faults::default()
    };
    s.c().target.proxy.set(slow);
    let reads = s.relay_log().matches(READING).count();
    s.kill_and_restart_relay();
    s.wait_for_log_count(READING, reads + 1, Duration::from_secs(120));
    s.c().target.proxy.set(Faults {
        blackhole: true,
        ..slow
    });
    std::thread::sleep(Duration::from_secs(40));
    s.c().target.proxy.clear();
    let log = s.relay_log();
    assert!(
        log.contains("cannot read the target's checkpoints; retrying"),
        "the cut must have hit the checkpoint read (else this scenario tests nothing); relay log:\n{log}"
    );
    let _ = s.finish();
}

#[test]
fn source_broker_restart() {
    let mut s = Scenario::start("source-restart", |_| {});
    s.sleep_random(3000..6000);
    s.c().source.restart(true);
    std::thread::sleep(Duration::from_secs(10));
    let _ = s.finish();
}

#[test]
fn wal_capacity_reached_pauses_the_source_then_resumes() {
    let mut s = Scenario::start("wal-full", |setup| {
        setup.wal_max_bytes = Some(64 * 1024);
        setup.batch_max_bytes = Some(8 * 1024);
    });
    s.sleep_random(1000..3000);
    s.blackhole_target();
    s.wait_for_log("WAL full: source paused", Duration::from_secs(60));
    s.c().target.proxy.clear();
    s.wait_for_log("WAL drained: source resumed", Duration::from_secs(120));
    let _ = s.finish();
}

/// A target that stops answering reports no error for a while: librdkafka
/// waits out its timeouts (30 s here) before a transaction fails and an
/// outage is known. Meanwhile the source stops at its lead, a few
/// transactions ahead of the shipper, but only for `LEAD_PATIENCE` (5 s);
/// then it reads on and the WAL takes the backlog, as in an outage.
/// Without that patience the WAL would stay within twice the lead (the
/// bound `tests/it` asserts while the target is healthy) until the first
/// error, and the source would fall behind for the whole silence.
#[test]
fn silent_target_holds_the_source_at_its_lead_only_briefly() {
    let mut admin = String::new();
    let mut s = Scenario::start("silent", |setup| {
        setup.batch_max_bytes = Some(2 * 1024);
        setup.extra_toml += "\n[transaction]\nmax_bytes = \"8KiB\"\n";
        admin = with_admin(setup);
    });
    let lead = kafka_relay::source::lead_bytes(&s.setup.config());
    s.sleep_random(1000..3000);
    // The source's patience runs from the last commit: go silent right
    // after one, so that a machine slow to commit does not shorten it.
    s.await_next_commit(&admin);
    s.blackhole_target();
    let silent = Instant::now();
    let limit = Duration::from_secs(25);
    let bytes = loop {
        let bytes = sum(&scrape(&admin), "kafka_relay_wal_bytes", &[]);
        if bytes > (2 * lead) as f64 {
            break bytes;
        }
        assert!(
            silent.elapsed() < limit,
            "the WAL held {bytes} bytes {limit:?} after the target went silent: \
             the source is still held at its lead of {lead} bytes"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let waited = silent.elapsed();
    assert!(
        !s.relay_log().contains("target outage began"),
        "an outage was reported before the WAL passed twice the lead, so this \
         run cannot tell the lead's patience apart from the outage"
    );
    kafka::log(format!(
        "silent: the WAL passed twice the lead ({bytes} > 2 x {lead} bytes) {:.1}s after the target went silent, before any error",
        waited.as_secs_f64()
    ));
    assert!(
        waited >= Duration::from_secs(4),
        "the WAL passed twice the lead {waited:?} after the target went silent: \
         the source did not wait at its lead first"
    );
    let _ = s.finish();
}

/// A transaction whose records are not all acknowledged within the
/// shipper's deadline (`await_deliveries`, 30 s) is aborted and shipped
/// again from the WAL once the target answers. The transaction timeout is
/// 60 s here, and librdkafka's message timeout follows it, so it is the
/// shipper's deadline that ends the wait, not a delivery failure.
#[test]
fn deliveries_stalled_past_the_deadline_are_shipped_again_once() {
    let mut admin = String::new();
    let mut s = Scenario::start("stalled", |setup| {
        setup.transaction_timeout_ms = 60_000;
        admin = with_admin(setup);
    });
    // Right after a commit the next transaction is producing. A silence
    // that still catches a commit holds the commit, not the deliveries
    // (the commit is retried, a different path): then heal and try again.
    let mut tries = 0;
    loop {
        tries += 1;
        s.sleep_random(1000..3000);
        s.await_next_commit(&admin);
        let from = s.relay_log().len();
        s.blackhole_target();
        let needles = ["Flush error", "commit did not complete"];
        match s.first_in_log(from, &needles, Duration::from_secs(60)) {
            Some("Flush error") => break,
            Some(other) if tries < 3 => {
                kafka::log(format!(
                    "stalled: try {tries} caught a commit ({other:?}); again"
                ));
                s.c().target.proxy.clear();
                // The held commit completes, and its successor with it.
                s.await_next_commit(&admin);
                s.await_next_commit(&admin);
            }
            found => panic!(
                "stalled: try {tries}: {found:?} in the relay log 60 s into the silence, \
                 not \"Flush error\"; its end:\n{}",
                s.relay.as_ref().map_or_else(String::new, |r| r.log_tail())
            ),
        }
    }
    let log = s.relay_log();
    let failed = log
        .lines()
        .find(|l| l.contains("target transaction failed") && l.contains("Flush error"))
        .unwrap_or_else(|| panic!("no failed transaction with the flush timeout in:\n{log}"));
    assert!(
        failed.contains("AbortAndRewind"),
        "the deadline must abort the transaction and rewind: {failed}"
    );
    kafka::log(format!("stalled: {failed}"));
    let _ = s.finish();
}

/// A link too slow to carry a whole transaction within the delivery
/// deadline (half the 10 s transaction timeout here) still works: the
/// shipper ships smaller transactions instead of timing out the same one
/// for ever. A backlog builds while the relay is down; the relay comes back
/// behind a 16 KiB/s link, and its first transaction (some 7000 small
/// records, about 200 KiB on the wire) needs far more than 5 s of it.
#[test]
fn link_too_slow_for_a_whole_transaction_ships_smaller_ones_and_loses_nothing() {
    let mut s = Scenario::start("narrow-link", |setup| {
        setup.transaction_timeout_ms = 10_000;
    });
    if let Some(relay) = s.relay.take() {
        relay.kill9();
    }
    s.sleep_random(30_000..35_000);
    s.c().target.proxy.set(Faults {
        bytes_per_sec: Some(16 * 1024),
        ..Faults::default()
    });
    let from = s.relay_log().len();
    s.start_relay();
    let needle = "retrying with fewer batches";
    let found = s.first_in_log(from, &[needle], Duration::from_secs(90));
    assert_eq!(
        found,
        Some(needle),
        "no smaller transaction 90 s behind the slow link; the relay log's end:\n{}",
        s.relay.as_ref().map_or_else(String::new, |r| r.log_tail())
    );
    let log = s.relay_log();
    if let Some(line) = log[from..].lines().find(|l| l.contains(needle)) {
        kafka::log(format!("narrow-link: {line}"));
    }
    let _ = s.finish();
}

#[test]
fn poison_record_is_dead_lettered_the_rest_arrive_once_and_replay_delivers_it_once() {
    let s = Scenario::start("poison", |setup| {
        // The target refuses records over 100 kB; the source happily takes them.
        // max.message.bytes is a key the relay manages and the source does
        // not set: left to the relay, the limit would be removed.
        setup.target_toml = "create_topics = false\n".to_string();
        harness::clients::set_topic_config(
            &clusters().target.bootstrap,
            &setup.target_topic,
            &[("max.message.bytes", "100000")],
        );
    });
    std::thread::sleep(Duration::from_secs(3));
    let poison = vec![0x5au8; 150_000];
    let producer: rdkafka::producer::BaseProducer =
        harness::clients::client_config(&s.c().source.bootstrap)
            .create()
            .expect("producer");
    producer
        .send(
            rdkafka::producer::BaseRecord::<str, [u8]>::to(&s.setup.source_topic)
                .key("poison")
                .payload(&poison[..])
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("send poison");
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(30)).expect("flush");
    std::thread::sleep(Duration::from_secs(5));
    // finish() proves the rest arrived exactly once and the poison did not arrive.
    let setup = s.finish();

    let dlq = |args: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
            .args(["--log", "warn", "dlq", "--config"])
            .arg(setup.config_file())
            .args(args)
            .output()
            .expect("run dlq");
        assert!(
            out.status.success(),
            "dlq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = dlq(&["list"]);
    assert!(
        listed.contains("1 dead letter(s)") && listed.contains("max.message.bytes"),
        "{listed}"
    );

    harness::clients::set_topic_config(
        &clusters().target.bootstrap,
        &setup.target_topic,
        &[("max.message.bytes", "1048588")],
    );
    let replayed = dlq(&["replay"]);
    assert!(replayed.contains("replayed 1 dead letter(s)"), "{replayed}");
    let copies = harness::clients::consume_all(
        &clusters().target.bootstrap,
        &setup.target_topic,
        harness::clients::Isolation::ReadCommitted,
    )
    .iter()
    .filter(|m| rdkafka::Message::payload(*m) == Some(&poison[..]))
    .count();
    assert_eq!(
        copies, 1,
        "after raising the limit, replay delivers the poison record exactly once"
    );
    kafka::log("chaos scenario poison: dead-lettered, the rest exactly once, replayed once after raising the limit");
}
