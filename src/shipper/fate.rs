//! Each record's fate, decided in one pass over a transaction's batches:
//! the target has it already, it is a dead letter, or it is sent.
//!
//! [`Shipper::plan`] walks the batches once per attempt and returns a
//! [`BatchPlan`] per batch; the attempt (`transaction`), the dead-lettering
//! (`dead_letter`) and the retry loop read the plan, nothing else decides.
//! Invariants:
//! - The records below their partition's delivered offset (a prefix of the
//!   batch: offsets only grow) are [`Fate::Delivered`], never produced
//!   again (and a batch that is all `Delivered` gets no checkpoint).
//! - A record above its topic's limit (`limits`) is a dead letter, stored
//!   in the dead-letter queue before the first attempt; one in the queue
//!   already, or replayed from it, is a dead letter too. A dead letter is
//!   never sent from the WAL.
//! - Every other record is [`Fate::Send`].
//!
//! It is the hot path: a batch without dead letters costs no allocation, and
//! while the dead-letter queue and the replayed set are both empty, neither
//! is looked up.
//!
//! Called by the retry loop (`retry`) before each attempt, since a rebuild
//! re-reads the checkpoints and a refusal adds dead letters.

use super::limits::{oversized, RecordLimits};
use super::Shipper;
use crate::dlq::DlqError;
use crate::record::{Batch, Record, TopicPartition};
use crate::wal::WalPosition;

/// What becomes of one record of a transaction's batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Below its partition's checkpoint on the target: skipped.
    Delivered,
    /// Not sent; copied to `dlq.topic` instead, when one is set.
    /// `too_large`: above its topic's limit, dead-lettered before the first
    /// attempt; otherwise in the dead-letter queue already, or replayed.
    DeadLetter { too_large: bool },
    /// Produced in the transaction.
    Send,
}

/// One WAL batch of a transaction, with its records' fates.
pub(super) struct BatchPlan<'a> {
    pub(super) position: WalPosition,
    pub(super) batch: &'a Batch,
    /// How many of the first records are [`Fate::Delivered`].
    pub(super) delivered: usize,
    /// The dead letters after those, as (index into the batch's records,
    /// fate), in order; every other record after them is [`Fate::Send`].
    /// Empty, and unallocated, unless the batch holds a dead letter.
    dead_letters: Vec<(usize, Fate)>,
}

