//! The source side: consumes the source topics and makes batches durable in
//! the WAL.
//!
//! Runs on its own blocking thread (rdkafka's `BaseConsumer::poll` blocks),
//! started by `pipeline`. It owns the consumer and the per-partition batch
//! buffers; full batches go to the [`appender`] thread, which fsyncs them
//! into the WAL while this thread goes on polling. A batch is built as its
//! WAL frame from the start (`wal::FrameBuilder`): a consumed record's
//! bytes are copied once, out of librdkafka into the frame, and the frame
//! buffers are reused ([`buffers`]). Building owned `Record`s and encoding
//! them afterwards cost about 1.8 CPU seconds per GiB of 1 KiB records,
//! framing them directly 0.15 (docs/benchmarks.md).
//!
//! Invariants:
//! - Reads use `isolation.level=read_committed`: aborted source transactions
//!   are never relayed.
//! - A batch holds consecutive records of one topic-partition, and is appended
//!   to the WAL (fsync'd) *before* the source offsets after it are committed:
//!   the appender hands the offsets back only after the fsync.
//!   Those commits are for lag monitoring only; where to read from on start
//!   comes from the target's checkpoints and the WAL (see [`start_positions`]).
//! - When the WAL reaches `wal.max_bytes`, every partition is paused (the
//!   consumer stays assigned) and resumed once the shipper has drained below
//!   90 % of it. Records are never dropped for lack of room. The WAL can
//!   exceed the bound by the groups already on their way to the appender.
//! - While no target outage is under way, the source stops polling once
//!   the WAL holds [`lead_bytes`] (a few transactions) and polls again when
//!   the shipper has acked below it, or when no transaction has committed
//!   for [`LEAD_PATIENCE`]; during an outage only `wal.max_bytes` bounds
//!   it. Nothing is dropped either way: what is not read waits on
//!   the source.
//! - An operator's pause (`control`) pauses the partitions the same way;
//!   they resume only when neither the operator nor a full WAL holds them.

mod appender;
mod assignment;
mod buffers;
pub mod gaps;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::checkpoint::Checkpoint;
use crate::config::{Config, StartPosition, TopicSelection};
use crate::gap::{Gap, GapError};
use crate::kafka;
use crate::ops::metrics::Metrics;
use crate::ops::Shared;
use crate::record::{HeaderRef, Record, RecordRef, TopicPartition};
use crate::wal::{FrameBuilder, FramedBatch, Wal, WalError, RECORD_OVERHEAD};
use appender::{Appender, Durable};
use assignment::Assignment;
use buffers::FreeBuffers;
use gaps::{GapPolicy, Trigger};

const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// Resume intake once the WAL is below this share of `wal.max_bytes`, so
/// pause/resume does not flap at the boundary.
const RESUME_RATIO: f64 = 0.9;
/// How often free disk space is checked again while intake waits for it.
const DISK_RETRY: Duration = Duration::from_millis(500);
/// While the target takes transactions, the source reads at most this many
/// full transactions (`transaction.max_bytes`) ahead of the shipper.
pub const LEAD_TRANSACTIONS: u64 = 4;
/// How long the source waits before it looks at the WAL again while it is
/// that far ahead.
const LEAD_WAIT: Duration = Duration::from_millis(5);
/// How long the source waits at the lead for the shipper to commit a
/// transaction. Past it the source reads on, as in an outage: a target
/// that stopped answering takes librdkafka tens of seconds to report.
const LEAD_PATIENCE: Duration = Duration::from_secs(5);
/// `source.refresh_interval_secs`, `None` when off.
fn refresh_interval(config: &Config) -> Option<Duration> {
    (config.source.refresh_interval_secs > 0)
        .then(|| Duration::from_secs(config.source.refresh_interval_secs))
}

