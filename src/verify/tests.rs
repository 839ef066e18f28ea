//! Unit tests of verify's matching and classification rules and digests:
//! pure functions, no Kafka.

use super::matching::push_example;
use super::*;
use crate::config::Format;
use crate::format;
use crate::gap::{Gap, GapCause};
use crate::record::Record;

fn d(n: u8) -> Digest {
    [n; 32]
}

fn id(n: u8) -> Option<Identity> {
    Some([n; 16])
}

fn src(source: usize, offset: i64, digest: u8, identity: u8) -> SourceEntry {
    SourceEntry {
        source,
        offset,
        digest: d(digest),
        identity: id(identity),
    }
}

fn tgt(partition: i32, offset: i64, digest: u8, identity: u8) -> TargetEntry {
    TargetEntry {
        at: TargetAt { partition, offset },
        digest: d(digest),
        identity: id(identity),
    }
}

/// Matching, then the records not on the target classified with no
/// evidence (no checkpoint): every one of them `missing`.
fn audit(
    sources: usize,
    source: &[SourceEntry],
    target: &[TargetEntry],
    examples: usize,
) -> Matching {
    let mut m = match_records(sources, source, target, examples);
    classify_missing(
        &mut m.tallies,
        source,
        &m.missing,
        &Evidence::default(),
        examples,
    );
    m
}

#[test]
fn a_faithful_copy_is_all_matched() {
    let source: Vec<_> = (0..5).map(|i| src(0, i, i as u8, i as u8)).collect();
    let target: Vec<_> = (0..5).map(|i| tgt(0, 100 + i, i as u8, i as u8)).collect();
    let m = audit(1, &source, &target, 10);
    assert_eq!(
        m.tallies,
        vec![Tally {
            matched: 5,
            ..Tally::default()
        }]
    );
    assert_eq!(m.other, 0);
}

#[test]
fn an_extra_copy_is_one_duplicate_named_by_both_offsets() {
    let source = vec![src(0, 0, 1, 1), src(0, 1, 2, 2)];
    let target = vec![tgt(3, 10, 1, 1), tgt(3, 11, 2, 2), tgt(3, 12, 2, 2)];
    let m = audit(1, &source, &target, 10);
    let t = &m.tallies[0];
    assert_eq!(
        (t.matched, t.duplicated, t.missing, t.differing),
        (2, 1, 0, 0)
    );
    assert_eq!(
        t.examples.duplicated,
        vec![Pair {
            source_offset: 1,
            target_partition: 3,
            target_offset: 12
        }]
    );
    assert_eq!(m.other, 0, "a duplicate is not also counted as other");
}

#[test]
fn an_absent_record_is_missing_by_its_source_offset() {
    let source = vec![src(0, 7, 1, 1), src(0, 8, 2, 2), src(0, 9, 3, 3)];
    let target = vec![tgt(0, 0, 1, 1), tgt(0, 1, 3, 3)];
    let m = audit(1, &source, &target, 10);
    let t = &m.tallies[0];
    assert_eq!((t.matched, t.missing), (2, 1));
    assert_eq!(t.examples.missing, vec![8]);
}

#[test]
fn a_changed_record_is_differing_not_missing_nor_other() {
    let source = vec![src(0, 0, 1, 1), src(0, 1, 2, 2)];
    // Same identity as source offset 1, other content.
    let target = vec![tgt(0, 0, 1, 1), tgt(0, 1, 9, 2)];
    let m = audit(1, &source, &target, 10);
    let t = &m.tallies[0];
    assert_eq!((t.matched, t.differing, t.missing), (1, 1, 0));
    assert_eq!(
        t.examples.differing,
        vec![Pair {
            source_offset: 1,
            target_partition: 0,
            target_offset: 1
        }]
    );
    assert_eq!(m.other, 0);
}

#[test]
fn unrelated_target_records_are_other_and_do_not_count_against_the_source() {
    let source = vec![src(0, 5, 1, 1)];
    let target = vec![tgt(0, 0, 7, 7), tgt(0, 1, 1, 1), tgt(0, 2, 8, 8)];
    let m = audit(1, &source, &target, 1);
    assert_eq!(m.tallies[0].matched, 1);
    assert_eq!(m.other, 2);
    assert_eq!(
        m.other_examples,
        vec![TargetAt {
            partition: 0,
            offset: 0
        }],
        "examples are capped, counts are not"
    );
}

