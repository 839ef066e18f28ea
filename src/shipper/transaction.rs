//! One target transaction: begin, produce the batches' records, produce one
//! checkpoint per source partition they touched, wait for the deliveries,
//! commit. Also the small transactions of replays and gaps
//! ([`Shipper::in_transaction`]) and the producer calls they all share.
//!
//! Invariants: a transaction's records and the checkpoints that move past
//! them commit together or not at all; a batch the target wholly has gets
//! no checkpoint, so checkpoints only move forward; only the records the
//! plan (`fate`) marks `Send` are produced, dead letters go to `dlq.topic`
//! at most; nothing is committed while a record is unsettled
//! ([`Shipper::await_deliveries`]).
//!
//! Called by the retry loop (`retry`: [`Shipper::try_transaction`]), by
//! `replay`, `gaps` and `dead_letter` (the `send*` helpers).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::delivery::NOT_A_RECORD;
use super::fate::{BatchPlan, Fate};
use super::limits::RecordLimits;
use super::retry::{backoff, classify, Recovery, TxnFailure};
use super::{Shipper, CALL_TIMEOUT};
use crate::checkpoint::{self, Checkpoint};
use crate::config::Partitioning;
use crate::format;
use crate::kafka::refused_for_good;
use crate::offsets::map::{self, RunsBuilder};
use crate::record::{Record, TopicPartition};

/// Between two looks at whether a transaction's records are all delivered.
/// A sleep, not a poll or a flush: rust-rdkafka passes a poll's remaining
/// time to librdkafka in whole milliseconds, so a 1 ms poll spins, and each
/// flush wakes every broker thread.
const DELIVERY_CHECK_INTERVAL: Duration = Duration::from_millis(1);

/// What one committed transaction did: the new checkpoints, and records
/// and bytes shipped per source partition.
pub(super) struct Committed {
    pub(super) progress: BTreeMap<TopicPartition, Checkpoint>,
    pub(super) shipped: BTreeMap<TopicPartition, (u64, u64)>,
}

