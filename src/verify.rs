//! `verify`: the audit after a sync. Reads a range of every selected source
//! partition and the target topic(s), both `read_committed`, and counts per
//! source partition the records that are on the target once (`matched`),
//! not at all (`missing`), more than once (`duplicated`), or changed
//! (`differing`).
//!
//! Called by `kafka-relay verify` (`cli::verify`), which prints the
//! [`Report`] and exits non-zero unless [`Report::passed`]. Blocking: run it
//! on a blocking thread.
//!
//! # What a source record should look like on the target
//!
//! Exactly what the shipper sends, computed by the same functions
//! ([`format::target_value`], [`format::copies_metadata`]): the source key,
//! the value (raw, or the envelope JSON), and the source headers (raw only).
//! A record is compared by a [`Digest`]: SHA-256 over key, value and headers
//! with length prefixes and presence tags, so field boundaries are
//! unambiguous and a null key or value differs from an empty one. The
//! timestamp is left out of the digest: a target topic with
//! `message.timestamp.type=LogAppendTime` rewrites it, and an envelope's
//! target timestamp is the producer's own.
//!
//! # Matching (see [`match_records`])
//!
//! Source and target records are multisets of digests, so a source that
//! holds the same content twice needs it twice on the target:
//! - `matched`: a source record paired with one target record of the same
//!   digest (first come, first paired, in offset order);
//! - `duplicated`: each target record left over with a digest some source
//!   record in the range has: an extra copy;
//! - `differing`: a source record without a pair whose *identity* equals
//!   that of a left-over target record: the record arrived, changed. The
//!   identity is the key and timestamp in `raw`, the source topic, partition
//!   and offset inside the JSON in `envelope`;
//! - `missing`: the other source records without a pair;
//! - `other`: target records left over after all that. They belong to data
//!   before the range, records written after verify took its snapshot, or
//!   another writer; they are reported, and never fail the run.
//!
//! # Units, memory and cost
//!
//! The target is read in *units*, each once: with `partitioning = same`,
//! one target partition together with the source partitions of that number
//! (of every source topic written to that target topic); with `key_hash`,
//! every partition of the target topic together with every source
//! partition written to it. One unit is held in memory at a time: the
//! source range's digests and identities, and those target records that
//! share a digest or identity with one of them (every other target record
//! is `other` whatever happens, so it is counted and dropped as it is
//! read). Matching sorts and merges index vectors instead of building hash
//! maps. Measured on synthetic units: about 120 bytes per source record
//! alone, about 190 bytes per source record together with its copy on the
//! target (4 million records: 750 MB peak). A unit too large for memory is
//! audited in slices with `--from`/`--to`.
//!
//! Each target partition is read from its low watermark to the high
//! watermark taken when verify started, whatever the source range: the
//! relay keeps no index from source offsets to target offsets, so an audit
//! of a small source range still reads the whole target partition (network
//! and time, not memory).
//!
//! # Snapshot
//!
//! Source ranges end, by default, at each partition's high watermark when
//! verify starts; target partitions are read to their high watermark (for
//! `read_committed`, the last stable offset: a transaction still open is not
//! read). Run verify once the relay has caught up, or give `--to`: records
//! the relay has not delivered yet count as missing.
//!
//! Reads never commit offsets (group `<source group>.verify`, auto commit
//! off) and never write anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::config::{Config, Format, Partitioning};
use crate::format;
use crate::record::{Record, TopicPartition};
use crate::shipper::target_client;
use crate::source::{self, SourceError};

const TIMEOUT: Duration = Duration::from_secs(30);
/// A read that makes no progress for this long is given up (broker gone).
const STALL: Duration = Duration::from_secs(60);