#[test]
fn content_the_source_holds_twice_must_arrive_twice() {
    let source = vec![src(0, 0, 1, 1), src(0, 1, 1, 2)];
    let once = audit(1, &source, &[tgt(0, 0, 1, 1)], 10);
    assert_eq!((once.tallies[0].matched, once.tallies[0].missing), (1, 1));
    let twice = audit(1, &source, &[tgt(0, 0, 1, 1), tgt(0, 1, 1, 2)], 10);
    assert_eq!(
        (twice.tallies[0].matched, twice.tallies[0].duplicated),
        (2, 0)
    );
}

#[test]
fn pooled_partitions_keep_counts_per_source_partition() {
    let source = vec![src(0, 0, 1, 1), src(1, 0, 2, 2), src(1, 1, 3, 3)];
    let target = vec![tgt(0, 0, 2, 2), tgt(1, 0, 1, 1), tgt(1, 1, 1, 1)];
    let m = audit(2, &source, &target, 10);
    assert_eq!(
        (
            m.tallies[0].matched,
            m.tallies[0].duplicated,
            m.tallies[0].missing
        ),
        (1, 1, 0)
    );
    assert_eq!((m.tallies[1].matched, m.tallies[1].missing), (1, 1));
    assert_eq!(m.tallies[1].examples.missing, vec![1]);
}

#[test]
fn examples_are_capped_but_counts_are_exact() {
    let source: Vec<_> = (0..50).map(|i| src(0, i, i as u8, i as u8)).collect();
    let m = audit(1, &source, &[], 3);
    assert_eq!(m.tallies[0].missing, 50);
    assert_eq!(m.tallies[0].examples.missing, vec![0, 1, 2]);
}

#[test]
fn digest_tells_null_from_empty_and_respects_field_boundaries() {
    let none = std::iter::empty();
    let base = digest(Some(b"ab"), Some(b"c"), none.clone());
    assert_ne!(base, digest(Some(b"a"), Some(b"bc"), none.clone()));
    assert_ne!(
        digest(None, Some(b"v"), none.clone()),
        digest(Some(b""), Some(b"v"), none.clone())
    );
    assert_ne!(
        digest(Some(b"k"), None, none.clone()),
        digest(Some(b"k"), Some(b""), none.clone())
    );
    let h1 = [("a", Some(&b"1"[..])), ("b", None)];
    let h2 = [("b", None), ("a", Some(&b"1"[..]))];
    assert_ne!(
        digest(None, None, h1.into_iter()),
        digest(None, None, h2.into_iter()),
        "header order is part of a record"
    );
    assert_ne!(
        digest(None, None, [("h", None)].into_iter()),
        digest(None, None, [("h", Some(&b""[..]))].into_iter())
    );
    assert_eq!(base, digest(Some(b"ab"), Some(b"c"), none));
}

#[test]
fn envelope_expectation_ignores_headers_raw_keeps_them() {
    let record = |headers| Record {
        offset: 3,
        timestamp: Some(1),
        key: Some(b"k".to_vec()),
        value: Some(b"v".to_vec()),
        headers,
    };
    let with = record(vec![crate::record::Header {
        key: "h".into(),
        value: None,
    }]);
    let without = record(vec![]);
    assert_ne!(
        expected(Format::Raw, "t", 0, &with).0,
        expected(Format::Raw, "t", 0, &without).0
    );
    // The envelope JSON carries the headers; the target record has none.
    let envelope = format::envelope("t", 0, &with);
    assert_eq!(
        expected(Format::Envelope, "t", 0, &with).0,
        digest(Some(b"k"), Some(&envelope), std::iter::empty())
    );
}

#[test]
fn bounds_parse_offsets_and_times_and_refuse_the_rest() {
    assert_eq!("42".parse(), Ok(Bound::Offset(42)));
    assert_eq!(
        "ts:1700000000000".parse(),
        Ok(Bound::Time(1_700_000_000_000))
    );
    for bad in ["", "-1", "ts:", "ts:-5", "yesterday", "1.5"] {
        assert!(bad.parse::<Bound>().is_err(), "{bad:?} accepted");
    }
}

#[test]
fn a_source_record_without_identity_is_never_called_differing() {
    let mut source = src(0, 0, 1, 1);
    source.identity = None;
    let mut target = tgt(0, 0, 2, 2);
    target.identity = None;
    let m = audit(1, &[source], &[target], 10);
    assert_eq!(
        (m.tallies[0].missing, m.tallies[0].differing, m.other),
        (1, 0, 1)
    );
}

/// Source offsets `0..n` of one partition, each its own content and key.
fn partition(n: i64) -> Vec<SourceEntry> {
    (0..n).map(|i| src(0, i, i as u8, i as u8)).collect()
}