impl<'a> BatchPlan<'a> {
    /// Decides the fate of each record of `batch`, whose partition the
    /// target has up to `delivered_offset`. `set_aside` says whether a
    /// record not delivered and not too large is a dead letter already.
    fn decide<E>(
        position: WalPosition,
        batch: &'a Batch,
        delivered_offset: i64,
        limits: &RecordLimits,
        mut set_aside: impl FnMut(&Record) -> Result<bool, E>,
    ) -> Result<BatchPlan<'a>, E> {
        let delivered = batch
            .records
            .iter()
            .take_while(|r| r.offset < delivered_offset)
            .count();
        let mut dead_letters = Vec::new();
        for (index, record) in batch.records.iter().enumerate().skip(delivered) {
            if oversized(limits, &batch.topic, record) {
                dead_letters.push((index, Fate::DeadLetter { too_large: true }));
            } else if set_aside(record)? {
                dead_letters.push((index, Fate::DeadLetter { too_large: false }));
            }
        }
        Ok(BatchPlan {
            position,
            batch,
            delivered,
            dead_letters,
        })
    }

    /// Whether the target has every record already.
    pub(super) fn wholly_delivered(&self) -> bool {
        self.delivered == self.batch.records.len()
    }

    /// The records the target does not have yet.
    pub(super) fn fresh_records(&self) -> &'a [Record] {
        &self.batch.records[self.delivered..]
    }

    /// Every record of the batch with its fate, in order.
    pub(super) fn fates(&self) -> impl Iterator<Item = (&'a Record, Fate)> + '_ {
        let mut dead_letters = self.dead_letters.iter().peekable();
        self.batch
            .records
            .iter()
            .enumerate()
            .map(move |(index, record)| {
                let fate = if index < self.delivered {
                    Fate::Delivered
                } else {
                    dead_letters
                        .next_if(|(dead, _)| *dead == index)
                        .map_or(Fate::Send, |(_, fate)| *fate)
                };
                (record, fate)
            })
    }

    /// The dead letters alone, with their fates.
    pub(super) fn dead_letters(&self) -> impl Iterator<Item = (&'a Record, Fate)> + '_ {
        let records = self.batch.records.as_slice();
        self.dead_letters
            .iter()
            .map(move |(index, fate)| (&records[*index], *fate))
    }
}

impl Shipper {
    /// The fate of every record of `batches`, one [`BatchPlan`] per batch,
    /// from the delivered progress, `limits` and the dead letters as they
    /// are now.
    pub(super) fn plan<'a>(
        &self,
        batches: &'a [(WalPosition, Batch)],
        limits: &RecordLimits,
    ) -> Result<Vec<BatchPlan<'a>>, DlqError> {
        let none_set_aside = self.dead_letters.is_empty() && self.replayed.is_empty();
        batches
            .iter()
            .map(|(position, batch)| {
                let delivered = self.delivered_offset(&batch.topic, batch.partition);
                let tp = (!none_set_aside)
                    .then(|| TopicPartition::new(batch.topic.clone(), batch.partition));
                BatchPlan::decide(*position, batch, delivered, limits, |record| {
                    tp.as_ref()
                        .map_or(Ok(false), |tp| self.set_aside(tp, record.offset))
                })
            })
            .collect()
    }

    fn delivered_offset(&self, topic: &str, partition: i32) -> i64 {
        self.delivered
            .get(&TopicPartition::new(topic, partition))
            .map_or(i64::MIN, |c| c.next_offset)
    }

    /// Counts and logs, per batch, the records not sent again because the
    /// target's checkpoints already cover them.
    pub(super) fn note_skipped(&mut self, plan: &[BatchPlan<'_>]) {
        for BatchPlan {
            position,
            batch,
            delivered: skipped,
            ..
        } in plan
        {
            if *skipped == 0 {
                continue;
            }
            self.stats.skipped_delivered += *skipped as u64;
            tracing::info!(
                partition = %TopicPartition::new(batch.topic.clone(), batch.partition),
                first_offset = batch.records.first().map(|r| r.offset),
                last_offset = batch.records.get(skipped - 1).map(|r| r.offset),
                records = skipped,
                wal_position = position,
                "recovery skipped already-delivered records"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn batch(offsets: std::ops::Range<i64>, big: &[i64]) -> Batch {
        Batch {
            topic: "t".to_string(),
            partition: 0,
            records: offsets
                .map(|offset| Record {
                    offset,
                    timestamp: None,
                    key: None,
                    value: Some(vec![0; if big.contains(&offset) { 100 } else { 10 }]),
                    headers: Vec::new(),
                })
                .collect(),
        }
    }

    fn fates(plan: &BatchPlan<'_>) -> Vec<(i64, Fate)> {
        plan.fates().map(|(r, fate)| (r.offset, fate)).collect()
    }

    const TOO_LARGE: Fate = Fate::DeadLetter { too_large: true };
    const SET_ASIDE: Fate = Fate::DeadLetter { too_large: false };

    #[test]
    fn each_record_gets_one_fate_in_order() {
        let b = batch(10..16, &[13]);
        let limits = RecordLimits::from([("t".to_string(), (50, "record.max_bytes"))]);
        let mut asked = Vec::new();
        let plan = BatchPlan::decide(7, &b, 12, &limits, |r| {
            asked.push(r.offset);
            Ok::<_, Infallible>(r.offset == 15)
        })
        .unwrap();
        assert_eq!(
            fates(&plan),
            [
                (10, Fate::Delivered),
                (11, Fate::Delivered),
                (12, Fate::Send),
                (13, TOO_LARGE),
                (14, Fate::Send),
                (15, SET_ASIDE),
            ]
        );
        // Neither the delivered records nor the too large one are looked up.
        assert_eq!(asked, [12, 14, 15]);
        assert_eq!(plan.fresh_records().len(), 4);
        assert!(!plan.wholly_delivered());
        let dead: Vec<_> = plan.dead_letters().map(|(r, f)| (r.offset, f)).collect();
        assert_eq!(dead, [(13, TOO_LARGE), (15, SET_ASIDE)]);
    }

    #[test]
    fn a_batch_the_target_has_is_wholly_delivered_and_a_plain_one_allocates_nothing() {
        let b = batch(0..3, &[1]);
        let limits = RecordLimits::from([("t".to_string(), (50, "record.max_bytes"))]);
        let plan = BatchPlan::decide(1, &b, 3, &limits, |_| Ok::<_, Infallible>(true)).unwrap();
        assert!(plan.wholly_delivered());
        assert!(fates(&plan).iter().all(|(_, f)| *f == Fate::Delivered));
        assert!(plan.fresh_records().is_empty());
        assert_eq!(plan.dead_letters.capacity(), 0);

        // No limit for the topic, nothing set aside: all sent, no allocation.
        let plan = BatchPlan::decide(1, &b, i64::MIN, &RecordLimits::new(), |_| {
            Ok::<_, Infallible>(false)
        })
        .unwrap();
        assert!(fates(&plan).iter().all(|(_, f)| *f == Fate::Send));
        assert_eq!(plan.dead_letters.capacity(), 0);
    }
}
