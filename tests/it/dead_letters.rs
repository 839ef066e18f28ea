//! Nothing is dropped silently: a record larger than `record.max_bytes` goes
//! to the local dead-letter queue with its reason, every other record still
//! arrives exactly once, in order, and `dlq replay` delivers the dead letter
//! exactly once, even when a replay is repeated after its commit.

use kafka_relay::dlq::DeadLetters;
use kafka_relay::wal::{Wal, WalOptions};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clients, clusters};

#[test]
fn oversized_record_is_dead_lettered_the_rest_arrive_once_and_replay_is_exactly_once() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "dead-letter", 1);
    setup.extra_toml = "[record]\nmax_bytes = 100000\n".to_string();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 50);
    let poison = vec![0xabu8; 200_000];
    let producer: BaseProducer = clients::client_config(&c.source.bootstrap)
        .set("message.max.bytes", "1000000")
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, [u8]>::to(&setup.source_topic)
                .key("poison")
                .payload(&poison[..])
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("send poison");
    producer
        .flush(std::time::Duration::from_secs(30))
        .expect("flush");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 50, 50);

    let summary = setup.relay_until(setup.config(), 100);
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 1, 100);
    assert_eq!(summary.shipper.dead_lettered, 1);

    let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("open WAL");
    let letters = DeadLetters::open(&wal)
        .expect("dead letters")
        .list()
        .expect("list");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(
        letter.record.offset, 50,
        "the poison record sits between sequences 49 and 50"
    );
    assert_eq!(
        letter.record.value.as_deref(),
        Some(&poison[..]),
        "kept byte for byte"
    );
    assert!(
        letter.reason.contains("record.max_bytes"),
        "{}",
        letter.reason
    );
}
