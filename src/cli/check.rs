//! `kafka-relay check`: validates the configuration (already done by loading
//! it) and reaches both clusters: metadata, topic existence, partition
//! counts, and the permission to run transactions. Prints one line per
//! finding and fails if any is a problem.
//!
//! The transactional probe uses `<transactional_id>.check`, never the relay's
//! own id: initialising transactions with the real id would fence a running
//! relay.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};

use super::Failure;
use crate::config::{Config, Partitioning};
use crate::kafka::{self, target_client, SecurityWatch};
use crate::source;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the last error librdkafka logged, which names the real cause (for
/// example a SASL authentication failure) where a metadata call only says
/// "broker transport failure". rust-rdkafka routes logs through the client's
/// event queue, so [`drain_events`] polls before a failure is explained.
/// A TLS or SASL failure, which `run` would stop at too, is named before
/// any other cause.
#[derive(Default)]
struct LastError(Mutex<Option<String>>, SecurityWatch);

impl ClientContext for LastError {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.1.on_log(level, message);
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            if let Ok(mut last) = self.0.lock() {
                *last = Some(format!("{facility}: {message}"));
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.1.on_error(&error, reason);
        if let Ok(mut last) = self.0.lock() {
            *last = Some(format!("{error} ({reason})"));
        }
    }
}
impl ConsumerContext for LastError {}
impl ProducerContext for LastError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Lets queued log and error events reach the context.
fn drain_events(consumer: &BaseConsumer<LastError>) {
    for _ in 0..5 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
}

impl LastError {
    fn explain(&self, e: KafkaError) -> String {
        if let Some(cause) = self.1.failure() {
            return format!(
                "{cause} (a TLS or SASL setting, not an outage: `run` stops at it too)"
            );
        }
        match self.0.lock().ok().and_then(|l| l.clone()) {
            Some(cause) => format!("{e}; librdkafka reported: {cause}"),
            None => e.to_string(),
        }
    }
}

struct Report {
    problems: usize,
}

impl Report {
    fn ok(&self, line: impl AsRef<str>) {
        println!("ok       {}", line.as_ref());
    }
    fn problem(&mut self, line: impl AsRef<str>) {
        self.problems += 1;
        println!("problem  {}", line.as_ref());
    }
}

pub async fn check(config: Config) -> Result<(), Failure> {
    tokio::task::spawn_blocking(move || check_blocking(&config))
        .await
        .map_err(Failure::runtime)?
}

fn check_blocking(config: &Config) -> Result<(), Failure> {
    let mut report = Report { problems: 0 };
    report.ok(format!("configuration: {}", config.redacted_summary()));

    let source_partitions = check_source(config, &mut report);
    check_target(config, &source_partitions, &mut report);

    if report.problems == 0 {
        println!("check passed");
        Ok(())
    } else {
        Err(Failure {
            message: format!("check found {} problem(s)", report.problems),
            code: 1,
        })
    }
}

fn check_source(config: &Config, report: &mut Report) -> BTreeMap<String, usize> {
    let mut partitions = BTreeMap::new();
    let mut client = kafka::source_client(config);
    client.set_log_level(RDKafkaLogLevel::Warning);
    let consumer: BaseConsumer<LastError> = match client.create_with_context(LastError::default()) {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("source: cannot create a client: {e}"));
            return partitions;
        }
    };
    if let Err(e) = consumer.fetch_metadata(None, TIMEOUT) {
        drain_events(&consumer);
        report.problem(format!(
            "source: cannot reach {}: {}",
            config.source.bootstrap_servers,
            consumer.context().explain(e)
        ));
        return partitions;
    }
    report.ok(format!(
        "source: reached {}",
        config.source.bootstrap_servers
    ));
    // Reuse the relay's own topic resolution so check and run agree.
    match source::consumer(config).and_then(|c| source::partitions(&c, config)) {
        Ok(tps) => {
            for tp in &tps {
                *partitions.entry(tp.topic.clone()).or_insert(0) += 1;
            }
            for (topic, n) in &partitions {
                report.ok(format!("source: topic {topic} exists ({n} partitions)"));
            }
        }
        Err(e) => report.problem(format!("source: {e}")),
    }
    partitions
}

fn check_target(config: &Config, source_partitions: &BTreeMap<String, usize>, report: &mut Report) {
    let mut client = target_client(config);
    client.set_log_level(RDKafkaLogLevel::Warning);
    let consumer: BaseConsumer<LastError> = match client.create_with_context(LastError::default()) {
        Ok(c) => c,
        Err(e) => {
            report.problem(format!("target: cannot create a client: {e}"));
            return;
        }
    };
    let metadata = match consumer.fetch_metadata(None, TIMEOUT) {
        Ok(m) => m,
        Err(e) => {
            drain_events(&consumer);
            report.problem(format!(
                "target: cannot reach {}: {}",
                config.target.bootstrap_servers,
                consumer.context().explain(e)
            ));
            return;
        }
    };
    report.ok(format!(
        "target: reached {}",
        config.target.bootstrap_servers
    ));
    let existing: BTreeMap<&str, usize> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    let mut needed: BTreeMap<String, usize> = BTreeMap::new();
    for (topic, n) in source_partitions {
        let target = config.target_topic_for(topic);
        let entry = needed.entry(target).or_insert(0);
        *entry = (*entry).max(*n);
    }
    let create = config.target.create_topics;
    for (topic, n) in &needed {
        match existing.get(topic.as_str()) {
            None if create => report.ok(format!("target: topic {topic} does not exist yet; `run` creates it ({n} partitions, the source topic's configs)")),
            None => report.problem(format!("target: topic {topic} does not exist (create it with at least {n} partitions, or set target.create_topics = true)")),
            Some(have) if config.target.partitioning == Partitioning::Same && have < n && create => report.ok(format!(
                "target: topic {topic} has {have} partitions, the source {n}; `run` adds partitions up to {n}"
            )),
            Some(have) if config.target.partitioning == Partitioning::Same && have < n => report.problem(format!(
                "target: topic {topic} has {have} partitions but the source has {n}; partitioning = \"same\" needs at least as many"
            )),
            Some(have) => report.ok(format!("target: topic {topic} exists ({have} partitions)")),
        }
    }
    let checkpoint_topic = &config.target.checkpoint_topic;
    if existing.contains_key(checkpoint_topic.as_str()) {
        report.ok(format!(
            "target: checkpoint topic {checkpoint_topic} exists"
        ));
    } else {
        report.ok(format!(
            "target: checkpoint topic {checkpoint_topic} does not exist yet; `run` creates it (compacted)"
        ));
    }

    let probe_id = format!("{}.check", config.target.transactional_id);
    let producer: Result<BaseProducer<LastError>, _> = client
        .clone()
        .set("transactional.id", &probe_id)
        .create_with_context(LastError::default());
    match producer {
        Ok(p) => match p.init_transactions(TIMEOUT) {
            Ok(()) => report.ok(format!(
                "target: may run transactions (probed with transactional.id {probe_id})"
            )),
            Err(e) => {
                p.poll(Duration::from_millis(200));
                report.problem(format!(
                    "target: cannot initialise transactions (transactional.id {probe_id}): {}",
                    p.context().explain(e)
                ))
            }
        },
        Err(e) => report.problem(format!(
            "target: cannot create a transactional producer: {e}"
        )),
    }
}