/// How long after a position out of range to look for gaps: two of
/// librdkafka's statistics intervals, so that its fetch states are fresh.
const GAP_SETTLE: Duration = Duration::from_millis(2500);
/// How soon to look for gaps again after a look could not reach the source.
const GAP_RECHECK: Duration = Duration::from_secs(1);
/// How often librdkafka reports statistics, source lag among them.
const STATS_INTERVAL_MS: &str = "1000";
/// librdkafka's fetch queue per consumer, lowered from its 64 MiB default:
/// the WAL is the relay's buffer, and with the appender polling through
/// fsyncs a shallower queue costs no throughput, but 40 MiB of memory less
/// (docs/benchmarks.md). `[source.properties]` overrides it.
const QUEUED_MAX_KBYTES: &str = "32768";
/// The most a fetch returns, lowered from librdkafka's 50 MiB default for
/// the same reason; raised to `message.max.bytes` where that is set higher,
/// since librdkafka refuses a smaller one.
const FETCH_MAX_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot create the source consumer: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot read source metadata from {servers}: {source}")]
    Metadata {
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("source topic {0:?} does not exist")]
    MissingTopic(String),
    #[error("source.topic_regex {0:?} matches no topic on the source")]
    NoTopicMatches(String),
    #[error("cannot look up source offsets for the start timestamp: {0}")]
    OffsetsForTimes(#[source] KafkaError),
    #[error("cannot assign source partitions: {0}")]
    Assign(#[source] KafkaError),
    #[error("source consumer failed: {0}")]
    Consume(#[source] KafkaError),
    #[error("stopped while waiting for disk space under the WAL in {dir} ({free} bytes free)")]
    DiskFull { dir: String, free: u64 },
    #[error("cannot write a source batch to the WAL: {0}")]
    Wal(#[from] WalError),
    #[error("cannot start the WAL append thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the WAL append thread panicked")]
    AppenderPanicked,
    #[error("{}", gap_message(.0))]
    Gap(Gap),
    #[error("source partition {tp} now ends at offset {end}, below offset {next} up to which the relay has already read it: the topic was deleted and recreated, or its log was truncated (an unclean leader election). Its offsets are being reused, so the relay cannot tell new records from copied ones, and stops whatever source.on_gap says. To copy the new partition, copy its topic with a relay of its own (a new relay_id and transactional_id), or to a new target topic")]
    LogEndBehind {
        tp: TopicPartition,
        next: i64,
        end: i64,
    },
    #[error("cannot record a source gap: {0}")]
    GapStore(#[from] GapError),
}

/// What the operator reads when `source.on_gap = "fail"` stops the relay.
fn gap_message(gap: &Gap) -> String {
    let what = match (gap.cause, gap.to) {
        (crate::gap::GapCause::DeletedAtSource, Some(to)) => format!(
            "source partition {}: offsets [{}, {to}) ({} offsets) were deleted at the source (retention or DeleteRecords) before the relay copied them",
            gap.tp,
            gap.from,
            to - gap.from
        ),
        _ => format!(
            "source partition {} is gone (its topic was deleted, or recreated with fewer partitions); the relay had copied it up to offset {}",
            gap.tp, gap.from
        ),
    };
    format!(
        "{what}. source.on_gap = \"fail\": nothing was skipped or recorded, and a restart stops here again. To accept the loss and go on, set source.on_gap = \"skip\" (the gap is then recorded and reported by status, /metrics and verify); to avoid it, restore the records to the source first"
    )
}

/// The relay's consumer: reports source lag to `metrics` from librdkafka's
/// statistics, which it emits from inside `poll`, on the source thread.
pub type RelayConsumer = BaseConsumer<LagReporter>;

pub struct LagReporter {
    metrics: Arc<Metrics>,
    /// librdkafka's fetch state of each partition in its last statistics:
    /// `none` once it stopped fetching one (a position out of range).
    fetch_states: Mutex<BTreeMap<TopicPartition, String>>,
}

impl LagReporter {
    /// Whether librdkafka said in its last statistics that it does not
    /// fetch `tp` (it stopped on an error, or never started).
    pub fn stopped(&self, tp: &TopicPartition) -> bool {
        self.fetch_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tp)
            .is_some_and(|state| state == "none")
    }
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        let mut states = self
            .fetch_states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        states.clear();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // librdkafka lists partition -1 (unassigned) and -1 lags (unknown yet).
                if partition < 0 {
                    continue;
                }
                let tp = TopicPartition::new(topic.clone(), partition);
                if p.consumer_lag >= 0 {
                    self.metrics.set_lag(&tp, p.consumer_lag);
                }
                states.insert(tp, p.fetch_state);
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

/// The consumer the relay runs with. Its lag is measured against the
/// offsets committed after each WAL fsync: records not yet durable here.
pub fn relay_consumer(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<RelayConsumer, SourceError> {
    let context = LagReporter {
        metrics,
        fetch_states: Mutex::default(),
    };
    consumer_with(config, context, STATS_INTERVAL_MS)
}

/// Builds a source consumer. Offsets are committed by hand, after the WAL fsync.
pub fn consumer(config: &Config) -> Result<BaseConsumer, SourceError> {
    consumer_with(config, DefaultConsumerContext, "0")
}

fn consumer_with<C: ConsumerContext>(
    config: &Config,
    context: C,
    statistics_interval_ms: &str,
) -> Result<BaseConsumer<C>, SourceError> {
    client_config(config, statistics_interval_ms)
        .create_with_context(context)
        .map_err(SourceError::Client)
}

/// The source consumer's librdkafka settings: the relay's read-ahead
/// defaults, then `[source.properties]`, then what the relay must control.
fn client_config(config: &Config, statistics_interval_ms: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    let properties = config.source_client_config();
    let fetch_max_bytes = properties
        .get("message.max.bytes")
        .and_then(|m| m.parse::<u64>().ok())
        .map_or(FETCH_MAX_BYTES, |m| m.max(FETCH_MAX_BYTES));
    client
        .set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES)
        .set("fetch.max.bytes", fetch_max_bytes.to_string());
    // Set after the relay's defaults, so they win.
    for (k, v) in properties {
        client.set(k, v);
    }
    client
        .set("group.id", config.group_id())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        // A position the source no longer has is a gap for the relay to
        // decide on (`gaps`), never a silent jump to what is left.
        .set("auto.offset.reset", "error")
        .set("statistics.interval.ms", statistics_interval_ms);
    client
}

/// The source topic-partitions the configuration selects.
pub fn partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &Config,
) -> Result<Vec<TopicPartition>, SourceError> {
    partitions_known(consumer, config, &BTreeMap::new())
}

/// [`partitions`], for a relay that has copied the partitions of `known`
/// before: a selected topic that is gone but was copied is no
/// configuration mistake but a gap, left to [`gaps::gone_partitions`].
pub fn partitions_known<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    config: &Config,
    known: &BTreeMap<TopicPartition, i64>,
) -> Result<Vec<TopicPartition>, SourceError> {
    let copied = |topic: &str| known.keys().any(|tp| tp.topic == topic);
    let metadata = consumer
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|source| SourceError::Metadata {
            servers: config.source.bootstrap_servers.clone(),
            source,
        })?;
    let existing: BTreeMap<&str, Vec<i32>> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name(), t.partitions().iter().map(|p| p.id()).collect()))
        .collect();
    let topics: Vec<&str> = match &config.source.topics {
        TopicSelection::List(names) => {
            for name in names {
                if !existing.contains_key(name.as_str()) && !copied(name) {
                    return Err(SourceError::MissingTopic(name.clone()));
                }
            }
            names
                .iter()
                .map(String::as_str)
                .filter(|n| existing.contains_key(n))
                .collect()
        }
        TopicSelection::Regex(pattern) => {
            let re = regex::Regex::new(pattern)
                .map_err(|_| SourceError::NoTopicMatches(pattern.clone()))?;
            let matched: Vec<&str> = existing
                .keys()
                .copied()
                .filter(|t| !t.starts_with("__") && re.is_match(t))
                .collect();
            let copied_any = known
                .keys()
                .any(|tp| config.source.topics.selects(&tp.topic));
            if matched.is_empty() && !copied_any {
                return Err(SourceError::NoTopicMatches(pattern.clone()));
            }
            matched
        }
    };
    Ok(topics
        .into_iter()
        .flat_map(|t| existing[t].iter().map(move |p| TopicPartition::new(t, *p)))
        .filter(|tp| config.owns(tp))
        .collect())
}

