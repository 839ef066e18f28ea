//! Checkpoints: the target cluster's record of what has been delivered.
//!
//! Every target transaction the shipper commits carries, next to the relayed
//! records, one checkpoint record per source topic-partition it touched, in a
//! compacted topic on the target (`target.checkpoint_topic`). Because the
//! checkpoint and the records commit or abort together, a checkpoint read
//! with `read_committed` is exactly the delivered prefix of that partition.
//!
//! Record format (JSON, so an operator can read it with any console consumer):
//! - key:   `{"relay":"<relay_id>","topic":"<source topic>","partition":<n>}`
//! - value: `{"version":1,"next_offset":<next source offset to deliver>,"wal_position":<pos>}`
//!
//! The same topic holds the relay's replay markers (`dlq`) and its source
//! gaps (`gap`), each with a key of its own shape.
//!
//! Invariant: checkpoints are the authority on delivery. The WAL and the
//! source's committed offsets are never trusted over them.
//!
//! Called by the shipper (encode, read back after a rebuild) and the pipeline
//! (read back on start).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::gap::{self, Gap};
use crate::kafka;
use crate::record::TopicPartition;

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot create a client for the target cluster: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot create topic {topic} on the target: {source}")]
    CreateTopic {
        topic: String,
        #[source]
        source: Box<kafka::AdminRequestError>,
    },
    #[error("topic {topic} on the target could not be read: {source}")]
    Read {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading checkpoint topic {topic} did not reach its end within {secs}s: a transaction of another producer is open on it (does another relay share this checkpoint topic? each relay needs its own)")]
    Timeout { topic: String, secs: u64 },
}

impl CheckpointError {
    /// True when the target was out of reach (down, restarting, a connection
    /// lost, a request timed out), so the same call may succeed later. An
    /// answer the target gave for good (authorisation, a refused topic), or a
    /// transaction of another producer holding the topic, is not.
    pub fn is_transient(&self) -> bool {
        match self {
            CheckpointError::CreateTopic { source, .. } => {
                source.code().is_some_and(kafka::unreachable)
            }
            CheckpointError::Read { source, .. } => {
                kafka::code(source).is_some_and(kafka::unreachable)
            }
            CheckpointError::Client(_) | CheckpointError::Timeout { .. } => false,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Key<'a> {
    relay: &'a str,
    topic: &'a str,
    partition: i32,
}

/// Marks a dead letter as replayed, in the same transaction as the replayed
/// record, so a replay interrupted after its commit is not repeated.
#[derive(Serialize, Deserialize)]
struct ReplayKey<'a> {
    relay: &'a str,
    replayed: &'a str,
}

/// What the checkpoint topic holds for one relay.
#[derive(Debug, Default, Clone)]
pub struct Committed {
    pub checkpoints: BTreeMap<TopicPartition, Checkpoint>,
    /// Ids (`topic/partition/offset`) of dead letters already replayed.
    pub replayed: BTreeSet<String>,
    /// Source ranges the relay recorded as never copyable (`gap`).
    pub gaps: Vec<Gap>,
}

/// Delivered progress of one source topic-partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The first source offset not yet delivered.
    pub next_offset: i64,
    /// WAL position of the batch that carried it (for operators; not trusted on recovery).
    pub wal_position: u64,
}

