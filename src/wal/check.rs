//! The offline check of a WAL: walking every entry and every quarantined
//! one, totals for a listing, and the rules that hold between entries.
//! It prints nothing: `cli::wal` (`kafka-relay wal inspect | verify`)
//! prints what it is handed and turns errors into messages.
//!
//! Invariants kept here:
//! - Nothing changes the WAL: no append, ack or quarantine (the relay's
//!   start-up quarantines; this only reports).
//! - Memory is bounded by one page of decoded entries ([`page_len`]) plus
//!   a few numbers per partition ([`Listing`], [`Checker`]), whatever the
//!   WAL's size: entries are read in pages with [`Wal::read_from`],
//!   quarantined ones one at a time, and each is handed on before the next
//!   is read.
//! - Every live entry is checked and each broken rule is reported, naming
//!   its position; a corrupted entry is reported, never skipped, and takes
//!   no part in the ordering rules (its partition is unknown).
//! - Quarantined entries are counted but not failed on for their damage
//!   (they are already set aside); only a quarantined position still live,
//!   or at or past the next position, is a problem.
//!
//! Called by `cli::wal` only.

use std::collections::BTreeMap;

use super::{CorruptionReason, Wal, WalEntry, WalError, WalPosition};
use crate::record::{Batch, TopicPartition};

/// Decoded bytes one page of entries may hold, about.
const PAGE_BYTES: u64 = 64 << 20;
/// Entries per page at most, however small the batches.
const MAX_PAGE_ENTRIES: u64 = 256;

/// Entries per page: enough to amortise the reads, few enough that a page
/// of batches of up to `batch_max_bytes` stays near [`PAGE_BYTES`]. (A WAL
/// written under a larger `batch.max_bytes` takes more, still one page.)
pub(crate) fn page_len(batch_max_bytes: u64) -> usize {
    let entries = (PAGE_BYTES / batch_max_bytes.max(1)).clamp(1, MAX_PAGE_ENTRIES);
    usize::try_from(entries).unwrap_or(1)
}

/// The first and last source offset of a batch; `None` if it is empty.
pub(crate) fn first_last(batch: &Batch) -> Option<(i64, i64)> {
    Some((batch.records.first()?.offset, batch.records.last()?.offset))
}

pub(crate) fn tp_of(batch: &Batch) -> TopicPartition {
    TopicPartition::new(batch.topic.clone(), batch.partition)
}

/// Running totals of a listing: a few numbers per partition, never entries.
#[derive(Default)]
pub(crate) struct Listing {
    pub(crate) entries: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) corrupted: u64,
    pub(crate) quarantined: u64,
    pub(crate) quarantined_bytes: u64,
    pub(crate) partitions: BTreeMap<TopicPartition, PartitionTotals>,
}

#[derive(Default)]
pub(crate) struct PartitionTotals {
    pub(crate) entries: u64,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) offsets: Option<(i64, i64)>,
}

impl Listing {
    fn add(&mut self, entry: &WalEntry) {
        self.entries += 1;
        self.bytes += entry.stored_bytes();
        match entry {
            WalEntry::Valid {
                batch,
                stored_bytes,
                ..
            } => {
                let records = batch.records.len() as u64;
                self.records += records;
                let p = self.partitions.entry(tp_of(batch)).or_default();
                p.entries += 1;
                p.records += records;
                p.bytes += stored_bytes;
                if let Some((first, last)) = first_last(batch) {
                    p.offsets = Some(match p.offsets {
                        Some((lo, hi)) => (lo.min(first), hi.max(last)),
                        None => (first, last),
                    });
                }
            }
            WalEntry::Corrupted { .. } => self.corrupted += 1,
        }
    }

    fn add_quarantined(&mut self, raw: &[u8]) {
        self.quarantined += 1;
        self.quarantined_bytes += raw.len() as u64;
    }
}

