//! The target side: ships WAL batches to the target inside Kafka transactions.
//!
//! Runs on its own blocking thread (transaction calls block), started by
//! `pipeline`. It owns the transactional producer and the in-memory map of
//! delivered progress, which it loads from the target's committed checkpoints
//! whenever it (re)builds the producer.
//!
//! One transaction = consecutive WAL batches, in WAL order, within
//! `[transaction]`'s limits (at least one batch): their records, then one
//! checkpoint record per source partition they touched (see `checkpoint`).
//! `rate.max_bytes_per_sec` paces the records (see `rate`). Invariants:
//! - A WAL batch is acknowledged (removed) only after the transaction that
//!   carried it committed.
//! - Records below the delivered offset of their partition are never produced
//!   again: after a crash between commit and WAL ack, recovery skips them.
//! - Producer errors are sorted with rdkafka's classification:
//!   `is_fatal()` -> rebuild the producer (fences our own zombie) and reload
//!   checkpoints; `txn_requires_abort()` -> abort and ship the same WAL batches
//!   again; `is_retriable()` -> retry the same call.
//! - A corrupted WAL entry is never shipped: the shipper stops with an error
//!   naming it, and the pipeline's start-up recovery quarantines it.
//! - While the operator has paused the relay (`control`), no transaction is
//!   begun; one under way finishes first.
//! - The first failed attempt after a success begins an outage, the next
//!   commit ends it (`control` logs both, with the duration).