/// The next offset of each checkpoint: the delivered progress as the WAL
/// keeps a copy of it (see `wal`).
pub fn next_offsets(
    checkpoints: &BTreeMap<TopicPartition, Checkpoint>,
) -> BTreeMap<TopicPartition, i64> {
    checkpoints
        .iter()
        .map(|(tp, c)| (tp.clone(), c.next_offset))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct Value {
    version: u32,
    #[serde(flatten)]
    checkpoint: Checkpoint,
}

pub fn encode_key(relay_id: &str, tp: &TopicPartition) -> Vec<u8> {
    serde_json::to_vec(&Key {
        relay: relay_id,
        topic: &tp.topic,
        partition: tp.partition,
    })
    .unwrap_or_default()
}

pub fn encode_value(checkpoint: Checkpoint) -> Vec<u8> {
    serde_json::to_vec(&Value {
        version: VERSION,
        checkpoint,
    })
    .unwrap_or_default()
}

pub fn encode_replay_key(relay_id: &str, dead_letter_id: &str) -> Vec<u8> {
    serde_json::to_vec(&ReplayKey {
        relay: relay_id,
        replayed: dead_letter_id,
    })
    .unwrap_or_default()
}

pub fn encode_replay_value() -> Vec<u8> {
    format!("{{\"version\":{VERSION}}}").into_bytes()
}

/// Decodes a replay marker of `relay_id`.
fn decode_replay(relay_id: &str, key: &[u8], value: Option<&[u8]>) -> Option<String> {
    let key: ReplayKey = serde_json::from_slice(key).ok()?;
    (key.relay == relay_id && value.is_some()).then(|| key.replayed.to_string())
}

/// Decodes a checkpoint of `relay_id`; `None` for other relays' records,
/// tombstones and records this version does not understand.
pub fn decode(
    relay_id: &str,
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<(TopicPartition, Checkpoint)> {
    let tp = decode_key(relay_id, key)?;
    let value: Value = serde_json::from_slice(value?).ok()?;
    (value.version == VERSION).then_some((tp, value.checkpoint))
}

/// The partition a key of [`encode_key`]'s shape names, if it is
/// `relay_id`'s. Also the offset map's key (`offsets`).
pub fn decode_key(relay_id: &str, key: &[u8]) -> Option<TopicPartition> {
    let key: Key = serde_json::from_slice(key).ok()?;
    (key.relay == relay_id).then(|| TopicPartition::new(key.topic, key.partition))
}

/// Creates the compacted checkpoint topic unless it exists (blocking). The
/// existence check comes first so a relay without CREATE permission works
/// with a topic an operator made.
pub fn ensure_topic(client: &ClientConfig, topic: &str) -> Result<(), CheckpointError> {
    let configs = [
        ("cleanup.policy", "compact"),
        ("min.compaction.lag.ms", "60000"),
    ];
    ensure_topic_with(client, topic, "checkpoint", &configs)
}

/// Creates `topic` with one partition and `configs` unless it exists; `what`
/// names it in the log. Also the offset map's (`offsets`).
pub fn ensure_topic_with(
    client: &ClientConfig,
    topic: &str,
    what: &str,
    configs: &[(&str, &str)],
) -> Result<(), CheckpointError> {
    let create_err = |source| CheckpointError::CreateTopic {
        topic: topic.to_string(),
        source: Box::new(source),
    };
    let admin = kafka::Admin::new(client).map_err(create_err)?;
    if admin.topic_exists(topic).map_err(create_err)? {
        return Ok(());
    }
    let configs = configs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match admin.create_topic(topic, 1, &configs) {
        Ok(()) => tracing::info!(topic, what, "created a topic of the relay's on the target"),
        // Another incarnation, or an operator, was first.
        Err(e) if e.code() == Some(RDKafkaErrorCode::TopicAlreadyExists) => {}
        Err(e) => return Err(create_err(e)),
    }
    Ok(())
}

/// The checkpoint reader asks for end-of-partition events to know when it is
/// done; the default context would log each of them as an error.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!(%error, reason, "checkpoint reader error");
        }
    }
}

impl ConsumerContext for QuietEof {}

/// Reads every committed checkpoint of `relay_id` (blocking).
///
/// Must run after the relay's producer has called `init_transactions`: that
/// aborts a transaction a previous incarnation left open, which would
/// otherwise hold the last stable offset back and stall this read.
pub fn read_committed(
    client: &ClientConfig,
    topic: &str,
    relay_id: &str,
    limit: Duration,
) -> Result<Committed, CheckpointError> {
    let mut committed = Committed::default();
    let reader = format!("kafka-relay-checkpoint-reader-{relay_id}");
    read_to_end(client, topic, &reader, limit, |key, value| {
        if let Some((tp, cp)) = decode(relay_id, key, value) {
            committed.checkpoints.insert(tp, cp);
        } else if let Some(id) = decode_replay(relay_id, key, value) {
            committed.replayed.insert(id);
        } else if let Some(gap) = gap::decode_from_target(relay_id, key, value) {
            committed.gaps.push(gap);
        }
    })?;
    // A gap shipped twice (a crash before the store noted it) is one gap.
    committed.gaps.sort();
    committed
        .gaps
        .dedup_by(|a, b| a.tp == b.tp && a.from == b.from);
    Ok(committed)
}

