//! WAL encryption at rest (`wal.encryption_key_file`), end to end: the relay
//! copies exactly once through an encrypted WAL; entries waiting in it when
//! the relay stops are readable with its key only, and another key, or none,
//! stops the next start with an error naming the key ids, never a
//! quarantine: with the right key back, everything still arrives once.

use std::path::Path;
use std::time::Duration;

use kafka_relay::config::Config;
use kafka_relay::ops::Shared;
use kafka_relay::wal::Wal;

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clusters};

const PER_PARTITION: u64 = 500;

fn keyed(setup: &RelaySetup, key: Option<&Path>) -> Result<Config, String> {
    let env: Vec<(String, String)> = key
        .map(|k| {
            (
                "KAFKA_RELAY_WAL__ENCRYPTION_KEY_FILE".to_string(),
                k.display().to_string(),
            )
        })
        .into_iter()
        .collect();
    Config::from_toml_str(&setup.toml(), env).map_err(|e| e.to_string())
}

#[test]
fn an_encrypted_wal_copies_exactly_once_and_only_its_own_key_opens_it() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "wal-key", 2);
    // Shipping slower than reading: entries wait in the WAL when it stops.
    setup.extra_toml +=
        "\n[transaction]\nmax_bytes = \"8KiB\"\n[rate]\nmax_bytes_per_sec = \"4KiB\"\n";
    let (key_a, key_b) = (
        setup.dir.path().join("a.key"),
        setup.dir.path().join("b.key"),
    );
    std::fs::write(&key_a, "1f".repeat(32) + "\n").expect("key a");
    std::fs::write(&key_b, "2e".repeat(32)).expect("key b");
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        PER_PARTITION,
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let with_a = keyed(&setup, Some(&key_a)).expect("config with key a");
    // Stopped after its first commit: the source reads a few transactions
    // ahead of the capped shipping, so the rest waits in the WAL.
    let shared = Shared::new(false);
    let watched = shared.clone();
    let summary = runtime
        .block_on(kafka_relay::pipeline::run_with(
            with_a.clone(),
            shared,
            async move {
                while watched.metrics.transactions_committed.get() == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        ))
        .unwrap_or_else(|e| panic!("relay with key a: {e}"));
    crate::harness::kafka::log(format!(
        "wal-key: stopped after {} records read, {} shipped",
        summary.source.records, summary.shipper.records
    ));
    let waiting =
        Wal::open_existing_with_key(&with_a.wal.dir, with_a.wal_options(), with_a.wal_key())
            .expect("the WAL opens with its key")
            .len();
    assert!(
        waiting > 0,
        "nothing waits in the WAL: the test proves nothing"
    );
    let shipped = || {
        clients::consume_all(
            &c.target.bootstrap,
            &setup.target_topic,
            Isolation::ReadCommitted,
        )
        .len()
    };
    let before = shipped();

    for (key, says) in [
        (Some(&key_b), "but wal.encryption_key_file holds key id"),
        (None, "but no wal.encryption_key_file is set"),
    ] {
        let config = keyed(&setup, key.map(|k| k.as_path())).expect("config");
        let error = runtime
            .block_on(kafka_relay::pipeline::run(config, std::future::pending()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("a WAL of key a opened with {key:?}"));
        assert!(
            error.contains(says) && error.contains("is encrypted"),
            "{error}"
        );
    }
    assert_eq!(shipped(), before, "a refused start shipped records");
    let again =
        Wal::open_existing_with_key(&with_a.wal.dir, with_a.wal_options(), with_a.wal_key())
            .expect("reopen with key a");
    assert_eq!(again.len(), waiting, "a key problem changed the WAL");
    assert_eq!(
        again.depth().corrupted.batches,
        0,
        "nothing quarantined or corrupted"
    );
    drop(again);

    setup.relay_until(with_a, 2 * PER_PARTITION as usize);
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, PER_PARTITION);
}
