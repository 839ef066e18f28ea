//! Entries leaving the WAL: acknowledged ones (delivered, with the
//! delivered progress stored alongside for `status`), quarantined ones
//! (corrupted, moved aside), and the segment files they leave drained,
//! which are kept as spares to be written over or deleted.
//!
//! Invariants kept here:
//! - [`Wal::ack`] removes entries without an fsync of its own: a crash can
//!   undo it, which leaves those entries in the WAL, already delivered; the
//!   shipper skips them by the target's checkpoints and acks them again.
//!   Index entries are removed before their append times, so a crash's
//!   prefix leaves at most times without entries (`open` deletes those).
//! - [`Wal::quarantine`] moves only a corrupted entry, checked inside the
//!   sled transaction that moves it (so a concurrent ack cannot slip in
//!   between), and returns only after the move is fsync'd.
//! - A segment is retired ([`Wal::retire_segment`]) only when no index
//!   entry points into it any more, durably: [`Wal::forget`] fsyncs sled
//!   before retiring a segment the removals drained, and the accounting
//!   never reports the segment being appended to as drained.
//! - Spares are kept up to `spare_limit` (`wal.max_bytes` worth); beyond
//!   that a drained segment is deleted.
//! - "delivered" is information only: it is not fsync'd, and nothing that
//!   decides what to ship reads it.
//!
//! Called by `shipper` ([`Wal::ack_delivered`], [`Wal::store_delivered`]),
//! `pipeline` at start-up ([`Wal::quarantine`]), `status` and `admin`
//! ([`Wal::delivered`]); [`Wal::retire_segment`] also by `open.rs` and
//! `writer.rs`.

use std::collections::BTreeMap;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::index::{delivered_key, parse_delivered};
use super::{segment, Location, Wal, WalError, WalPosition};
use crate::record::TopicPartition;

impl Wal {
    /// Removes delivered entries, durably, all or none. Positions the WAL
    /// does not hold (already acked, quarantined, never appended) are
    /// ignored.
    pub fn ack(&self, positions: &[WalPosition]) -> Result<(), WalError> {
        self.ack_delivered(positions, &BTreeMap::new())
    }

    /// [`Wal::ack`], and stores `delivered` (source partition -> next
    /// offset the target committed) in the same fsync, for `status`.
    pub fn ack_delivered(
        &self,
        positions: &[WalPosition],
        delivered: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WalError> {
        self.store_delivered(delivered)?;
        let known: Vec<WalPosition> = {
            let accounting = self.accounting();
            positions
                .iter()
                .copied()
                .filter(|p| accounting.entries.contains_key(p))
                .collect()
        };
        if known.is_empty() {
            return Ok(());
        }
        // Plain removes, not fsync'd here: an ack a crash undoes only leaves
        // its entries in the WAL, and the shipper skips what the target's
        // checkpoints cover. Index entries go before their append times, so
        // a crash's prefix leaves at most times without entries (`open`
        // deletes those). `forget` makes the removal durable before it
        // deletes a segment the removal drained.
        for position in &known {
            self.inner
                .index
                .remove(position.to_be_bytes())
                .map_err(self.io("removing acknowledged entries"))?;
        }
        for position in &known {
            self.inner
                .appended
                .remove(position.to_be_bytes())
                .map_err(self.io("removing append times"))?;
        }
        self.forget(&known)
    }

    /// Drops removed entries from the accounting and deletes the segments
    /// they leave empty, once their removal is durable: after a crash, no
    /// index entry may point into a deleted segment (it would read as
    /// corrupted, and quarantine would drop the whole WAL).
    fn forget(&self, removed: &[WalPosition]) -> Result<(), WalError> {
        let drained: Vec<u64> = {
            let mut accounting = self.accounting();
            removed
                .iter()
                .filter_map(|p| accounting.remove(*p))
                .collect()
        };
        if !drained.is_empty() {
            self.flush("fsync before deleting a drained segment")?;
        }
        for id in drained {
            self.retire_segment(id)?;
        }
        Ok(())
    }

    /// Moves a corrupted entry's raw bytes to the "quarantine" tree, in one
    /// sled transaction, so it is never shipped and never silently lost.
    /// Refuses a valid entry ([`WalError::NotCorrupted`]); an unknown
    /// position is a no-op.
    pub fn quarantine(&self, position: WalPosition) -> Result<(), WalError> {
        if !self.accounting().entries.contains_key(&position) {
            return Ok(());
        }
        let key = position.to_be_bytes();
        // The check is inside the transaction so a concurrent ack cannot
        // slip between "it is corrupted" and "move it".
        let moved = (&self.inner.index, &self.inner.quarantine).transaction(|(index, q)| {
            let Some(value) = index.get(key)? else {
                return Ok(false);
            };
            let raw = match Location::from_bytes(&value) {
                Some(location) => self
                    .read_raw(location)
                    .map_err(ConflictableTransactionError::Abort)?
                    .unwrap_or_default(),
                None => value.to_vec(),
            };
            // Only corruption is quarantined: an entry that decodes, or
            // one under another key (a key problem), is refused.
            match self.decode(&raw) {
                Ok(_) => {
                    return Err(ConflictableTransactionError::Abort(
                        WalError::NotCorrupted {
                            dir: self.inner.dir.clone(),
                            position,
                        },
                    ))
                }
                Err(e) => {
                    WalError::split_key_problem(&self.inner.dir, || format!("entry {position}"), e)
                        .map_err(ConflictableTransactionError::Abort)?;
                }
            }
            q.insert(&key, raw)?;
            index.remove(&key)?;
            Ok(true)
        });
        match moved {
            Ok(_) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(source)) => {
                return Err(self.io("moving an entry to quarantine")(source))
            }
        }
        self.flush("fsync after quarantine")?;
        self.forget(&[position])
    }

    /// Writes the delivered progress (not fsync'd: sled's periodic flush
    /// does it; losing it loses nothing but a `status` figure).
    pub fn store_delivered(
        &self,
        delivered: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WalError> {
        if delivered.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (tp, next) in delivered {
            batch.insert(delivered_key(tp), &next.to_be_bytes());
        }
        self.inner
            .delivered
            .apply_batch(batch)
            .map_err(self.io("storing delivered progress"))
    }

    /// The delivered progress last stored (see [`Wal::ack_delivered`]);
    /// unreadable keys are skipped, this is information only.
    pub fn delivered(&self) -> Result<BTreeMap<TopicPartition, i64>, WalError> {
        let mut out = BTreeMap::new();
        for item in self.inner.delivered.iter() {
            let (key, value) = item.map_err(self.io("reading delivered progress"))?;
            if let Some((tp, next)) = parse_delivered(&key, &value) {
                out.insert(tp, next);
            }
        }
        Ok(out)
    }

    /// A segment no entry points into, durably: kept as a spare while
    /// fewer than `spare_limit` are, deleted otherwise.
    pub(super) fn retire_segment(&self, id: u64) -> Result<(), WalError> {
        self.files().remove(&id);
        let mut spares = self.spares();
        if spares.len() < self.inner.spare_limit {
            return match segment::retire(&self.inner.segments, id) {
                Ok(spare) => {
                    spares.push(spare);
                    Ok(())
                }
                // Gone already (lost, like any file can be): nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.seg_io("keeping a drained segment as a spare")(e)),
            };
        }
        segment::remove(&self.inner.segments, id).map_err(self.seg_io("deleting a drained segment"))
    }
}