/// Reads what producers committed to `topic` (blocking), from its
/// beginning to its high watermarks of the start, handing each record's
/// key and value to `each` in order. `reader` names the consumer's group
/// (nothing is committed). The checkpoint reader, and the offset map's
/// (`offsets`), which has the same needs: see the comments inside.
pub fn read_to_end(
    client: &ClientConfig,
    topic: &str,
    reader: &str,
    limit: Duration,
    mut each: impl FnMut(&[u8], Option<&[u8]>),
) -> Result<(), CheckpointError> {
    let read_err = |source| CheckpointError::Read {
        topic: topic.to_string(),
        source,
    };
    let consumer: BaseConsumer<QuietEof> = client
        .clone()
        .set("group.id", reader)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // Ends of partition come a fetch wait after the last record.
        .set("fetch.wait.max.ms", "100")
        .set("isolation.level", "read_committed")
        .create_with_context(QuietEof)
        .map_err(CheckpointError::Client)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), limit)
        .map_err(read_err)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(read_err)?;
    }
    consumer.assign(&assignment).map_err(read_err)?;

    let deadline = Instant::now() + limit;
    // Everything this relay's transactional.id committed is below the high
    // watermarks of now: `init_transactions` ended its earlier transactions.
    // For a read_committed reader the end of a partition is the last
    // stable offset, which any producer's open transaction holds back, so
    // "done" is: at EOF *and* at least at those watermarks. Not at the
    // watermarks of later: the other units of a scaled-out relay (`scale`)
    // keep transactions open on this topic, so those would never be
    // caught up with.
    let marks = high_watermarks(&consumer, topic, &partitions)?;
    // Done once the position passes the marks, whether or not an end of
    // partition was reported: under the other units' steady commits the
    // reader seldom sees one (it comes only after a quiet fetch wait).
    // After a partition's last record (a commit marker) only the end of
    // partition moves the position past it, and that end comes, as
    // nothing more is written there.
    while !caught_up(&consumer, topic, &marks)? {
        if Instant::now() > deadline {
            return Err(CheckpointError::Timeout {
                topic: topic.to_string(),
                secs: limit.as_secs(),
            });
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => each(m.key().unwrap_or_default(), m.payload()),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(read_err(e)),
        }
    }
    Ok(())
}

/// The high watermark of each partition of `topic`.
fn high_watermarks(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<(i32, i64)>, CheckpointError> {
    partitions
        .iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .map(|(_, high)| (*p, high))
                .map_err(|source| CheckpointError::Read {
                    topic: topic.to_string(),
                    source,
                })
        })
        .collect()
}

/// True when the reader's position is at or past `marks` in every
/// partition.
fn caught_up(
    consumer: &BaseConsumer<QuietEof>,
    topic: &str,
    marks: &[(i32, i64)],
) -> Result<bool, CheckpointError> {
    let positions = consumer
        .position()
        .map_err(|source| CheckpointError::Read {
            topic: topic.to_string(),
            source,
        })?;
    for (p, mark) in marks {
        let position = match positions.find_partition(topic, *p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            // Nothing consumed yet: only an empty partition is caught up.
            _ => 0,
        };
        if position < *mark {
            tracing::debug!(
                topic,
                partition = p,
                position,
                mark,
                "checkpoint reader behind the high watermark of its start"
            );
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_target_makes_a_checkpoint_error_worth_retrying() {
        let read = |code| CheckpointError::Read {
            topic: "cp".into(),
            source: KafkaError::MetadataFetch(code),
        };
        assert!(read(RDKafkaErrorCode::BrokerTransportFailure).is_transient());
        assert!(read(RDKafkaErrorCode::OperationTimedOut).is_transient());
        assert!(!read(RDKafkaErrorCode::TopicAuthorizationFailed).is_transient());
        let refused = CheckpointError::CreateTopic {
            topic: "cp".into(),
            source: Box::new(kafka::AdminRequestError::Refused {
                call: "CreateTopics of topic cp".into(),
                code: RDKafkaErrorCode::PolicyViolation,
            }),
        };
        assert!(!refused.is_transient());
        let held = CheckpointError::Timeout {
            topic: "cp".into(),
            secs: 120,
        };
        assert!(!held.is_transient());
    }

    #[test]
    fn checkpoint_round_trips_for_its_relay_only() {
        let tp = TopicPartition::new("orders", 3);
        let cp = Checkpoint {
            next_offset: 42,
            wal_position: 7,
        };
        let key = encode_key("a", &tp);
        let value = encode_value(cp);
        assert_eq!(decode("a", &key, Some(&value)), Some((tp, cp)));
        assert_eq!(
            decode("b", &key, Some(&value)),
            None,
            "another relay's checkpoint"
        );
        assert_eq!(decode("a", &key, None), None, "tombstone");
        assert_eq!(decode("a", b"garbage", Some(&value)), None);
        let marker = encode_replay_key("a", "orders/3/42");
        assert_eq!(
            decode("a", &marker, Some(&encode_replay_value())),
            None,
            "a marker is not a checkpoint"
        );
        assert_eq!(
            decode_replay("a", &marker, Some(&encode_replay_value())),
            Some("orders/3/42".to_string())
        );
        assert_eq!(
            decode_replay("b", &marker, Some(&encode_replay_value())),
            None
        );
        assert_eq!(
            decode_replay("a", &key, Some(&value)),
            None,
            "a checkpoint is not a marker"
        );
    }
}
