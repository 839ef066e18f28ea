//! `verify`: the audit after a sync. Reads a range of every selected source
//! partition and the target topic(s), both `read_committed`, and counts per
//! source partition the records that are on the target once (`matched`),
//! more than once (`duplicated`), or changed (`differing`), and the records
//! not on the target, in three kinds: lost through the relay (`missing`),
//! deleted by the target after delivery (`deleted_at_target`), and offsets
//! the relay recorded as deleted at the source before it could read them
//! (`lost_at_source`).
//!
//! Called by `kafka-relay verify` (`cli::verify`), which prints the
//! [`Report`] and exits non-zero unless [`Report::passed`]: only `missing`,
//! `duplicated` and `differing` fail it. Blocking: run it on a blocking
//! thread.
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
//! - not on the target: the other source records without a pair, sorted
//!   by [`classify_missing`] into `deleted_at_target` and `missing`;
//! - `other`: target records left over after all that. They belong to data
//!   before the range, records written after verify took its snapshot, or
//!   another writer; they are reported, and never fail the run.
//!
//! # Why a record is not on the target (see [`classify_missing`])
//!
//! The relay keeps no index from source offsets to target offsets, so a
//! record the target deleted cannot be told from one the relay lost by
//! looking for it. The evidence: the relay's committed checkpoints (read
//! from its checkpoint topic *before* the target's snapshot, so everything
//! they say was delivered is inside it), the target partitions' low
//! watermarks, the target topic's `cleanup.policy`, and the source keys. A
//! record not on the target counts as `deleted_at_target` only if the
//! checkpoint says it was delivered, it is no known dead letter, and either
//! - retention or `DeleteRecords`: a target partition of the unit has lost
//!   its first offsets and no record of its source partition below it
//!   arrived (the target deletes a prefix and the relay keeps the order of
//!   a partition), within as many records as the target deleted offsets; or
//! - compaction: `cleanup.policy` includes `compact` and a later record of
//!   its source partition with the same key arrived.
//!
//! Every other one is `missing`. `lost_at_source` is not found by reading:
//! the relay records each range the source deleted before it read it (a
//! [`Gap`]) in its checkpoint topic, and verify counts their offsets.
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
//! target (4 million records: 750 MB peak); on a compacted target topic 17
//! bytes more per source record, for its key's digest. A unit too large for
//! memory is audited in slices with `--from`/`--to`.
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
//! The relay's checkpoint topic is read first, before any watermark is
//! taken: a checkpoint read later could vouch for records delivered after
//! the target's snapshot, which verify then would not find.
//!
//! Reads never commit offsets (group `<source group>.verify`, auto commit
//! off; the checkpoint topic is read by assignment) and never write anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::checkpoint;
use crate::config::{Config, Format, Partitioning};
use crate::format;
use crate::gap::{Gap, GapCause};
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
/// A record key's truncated SHA-256: what compaction keeps one record of.
pub type KeyDigest = [u8; 16];

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
    #[error("cannot ask the target for the cleanup.policy of {topic}: {source}")]
    DescribeConfigs {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("the target did not report the cleanup.policy of {0}")]
    NoCleanupPolicy(String),
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
    /// Source records in the dead-letter queue, if it could be read. The
    /// checkpoint moved past them undelivered, so they are never counted
    /// as deleted at the target.
    pub dead_letters: Vec<(TopicPartition, i64)>,
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

/// A range the relay recorded as deleted at the source before it read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceGap {
    pub from: i64,
    /// `None`: no end (the partition was gone).
    pub to: Option<i64>,
    pub cause: GapCause,
}

/// Up to [`Options::examples`] offsets of each kind, so an auditor can look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Examples {
    /// Source offsets.
    pub missing: Vec<i64>,
    /// The relay's recorded gaps that overlap the range, as recorded.
    pub lost_at_source: Vec<SourceGap>,
    /// Source offsets.
    pub deleted_at_target: Vec<i64>,
    /// The source record and the extra copy on the target.
    pub duplicated: Vec<Pair>,
    /// The source record and the changed target record.
    pub differing: Vec<Pair>,
}

