//! Pairing a unit's source records with its target records, and sorting
//! out why a record is not on the target: missing through the relay, lost
//! at source (a recorded gap), or deleted by the target. Pure, no I/O, so
//! every rule is unit-tested (`tests`). Called by `read` once per unit.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::gap::{Gap, GapCause};

use super::{Bound, Digest, Identity, KeyDigest, Options};

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

pub(super) fn push_example<T>(list: &mut Vec<T>, limit: usize, item: T) {
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
pub(super) fn gap_window(options: &Options, from: i64, to: i64, high: i64) -> (i64, i64) {
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
