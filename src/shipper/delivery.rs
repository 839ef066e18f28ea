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
//! The producer's context, called on librdkafka's delivery-report thread;
//! read by the shipper (`transaction`) after a failed commit.

use std::sync::Mutex;

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::ProducerContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::{refused_for_good, SecurityWatch};

/// The delivery opaque of records that are not source records (checkpoints, markers).
pub const NOT_A_RECORD: usize = usize::MAX;

#[derive(Default)]
pub struct DeliveryTracker {
    refused: Mutex<Vec<(usize, RDKafkaErrorCode)>>,
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
        let Err((error, _)) = result else { return };
        let Some(code) = error.rdkafka_error_code() else {
            return;
        };
        if index != NOT_A_RECORD && refused_for_good(code) {
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((index, code));
        }
    }
}

impl DeliveryTracker {
    /// Forgets earlier reports: called when a transaction begins.
    pub fn clear(&self) {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The records refused since the last `clear`, by index, with the reason.
    pub fn take(&self) -> Vec<(usize, RDKafkaErrorCode)> {
        std::mem::take(&mut *self.refused.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