/// The next offset the relay knows per partition: the furthest of the
/// target's checkpoint and the WAL's progress.
pub fn known_progress(
    checkpoints: &BTreeMap<TopicPartition, Checkpoint>,
    wal_progress: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    let mut known = wal_progress.clone();
    for (tp, c) in checkpoints {
        let next = known.entry(tp.clone()).or_insert(c.next_offset);
        *next = (*next).max(c.next_offset);
    }
    known
}

/// Where to read each partition from: the furthest of what the target has
/// committed (checkpoint) and what the WAL already holds; the configured start
/// position only where neither knows anything.
pub fn start_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &[TopicPartition],
    checkpoints: &BTreeMap<TopicPartition, Checkpoint>,
    wal_progress: &BTreeMap<TopicPartition, i64>,
    start: &StartPosition,
) -> Result<BTreeMap<TopicPartition, Offset>, SourceError> {
    let mut positions = BTreeMap::new();
    let mut by_time = TopicPartitionList::new();
    for tp in partitions {
        let known = [
            checkpoints.get(tp).map(|c| c.next_offset),
            wal_progress.get(tp).copied(),
        ]
        .into_iter()
        .flatten()
        .max();
        let offset = match (known, start) {
            (Some(next), _) => Offset::Offset(next),
            (None, StartPosition::Earliest) => Offset::Beginning,
            (None, StartPosition::Latest) => Offset::End,
            (None, StartPosition::Offsets(map)) => map
                .get(tp)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o)),
            (None, StartPosition::Timestamp(ms)) => {
                by_time
                    .add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*ms))
                    .map_err(SourceError::OffsetsForTimes)?;
                continue;
            }
        };
        positions.insert(tp.clone(), offset);
    }
    if by_time.count() > 0 {
        let found = consumer
            .offsets_for_times(by_time, METADATA_TIMEOUT)
            .map_err(SourceError::OffsetsForTimes)?;
        for e in found.elements() {
            // No record at or after the timestamp: start at the end.
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                _ => Offset::End,
            };
            positions.insert(TopicPartition::new(e.topic(), e.partition()), offset);
        }
    }
    Ok(positions)
}

