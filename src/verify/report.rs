//! The report `verify` returns: per source partition, per target unit, and
//! the totals that decide whether the audit passed. Built by `read`,
//! printed by `cli::verify`.

use serde::Serialize;

use crate::config::{Format, Partitioning};

use super::{Tally, TargetAt};

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

    pub(super) fn new(
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
