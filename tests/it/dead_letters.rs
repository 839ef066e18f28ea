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
    let dlq_topic = clients::unique_name("dead-letters");
    clients::create_topic(&c.target.bootstrap, &dlq_topic, 1, &[]);
    setup.extra_toml = format!("[record]\nmax_bytes = 100000\n[dlq]\ntopic = \"{dlq_topic}\"\n");
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
    let letter = letter.clone();
    drop(wal);

    // The copy on the target's dead-letter topic: exactly one, saying where
    // from and why, its oversized value left out.
    let copies = clients::consume_all(
        &c.target.bootstrap,
        &dlq_topic,
        clients::Isolation::ReadCommitted,
    );
    assert_eq!(copies.len(), 1);
    let header = |name: &str| -> Option<String> {
        use rdkafka::message::Headers as _;
        rdkafka::Message::headers(&copies[0]).and_then(|hs| {
            hs.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
        })
    };
    assert_eq!(header("kafka-relay-dlq-source"), Some(letter.id()));
    assert!(header("kafka-relay-dlq-reason").is_some_and(|r| r.contains("record.max_bytes")));
    assert_eq!(
        header("kafka-relay-dlq-value-omitted-bytes"),
        Some("200006".to_string()),
        "key + value bytes"
    );
    assert_eq!(rdkafka::Message::payload(&copies[0]), None);

    // Replay (the target accepts 200 KB; only our own limit refused it).
    let config = setup.config_file();
    let (ok, out) = dlq(&config, &["list"]);
    assert!(
        ok && out.contains(&letter.id()) && out.contains("1 dead letter(s)"),
        "{out}"
    );
    let (ok, out) = dlq(&config, &["replay"]);
    assert!(ok && out.contains("replayed 1 dead letter(s)"), "{out}");
    assert_eq!(poison_on_target(&setup, &poison), 1);

    // As if a replay had committed and crashed before removing the letter:
    // running it again must not send the record twice.
    {
        let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("open WAL");
        assert!(DeadLetters::open(&wal)
            .expect("store")
            .put(&letter)
            .expect("put back"));
    }
    let (ok, out) = dlq(&config, &["replay"]);
    assert!(
        ok && out.contains("replayed 0 dead letter(s); 1 were already on the target"),
        "{out}"
    );
    assert_eq!(
        poison_on_target(&setup, &poison),
        1,
        "replaying is exactly-once"
    );
    let (ok, out) = dlq(&config, &["list"]);
    assert!(ok && out.contains("0 dead letter(s)"), "{out}");
}

/// Runs `kafka-relay dlq <args>`; (success, stdout and stderr).
fn dlq(config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["--log", "warn", "dlq", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run kafka-relay dlq");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn poison_on_target(setup: &RelaySetup, poison: &[u8]) -> usize {
    clients::consume_all(
        &clusters().target.bootstrap,
        &setup.target_topic,
        clients::Isolation::ReadCommitted,
    )
    .iter()
    .filter(|m| rdkafka::Message::payload(*m) == Some(poison))
    .count()
}

#[test]
fn records_the_target_refuses_are_dead_lettered_under_on_exhausted_dead_letter_and_replayed_once() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "refused", 1);
    let missing = clients::unique_name("not-yet-created");
    setup.extra_toml = r#"
[retry]
initial_backoff_ms = 100
max_backoff_ms = 500
record_attempts = 2
on_exhausted = "dead_letter"

[target.properties]
"message.timeout.ms" = 5000
"topic.metadata.propagation.max.ms" = 1000
"#
    .to_string();
    // The target topic does not exist (the brokers do not auto-create, and
    // the relay must not create it: the target is to refuse the records).
    setup.target_toml = "create_topics = false\n".to_string();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 20);
    let toml = setup.toml().replace(
        "transactional_id =",
        &format!("topic = \"{missing}\"\ntransactional_id ="),
    );
    let config = setup.dir.path().join("refused.toml");
    std::fs::write(&config, toml).expect("config");
    let log = setup.dir.path().join("relay.log");

    let relay = crate::harness::relay::RelayProcess::start(&config, &log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("record dead-lettered: the target refuses it")
        .count()
        < 20
    {
        assert!(
            std::time::Instant::now() < deadline,
            "records were not dead-lettered:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    relay.stop();
    {
        let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("open WAL");
        let letters = DeadLetters::open(&wal)
            .expect("store")
            .list()
            .expect("list");
        assert_eq!(letters.len(), 20);
        assert!(
            letters
                .iter()
                .all(|l| l.reason.contains("refused it 2 times")),
            "{letters:?}"
        );
        assert!(
            wal.is_empty(),
            "the batches moved on: nothing left undelivered in the WAL"
        );
    }

    clients::create_topic(&c.target.bootstrap, &missing, 1, &[]);
    let (ok, out) = dlq(&config, &["replay"]);
    assert!(ok && out.contains("replayed 20 dead letter(s)"), "{out}");
    checker::assert_exactly_once(&c.target.bootstrap, &missing, 1, 20);
}