/// The counts of one source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub matched: u64,
    /// Not on the target, lost through the relay: fails the audit.
    pub missing: u64,
    /// Offsets of the relay's recorded gaps in the range (an upper bound on
    /// records: transaction markers take offsets too). Not read, not a
    /// failure: the relay reported them when it found them.
    pub lost_at_source: u64,
    /// Not on the target, and by the evidence deleted there after the
    /// relay delivered it (see [`classify_missing`]). Not a failure.
    pub deleted_at_target: u64,
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
    /// One per source partition of the unit: matched, duplicated and
    /// differing; the records not on the target are left to
    /// [`classify_missing`].
    pub tallies: Vec<Tally>,
    /// Indices into the source entries of the records not on the target,
    /// ascending.
    pub missing: Vec<usize>,
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
    let mut missing = Vec::new();
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
            None => missing.push(i),
        }
    }
    other.sort_unstable();
    Matching {
        tallies,
        missing,
        other: other.len() as u64,
        other_examples: other.iter().take(examples).map(|&t| target[t].at).collect(),
    }
}

/// What the relay's checkpoints say about one source partition of a unit.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// The committed checkpoint: the first source offset not delivered.
    /// `None` when the relay has none (or it could not be read): nothing
    /// counts as delivered.
    pub before: Option<i64>,
    /// Offsets of known dead letters, sorted: the checkpoint moved past them
    /// without delivering them, or a replay delivered them out of order.
    pub dead_letters: Vec<i64>,
}

/// The evidence [`classify_missing`] weighs for one unit.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// One per source partition of the unit.
    pub delivered: Vec<Delivered>,
    /// Offsets deleted from the start of the unit's target partitions: the
    /// sum of their low watermarks. At most that many records went this way.
    pub target_deleted: u64,
    /// With a compacted target topic: each source entry's key digest
    /// (parallel to the entries; `None` for a null key). `None` otherwise.
    pub keys: Option<Vec<Option<KeyDigest>>>,
}

/// Sorts the records not on the target (`missing`, from [`match_records`])
/// into `deleted_at_target` and `missing` of `tallies`, by the rules of the
/// module doc. Pure: no I/O.
///
/// "Arrived" is matched or differing: either way the record is on the
/// target, so retention has not deleted it and compaction keeps it.
pub fn classify_missing(
    tallies: &mut [Tally],
    source: &[SourceEntry],
    missing: &[usize],
    evidence: &Evidence,
    examples: usize,
) {
    let arrived = || {
        let mut gone = missing.iter().peekable();
        source
            .iter()
            .enumerate()
            .filter(move |(i, _)| gone.next_if(|&&m| m == *i).is_none())
    };
    let delivered = |s: &SourceEntry| {
        evidence.delivered.get(s.source).is_some_and(|d| {
            d.before.is_some_and(|b| s.offset < b)
                && d.dead_letters.binary_search(&s.offset).is_err()
        })
    };
    // Retention deletes a prefix: nothing of a partition at or above its
    // first arrived record can have gone that way.
    let mut first_arrived: Vec<Option<i64>> = vec![None; tallies.len()];
    for (_, s) in arrived() {
        let first = &mut first_arrived[s.source];
        *first = Some(first.map_or(s.offset, |f| f.min(s.offset)));
    }
    // Compaction keeps the last record of a key: the latest arrived offset
    // of each (partition, key) that a delivered missing record has.
    let key_of = |i: usize| -> Option<KeyDigest> {
        evidence
            .keys
            .as_ref()
            .and_then(|k| k.get(i).copied().flatten())
    };
    let wanted: HashSet<(usize, KeyDigest)> = missing
        .iter()
        .filter(|&&i| delivered(&source[i]))
        .filter_map(|&i| key_of(i).map(|k| (source[i].source, k)))
        .collect();
    let mut latest: HashMap<(usize, KeyDigest), i64> = HashMap::new();
    if !wanted.is_empty() {
        for (i, s) in arrived() {
            if let Some(k) = key_of(i).filter(|k| wanted.contains(&(s.source, *k))) {
                let at = latest.entry((s.source, k)).or_insert(s.offset);
                *at = (*at).max(s.offset);
            }
        }
    }

    let mut retention_budget = evidence.target_deleted;
    for &i in missing {
        let s = &source[i];
        let mut deleted = false;
        if delivered(s) {
            let superseded = key_of(i)
                .and_then(|k| latest.get(&(s.source, k)))
                .is_some_and(|&later| later > s.offset);
            let in_deleted_prefix =
                retention_budget > 0 && first_arrived[s.source].is_none_or(|f| s.offset < f);
            if !superseded && in_deleted_prefix {
                retention_budget -= 1;
            }
            deleted = superseded || in_deleted_prefix;
        }
        let tally = &mut tallies[s.source];
        if deleted {
            tally.deleted_at_target += 1;
            push_example(&mut tally.examples.deleted_at_target, examples, s.offset);
        } else {
            tally.missing += 1;
            push_example(&mut tally.examples.missing, examples, s.offset);
        }
    }
}