/// SHA-256 of a record's key, value and headers (see the module doc).
pub type Digest = [u8; 32];
/// What names a record across a change of content (see the module doc);
/// a truncated SHA-256, 128 bits are plenty to tell records apart.
pub type Identity = [u8; 16];

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot create the {side} consumer: {source}")]
    Client {
        side: Side,
        #[source]
        source: KafkaError,
    },
    #[error("cannot read the watermarks of {side} partition {tp}: {source}")]
    Watermarks {
        side: Side,
        tp: TopicPartition,
        #[source]
        source: KafkaError,
    },
    #[error("cannot look up the offset for time {ms} on source partition {tp}: {source}")]
    OffsetsForTimes {
        tp: TopicPartition,
        ms: i64,
        #[source]
        source: KafkaError,
    },
    #[error("cannot read target metadata from {servers}: {source}")]
    TargetMetadata {
        servers: String,
        #[source]
        source: KafkaError,
    },
    #[error("target topic {0:?} does not exist")]
    MissingTargetTopic(String),
    #[error("target topic {topic} has no partition {partition}, which partitioning = \"same\" writes to")]
    MissingTargetPartition { topic: String, partition: i32 },
    #[error("cannot assign {side} partitions of {topic}: {source}")]
    Assign {
        side: Side,
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading {side} topic {topic}: {source}")]
    Read {
        side: Side,
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("reading {side} topic {topic}: no progress for {}s on partition(s) {partitions:?}", STALL.as_secs())]
    Stalled {
        side: Side,
        topic: String,
        partitions: Vec<i32>,
    },
}

/// Which cluster a read is on, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// One end of the source range, the same for every partition: an offset
/// (clamped to what the partition holds) or a time (the first record at or
/// after it, by `offsets_for_times`; none means the partition's end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is neither an offset (e.g. 1000) nor a time (ts:<ms since the epoch>, e.g. ts:1700000000000)")]
pub struct BoundError(String);

impl FromStr for Bound {
    type Err = BoundError;
    fn from_str(s: &str) -> Result<Bound, BoundError> {
        let bad = || BoundError(s.to_string());
        let (time, number) = match s.strip_prefix("ts:") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let n: i64 = number.trim().parse().map_err(|_| bad())?;
        if n < 0 {
            return Err(bad());
        }
        Ok(if time {
            Bound::Time(n)
        } else {
            Bound::Offset(n)
        })
    }
}

/// What to verify and how much detail to keep.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Start of the range (inclusive); default the low watermark.
    pub from: Option<Bound>,
    /// End of the range (exclusive); default the high watermark at start.
    pub to: Option<Bound>,
    /// Example offsets kept per kind of difference and partition.
    pub examples: usize,
}

/// A record on the target, by partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TargetAt {
    pub partition: i32,
    pub offset: i64,
}

/// A source record and the target record it was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Pair {
    pub source_offset: i64,
    pub target_partition: i32,
    pub target_offset: i64,
}

/// Up to [`Options::examples`] offsets of each kind, so an auditor can look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Examples {
    /// Source offsets.
    pub missing: Vec<i64>,
    /// The source record and the extra copy on the target.
    pub duplicated: Vec<Pair>,
    /// The source record and the changed target record.
    pub differing: Vec<Pair>,
}

/// The counts of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub matched: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub differing: u64,
    pub examples: Examples,
}

/// A source record as [`match_records`] sees it. `source` indexes the
/// unit's source partitions.
#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub source: usize,
    pub offset: i64,
    pub digest: Digest,
    pub identity: Option<Identity>,
}

/// A target record as [`match_records`] sees it.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    pub at: TargetAt,
    pub digest: Digest,
    pub identity: Option<Identity>,
}

/// The outcome of matching one unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matching {
    /// One per source partition of the unit.
    pub tallies: Vec<Tally>,
    pub other: u64,
    pub other_examples: Vec<TargetAt>,
}

fn push_example<T>(list: &mut Vec<T>, limit: usize, item: T) {
    if list.len() < limit {
        list.push(item);
    }
}

/// Runs of equal keys in two index lists sorted by key: calls `group` with
/// the source and target indices of each key, in their sorted order.
fn merge_groups<K: Ord>(
    source: &[usize],
    source_key: impl Fn(usize) -> K,
    target: &[usize],
    target_key: impl Fn(usize) -> K,
    mut group: impl FnMut(&[usize], &[usize]),
) {
    let (mut i, mut j) = (0, 0);
    while i < source.len() || j < target.len() {
        let key = match (source.get(i), target.get(j)) {
            (Some(&s), Some(&t)) => source_key(s).min(target_key(t)),
            (Some(&s), None) => source_key(s),
            (None, Some(&t)) => target_key(t),
            (None, None) => break,
        };
        let i_end = i + source[i..].partition_point(|&s| source_key(s) <= key);
        let j_end = j + target[j..].partition_point(|&t| target_key(t) <= key);
        group(&source[i..i_end], &target[j..j_end]);
        (i, j) = (i_end, j_end);
    }
}