/// Target copies of the source entries at `offsets`.
fn copies(source: &[SourceEntry], offsets: &[i64]) -> Vec<TargetEntry> {
    offsets
        .iter()
        .enumerate()
        .map(|(n, &o)| {
            let s = &source[o as usize];
            TargetEntry {
                at: TargetAt {
                    partition: 0,
                    offset: 100 + n as i64,
                },
                digest: s.digest,
                identity: s.identity,
            }
        })
        .collect()
}

fn delivered_before(offset: i64) -> Delivered {
    Delivered {
        before: Some(offset),
        dead_letters: Vec::new(),
    }
}

/// Matches and classifies one source partition with `evidence`; returns
/// (missing, deleted at target) with their examples.
fn classified(
    source: &[SourceEntry],
    target: &[TargetEntry],
    evidence: &Evidence,
) -> ((u64, Vec<i64>), (u64, Vec<i64>)) {
    let mut m = match_records(1, source, target, 10);
    classify_missing(&mut m.tallies, source, &m.missing, evidence, 10);
    let t = &m.tallies[0];
    (
        (t.missing, t.examples.missing.clone()),
        (t.deleted_at_target, t.examples.deleted_at_target.clone()),
    )
}

#[test]
fn a_delivered_prefix_gone_from_a_truncated_target_is_deleted_at_target() {
    let source = partition(6);
    let target = copies(&source, &[3, 4, 5]);
    let evidence = Evidence {
        delivered: vec![delivered_before(6)],
        target_deleted: 4,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &evidence),
        ((0, vec![]), (3, vec![0, 1, 2]))
    );
}

#[test]
fn without_a_truncated_target_or_a_checkpoint_a_lost_prefix_stays_missing() {
    let source = partition(4);
    let target = copies(&source, &[2, 3]);
    let untouched_target = Evidence {
        delivered: vec![delivered_before(4)],
        target_deleted: 0,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &untouched_target),
        ((2, vec![0, 1]), (0, vec![]))
    );
    let no_checkpoint = Evidence {
        delivered: vec![Delivered::default()],
        target_deleted: 10,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &no_checkpoint),
        ((2, vec![0, 1]), (0, vec![]))
    );
}

#[test]
fn a_record_at_or_above_the_checkpoint_stays_missing() {
    // Nothing of the partition arrived; the target lost its first offsets.
    let source = partition(5);
    let evidence = Evidence {
        delivered: vec![delivered_before(2)],
        target_deleted: 100,
        keys: None,
    };
    assert_eq!(
        classified(&source, &[], &evidence),
        ((3, vec![2, 3, 4]), (2, vec![0, 1]))
    );
}

#[test]
fn a_record_after_one_that_arrived_stays_missing_though_the_target_was_truncated() {
    let source = partition(5);
    let target = copies(&source, &[0, 1, 3, 4]);
    let evidence = Evidence {
        delivered: vec![delivered_before(5)],
        target_deleted: 100,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &evidence),
        ((1, vec![2]), (0, vec![]))
    );
    // A changed copy shows as well that the target still holds that part.
    let mut target = copies(&source, &[1]);
    target[0].digest = d(200);
    assert_eq!(
        classified(&source, &target, &evidence),
        ((3, vec![2, 3, 4]), (1, vec![0])),
        "only offset 0 is below the changed copy of offset 1"
    );
}

#[test]
fn no_more_records_count_as_truncated_away_than_the_target_deleted_offsets() {
    let source = partition(5);
    let target = copies(&source, &[3, 4]);
    let evidence = Evidence {
        delivered: vec![delivered_before(5)],
        target_deleted: 2,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &evidence),
        ((1, vec![2]), (2, vec![0, 1]))
    );
}

#[test]
fn a_dead_letter_is_never_deleted_at_target() {
    let source = partition(4);
    let target = copies(&source, &[2, 3]);
    let evidence = Evidence {
        delivered: vec![Delivered {
            before: Some(4),
            dead_letters: vec![0],
        }],
        target_deleted: 5,
        keys: None,
    };
    assert_eq!(
        classified(&source, &target, &evidence),
        ((1, vec![0]), (1, vec![1]))
    );
}