impl Shipper {
    /// One attempt: begin, produce, checkpoint, commit. Returns the new progress.
    pub(super) fn try_transaction(
        &mut self,
        plan: &[BatchPlan<'_>],
        limits: &RecordLimits,
    ) -> Result<Committed, TxnFailure> {
        self.producer.context().clear();
        let mut sent = Vec::new();
        self.attempt(plan, limits, &mut sent)
            .map_err(|mut failure| {
                // Delivery reports of a failed commit may still be on their way.
                let _ = self.producer.flush(Duration::from_secs(1));
                failure
                    .refused
                    .extend(
                        self.producer
                            .context()
                            .take()
                            .into_iter()
                            .filter_map(|(i, code)| {
                                sent.get(i).map(|(batch, offset)| (*batch, *offset, code))
                            }),
                    );
                failure
            })
    }

    /// The body of [`Self::try_transaction`]; `sent` collects (batch index,
    /// offset) per record sent, whose position is its delivery opaque.
    fn attempt(
        &mut self,
        plan: &[BatchPlan<'_>],
        limits: &RecordLimits,
        sent: &mut Vec<(usize, i64)>,
    ) -> Result<Committed, TxnFailure> {
        let began = Instant::now();
        self.producer.begin_transaction()?;
        let mut progress = BTreeMap::new();
        let mut shipped: BTreeMap<TopicPartition, (u64, u64)> = BTreeMap::new();
        let mut records = 0u64;
        let mut refused_now = Vec::new();
        for (index, planned) in plan.iter().enumerate() {
            // Wholly delivered already: writing its checkpoint would move progress backwards.
            if planned.wholly_delivered() {
                continue;
            }
            let batch = planned.batch;
            self.bandwidth.take(
                planned
                    .fresh_records()
                    .iter()
                    .map(Record::payload_len)
                    .sum(),
            );
            let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
            let counts = shipped.entry(tp.clone()).or_default();
            for (record, fate) in planned.fates() {
                match fate {
                    Fate::Delivered => continue,
                    Fate::DeadLetter { .. } => {
                        if let Some(dlq_topic) = &self.settings.dlq_topic {
                            let limit = limits
                                .get(&batch.topic)
                                .map_or(self.settings.record_max_bytes, |(l, _)| *l);
                            self.copy_to_dlq_topic(dlq_topic, batch, record, limit)?;
                        }
                        continue;
                    }
                    Fate::Send => {}
                }
                match self.send_record(&batch.topic, batch.partition, record, sent.len()) {
                    Ok(()) => {
                        sent.push((index, record.offset));
                        records += 1;
                        counts.0 += 1;
                        counts.1 += record.payload_len() as u64;
                    }
                    // librdkafka can refuse a record at once (a topic it knows is missing,
                    // a record over its own limit): note it, and name them all below.
                    Err(KafkaError::MessageProduction(code)) if refused_for_good(code) => {
                        refused_now.push((index, record.offset, code));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(next) = batch.next_offset() {
                progress.insert(
                    tp,
                    Checkpoint {
                        next_offset: next,
                        wal_position: planned.position,
                    },
                );
            }
        }
        if let Some((_, _, code)) = refused_now.first() {
            return Err(TxnFailure {
                error: KafkaError::MessageProduction(*code),
                recovery: Recovery::AbortAndRewind,
                refused: refused_now,
            });
        }
        for (tp, cp) in &progress {
            self.send_to_checkpoint_topic(
                &checkpoint::encode_key(&self.settings.relay_id, tp),
                &checkpoint::encode_value(*cp),
            )?;
        }
        self.send_map_entries(plan, sent, &progress)?;
        let produced = began.elapsed();
        self.await_deliveries()?;
        let settled = began.elapsed();
        self.commit()?;
        // Where a transaction's time goes, for tuning over long links.
        tracing::debug!(
            records,
            produce_ms = produced.as_millis() as u64,
            settle_ms = (settled - produced).as_millis() as u64,
            commit_ms = (began.elapsed() - settled).as_millis() as u64,
            "transaction committed"
        );
        self.stats.records += records;
        Ok(Committed { progress, shipped })
    }

    /// With `[offsets]`: once every record is delivered (their target
    /// offsets are known only then), the offset map's entries of each
    /// partition the transaction moves (`offsets::map`). `sent` is
    /// [`Self::attempt`]'s.
    fn send_map_entries(
        &self,
        plan: &[BatchPlan<'_>],
        sent: &[(usize, i64)],
        progress: &BTreeMap<TopicPartition, Checkpoint>,
    ) -> Result<(), TxnFailure> {
        let Some(offsets) = &self.settings.offsets else {
            return Ok(());
        };
        self.await_deliveries()?;
        let targets = self.producer.context().take_offsets(sent.len());
        let mut runs = RunsBuilder::default();
        let mut batch_tp: Option<(usize, TopicPartition)> = None;
        for (&(index, source), target) in sent.iter().zip(targets) {
            // Delivered with acks=all: a report without an offset would
            // leave the map unable to name the record's place. Never seen;
            // if it were, shipping again is safe and the map stays exact.
            let Some(target) = target.filter(|t| *t >= 0) else {
                return Err(TxnFailure {
                    error: KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
                    recovery: Recovery::AbortAndRewind,
                    refused: Vec::new(),
                });
            };
            if batch_tp.as_ref().is_none_or(|(i, _)| *i != index) {
                let batch = plan[index].batch;
                batch_tp = Some((
                    index,
                    TopicPartition::new(batch.topic.clone(), batch.partition),
                ));
            }
            if let Some((_, tp)) = &batch_tp {
                runs.add(tp, source, target);
            }
        }
        for (tp, cp) in progress {
            let from = self.delivered.get(tp).map(|c| c.next_offset);
            let key = checkpoint::encode_key(&self.settings.relay_id, tp);
            for entry in runs.entries(tp, from, cp.next_offset) {
                let value = map::encode_value(&entry);
                self.send(
                    BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                        &offsets.map_topic,
                        NOT_A_RECORD,
                    )
                    .key(&key)
                    .payload(&value),
                )?;
            }
        }
        Ok(())
    }

    /// Commits, retrying the commit itself on retriable errors (a timed-out
    /// commit may still be completing; aborting it would fail).
    /// Called once every record is settled ([`Self::await_deliveries`]).
    fn commit(&self) -> Result<(), TxnFailure> {
        let mut delays = backoff(&self.settings.retry).take(5);
        loop {
            match self.producer.commit_transaction(CALL_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(e) if classify(&e) == Recovery::Retry => match delays.next() {
                    Some(delay) => {
                        tracing::warn!(error = %e, retry_in = ?delay, "commit did not complete; retrying the commit");
                        std::thread::sleep(delay);
                    }
                    // Outcome unknown: a rebuild fences us and re-reads the checkpoints, which tell.
                    None => {
                        return Err(TxnFailure {
                            error: e,
                            recovery: Recovery::Rebuild,
                            refused: Vec::new(),
                        })
                    }
                },
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits until librdkafka has settled every record of the open
    /// transaction, delivered or failed (the producer's polling thread
    /// serves the reports). `commit_transaction` waits for them too, but
    /// rust-rdkafka's flush looks only every 100 ms: between looks it polls,
    /// and its poll returns at its timeout, not at the first event. That
    /// cost up to 100 ms per transaction (docs/benchmarks.md, "The commit's
    /// 100 ms"). Here one flush look sends what lingers, then the count of
    /// records not yet settled is read every millisecond. Waits up to the
    /// delivery deadline; a timeout is the flush error `commit_transaction`
    /// would have returned (and makes `retry` try a smaller transaction).
    fn await_deliveries(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + self.delivery_deadline();
        match self.producer.flush(Duration::ZERO) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) => {}
            settled => return settled,
        }
        while self.producer.in_flight_count() > 0 {
            if Instant::now() >= deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            std::thread::sleep(DELIVERY_CHECK_INTERVAL);
        }
        Ok(())
    }

    /// Produces one source record to the target, shaped by `format` and
    /// `partitioning` (inside the open transaction).
    pub(super) fn send_record(
        &self,
        source_topic: &str,
        partition: i32,
        record: &Record,
        opaque: usize,
    ) -> Result<(), KafkaError> {
        let target_topic = self.settings.target_topic(source_topic);
        let value = format::target_value(self.settings.format, source_topic, partition, record);
        let mut out = BaseRecord::<[u8], [u8], usize>::with_opaque_to(target_topic, opaque);
        if let Some(k) = record.key.as_deref() {
            out = out.key(k);
        }
        if let Some(v) = value.as_deref() {
            out = out.payload(v);
        }
        if self.settings.partitioning == Partitioning::Same {
            out = out.partition(partition);
        }
        if format::copies_metadata(self.settings.format) {
            if let Some(ts) = record.timestamp {
                out = out.timestamp(ts);
            }
            if !record.headers.is_empty() {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for h in &record.headers {
                    headers = headers.insert(KafkaHeader {
                        key: &h.key,
                        value: h.value.as_deref(),
                    });
                }
                out = out.headers(headers);
            }
        }
        self.send(out)
    }

    /// A checkpoint or replay marker, inside the open transaction.
    pub(super) fn send_to_checkpoint_topic(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), KafkaError> {
        self.send(
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(
                &self.settings.checkpoint_topic,
                NOT_A_RECORD,
            )
            .key(key)
            .payload(value),
        )
    }

    /// Enqueues one record, waiting while librdkafka's local queue is full.
    pub(super) fn send<'a>(
        &self,
        mut record: BaseRecord<'a, [u8], [u8], usize>,
    ) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// One small transaction around `send`, committed, or aborted on error.
    pub(super) fn in_transaction(
        &mut self,
        send: impl FnOnce(&Self) -> Result<(), KafkaError>,
    ) -> Result<(), KafkaError> {
        self.producer.begin_transaction()?;
        let done = send(self).and_then(|()| self.producer.commit_transaction(CALL_TIMEOUT));
        if done.is_err() {
            let _ = self.producer.abort_transaction(CALL_TIMEOUT);
        }
        done
    }
}