/// The key's digest, for compaction (a null key is never compacted).
pub fn key_digest(key: Option<&[u8]>) -> Option<KeyDigest> {
    key.map(|k| {
        let mut hasher = Sha256::new();
        hasher.update(b"key");
        hasher.update(k);
        truncated(hasher)
    })
}

/// The offsets of one partition's recorded `gaps` inside `[from, to)`, and
/// up to `examples` of the gaps that overlap it, as recorded.
pub fn lost_at_source<'a>(
    gaps: impl IntoIterator<Item = &'a Gap>,
    (from, to): (i64, i64),
    examples: usize,
) -> (u64, Vec<SourceGap>) {
    let mut offsets = 0u64;
    let mut shown = Vec::new();
    for gap in gaps {
        let within = gap.offsets_within(from, to);
        if within > 0 {
            offsets += within;
            push_example(
                &mut shown,
                examples,
                SourceGap {
                    from: gap.from,
                    to: gap.to,
                    cause: gap.cause,
                },
            );
        }
    }
    (offsets, shown)
}

/// Where a partition's recorded gaps are counted: the range as requested,
/// not clamped to the source's low watermark, for a gap lies below it (the
/// source deleted it). No `--from`: everything below the end. A time: its
/// resolved offset (the time of a deleted record is unknown). `from` and
/// `to` are the resolved range, `high` the partition's high watermark.
fn gap_window(options: &Options, from: i64, to: i64, high: i64) -> (i64, i64) {
    let start = match options.from {
        None => i64::MIN,
        Some(Bound::Offset(o)) => o,
        Some(Bound::Time(_)) => from,
    };
    let end = match options.to {
        Some(Bound::Offset(o)) => o.min(high),
        _ => to,
    };
    (start, end)
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
    /// The topic's `cleanup.policy`; `None` when the target would not say,
    /// and then no record counts as compacted away.
    pub cleanup_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_policy_unknown_because: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub records: u64,
    pub matched: u64,
    pub missing: u64,
    pub lost_at_source: u64,
    pub deleted_at_target: u64,
    pub duplicated: u64,
    pub differing: u64,
    pub other: u64,
}

/// What verify learned from the relay's checkpoint topic.
#[derive(Debug, Clone, Serialize)]
pub struct RelayCheckpoints {
    pub topic: String,
    /// False when it could not be read: then nothing counts as lost at the
    /// source or deleted at the target.
    pub read: bool,
    /// Source partitions the relay has a checkpoint for.
    pub partitions: usize,
    /// Gaps recorded, of every partition.
    pub gaps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_read_because: Option<String>,
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
    pub relay_checkpoints: RelayCheckpoints,
}

impl Report {
    /// No record missing, duplicated or differing (lost at the source and
    /// deleted at the target are reported, and pass).
    pub fn passed(&self) -> bool {
        self.passed
    }

