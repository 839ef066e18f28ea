//! Source gaps: ranges of a source partition the relay can never copy,
//! because the source deleted them before the relay read them.
//!
//! A gap is found by the source (`source::gaps`): a partition's next offset
//! to read is below the source's log start (retention, `DeleteRecords`), or
//! the partition is gone (topic deleted, fewer partitions). What happens
//! then is `source.on_gap`: `fail` stops the relay with the range; `skip`
//! records the gap here, durably, and reads on from what the source still
//! has.
//!
//! Where a gap is kept, and why:
//! - In the tree `gaps` of the WAL's sled database, fsync'd *before* the
//!   source reads past it, so no record after the gap reaches the WAL (and
//!   so the target) before the gap is on disk:
//!
//!   ```text
//!   key:   source topic bytes | 0x00 | partition (i32 BE) | from (i64 BE)
//!   value: JSON {"version":1,"to":<offset or null>,"cause":"...","detected_ms":<ms>,"shipped":<bool>}
//!   ```
//! - On the target, in the relay's checkpoint topic, committed in a
//!   transaction of its own *before* the transaction whose checkpoint moves
//!   past it (the shipper looks for unshipped gaps after reading the WAL
//!   batches it is about to send). So a reader of the checkpoints (recovery,
//!   `verify`, `status` after the WAL is lost) knows every gap the
//!   checkpoint has moved past:
//!
//!   ```text
//!   key:   {"relay":"<relay_id>","gap":{"topic":"<t>","partition":<p>,"from":<offset>}}
//!   value: {"version":1,"to":<offset or null>,"cause":"...","detected_ms":<ms>}
//!   ```
//!
//! Keys are the gap's coordinates: recording or shipping the same gap
//! again (after a crash) overwrites it, never doubles it.
//!
//! Written by the source, shipped by the shipper, read by `checkpoint`
//! (recovery), `status` and `verify`.

use serde::{Deserialize, Serialize};

use crate::record::TopicPartition;
use crate::wal::{Wal, WalError};

const TREE: &str = "gaps";
const VERSION: u32 = 1;

/// Why the relay could not copy a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapCause {
    /// The source's log start moved past the relay's position: retention
    /// (`retention.ms` / `retention.bytes`) or `DeleteRecords`.
    DeletedAtSource,
    /// The partition is no longer on the source: its topic was deleted, or
    /// recreated with fewer partitions.
    PartitionGone,
}

impl GapCause {
    pub fn label(self) -> &'static str {
        match self {
            GapCause::DeletedAtSource => "deleted_at_source",
            GapCause::PartitionGone => "partition_gone",
        }
    }
}

/// `[from, to)` of one source partition, never copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gap {
    pub tp: TopicPartition,
    pub from: i64,
    /// `None` when the end is unknown (the partition is gone).
    pub to: Option<i64>,
    pub cause: GapCause,
    /// Milliseconds since the epoch.
    pub detected_ms: i64,
}

impl Gap {
    /// Offsets in the gap. An upper bound on the records lost: the offsets
    /// of transaction markers and of records compacted away count too, and
    /// what the source deleted cannot be looked at any more.
    pub fn offsets(&self) -> Option<u64> {
        self.to.map(|to| to.saturating_sub(self.from).max(0) as u64)
    }

    /// Offsets of the gap within `[from, to)`.
    pub fn offsets_within(&self, from: i64, to: i64) -> u64 {
        let end = self.to.unwrap_or(i64::MAX).min(to);
        end.saturating_sub(self.from.max(from)).max(0) as u64
    }
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to {
            Some(to) => write!(
                f,
                "{} offsets [{}, {}) ({} offsets, {})",
                self.tp,
                self.from,
                to,
                to - self.from,
                self.cause.label()
            ),
            None => write!(
                f,
                "{} from offset {} on ({})",
                self.tp,
                self.from,
                self.cause.label()
            ),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct KeyOnTarget<'a> {
    relay: &'a str,
    gap: GapKey<'a>,
}

#[derive(Serialize, Deserialize)]
struct GapKey<'a> {
    topic: &'a str,
    partition: i32,
    from: i64,
}

