//! The relay's Prometheus metrics: one registry per running relay, served
//! as text by `admin` on `/metrics`.
//!
//! Counters are updated by the stage that owns the fact, once per batch or
//! transaction, never per record: `source` (records and bytes consumed),
//! `shipper` (records and bytes shipped, transactions, retries by kind,
//! dead letters). Figures that already live elsewhere (WAL depth, last
//! checkpoints, dead-letter queue size, source lag, pause and outage state)
//! are copied in by [`Metrics::render`] just before each scrape, so there
//! is one source of truth for each.
//!
//! Every metric is prefixed `kafka_relay_`; docs/operations.md lists them.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::ops::control::Control;
use crate::record::TopicPartition;
use crate::wal::WalDepth;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

impl From<&TopicPartition> for PartitionLabels {
    fn from(tp: &TopicPartition) -> Self {
        PartitionLabels {
            topic: tp.topic.clone(),
            partition: tp.partition,
        }
    }
}

/// Why a target transaction was retried: the recovery chosen and the
/// error's librdkafka code (e.g. `MessageTimedOut`), or `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub recovery: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GapLabels {
    pub topic: String,
    pub partition: i32,
    pub cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PauseLabels {
    pub reason: String,
}

/// Why intake can be paused, as the `reason` label of `kafka_relay_paused`.
pub const PAUSE_REASONS: [&str; 3] = ["operator", "wal_full", "disk_full"];

type Float = Gauge<f64, AtomicU64>;