    fn new(
        format: Format,
        partitioning: Partitioning,
        partitions: Vec<PartitionReport>,
        targets: Vec<TargetReport>,
        relay_checkpoints: RelayCheckpoints,
    ) -> Report {
        let mut totals = Totals::default();
        for p in &partitions {
            totals.records += p.records;
            totals.matched += p.tally.matched;
            totals.missing += p.tally.missing;
            totals.lost_at_source += p.tally.lost_at_source;
            totals.deleted_at_target += p.tally.deleted_at_target;
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
            relay_checkpoints,
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
    /// The target topic's `cleanup.policy`, or why it is unknown.
    cleanup_policy: Result<String, String>,
}

/// A source partition's range `[from, to)`.
struct SourceRange {
    tp: TopicPartition,
    from: i64,
    to: i64,
    /// Where its recorded gaps are counted ([`gap_window`]).
    gaps_in: (i64, i64),
}

/// What the relay's checkpoint topic says, by source partition.
#[derive(Default)]
struct RelayRecords {
    delivered: HashMap<TopicPartition, Delivered>,
    gaps: HashMap<TopicPartition, Vec<Gap>>,
}

impl RelayRecords {
    /// Reads the checkpoint topic; a failure is reported, not fatal: then
    /// nothing counts as delivered, so every record not on the target stays
    /// `missing`.
    fn read(config: &Config, options: &Options) -> (RelayRecords, RelayCheckpoints) {
        let topic = config.target.checkpoint_topic.clone();
        let committed = match checkpoint::read_committed(
            &target_client(config),
            &topic,
            &config.relay_id(),
            TIMEOUT,
        ) {
            Ok(c) => c,
            Err(e) => {
                let note = RelayCheckpoints {
                    topic,
                    read: false,
                    partitions: 0,
                    gaps: 0,
                    not_read_because: Some(e.to_string()),
                };
                return (RelayRecords::default(), note);
            }
        };
        let note = RelayCheckpoints {
            topic,
            read: true,
            partitions: committed.checkpoints.len(),
            gaps: committed.gaps.len(),
            not_read_because: None,
        };
        let mut records = RelayRecords::default();
        for (tp, cp) in committed.checkpoints {
            records.delivered.entry(tp).or_default().before = Some(cp.next_offset);
        }
        // Replayed dead letters were delivered, but out of order.
        let replayed = committed.replayed.iter().filter_map(|id| replayed_at(id));
        for (tp, offset) in options.dead_letters.iter().cloned().chain(replayed) {
            records
                .delivered
                .entry(tp)
                .or_default()
                .dead_letters
                .push(offset);
        }
        for d in records.delivered.values_mut() {
            d.dead_letters.sort_unstable();
            d.dead_letters.dedup();
        }
        for gap in committed.gaps {
            records.gaps.entry(gap.tp.clone()).or_default().push(gap);
        }
        (records, note)
    }
}

/// The source position of a replay marker's dead-letter id,
/// `topic/partition/offset` (a topic name has no `/`).
fn replayed_at(id: &str) -> Option<(TopicPartition, i64)> {
    let (rest, offset) = id.rsplit_once('/')?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((
        TopicPartition::new(topic, partition.parse().ok()?),
        offset.parse().ok()?,
    ))
}

/// Asks the target for `topic`'s `cleanup.policy` (DescribeConfigs).
fn cleanup_policy(config: &Config, topic: &str) -> Result<String, VerifyError> {
    let describe_error = |source| VerifyError::DescribeConfigs {
        topic: topic.to_string(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> =
        target_client(config).create().map_err(describe_error)?;
    // Admin futures are completed by rdkafka's own thread; any executor can wait on them.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| describe_error(KafkaError::AdminOpCreation(e.to_string())))?;
    let options = AdminOptions::new().request_timeout(Some(TIMEOUT));
    let results = runtime
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(describe_error)?;
    let resource = results
        .into_iter()
        .next()
        .ok_or_else(|| VerifyError::NoCleanupPolicy(topic.to_string()))?
        .map_err(|code| describe_error(KafkaError::AdminOp(code)))?;
    resource
        .get("cleanup.policy")
        .and_then(|entry| entry.value.clone())
        .ok_or_else(|| VerifyError::NoCleanupPolicy(topic.to_string()))
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

    // Before the snapshot (see the module doc).
    progress.set_message("relay checkpoints");
    let (relay, relay_note) = RelayRecords::read(config, options);

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
        let to = to.max(from);
        ranges.push(SourceRange {
            tp,
            from,
            to,
            gaps_in: gap_window(options, from, to, high),
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
        let (rows, report) = verify_unit(config, options, &src, &target, unit, &relay, progress)?;
        partitions.extend(rows);
        targets.push(report);
    }
    progress.finish_and_clear();
    Ok(Report::new(
        config.format,
        config.target.partitioning,
        partitions,
        targets,
        relay_note,
    ))
}

/// Groups the source ranges by the target partitions they are written to.
fn units(
    config: &Config,
    target: &Reader,
    ranges: Vec<SourceRange>,
) -> Result<Vec<Unit>, VerifyError> {
    // Per target topic: its partitions and its cleanup.policy.
    let mut target_topics: BTreeMap<String, (Vec<i32>, Result<String, String>)> = BTreeMap::new();
    let mut grouped: BTreeMap<(String, Option<i32>), Vec<SourceRange>> = BTreeMap::new();
    for range in ranges {
        let topic = config.target_topic_for(&range.tp.topic);
        if !target_topics.contains_key(&topic) {
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
            // Not knowing it only turns the compaction rule off.
            let policy = cleanup_policy(config, &topic).map_err(|e| e.to_string());
            target_topics.insert(topic.clone(), (ids, policy));
        }
        let partition = match config.target.partitioning {
            Partitioning::Same => Some(range.tp.partition),
            Partitioning::KeyHash => None,
        };
        grouped.entry((topic, partition)).or_default().push(range);
    }
    let mut units = Vec::new();
    for ((topic, partition), sources) in grouped {
        let (all, policy) = &target_topics[&topic];
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
            cleanup_policy: policy.clone(),
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
    relay: &RelayRecords,
    progress: &ProgressBar,
) -> Result<(Vec<PartitionReport>, TargetReport), VerifyError> {
    let format = config.format;
    let compacted = unit
        .cleanup_policy
        .as_ref()
        .is_ok_and(|p| p.split(',').any(|p| p.trim() == "compact"));
    let mut source_entries = Vec::new();
    let mut keys = Vec::new();
    let mut counts = vec![0u64; unit.sources.len()];
    for (index, SourceRange { tp, from, to, .. }) in unit.sources.iter().enumerate() {
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
            if compacted {
                keys.push(key_digest(record.key.as_deref()));
            }
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
    let mut matching = match_records(
        unit.sources.len(),
        &source_entries,
        &target_entries,
        options.examples,
    );
    drop(target_entries);
    let evidence = Evidence {
        delivered: unit
            .sources
            .iter()
            .map(|r| relay.delivered.get(&r.tp).cloned().unwrap_or_default())
            .collect(),
        target_deleted: unit.partitions.iter().map(|r| r.from.max(0) as u64).sum(),
        keys: compacted.then_some(keys),
    };
    classify_missing(
        &mut matching.tallies,
        &source_entries,
        &matching.missing,
        &evidence,
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
        .map(|((range, mut tally), records)| {
            let gaps = relay.gaps.get(&range.tp).into_iter().flatten();
            (tally.lost_at_source, tally.examples.lost_at_source) =
                lost_at_source(gaps, range.gaps_in, options.examples);
            PartitionReport {
                topic: range.tp.topic,
                partition: range.tp.partition,
                from: range.from,
                to: range.to,
                target_topic: unit.topic.clone(),
                target_partition,
                records,
                tally,
            }
        })
        .collect();
    let (cleanup_policy, cleanup_policy_unknown_because) = match unit.cleanup_policy {
        Ok(p) => (Some(p), None),
        Err(why) => (None, Some(why)),
    };
    let report = TargetReport {
        records: target_records,
        topic: unit.topic,
        partitions: unit.partitions,
        other: matching.other + unlike,
        other_examples,
        cleanup_policy,
        cleanup_policy_unknown_because,
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
