//! Unit tests of verify's matching rules and digests: pure functions, no Kafka.

use super::*;

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

#[test]
fn a_faithful_copy_is_all_matched() {
    let source: Vec<_> = (0..5).map(|i| src(0, i, i as u8, i as u8)).collect();
    let target: Vec<_> = (0..5).map(|i| tgt(0, 100 + i, i as u8, i as u8)).collect();
    let m = match_records(1, &source, &target, 10);
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
    let m = match_records(1, &source, &target, 10);
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
    let m = match_records(1, &source, &target, 10);
    let t = &m.tallies[0];
    assert_eq!((t.matched, t.missing), (2, 1));
    assert_eq!(t.examples.missing, vec![8]);
}

#[test]
fn a_changed_record_is_differing_not_missing_nor_other() {
    let source = vec![src(0, 0, 1, 1), src(0, 1, 2, 2)];
    // Same identity as source offset 1, other content.
    let target = vec![tgt(0, 0, 1, 1), tgt(0, 1, 9, 2)];
    let m = match_records(1, &source, &target, 10);
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
    let m = match_records(1, &source, &target, 1);
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
    let once = match_records(1, &source, &[tgt(0, 0, 1, 1)], 10);
    assert_eq!((once.tallies[0].matched, once.tallies[0].missing), (1, 1));
    let twice = match_records(1, &source, &[tgt(0, 0, 1, 1), tgt(0, 1, 1, 2)], 10);
    assert_eq!(
        (twice.tallies[0].matched, twice.tallies[0].duplicated),
        (2, 0)
    );
}

#[test]
fn pooled_partitions_keep_counts_per_source_partition() {
    let source = vec![src(0, 0, 1, 1), src(1, 0, 2, 2), src(1, 1, 3, 3)];
    let target = vec![tgt(0, 0, 2, 2), tgt(1, 0, 1, 1), tgt(1, 1, 1, 1)];
    let m = match_records(2, &source, &target, 10);
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
    let m = match_records(1, &source, &[], 3);
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
    let m = match_records(1, &[source], &[target], 10);
    assert_eq!(
        (m.tallies[0].missing, m.tallies[0].differing, m.other),
        (1, 0, 1)
    );
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
            None => {
                tally.missing += 1;
                push_example(&mut tally.examples.missing, examples, s.offset);
            }
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