#[derive(Serialize, Deserialize)]
struct Value {
    version: u32,
    to: Option<i64>,
    cause: GapCause,
    detected_ms: i64,
    /// Only in the local store: committed to the checkpoint topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shipped: Option<bool>,
}

impl Value {
    fn of(gap: &Gap, shipped: Option<bool>) -> Value {
        Value {
            version: VERSION,
            to: gap.to,
            cause: gap.cause,
            detected_ms: gap.detected_ms,
            shipped,
        }
    }
}

/// The gap's record in the checkpoint topic: (key, value).
pub fn encode_for_target(relay_id: &str, gap: &Gap) -> (Vec<u8>, Vec<u8>) {
    let key = KeyOnTarget {
        relay: relay_id,
        gap: GapKey {
            topic: &gap.tp.topic,
            partition: gap.tp.partition,
            from: gap.from,
        },
    };
    (
        serde_json::to_vec(&key).unwrap_or_default(),
        serde_json::to_vec(&Value::of(gap, None)).unwrap_or_default(),
    )
}

/// A gap record of `relay_id` read from the checkpoint topic; `None` for
/// anything else (checkpoints, other relays, versions this build does not know).
pub fn decode_from_target(relay_id: &str, key: &[u8], value: Option<&[u8]>) -> Option<Gap> {
    let key: KeyOnTarget = serde_json::from_slice(key).ok()?;
    if key.relay != relay_id {
        return None;
    }
    let value: Value = serde_json::from_slice(value?).ok()?;
    (value.version == VERSION).then(|| Gap {
        tp: TopicPartition::new(key.gap.topic, key.gap.partition),
        from: key.gap.from,
        to: value.to,
        cause: value.cause,
        detected_ms: value.detected_ms,
    })
}

fn local_key(tp: &TopicPartition, from: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(tp.topic.len() + 13);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k.extend_from_slice(&from.to_be_bytes());
    k
}