/// Limits for the batches the source builds.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger: Duration,
}

/// Counters the source reports when it stops.
#[derive(Debug, Default, Clone, Copy)]
pub struct SourceStats {
    pub records: u64,
    pub batches: u64,
}

/// The most a pending batch reserves up front; past it, its frame grows
/// as it fills.
const FRAME_RESERVE_MAX: usize = 4 << 20;

/// What became of a flush's batches.
enum Flushed {
    /// Queued for the appender (or there were none).
    Queued,
    /// The appender stopped taking groups (it failed; its error says why).
    AppenderGone,
}

/// A partition's batch being filled, framed as it fills.
struct Pending {
    frame: FrameBuilder,
    since: Instant,
}

/// Where the source starts: each partition's position, and the progress
/// the relay has for every partition, read or not ([`known_progress`]).
pub struct Start<'a> {
    pub positions: &'a BTreeMap<TopicPartition, Offset>,
    pub known: &'a BTreeMap<TopicPartition, i64>,
}

/// Makes the target topics ready for partitions found after the start
/// (`topics`), before the source reads them: records of a topic the target
/// does not have yet would fail their transactions, or be dead-lettered.
pub type PrepareTarget = Box<dyn Fn() -> Result<(), String> + Send>;

pub struct Source {
    consumer: RelayConsumer,
    wal: Wal,
    limits: BatchLimits,
    min_free_bytes: u64,
    pending: BTreeMap<TopicPartition, Pending>,
    /// Buffers of frames written, to build the next ones in.
    free: FreeBuffers,
    /// The WAL reached `max_bytes` and has not drained below the resume ratio yet.
    wal_full: bool,
    /// Whether the consumer's partitions are paused now (WAL full or operator).
    consumer_paused: bool,
    /// WAL bytes past which the source waits while the target is healthy
    /// ([`lead_bytes`]).
    lead_bytes: u64,
    /// Since when the source has waited at the lead, and the count of
    /// committed transactions then.
    lead_wait: Option<(Instant, u64)>,
    /// What is read and from where, to find gaps when the source reports
    /// one, and to add partitions found later.
    assignment: Assignment,
    /// The topic selection and the source's address, for the partitions
    /// found later.
    config: Config,
    /// When to look at the source's metadata for new partitions next.
    next_refresh: Option<Instant>,
    prepare_target: PrepareTarget,
    gap_policy: GapPolicy,
    /// When to look for gaps next, and why.
    gap_check_due: Option<(Instant, Trigger)>,
    shared: Shared,
}

