//! The target side of every measurement: one `read_committed` consumer,
//! independent of the contender, reading the target topic from its start.
//! A record counts when this consumer receives it, which is the moment it
//! is visible to any `read_committed` reader: the figure users care about.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::clients;
use crate::workload;

/// When records became visible on the target.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// Since `since` (the contender's launch).
    pub first: Duration,
    pub last: Duration,
    pub count: u64,
}

impl Arrival {
    /// Records per second between the first and the last arrival: the
    /// contender's sustained rate, without its start-up.
    pub fn steady_rate(&self) -> f64 {
        let span = (self.last - self.first).as_secs_f64();
        if span > 0.0 {
            (self.count.saturating_sub(1)) as f64 / span
        } else {
            0.0
        }
    }
}

/// Assigned to every partition, at the beginning or at the current end
/// (resolved here, not lazily at the first fetch, so no record written
/// after this returns can be skipped).
fn consumer(bootstrap: &str, topic: &str, partitions: i32, at_end: bool) -> BaseConsumer {
    let consumer: BaseConsumer = clients::client_config(bootstrap)
        .set("group.id", "kafka-relay-bench-observer")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("observer consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let from = if at_end {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
            Offset::Offset(high)
        } else {
            Offset::Beginning
        };
        tpl.add_partition_offset(topic, p, from)
            .expect("assign offset");
    }
    consumer.assign(&tpl).expect("assign target partitions");
    consumer
}

/// Blocks until `expected` records are on the target (or `limit` passes,
/// which panics with `context()`), reporting progress every 10 s. Times
/// count from `since`.
pub fn wait_for(
    since: Instant,
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: u64,
    limit: Duration,
    context: impl Fn() -> String,
) -> Arrival {
    let consumer = consumer(bootstrap, topic, partitions, false);
    let started = since;
    let mut first = None;
    let mut count = 0u64;
    let mut reported = Instant::now();
    while count < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                first.get_or_insert_with(|| started.elapsed());
                count += 1;
            }
            Some(Err(e)) => fails_unless_transient(topic, e),
            None => {}
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "[bench]   {count}/{expected} on the target after {:.0}s",
                started.elapsed().as_secs_f64()
            );
            reported = Instant::now();
        }
        assert!(
            started.elapsed() < limit,
            "only {count} of {expected} records reached {topic} within {limit:?}\n{}",
            context()
        );
    }
    Arrival {
        first: first.unwrap_or_default(),
        last: started.elapsed(),
        count,
    }
}

/// Panics on a consumer error, unless librdkafka reconnects and goes on by
/// itself after it (a dropped connection, a timed-out request): a broker
/// busy with thousands of partitions closed the observer's connection once.
fn fails_unless_transient(topic: &str, e: KafkaError) {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::OperationTimedOut,
        ) => eprintln!("[bench]   observer of {topic}: {e}; it reconnects"),
        _ => panic!("observer cannot read {topic}: {e}"),
    }
}

/// One record as the target's observer received it.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    pub partition: i32,
    /// When the observer received it, µs since the epoch.
    pub at: u64,
    /// When it was handed to the source producer (its stamp), µs since the epoch.
    pub sent: u64,
}

impl Seen {
    /// End-to-end latency, µs.
    pub fn latency(&self) -> u64 {
        self.at.saturating_sub(self.sent)
    }
}

/// Notes every record written to the target after [`Tape::start`]
/// returns, on a thread of its own.
pub struct Tape {
    expected: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<Vec<Seen>>,
}

impl Tape {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, limit: Duration) -> Tape {
        let consumer = consumer(bootstrap, topic, partitions, true);
        let expected = Arc::new(AtomicU64::new(u64::MAX));
        let wanted = expected.clone();
        let topic = topic.to_string();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut out = Vec::new();
            while (out.len() as u64) < wanted.load(Ordering::Relaxed) {
                if let Some(message) = consumer.poll(Duration::from_millis(50)) {
                    let message = match message {
                        Ok(message) => message,
                        Err(e) => {
                            fails_unless_transient(&topic, e);
                            continue;
                        }
                    };
                    let at = workload::now_micros();
                    if let Some(sent) = message.payload().and_then(workload::stamp_of) {
                        out.push(Seen {
                            partition: message.partition(),
                            at,
                            sent,
                        });
                    }
                }
                assert!(
                    started.elapsed() < limit,
                    "observer: only {} records reached {topic} within {limit:?}",
                    out.len()
                );
            }
            out
        });
        Tape { expected, handle }
    }

    /// Waits for `written` records in all; every one, in the order received.
    pub fn finish(self, written: u64) -> Vec<Seen> {
        self.expected.store(written, Ordering::Relaxed);
        self.handle.join().expect("target observer")
    }
}

/// The end-to-end latency (µs) of every record written after
/// [`Latencies::start`] returns.
pub struct Latencies(Tape);

impl Latencies {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, limit: Duration) -> Latencies {
        Latencies(Tape::start(bootstrap, topic, partitions, limit))
    }

    /// Waits for `written` records in all; their latencies, sorted.
    pub fn finish(self, written: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self.0.finish(written).iter().map(Seen::latency).collect();
        out.sort_unstable();
        out
    }
}