#[test]
fn a_record_superseded_by_a_later_one_of_its_key_on_a_compacted_target_is_deleted_at_target() {
    // Offsets 0 and 2 share key "a", 1 has key "b"; compaction removed 0.
    let source = partition(4);
    let key = |k: &[u8]| key_digest(Some(k));
    let keys = vec![key(b"a"), key(b"b"), key(b"a"), key(b"c")];
    let evidence = |before: i64, keys: Vec<Option<KeyDigest>>| Evidence {
        delivered: vec![delivered_before(before)],
        target_deleted: 0,
        keys: Some(keys),
    };
    let target = copies(&source, &[1, 2, 3]);
    assert_eq!(
        classified(&source, &target, &evidence(4, keys.clone())),
        ((0, vec![]), (1, vec![0]))
    );
    // Not delivered by the checkpoint: missing, whatever the key.
    assert_eq!(
        classified(&source, &target, &evidence(0, keys.clone())),
        ((1, vec![0]), (0, vec![]))
    );
    // The later record of its key is not on the target either.
    let target = copies(&source, &[1, 3]);
    assert_eq!(
        classified(&source, &target, &evidence(4, keys.clone())),
        ((2, vec![0, 2]), (0, vec![]))
    );
    // An earlier record of its key does not supersede it.
    let target = copies(&source, &[0, 1, 3]);
    assert_eq!(
        classified(&source, &target, &evidence(4, keys)),
        ((1, vec![2]), (0, vec![]))
    );
    // A null key is never compacted.
    let target = copies(&source, &[1, 2, 3]);
    assert_eq!(
        classified(&source, &target, &evidence(4, vec![None; 4])),
        ((1, vec![0]), (0, vec![]))
    );
}

#[test]
fn only_a_later_record_of_the_same_source_partition_supersedes_a_key() {
    // Partition 0 offset 0 and partition 1 offset 5 share a key.
    let source = vec![src(0, 0, 1, 1), src(1, 5, 2, 2)];
    let target = vec![tgt(0, 0, 2, 2)];
    let mut m = match_records(2, &source, &target, 10);
    let evidence = Evidence {
        delivered: vec![delivered_before(1), delivered_before(6)],
        target_deleted: 0,
        keys: Some(vec![key_digest(Some(b"k")); 2]),
    };
    classify_missing(&mut m.tallies, &source, &m.missing, &evidence, 10);
    assert_eq!(
        (m.tallies[0].missing, m.tallies[0].deleted_at_target),
        (1, 0)
    );
}

fn gap(from: i64, to: Option<i64>) -> Gap {
    Gap {
        tp: TopicPartition::new("t", 0),
        from,
        to,
        cause: GapCause::DeletedAtSource,
        detected_ms: 0,
    }
}

#[test]
fn recorded_gaps_count_below_the_end_or_within_a_requested_start() {
    let gaps = [gap(0, Some(10)), gap(20, Some(25))];
    let shown = |g: &Gap| SourceGap {
        from: g.from,
        to: g.to,
        cause: g.cause,
    };
    // The default range starts at the source's low watermark (30), above
    // both gaps: without --from they all count.
    let default = Options::default();
    let window = gap_window(&default, 30, 50, 50);
    assert_eq!(window, (i64::MIN, 50));
    assert_eq!(
        lost_at_source(&gaps, window, 10),
        (15, vec![shown(&gaps[0]), shown(&gaps[1])])
    );
    // --from 5 counts the overlap, as requested, not clamped to 30.
    let from_5 = Options {
        from: Some(Bound::Offset(5)),
        ..Options::default()
    };
    let window = gap_window(&from_5, 30, 50, 50);
    assert_eq!(
        lost_at_source(&gaps, window, 1),
        (10, vec![shown(&gaps[0])])
    );
    // --to 8 (clamped to 30 for the range) ends the count at 8.
    let to_8 = Options {
        to: Some(Bound::Offset(8)),
        ..Options::default()
    };
    assert_eq!(
        lost_at_source(&gaps, gap_window(&to_8, 30, 30, 50), 10),
        (8, vec![shown(&gaps[0])])
    );
    // A gap with no end counts from its start to the end of the window.
    assert_eq!(lost_at_source(&[gap(40, None)], (i64::MIN, 50), 10).0, 10);
    // A time bound counts from the offset it resolved to.
    let from_time = Options {
        from: Some(Bound::Time(1)),
        ..Options::default()
    };
    assert_eq!(gap_window(&from_time, 30, 50, 50), (30, 50));
    assert_eq!(lost_at_source(&gaps, (30, 50), 10), (0, vec![]));
}

