//! Proof that the harness brokers are real enough to test exactly-once: they
//! hide aborted transactions from `read_committed` readers and fence zombie
//! producers. (librdkafka's mock cluster and the tansu broker fail the first.)

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::harness::clients::transactional_producer;
use crate::harness::clients::{self, Isolation};
use crate::harness::clusters;
use crate::harness::kafka::{SASL_PASSWORD, SASL_USER};

const TIMEOUT: Duration = Duration::from_secs(30);

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    producer
        .send(BaseRecord::<(), str>::to(topic).payload(value).partition(0))
        .map_err(|(e, _)| e)
        .expect("enqueue");
}

#[test]
fn read_committed_readers_see_only_committed_transactions() {
    let target = &clusters().target;
    let topic = clients::unique_name("txn-proof");
    clients::create_topic(&target.bootstrap, &topic, 1, &[]);

    let producer = transactional_producer(&target.bootstrap, &clients::unique_name("txn-proof-id"));
    producer.begin_transaction().expect("begin");
    for i in 0..3 {
        send(&producer, &topic, &format!("committed-{i}"));
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    producer.begin_transaction().expect("begin");
    for i in 0..2 {
        send(&producer, &topic, &format!("aborted-{i}"));
    }
    producer.flush(TIMEOUT).expect("flush");
    producer.abort_transaction(TIMEOUT).expect("abort");

    let committed = clients::consume_all(&target.bootstrap, &topic, Isolation::ReadCommitted);
    let uncommitted = clients::consume_all(&target.bootstrap, &topic, Isolation::ReadUncommitted);
    let values = |v: &[rdkafka::message::OwnedMessage]| -> Vec<String> {
        clients::values_by_partition(v)
            .into_values()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    };
    assert_eq!(
        values(&committed),
        ["committed-0", "committed-1", "committed-2"],
        "read_committed must see exactly the committed transaction"
    );
    // The same log read without isolation shows the aborted records: the
    // broker really wrote them and really hid them above.
    assert_eq!(committed.len(), 3);
    assert_eq!(uncommitted.len(), 5);
}

#[test]
fn second_producer_with_same_transactional_id_fences_the_first() {
    let target = &clusters().target;
    let topic = clients::unique_name("txn-fence");
    clients::create_topic(&target.bootstrap, &topic, 1, &[]);
    let id = clients::unique_name("txn-fence-id");

    let zombie = transactional_producer(&target.bootstrap, &id);
    zombie.begin_transaction().expect("begin");
    send(&zombie, &topic, "from-zombie");
    zombie.flush(TIMEOUT).expect("flush");

    let successor = transactional_producer(&target.bootstrap, &id);
    let err = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("a fenced producer must not commit");
    match &err {
        KafkaError::Transaction(e) => {
            assert!(
                e.is_fatal(),
                "fencing must be fatal for the zombie, got {e}"
            );
            assert!(
                matches!(
                    e.code(),
                    RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                ),
                "unexpected error code {:?}",
                e.code()
            );
        }
        other => panic!("expected a transaction error, got {other}"),
    }

    successor.begin_transaction().expect("begin");
    send(&successor, &topic, "from-successor");
    successor.commit_transaction(TIMEOUT).expect("commit");

    let seen = clients::consume_all(&target.bootstrap, &topic, Isolation::ReadCommitted);
    let values: Vec<_> = seen
        .iter()
        .map(|m| {
            String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default()).into_owned()
        })
        .collect();
    assert_eq!(values, ["from-successor"]);
}

#[test]
fn target_sasl_listener_accepts_the_known_user_and_rejects_a_wrong_password() {
    let target = &clusters().target;
    let sasl = |password: &str| -> ClientConfig {
        let mut c = clients::client_config(&target.sasl_bootstrap);
        c.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", SASL_USER)
            .set("sasl.password", password);
        c
    };
    let ok: rdkafka::consumer::BaseConsumer = sasl(SASL_PASSWORD).create().expect("client");
    let md = rdkafka::consumer::Consumer::fetch_metadata(&ok, None, TIMEOUT)
        .expect("metadata with right password");
    assert!(!md.brokers().is_empty());

    let bad: rdkafka::consumer::BaseConsumer = sasl("wrong").create().expect("client");
    rdkafka::consumer::Consumer::fetch_metadata(&bad, None, Duration::from_secs(5))
        .expect_err("a wrong password must not get metadata");
}

#[test]
fn source_and_target_are_independent_clusters() {
    let c = clusters();
    assert_ne!(c.source.bootstrap, c.target.bootstrap);
    let topic = clients::unique_name("only-on-source");
    clients::create_topic(&c.source.bootstrap, &topic, 2, &[]);
    let target: rdkafka::consumer::BaseConsumer = clients::client_config(&c.target.bootstrap)
        .create()
        .expect("client");
    let md = rdkafka::consumer::Consumer::fetch_metadata(&target, None, TIMEOUT).expect("metadata");
    assert!(
        md.topics().iter().all(|t| t.name() != topic),
        "a topic created on the source must not exist on the target"
    );
}
