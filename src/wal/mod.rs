//! The write-ahead log: where consumed batches wait, durable, until a target
//! transaction carrying them has committed.
//!
//! On-disk layout: one sled database in `wal.dir` with three trees.
//!
//! ```text
//! tree "batches"     key: position (u64 big-endian, so iteration is in append order)
//!                    value: a frame (see `frame`): version | crc32 | len | bincode(Batch)
//! tree "meta"        key "next_position" -> u64 big-endian
//! tree "quarantine"  key: position -> the raw bytes of an entry that failed its checks
//! ```
//!
//! Invariants:
//! - `append` returns only after the entry is fsync'd (`sled::Db::flush`).
//! - Positions only grow and are never reused, across restarts too: the next
//!   position is persisted in `meta` with every append, and recovery takes
//!   the larger of it and the last key + 1.
//! - Every read verifies the frame; a bad entry is returned as
//!   [`WalEntry::Corrupted`], never skipped and never shipped.
//! - `ack` does not fsync: losing an ack in a crash only means the entry is
//!   read again, and the shipper skips it because the target's checkpoint
//!   already covers it.
//!
//! The API is synchronous (sled blocks): the source and shipper threads call
//! it directly; async code goes through `spawn_blocking`.

mod frame;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

pub use frame::{decode_frame, encode_batch, CorruptionReason, FORMAT_VERSION};

use crate::record::{Batch, TopicPartition};

pub type WalPosition = u64;

const NEXT_POSITION: &[u8] = b"next_position";

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot open the WAL in {dir}: {source} (is another relay using this directory?)")]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("WAL storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("refusing to append an empty batch")]
    EmptyBatch,
}

/// Options fixed when the WAL is opened.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// Stored bytes at which the WAL counts as full (`wal.max_bytes`).
    pub max_bytes: u64,
}

/// One stored entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEntry {
    Valid {
        position: WalPosition,
        batch: Batch,
        stored_bytes: u64,
    },
    Corrupted {
        position: WalPosition,
        reason: CorruptionReason,
        stored_bytes: u64,
    },
}

impl WalEntry {
    pub fn position(&self) -> WalPosition {
        match self {
            WalEntry::Valid { position, .. } | WalEntry::Corrupted { position, .. } => *position,
        }
    }
}

/// What the WAL knows about one unacknowledged entry, kept in memory.
#[derive(Debug, Clone)]
struct EntryInfo {
    stored_bytes: u64,
    /// `None` for a corrupted entry.
    progress: Option<(TopicPartition, i64)>,
}

#[derive(Debug, Default)]
struct Accounting {
    entries: BTreeMap<WalPosition, EntryInfo>,
    bytes: u64,
    next_position: WalPosition,
}

impl Accounting {
    fn add(&mut self, position: WalPosition, info: EntryInfo) {
        self.bytes += info.stored_bytes;
        self.entries.insert(position, info);
    }

    fn remove(&mut self, position: WalPosition) {
        if let Some(info) = self.entries.remove(&position) {
            self.bytes -= info.stored_bytes;
        }
    }
}

#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    batches: sled::Tree,
    meta: sled::Tree,
    quarantine: sled::Tree,
    max_bytes: u64,
    accounting: Mutex<Accounting>,
}

