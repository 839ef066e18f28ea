//! Plain Kafka clients the tests use to set up topics, write source data and
//! read the target independently of the relay.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

/// Which records a reader of the target sees.
#[derive(Clone, Copy, Debug)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    fn as_str(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// True once the broker answers a metadata request.
pub fn metadata_ok(bootstrap: &str) -> bool {
    let consumer: Result<BaseConsumer, _> = client_config(bootstrap).create();
    consumer.is_ok_and(|c| {
        c.fetch_metadata(None, Duration::from_secs(2))
            .is_ok_and(|m| !m.brokers().is_empty())
    })
}

/// A topic name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let results = block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    for r in results {
        if let Err((t, code)) = r {
            assert_eq!(
                code,
                RDKafkaErrorCode::TopicAlreadyExists,
                "create topic {t}: {code}"
            );
        }
    }
    // Metadata can lag topic creation by a moment; wait until every partition has a leader.
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(md) = consumer.fetch_metadata(Some(name), Duration::from_secs(5)) {
            if md.topics().iter().any(|t| {
                t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            }) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} has no leaders after 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes `name` (the benchmark frees the disk between contenders).
pub fn delete_topic(bootstrap: &str, name: &str) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let results = block_on(admin.delete_topics(&[name], &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("delete topic {name}: {e}"));
    for r in results {
        if let Err((t, code)) = r {
            assert_eq!(
                code,
                RDKafkaErrorCode::UnknownTopicOrPartition,
                "delete topic {t}: {code}"
            );
        }
    }
}

/// Deletes the records of `topic`/`partition` below `before` (Kafka's
/// DeleteRecords: what retention does, on demand), moving its log start there.
pub fn delete_records(bootstrap: &str, topic: &str, partition: i32, before: i64) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, partition, rdkafka::Offset::Offset(before))
        .expect("offset");
    let done = block_on(admin.delete_records(&offsets, &AdminOptions::new()))
        .unwrap_or_else(|e| panic!("delete records of {topic}/{partition} below {before}: {e}"));
    for e in done.elements() {
        if let Err(err) = e.error() {
            panic!("delete records of {topic}/{partition} below {before}: {err}");
        }
    }
}

/// Sets topic configs (replacing the topic's other dynamic configs).
pub fn set_topic_config(bootstrap: &str, topic: &str, config: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in config {
        change = change.set(k, v);
    }
    for result in
        block_on(admin.alter_configs([&change], &AdminOptions::new())).expect("alter configs")
    {
        result.unwrap_or_else(|(_, code)| panic!("alter config of {topic}: {code}"));
    }
}

/// Grows `topic` to `total` partitions.
pub fn add_partitions(bootstrap: &str, topic: &str, total: usize) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let new = NewPartitions::new(topic, total);
    for result in
        block_on(admin.create_partitions([&new], &AdminOptions::new())).expect("create partitions")
    {
        result.unwrap_or_else(|(_, code)| panic!("add partitions to {topic}: {code}"));
    }
}

/// The configs set on `topic` itself (not inherited from the brokers).
pub fn topic_configs(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
            .expect("describe configs");
    let resource = results
        .into_iter()
        .next()
        .expect("one result")
        .unwrap_or_else(|code| panic!("describe configs of {topic}: {code}"));
    resource
        .entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

/// The partition count of `topic`, or `None` if the cluster does not have it.
pub fn partition_count(bootstrap: &str, topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = client_config(bootstrap).create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
}

/// Reads every record of `topic` from the beginning up to the end seen by a
/// reader with `isolation` (the last stable offset for read_committed).
pub fn consume_all(bootstrap: &str, topic: &str, isolation: Isolation) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", unique_name("checker"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation.as_str())
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut at_end = HashSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(
            Instant::now() < deadline,
            "reading {topic} did not reach its end in 60s"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                at_end.remove(&m.partition());
                out.push(m.detach());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Values per partition, in offset order.
pub fn values_by_partition(messages: &[OwnedMessage]) -> BTreeMap<i32, Vec<Vec<u8>>> {
    let mut by = BTreeMap::<i32, Vec<(i64, Vec<u8>)>>::new();
    for m in messages {
        by.entry(m.partition())
            .or_default()
            .push((m.offset(), m.payload().unwrap_or_default().to_vec()));
    }
    by.into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|(o, _)| *o);
            (p, v.into_iter().map(|(_, b)| b).collect())
        })
        .collect()
}

/// A producer with `transactional_id`, transactions initialised.
pub fn transactional_producer(
    bootstrap: &str,
    transactional_id: &str,
) -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(bootstrap)
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "30000")
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer
}