/// One broken rule, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Problem {
    #[error("position {position}: CORRUPTED: {reason}")]
    Corrupted {
        position: WalPosition,
        reason: CorruptionReason,
    },
    #[error("position {position}: {tp}: empty batch (append refuses those)")]
    EmptyBatch {
        position: WalPosition,
        tp: TopicPartition,
    },
    #[error("position {position}: {tp}: negative offset {offset}")]
    NegativeOffset {
        position: WalPosition,
        tp: TopicPartition,
        offset: i64,
    },
    #[error("position {position}: {tp}: offset {offset} follows offset {previous} inside the batch (offsets must strictly increase)")]
    OffsetsNotIncreasing {
        position: WalPosition,
        tp: TopicPartition,
        previous: i64,
        offset: i64,
    },
    #[error("position {position}: {tp}: batch starts at offset {first}, not after offset {previous_last} of position {previous_position} (a partition's batches follow each other in position order)")]
    PartitionGoesBack {
        position: WalPosition,
        tp: TopicPartition,
        first: i64,
        previous_position: WalPosition,
        previous_last: i64,
    },
    #[error(
        "position {position}: read after position {previous} (positions must strictly increase)"
    )]
    PositionsOutOfOrder {
        position: WalPosition,
        previous: WalPosition,
    },
    #[error("position {position}: at or past the next position {next} (only appended positions are below it)")]
    PastNextPosition {
        position: WalPosition,
        next: WalPosition,
    },
    #[error("quarantined position {position}: still among the live entries too (quarantine moves an entry)")]
    QuarantinedAndLive { position: WalPosition },
    #[error("quarantined position {position}: at or past the next position {next} (positions are never reused)")]
    QuarantinedPastNext {
        position: WalPosition,
        next: WalPosition,
    },
}

/// The rules between live entries, fed in position order. Holds one
/// (position, last offset) per partition, nothing per entry.
struct Checker {
    next_position: WalPosition,
    previous: Option<WalPosition>,
    last_by_partition: BTreeMap<TopicPartition, (WalPosition, i64)>,
}

impl Checker {
    fn new(next_position: WalPosition) -> Checker {
        Checker {
            next_position,
            previous: None,
            last_by_partition: BTreeMap::new(),
        }
    }

    fn check(&mut self, entry: &WalEntry) -> Vec<Problem> {
        let mut problems = Vec::new();
        let position = entry.position();
        if let Some(previous) = self.previous {
            if position <= previous {
                problems.push(Problem::PositionsOutOfOrder { position, previous });
            }
        }
        self.previous = Some(position);
        if position >= self.next_position {
            problems.push(Problem::PastNextPosition {
                position,
                next: self.next_position,
            });
        }
        let batch = match entry {
            WalEntry::Valid { batch, .. } => batch,
            WalEntry::Corrupted { reason, .. } => {
                // Its partition is unknown, so it takes no part in the
                // ordering rules.
                problems.push(Problem::Corrupted {
                    position,
                    reason: reason.clone(),
                });
                return problems;
            }
        };
        let tp = tp_of(batch);
        let Some((first, last)) = first_last(batch) else {
            problems.push(Problem::EmptyBatch { position, tp });
            return problems;
        };
        let mut previous_offset: Option<i64> = None;
        for r in &batch.records {
            if r.offset < 0 {
                problems.push(Problem::NegativeOffset {
                    position,
                    tp: tp.clone(),
                    offset: r.offset,
                });
            }
            if let Some(previous) = previous_offset {
                if r.offset <= previous {
                    problems.push(Problem::OffsetsNotIncreasing {
                        position,
                        tp: tp.clone(),
                        previous,
                        offset: r.offset,
                    });
                }
            }
            previous_offset = Some(r.offset);
        }
        if let Some(&(previous_position, previous_last)) = self.last_by_partition.get(&tp) {
            if first <= previous_last {
                problems.push(Problem::PartitionGoesBack {
                    position,
                    tp: tp.clone(),
                    first,
                    previous_position,
                    previous_last,
                });
            }
        }
        // Later batches are compared with the furthest offset seen, so one
        // bad batch does not hide (or fake) problems in the next.
        let furthest = match self.last_by_partition.get(&tp) {
            Some(&(p, l)) if l >= last => (p, l),
            _ => (position, last),
        };
        self.last_by_partition.insert(tp, furthest);
        problems
    }
}

impl Wal {
    /// Calls `each` on every live entry in position order, one page of
    /// `page` entries in memory at a time, and counts it in `listing`.
    /// Stops at the first error, `each`'s or the WAL's.
    pub(crate) fn list_entries<E: From<WalError>>(
        &self,
        page: usize,
        listing: &mut Listing,
        mut each: impl FnMut(&WalEntry) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut from = 0;
        loop {
            let entries = self.read_from(from, page)?;
            let Some(last) = entries.last() else {
                return Ok(());
            };
            let next = last.position().checked_add(1);
            for entry in &entries {
                listing.add(entry);
                each(entry)?;
            }
            match next {
                Some(next) => from = next,
                None => return Ok(()),
            }
        }
    }

