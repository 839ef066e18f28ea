//! The independent exactly-once checkers, knowing nothing of the relay:
//! [`tally`] reads the target with `read_committed` and compares it with the
//! sequence the source producer wrote (`relay::produce_sequence`);
//! [`compare_with_source`] reads the source too and compares the two record
//! by record, byte for byte.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rdkafka::message::{Headers, OwnedMessage, Timestamp};
use rdkafka::Message;

use super::clients::{self, Isolation};
use super::relay::sequence_value;

/// What the target holds, measured against the expected sequences.
#[derive(Debug, Default)]
pub struct Tally {
    pub records: usize,
    pub duplicates: usize,
    pub missing: usize,
    pub out_of_order: usize,
    pub misplaced: usize,
    pub examples: Vec<String>,
}

impl Tally {
    pub fn is_exact(&self) -> bool {
        self.duplicates == 0 && self.missing == 0 && self.out_of_order == 0 && self.misplaced == 0
    }
}

/// Counts duplicates, gaps, order breaks and records in the wrong partition,
/// for `per_partition` records expected in each of `partitions` partitions.
pub fn tally(bootstrap: &str, topic: &str, partitions: i32, per_partition: u64) -> Tally {
    let messages = clients::consume_all(bootstrap, topic, Isolation::ReadCommitted);
    let mut t = Tally {
        records: messages.len(),
        ..Tally::default()
    };
    let mut by_partition: BTreeMap<i32, Vec<(i64, String)>> = BTreeMap::new();
    for m in &messages {
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        by_partition
            .entry(m.partition())
            .or_default()
            .push((m.offset(), value));
    }
    for p in 0..partitions {
        let mut seen = by_partition.remove(&p).unwrap_or_default();
        seen.sort_by_key(|(offset, _)| *offset);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut last_seq: Option<u64> = None;
        for (_, value) in &seen {
            *counts.entry(value.clone()).or_insert(0) += 1;
            let Some(seq) = value
                .strip_prefix(&format!("p{p}-"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                t.misplaced += 1;
                t.examples.push(format!("partition {p} holds {value:?}"));
                continue;
            };
            if last_seq.is_some_and(|l| seq <= l) {
                t.out_of_order += 1;
                t.examples
                    .push(format!("partition {p}: {value} after seq {last_seq:?}"));
            }
            last_seq = Some(seq);
        }
        for seq in 0..per_partition {
            match counts.get(&sequence_value(p, seq)) {
                None => {
                    t.missing += 1;
                    t.examples
                        .push(format!("missing {}", sequence_value(p, seq)));
                }
                Some(&n) if n > 1 => {
                    t.duplicates += n - 1;
                    t.examples
                        .push(format!("{} appears {n} times", sequence_value(p, seq)));
                }
                Some(_) => {}
            }
        }
    }
    for (p, extra) in by_partition {
        t.misplaced += extra.len();
        t.examples.push(format!(
            "{} records in unexpected partition {p}",
            extra.len()
        ));
    }
    t.examples.truncate(20);
    t
}

/// Panics unless the target holds every expected record exactly once, in order.
pub fn assert_exactly_once(bootstrap: &str, topic: &str, partitions: i32, per_partition: u64) {
    let t = tally(bootstrap, topic, partitions, per_partition);
    assert!(
        t.is_exact(),
        "target {topic} is not an exact copy: {} records, {} duplicates, {} missing, {} out of order, {} misplaced; e.g.\n  {}",
        t.records,
        t.duplicates,
        t.missing,
        t.out_of_order,
        t.misplaced,
        t.examples.join("\n  ")
    );
    assert_eq!(t.records as u64, partitions as u64 * per_partition);
}

/// Everything of a record a relay must copy unchanged: key, value, headers
/// (in order) and timestamp with its type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Copied {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// `(type, ms)`: 0 none, 1 create time, 2 log-append time.
    pub timestamp: (u8, i64),
}

