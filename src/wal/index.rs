//! The index: the sled trees that say where each entry's frame is and what
//! the WAL knows about it, their key and value encodings, and the
//! in-memory accounting that mirrors the "index" tree (the layout is at
//! the top of `mod.rs`).
//!
//! Invariants kept here:
//! - Keys of "index", "quarantine", "appended" and "batches" are positions,
//!   u64 big-endian, so sled iterates them in append order. Any other key
//!   is a [`WalError::BadKey`] ([`Wal::position_of`]), and a stored next
//!   position or tail of the wrong length a [`WalError::BadMeta`]: never a
//!   guess, since positions must never be reused.
//! - Positions never wrap: [`Wal::after`] is [`WalError::PositionsExhausted`]
//!   past `u64::MAX`.
//! - [`Wal::index_entries`] writes the index entries before the tail that
//!   names them, so whatever prefix of its writes sled recovers, the stored
//!   tail and next position never claim an entry whose index write was
//!   lost.
//! - [`Accounting`]: `bytes` is the sum of its entries' stored bytes,
//!   `per_segment` counts its entries per segment (a segment with none has
//!   no key), and a drained segment is reported for retirement only if it
//!   is not `current_segment`, the one appends go to.
//!
//! Called by the other parts of `wal`: `open` (rebuilds the accounting,
//! reads the tail), `writer` (indexes appends), `ack` (removes entries),
//! `reader` (keys to positions). From outside: `status` and `admin` read
//! [`Wal::depth`], `pipeline` [`Wal::partition_progress`], `dlq` and `gap`
//! open their trees with [`Wal::side_tree`].

use std::collections::BTreeMap;

use super::{Location, Wal, WalEntry, WalError, WalPosition};
use crate::record::{Batch, TopicPartition};

pub(super) const INDEX: &str = "index";
/// Whole frames as sled values: WALs from before segments (migrated at open).
pub(super) const LEGACY_BATCHES: &str = "batches";
pub(super) const META: &str = "meta";
pub(super) const QUARANTINE: &str = "quarantine";
pub(super) const APPENDED: &str = "appended";
pub(super) const DELIVERED: &str = "delivered";
pub(super) const NEXT_POSITION: &[u8] = b"next_position";
/// Where the next append writes and the position it takes:
/// segment u64 BE | offset u64 BE | position u64 BE, in one value so a
/// crash never leaves one without the other.
pub(super) const TAIL: &[u8] = b"tail";

pub(super) fn delivered_key(tp: &TopicPartition) -> Vec<u8> {
    let mut k = Vec::with_capacity(tp.topic.len() + 5);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k
}

pub(super) fn parse_delivered(key: &[u8], value: &[u8]) -> Option<(TopicPartition, i64)> {
    let split = key.len().checked_sub(5)?;
    let (topic, rest) = key.split_at(split);
    let partition = i32::from_be_bytes(rest.get(1..5)?.try_into().ok()?);
    let next = i64::from_be_bytes(value.try_into().ok()?);
    Some((
        TopicPartition::new(std::str::from_utf8(topic).ok()?, partition),
        next,
    ))
}

/// What the WAL knows about one unacknowledged entry, kept in memory.
#[derive(Debug, Clone)]
pub(super) struct EntryInfo {
    pub(super) stored_bytes: u64,
    /// The segment file holding its frame.
    pub(super) segment: u64,
    pub(super) records: u64,
    /// When it was appended, ms since the epoch.
    pub(super) appended_ms: i64,
    /// Source partition and next offset; `None` for a corrupted entry,
    /// whose partition is unknown.
    pub(super) progress: Option<(TopicPartition, i64)>,
}

impl EntryInfo {
    pub(super) fn of(entry: &WalEntry, segment: u64, appended_ms: i64) -> EntryInfo {
        let (records, progress) = match entry {
            WalEntry::Valid { batch, .. } => (batch.records.len() as u64, progress_of(batch)),
            WalEntry::Corrupted { .. } => (0, None),
        };
        EntryInfo {
            stored_bytes: entry.stored_bytes(),
            segment,
            records,
            appended_ms,
            progress,
        }
    }
}

/// Unacknowledged entries of one source partition (or of the corrupted
/// entries, whose partition is unknown), as `status` and `/metrics` show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Append time of the oldest entry, ms since the epoch.
    pub oldest_appended_ms: Option<i64>,
}

