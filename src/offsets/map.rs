//! The offset map: the target offset every copied source record got, as
//! the target committed it.
//!
//! Each target transaction that moves a partition's checkpoint also writes,
//! to `offsets.map_topic`, one entry (or several, [`CHUNK_RUNS`] runs
//! each) for that partition: the source range the transaction covered and
//! the runs of records it copied, with their target offsets from the
//! producer's delivery reports. Entries commit or abort with the records
//! they describe, so a `read_committed` reader of the map sees exactly the
//! records the target holds.
//!
//! Record format (JSON, like the checkpoints):
//! - key:   the checkpoint key, `{"relay":"<relay_id>","topic":"<source topic>","partition":<n>}`
//! - value: `{"version":1,"from":<first source offset covered, or null>,"next":<first offset after>,"runs":[[<source offset>,<target offset>,<count>],..]}`
//!
//! Invariants: an entry covers the source offsets `from..next`; every
//! record of that range on the target is in one of its runs, in order, and
//! an offset of the range in no run has no record on the target (a
//! compaction gap, a transaction marker, an aborted record, a dead
//! letter). `from` is null only for a partition's first entry ever, which
//! covers everything before it. A partition's entries follow each other in
//! source order, without overlap; offsets between two entries were not
//! copied (a recorded gap). The topic is bounded by delete retention
//! (`offsets.map_retention_ms`, `map_retention_bytes`): only the first
//! entry still held tells how far back the map reaches.
//!
//! Written by the shipper (`transaction`); read by `translate`.

use std::collections::BTreeMap;

use rdkafka::config::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointError};
use crate::config::OffsetsConfig;
use crate::record::TopicPartition;

const VERSION: u32 = 1;

/// At most this many runs per entry: an entry stays far below any
/// broker's `max.message.bytes` whatever the source's gaps.
pub const CHUNK_RUNS: usize = 1000;

/// `count` records with consecutive source offsets from `source` that got
/// consecutive target offsets from `target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub source: i64,
    pub target: i64,
    pub count: i64,
}

impl Run {
    /// The source offset after the run's last record.
    pub fn source_end(&self) -> i64 {
        self.source + self.count
    }

    /// The target offset after the run's last record.
    pub fn target_end(&self) -> i64 {
        self.target + self.count
    }
}

/// One entry of the map: see the module's invariants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub from: Option<i64>,
    pub next: i64,
    #[serde(with = "runs_as_triples")]
    pub runs: Vec<Run>,
}

#[derive(Serialize, Deserialize)]
struct Value {
    version: u32,
    #[serde(flatten)]
    entry: Entry,
}

/// Runs are written as `[source, target, count]`: a third of the bytes of
/// named fields, in a record written per partition per transaction.
mod runs_as_triples {
    use super::Run;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(runs: &[Run], s: S) -> Result<S::Ok, S::Error> {
        let triples: Vec<[i64; 3]> = runs.iter().map(|r| [r.source, r.target, r.count]).collect();
        triples.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Run>, D::Error> {
        let triples = Vec::<[i64; 3]>::deserialize(d)?;
        Ok(triples
            .into_iter()
            .map(|[source, target, count]| Run {
                source,
                target,
                count,
            })
            .collect())
    }
}

pub fn encode_value(entry: &Entry) -> Vec<u8> {
    serde_json::to_vec(&Value {
        version: VERSION,
        entry: entry.clone(),
    })
    .unwrap_or_default()
}

/// Decodes an entry of `relay_id`; `None` for other relays' records and
/// versions this one does not understand.
pub fn decode(relay_id: &str, key: &[u8], value: Option<&[u8]>) -> Option<(TopicPartition, Entry)> {
    let tp = checkpoint::decode_key(relay_id, key)?;
    let value: Value = serde_json::from_slice(value?).ok()?;
    (value.version == VERSION).then_some((tp, value.entry))
}

/// Collects one transaction's runs per partition, record by record in the
/// order they were sent.
#[derive(Debug, Default)]
pub struct RunsBuilder {
    runs: BTreeMap<TopicPartition, Vec<Run>>,
}

impl RunsBuilder {
    pub fn add(&mut self, tp: &TopicPartition, source: i64, target: i64) {
        if let Some(runs) = self.runs.get_mut(tp) {
            if let Some(last) = runs.last_mut() {
                if last.source_end() == source && last.target_end() == target {
                    last.count += 1;
                    return;
                }
            }
            runs.push(Run {
                source,
                target,
                count: 1,
            });
        } else {
            self.runs.insert(
                tp.clone(),
                vec![Run {
                    source,
                    target,
                    count: 1,
                }],
            );
        }
    }