impl Copied {
    fn of(m: &OwnedMessage) -> Copied {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let timestamp = match m.timestamp() {
            Timestamp::NotAvailable => (0, -1),
            Timestamp::CreateTime(ms) => (1, ms),
            Timestamp::LogAppendTime(ms) => (2, ms),
        };
        Copied {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
            timestamp,
        }
    }

    fn describe(&self) -> String {
        let text = |b: &Option<Vec<u8>>| {
            b.as_ref().map_or("null".to_string(), |b| {
                let s = String::from_utf8_lossy(b);
                format!("{:?}", s.chars().take(40).collect::<String>())
            })
        };
        format!(
            "value {} key {} ({} headers, timestamp {:?})",
            text(&self.value),
            text(&self.key),
            self.headers.len(),
            self.timestamp
        )
    }
}

/// Each partition's records in offset order.
fn copies_by_partition(messages: &[OwnedMessage]) -> BTreeMap<i32, Vec<Copied>> {
    let mut by: BTreeMap<i32, Vec<(i64, Copied)>> = BTreeMap::new();
    for m in messages {
        by.entry(m.partition())
            .or_default()
            .push((m.offset(), Copied::of(m)));
    }
    by.into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|(offset, _)| *offset);
            (p, v.into_iter().map(|(_, c)| c).collect())
        })
        .collect()
}

/// The target measured against the source, partition by partition.
#[derive(Debug, Default)]
pub struct Comparison {
    pub partitions: usize,
    pub source_records: usize,
    pub target_records: usize,
    /// Target copies of a source record beyond the first.
    pub duplicates: usize,
    /// Source records the target does not hold.
    pub missing: usize,
    /// Target records that equal no source record of their partition byte
    /// for byte (altered, or foreign).
    pub unexpected: usize,
    /// Target records that come before a record that precedes them on the source.
    pub out_of_order: usize,
    pub examples: Vec<String>,
}

impl Comparison {
    /// True when every partition of the target is the source's, record for
    /// record: nothing duplicated, missing, altered or reordered.
    pub fn is_identical(&self) -> bool {
        self.duplicates == 0
            && self.missing == 0
            && self.unexpected == 0
            && self.out_of_order == 0
            && self.source_records == self.target_records
    }
}

/// Reads the source and the target topic with `read_committed` (so only
/// committed records count on either side) and compares them per partition.
pub fn compare_with_source(
    source_bootstrap: &str,
    source_topic: &str,
    target_bootstrap: &str,
    target_topic: &str,
) -> Comparison {
    let source = copies_by_partition(&clients::consume_all(
        source_bootstrap,
        source_topic,
        Isolation::ReadCommitted,
    ));
    let target = copies_by_partition(&clients::consume_all(
        target_bootstrap,
        target_topic,
        Isolation::ReadCommitted,
    ));
    compare(&source, &target)
}

fn compare(source: &BTreeMap<i32, Vec<Copied>>, target: &BTreeMap<i32, Vec<Copied>>) -> Comparison {
    let mut c = Comparison::default();
    let partitions: BTreeSet<i32> = source.keys().chain(target.keys()).copied().collect();
    c.partitions = partitions.len();
    let none = Vec::new();
    for p in partitions {
        let s = source.get(&p).unwrap_or(&none);
        let t = target.get(&p).unwrap_or(&none);
        c.source_records += s.len();
        c.target_records += t.len();
        // Where each record stands on the source; a queue, as a source may
        // hold a record twice (and then the target must too).
        let mut at: HashMap<&Copied, VecDeque<usize>> = HashMap::new();
        for (i, r) in s.iter().enumerate() {
            at.entry(r).or_default().push_back(i);
        }
        let mut matched = vec![false; s.len()];
        let mut last: Option<usize> = None;
        for (j, r) in t.iter().enumerate() {
            match at.get_mut(r).map(VecDeque::pop_front) {
                Some(Some(i)) => {
                    matched[i] = true;
                    if last.is_some_and(|l| i < l) {
                        c.out_of_order += 1;
                        c.examples.push(format!(
                            "partition {p}: target record {j} ({}) is source record {i}, after source record {}",
                            r.describe(),
                            last.unwrap_or_default()
                        ));
                    }
                    last = Some(i);
                }
                Some(None) => {
                    c.duplicates += 1;
                    c.examples
                        .push(format!("partition {p}: {} appears again", r.describe()));
                }
                None => {
                    c.unexpected += 1;
                    // Naming the source record it resembles costs a scan: only for the examples shown.
                    if c.examples.len() >= MAX_EXAMPLES {
                        continue;
                    }
                    let like = s.iter().position(|x| x.value == r.value);
                    c.examples.push(match like {
                        Some(i) => format!(
                            "partition {p}: target record {j} ({}) differs from source record {i} ({})",
                            r.describe(),
                            s[i].describe()
                        ),
                        None => format!(
                            "partition {p}: target record {j} ({}) is no source record",
                            r.describe()
                        ),
                    });
                }
            }
        }
        for (i, _) in matched.iter().enumerate().filter(|(_, m)| !**m) {
            c.missing += 1;
            c.examples.push(format!(
                "partition {p}: source record {i} ({}) is missing",
                s[i].describe()
            ));
        }
    }
    c.examples.truncate(MAX_EXAMPLES);
    c
}

