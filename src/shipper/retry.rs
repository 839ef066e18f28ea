//! The retry state machine: one set of WAL batches is shipped in one
//! transaction, again and again, until it commits, the retry policy is
//! spent, or the relay stops.
//!
//! A failed attempt is sorted by rdkafka's classification of its error
//! ([`classify`]): fatal -> rebuild the producer (which fences our own
//! zombie and re-reads the checkpoints), needs an abort -> abort and ship
//! the same batches again, retriable -> the same. Records the target refuses
//! for good are dead-lettered after `retry.record_attempts` refusals when
//! `retry.on_exhausted = "dead_letter"`. Invariants: a failed attempt never
//! acknowledges a WAL batch; before each attempt the records' fates are
//! decided afresh (`fate`), so what a rebuild's checkpoints show delivered
//! and what was dead-lettered since is not sent; records too large are
//! dead-lettered once, before the first attempt; the delays follow
//! `[retry]` ([`backoff`]).
//!
//! `Shipper::run` calls [`Shipper::ship`] per transaction; `init`, the
//! commit and the gap shipping use [`classify`] and [`backoff`] too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

use super::fate::BatchPlan;
use super::transaction::Committed;
use super::{Shipper, ShipperError, CALL_TIMEOUT};
use crate::checkpoint;
use crate::config::{OnExhausted, RetryConfig};
use crate::record::Batch;
use crate::wal::WalPosition;

/// What to do after a failed transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    Retry,
    AbortAndRewind,
    Rebuild,
}

/// A failed transaction attempt and what to do about it.
pub(super) struct TxnFailure {
    pub(super) error: KafkaError,
    pub(super) recovery: Recovery,
    /// Records the target refused for good in this attempt: (index into the
    /// transaction's batches, source offset, reason).
    pub(super) refused: Vec<(usize, i64, RDKafkaErrorCode)>,
}

impl From<KafkaError> for TxnFailure {
    fn from(error: KafkaError) -> Self {
        let recovery = classify(&error);
        TxnFailure {
            error,
            recovery,
            refused: Vec::new(),
        }
    }
}

pub(super) fn classify(e: &KafkaError) -> Recovery {
    match e {
        KafkaError::Transaction(rde) => classify_rd(rde),
        // Anything else mid-transaction leaves us unsure what was sent: start the batches again.
        _ => Recovery::AbortAndRewind,
    }
}

impl Recovery {
    fn label(self) -> &'static str {
        match self {
            Recovery::Retry => "retry",
            Recovery::AbortAndRewind => "abort_and_rewind",
            Recovery::Rebuild => "rebuild",
        }
    }
}

/// The librdkafka error code's name (`MessageTimedOut`, `Fenced`, ...), a
/// small fixed set suitable as a metric label.
fn error_kind(e: &KafkaError) -> String {
    e.rdkafka_error_code()
        .map_or_else(|| "other".to_string(), |code| format!("{code:?}"))
}

fn classify_rd(e: &RDKafkaError) -> Recovery {
    if e.is_fatal() {
        Recovery::Rebuild
    } else if e.txn_requires_abort() {
        Recovery::AbortAndRewind
    } else if e.is_retriable() {
        Recovery::Retry
    } else {
        Recovery::AbortAndRewind
    }
}

/// Whether `e` says the transaction's deliveries did not settle in time
/// (the shipper's deadline, or librdkafka's message timeout), rather than
/// that the target refused or failed them.
fn outlasted_deadline(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::MessageTimedOut)
    )
}

/// The delays between attempts, from `[retry]`; endless, the policy's limits
/// are checked by the caller ([`RetryConfig::is_spent`]).
pub(super) fn backoff(policy: &RetryConfig) -> impl Iterator<Item = Duration> {
    let builder = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(policy.initial_backoff_ms))
        .with_max_delay(Duration::from_millis(policy.max_backoff_ms))
        .with_factor(policy.multiplier as f32)
        .without_max_times();
    if policy.jitter {
        builder.with_jitter().build()
    } else {
        builder.build()
    }
}

