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
//!   A batch the target wholly has gets no checkpoint: checkpoints only move
//!   forward.
//! - A record the target cannot take is dead-lettered durably before the
//!   transaction that skips it commits; a record in the dead-letter queue,
//!   or replayed from it, is never sent from the WAL again.
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
//!
//! This file holds the `Shipper` itself: connecting (fencing, checkpoints),
//! rebuilding, and the `run` loop that reads the WAL into transactions.
//! The rest, one role a file:
//!
//! | file | role |
//! | --- | --- |
//! | `retry` | ships one transaction's batches until it commits: sorts failures, backs off, rebuilds |
//! | `budget` | how much the next transaction carries: less while the link is too slow for `[transaction]`'s limits |
//! | `fate` | the one pass that decides each record's fate: delivered already, dead letter, or send |
//! | `transaction` | one attempt: begin, produce, checkpoint, wait for deliveries, commit |
//! | `dead_letter` | records the target cannot take: into the dead-letter queue and `dlq.topic` |
//! | `replay` | `dlq replay`: dead letters back to the target, exactly once |
//! | `gaps` | source gaps committed to the checkpoint topic |
//! | `delivery` | the producer's delivery reports: which records the target refused for good |
//! | `limits` | the largest record each target topic accepts |
//! | `rate` | the bandwidth cap towards the target |

mod budget;
mod dead_letter;
mod delivery;
mod fate;
mod gaps;
mod limits;
mod rate;
mod replay;
mod retry;
mod transaction;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer, ThreadedProducer};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::config::{Config, Format, OffsetsConfig, Partitioning, RetryConfig, TransactionConfig};
use crate::dlq::{DeadLetters, DlqError};
use crate::gap::{GapError, Gaps};
use crate::kafka::{target_client, SecurityError, Side};
use crate::ops::Shared;
use crate::record::{Batch, TopicPartition};
use crate::wal::{CorruptionReason, Wal, WalEntry, WalError, WalPosition};
use budget::Budget;
use delivery::DeliveryTracker;
use limits::TopicLimits;
use rate::Bandwidth;
pub use replay::ReplayReport;
use retry::{backoff, classify, Recovery};

