//! The unit of data that flows through the relay: one source record, and a
//! batch of consecutive records from one source topic-partition.
//!
//! Owned by nobody in particular: the source builds batches, the WAL stores
//! them (bincode-encoded), the shipper turns them into target records.
//!
//! Invariant kept by the source: inside a [`Batch`], offsets are strictly
//! increasing and all records come from `topic`/`partition`.

use bincode::{Decode, Encode};

/// One record header, copied byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Header {
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// One source record with its source offset.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the epoch, as the source broker reported it.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes of user data (key, value, headers); used for batch and WAL limits.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.as_ref().map_or(0, Vec::len))
                .sum::<usize>()
    }
}

/// Consecutive records of one source topic-partition, in offset order.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Batch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<Record>,
}

impl Batch {
    /// The source offset to read after this batch; `None` for an empty batch.
    pub fn next_offset(&self) -> Option<i64> {
        self.records.last().map(|r| r.offset + 1)
    }

    pub fn payload_len(&self) -> usize {
        self.records.iter().map(Record::payload_len).sum()
    }
}

/// A source topic-partition, used as a map key throughout.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}
