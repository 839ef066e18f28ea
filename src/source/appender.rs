//! The source's WAL appender: makes groups of batches durable on a thread of
//! its own, so that the source goes on polling while a group's fsync runs.
//!
//! Started by [`super::Source::run`], which sends it the groups and commits
//! the source offsets it hands back.
//!
//! Invariants:
//! - Groups are appended in the order the source sent them (one thread, one
//!   FIFO queue), so the WAL holds each partition's records in the order
//!   they were consumed.
//! - The source offsets after a group are handed back only once the group's
//!   fsync returned: an offset is never committed for a record the WAL could
//!   still lose.
//! - At most [`QUEUE_DEPTH`] groups wait while one is written; the source
//!   blocks on a full queue, so what is in memory stays bounded.
//! - A group's frame buffers go back to the source with its offsets, once
//!   written (`buffers`), so they are reused rather than freed.
//! - Groups the source sent before it stopped are still appended: the
//!   appender ends when the queue closes, not when `stop` is set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use super::{SourceError, SourceStats, DISK_RETRY};
use crate::ops::Shared;
use crate::record::TopicPartition;
use crate::wal::{FramedBatch, Wal, WalPosition};

/// Groups that may wait while one is written. One is enough to keep the
/// source polling through an fsync; more would only hold more memory.
pub const QUEUE_DEPTH: usize = 1;

/// A group that is now durable: the next source offset of each of its
/// partitions, and its frames' buffers for the source to reuse.
pub struct Durable {
    pub offsets: Vec<(TopicPartition, i64)>,
    pub buffers: Vec<Vec<u8>>,
}

pub struct Appender {
    wal: Wal,
    min_free_bytes: u64,
    shared: Shared,
    stats: SourceStats,
}

impl Appender {
    pub fn new(wal: Wal, min_free_bytes: u64, shared: Shared) -> Appender {
        Appender {
            wal,
            min_free_bytes,
            shared,
            stats: SourceStats::default(),
        }
    }

    /// Appends each group from `groups` (one fsync per group) and sends the
    /// offsets after it to `durable`, until the source closes the queue.
    /// `appended` is called after every append (it wakes the shipper).
    pub fn run(
        mut self,
        groups: Receiver<Vec<FramedBatch>>,
        durable: Sender<Durable>,
        stop: &AtomicBool,
        appended: &(dyn Fn() + Sync),
    ) -> Result<SourceStats, SourceError> {
        for batches in groups {
            let positions = self.append_durably(&batches, stop)?;
            let mut offsets = Vec::with_capacity(batches.len());
            for (batch, position) in batches.iter().zip(positions) {
                let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
                let count = batch.records as u64;
                let next = batch.next_offset.unwrap_or_default();
                self.shared
                    .metrics
                    .consumed(&tp, count, batch.payload_len as u64);
                tracing::debug!(partition = %tp, position, records = count, next_offset = next, "batch written to WAL");
                self.stats.records += count;
                self.stats.batches += 1;
                offsets.push((tp, next));
            }
            appended();
            let buffers = batches.into_iter().map(FramedBatch::into_buffer).collect();
            // The source outlives this thread, so this cannot fail; and its
            // commits feed lag monitoring only, correctness never reads them.
            let _ = durable.send(Durable { offsets, buffers });
        }
        Ok(self.stats)
    }

    /// Appends, first waiting while the WAL's filesystem is short of space
    /// (`wal.min_free_bytes`): the group stays in memory and the queue
    /// fills, so the source stops polling and intake pauses (librdkafka's
    /// prefetch queue is bounded) until space returns or the relay stops.
    /// Nothing is lost either way: what is not in the WAL was not committed
    /// anywhere and is read again.
    ///
    /// Waiting *before* the write matters: a write that fails for lack of
    /// space ends the run (with the reason) instead.
    fn append_durably(
        &mut self,
        batches: &[FramedBatch],
        stop: &AtomicBool,
    ) -> Result<Vec<WalPosition>, SourceError> {
        let mut short_since: Option<Instant> = None;
        loop {
            let free = fs4::available_space(self.wal.dir()).unwrap_or(u64::MAX);
            if free >= self.min_free_bytes {
                break;
            }
            if short_since.is_none() {
                self.shared.metrics.set_paused("disk_full", true);
                tracing::error!(
                    free_bytes = free,
                    min_free_bytes = self.min_free_bytes,
                    dir = %self.wal.dir().display(),
                    "disk almost full under the WAL: intake paused, nothing is lost; waiting for space"
                );
                short_since = Some(Instant::now());
            }
            if stop.load(Ordering::Relaxed) {
                return Err(SourceError::DiskFull {
                    dir: self.wal.dir().display().to_string(),
                    free,
                });
            }
            std::thread::sleep(DISK_RETRY);
        }
        if let Some(since) = short_since {
            self.shared.metrics.set_paused("disk_full", false);
            tracing::warn!(
                after_secs = since.elapsed().as_secs(),
                "disk space is back: intake resumed"
            );
        }
        Ok(self.wal.append_framed(batches)?)
    }
}