/// Matches the source records of a unit (`sources` partitions, entries in
/// offset order per partition) with the unit's target records (in
/// partition, offset order), by the rules in the module doc. Pure: no I/O.
///
/// Sort and merge rather than hash maps: besides the entries themselves it
/// needs one index per record, which keeps a unit of millions of records
/// affordable. Stable sorts keep "first come, first paired".
pub fn match_records(
    sources: usize,
    source: &[SourceEntry],
    target: &[TargetEntry],
    examples: usize,
) -> Matching {
    let mut tallies = vec![Tally::default(); sources];
    let mut by_digest: Vec<usize> = (0..source.len()).collect();
    by_digest.sort_by_key(|&i| source[i].digest);
    let mut target_by_digest: Vec<usize> = (0..target.len()).collect();
    target_by_digest.sort_by_key(|&i| target[i].digest);

    let mut unpaired = Vec::new();
    let mut left_over = Vec::new();
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    merge_groups(
        &by_digest,
        |i| source[i].digest,
        &target_by_digest,
        |i| target[i].digest,
        |s, t| {
            let paired = s.len().min(t.len());
            for &i in &s[..paired] {
                tallies[source[i].source].matched += 1;
            }
            unpaired.extend_from_slice(&s[paired..]);
            match s.first() {
                // Extra copies of content the range has: duplicates of its first record.
                Some(&first) => duplicates.extend(t[paired..].iter().map(|&t| (first, t))),
                None => left_over.extend_from_slice(t),
            }
        },
    );
    drop((by_digest, target_by_digest));

    duplicates.sort_unstable_by_key(|&(_, t)| (target[t].at.partition, target[t].at.offset));
    for (s, t) in duplicates {
        let (s, t) = (&source[s], &target[t]);
        let tally = &mut tallies[s.source];
        tally.duplicated += 1;
        push_example(
            &mut tally.examples.duplicated,
            examples,
            Pair {
                source_offset: s.offset,
                target_partition: t.at.partition,
                target_offset: t.at.offset,
            },
        );
    }

    // Records that are not on the target as they are: changed, or absent.
    unpaired.sort_unstable();
    unpaired.sort_by_key(|&i| source[i].identity);
    left_over.sort_by_key(|&i| {
        (
            target[i].identity,
            target[i].at.partition,
            target[i].at.offset,
        )
    });
    let mut changed_to: Vec<(usize, usize)> = Vec::new();
    let mut other = Vec::new();
    merge_groups(
        &unpaired,
        |i| source[i].identity,
        &left_over,
        |i| target[i].identity,
        |s, t| {
            // No identity (not an envelope) names nothing.
            let paired = if s.first().is_some_and(|&i| source[i].identity.is_some()) {
                s.len().min(t.len())
            } else {
                0
            };
            changed_to.extend(s[..paired].iter().copied().zip(t[..paired].iter().copied()));
            other.extend_from_slice(&t[paired..]);
        },
    );
    // Tallied in source order, so the examples are the lowest offsets.
    changed_to.sort_unstable();
    let mut changed = changed_to.iter().peekable();
    unpaired.sort_unstable();
    for i in unpaired {
        let s = &source[i];
        let tally = &mut tallies[s.source];
        match changed.next_if(|(c, _)| *c == i) {
            Some(&(_, t)) => {
                tally.differing += 1;
                push_example(
                    &mut tally.examples.differing,
                    examples,
                    Pair {
                        source_offset: s.offset,
                        target_partition: target[t].at.partition,
                        target_offset: target[t].at.offset,
                    },
                );
            }
            None => {
                tally.missing += 1;
                push_example(&mut tally.examples.missing, examples, s.offset);
            }
        }
    }
    other.sort_unstable();
    Matching {
        tallies,
        other: other.len() as u64,
        other_examples: other.iter().take(examples).map(|&t| target[t].at).collect(),
    }
}

