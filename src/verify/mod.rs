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
//!
//! The files: [`digest`] (what a record looks like, hashed), [`matching`]
//! (pairing source and target records, and sorting out why a record is
//! not there: pure, no I/O), [`report`] (the report's shape and totals),
//! [`read`] (reading both clusters, unit by unit).

mod digest;
mod matching;
mod read;
mod report;

use std::str::FromStr;
use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::record::TopicPartition;
use crate::source::SourceError;

pub use digest::*;
pub use matching::*;
pub use read::verify;
pub use report::*;

const TIMEOUT: Duration = Duration::from_secs(30);
/// A read that makes no progress for this long is given up (broker gone).
const STALL: Duration = Duration::from_secs(60);

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
        source: Box<crate::kafka::AdminRequestError>,
    },
    #[error("the target did not report the cleanup.policy of {0}")]
    NoCleanupPolicy(String),
}

/// Which cluster a read is on, for messages.
pub use crate::kafka::Side;

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

#[cfg(test)]
mod tests;
