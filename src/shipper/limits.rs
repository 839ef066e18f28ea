//! What the target accepts per record: each target topic's
//! `max.message.bytes`, asked of the brokers (DescribeConfigs) once per topic.
//!
//! Invariant: the shipper dead-letters records above `min(record.max_bytes,
//! the topic's limit - RECORD_OVERHEAD)` before sending them, so a record
//! the broker would refuse never reaches a transaction: a refused record fails the whole
//! produce batch it travels in, which would make the innocent records beside
//! it indistinguishable from it.
//!
//! Called by the shipper on its blocking thread: [`Shipper::record_limits`]
//! once per transaction, whose answer `transaction` and `dead_letter` test
//! each record against ([`oversized`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;

use super::Shipper;
use crate::kafka;
use crate::record::{Batch, Record};
use crate::wal::WalPosition;

/// Bytes the record batch and record framing add to a record's key, value
/// and headers (v2 batch header 61 bytes, record framing up to ~25 bytes,
/// plus varints per header); rounded up generously.
pub const RECORD_OVERHEAD: u64 = 512;

/// How long an unanswered question is not asked again: each try can take
/// the full request timeout, on the shipper's thread.
const RETRY_AFTER: Duration = Duration::from_secs(600);

pub struct TopicLimits {
    client: ClientConfig,
    /// The answer, or when asking last failed.
    known: HashMap<String, Result<u64, Instant>>,
}

impl TopicLimits {
    pub fn new(client: ClientConfig) -> TopicLimits {
        TopicLimits {
            client,
            known: HashMap::new(),
        }
    }

    /// The largest key+value+headers size `topic` accepts, if the brokers
    /// say. `None` when it cannot be learned (no DescribeConfigs permission,
    /// broker unreachable, a cluster that does not serve the request): then
    /// only `record.max_bytes` applies, and the question is asked again
    /// after [`RETRY_AFTER`].
    pub fn max_payload(&mut self, topic: &str) -> Option<u64> {
        match self.known.get(topic) {
            Some(Ok(limit)) => return Some(*limit),
            Some(Err(failed)) if failed.elapsed() < RETRY_AFTER => return None,
            _ => {}
        }
        let found =
            describe(&self.client, topic).map(|limit| limit.saturating_sub(RECORD_OVERHEAD));
        match found {
            Some(limit) => {
                tracing::info!(topic, limit, "target topic accepts records up to this size");
                self.known.insert(topic.to_string(), Ok(limit));
            }
            None => {
                tracing::warn!(
                    topic,
                    "cannot learn the target topic's max.message.bytes; record.max_bytes alone guards record size"
                );
                self.known.insert(topic.to_string(), Err(Instant::now()));
            }
        }
        found
    }
}

/// The largest record (key + value + headers) that may be sent, per source
/// topic, and which limit set it; larger ones go to the dead-letter queue.
pub(super) type RecordLimits = BTreeMap<String, (u64, &'static str)>;

pub(super) fn oversized(limits: &RecordLimits, topic: &str, record: &Record) -> bool {
    limits
        .get(topic)
        .is_some_and(|(limit, _)| record.payload_len() as u64 > *limit)
}

impl Shipper {
    /// For each source topic in `batches`: the smaller of `record.max_bytes`
    /// and what the target topic accepts ([`TopicLimits::max_payload`]).
    pub(super) fn record_limits(&mut self, batches: &[(WalPosition, Batch)]) -> RecordLimits {
        let mut limits = RecordLimits::new();
        for (_, batch) in batches {
            if limits.contains_key(&batch.topic) {
                continue;
            }
            let own = (self.settings.record_max_bytes, "record.max_bytes");
            let target_topic = self.settings.target_topic(&batch.topic).to_string();
            let limit = match self.topic_limits.max_payload(&target_topic) {
                Some(topic) if topic < own.0 => {
                    (topic, "the target topic's max.message.bytes less framing")
                }
                _ => own,
            };
            limits.insert(batch.topic.clone(), limit);
        }
        limits
    }
}

/// The topic's `max.message.bytes`, if the target says (a short wait: the
/// shipper's thread asks).
fn describe(client: &ClientConfig, topic: &str) -> Option<u64> {
    kafka::Admin::with_timeout(client, Duration::from_secs(5))
        .ok()?
        .topic_config(topic, "max.message.bytes")
        .ok()??
        .parse()
        .ok()
}