fn put_bytes(hasher: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => hasher.update([0u8]),
        Some(b) => {
            hasher.update([1u8]);
            hasher.update((b.len() as u64).to_be_bytes());
            hasher.update(b);
        }
    }
}

/// The digest of a record's key, value and headers (in order).
pub fn digest<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Digest {
    let mut hasher = Sha256::new();
    put_bytes(&mut hasher, key);
    put_bytes(&mut hasher, value);
    hasher.update((headers.len() as u64).to_be_bytes());
    for (k, v) in headers {
        put_bytes(&mut hasher, Some(k.as_bytes()));
        put_bytes(&mut hasher, v);
    }
    hasher.finalize().into()
}

fn truncated(hasher: Sha256) -> Identity {
    let full: [u8; 32] = hasher.finalize().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// `raw`: a record is named by its key and timestamp.
pub fn raw_identity(key: Option<&[u8]>, timestamp: Option<i64>) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"raw");
    put_bytes(&mut hasher, key);
    put_bytes(
        &mut hasher,
        timestamp.map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
    );
    truncated(hasher)
}

/// `envelope`: a record is named by the source position inside its JSON.
pub fn envelope_identity(topic: &str, partition: i32, offset: i64) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"envelope");
    put_bytes(&mut hasher, Some(topic.as_bytes()));
    hasher.update(partition.to_be_bytes());
    hasher.update(offset.to_be_bytes());
    truncated(hasher)
}

/// What a source record should be on the target: its digest and identity.
pub fn expected(
    format: Format,
    topic: &str,
    partition: i32,
    record: &Record,
) -> (Digest, Option<Identity>) {
    let value = format::target_value(format, topic, partition, record);
    let copies = format::copies_metadata(format);
    let headers = record
        .headers
        .iter()
        .filter(|_| copies)
        .map(|h| (h.key.as_str(), h.value.as_deref()))
        .collect::<Vec<_>>();
    let digest = digest(record.key.as_deref(), value.as_deref(), headers.into_iter());
    let identity = match format {
        Format::Raw => raw_identity(record.key.as_deref(), record.timestamp),
        Format::Envelope => envelope_identity(topic, partition, record.offset),
    };
    (digest, Some(identity))
}

#[derive(serde::Deserialize)]
struct EnvelopePosition {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A target record's digest and identity (none: not an envelope where one
/// was expected).
pub fn observed(format: Format, m: &BorrowedMessage<'_>) -> (Digest, Option<Identity>) {
    let headers: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let digest = digest(m.key(), m.payload(), headers.into_iter());
    let identity = match format {
        Format::Raw => Some(raw_identity(m.key(), m.timestamp().to_millis())),
        Format::Envelope => m
            .payload()
            .and_then(|p| serde_json::from_slice::<EnvelopePosition>(p).ok())
            .map(|e| envelope_identity(&e.topic, e.partition, e.offset)),
    };
    (digest, identity)
}

/// One source partition's row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: i32,
    /// The verified range, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub target_topic: String,
    /// `None` with `key_hash`: every partition of the target topic.
    pub target_partition: Option<i32>,
    /// Records read from the range (aborted transactions and control
    /// records take offsets but are no records).
    pub records: u64,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A target partition's range as read.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRange {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// One unit of the target (see the module doc).
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub topic: String,
    pub partitions: Vec<TargetRange>,
    pub records: u64,
    pub other: u64,
    pub other_examples: Vec<TargetAt>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub records: u64,
    pub matched: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub differing: u64,
    pub other: u64,
}

/// Everything verify found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub partitioning: &'static str,
    pub partitions: Vec<PartitionReport>,
    pub targets: Vec<TargetReport>,
    pub totals: Totals,
    pub passed: bool,
}

impl Report {
    /// No record missing, duplicated or differing.
    pub fn passed(&self) -> bool {
        self.passed
    }