/// The rules of the module doc written the plain way, with hash maps (the
/// first implementation): the model the sort-and-merge version must equal.
fn model(
    sources: usize,
    source: &[SourceEntry],
    target: &[TargetEntry],
    examples: usize,
) -> Matching {
    let mut tallies = vec![Tally::default(); sources];
    let mut by_digest: std::collections::HashMap<Digest, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (i, t) in target.iter().enumerate() {
        by_digest.entry(t.digest).or_default().push_back(i);
    }
    let mut used = vec![false; target.len()];
    // The first source record of each digest: extra copies are counted there.
    let mut first_of_digest: std::collections::HashMap<Digest, usize> =
        std::collections::HashMap::new();
    let mut unpaired = Vec::new();
    for (i, s) in source.iter().enumerate() {
        first_of_digest.entry(s.digest).or_insert(i);
        match by_digest
            .get_mut(&s.digest)
            .and_then(std::collections::VecDeque::pop_front)
        {
            Some(t) => {
                used[t] = true;
                tallies[s.source].matched += 1;
            }
            None => unpaired.push(i),
        }
    }
    // Left-over copies of a digest the source range has are duplicates.
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    for (digest, rest) in &by_digest {
        if let Some(&s) = first_of_digest.get(digest) {
            for &t in rest {
                used[t] = true;
                duplicates.push((s, t));
            }
        }
    }
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
    let mut by_identity: std::collections::HashMap<Identity, std::collections::VecDeque<usize>> =
        std::collections::HashMap::new();
    for (i, t) in target.iter().enumerate() {
        if let (false, Some(id)) = (used[i], t.identity) {
            by_identity.entry(id).or_default().push_back(i);
        }
    }
    let mut missing = Vec::new();
    for i in unpaired {
        let s = &source[i];
        let changed = s
            .identity
            .and_then(|id| by_identity.get_mut(&id))
            .and_then(std::collections::VecDeque::pop_front);
        let tally = &mut tallies[s.source];
        match changed {
            Some(t) => {
                used[t] = true;
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
    let mut other = 0;
    let mut other_examples = Vec::new();
    for (t, _) in target.iter().zip(&used).filter(|(_, used)| !**used) {
        other += 1;
        push_example(&mut other_examples, examples, t.at);
    }
    Matching {
        tallies,
        missing,
        other,
        other_examples,
    }
}

mod model_check {
    use super::*;
    use proptest::prelude::*;

    fn entries() -> impl Strategy<Value = (Vec<SourceEntry>, Vec<TargetEntry>)> {
        // Few digests and identities, so that collisions of every kind occur.
        let source = prop::collection::vec((0..3usize, 0..5u8, prop::option::of(0..5u8)), 0..40);
        let target = prop::collection::vec((0..3i32, 0..7u8, prop::option::of(0..6u8)), 0..40);
        (source, target).prop_map(|(s, t)| {
            let mut next = [0i64; 3];
            let source = s
                .into_iter()
                .map(|(p, digest, identity)| {
                    next[p] += 1;
                    SourceEntry {
                        source: p,
                        offset: next[p],
                        digest: d(digest),
                        identity: identity.map(|i| [i; 16]),
                    }
                })
                .collect();
            let mut target: Vec<TargetEntry> = t
                .into_iter()
                .enumerate()
                .map(|(n, (partition, digest, identity))| TargetEntry {
                    at: TargetAt {
                        partition,
                        offset: n as i64,
                    },
                    digest: d(digest),
                    identity: identity.map(|i| [i; 16]),
                })
                .collect();
            target.sort_by_key(|t| (t.at.partition, t.at.offset));
            (source, target)
        })
    }

    proptest! {
        #[test]
        fn classification_only_sorts_the_records_not_on_the_target(
            (source, target) in entries(),
            before in prop::collection::vec(prop::option::of(0..45i64), 3),
            target_deleted in 0..50u64,
            compacted in any::<bool>(),
        ) {
            let mut m = match_records(3, &source, &target, 100);
            let keys = source.iter().map(|s| key_digest(Some(&s.digest[..1]))).collect();
            let evidence = Evidence {
                delivered: before
                    .iter()
                    .map(|&before| Delivered { before, dead_letters: Vec::new() })
                    .collect(),
                target_deleted,
                keys: compacted.then_some(keys),
            };
            let not_on_target = m.missing.len() as u64;
            classify_missing(&mut m.tallies, &source, &m.missing, &evidence, 100);
            let (missing, deleted): (u64, u64) = m
                .tallies
                .iter()
                .map(|t| (t.missing, t.deleted_at_target))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            prop_assert_eq!(missing + deleted, not_on_target);
            if !compacted {
                prop_assert!(deleted <= target_deleted);
            }
            for (t, before) in m.tallies.iter().zip(&before) {
                for &o in &t.examples.deleted_at_target {
                    prop_assert!(before.is_some_and(|b| o < b), "{} not below the checkpoint", o);
                }
            }
        }

        #[test]
        fn sort_and_merge_matching_equals_the_plain_model(
            (source, target) in entries(),
            examples in 0..4usize,
        ) {
            prop_assert_eq!(
                match_records(3, &source, &target, examples),
                model(3, &source, &target, examples)
            );
        }
    }
}