/// The metric families; clones share them.
pub struct Metrics {
    registry: Registry,
    pub consumed_records: Family<PartitionLabels, Counter>,
    pub consumed_bytes: Family<PartitionLabels, Counter>,
    pub shipped_records: Family<PartitionLabels, Counter>,
    pub shipped_bytes: Family<PartitionLabels, Counter>,
    pub source_lag: Family<PartitionLabels, Gauge>,
    pub last_checkpoint: Family<PartitionLabels, Gauge>,
    pub wal_records: Family<PartitionLabels, Gauge>,
    pub wal_partition_bytes: Family<PartitionLabels, Gauge>,
    pub transactions_committed: Counter,
    pub transactions_aborted: Counter,
    pub retries: Family<RetryLabels, Counter>,
    pub dead_lettered: Counter,
    pub dead_letters: Gauge,
    pub source_records_lost: Family<PartitionLabels, Counter>,
    pub source_gaps: Family<GapLabels, Counter>,
    pub wal_batches: Gauge,
    pub wal_bytes: Gauge,
    pub wal_peak_bytes: Gauge,
    pub wal_max_bytes: Gauge,
    pub wal_oldest_age: Float,
    pub paused: Family<PauseLabels, Gauge>,
    pub target_reachable: Gauge,
    /// Units of a scaled-out relay whose pipelines run here (`scale`).
    pub units_owned: Gauge,
    /// Units this instance stopped because another one fenced them.
    pub units_fenced: Counter,
    /// Source lag per partition: the one copy, for the gauge and `/status`.
    lag: Mutex<BTreeMap<TopicPartition, i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("kafka_relay"),
            consumed_records: Family::default(),
            consumed_bytes: Family::default(),
            shipped_records: Family::default(),
            shipped_bytes: Family::default(),
            source_lag: Family::default(),
            last_checkpoint: Family::default(),
            wal_records: Family::default(),
            wal_partition_bytes: Family::default(),
            transactions_committed: Counter::default(),
            transactions_aborted: Counter::default(),
            retries: Family::default(),
            dead_lettered: Counter::default(),
            dead_letters: Gauge::default(),
            source_records_lost: Family::default(),
            source_gaps: Family::default(),
            wal_batches: Gauge::default(),
            wal_bytes: Gauge::default(),
            wal_peak_bytes: Gauge::default(),
            wal_max_bytes: Gauge::default(),
            wal_oldest_age: Float::default(),
            paused: Family::default(),
            target_reachable: Gauge::default(),
            units_owned: Gauge::default(),
            units_fenced: Counter::default(),
            lag: Mutex::default(),
        };
        let r = &mut m.registry;
        r.register(
            "consumed_records",
            "Records read from the source and made durable in the WAL",
            m.consumed_records.clone(),
        );
        r.register(
            "consumed_bytes",
            "Bytes (key + value + headers) read from the source and made durable in the WAL",
            m.consumed_bytes.clone(),
        );
        r.register(
            "shipped_records",
            "Records committed to the target, by source topic-partition",
            m.shipped_records.clone(),
        );
        r.register(
            "shipped_bytes",
            "Bytes (key + value + headers) committed to the target, by source topic-partition",
            m.shipped_bytes.clone(),
        );
        r.register(
            "source_lag_records",
            "Records on the source not yet read by the relay (high watermark - position)",
            m.source_lag.clone(),
        );
        r.register(
            "last_checkpoint_offset",
            "Next source offset the target has committed (the last checkpoint), per source partition",
            m.last_checkpoint.clone(),
        );
        r.register(
            "wal_partition_records",
            "Records waiting in the WAL, per source partition",
            m.wal_records.clone(),
        );
        r.register(
            "wal_partition_bytes",
            "Stored bytes waiting in the WAL, per source partition",
            m.wal_partition_bytes.clone(),
        );
        r.register(
            "transactions_committed",
            "Target transactions committed",
            m.transactions_committed.clone(),
        );
        r.register(
            "transactions_aborted",
            "Target transactions aborted (each is retried from the WAL)",
            m.transactions_aborted.clone(),
        );
        r.register(
            "retries",
            "Failed target transaction attempts, by the recovery chosen and the error",
            m.retries.clone(),
        );
        r.register(
            "dead_lettered_records",
            "Records moved to the dead-letter queue by this process",
            m.dead_lettered.clone(),
        );
        r.register(
            "dead_letters",
            "Records in the dead-letter queue now",
            m.dead_letters.clone(),
        );
        r.register(
            "wal_batches",
            "Batches waiting in the WAL (corrupted ones included)",
            m.wal_batches.clone(),
        );
        r.register(
            "wal_bytes",
            "Stored bytes waiting in the WAL; intake pauses at wal_max_bytes",
            m.wal_bytes.clone(),
        );
        r.register(
            "wal_peak_bytes",
            "The most stored bytes the WAL has held since the relay opened it",
            m.wal_peak_bytes.clone(),
        );
        r.register("wal_max_bytes", "wal.max_bytes", m.wal_max_bytes.clone());
        r.register(
            "wal_oldest_entry_age_seconds",
            "Age of the oldest batch waiting in the WAL (0 when empty)",
            m.wal_oldest_age.clone(),
        );
        r.register(
            "paused",
            "1 while intake is paused, by reason: operator (pause or enabled = false), wal_full, disk_full",
            m.paused.clone(),
        );
        r.register(
            "source_records_lost",
            "Source offsets deleted at the source before the relay copied them (source.on_gap = skip), by partition, over the relay's life (kept with its gaps)",
            m.source_records_lost.clone(),
        );
        r.register(
            "source_gaps",
            "Source gaps recorded (ranges deleted at the source, partitions gone), by partition and cause",
            m.source_gaps.clone(),
        );
        r.register(
            "target_reachable",
            "0 while target transactions are failing (an outage), else 1",
            m.target_reachable.clone(),
        );
        r.register(
            "units_owned",
            "Units of a scaled-out relay ([scale]) whose pipelines run in this instance; 0 without [scale]",
            m.units_owned.clone(),
        );
        r.register(
            "units_fenced",
            "Units this instance stopped because another instance fenced them (it owns them now)",
            m.units_fenced.clone(),
        );
        for reason in PAUSE_REASONS {
            m.set_paused(reason, false);
        }
        m
    }

    /// Records that `records`/`bytes` of `tp` were made durable in the WAL.
    pub fn consumed(&self, tp: &TopicPartition, records: u64, bytes: u64) {
        let labels = PartitionLabels::from(tp);
        self.consumed_records.get_or_create(&labels).inc_by(records);
        self.consumed_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Counts a recorded source gap (see `gap`).
    pub fn source_gap(&self, gap: &crate::gap::Gap) {
        self.source_lost(&gap.tp, gap.offsets().unwrap_or(0));
        self.source_gaps
            .get_or_create(&GapLabels {
                topic: gap.tp.topic.clone(),
                partition: gap.tp.partition,
                cause: gap.cause.label().to_string(),
            })
            .inc();
    }

    /// Counts `offsets` more lost at the source in `tp` (a gap that grew).
    pub fn source_lost(&self, tp: &TopicPartition, offsets: u64) {
        self.source_records_lost
            .get_or_create(&PartitionLabels::from(tp))
            .inc_by(offsets);
    }

    /// Records a committed transaction's share for one source partition.
    pub fn shipped(&self, tp: &TopicPartition, records: u64, bytes: u64) {
        let labels = PartitionLabels::from(tp);
        self.shipped_records.get_or_create(&labels).inc_by(records);
        self.shipped_bytes.get_or_create(&labels).inc_by(bytes);
    }

    /// Records the source lag librdkafka reported for `tp`.
    pub fn set_lag(&self, tp: &TopicPartition, lag: i64) {
        self.lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tp.clone(), lag);
    }

    /// Source lag per partition, as last reported.
    pub fn lag(&self) -> BTreeMap<TopicPartition, i64> {
        self.lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_paused(&self, reason: &str, paused: bool) {
        self.paused
            .get_or_create(&PauseLabels {
                reason: reason.to_string(),
            })
            .set(i64::from(paused));
    }

    pub fn retried(&self, recovery: &str, error: &str) {
        self.retries
            .get_or_create(&RetryLabels {
                recovery: recovery.to_string(),
                error: error.to_string(),
            })
            .inc();
    }

    /// Copies in what other parts own, then renders the text exposition.
    /// `delivered`: the WAL's copy of the last committed checkpoints.
    pub fn render(
        &self,
        depth: &WalDepth,
        max_bytes: u64,
        delivered: &BTreeMap<TopicPartition, i64>,
        dead_letters: usize,
        control: &Control,
        now_ms: i64,
    ) -> String {
        for (tp, next) in delivered {
            self.last_checkpoint
                .get_or_create(&PartitionLabels::from(tp))
                .set(*next);
        }
        for (tp, lag) in self.lag() {
            self.source_lag
                .get_or_create(&PartitionLabels::from(&tp))
                .set(lag);
        }
        self.wal_batches.set(depth.total.batches as i64);
        self.wal_bytes.set(depth.total.bytes as i64);
        self.wal_peak_bytes.set(depth.peak_bytes as i64);
        self.wal_max_bytes.set(max_bytes as i64);
        self.wal_oldest_age.set(
            depth
                .total
                .oldest_appended_ms
                .map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0),
        );
        // Partitions drained since the last scrape must read 0, not their old depth.
        self.wal_records.clear();
        self.wal_partition_bytes.clear();
        for (tp, d) in &depth.partitions {
            let labels = PartitionLabels::from(tp);
            self.wal_records
                .get_or_create(&labels)
                .set(d.records as i64);
            self.wal_partition_bytes
                .get_or_create(&labels)
                .set(d.bytes as i64);
        }
        self.dead_letters.set(dead_letters as i64);
        self.set_paused("operator", control.is_paused());
        self.target_reachable
            .set(i64::from(control.outage_secs().is_none()));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
