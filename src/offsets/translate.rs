//! Translating source offsets to target offsets with the offset map.
//!
//! A consumer group's committed offset `O` of a source partition means "every
//! record before `O` is processed". Its translation is the target offset of
//! the first copied record at or after `O`; when the relay has copied
//! everything up to `O` and nothing after, the target offset after the last
//! copied record. A consumer that starts there on the target reads every
//! record from `O` on and none before: no record twice, none skipped.
//!
//! The map is read once, in order, keeping per wanted partition only the
//! answer and what the last entry said ([`Scan`]): memory follows the
//! number of partitions asked about, not the map's size.
//!
//! Called by the group sync (`groups`) and `kafka-relay offsets translate`.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use super::map::{self, Entry};
use crate::checkpoint::{self, CheckpointError};
use crate::record::TopicPartition;

/// What a source offset translates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Translation {
    /// Start the group here on the target.
    Exact(i64),
    /// The relay has not copied the source up to the offset yet: it has
    /// delivered everything before `copied_to` only. A translation now
    /// would make the group read records it processed on the source.
    Ahead { copied_to: i64 },
    /// The offset is older than what the map still holds (its retention):
    /// the map reaches back to source offset `oldest` only.
    TooOld { oldest: i64 },
    /// The map has nothing of this partition's records (never copied, or
    /// nothing but gaps): no target offset is known.
    Unmapped,
}

/// One wanted partition while the map is read.
#[derive(Debug)]
struct Scan {
    wanted: i64,
    /// The `from` of the first entry held, once one is seen.
    first_from: Option<Option<i64>>,
    answer: Option<i64>,
    last_target_end: Option<i64>,
    last_next: Option<i64>,
}

impl Scan {
    fn new(wanted: i64) -> Scan {
        Scan {
            wanted,
            first_from: None,
            answer: None,
            last_target_end: None,
            last_next: None,
        }
    }

    fn see(&mut self, entry: &Entry) {
        self.first_from.get_or_insert(entry.from);
        if self.answer.is_none() {
            self.answer = entry
                .runs
                .iter()
                .find(|r| r.source_end() > self.wanted)
                .map(|r| r.target + (self.wanted - r.source).max(0));
        }
        if let Some(last) = entry.runs.last() {
            self.last_target_end = Some(last.target_end());
        }
        self.last_next = Some(entry.next);
    }

    fn result(&self) -> Translation {
        let Some(first_from) = self.first_from else {
            return Translation::Unmapped;
        };
        if let Some(oldest) = first_from.filter(|f| self.wanted < *f) {
            return Translation::TooOld { oldest };
        }
        if let Some(target) = self.answer {
            return Translation::Exact(target);
        }
        match (self.last_next, self.last_target_end) {
            (Some(next), Some(end)) if self.wanted <= next => Translation::Exact(end),
            (Some(next), _) if self.wanted > next => Translation::Ahead { copied_to: next },
            _ => Translation::Unmapped,
        }
    }
}

/// Translates each of `wanted` (source partition -> source offset; one
/// map per consumer group) with what the map on `map_topic` holds for
/// `relay_id`, in the same order (blocking; reads the whole map once,
/// however many groups).
pub fn translate(
    target: &ClientConfig,
    map_topic: &str,
    relay_id: &str,
    wanted: &[BTreeMap<TopicPartition, i64>],
    limit: Duration,
) -> Result<Vec<BTreeMap<TopicPartition, Translation>>, CheckpointError> {
    // Per partition, the scans of every group that asks about it.
    let mut scans: BTreeMap<TopicPartition, Vec<(usize, Scan)>> = BTreeMap::new();
    for (i, offsets) in wanted.iter().enumerate() {
        for (tp, o) in offsets {
            scans
                .entry(tp.clone())
                .or_default()
                .push((i, Scan::new(*o)));
        }
    }
    let reader = format!("kafka-relay-offset-map-reader-{relay_id}");
    checkpoint::read_to_end(target, map_topic, &reader, limit, |key, value| {
        if let Some((tp, entry)) = map::decode(relay_id, key, value) {
            for (_, scan) in scans.get_mut(&tp).into_iter().flatten() {
                scan.see(&entry);
            }
        }
    })?;
    let mut translated = vec![BTreeMap::new(); wanted.len()];
    for (tp, group_scans) in scans {
        for (i, scan) in group_scans {
            translated[i].insert(tp.clone(), scan.result());
        }
    }
    Ok(translated)
}

#[cfg(test)]
mod tests {
    use super::map::Run;
    use super::*;

    fn entry(from: Option<i64>, next: i64, runs: &[(i64, i64, i64)]) -> Entry {
        Entry {
            from,
            next,
            runs: runs
                .iter()
                .map(|&(source, target, count)| Run {
                    source,
                    target,
                    count,
                })
                .collect(),
        }
    }

    /// A source partition written by a transactional producer (a marker
    /// after every 3 records: offsets 3, 7, 11 are markers) and compacted
    /// (offset 5 gone), copied in two target transactions (the target's
    /// own markers at 5 and 10).
    fn map() -> Vec<Entry> {
        vec![
            entry(None, 8, &[(0, 0, 3), (4, 3, 1), (6, 4, 1)]),
            entry(Some(8), 12, &[(8, 6, 3)]),
        ]
    }

    fn translate_in(entries: &[Entry], wanted: i64) -> Translation {
        let mut scan = Scan::new(wanted);
        for e in entries {
            scan.see(e);
        }
        scan.result()
    }

    #[test]
    fn an_offset_of_a_copied_record_translates_to_that_records_target_offset() {
        assert_eq!(translate_in(&map(), 0), Translation::Exact(0));
        assert_eq!(translate_in(&map(), 2), Translation::Exact(2));
        assert_eq!(translate_in(&map(), 6), Translation::Exact(4));
        assert_eq!(translate_in(&map(), 9), Translation::Exact(7));
    }

    #[test]
    fn an_offset_in_a_gap_or_on_a_marker_translates_to_the_next_copied_record() {
        assert_eq!(translate_in(&map(), 3), Translation::Exact(3));
        assert_eq!(translate_in(&map(), 5), Translation::Exact(4));
        // 7 is a source marker; the next record (8) opened the second transaction.
        assert_eq!(translate_in(&map(), 7), Translation::Exact(6));
    }

    #[test]
    fn an_offset_past_the_last_record_but_within_the_copied_range_translates_to_the_end() {
        assert_eq!(translate_in(&map(), 11), Translation::Exact(9));
        assert_eq!(translate_in(&map(), 12), Translation::Exact(9));
    }

    #[test]
    fn an_offset_the_relay_has_not_copied_yet_is_ahead() {
        assert_eq!(
            translate_in(&map(), 13),
            Translation::Ahead { copied_to: 12 }
        );
    }

    #[test]
    fn an_offset_before_what_the_map_still_holds_is_too_old() {
        let held = &map()[1..];
        assert_eq!(translate_in(held, 7), Translation::TooOld { oldest: 8 });
        assert_eq!(translate_in(held, 8), Translation::Exact(6));
    }

    #[test]
    fn a_partition_with_no_entries_or_only_gaps_is_unmapped() {
        assert_eq!(translate_in(&[], 0), Translation::Unmapped);
        assert_eq!(
            translate_in(&[entry(None, 5, &[])], 3),
            Translation::Unmapped
        );
    }
}
