//! The shipping side of the dead-letter queue (the store is `crate::dlq`):
//! records the target cannot take are moved to the queue instead of being
//! sent, and copied to `dlq.topic` when one is set.
//!
//! Records go there when larger than the target accepts (`limits`), before
//! their first attempt, or when the target refused them for good
//! `retry.record_attempts` times under `retry.on_exhausted = "dead_letter"`.
//! Invariants: a dead letter is stored durably (fsync'd) before the
//! transaction that skips it commits; a record in the queue, or replayed
//! from it, is never sent from the WAL again ([`Shipper::set_aside`]); the
//! copy to `dlq.topic` travels in the transaction that skips the record, so
//! it lands there exactly once.
//!
//! Called by `fate` ([`Shipper::set_aside`], per record, only while the
//! queue or the replayed set holds anything), by the retry loop (`retry`:
//! storing the letters) and by `transaction` (the `dlq.topic` copy).

use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;

use super::delivery::NOT_A_RECORD;
use super::fate::{BatchPlan, Fate};
use super::limits::RecordLimits;
use super::{Shipper, ShipperError};
use crate::dlq::{DeadLetter, DlqError};
use crate::record::{Batch, Record, TopicPartition};

impl Shipper {
    /// Whether the record at `offset` of `tp` is set aside already: in the
    /// dead-letter queue, or replayed from it, so not to be sent from the
    /// WAL again.
    pub(super) fn set_aside(&self, tp: &TopicPartition, offset: i64) -> Result<bool, DlqError> {
        Ok(self.replayed.contains(&format!("{tp}/{offset}"))
            || self.dead_letters.contains(tp, offset)?)
    }

    /// `retry.on_exhausted = "dead_letter"`: moves the records the target
    /// refused for good to the dead-letter queue, durably, before the
    /// transaction that skips them is tried again.
    pub(super) fn dead_letter_refused(
        &mut self,
        plan: &[BatchPlan<'_>],
        refused: &[(usize, i64, RDKafkaErrorCode)],
        attempts: u32,
    ) -> Result<(), ShipperError> {
        for (index, offset, code) in refused {
            let Some(BatchPlan { batch, .. }) = plan.get(*index) else {
                continue;
            };
            let Some(record) = batch.records.iter().find(|r| r.offset == *offset) else {
                continue;
            };
            let letter = DeadLetter {
                topic: batch.topic.clone(),
                partition: batch.partition,
                record: record.clone(),
                reason: format!("the target refused it {attempts} times: {code:?} ({code})"),
                attempts,
                at_ms: crate::now_ms(),
            };
            if self.dead_letters.put(&letter)? {
                self.stats.dead_lettered += 1;
                self.shared.metrics.dead_lettered.inc();
                tracing::error!(
                    id = %letter.id(),
                    reason = %letter.reason,
                    "record dead-lettered: the target refuses it (retry.on_exhausted = \"dead_letter\"); see `kafka-relay dlq list`"
                );
            }
        }
        Ok(())
    }

    /// Moves the records `plan` found above their limit to the dead-letter
    /// queue (durably) before the transaction that will skip them commits.
    pub(super) fn dead_letter_oversized(
        &mut self,
        plan: &[BatchPlan<'_>],
        limits: &RecordLimits,
    ) -> Result<(), ShipperError> {
        for planned in plan {
            let batch = planned.batch;
            for (record, _) in planned
                .dead_letters()
                .filter(|(_, fate)| *fate == Fate::DeadLetter { too_large: true })
            {
                let (limit, which) = limits.get(&batch.topic).copied().unwrap_or_default();
                let letter = DeadLetter {
                    topic: batch.topic.clone(),
                    partition: batch.partition,
                    record: record.clone(),
                    reason: format!(
                        "record of {} bytes exceeds {which} ({limit})",
                        record.payload_len()
                    ),
                    attempts: 0,
                    at_ms: crate::now_ms(),
                };
                if self.dead_letters.put(&letter)? {
                    self.stats.dead_lettered += 1;
                    self.shared.metrics.dead_lettered.inc();
                    tracing::error!(
                        partition = %TopicPartition::new(batch.topic.clone(), batch.partition),
                        offset = record.offset,
                        bytes = record.payload_len(),
                        limit,
                        id = %letter.id(),
                        reason = %letter.reason,
                        "record dead-lettered: larger than the target accepts; see `kafka-relay dlq list`"
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes a dead letter to `dlq.topic` inside the open transaction, so
    /// it lands there exactly once, with the checkpoint that moves past it.
    /// Headers say where it came from and why; a value larger than the
    /// target accepts is left out (its size is given instead), or the copy
    /// would be refused too.
    pub(super) fn copy_to_dlq_topic(
        &self,
        dlq_topic: &str,
        batch: &Batch,
        record: &Record,
        limit: u64,
    ) -> Result<(), KafkaError> {
        let id = format!("{}/{}/{}", batch.topic, batch.partition, record.offset);
        let reason = match self.dead_letters.get(&id) {
            Ok(Some(letter)) => letter.reason,
            // Replayed already: not a dead letter any more.
            Ok(None) => return Ok(()),
            Err(e) => format!("(reason unreadable: {e})"),
        };
        let fits = record.payload_len() as u64 <= limit;
        let size = record.payload_len().to_string();
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 3);
        if fits {
            for h in &record.headers {
                headers = headers.insert(KafkaHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
        } else {
            headers = headers.insert(KafkaHeader {
                key: "kafka-relay-dlq-value-omitted-bytes",
                value: Some(size.as_bytes()),
            });
        }
        headers = headers
            .insert(KafkaHeader {
                key: "kafka-relay-dlq-source",
                value: Some(id.as_bytes()),
            })
            .insert(KafkaHeader {
                key: "kafka-relay-dlq-reason",
                value: Some(reason.as_bytes()),
            });
        let mut out = BaseRecord::<[u8], [u8], usize>::with_opaque_to(dlq_topic, NOT_A_RECORD)
            .headers(headers);
        if let Some(k) = record.key.as_deref().filter(|_| fits) {
            out = out.key(k);
        }
        if let Some(v) = record.value.as_deref().filter(|_| fits) {
            out = out.payload(v);
        }
        self.send(out)
    }
}