    fn new(
        format: Format,
        partitioning: Partitioning,
        partitions: Vec<PartitionReport>,
        targets: Vec<TargetReport>,
    ) -> Report {
        let mut totals = Totals::default();
        for p in &partitions {
            totals.records += p.records;
            totals.matched += p.tally.matched;
            totals.missing += p.tally.missing;
            totals.duplicated += p.tally.duplicated;
            totals.differing += p.tally.differing;
        }
        totals.other = targets.iter().map(|t| t.other).sum();
        let passed = totals.missing == 0 && totals.duplicated == 0 && totals.differing == 0;
        Report {
            format: match format {
                Format::Raw => "raw",
                Format::Envelope => "envelope",
            },
            partitioning: match partitioning {
                Partitioning::Same => "same",
                Partitioning::KeyHash => "key_hash",
            },
            partitions,
            targets,
            totals,
            passed,
        }
    }
}

/// The source partitions read against one target unit.
struct Unit {
    topic: String,
    /// Target partitions with their `[low, high)` at start.
    partitions: Vec<TargetRange>,
    /// Source partitions with their range.
    sources: Vec<SourceRange>,
}

/// A source partition's range `[from, to)`.
struct SourceRange {
    tp: TopicPartition,
    from: i64,
    to: i64,
}

/// The consumers' context. librdkafka hands every error event, the
/// end-of-partition signal included, to the client's error callback as well,
/// whose default logs it as an ERROR: an auditor would read a failure into
/// the expected end of a read. The end is handled by [`read`]; anything else
/// is logged as a warning (librdkafka retries it).
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "librdkafka reported an error");
        }
    }
}

impl ConsumerContext for Quiet {}

type Reader = BaseConsumer<Quiet>;

fn consumer(mut client: ClientConfig, group: &str, side: Side) -> Result<Reader, VerifyError> {
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // A start position gone (retention) must fail the audit, not skip records.
        .set("auto.offset.reset", "error");
    client
        .create_with_context(Quiet)
        .map_err(|source| VerifyError::Client { side, source })
}

fn watermarks(
    consumer: &Reader,
    side: Side,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), VerifyError> {
    consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|source| VerifyError::Watermarks {
            side,
            tp: TopicPartition::new(topic, partition),
            source,
        })
}

/// Resolves a bound on one source partition holding `[low, high)`.
fn resolve(
    consumer: &Reader,
    tp: &TopicPartition,
    bound: Bound,
    low: i64,
    high: i64,
) -> Result<i64, VerifyError> {
    let offset = match bound {
        Bound::Offset(o) => o,
        Bound::Time(ms) => {
            let mut tpl = TopicPartitionList::new();
            let lookup_error = |source| VerifyError::OffsetsForTimes {
                tp: tp.clone(),
                ms,
                source,
            };
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ms))
                .map_err(lookup_error)?;
            let found = consumer
                .offsets_for_times(tpl, TIMEOUT)
                .map_err(lookup_error)?;
            let offset = found
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset());
            match offset {
                Some(Offset::Offset(o)) if o >= 0 => o,
                // No record at or after that time.
                _ => high,
            }
        }
    };
    Ok(offset.clamp(low, high))
}

/// Runs the whole audit. `progress` counts offsets read on both sides.
pub fn verify(
    config: &Config,
    options: &Options,
    progress: &ProgressBar,
) -> Result<Report, VerifyError> {
    let group = format!("{}.verify", config.group_id());
    let mut source_client = ClientConfig::new();
    for (k, v) in config.source_client_config() {
        source_client.set(k, v);
    }
    let src = consumer(source_client, &group, Side::Source)?;
    let target = consumer(target_client(config), &group, Side::Target)?;

    // The snapshot: every range is fixed before anything is read.
    let mut ranges = Vec::new();
    for tp in source::partitions(&src, config)? {
        let (low, high) = watermarks(&src, Side::Source, &tp.topic, tp.partition)?;
        let from = match options.from {
            Some(b) => resolve(&src, &tp, b, low, high)?,
            None => low,
        };
        let to = match options.to {
            Some(b) => resolve(&src, &tp, b, low, high)?,
            None => high,
        };
        ranges.push(SourceRange {
            tp,
            from,
            to: to.max(from),
        });
    }
    let units = units(config, &target, ranges)?;
    let total: i64 = units
        .iter()
        .map(|u| {
            u.sources.iter().map(|r| r.to - r.from).sum::<i64>()
                + u.partitions.iter().map(|r| r.to - r.from).sum::<i64>()
        })
        .sum();
    progress.set_length(total.max(0) as u64);

    let mut partitions = Vec::new();
    let mut targets = Vec::new();
    for unit in units {
        let (rows, report) = verify_unit(config, options, &src, &target, unit, progress)?;
        partitions.extend(rows);
        targets.push(report);
    }
    progress.finish_and_clear();
    Ok(Report::new(
        config.format,
        config.target.partitioning,
        partitions,
        targets,
    ))
}

