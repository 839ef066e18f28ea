//! Contender 4: the plainest relay rdkafka allows, as a ceiling for any
//! relay on this machine. One consumer, one producer, one thread: every
//! record polled is handed straight to the producer (same partition, key,
//! value, headers, timestamp). No WAL, no transactions, no offset commits,
//! so it is neither durable nor exactly-once.
//!
//! It batches as kafka-relay does where the two can be alike: the consumer
//! reads `read_committed` with librdkafka's default fetch sizes, and the
//! producer lingers 5 ms, as the relay's shipper does. It runs as a process
//! of its own (the bench binary re-run with `pipe`), so its memory and CPU
//! are measured like any other contender's.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::harness::clients;

/// Copies `topic` to `target_topic` until killed. `idempotent` turns on the
/// producer's idempotence, which the relay's transactions need: librdkafka
/// then keeps at most 5 requests in flight and retries in order.
pub fn run(
    source: &str,
    target: &str,
    topic: &str,
    target_topic: &str,
    partitions: i32,
    idempotent: bool,
) {
    let consumer: BaseConsumer = clients::client_config(source)
        .set("group.id", "kafka-relay-bench-pipe")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("pipe consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("assign offset");
    }
    consumer.assign(&tpl).expect("assign source partitions");
    let producer: BaseProducer = clients::client_config(target)
        .set("linger.ms", "5")
        .set("enable.idempotence", idempotent.to_string())
        .create()
        .expect("pipe producer");
    loop {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            producer.poll(Duration::ZERO);
            continue;
        };
        let message = message.unwrap_or_else(|e| panic!("pipe cannot read {topic}: {e}"));
        let mut record = BaseRecord::to(target_topic).partition(message.partition());
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(ts) = message.timestamp().to_millis() {
            record = record.timestamp(ts);
        }
        if let Some(headers) = message.headers() {
            record = record.headers(headers.detach());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "pipe cannot produce to {target_topic}: {e}"
                    );
                    record = back;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
}