impl Depth {
    fn add(&mut self, info: &EntryInfo) {
        self.batches += 1;
        self.records += info.records;
        self.bytes += info.stored_bytes;
        self.oldest_appended_ms = Some(
            self.oldest_appended_ms
                .map_or(info.appended_ms, |t| t.min(info.appended_ms)),
        );
    }
}

/// The whole WAL's depth: per source partition, plus corrupted entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalDepth {
    pub partitions: BTreeMap<TopicPartition, Depth>,
    pub corrupted: Depth,
    pub total: Depth,
    /// The most stored bytes the WAL has held since it was opened (for
    /// sizing `wal.max_bytes`).
    pub peak_bytes: u64,
}

impl Depth {
    /// Adds `other` in: the same figures over both.
    pub fn merge(&mut self, other: &Depth) {
        self.batches += other.batches;
        self.records += other.records;
        self.bytes += other.bytes;
        self.oldest_appended_ms = match (self.oldest_appended_ms, other.oldest_appended_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

impl WalDepth {
    /// The depth of several WALs as one (the units of a scaled-out relay).
    pub fn merge(&mut self, other: &WalDepth) {
        for (tp, d) in &other.partitions {
            self.partitions.entry(tp.clone()).or_default().merge(d);
        }
        self.corrupted.merge(&other.corrupted);
        self.total.merge(&other.total);
        self.peak_bytes += other.peak_bytes;
    }
}

fn progress_of(batch: &Batch) -> Option<(TopicPartition, i64)> {
    let next = batch.next_offset()?;
    Some((
        TopicPartition::new(batch.topic.clone(), batch.partition),
        next,
    ))
}

#[derive(Debug, Default)]
pub(super) struct Accounting {
    pub(super) entries: BTreeMap<WalPosition, EntryInfo>,
    /// Invariant: the sum of `entries[..].stored_bytes`.
    pub(super) bytes: u64,
    /// The most `bytes` has been since the WAL was opened.
    pub(super) peak_bytes: u64,
    /// Invariant: per segment, how many of `entries` have their frame
    /// there; a segment with none has no key.
    pub(super) per_segment: BTreeMap<u64, u64>,
    /// The segment appends go to; it is never deleted. A copy of the
    /// writer's, set under both locks, so an ack can tell without waiting
    /// for the writer lock (held across an append's fsync).
    pub(super) current_segment: Option<u64>,
    /// The position the next append takes. Every key in "index" is below
    /// it, and it only moves after the entry at its old value is durable.
    pub(super) next_position: WalPosition,
}

impl Accounting {
    pub(super) fn add(&mut self, position: WalPosition, info: EntryInfo) {
        self.bytes += info.stored_bytes;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        *self.per_segment.entry(info.segment).or_default() += 1;
        if let Some(old) = self.entries.insert(position, info) {
            self.forget(&old);
        }
    }

    /// Removes the entry; returns its segment if that now holds no entry
    /// and is not being appended to (so its file can go).
    pub(super) fn remove(&mut self, position: WalPosition) -> Option<u64> {
        let info = self.entries.remove(&position)?;
        self.forget(&info)
    }

    fn forget(&mut self, info: &EntryInfo) -> Option<u64> {
        self.bytes -= info.stored_bytes;
        let left = self.per_segment.get_mut(&info.segment)?;
        *left -= 1;
        if *left > 0 {
            return None;
        }
        self.per_segment.remove(&info.segment);
        (self.current_segment != Some(info.segment)).then_some(info.segment)
    }
}

impl Wal {
    /// The next position as last stored in "meta", by the tail or (in a
    /// WAL made before segments) its own key; 0 for a new WAL.
    pub(super) fn stored_next_position(&self) -> Result<WalPosition, WalError> {
        let raw = self
            .inner
            .meta
            .get(NEXT_POSITION)
            .map_err(self.io("reading the next position"))?;
        let old = match raw {
            Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
                .map(WalPosition::from_be_bytes)
                .map_err(|_| WalError::BadMeta {
                    dir: self.inner.dir.clone(),
                    len: raw.len(),
                })?,
            None => 0,
        };
        Ok(self
            .stored_tail()?
            .map_or(old, |(_, _, next)| next.max(old)))
    }

    /// Writes the index `entries` (position, where its frame is), then the
    /// next position and the tail: where the next append will write, and
    /// where `index_unindexed_tail` looks. Not fsync'd.
    ///
    /// Plain inserts, not one `sled::Batch`: sled's atomic batches halved
    /// the WAL's append rate (docs/benchmarks.md), and atomicity buys
    /// nothing here. sled recovers a prefix of these writes, so whatever
    /// prefix survives a crash, the stored tail and next position never
    /// claim an entry whose index write was lost, and the scan from the
    /// tail re-indexes any whose was.
    pub(super) fn index_entries(
        &self,
        entries: &[(WalPosition, Location)],
        next: WalPosition,
    ) -> Result<(), WalError> {
        for (position, location) in entries {
            self.inner
                .index
                .insert(position.to_be_bytes(), &location.to_bytes())
                .map_err(self.io("indexing an entry"))?;
        }
        let Some((_, last)) = entries.last() else {
            return Ok(());
        };
        let mut tail = [0u8; 24];
        tail[..8].copy_from_slice(&last.segment.to_be_bytes());
        tail[8..16].copy_from_slice(&last.end().to_be_bytes());
        tail[16..].copy_from_slice(&next.to_be_bytes());
        self.inner
            .meta
            .insert(TAIL, &tail)
            .map(drop)
            .map_err(self.io("storing the tail"))
    }

    /// The stored tail: (segment, offset, next position); `None` if no
    /// entry was ever indexed in a segment.
    pub(super) fn stored_tail(&self) -> Result<Option<(u64, u64, WalPosition)>, WalError> {
        let Some(raw) = self
            .inner
            .meta
            .get(TAIL)
            .map_err(self.io("reading the tail"))?
        else {
            return Ok(None);
        };
        let Ok(raw) = <[u8; 24]>::try_from(raw.as_ref()) else {
            return Err(WalError::BadMeta {
                dir: self.inner.dir.clone(),
                len: raw.len(),
            });
        };
        let field = |at: usize| {
            let mut be = [0u8; 8];
            be.copy_from_slice(&raw[at..at + 8]);
            u64::from_be_bytes(be)
        };
        Ok(Some((field(0), field(8), field(16))))
    }

    /// Unacknowledged entries per source partition, from memory.
    pub fn depth(&self) -> WalDepth {
        let accounting = self.accounting();
        let mut depth = WalDepth {
            peak_bytes: accounting.peak_bytes,
            ..WalDepth::default()
        };
        for info in accounting.entries.values() {
            depth.total.add(info);
            match &info.progress {
                Some((tp, _)) => depth.partitions.entry(tp.clone()).or_default().add(info),
                None => depth.corrupted.add(info),
            }
        }
        depth
    }

    /// Per source partition, the highest next offset among unacknowledged
    /// valid entries: the source must resume at least there. Corrupted
    /// entries contribute nothing (their partition is unknown).
    pub fn partition_progress(&self) -> BTreeMap<TopicPartition, i64> {
        let accounting = self.accounting();
        let mut progress: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for (tp, next) in accounting
            .entries
            .values()
            .filter_map(|e| e.progress.as_ref())
        {
            match progress.get_mut(tp) {
                Some(slot) => *slot = (*slot).max(*next),
                None => {
                    progress.insert(tp.clone(), *next);
                }
            }
        }
        progress
    }

    /// Another tree in the WAL's database, for stores that must share its
    /// directory, lock and fsyncs (the dead-letter queue). Names of the
    /// WAL's own trees are refused.
    pub fn side_tree(&self, name: &str) -> Result<sled::Tree, WalError> {
        if [INDEX, LEGACY_BATCHES, META, QUARANTINE, APPENDED, DELIVERED].contains(&name) {
            return Err(WalError::Io {
                dir: self.inner.dir.clone(),
                op: "opening a side tree",
                source: sled::Error::Unsupported(format!("{name} is a WAL tree")),
            });
        }
        self.inner
            .db
            .open_tree(name)
            .map_err(self.io("opening a side tree"))
    }

    pub(super) fn after(&self, position: WalPosition) -> Result<WalPosition, WalError> {
        position
            .checked_add(1)
            .ok_or_else(|| WalError::PositionsExhausted {
                dir: self.inner.dir.clone(),
                last: position,
            })
    }

    pub(super) fn position_of(
        &self,
        tree: &'static str,
        key: &[u8],
    ) -> Result<WalPosition, WalError> {
        <[u8; 8]>::try_from(key)
            .map(WalPosition::from_be_bytes)
            .map_err(|_| WalError::BadKey {
                dir: self.inner.dir.clone(),
                tree,
                len: key.len(),
            })
    }
}
