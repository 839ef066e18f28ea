//! What the relay copies and how: aborted source transactions stay behind,
//! the envelope format and topic rename produce what the docs promise.

use std::time::Duration;

use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::Message;

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clusters};

#[test]
fn aborted_source_transactions_are_never_relayed() {
    let c = clusters();
    let setup = RelaySetup::new(c, "src-aborts", 1);
    let producer: ThreadedProducer<DefaultProducerContext> =
        clients::client_config(&c.source.bootstrap)
            .set("transactional.id", clients::unique_name("source-writer"))
            .create()
            .expect("producer");
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).expect("init");
    for (i, commit) in [true, false, true, false, true].into_iter().enumerate() {
        producer.begin_transaction().expect("begin");
        for j in 0..10 {
            let value = format!("{}-{i}-{j}", if commit { "committed" } else { "aborted" });
            producer
                .send(
                    BaseRecord::<(), str>::to(&setup.source_topic)
                        .payload(&value)
                        .partition(0),
                )
                .map_err(|(e, _)| e)
                .expect("send");
        }
        if commit {
            producer.commit_transaction(timeout).expect("commit");
        } else {
            producer.flush(timeout).expect("flush");
            producer.abort_transaction(timeout).expect("abort");
        }
    }
    setup.relay_until(setup.config(), 30);
    // Give any wrongly relayed aborted record time to show up before counting.
    std::thread::sleep(Duration::from_secs(2));
    let all = clients::consume_all(
        &c.target.bootstrap,
        &setup.target_topic,
        Isolation::ReadUncommitted,
    );
    let values: Vec<String> = all
        .iter()
        .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(
        values.len(),
        30,
        "exactly the committed records, even for a read_uncommitted reader: {values:?}"
    );
    assert!(
        values.iter().all(|v| v.starts_with("committed-")),
        "{values:?}"
    );
}

#[test]
fn envelope_format_and_topic_rename_carry_offset_and_msg_body() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "envelope", 2);
    let renamed = clients::unique_name("envelope-dump");
    clients::create_topic(&c.target.bootstrap, &renamed, 2, &[]);
    setup.target_topic = renamed.clone();
    setup.extra_toml = "[target.properties]\n\"compression.type\" = \"zstd\"\n".to_string();
    let toml_rename = format!("format = \"envelope\"\n{}", setup.toml()).replace(
        "transactional_id =",
        &format!("topic = \"{renamed}\"\ntransactional_id ="),
    );
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 2, 0, 100);

    let config = kafka_relay::config::Config::from_toml_str(&toml_rename, std::iter::empty())
        .expect("config");
    setup.relay_until(config, 200);

    let messages = clients::consume_all(&c.target.bootstrap, &renamed, Isolation::ReadCommitted);
    assert_eq!(messages.len(), 200);
    for m in &messages {
        let json: serde_json::Value =
            serde_json::from_slice(m.payload().expect("payload")).expect("JSON envelope");
        let partition = json["partition"].as_i64().expect("partition");
        let offset = json["offset"].as_i64().expect("offset");
        assert_eq!(json["topic"], setup.source_topic.as_str());
        assert_eq!(
            partition,
            i64::from(m.partition()),
            "same partition by default"
        );
        assert_eq!(
            json["msgBody"],
            format!("p{partition}-{offset:08}"),
            "the body is the source value"
        );
        assert_eq!(json["msgBody_base64"], false);
        let binary = json["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .find(|h| h["key"] == "binary")
            .expect("binary header");
        assert_eq!(binary["value"], "AP8H", "non-UTF-8 header bytes are base64");
        assert_eq!(binary["value_base64"], true);
    }
}

#[test]
fn transaction_limits_bound_what_one_transaction_carries() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "txn-limits", 2);
    // One record per transaction is below any batch: each WAL batch travels alone.
    setup.extra_toml =
        "[transaction]\nmax_records = 1\n[rate]\nmax_bytes_per_sec = \"10MiB\"\n".to_string();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 2, 0, 500);
    let summary = setup.relay_until(setup.config(), 1000);
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, 500);
    assert!(summary.source.batches > 1);
    assert_eq!(
        summary.shipper.transactions, summary.source.batches,
        "with transaction.max_records = 1 every WAL batch is its own transaction"
    );
}