/// WAL entries read per look at the WAL; a transaction carries at most
/// this many batches, within `[transaction]`'s record and byte limits.
const READ_AHEAD: usize = 256;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    #[error("cannot create the target producer: {0}")]
    Client(#[source] KafkaError),
    #[error(transparent)]
    Security(#[from] SecurityError),
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
    /// Only for a unit of a scaled-out relay (`scale`): another instance
    /// now owns the unit. Its WAL entries are not shipped from here.
    #[error("{unit} was fenced on the target by another instance that now owns it; this instance ships nothing more of it")]
    Fenced { unit: crate::scale::Unit },
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

struct Settings {
    relay_id: String,
    checkpoint_topic: String,
    partitioning: Partitioning,
    format: Format,
    client: ClientConfig,
    /// `target.bootstrap_servers`, for messages.
    servers: String,
    /// `target.topic`: every source topic goes there; `None` keeps the name.
    target_topic: Option<String>,
    transactional_id: String,
    transaction_timeout_ms: u64,
    retry: RetryConfig,
    transaction: TransactionConfig,
    record_max_bytes: u64,
    /// `dlq.topic`: where dead letters are also written on the target.
    dlq_topic: Option<String>,
    /// The unit this shipper ships, for a scaled-out relay.
    unit: Option<crate::scale::Unit>,
    /// `[offsets]`: each transaction also writes the offset map.
    offsets: Option<OffsetsConfig>,
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
            .create_with_context(DeliveryTracker::new(self.offsets.is_some()))
            .map_err(ShipperError::Client)
    }
}

pub struct Shipper {
    producer: ThreadedProducer<DeliveryTracker>,
    settings: Settings,
    wal: Wal,
    delivered: BTreeMap<TopicPartition, Checkpoint>,
    /// Every partition with a checkpoint of the relay's, any unit's.
    copied: BTreeSet<TopicPartition>,
    /// Dead letters the target already has (replay markers).
    replayed: BTreeSet<String>,
    bandwidth: Bandwidth,
    budget: Budget,
    topic_limits: TopicLimits,
    dead_letters: DeadLetters,
    /// Source gaps, committed to the checkpoint topic before the
    /// checkpoints that move past them (see `gap`).
    gaps: Gaps,
    shared: Shared,
    stats: ShipperStats,
}

impl Shipper {
    /// Builds the producer, fences any earlier incarnation with the same
    /// `transactional.id`, ensures the checkpoint topic and loads the
    /// delivered progress. Retries while the target is unreachable, at any of
    /// these steps, until `stop`; stops at a TLS or SASL failure.
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
            servers: config.target.bootstrap_servers.clone(),
            target_topic: config.target.topic.clone(),
            transactional_id: config.target.transactional_id.clone(),
            transaction_timeout_ms: config.target.transaction_timeout_ms,
            retry: config.retry.clone(),
            transaction: config.transaction.clone(),
            record_max_bytes: config.record.max_bytes,
            dlq_topic: config.dlq.topic.clone(),
            unit: config.unit,
            offsets: config.offsets.clone(),
        };
        let producer = settings.producer()?;
        let dead_letters = DeadLetters::open(&wal)?;
        let gaps = Gaps::open(&wal)?;
        let mut shipper = Shipper {
            producer,
            settings,
            wal,
            delivered: BTreeMap::new(),
            copied: BTreeSet::new(),
            replayed: BTreeSet::new(),
            bandwidth: Bandwidth::new(config.rate.max_bytes_per_sec),
            budget: Budget::new(&config.transaction),
            topic_limits: TopicLimits::new(target_client(config)),
            dead_letters,
            gaps,
            shared,
            stats: ShipperStats::default(),
        };
        shipper.init(stop)?;
        Ok(shipper)
    }

    /// How long a transaction's deliveries may take: half the transaction
    /// timeout (the broker aborts a transaction open longer than that, so
    /// the commit needs time left), at most `CALL_TIMEOUT`.
    fn delivery_deadline(&self) -> Duration {
        CALL_TIMEOUT.min(Duration::from_millis(self.settings.transaction_timeout_ms) / 2)
    }

    /// The delivered progress per source partition, as the target committed it.
    pub fn delivered(&self) -> &BTreeMap<TopicPartition, Checkpoint> {
        &self.delivered
    }

    /// Every partition the relay has a checkpoint of, this unit's or not
    /// (`scale`): a topic one of them belongs to was copied.
    pub fn copied(&self) -> &BTreeSet<TopicPartition> {
        &self.copied
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
                    // A wrong TLS or SASL setting is not an outage: stop.
                    if let Some(cause) = self.producer.context().security.failure() {
                        return Err(ShipperError::Security(SecurityError {
                            side: Side::Target,
                            servers: self.settings.servers.clone(),
                            cause,
                        }));
                    }
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
        // The checkpoint topic holds every unit's partitions (`scale`).
        let unit = self.settings.unit;
        let owns = |tp: &TopicPartition| unit.is_none_or(|u| u.owns(tp));
        self.copied = committed.checkpoints.keys().cloned().collect();
        self.delivered = committed.checkpoints;
        self.delivered.retain(|tp, _| owns(tp));
        self.replayed = committed.replayed;
        let gaps: Vec<_> = committed.gaps.into_iter().filter(|g| owns(&g.tp)).collect();
        // The target's gaps are the record after a lost WAL; noting them
        // shipped also spares re-sending a gap a crash left unmarked.
        self.gaps.mark_shipped(&gaps)?;
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
        if let Some(offsets) = &self.settings.offsets {
            crate::offsets::map::ensure_topic(&self.settings.client, offsets)?;
        }
        checkpoint::read_committed(
            &self.settings.client,
            &self.settings.checkpoint_topic,
            &self.settings.relay_id,
            // A crashed owner's open transaction holds the read back until
            // the transaction timeout aborts it (or its unit's next owner does).
            Duration::from_millis(self.settings.transaction_timeout_ms) + Duration::from_secs(120),
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
            let (max_records, max_bytes) = (self.budget.max_records(), self.budget.max_bytes());
            let entries = self.wal.read_within(cursor, READ_AHEAD, max_bytes)?;
            // After the read: a gap the source recorded before appending
            // these batches is on the target before their checkpoints.
            self.ship_gaps(stop)?;
            if entries.is_empty() {
                wakeup.wait(IDLE_WAIT);
                continue;
            }
            // A full read-ahead is as good as a full transaction: no reason to wait.
            let stored: u64 = entries.iter().map(WalEntry::stored_bytes).sum();
            let mut full = entries.len() == READ_AHEAD || stored >= max_bytes;
            let (mut records, mut bytes) = (0usize, 0u64);
            let mut batches = Vec::with_capacity(entries.len());
            let mut dropped = None;
            for entry in entries {
                match entry {
                    WalEntry::Valid {
                        position, batch, ..
                    } if !self.owns(&batch) => {
                        // Only after `scale.units` changed under a unit's old WAL.
                        tracing::warn!(
                            position,
                            topic = %batch.topic,
                            partition = batch.partition,
                            "WAL batch of a partition outside this unit: dropped, never shipped (its unit's owner reads it from the source)"
                        );
                        self.wal.ack(&[position])?;
                        dropped = Some(position);
                    }
                    WalEntry::Valid {
                        position, batch, ..
                    } => {
                        let (r, b) = (batch.records.len(), batch.payload_len() as u64);
                        // Always at least one batch, however large.
                        if !batches.is_empty()
                            && (records + r > max_records || bytes + b > max_bytes)
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
            if batches.is_empty() {
                if let Some(p) = dropped {
                    cursor = p + 1;
                }
                continue;
            }
            if !full && !interval.is_zero() {
                let since = *filling_since.get_or_insert_with(Instant::now);
                if since.elapsed() < interval {
                    wakeup.wait(interval - since.elapsed());
                    continue;
                }
            }
            filling_since = None;
            // A prefix of them when the link proved too slow for them all.
            let shipped = self.ship(&batches, stop)?;
            cursor = batches[..shipped].last().map_or(cursor, |(p, _)| *p + 1);
        }
        Ok(self.stats)
    }

    /// Whether `batch` is of a partition this shipper ships: any, or its unit's.
    fn owns(&self, batch: &Batch) -> bool {
        self.settings
            .unit
            .is_none_or(|u| u.owns_partition(&batch.topic, batch.partition))
    }

    /// Rebuilds the producer after `cause`, a fatal error. A unit's
    /// shipper that another instance fenced does not: the fence is how
    /// ownership moves, and fencing the new owner back would move it again.
    fn rebuild(&mut self, stop: &AtomicBool, cause: &KafkaError) -> Result<(), ShipperError> {
        if let Some(unit) = self.settings.unit {
            if crate::kafka::code(cause).is_some_and(crate::kafka::fenced) {
                return Err(ShipperError::Fenced { unit });
            }
        }
        self.stats.rebuilds += 1;
        tracing::warn!("rebuilding the target producer and reloading checkpoints");
        self.producer = self.settings.producer()?;
        self.init(stop)
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
}
