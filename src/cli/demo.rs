//! `kafka-relay demo`: the whole data path with no external setup.
//!
//! Source and target are two in-process **librdkafka mock clusters**, not
//! real Kafka. The mock is good enough to show the path working and riding
//! out an outage; it is not evidence of exactly-once (it is known to show
//! aborted transactions to `read_committed` readers). That evidence comes
//! from the test suite, which runs real Apache Kafka.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::Failure;
use crate::config::Config;
use crate::pipeline;

const TOPIC: &str = "demo-orders";
const DEMO_RELAY: &str = "kafka-relay-demo";
const PARTITIONS: i32 = 4;
const OUTAGE: Duration = Duration::from_secs(4);
const DEADLINE: Duration = Duration::from_secs(120);

pub async fn demo(records: u64) -> Result<(), Failure> {
    println!("kafka-relay demo: source and target are two in-process librdkafka MOCK clusters (not real Kafka).");
    let source = MockCluster::new(1).map_err(Failure::runtime)?;
    let target = MockCluster::new(1).map_err(Failure::runtime)?;
    for cluster in [&source, &target] {
        cluster
            .create_topic(TOPIC, PARTITIONS, 1)
            .map_err(Failure::runtime)?;
    }
    // The mock cluster does not serve CreateTopics; the relay finds this one made.
    target
        .create_topic(&crate::config::default_checkpoint_topic(DEMO_RELAY), 1, 1)
        .map_err(Failure::runtime)?;
    let third = records / 3;
    produce(&source.bootstrap_servers(), 0..third)?;
    println!("produced {third} records to {TOPIC} on the source ({PARTITIONS} partitions)");

    let wal_dir = std::env::temp_dir().join(format!("kafka-relay-demo-{}", std::process::id()));
    let config = Config::from_toml_str(
        &format!(
            r#"
            [source]
            bootstrap_servers = "{}"
            topics = ["{TOPIC}"]
            [target]
            bootstrap_servers = "{}"
            transactional_id = "{DEMO_RELAY}"
            # The mock cluster serves no DescribeConfigs or AlterConfigs.
            create_topics = false
            [wal]
            dir = "{}"
            [batch]
            max_records = 500
            linger_ms = 20
            "#,
            source.bootstrap_servers(),
            target.bootstrap_servers(),
            wal_dir.display()
        ),
        std::iter::empty(),
    )
    .map_err(Failure::runtime)?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(pipeline::run(config, async {
        let _ = stop_rx.await;
    }));

    let counter = TargetCounter::new(&target.bootstrap_servers())?;
    let started = Instant::now();
    let mut seen = BTreeMap::new();
    counter.wait_for(&mut seen, third, started).await;
    println!(
        "relayed {} records; now the target goes down for {}s",
        seen.len(),
        OUTAGE.as_secs()
    );

    target.broker_down(1).map_err(Failure::runtime)?;
    produce(&source.bootstrap_servers(), third..2 * third)?;
    println!("produced {third} more records during the outage; the relay keeps them in its WAL");
    tokio::time::sleep(OUTAGE).await;
    counter.add(&mut seen);
    println!(
        "target back up; {} records had reached it during the outage",
        seen.len()
    );
    target.broker_up(1).map_err(Failure::runtime)?;

    produce(&source.bootstrap_servers(), 2 * third..records)?;
    println!("produced the last {} records", records - 2 * third);
    counter.wait_for(&mut seen, records, started).await;
    let _ = stop_tx.send(());
    let summary = relay
        .await
        .map_err(Failure::runtime)?
        .map_err(Failure::runtime)?;
    let _ = std::fs::remove_dir_all(&wal_dir);

    let relayed: u64 = seen.values().sum();
    let distinct = seen.len() as u64;
    let duplicated = relayed - distinct;
    let missing = records.saturating_sub(distinct);
    println!();
    println!("tally");
    println!("  produced to source           {records:>9}");
    println!("  relayed (distinct)           {distinct:>9}");
    println!("  duplicates seen on target    {duplicated:>9}");
    println!("  missing on target            {missing:>9}");
    println!(
        "  transactions committed       {:>9}",
        summary.shipper.transactions
    );
    println!(
        "  transactions aborted         {:>9}",
        summary.shipper.aborted
    );
    println!(
        "  elapsed                      {:>8.1}s",
        started.elapsed().as_secs_f64()
    );
    if duplicated > 0 {
        println!(
            "  (the mock cluster shows records of aborted transactions; real Kafka hides them)"
        );
    }
    if missing > 0 {
        return Err(Failure::runtime(format!(
            "{missing} records did not arrive within {}s",
            DEADLINE.as_secs()
        )));
    }
    Ok(())
}

fn produce(bootstrap: &str, range: std::ops::Range<u64>) -> Result<(), Failure> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(Failure::runtime)?;
    for i in range {
        let key = format!("customer-{}", i % 97);
        let value = format!("order-{i}");
        let mut record = BaseRecord::to(TOPIC)
            .key(&key)
            .payload(&value)
            .partition((i % PARTITIONS as u64) as i32);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(Failure::runtime)
}

/// Reads the target topic as a `read_committed` consumer and counts values.
struct TargetCounter(BaseConsumer);

impl TargetCounter {
    fn new(bootstrap: &str) -> Result<Self, Failure> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "kafka-relay-demo-counter")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(Failure::runtime)?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
                .map_err(Failure::runtime)?;
        }
        consumer.assign(&tpl).map_err(Failure::runtime)?;
        Ok(TargetCounter(consumer))
    }

    /// Counts what arrived until `expected` distinct records or the deadline.
    async fn wait_for(&self, seen: &mut BTreeMap<Vec<u8>, u64>, expected: u64, started: Instant) {
        while (seen.len() as u64) < expected && started.elapsed() < DEADLINE {
            self.add(seen);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn add(&self, seen: &mut BTreeMap<Vec<u8>, u64>) {
        for (value, n) in tokio::task::block_in_place(|| self.drain()) {
            *seen.entry(value).or_insert(0) += n;
        }
    }

    fn drain(&self) -> BTreeMap<Vec<u8>, u64> {
        let mut counts = BTreeMap::new();
        while let Some(Ok(m)) = self.0.poll(Duration::from_millis(50)) {
            *counts
                .entry(m.payload().unwrap_or_default().to_vec())
                .or_insert(0) += 1;
        }
        counts
    }
}