/// Groups the source ranges by the target partitions they are written to.
fn units(
    config: &Config,
    target: &Reader,
    ranges: Vec<SourceRange>,
) -> Result<Vec<Unit>, VerifyError> {
    let mut target_partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    let mut grouped: BTreeMap<(String, Option<i32>), Vec<SourceRange>> = BTreeMap::new();
    for range in ranges {
        let topic = config.target_topic_for(&range.tp.topic);
        if !target_partitions.contains_key(&topic) {
            let metadata = target
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(|source| VerifyError::TargetMetadata {
                    servers: config.target.bootstrap_servers.clone(),
                    source,
                })?;
            let ids: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if ids.is_empty() {
                return Err(VerifyError::MissingTargetTopic(topic));
            }
            target_partitions.insert(topic.clone(), ids);
        }
        let partition = match config.target.partitioning {
            Partitioning::Same => Some(range.tp.partition),
            Partitioning::KeyHash => None,
        };
        grouped.entry((topic, partition)).or_default().push(range);
    }
    let mut units = Vec::new();
    for ((topic, partition), sources) in grouped {
        let all = &target_partitions[&topic];
        let ids: Vec<i32> = match partition {
            Some(p) if all.contains(&p) => vec![p],
            Some(p) => {
                return Err(VerifyError::MissingTargetPartition {
                    topic,
                    partition: p,
                })
            }
            None => all.clone(),
        };
        let mut partitions = Vec::new();
        for p in ids {
            let (from, to) = watermarks(target, Side::Target, &topic, p)?;
            partitions.push(TargetRange {
                partition: p,
                from,
                to,
            });
        }
        units.push(Unit {
            topic,
            partitions,
            sources,
        });
    }
    Ok(units)
}

fn verify_unit(
    config: &Config,
    options: &Options,
    src: &Reader,
    target: &Reader,
    unit: Unit,
    progress: &ProgressBar,
) -> Result<(Vec<PartitionReport>, TargetReport), VerifyError> {
    let format = config.format;
    let mut source_entries = Vec::new();
    let mut counts = vec![0u64; unit.sources.len()];
    for (index, SourceRange { tp, from, to }) in unit.sources.iter().enumerate() {
        progress.set_message(format!("source {tp}"));
        let range = TargetRange {
            partition: tp.partition,
            from: *from,
            to: *to,
        };
        read(src, Side::Source, &tp.topic, &[range], progress, |m| {
            let (_, record) = source::to_record(m);
            let (digest, identity) = expected(format, &tp.topic, tp.partition, &record);
            counts[index] += 1;
            source_entries.push(SourceEntry {
                source: index,
                offset: record.offset,
                digest,
                identity,
            });
        })?;
    }
    progress.set_message(format!("target {}", unit.topic));
    // Only target records that resemble one of the range (by digest or
    // identity) can be matched, duplicated or differing; the rest are
    // `other` whatever happens, so they are counted here and not kept:
    // memory follows the source range, not the size of the target.
    // Sorted vectors, not hash sets: no slack per record.
    let mut digests: Vec<Digest> = source_entries.iter().map(|s| s.digest).collect();
    digests.sort_unstable();
    digests.dedup();
    let mut identities: Vec<Identity> = source_entries.iter().filter_map(|s| s.identity).collect();
    identities.sort_unstable();
    identities.dedup();
    let mut target_entries = Vec::new();
    let mut target_records = 0u64;
    let mut unlike = 0u64;
    let mut other_examples = Vec::new();
    read(
        target,
        Side::Target,
        &unit.topic,
        &unit.partitions,
        progress,
        |m| {
            target_records += 1;
            let (digest, identity) = observed(format, m);
            let at = TargetAt {
                partition: m.partition(),
                offset: m.offset(),
            };
            if digests.binary_search(&digest).is_ok()
                || identity.is_some_and(|i| identities.binary_search(&i).is_ok())
            {
                target_entries.push(TargetEntry {
                    at,
                    digest,
                    identity,
                });
            } else {
                unlike += 1;
                other_examples.push(at);
                // Keep the lowest offsets without holding them all.
                if other_examples.len() > 4 * options.examples.max(1) {
                    other_examples.sort_unstable_by_key(|a| (a.partition, a.offset));
                    other_examples.truncate(options.examples);
                }
            }
        },
    )?;
    drop((digests, identities));
    // Pooled partitions arrive interleaved; pairing goes in offset order.
    target_entries.sort_unstable_by_key(|t| (t.at.partition, t.at.offset));
    let matching = match_records(
        unit.sources.len(),
        &source_entries,
        &target_entries,
        options.examples,
    );
    other_examples.extend(matching.other_examples);
    other_examples.sort_unstable_by_key(|a| (a.partition, a.offset));
    other_examples.truncate(options.examples);
    let target_partition = match config.target.partitioning {
        Partitioning::Same => unit.partitions.first().map(|r| r.partition),
        Partitioning::KeyHash => None,
    };
    let rows = unit
        .sources
        .into_iter()
        .zip(matching.tallies)
        .zip(counts)
        .map(
            |((SourceRange { tp, from, to }, tally), records)| PartitionReport {
                topic: tp.topic,
                partition: tp.partition,
                from,
                to,
                target_topic: unit.topic.clone(),
                target_partition,
                records,
                tally,
            },
        )
        .collect();
    let report = TargetReport {
        records: target_records,
        topic: unit.topic,
        partitions: unit.partitions,
        other: matching.other + unlike,
        other_examples,
    };
    Ok((rows, report))
}