impl Wal {
    /// Opens (or creates) the WAL in `dir` and rebuilds its accounting by
    /// checking every entry once. Corrupted entries do not fail the open;
    /// they are reported by `read_from` and handled by the caller.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        let open_err = |source| WalError::Open {
            dir: dir.to_path_buf(),
            source,
        };
        let db = sled::Config::new().path(dir).open().map_err(open_err)?;
        let batches = db.open_tree("batches").map_err(open_err)?;
        let meta = db.open_tree("meta").map_err(open_err)?;
        let quarantine = db.open_tree("quarantine").map_err(open_err)?;

        let mut accounting = Accounting::default();
        for item in batches.iter() {
            let (key, value) = item?;
            let position = decode_position(&key);
            let progress = decode_frame(&value).ok().and_then(|b| {
                b.next_offset()
                    .map(|n| (TopicPartition::new(b.topic, b.partition), n))
            });
            accounting.add(
                position,
                EntryInfo {
                    stored_bytes: value.len() as u64,
                    progress,
                },
            );
        }
        let persisted = meta.get(NEXT_POSITION)?.map_or(0, |v| decode_position(&v));
        let after_last = accounting.entries.keys().next_back().map_or(0, |p| p + 1);
        accounting.next_position = persisted.max(after_last);

        Ok(Wal {
            inner: Arc::new(Inner {
                db,
                batches,
                meta,
                quarantine,
                max_bytes: options.max_bytes,
                accounting: Mutex::new(accounting),
            }),
        })
    }

    fn accounting(&self) -> MutexGuard<'_, Accounting> {
        // The accounting is plain numbers; a panic elsewhere cannot leave it torn.
        self.inner
            .accounting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `batch` durably and returns its position.
    pub fn append(&self, batch: &Batch) -> Result<WalPosition, WalError> {
        let Some(next_offset) = batch.next_offset() else {
            return Err(WalError::EmptyBatch);
        };
        let frame = encode_batch(batch);
        let mut accounting = self.accounting();
        let position = accounting.next_position;
        self.inner
            .batches
            .insert(position.to_be_bytes(), frame.as_slice())?;
        self.inner
            .meta
            .insert(NEXT_POSITION, &(position + 1).to_be_bytes())?;
        // The fsync: nothing after this call may be lost.
        self.inner.db.flush()?;
        accounting.next_position = position + 1;
        accounting.add(
            position,
            EntryInfo {
                stored_bytes: frame.len() as u64,
                progress: Some((
                    TopicPartition::new(batch.topic.clone(), batch.partition),
                    next_offset,
                )),
            },
        );
        Ok(position)
    }

    /// Up to `max_entries` entries at or after `from`, in position order, each checked.
    pub fn read_from(
        &self,
        from: WalPosition,
        max_entries: usize,
    ) -> Result<Vec<WalEntry>, WalError> {
        let mut out = Vec::new();
        for item in self
            .inner
            .batches
            .range(from.to_be_bytes()..)
            .take(max_entries)
        {
            let (key, value) = item?;
            let position = decode_position(&key);
            let stored_bytes = value.len() as u64;
            out.push(match decode_frame(&value) {
                Ok(batch) => WalEntry::Valid {
                    position,
                    batch,
                    stored_bytes,
                },
                Err(reason) => WalEntry::Corrupted {
                    position,
                    reason,
                    stored_bytes,
                },
            });
        }
        Ok(out)
    }

    /// Removes delivered entries. Unknown positions are ignored.
    pub fn ack(&self, positions: &[WalPosition]) -> Result<(), WalError> {
        let mut accounting = self.accounting();
        for position in positions {
            self.inner.batches.remove(position.to_be_bytes())?;
            accounting.remove(*position);
        }
        Ok(())
    }

    /// Moves a (corrupted) entry's raw bytes to the quarantine tree, where
    /// it is kept for inspection and never shipped.
    pub fn quarantine(&self, position: WalPosition) -> Result<(), WalError> {
        let key = position.to_be_bytes();
        if let Some(raw) = self.inner.batches.get(key)? {
            self.inner.quarantine.insert(key, raw)?;
            self.inner.batches.remove(key)?;
            self.inner.db.flush()?;
        }
        self.accounting().remove(position);
        Ok(())
    }

    /// Quarantined entries: position and raw bytes.
    pub fn quarantined(&self) -> Result<Vec<(WalPosition, Vec<u8>)>, WalError> {
        self.inner
            .quarantine
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((decode_position(&k), v.to_vec()))
            })
            .collect()
    }

    /// Stored bytes of unacknowledged entries: what `wal.max_bytes` bounds.
    pub fn bytes(&self) -> u64 {
        self.accounting().bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    pub fn is_full(&self) -> bool {
        self.bytes() >= self.inner.max_bytes
    }

    pub fn len(&self) -> usize {
        self.accounting().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn oldest_position(&self) -> Option<WalPosition> {
        self.accounting().entries.keys().next().copied()
    }

    /// Per source partition, the highest next offset among unacknowledged
    /// valid entries: the source must resume at least there.
    pub fn partition_progress(&self) -> BTreeMap<TopicPartition, i64> {
        let mut progress = BTreeMap::new();
        for (tp, next) in self
            .accounting()
            .entries
            .values()
            .filter_map(|e| e.progress.clone())
        {
            let slot = progress.entry(tp).or_insert(next);
            *slot = (*slot).max(next);
        }
        progress
    }
}

fn decode_position(key: &[u8]) -> WalPosition {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    WalPosition::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn batch(topic: &str, partition: i32, first: i64, n: i64) -> Batch {
        Batch {
            topic: topic.into(),
            partition,
            records: (first..first + n)
                .map(|offset| Record {
                    offset,
                    timestamp: Some(offset),
                    key: None,
                    value: Some(vec![7; 32]),
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn open(dir: &Path) -> Wal {
        Wal::open(dir, WalOptions { max_bytes: 1 << 20 }).expect("open")
    }

    #[test]
    fn positions_are_never_reused_after_ack_all_and_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let a = wal.append(&batch("t", 0, 0, 5)).expect("append");
        let b = wal.append(&batch("t", 0, 5, 5)).expect("append");
        wal.ack(&[a, b]).expect("ack");
        assert!(wal.is_empty());
        drop(wal);
        let wal = open(dir.path());
        let c = wal.append(&batch("t", 0, 10, 5)).expect("append");
        assert!(c > b, "position {c} reused (last was {b})");
    }

    #[test]
    fn accounting_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let a = wal.append(&batch("t", 0, 0, 5)).expect("append");
        wal.append(&batch("t", 1, 0, 3)).expect("append");
        wal.append(&batch("t", 0, 5, 5)).expect("append");
        wal.ack(&[a]).expect("ack");
        let (bytes, len, progress) = (wal.bytes(), wal.len(), wal.partition_progress());
        drop(wal);
        let wal = open(dir.path());
        assert_eq!(wal.bytes(), bytes);
        assert_eq!(wal.len(), len);
        assert_eq!(wal.partition_progress(), progress);
        assert_eq!(progress[&TopicPartition::new("t", 0)], 10);
        assert_eq!(progress[&TopicPartition::new("t", 1)], 3);
    }

    #[test]
    fn a_corrupted_entry_is_reported_not_skipped_and_can_be_quarantined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        let good = wal.append(&batch("t", 0, 0, 2)).expect("append");
        let mut bad = encode_batch(&batch("t", 0, 2, 2));
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        // As a disk fault would leave it: bytes that are not what was written.
        wal.inner
            .batches
            .insert((good + 1).to_be_bytes(), bad.as_slice())
            .expect("insert");
        let entries = wal.read_from(0, 10).expect("read");
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0], WalEntry::Valid { .. }));
        assert!(matches!(
            entries[1],
            WalEntry::Corrupted {
                reason: CorruptionReason::ChecksumMismatch { .. },
                ..
            }
        ));
        wal.quarantine(good + 1).expect("quarantine");
        assert_eq!(wal.read_from(0, 10).expect("read").len(), 1);
        assert_eq!(
            wal.quarantined().expect("quarantined"),
            vec![(good + 1, bad)]
        );
    }

    #[test]
    fn full_when_max_bytes_reached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), WalOptions { max_bytes: 200 }).expect("open");
        wal.append(&batch("t", 0, 0, 2)).expect("append");
        assert!(!wal.is_full());
        let p = wal.append(&batch("t", 0, 2, 4)).expect("append");
        assert!(wal.is_full());
        wal.ack(&[p]).expect("ack");
        assert!(!wal.is_full());
    }

    #[test]
    fn empty_batches_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open(dir.path());
        assert!(matches!(
            wal.append(&batch("t", 0, 0, 0)),
            Err(WalError::EmptyBatch)
        ));
    }

    #[test]
    fn garbage_in_the_wal_files_gives_an_error_or_corrupted_entries_never_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = open(dir.path());
            for i in 0..20 {
                wal.append(&batch("t", 0, i * 10, 10)).expect("append");
            }
        }
        // Overwrite the middle of every file sled wrote with garbage.
        let mut files = Vec::new();
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        for file in files {
            let mut bytes = std::fs::read(&file).expect("read");
            let mid = bytes.len() / 2;
            for b in bytes.iter_mut().skip(mid).take(64) {
                *b ^= 0x5a;
            }
            std::fs::write(&file, bytes).expect("write");
        }
        match Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }) {
            Err(e) => assert!(e.to_string().contains("WAL"), "error names the WAL: {e}"),
            Ok(wal) => {
                // Whatever sled recovered must be either valid or reported as corrupted.
                let entries = wal.read_from(0, 100).expect("read");
                for e in entries {
                    if let WalEntry::Valid { batch, .. } = e {
                        assert_eq!(batch.records.len(), 10);
                    }
                }
            }
        }
    }
}