/// Differences named in a failed comparison's message.
const MAX_EXAMPLES: usize = 20;

/// Panics unless the target is the source, partition by partition, record by
/// record and byte for byte; returns the comparison (for its counts).
pub fn assert_identical_to_source(
    source_bootstrap: &str,
    source_topic: &str,
    target_bootstrap: &str,
    target_topic: &str,
) -> Comparison {
    let c = compare_with_source(
        source_bootstrap,
        source_topic,
        target_bootstrap,
        target_topic,
    );
    assert!(
        c.source_records > 0,
        "the source topic {source_topic} is empty: comparing it proves nothing"
    );
    assert!(
        c.is_identical(),
        "target {target_topic} differs from source {source_topic}: {} source and {} target records in {} partitions, \
         {} duplicates, {} missing, {} unexpected (altered or foreign), {} out of order; e.g.\n  {}",
        c.source_records,
        c.target_records,
        c.partitions,
        c.duplicates,
        c.missing,
        c.unexpected,
        c.out_of_order,
        c.examples.join("\n  ")
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: &str, ts: i64) -> Copied {
        Copied {
            key: Some(b"k".to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("h".to_string(), Some(vec![0, 255]))],
            timestamp: (1, ts),
        }
    }

    fn one(records: Vec<Copied>) -> BTreeMap<i32, Vec<Copied>> {
        BTreeMap::from([(0, records)])
    }

    #[test]
    fn comparison_names_every_kind_of_difference() {
        let source = one(vec![rec("a", 1), rec("b", 2), rec("c", 3)]);
        assert!(compare(&source, &source).is_identical());

        let dup = compare(
            &source,
            &one(vec![rec("a", 1), rec("a", 1), rec("b", 2), rec("c", 3)]),
        );
        assert_eq!((dup.duplicates, dup.missing, dup.out_of_order), (1, 0, 0));
        let gap = compare(&source, &one(vec![rec("a", 1), rec("c", 3)]));
        assert_eq!((gap.missing, gap.duplicates), (1, 0));
        let swapped = compare(&source, &one(vec![rec("b", 2), rec("a", 1), rec("c", 3)]));
        assert_eq!((swapped.out_of_order, swapped.missing), (1, 0));
        // Same value, another timestamp: not a copy.
        let altered = compare(&source, &one(vec![rec("a", 1), rec("b", 9), rec("c", 3)]));
        assert_eq!((altered.unexpected, altered.missing), (1, 1));
        assert!(altered.examples[0].contains("differs from source record 1"));
        let moved = compare(&source, &BTreeMap::from([(1, vec![rec("a", 1)])]));
        assert_eq!(
            (moved.missing, moved.unexpected, moved.partitions),
            (3, 1, 2)
        );
        for c in [dup, gap, swapped, altered, moved] {
            assert!(!c.is_identical(), "{c:?}");
        }
    }
}