/// Reads `[from, to)` of each range of `topic` (read_committed), calling
/// `visit` per record. A partition is done at its last offset or at its end
/// (`enable.partition.eof`): under read_committed the last offsets of a
/// transactional topic are commit markers no reader ever sees.
fn read(
    consumer: &Reader,
    side: Side,
    topic: &str,
    ranges: &[TargetRange],
    progress: &ProgressBar,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), VerifyError> {
    let assign_error = |source| VerifyError::Assign {
        side,
        topic: topic.to_string(),
        source,
    };
    // partition -> (next offset not yet counted in the progress, end)
    let mut open: HashMap<i32, (i64, i64)> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for r in ranges.iter().filter(|r| r.from < r.to) {
        tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.from))
            .map_err(assign_error)?;
        open.insert(r.partition, (r.from, r.to));
    }
    if open.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(assign_error)?;
    let mut last_progress = Instant::now();
    let mut done = HashSet::new();
    while done.len() < open.len() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some((next, to)) = open.get_mut(&p).filter(|_| m.topic() == topic) else {
                    continue;
                };
                if done.contains(&p) {
                    continue;
                }
                last_progress = Instant::now();
                let offset = m.offset();
                if offset < *to {
                    visit(&m);
                }
                let reached = (offset + 1).min(*to);
                progress.inc((reached - *next).max(0) as u64);
                *next = reached;
                if offset + 1 >= *to {
                    done.insert(p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some((next, to)) = open.get_mut(&p) {
                    progress.inc((*to - *next).max(0) as u64);
                    *next = *to;
                    done.insert(p);
                    last_progress = Instant::now();
                }
            }
            Some(Err(e)) if is_fatal(&e) => {
                let _ = consumer.unassign();
                return Err(VerifyError::Read {
                    side,
                    topic: topic.to_string(),
                    source: e,
                });
            }
            // Leader moves, broker restarts: librdkafka retries by itself.
            Some(Err(e)) => {
                tracing::warn!(%side, topic, error = %e, "read error; librdkafka retries")
            }
            None => {}
        }
        if last_progress.elapsed() > STALL {
            let _ = consumer.unassign();
            let mut partitions: Vec<i32> = open
                .keys()
                .filter(|p| !done.contains(*p))
                .copied()
                .collect();
            partitions.sort_unstable();
            return Err(VerifyError::Stalled {
                side,
                topic: topic.to_string(),
                partitions,
            });
        }
    }
    let _ = consumer.unassign();
    Ok(())
}

fn is_fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::AutoOffsetReset
                | RDKafkaErrorCode::OffsetOutOfRange
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
