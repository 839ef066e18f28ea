//! The source's assignment: which partitions it reads and from where.
//!
//! The consumer is assigned partitions by hand (`assign`, no consumer
//! group), so this is the one record of what it reads: where each
//! partition was assigned, and the offset after the last record read
//! from it. `gaps` compares those positions with the source's offsets;
//! discovery adds partitions found after the start.
//!
//! Invariants:
//! - A partition's position only moves forward: past records read, or
//!   past a gap that the policy allowed to skip.
//! - Changes go through incremental (un)assignment of the partitions
//!   concerned only, so every other partition keeps its fetch position
//!   (for one assigned at `End` or a time, librdkafka alone knows it).
//!
//! Owned by the source thread.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::SourceError;
use crate::record::TopicPartition;

/// Partitions assigned at once up to which each gets a line at info level.
const LOGGED_ONE_BY_ONE: usize = 32;

pub struct Assignment {
    /// Where each partition was assigned; its position while nothing has
    /// been read from it.
    assigned: BTreeMap<TopicPartition, Offset>,
    /// The offset after the last record read (or after a skipped gap).
    next: BTreeMap<TopicPartition, i64>,
    /// How far the relay had copied partitions it does not read now: gone
    /// at the start, or removed since. One that comes back resumes there,
    /// never from its first record: offsets below it are delivered as far
    /// as the shipper's checkpoints know, so re-reading them would skip
    /// them silently, and resuming at the old position lets `gaps` report
    /// a log that now ends below it.
    left: BTreeMap<TopicPartition, i64>,
}

impl Assignment {
    /// Assigns `positions` to `consumer`; `known` is the progress the relay
    /// has for any partition (checkpoints and WAL), assigned or not.
    pub fn start<C: ConsumerContext>(
        consumer: &BaseConsumer<C>,
        positions: &BTreeMap<TopicPartition, Offset>,
        known: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Assignment, SourceError> {
        let mut assignment = Assignment {
            assigned: BTreeMap::new(),
            next: BTreeMap::new(),
            left: known
                .iter()
                .filter(|(tp, _)| !positions.contains_key(tp))
                .map(|(tp, n)| (tp.clone(), *n))
                .collect(),
        };
        assignment.add(consumer, positions)?;
        Ok(assignment)
    }

    /// Adds partitions to the consumer's assignment at their positions.
    /// More than [`LOGGED_ONE_BY_ONE`] are logged as one line: a topic of
    /// thousands of partitions made as many lines at every start.
    pub fn add<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        positions: &BTreeMap<TopicPartition, Offset>,
    ) -> Result<(), SourceError> {
        let mut list = TopicPartitionList::new();
        let one_by_one = positions.len() <= LOGGED_ONE_BY_ONE;
        for (tp, offset) in positions {
            list.add_partition_offset(&tp.topic, tp.partition, *offset)
                .map_err(SourceError::Assign)?;
            if one_by_one {
                tracing::info!(partition = %tp, start = ?offset, "source partition assigned");
            } else {
                tracing::debug!(partition = %tp, start = ?offset, "source partition assigned");
            }
        }
        if !one_by_one {
            tracing::info!(
                partitions = positions.len(),
                "source partitions assigned (each at debug level)"
            );
        }
        consumer
            .incremental_assign(&list)
            .map_err(SourceError::Assign)?;
        for (tp, offset) in positions {
            self.left.remove(tp);
            self.assigned.insert(tp.clone(), *offset);
            if let Offset::Offset(n) = offset {
                self.next.insert(tp.clone(), *n);
            }
        }
        Ok(())
    }

    /// Where a partition found after the start begins: where the relay
    /// left it if it copied it before, else its first record.
    pub fn start_of(&self, tp: &TopicPartition) -> Offset {
        self.left
            .get(tp)
            .map_or(Offset::Beginning, |n| Offset::Offset(*n))
    }

    /// Partitions the relay copied before but does not read now.
    pub fn left(&self) -> impl Iterator<Item = &TopicPartition> {
        self.left.keys()
    }

    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.assigned.keys()
    }

    pub fn contains(&self, tp: &TopicPartition) -> bool {
        self.assigned.contains_key(tp)
    }

    /// Where `tp` reads next; `None` if it is not assigned.
    pub fn position(&self, tp: &TopicPartition) -> Option<Offset> {
        match self.next.get(tp) {
            Some(n) => Some(Offset::Offset(*n)),
            None => self.assigned.get(tp).copied(),
        }
    }

    /// Notes that records of `tp` up to `next` (exclusive) were read.
    pub fn read_up_to(&mut self, tp: &TopicPartition, next: i64) {
        let at = self.next.entry(tp.clone()).or_insert(next);
        *at = (*at).max(next);
    }

    /// Assigns `tp` anew at `at`: librdkafka stops fetching a partition
    /// whose position it reported out of range, and a stopped partition
    /// cannot be sought.
    pub fn restart_at<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tp: &TopicPartition,
        at: Offset,
    ) -> Result<(), SourceError> {
        self.unassign(consumer, tp)?;
        if let Offset::Offset(n) = at {
            self.next.insert(tp.clone(), n);
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&tp.topic, tp.partition, at)
            .map_err(SourceError::Assign)?;
        consumer
            .incremental_assign(&list)
            .map_err(SourceError::Assign)
    }

    /// Stops reading `tp` for good.
    pub fn remove<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) -> Result<(), SourceError> {
        self.unassign(consumer, tp)?;
        if let Some(Offset::Offset(n)) = self.position(tp) {
            self.left.insert(tp.clone(), n);
        }
        self.assigned.remove(tp);
        self.next.remove(tp);
        Ok(())
    }

    fn unassign<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tp: &TopicPartition,
    ) -> Result<(), SourceError> {
        let mut list = TopicPartitionList::new();
        list.add_partition(&tp.topic, tp.partition);
        consumer
            .incremental_unassign(&list)
            .map_err(SourceError::Assign)
    }
}