    /// Calls `each` on every quarantined entry (position, raw bytes),
    /// oldest first, one at a time, and counts it in `listing`.
    pub(crate) fn list_quarantined<E: From<WalError>>(
        &self,
        listing: &mut Listing,
        mut each: impl FnMut(WalPosition, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for item in self.quarantined_iter() {
            let (position, raw) = item?;
            listing.add_quarantined(&raw);
            each(position, &raw)?;
        }
        Ok(())
    }

    /// Checks every live entry (its frame, and the rules between entries),
    /// then every quarantined one, calling `report` on each problem as it
    /// is found; returns the totals of what was checked.
    pub(crate) fn check_entries<E: From<WalError>>(
        &self,
        page: usize,
        mut report: impl FnMut(&Problem) -> Result<(), E>,
    ) -> Result<Listing, E> {
        let next = self.next_position();
        let mut checker = Checker::new(next);
        let mut listing = Listing::default();
        self.list_entries::<E>(page, &mut listing, |entry| {
            for problem in checker.check(entry) {
                report(&problem)?;
            }
            Ok(())
        })?;
        self.list_quarantined::<E>(&mut listing, |position, _raw| {
            let mut found = Vec::new();
            if position >= next {
                found.push(Problem::QuarantinedPastNext { position, next });
            }
            let live = self.read_from(position, 1)?;
            if live.first().map(WalEntry::position) == Some(position) {
                found.push(Problem::QuarantinedAndLive { position });
            }
            for problem in found {
                report(&problem)?;
            }
            Ok(())
        })?;
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn valid(position: WalPosition, partition: i32, offsets: &[i64]) -> WalEntry {
        WalEntry::Valid {
            position,
            batch: Batch {
                topic: "orders".into(),
                partition,
                records: offsets
                    .iter()
                    .map(|&offset| Record {
                        offset,
                        timestamp: None,
                        key: None,
                        value: Some(vec![1]),
                        headers: vec![],
                    })
                    .collect(),
            },
            stored_bytes: 20,
        }
    }

    fn check_all(entries: &[WalEntry]) -> Vec<Problem> {
        let mut checker = Checker::new(100);
        entries.iter().flat_map(|e| checker.check(e)).collect()
    }

    #[test]
    fn interleaved_partitions_each_moving_forward_are_sound() {
        let problems = check_all(&[
            valid(0, 0, &[0, 1, 2]),
            valid(1, 1, &[0, 5]),
            valid(2, 0, &[3, 7]),
            WalEntry::Corrupted {
                position: 3,
                reason: CorruptionReason::TooShort { len: 1 },
                stored_bytes: 1,
            },
            valid(4, 1, &[6]),
        ]);
        assert_eq!(
            problems,
            vec![Problem::Corrupted {
                position: 3,
                reason: CorruptionReason::TooShort { len: 1 }
            }]
        );
    }

    #[test]
    fn a_batch_that_goes_back_in_its_partition_is_named_with_the_one_before() {
        let problems = check_all(&[
            valid(0, 0, &[0, 1, 2]),
            valid(1, 1, &[0]),
            valid(2, 0, &[2, 3]),
        ]);
        assert_eq!(
            problems,
            vec![Problem::PartitionGoesBack {
                position: 2,
                tp: TopicPartition::new("orders", 0),
                first: 2,
                previous_position: 0,
                previous_last: 2,
            }]
        );
    }

    #[test]
    fn offsets_inside_a_batch_must_strictly_increase() {
        let problems = check_all(&[valid(0, 0, &[4, 4, 3])]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| matches!(p, Problem::OffsetsNotIncreasing { position: 0, .. })));
    }

    #[test]
    fn empty_batches_negative_offsets_and_positions_past_next_are_named() {
        let problems = check_all(&[valid(5, 0, &[]), valid(6, 1, &[-1]), valid(100, 2, &[0])]);
        assert!(matches!(
            problems[0],
            Problem::EmptyBatch { position: 5, .. }
        ));
        assert!(matches!(
            problems[1],
            Problem::NegativeOffset {
                position: 6,
                offset: -1,
                ..
            }
        ));
        assert!(matches!(
            problems[2],
            Problem::PastNextPosition {
                position: 100,
                next: 100
            }
        ));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
