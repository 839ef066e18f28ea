//! Exactly-once across crashes of the real binary: SIGKILL at random moments
//! (start-up, mid-transaction, between commit and WAL ack) while a producer
//! keeps writing, and loss of the WAL directory between runs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::harness::relay::{background_producer, produce_sequence, RelayProcess, RelaySetup};
use crate::harness::{checker, clusters, kafka, seed};

/// Kills per run of the SIGKILL test; `KAFKA_RELAY_CRASH_KILLS` raises it for a soak.
fn kills() -> u32 {
    std::env::var("KAFKA_RELAY_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

#[test]
fn sigkill_at_random_moments_neither_loses_nor_duplicates() {
    let seed = seed("sigkill_at_random_moments_neither_loses_nor_duplicates");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let c = clusters();
    let setup = RelaySetup::new(c, "crash", 4);
    let config = setup.config_file();
    let log = setup.dir.path().join("relay.log");
    let (stop, producer) =
        background_producer(c.source.bootstrap.clone(), setup.source_topic.clone(), 4);

    let kills = kills();
    for i in 0..kills {
        let mut relay = RelayProcess::start(&config, &log);
        // Short waits hit start-up and recovery, long ones steady shipping.
        let wait = Duration::from_millis(rng.random_range(50..2500));
        std::thread::sleep(wait);
        if let Some(status) = relay.exited() {
            panic!(
                "relay exited on its own ({status}) before kill {i}; log:\n{}",
                relay.log_tail()
            );
        }
        relay.kill9();
    }
    stop.store(true, Ordering::Relaxed);
    let per_partition = producer.join().expect("producer thread");
    kafka::log(format!(
        "crash test: {kills} SIGKILLs, {per_partition} records per partition produced"
    ));

    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target(c, 4 * per_partition as usize, Duration::from_secs(180));
    relay.stop();
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 4, per_partition);
}

#[test]
fn wal_dir_lost_between_runs_neither_loses_nor_duplicates() {
    let seed = seed("wal_dir_lost_between_runs_neither_loses_nor_duplicates");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let c = clusters();
    let setup = RelaySetup::new(c, "wal-lost", 2);
    let config = setup.config_file();
    let log = setup.dir.path().join("relay.log");
    let mut per_partition = 0;
    for _ in 0..6 {
        produce_sequence(
            &c.source.bootstrap,
            &setup.source_topic,
            2,
            per_partition,
            300,
        );
        per_partition += 300;
        let relay = RelayProcess::start(&config, &log);
        std::thread::sleep(Duration::from_millis(rng.random_range(300..4000)));
        relay.kill9();
        std::fs::remove_dir_all(setup.wal_dir()).expect("delete the WAL dir");
    }
    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target(c, 2 * per_partition as usize, Duration::from_secs(120));
    relay.stop();
    std::fs::remove_dir_all(setup.wal_dir()).expect("delete the WAL dir");
    // A run on an empty WAL after everything was delivered must add nothing.
    let relay = RelayProcess::start(&config, &log);
    std::thread::sleep(Duration::from_secs(5));
    relay.stop();
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, per_partition);
}