    /// The entries for a partition whose range `from..next` the
    /// transaction covered: one per [`CHUNK_RUNS`] runs, at least one.
    pub fn entries(&mut self, tp: &TopicPartition, from: Option<i64>, next: i64) -> Vec<Entry> {
        let runs = self.runs.remove(tp).unwrap_or_default();
        let mut entries = Vec::new();
        let mut from = from;
        let mut chunks = runs.chunks(CHUNK_RUNS).peekable();
        while let Some(chunk) = chunks.next() {
            let end = match (chunks.peek(), chunk.last()) {
                (Some(_), Some(last)) => last.source_end(),
                _ => next,
            };
            entries.push(Entry {
                from,
                next: end,
                runs: chunk.to_vec(),
            });
            from = Some(end);
        }
        if entries.is_empty() {
            entries.push(Entry {
                from,
                next,
                runs: Vec::new(),
            });
        }
        entries
    }
}

/// Creates the map topic unless it exists: one partition (a reader reads
/// it whole, in order), delete retention as configured.
pub fn ensure_topic(client: &ClientConfig, config: &OffsetsConfig) -> Result<(), CheckpointError> {
    let retention_ms = config.map_retention_ms.to_string();
    let retention_bytes = config.map_retention_bytes.to_string();
    checkpoint::ensure_topic_with(
        client,
        &config.map_topic,
        "offset map",
        &[
            ("cleanup.policy", "delete"),
            ("retention.ms", &retention_ms),
            ("retention.bytes", &retention_bytes),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("orders".to_string(), 2)
    }

    #[test]
    fn consecutive_records_on_both_sides_make_one_run_and_a_gap_on_either_side_starts_another() {
        let mut b = RunsBuilder::default();
        for (s, t) in [(10, 100), (11, 101), (12, 102), (14, 103), (15, 105)] {
            b.add(&tp(), s, t);
        }
        let entries = b.entries(&tp(), Some(9), 17);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].from, Some(9));
        assert_eq!(entries[0].next, 17);
        let triples: Vec<(i64, i64, i64)> = entries[0]
            .runs
            .iter()
            .map(|r| (r.source, r.target, r.count))
            .collect();
        assert_eq!(triples, vec![(10, 100, 3), (14, 103, 1), (15, 105, 1)]);
    }

    #[test]
    fn many_runs_split_into_entries_that_cover_the_range_without_overlap() {
        let mut b = RunsBuilder::default();
        let n = CHUNK_RUNS as i64 * 2 + 5;
        for i in 0..n {
            b.add(&tp(), i * 2, i);
        }
        let entries = b.entries(&tp(), None, n * 2 + 7);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].from, None);
        for pair in entries.windows(2) {
            assert_eq!(Some(pair[0].next), pair[1].from);
            assert!(pair[0].runs.last().map(Run::source_end) <= Some(pair[0].next));
        }
        assert_eq!(entries[2].next, n * 2 + 7);
        let total: usize = entries.iter().map(|e| e.runs.len()).sum();
        assert_eq!(total, n as usize);
    }

    #[test]
    fn a_transaction_that_copied_nothing_of_a_partition_still_records_its_range() {
        let mut b = RunsBuilder::default();
        let entries = b.entries(&tp(), Some(40), 45);
        assert_eq!(
            entries,
            vec![Entry {
                from: Some(40),
                next: 45,
                runs: vec![]
            }]
        );
    }

    #[test]
    fn entries_round_trip_for_their_relay_only() {
        let entry = Entry {
            from: Some(3),
            next: 9,
            runs: vec![Run {
                source: 4,
                target: 70,
                count: 5,
            }],
        };
        let key = checkpoint::encode_key("relay-a", &tp());
        let value = encode_value(&entry);
        assert_eq!(
            String::from_utf8_lossy(&value),
            r#"{"version":1,"from":3,"next":9,"runs":[[4,70,5]]}"#
        );
        assert_eq!(decode("relay-a", &key, Some(&value)), Some((tp(), entry)));
        assert_eq!(decode("relay-b", &key, Some(&value)), None);
        assert_eq!(decode("relay-a", &key, None), None);
    }
}
