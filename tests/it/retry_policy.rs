//! The retry policy is honoured: when a transaction keeps failing past
//! `retry.max_attempts`, the relay halts with the reason, keeps every batch
//! in its WAL, and a fixed configuration then delivers them exactly once.

use std::time::Duration;

use kafka_relay::wal::{Wal, WalOptions};

use crate::harness::relay::{produce_sequence, RelayProcess, RelaySetup};
use crate::harness::{checker, clusters};

#[test]
fn spent_retry_policy_halts_with_the_reason_and_loses_nothing() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "retry-halt", 2);
    setup.extra_toml = r#"
[retry]
initial_backoff_ms = 100
max_backoff_ms = 500
max_attempts = 2

[target.properties]
"message.timeout.ms" = 3000
"#
    .to_string();
    // The relay must not make the target topic it is pointed at below.
    setup.target_toml = "create_topics = false\n".to_string();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 2, 0, 100);

    // Misconfigured: the target topic does not exist (and auto-create is off).
    let broken = setup.toml().replace(
        "transactional_id =",
        "topic = \"no-such-target-topic\"\ntransactional_id =",
    );
    let config = setup.dir.path().join("broken.toml");
    std::fs::write(&config, broken).expect("write config");
    let log = setup.dir.path().join("relay.log");
    let status = RelayProcess::start(&config, &log).wait_exit(Duration::from_secs(120));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "a spent policy is a failure exit:\n{output}"
    );
    assert!(
        output.contains("failed 2 times") && output.contains("retry policy spent"),
        "the halt names the attempts and the policy:\n{output}"
    );

    let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("open WAL");
    assert!(!wal.is_empty(), "the undeliverable batches stay in the WAL");
    drop(wal);

    let relay = RelayProcess::start(&setup.config_file(), &log);
    setup.wait_for_target(c, 200, Duration::from_secs(120));
    relay.stop();
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, 100);
}
