//! The unit of data that flows through the relay: one source record, and a
//! batch of consecutive records from one source topic-partition.
//!
//! Owned by nobody in particular: the source builds batches, the WAL stores
//! them (bincode-encoded), the shipper turns them into target records.
//!
//! Invariant kept by the source: inside a [`Batch`], offsets are strictly
//! increasing and all records come from `topic`/`partition`.
//!
//! [`RecordRef`] is a [`Record`] over borrowed bytes, for the source to frame
//! a consumed message without copying it into a `Record` first. Invariant:
//! a `RecordRef` encodes (bincode) byte for byte as the `Record` it views;
//! both derive their encoding from the same fields in the same order, and
//! `tests::a_record_ref_encodes_as_its_record` checks it.

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

/// A [`Header`] over borrowed bytes.
#[derive(Debug, Clone, Copy, Encode)]
pub struct HeaderRef<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// A [`Record`] over borrowed bytes (a consumed message's, for one).
#[derive(Debug, Clone, Encode)]
pub struct RecordRef<'a> {
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<HeaderRef<'a>>,
}

impl RecordRef<'_> {
    /// The owned record, bytes copied.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }

    /// As [`Record::payload_len`].
    pub fn payload_len(&self) -> usize {
        self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
    }
}

impl<'a> From<&'a Record> for RecordRef<'a> {
    fn from(r: &'a Record) -> Self {
        RecordRef {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: r
                .headers
                .iter()
                .map(|h| HeaderRef {
                    key: &h.key,
                    value: h.value.as_deref(),
                })
                .collect(),
        }
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
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_ref_encodes_as_its_record() {
        let config = bincode::config::standard();
        let records = [
            Record {
                offset: -1,
                timestamp: None,
                key: None,
                value: None,
                headers: vec![],
            },
            Record {
                offset: i64::MAX,
                timestamp: Some(1_700_000_000_000),
                key: Some(b"k".to_vec()),
                value: Some(vec![7; 300]),
                headers: vec![
                    Header {
                        key: "h".into(),
                        value: None,
                    },
                    Header {
                        key: "\u{e9}".into(),
                        value: Some(vec![]),
                    },
                ],
            },
        ];
        for record in &records {
            let view = RecordRef::from(record);
            assert_eq!(view.payload_len(), record.payload_len());
            assert_eq!(&view.to_record(), record);
            assert_eq!(
                bincode::encode_to_vec(&view, config).expect("encode view"),
                bincode::encode_to_vec(record, config).expect("encode record"),
                "{record:?}"
            );
        }
    }
}
