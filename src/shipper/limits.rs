//! What the target accepts per record: each target topic's
//! `max.message.bytes`, asked of the brokers (DescribeConfigs) once per topic.
//!
//! The shipper dead-letters records above `min(record.max_bytes, the topic's
//! limit - RECORD_OVERHEAD)` before sending them, so a record the broker
//! would refuse never reaches a transaction: a refused record fails the whole
//! produce batch it travels in, which would make the innocent records beside
//! it indistinguishable from it.
//!
//! Called by the shipper on its blocking thread.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

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

fn describe(client: &ClientConfig, topic: &str) -> Option<u64> {
    let admin: AdminClient<DefaultClientContext> = client.create().ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let results = runtime
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .ok()?;
    let resource = results.into_iter().next()?.ok()?;
    resource
        .get("max.message.bytes")?
        .value
        .as_deref()?
        .parse()
        .ok()
}