impl Shipper {
    /// Ships `batches` in one transaction, retrying until it commits or
    /// `stop`. Returns how many of them it shipped: all, or a prefix when
    /// their deliveries outlasted the deadline and the transaction was
    /// made smaller (`budget`); the rest stay in the WAL for the next.
    pub(super) fn ship(
        &mut self,
        all: &[(WalPosition, Batch)],
        stop: &AtomicBool,
    ) -> Result<usize, ShipperError> {
        let mut batches = all;
        let limits = self.record_limits(batches);
        // Skip what the target already has (after a crash between commit and WAL ack,
        // or after a rebuild found a transaction of ours committed after all).
        let mut plan = self.plan(batches, &limits)?;
        self.dead_letter_oversized(&plan, &limits)?;
        let mut delays = backoff(&self.settings.retry);
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut refusals = 0u32;
        loop {
            if plan.iter().all(BatchPlan::wholly_delivered) {
                self.note_skipped(&plan);
                self.ack(batches, &BTreeMap::new())?;
                return Ok(batches.len());
            }
            let attempt_began = Instant::now();
            match self.try_transaction(&plan, &limits) {
                Ok(Committed { progress, shipped }) => {
                    if attempt_began.elapsed() < self.delivery_deadline() / 4 {
                        self.budget.grow();
                    }
                    self.stats.transactions += 1;
                    self.shared.transaction_committed();
                    let metrics = &self.shared.metrics;
                    for (tp, (records, bytes)) in &shipped {
                        metrics.shipped(tp, *records, *bytes);
                    }
                    self.note_skipped(&plan);
                    let delivered = checkpoint::next_offsets(&progress);
                    self.delivered.extend(progress);
                    self.ack(batches, &delivered)?;
                    return Ok(batches.len());
                }
                Err(TxnFailure {
                    error,
                    recovery,
                    refused,
                }) => {
                    if !refused.is_empty()
                        && self.settings.retry.on_exhausted == OnExhausted::DeadLetter
                    {
                        refusals += 1;
                        if refusals >= self.settings.retry.record_attempts {
                            let _ = self.producer.abort_transaction(CALL_TIMEOUT);
                            self.dead_letter_refused(&plan, &refused, refusals)?;
                            // The records that kept failing are out; the rest start afresh.
                            (attempts, refusals) = (0, 0);
                            plan = self.plan(batches, &limits)?;
                            continue;
                        }
                    }
                    attempts += 1;
                    if self.settings.retry.is_spent(attempts, started.elapsed()) {
                        let _ = self.producer.abort_transaction(CALL_TIMEOUT);
                        return Err(ShipperError::RetriesExhausted {
                            attempts,
                            elapsed_secs: started.elapsed().as_secs(),
                            last: error.to_string(),
                        });
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    self.shared.control.target_failed(&error);
                    self.shared
                        .metrics
                        .retried(recovery.label(), &error_kind(&error));
                    let first_position = batches.first().map(|(p, _)| *p);
                    if recovery == Recovery::AbortAndRewind
                        && outlasted_deadline(&error)
                        && batches.len() > 1
                    {
                        let (records, bytes) = batches.iter().fold((0, 0), |(r, b), (_, batch)| {
                            (r + batch.records.len(), b + batch.payload_len() as u64)
                        });
                        self.budget.halve_below(records, bytes);
                        let kept = self.budget.prefix(
                            batches
                                .iter()
                                .map(|(_, b)| (b.records.len(), b.payload_len() as u64)),
                        );
                        tracing::warn!(%error, ?recovery, attempt = attempts, retry_in = ?delay, batches = batches.len(), kept, max_bytes = self.budget.max_bytes(), first_position, "target transaction failed: its deliveries outlasted the deadline; retrying with fewer batches");
                        batches = &batches[..kept];
                    } else {
                        tracing::warn!(%error, ?recovery, attempt = attempts, retry_in = ?delay, batches = batches.len(), first_position, "target transaction failed; retrying the same batches");
                    }
                    if stop.load(Ordering::Relaxed) {
                        let _ = self.producer.abort_transaction(CALL_TIMEOUT);
                        return Err(ShipperError::Stopped(
                            "shipping a transaction; it was aborted and stays in the WAL",
                        ));
                    }
                    std::thread::sleep(delay);
                    if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownPartition) {
                        self.refresh_metadata(batches);
                    }
                    match recovery {
                        Recovery::Rebuild => self.rebuild(stop, &error)?,
                        Recovery::AbortAndRewind | Recovery::Retry => {
                            self.stats.aborted += 1;
                            self.shared.metrics.transactions_aborted.inc();
                            if let Err(e) = self.producer.abort_transaction(CALL_TIMEOUT) {
                                tracing::warn!(error = %e, "abort failed; rebuilding the producer");
                                self.rebuild(stop, &e)?;
                            }
                        }
                    }
                }
            }
            // Decide again: a rebuild re-read the checkpoints.
            plan = self.plan(batches, &limits)?;
        }
    }

    /// Asks the target for the metadata of the batches' topics. librdkafka
    /// refuses a record for a partition its cached metadata does not know
    /// at once, and refreshes that cache only every few minutes: a
    /// partition added to the target since would be refused until then.
    fn refresh_metadata(&self, batches: &[(WalPosition, Batch)]) {
        let topics: std::collections::BTreeSet<&str> = batches
            .iter()
            .map(|(_, b)| self.settings.target_topic(&b.topic))
            .collect();
        for topic in topics {
            match self
                .producer
                .client()
                .fetch_metadata(Some(topic), CALL_TIMEOUT)
            {
                Ok(_) => tracing::info!(
                    topic,
                    "target topic metadata refreshed: a partition was unknown"
                ),
                Err(e) => tracing::warn!(topic, error = %e, "cannot refresh target topic metadata"),
            }
        }
    }
}