mod delivery;
mod limits;
mod rate;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::message::{Header as KafkaHeader, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::config::{Config, Format, OnExhausted, Partitioning, RetryConfig, TransactionConfig};
use crate::dlq::{DeadLetter, DeadLetters, DlqError};
use crate::format;
use crate::gap::{self, Gap, GapError, Gaps};
use crate::ops::Shared;
use crate::record::{Batch, Record, TopicPartition};
use crate::wal::{CorruptionReason, Wal, WalEntry, WalError, WalPosition};
use delivery::{refused_for_good, DeliveryTracker, NOT_A_RECORD};
use limits::TopicLimits;
use rate::Bandwidth;

/// WAL entries read per look at the WAL; a transaction carries at most
/// this many batches, within `[transaction]`'s record and byte limits.
const READ_AHEAD: usize = 256;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Between two looks at whether a transaction's records are all delivered.
/// A sleep, not a poll or a flush: rust-rdkafka passes a poll's remaining
/// time to librdkafka in whole milliseconds, so a 1 ms poll spins, and each
/// flush wakes every broker thread.
const DELIVERY_CHECK_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("cannot create the target producer: {0}")]
    Client(#[source] KafkaError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("WAL error: {0}")]
    Wal(#[from] WalError),
    #[error("cannot dead-letter a record: {0}")]
    DeadLetter(#[from] DlqError),
    #[error("source gap store: {0}")]
    Gaps(#[from] GapError),
    #[error("replaying dead letter {id} failed: {source}; it stays in the dead-letter queue, run the replay again")]
    Replay {
        id: String,
        #[source]
        source: KafkaError,
    },
    #[error("WAL entry at position {position} is corrupted ({reason}); it was not shipped. Restart the relay: recovery quarantines the entry and re-reads the source from the target's checkpoints")]
    Corrupted {
        position: WalPosition,
        reason: CorruptionReason,
    },
    #[error("stopped while {0}")]
    Stopped(&'static str),
    #[error("halting: a target transaction failed {attempts} times over {elapsed_secs}s (retry policy spent); last error: {last}. Every batch stays in the WAL; fix the cause and restart")]
    RetriesExhausted {
        attempts: u32,
        elapsed_secs: u64,
        last: String,
    },
}

/// Wakes the shipper when the source appended to the WAL.
#[derive(Default)]
pub struct Wakeup {
    ready: Mutex<bool>,
    cond: Condvar,
}

impl Wakeup {
    pub fn notify(&self) {
        if let Ok(mut ready) = self.ready.lock() {
            *ready = true;
            self.cond.notify_one();
        }
    }

    fn wait(&self, limit: Duration) {
        if let Ok(ready) = self.ready.lock() {
            if let Ok((mut ready, _)) = self.cond.wait_timeout_while(ready, limit, |r| !*r) {
                *ready = false;
            }
        }
    }
}

/// Counters the shipper reports when it stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShipperStats {
    pub records: u64,
    pub transactions: u64,
    pub aborted: u64,
    pub rebuilds: u64,
    pub skipped_delivered: u64,
    pub dead_lettered: u64,
}

/// What a dead-letter replay did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayReport {
    pub replayed: u64,
    /// Already on the target from an earlier, interrupted replay; only removed.
    pub already_replayed: u64,
}

/// What to do after a failed transactional call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Retry,
    AbortAndRewind,
    Rebuild,
}

/// A failed transaction attempt and what to do about it.
struct TxnFailure {
    error: KafkaError,
    recovery: Recovery,
    /// Records the target refused for good in this attempt: (index into the
    /// transaction's batches, source offset, reason).
    refused: Vec<(usize, i64, RDKafkaErrorCode)>,
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

fn classify(e: &KafkaError) -> Recovery {
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

struct Settings {
    relay_id: String,
    checkpoint_topic: String,
    partitioning: Partitioning,
    format: Format,
    client: ClientConfig,
    /// `target.topic`: every source topic goes there; `None` keeps the name.
    target_topic: Option<String>,
    transactional_id: String,
    transaction_timeout_ms: u64,
    retry: RetryConfig,
    transaction: TransactionConfig,
    record_max_bytes: u64,
    /// `dlq.topic`: where dead letters are also written on the target.
    dlq_topic: Option<String>,
}

/// The largest record (key + value + headers) that may be sent, per source
/// topic, and which limit set it; larger ones go to the dead-letter queue.
type RecordLimits = BTreeMap<String, (u64, &'static str)>;

fn oversized(limits: &RecordLimits, topic: &str, record: &Record) -> bool {
    limits
        .get(topic)
        .is_some_and(|(limit, _)| record.payload_len() as u64 > *limit)
}

impl Settings {
    fn target_topic<'a>(&'a self, source_topic: &'a str) -> &'a str {
        self.target_topic.as_deref().unwrap_or(source_topic)
    }

    fn producer(&self) -> Result<ThreadedProducer<DeliveryTracker>, ShipperError> {
        self.client
            .clone()
            .set("transactional.id", &self.transactional_id)
            .set(
                "transaction.timeout.ms",
                self.transaction_timeout_ms.to_string(),
            )
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(DeliveryTracker::default())
            .map_err(ShipperError::Client)
    }
}

pub struct Shipper {
    producer: ThreadedProducer<DeliveryTracker>,
    settings: Settings,
    wal: Wal,
    delivered: BTreeMap<TopicPartition, Checkpoint>,
    /// Dead letters the target already has (replay markers).
    replayed: BTreeSet<String>,
    bandwidth: Bandwidth,
    topic_limits: TopicLimits,
    dead_letters: DeadLetters,
    /// Source gaps, committed to the checkpoint topic before the
    /// checkpoints that move past them (see `gap`).
    gaps: Gaps,
    shared: Shared,
    stats: ShipperStats,
}

/// What one committed transaction did: the new checkpoints, and records
/// and bytes shipped per source partition.
struct Committed {
    progress: BTreeMap<TopicPartition, Checkpoint>,
    shipped: BTreeMap<TopicPartition, (u64, u64)>,
}

/// The target client settings shared by the producer and checkpoint reader.
pub fn target_client(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in config.target_client_config() {
        client.set(k, v);
    }
    client
}

impl Shipper {
    /// Builds the producer, fences any earlier incarnation with the same
    /// `transactional.id`, ensures the checkpoint topic and loads the
    /// delivered progress. Retries while the target is unreachable, at any of
    /// these steps, until `stop`.
    pub fn connect(
        config: &Config,
        wal: Wal,
        shared: Shared,
        stop: &AtomicBool,
    ) -> Result<Shipper, ShipperError> {
        let settings = Settings {
            relay_id: config.relay_id(),
            checkpoint_topic: config.target.checkpoint_topic.clone(),
            partitioning: config.target.partitioning,
            format: config.format,
            client: target_client(config),
            target_topic: config.target.topic.clone(),
            transactional_id: config.target.transactional_id.clone(),
            transaction_timeout_ms: config.target.transaction_timeout_ms,
            retry: config.retry.clone(),
            transaction: config.transaction.clone(),
            record_max_bytes: config.record.max_bytes,
            dlq_topic: config.dlq.topic.clone(),
        };
        let producer = settings.producer()?;
        let dead_letters = DeadLetters::open(&wal)?;
        let gaps = Gaps::open(&wal)?;
        let mut shipper = Shipper {
            producer,
            settings,
            wal,
            delivered: BTreeMap::new(),
            replayed: BTreeSet::new(),
            bandwidth: Bandwidth::new(config.rate.max_bytes_per_sec),
            topic_limits: TopicLimits::new(target_client(config)),
            dead_letters,
            gaps,
            shared,
            stats: ShipperStats::default(),
        };
        shipper.init(stop)?;
        Ok(shipper)
    }

    /// The delivered progress per source partition, as the target committed it.
    pub fn delivered(&self) -> &BTreeMap<TopicPartition, Checkpoint> {
        &self.delivered
    }

    fn init(&mut self, stop: &AtomicBool) -> Result<(), ShipperError> {
        let mut delays = backoff(&self.settings.retry);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Err(ShipperError::Stopped("connecting to the target"));
            }
            match self.producer.init_transactions(CALL_TIMEOUT) {
                Ok(()) => break,
                Err(e) => {
                    if matches!(classify(&e), Recovery::Rebuild) {
                        self.producer = self.settings.producer()?;
                    }
                    self.wait_to_retry(
                        &mut delays,
                        &e,
                        "cannot initialise transactions on the target",
                    );
                }
            }
        }
        tracing::info!("transactions initialised on the target; reading its checkpoints");
        // The target may go away again between these calls (a broker restart
        // right after ours): that is an outage to ride out, not a reason to exit.
        let committed = loop {
            if stop.load(Ordering::Relaxed) {
                return Err(ShipperError::Stopped("reading the target's checkpoints"));
            }
            match self.read_checkpoints() {
                Ok(committed) => break committed,
                Err(e) if e.is_transient() => {
                    self.wait_to_retry(&mut delays, &e, "cannot read the target's checkpoints");
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.delivered = committed.checkpoints;
        self.replayed = committed.replayed;
        // The target's gaps are the record after a lost WAL; noting them
        // shipped also spares re-sending a gap a crash left unmarked.
        self.gaps.mark_shipped(&committed.gaps)?;
        self.wal
            .store_delivered(&checkpoint::next_offsets(&self.delivered))?;
        tracing::info!(
            partitions = self.delivered.len(),
            "loaded delivered progress from the target's committed checkpoints"
        );
        Ok(())
    }

    /// After a start-up step failed for want of the target: counts it as
    /// an outage, logs `<step>; retrying`, and sleeps the next delay.
    fn wait_to_retry(
        &self,
        delays: &mut impl Iterator<Item = Duration>,
        error: &dyn std::fmt::Display,
        step: &str,
    ) {
        let delay = delays.next().unwrap_or(Duration::from_secs(30));
        self.shared.control.target_failed(error);
        tracing::warn!(%error, retry_in = ?delay, "{step}; retrying");
        std::thread::sleep(delay);
    }

    fn read_checkpoints(&self) -> Result<checkpoint::Committed, CheckpointError> {
        checkpoint::ensure_topic(&self.settings.client, &self.settings.checkpoint_topic)?;
        checkpoint::read_committed(
            &self.settings.client,
            &self.settings.checkpoint_topic,
            &self.settings.relay_id,
            Duration::from_secs(120),
        )
    }

    /// Ships WAL batches until `stop`; the open transaction is finished first.
    pub fn run(mut self, stop: &AtomicBool, wakeup: &Wakeup) -> Result<ShipperStats, ShipperError> {
        let limits = self.settings.transaction.clone();
        let interval = Duration::from_millis(limits.commit_interval_ms);
        let mut cursor: WalPosition = 0;
        let mut filling_since: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            if self.shared.control.is_paused() {
                wakeup.wait(IDLE_WAIT);
                continue;
            }
            // Within the transaction's bytes: memory is bounded by it, not by the WAL.
            let entries = self.wal.read_within(cursor, READ_AHEAD, limits.max_bytes)?;
            // After the read: a gap the source recorded before appending
            // these batches is on the target before their checkpoints.
            self.ship_gaps(stop)?;
            if entries.is_empty() {
                wakeup.wait(IDLE_WAIT);
                continue;
            }
            // A full read-ahead is as good as a full transaction: no reason to wait.
            let stored: u64 = entries.iter().map(WalEntry::stored_bytes).sum();
            let mut full = entries.len() == READ_AHEAD || stored >= limits.max_bytes;
            let (mut records, mut bytes) = (0usize, 0u64);
            let mut batches = Vec::with_capacity(entries.len());
            for entry in entries {
                match entry {
                    WalEntry::Valid {
                        position, batch, ..
                    } => {
                        let (r, b) = (batch.records.len(), batch.payload_len() as u64);
                        // Always at least one batch, however large.
                        if !batches.is_empty()
                            && (records + r > limits.max_records || bytes + b > limits.max_bytes)
                        {
                            full = true;
                            break;
                        }
                        records += r;
                        bytes += b;
                        batches.push((position, batch));
                    }
                    WalEntry::Corrupted {
                        position, reason, ..
                    } => {
                        if batches.is_empty() {
                            return Err(ShipperError::Corrupted { position, reason });
                        }
                        // Ship what precedes it first; the next read stops here.
                        full = true;
                        break;
                    }
                }
            }
            if !full && !interval.is_zero() {
                let since = *filling_since.get_or_insert_with(Instant::now);
                if since.elapsed() < interval {
                    wakeup.wait(interval - since.elapsed());
                    continue;
                }
            }
            filling_since = None;
            let last = batches.last().map_or(cursor, |(p, _)| *p);
            self.ship(&batches, stop)?;
            cursor = last + 1;
        }
        Ok(self.stats)
    }

    /// Ships `batches` in one transaction, retrying until it commits or `stop`.
    fn ship(
        &mut self,
        batches: &[(WalPosition, Batch)],
        stop: &AtomicBool,
    ) -> Result<(), ShipperError> {
        let limits = self.record_limits(batches);
        self.dead_letter_oversized(batches, &limits)?;
        let mut delays = backoff(&self.settings.retry);
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut refusals = 0u32;
        loop {
            // Skip what the target already has (after a crash between commit and WAL ack,
            // or after a rebuild found a transaction of ours committed after all).
            let fresh: Vec<(WalPosition, &Batch, usize)> = batches
                .iter()
                .map(|(p, b)| {
                    let delivered = self.delivered_offset(&b.topic, b.partition);
                    (
                        *p,
                        b,
                        b.records
                            .iter()
                            .take_while(|r| r.offset < delivered)
                            .count(),
                    )
                })
                .collect();
            if fresh.iter().all(|(_, b, s)| *s == b.records.len()) {
                self.note_skipped(&fresh);
                self.ack(batches, &BTreeMap::new())?;
                return Ok(());
            }
            let set_aside = self.set_aside(&fresh)?;
            match self.try_transaction(&fresh, &limits, &set_aside) {
                Ok(Committed { progress, shipped }) => {
                    self.stats.transactions += 1;
                    self.shared.transaction_committed();
                    let metrics = &self.shared.metrics;
                    for (tp, (records, bytes)) in &shipped {
                        metrics.shipped(tp, *records, *bytes);
                    }
                    self.note_skipped(&fresh);
                    let delivered = checkpoint::next_offsets(&progress);
                    self.delivered.extend(progress);
                    self.ack(batches, &delivered)?;
                    return Ok(());
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
                            self.dead_letter_refused(&fresh, &refused, refusals)?;
                            // The records that kept failing are out; the rest start afresh.
                            (attempts, refusals) = (0, 0);
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
                    tracing::warn!(%error, ?recovery, attempt = attempts, retry_in = ?delay, batches = batches.len(), first_position = batches.first().map(|(p, _)| *p), "target transaction failed; retrying the same batches");
                    if stop.load(Ordering::Relaxed) {
                        let _ = self.producer.abort_transaction(CALL_TIMEOUT);
                        return Err(ShipperError::Stopped(
                            "shipping a transaction; it was aborted and stays in the WAL",
                        ));
                    }
                    std::thread::sleep(delay);
                    match recovery {
                        Recovery::Rebuild => self.rebuild(stop)?,
                        Recovery::AbortAndRewind | Recovery::Retry => {
                            self.stats.aborted += 1;
                            self.shared.metrics.transactions_aborted.inc();
                            if let Err(e) = self.producer.abort_transaction(CALL_TIMEOUT) {
                                tracing::warn!(error = %e, "abort failed; rebuilding the producer");
                                self.rebuild(stop)?;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Replays dead letters to the target, each in its own transaction with
    /// a replay marker, then removes it from the queue. A letter whose marker
    /// is already committed is only removed: replaying is exactly-once too.
    /// Runs with the relay stopped (the WAL lock guarantees it).
    pub fn replay(&mut self, letters: &[DeadLetter]) -> Result<ReplayReport, ShipperError> {
        let mut report = ReplayReport::default();
        for letter in letters {
            let id = letter.id();
            if !self.replayed.contains(&id) {
                self.replay_one(letter, &id)
                    .map_err(|e| ShipperError::Replay {
                        id: id.clone(),
                        source: e,
                    })?;
                report.replayed += 1;
            } else {
                report.already_replayed += 1;
            }
            self.dead_letters.remove(&id)?;
            self.replayed.insert(id);
        }
        Ok(report)
    }

    fn replay_one(&mut self, letter: &DeadLetter, id: &str) -> Result<(), KafkaError> {
        self.in_transaction(|s| {
            s.send_record(
                &letter.topic,
                letter.partition,
                &letter.record,
                NOT_A_RECORD,
            )?;
            s.send_to_checkpoint_topic(
                &checkpoint::encode_replay_key(&s.settings.relay_id, id),
                &checkpoint::encode_replay_value(),
            )
        })
    }

    /// One small transaction around `send`, committed, or aborted on error.
    fn in_transaction(
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

    /// Commits the gaps not yet on the target to the checkpoint topic, in a
    /// transaction of their own, retrying like any transaction until it
    /// commits or `stop`.
    fn ship_gaps(&mut self, stop: &AtomicBool) -> Result<(), ShipperError> {
        let gaps = self.gaps.unshipped()?;
        if gaps.is_empty() {
            return Ok(());
        }
        let mut delays = backoff(&self.settings.retry);
        loop {
            let sent = self.in_transaction(|s| {
                gaps.iter().try_for_each(|g: &Gap| {
                    let (key, value) = gap::encode_for_target(&s.settings.relay_id, g);
                    s.send_to_checkpoint_topic(&key, &value)
                })
            });
            match sent {
                Ok(()) => {
                    self.gaps.mark_shipped(&gaps)?;
                    tracing::info!(
                        gaps = gaps.len(),
                        "source gaps committed to the checkpoint topic"
                    );
                    return Ok(());
                }
                Err(error) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(ShipperError::Stopped(
                            "committing source gaps; they stay in the WAL",
                        ));
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    self.shared.control.target_failed(&error);
                    tracing::warn!(%error, retry_in = ?delay, "cannot commit source gaps to the target; retrying");
                    std::thread::sleep(delay);
                    if classify(&error) == Recovery::Rebuild {
                        self.rebuild(stop)?;
                    }
                }
            }
        }
    }

    /// The records of `batches` set aside already, as (batch index, offset):
    /// in the dead-letter queue, or replayed from it, so not to be sent from
    /// the WAL again.
    fn set_aside(
        &self,
        batches: &[(WalPosition, &Batch, usize)],
    ) -> Result<HashSet<(usize, i64)>, DlqError> {
        let mut out = HashSet::new();
        if self.dead_letters.is_empty() && self.replayed.is_empty() {
            return Ok(out);
        }
        for (index, (_, batch, skip)) in batches.iter().enumerate() {
            let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
            for record in &batch.records[*skip..] {
                if self.replayed.contains(&format!("{tp}/{}", record.offset))
                    || self.dead_letters.contains(&tp, record.offset)?
                {
                    out.insert((index, record.offset));
                }
            }
        }
        Ok(out)
    }

    /// `retry.on_exhausted = "dead_letter"`: moves the records the target
    /// refused for good to the dead-letter queue, durably, before the
    /// transaction that skips them is tried again.
    fn dead_letter_refused(
        &mut self,
        batches: &[(WalPosition, &Batch, usize)],
        refused: &[(usize, i64, RDKafkaErrorCode)],
        attempts: u32,
    ) -> Result<(), ShipperError> {
        for (index, offset, code) in refused {
            let Some((_, batch, _)) = batches.get(*index) else {
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

    /// For each source topic in `batches`: the smaller of `record.max_bytes`
    /// and what the target topic accepts (see `limits`).
    fn record_limits(&mut self, batches: &[(WalPosition, Batch)]) -> RecordLimits {
        let mut limits = RecordLimits::new();
        for (_, batch) in batches {
            if limits.contains_key(&batch.topic) {
                continue;
            }
            let own = (self.settings.record_max_bytes, "record.max_bytes");
            let target_topic = self.settings.target_topic(&batch.topic).to_string();
            let limit = match self.topic_limits.max_payload(&target_topic) {
                Some(topic) if topic < own.0 => {
                    (topic, "the target topic's max.message.bytes less framing")
                }
                _ => own,
            };
            limits.insert(batch.topic.clone(), limit);
        }
        limits
    }

    /// Moves records above their limit to the dead-letter queue (durably)
    /// before the transaction that will skip them commits.
    fn dead_letter_oversized(
        &mut self,
        batches: &[(WalPosition, Batch)],
        limits: &RecordLimits,
    ) -> Result<(), ShipperError> {
        for (_, batch) in batches {
            let delivered = self.delivered_offset(&batch.topic, batch.partition);
            for record in batch
                .records
                .iter()
                .filter(|r| r.offset >= delivered && oversized(limits, &batch.topic, r))
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

    fn delivered_offset(&self, topic: &str, partition: i32) -> i64 {
        self.delivered
            .get(&TopicPartition::new(topic, partition))
            .map_or(i64::MIN, |c| c.next_offset)
    }

    fn rebuild(&mut self, stop: &AtomicBool) -> Result<(), ShipperError> {
        self.stats.rebuilds += 1;
        tracing::warn!("rebuilding the target producer and reloading checkpoints");
        self.producer = self.settings.producer()?;
        self.init(stop)
    }

    /// One attempt: begin, produce, checkpoint, commit. Returns the new progress.
    fn try_transaction(
        &mut self,
        batches: &[(WalPosition, &Batch, usize)],
        limits: &RecordLimits,
        set_aside: &HashSet<(usize, i64)>,
    ) -> Result<Committed, TxnFailure> {
        self.producer.context().clear();
        let mut sent = Vec::new();
        self.attempt(batches, limits, set_aside, &mut sent)
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
        batches: &[(WalPosition, &Batch, usize)],
        limits: &RecordLimits,
        set_aside: &HashSet<(usize, i64)>,
        sent: &mut Vec<(usize, i64)>,
    ) -> Result<Committed, TxnFailure> {
        self.producer.begin_transaction()?;
        let mut progress = BTreeMap::new();
        let mut shipped: BTreeMap<TopicPartition, (u64, u64)> = BTreeMap::new();
        let mut records = 0u64;
        let mut refused_now = Vec::new();
        for (index, (position, batch, skip)) in batches.iter().enumerate() {
            // Wholly delivered already: writing its checkpoint would move progress backwards.
            if *skip == batch.records.len() {
                continue;
            }
            let fresh = &batch.records[*skip..];
            self.bandwidth
                .take(fresh.iter().map(Record::payload_len).sum());
            let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
            let counts = shipped.entry(tp.clone()).or_default();
            for record in fresh {
                if oversized(limits, &batch.topic, record)
                    || set_aside.contains(&(index, record.offset))
                {
                    if let Some(dlq_topic) = &self.settings.dlq_topic {
                        let limit = limits
                            .get(&batch.topic)
                            .map_or(self.settings.record_max_bytes, |(l, _)| *l);
                        self.copy_to_dlq_topic(dlq_topic, batch, record, limit)?;
                    }
                    continue;
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
                        wal_position: *position,
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
        self.commit()?;
        self.stats.records += records;
        Ok(Committed { progress, shipped })
    }

    /// Commits, retrying the commit itself on retriable errors (a timed-out
    /// commit may still be completing; aborting it would fail).
    fn commit(&self) -> Result<(), TxnFailure> {
        self.await_deliveries()?;
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
    /// records not yet settled is read every millisecond. A timeout is the
    /// flush error `commit_transaction` would have returned.
    fn await_deliveries(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + CALL_TIMEOUT;
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
    fn send_record(
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

    /// Writes a dead letter to `dlq.topic` inside the open transaction, so
    /// it lands there exactly once, with the checkpoint that moves past it.
    /// Headers say where it came from and why; a value larger than the
    /// target accepts is left out (its size is given instead), or the copy
    /// would be refused too.
    fn copy_to_dlq_topic(
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

    /// A checkpoint or replay marker, inside the open transaction.
    fn send_to_checkpoint_topic(&self, key: &[u8], value: &[u8]) -> Result<(), KafkaError> {
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
    fn send<'a>(&self, mut record: BaseRecord<'a, [u8], [u8], usize>) -> Result<(), KafkaError> {
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

    fn ack(
        &self,
        batches: &[(WalPosition, Batch)],
        delivered: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), ShipperError> {
        let positions: Vec<WalPosition> = batches.iter().map(|(p, _)| *p).collect();
        self.wal.ack_delivered(&positions, delivered)?;
        Ok(())
    }

    /// Counts and logs, per batch, the records not sent again because the
    /// target's checkpoints already cover them.
    fn note_skipped(&mut self, batches: &[(WalPosition, &Batch, usize)]) {
        for (position, batch, skipped) in batches {
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

/// The delays between attempts, from `[retry]`; endless, the policy's limits
/// are checked by the caller ([`RetryConfig::is_spent`]).
fn backoff(policy: &RetryConfig) -> impl Iterator<Item = Duration> {
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
