//! Which records the target refused for good, read from the producer's
//! delivery reports.
//!
//! Every record the shipper sends carries its index in the open transaction
//! as the delivery opaque; a report with an error that retrying cannot fix
//! (too large, invalid, not authorised, no such topic) is remembered here so
//! the shipper can name the records behind a failed transaction and, under
//! `retry.on_exhausted = "dead_letter"`, set them aside.
//!
//! Invariants: only records sent from the WAL are remembered (checkpoints,
//! markers, replayed letters and `dlq.topic` copies carry [`NOT_A_RECORD`]),
//! and only for errors that retrying cannot fix ([`crate::kafka::refused_for_good`]); what
//! is remembered is cleared as each transaction attempt begins.
//!
//! With the offset map on (`offsets`), it also keeps the target offset of
//! every delivered source record, by index, for the transaction's map entries.
//!
//! The producer's context, called on librdkafka's delivery-report thread;
//! read by the shipper (`transaction`) after a failed commit.

use std::sync::Mutex;

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;

use crate::kafka::{refused_for_good, SecurityWatch};

/// The delivery opaque of records that are not source records (checkpoints, markers).
pub const NOT_A_RECORD: usize = usize::MAX;

#[derive(Default)]
pub struct DeliveryTracker {
    refused: Mutex<Vec<(usize, RDKafkaErrorCode)>>,
    /// `(index, target offset)` of delivered records; `None` = not kept.
    offsets: Option<Mutex<Vec<(usize, i64)>>>,
    /// A TLS or SASL failure of the producer's connections.
    pub security: SecurityWatch,
}

impl ClientContext for DeliveryTracker {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.security.on_log(level, message);
        DefaultClientContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.security.on_error(&error, reason);
        DefaultClientContext.error(error, reason);
    }
}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, index: usize) {
        let error = match result {
            Ok(message) => {
                if let (Some(offsets), true) = (&self.offsets, index != NOT_A_RECORD) {
                    lock(offsets).push((index, message.offset()));
                }
                return;
            }
            Err((error, _)) => error,
        };
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        if index != NOT_A_RECORD && refused_for_good(code) {
            lock(&self.refused).push((index, code));
        }
    }
}

impl DeliveryTracker {
    /// A tracker that keeps delivered records' target offsets if `offsets`.
    pub fn new(offsets: bool) -> DeliveryTracker {
        DeliveryTracker {
            offsets: offsets.then(Mutex::default),
            ..DeliveryTracker::default()
        }
    }

    /// Forgets earlier reports: called when a transaction begins.
    pub fn clear(&self) {
        lock(&self.refused).clear();
        if let Some(offsets) = &self.offsets {
            lock(offsets).clear();
        }
    }

    /// The records refused since the last `clear`, by index, with the reason.
    pub fn take(&self) -> Vec<(usize, RDKafkaErrorCode)> {
        std::mem::take(&mut *lock(&self.refused))
    }

    /// The target offset of each record delivered since the last `clear`,
    /// by index (`None` where none was reported); empty when not kept.
    pub fn take_offsets(&self, records: usize) -> Vec<Option<i64>> {
        let mut by_index = vec![None; records];
        if let Some(offsets) = &self.offsets {
            for (index, offset) in std::mem::take(&mut *lock(offsets)) {
                if let Some(slot) = by_index.get_mut(index) {
                    *slot = Some(offset);
                }
            }
        }
        by_index
    }
}

/// The reports are plain data: a panic elsewhere leaves them usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
