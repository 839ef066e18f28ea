//! The independent exactly-once checker: reads the target with
//! `read_committed` and compares it with the sequence the source producer
//! wrote (`relay::produce_sequence`), knowing nothing of the relay.

use std::collections::BTreeMap;

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