fn decode_local(key: &[u8], value: &[u8]) -> Result<(Gap, bool), String> {
    let split = key
        .iter()
        .position(|b| *b == 0)
        .ok_or("gap key without a topic separator")?;
    let (topic, rest) = key.split_at(split);
    let rest = &rest[1..];
    if rest.len() != 12 {
        return Err(format!(
            "gap key has {} bytes after the topic, not 12",
            rest.len()
        ));
    }
    let partition = i32::from_be_bytes(rest[..4].try_into().map_err(|_| "partition")?);
    let from = i64::from_be_bytes(rest[4..].try_into().map_err(|_| "offset")?);
    let topic = String::from_utf8(topic.to_vec()).map_err(|e| e.to_string())?;
    let value: Value = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    if value.version != VERSION {
        return Err(format!("unknown gap record version {}", value.version));
    }
    Ok((
        Gap {
            tp: TopicPartition::new(topic, partition),
            from,
            to: value.to,
            cause: value.cause,
            detected_ms: value.detected_ms,
        },
        value.shipped.unwrap_or(false),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum GapError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("gap store in the WAL: {0}")]
    Storage(#[from] sled::Error),
    #[error("gap store entry is unreadable: {0}")]
    Corrupted(String),
}

/// The gaps this relay recorded, in the WAL's database.
#[derive(Clone)]
pub struct Gaps {
    wal: Wal,
    tree: sled::Tree,
}

impl Gaps {
    pub fn open(wal: &Wal) -> Result<Gaps, GapError> {
        Ok(Gaps {
            tree: wal.side_tree(TREE)?,
            wal: wal.clone(),
        })
    }

    /// Stores `gap` durably (fsync'd) as not yet on the target.
    pub fn record(&self, gap: &Gap) -> Result<(), GapError> {
        let value = serde_json::to_vec(&Value::of(gap, Some(false)))
            .map_err(|e| GapError::Corrupted(e.to_string()))?;
        self.tree.insert(local_key(&gap.tp, gap.from), value)?;
        self.wal.sync()?;
        Ok(())
    }

    /// The gap of `tp` starting at `from`, if one is recorded.
    pub fn get(&self, tp: &TopicPartition, from: i64) -> Result<Option<Gap>, GapError> {
        match self.tree.get(local_key(tp, from))? {
            Some(v) => decode_local(&local_key(tp, from), &v)
                .map(|(g, _)| Some(g))
                .map_err(GapError::Corrupted),
            None => Ok(None),
        }
    }

    /// Notes that these gaps are committed to the checkpoint topic.
    pub fn mark_shipped(&self, gaps: &[Gap]) -> Result<(), GapError> {
        for gap in gaps {
            let value = serde_json::to_vec(&Value::of(gap, Some(true)))
                .map_err(|e| GapError::Corrupted(e.to_string()))?;
            self.tree.insert(local_key(&gap.tp, gap.from), value)?;
        }
        Ok(())
    }

    /// Every gap, with whether it is on the target yet, in key order.
    pub fn all(&self) -> Result<Vec<(Gap, bool)>, GapError> {
        self.tree
            .iter()
            .map(|entry| {
                let (k, v) = entry?;
                decode_local(&k, &v).map_err(GapError::Corrupted)
            })
            .collect()
    }

    /// The gaps not yet committed to the checkpoint topic.
    pub fn unshipped(&self) -> Result<Vec<Gap>, GapError> {
        if self.tree.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, shipped)| !shipped)
            .map(|(g, _)| g)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(from: i64, to: Option<i64>) -> Gap {
        Gap {
            tp: TopicPartition::new("orders", 3),
            from,
            to,
            cause: GapCause::DeletedAtSource,
            detected_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_gap_round_trips_through_its_checkpoint_topic_record() {
        let g = gap(10, Some(250));
        let (key, value) = encode_for_target("r1", &g);
        assert_eq!(
            decode_from_target("r1", &key, Some(&value)),
            Some(g.clone())
        );
        assert_eq!(decode_from_target("r2", &key, Some(&value)), None);
        // A checkpoint record is not a gap, and a gap record is not a checkpoint.
        let cp_key = crate::checkpoint::encode_key("r1", &g.tp);
        assert_eq!(decode_from_target("r1", &cp_key, Some(b"{}")), None);
        assert_eq!(crate::checkpoint::decode("r1", &key, Some(&value)), None);
    }

    #[test]
    fn recorded_gaps_survive_a_reopen_and_are_shipped_once_marked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = crate::wal::WalOptions { max_bytes: 1 << 30 };
        {
            let wal = Wal::open(dir.path(), options).expect("open");
            let gaps = Gaps::open(&wal).expect("gaps");
            gaps.record(&gap(10, Some(250))).expect("record");
            gaps.record(&gap(900, None)).expect("record");
            // Recording the same gap again does not double it.
            gaps.record(&gap(10, Some(250))).expect("record");
            gaps.mark_shipped(&[gap(10, Some(250))]).expect("mark");
        }
        let wal = Wal::open(dir.path(), options).expect("reopen");
        let gaps = Gaps::open(&wal).expect("gaps");
        assert_eq!(
            gaps.all().expect("all"),
            vec![(gap(10, Some(250)), true), (gap(900, None), false)]
        );
        assert_eq!(gaps.unshipped().expect("unshipped"), vec![gap(900, None)]);
    }

    #[test]
    fn offsets_count_the_range_and_its_overlap() {
        assert_eq!(gap(10, Some(250)).offsets(), Some(240));
        assert_eq!(gap(10, None).offsets(), None);
        assert_eq!(gap(10, Some(250)).offsets_within(0, 100), 90);
        assert_eq!(gap(10, Some(250)).offsets_within(300, 400), 0);
        assert_eq!(gap(10, None).offsets_within(0, 100), 90);
    }
}