impl Source {
    /// Assigns `start.positions` to `consumer` and returns a source ready
    /// to run, with the batch, disk and lead limits of `config`.
    pub fn new(
        consumer: RelayConsumer,
        start: Start<'_>,
        wal: Wal,
        config: &Config,
        gap_policy: GapPolicy,
        prepare_target: PrepareTarget,
        shared: Shared,
    ) -> Result<Source, SourceError> {
        let assignment = Assignment::start(&consumer, start.positions, start.known)?;
        Ok(Source {
            consumer,
            wal,
            limits: BatchLimits {
                max_records: config.batch.max_records,
                max_bytes: config.batch.max_bytes as usize,
                linger: Duration::from_millis(config.batch.linger_ms),
            },
            min_free_bytes: config.wal.min_free_bytes,
            pending: BTreeMap::new(),
            free: FreeBuffers::default(),
            wal_full: false,
            consumer_paused: false,
            lead_bytes: lead_bytes(config),
            lead_wait: None,
            assignment,
            next_refresh: refresh_interval(config).map(|every| Instant::now() + every),
            config: config.clone(),
            prepare_target,
            gap_policy,
            gap_check_due: None,
            shared,
        })
    }

    /// Polls until `stop` is set, then writes what it holds to the WAL.
    /// `appended` is called after every WAL append (it wakes the shipper).
    pub fn run(
        mut self,
        stop: &AtomicBool,
        appended: &(dyn Fn() + Sync),
    ) -> Result<SourceStats, SourceError> {
        let (groups, inbox) = mpsc::sync_channel(appender::QUEUE_DEPTH);
        let (durable_tx, durable) = mpsc::channel();
        let appender = Appender::new(self.wal.clone(), self.min_free_bytes, self.shared.clone());
        std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("wal-append".into())
                .spawn_scoped(scope, move || {
                    appender.run(inbox, durable_tx, stop, appended)
                })
                .map_err(SourceError::Thread)?;
            let polled = self.poll(stop, &groups, &durable);
            // Closing the queue ends the appender once it has written what was sent.
            drop(groups);
            let stats = writer.join().map_err(|_| SourceError::AppenderPanicked)??;
            self.commit_durable(&durable);
            polled.map(|()| stats)
        })
    }

    /// The poll loop. Returns early, without error, if the appender is gone:
    /// its own error is the one to report.
    fn poll(
        &mut self,
        stop: &AtomicBool,
        groups: &SyncSender<Vec<FramedBatch>>,
        durable: &Receiver<Durable>,
    ) -> Result<(), SourceError> {
        // One clock read per message: on some VMs reading the clock costs
        // more than the rest of the per-message work (it showed in profiles).
        let mut now = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            self.commit_durable(durable);
            self.apply_backpressure()?;
            if self.far_enough_ahead(now) {
                std::thread::sleep(LEAD_WAIT.min(self.next_deadline(now)));
                now = Instant::now();
                if let Flushed::AppenderGone = self.flush_lingering(now, groups)? {
                    return Ok(());
                }
                continue;
            }
            let wait = if self.consumer_paused {
                Duration::from_millis(100)
            } else {
                self.next_deadline(now)
            };
            match self.consumer.poll(wait) {
                Some(Ok(message)) => {
                    let tp = TopicPartition::new(message.topic(), message.partition());
                    buffer(
                        &mut self.pending,
                        &mut self.free,
                        &self.limits,
                        &tp,
                        &record_ref(&message),
                    );
                    drop(message);
                    if self.is_full(&tp) {
                        let group = self.group_with(tp);
                        if let Flushed::AppenderGone = self.flush(group, groups)? {
                            return Ok(());
                        }
                    }
                }
                Some(Err(e)) => self.on_error(e)?,
                None => {}
            }
            now = Instant::now();
            if let Some((due, trigger)) = self.gap_check_due {
                if now >= due {
                    self.check_gaps(trigger)?;
                }
            }
            if self.next_refresh.is_some_and(|due| now >= due) {
                self.refresh_partitions()?;
                // From the end of the look: a source that does not answer took its timeout.
                self.next_refresh =
                    refresh_interval(&self.config).map(|every| Instant::now() + every);
            }
            if let Flushed::AppenderGone = self.flush_lingering(now, groups)? {
                return Ok(());
            }
        }
        let all: Vec<TopicPartition> = self.pending.keys().cloned().collect();
        // If the appender is gone, it reports why.
        self.flush(all, groups)?;
        Ok(())
    }

    fn is_full(&self, tp: &TopicPartition) -> bool {
        self.pending.get(tp).is_some_and(|p| {
            p.frame.records() >= self.limits.max_records
                || p.frame.payload_len() >= self.limits.max_bytes
        })
    }

    fn next_deadline(&self, now: Instant) -> Duration {
        self.pending
            .values()
            .map(|p| (p.since + self.limits.linger).saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_millis(100))
            .min(Duration::from_millis(100))
    }

    fn flush_lingering(
        &mut self,
        now: Instant,
        groups: &SyncSender<Vec<FramedBatch>>,
    ) -> Result<Flushed, SourceError> {
        let is_due = |p: &Pending| now.saturating_duration_since(p.since) >= self.limits.linger;
        if !self.pending.values().any(is_due) {
            return Ok(Flushed::Queued);
        }
        let due: Vec<TopicPartition> = self
            .pending
            .iter()
            .filter(|(_, p)| is_due(p))
            .map(|(tp, _)| tp.clone())
            .collect();
        self.flush(due, groups)
    }

    /// `full` and every other partition holding at least half a batch:
    /// partitions fed at similar rates fill together, and one fsync for all
    /// of them costs what one costs for each (group commit).
    fn group_with(&self, full: TopicPartition) -> Vec<TopicPartition> {
        let mut group: Vec<TopicPartition> = self
            .pending
            .iter()
            .filter(|(tp, p)| {
                **tp != full
                    && (p.frame.records() * 2 >= self.limits.max_records
                        || p.frame.payload_len() * 2 >= self.limits.max_bytes)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        group.push(full);
        group
    }

    /// Sends the partitions' pending batches to the appender as one group
    /// (one fsync for all), waiting while its queue is full. Their source
    /// offsets are committed once the appender reports them durable.
    fn flush(
        &mut self,
        partitions: Vec<TopicPartition>,
        groups: &SyncSender<Vec<FramedBatch>>,
    ) -> Result<Flushed, SourceError> {
        let mut batches = Vec::with_capacity(partitions.len());
        for tp in partitions {
            // A pending batch exists only once a record is in it.
            let Some(pending) = self.pending.remove(&tp) else {
                continue;
            };
            let framed = pending.frame.finish().map_err(|source| WalError::Frame {
                tp: tp.clone(),
                source,
            })?;
            if let Some(next) = framed.next_offset {
                self.assignment.read_up_to(&tp, next);
            }
            batches.push(framed);
        }
        if batches.is_empty() {
            return Ok(Flushed::Queued);
        }
        Ok(match groups.send(batches) {
            Ok(()) => Flushed::Queued,
            Err(_) => Flushed::AppenderGone,
        })
    }

    /// Commits the source offsets of every group the appender made durable
    /// since the last call.
    fn commit_durable(&mut self, durable: &Receiver<Durable>) {
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for group in durable.try_iter() {
            next.extend(group.offsets);
            for buffer in group.buffers {
                self.free.put(buffer);
            }
        }
        if next.is_empty() {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        for (tp, offset) in &next {
            if let Err(e) =
                offsets.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))
            {
                tracing::debug!(partition = %tp, error = %e, "cannot note the source offset to commit");
            }
        }
        // Async: the commit only feeds lag monitoring, correctness never reads it.
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::debug!(error = %e, "source offset commit failed (monitoring only)");
        }
    }

    /// Whether to stop reading for now: the WAL holds [`lead_bytes`] and
    /// the target is taking transactions (no outage, and one committed
    /// within [`LEAD_PATIENCE`] of waiting). Not polling is enough:
    /// librdkafka stops fetching once its bounded queue is full, and the
    /// records wait on the source, as they would for a plain consumer.
    /// Otherwise the WAL fills on up to `wal.max_bytes` (see
    /// `apply_backpressure`).
    fn far_enough_ahead(&mut self, now: Instant) -> bool {
        if self.wal.bytes() < self.lead_bytes || self.shared.control.outage_secs().is_some() {
            self.lead_wait = None;
            return false;
        }
        let committed = self.shared.control.commits();
        match self.lead_wait {
            Some((since, seen)) if seen == committed => {
                now.saturating_duration_since(since) < LEAD_PATIENCE
            }
            _ => {
                self.lead_wait = Some((now, committed));
                true
            }
        }
    }

    /// Pauses the partitions while the WAL is full or the operator paused
    /// the relay; resumes them when neither holds.
    fn apply_backpressure(&mut self) -> Result<(), SourceError> {
        if !self.wal_full && self.wal.is_full() {
            self.wal_full = true;
            self.shared.metrics.set_paused("wal_full", true);
            tracing::warn!(
                wal_bytes = self.wal.bytes(),
                wal_max_bytes = self.wal.max_bytes(),
                "WAL full: source paused until the shipper drains it"
            );
        } else if self.wal_full
            && (self.wal.bytes() as f64) < self.wal.max_bytes() as f64 * RESUME_RATIO
        {
            self.wal_full = false;
            self.shared.metrics.set_paused("wal_full", false);
            tracing::info!(wal_bytes = self.wal.bytes(), "WAL drained: source resumed");
        }
        let hold = self.wal_full || self.shared.control.is_paused();
        if hold != self.consumer_paused {
            let assignment = self.consumer.assignment().map_err(SourceError::Consume)?;
            if hold {
                self.consumer.pause(&assignment)
            } else {
                self.consumer.resume(&assignment)
            }
            .map_err(SourceError::Consume)?;
            self.consumer_paused = hold;
        }
        Ok(())
    }

    /// Assigns the partitions the selection takes that the source has
    /// gained since the start (new partitions, new topics matching the
    /// regex), from their first record; a partition that disappeared is
    /// left to the gap check. A source that does not answer is asked
    /// again at the next refresh.
    fn refresh_partitions(&mut self) -> Result<(), SourceError> {
        // Partitions left (gone) count as copied: a listed topic that is
        // gone is a gap, not a reason to stop looking for the others.
        let known: BTreeMap<TopicPartition, i64> = self
            .assignment
            .partitions()
            .chain(self.assignment.left())
            .map(|tp| (tp.clone(), 0))
            .collect();
        let found = match partitions_known(&self.consumer, &self.config, &known) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for new source partitions; trying at the next refresh");
                return Ok(());
            }
        };
        let new: BTreeMap<TopicPartition, Offset> = found
            .iter()
            .filter(|tp| !self.assignment.contains(tp))
            .map(|tp| (tp.clone(), self.assignment.start_of(tp)))
            .collect();
        if !new.is_empty() {
            if let Err(e) = (self.prepare_target)() {
                tracing::warn!(error = %e, partitions = new.len(), "new source partitions found, but their target topics are not ready; trying at the next refresh");
                return Ok(());
            }
            tracing::info!(
                partitions = new.len(),
                "new source partitions found: copying them from their first record (or from where the relay left one it copied before)"
            );
            self.assignment.add(&self.consumer, &new)?;
            // Unpaused as assigned: `apply_backpressure` holds them if it must.
            self.consumer_paused = false;
        }
        if self.assignment.partitions().any(|tp| !found.contains(tp)) {
            self.check_gaps(Trigger::Unknown)?;
        }
        Ok(())
    }

    /// Looks for gaps (see `gaps`); if the source could not be asked,
    /// looks again in a second.
    fn check_gaps(&mut self, trigger: Trigger) -> Result<(), SourceError> {
        let pending = &self.pending;
        let context = self.consumer.context();
        let checked = self.assignment.check(
            &self.consumer,
            &self.gap_policy,
            trigger,
            |tp| pending.get(tp).and_then(|p| p.frame.next_offset()),
            |tp| context.stopped(tp),
        );
        // Partitions assigned anew, even by a look cut short, are unpaused:
        // `apply_backpressure` holds them again if it must.
        self.consumer_paused = false;
        match checked {
            Ok(_) => self.gap_check_due = None,
            Err(SourceError::Consume(e)) => {
                tracing::warn!(error = %e, "cannot compare the source positions with the source's offsets; trying again");
                self.gap_check_due = Some((Instant::now() + GAP_RECHECK, trigger));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn on_error(&mut self, e: KafkaError) -> Result<(), SourceError> {
        match kafka::code(&e) {
            Some(code) if kafka::auth_failed(code) => Err(SourceError::Consume(e)),
            Some(RDKafkaErrorCode::AutoOffsetReset) => {
                // The error does not say which partition; librdkafka's next
                // statistics say which ones it stopped. Each such error
                // moves the look on, so that it sees them all.
                tracing::warn!(error = %e, "a source position is out of range; comparing the stopped partitions with the source's offsets shortly");
                self.gap_check_due = Some((Instant::now() + GAP_SETTLE, Trigger::OutOfRange));
                Ok(())
            }
            Some(code) if kafka::unknown_partition(code) => {
                tracing::warn!(error = %e, "the source does not know a topic or partition; checking whether it is gone");
                self.check_gaps(Trigger::Unknown)
            }
            // Broker down, leader moves, timeouts: librdkafka reconnects and refetches.
            _ => {
                tracing::warn!(error = %e, "source consumer error; librdkafka retries");
                Ok(())
            }
        }
    }
}

/// Copies `record` into its partition's pending frame: the one copy of
/// its bytes before the WAL's write. (A function of the fields it needs:
/// the message it reads from borrows the consumer.)
fn buffer(
    pending: &mut BTreeMap<TopicPartition, Pending>,
    free: &mut FreeBuffers,
    limits: &BatchLimits,
    tp: &TopicPartition,
    record: &RecordRef<'_>,
) {
    if !pending.contains_key(tp) {
        // Room for a full batch of records like this one, so the frame
        // is not moved as it fills; capped, as one record says little.
        let expected = (record.payload_len() + RECORD_OVERHEAD)
            .saturating_mul(limits.max_records)
            .min(limits.max_bytes + RECORD_OVERHEAD)
            .min(FRAME_RESERVE_MAX);
        let fresh = Pending {
            frame: FrameBuilder::in_buffer(free.take(), &tp.topic, tp.partition, expected),
            since: Instant::now(),
        };
        pending.insert(tp.clone(), fresh);
    }
    if let Some(p) = pending.get_mut(tp) {
        p.frame.push(record);
    }
}

/// How far the source reads ahead of the shipper while the target is
/// healthy: [`LEAD_TRANSACTIONS`] full transactions, within `wal.max_bytes`.
///
/// Reading further ahead buys nothing while the target takes what the
/// shipper sends: the records are safe on the source either way, and the
/// WAL would only grow into disk pages it has not written before, which
/// cost more to write than pages of recycled segments (docs/benchmarks.md:
/// 1.4–2.7 CPU seconds per GiB on the benchmark machine). The WAL's room
/// beyond this is for outages.
pub fn lead_bytes(config: &Config) -> u64 {
    config
        .transaction
        .max_bytes
        .saturating_mul(LEAD_TRANSACTIONS)
        .min(config.wal.max_bytes)
}

/// A consumed message's record, over librdkafka's bytes.
pub fn record_ref<'a>(m: &'a BorrowedMessage<'_>) -> RecordRef<'a> {
    RecordRef {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key(),
        value: m.payload(),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| HeaderRef {
                        key: h.key,
                        value: h.value,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// Copies a consumed message into an owned record, byte for byte.
pub fn to_record(m: &BorrowedMessage<'_>) -> (TopicPartition, Record) {
    (
        TopicPartition::new(m.topic(), m.partition()),
        record_ref(m).to_record(),
    )
}

#[cfg(test)]
mod tests;
