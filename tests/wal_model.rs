//! Model-based property test of the WAL: random sequences of appends, acks,
//! reads and restarts (drop and reopen the same directory) must behave like a
//! plain ordered map, and positions must never be reused.
//!
//! proptest prints the minimal failing sequence and stores its seed under
//! `proptest-regressions/`; re-running the test replays stored failures first.

use std::collections::BTreeMap;

use kafka_relay::record::{Batch, Record, TopicPartition};
use kafka_relay::wal::{Wal, WalEntry, WalOptions, WalPosition};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: i32,
        records: u8,
    },
    /// Ack the k-th oldest entry (modulo the number of entries).
    Ack(usize),
    ReadFrom(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3i32, 1..20u8).prop_map(|(partition, records)| Op::Append { partition, records }),
        3 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::ReadFrom),
        1 => Just(Op::Restart),
    ]
}

fn open(dir: &std::path::Path) -> Wal {
    Wal::open(dir, WalOptions { max_bytes: 1 << 30 }).expect("open WAL")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn wal_behaves_like_an_ordered_map_across_restarts(ops in prop::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = open(dir.path());
        let mut model: BTreeMap<WalPosition, Batch> = BTreeMap::new();
        let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
        let mut highest_position: Option<WalPosition> = None;

        for op in ops {
            match op {
                Op::Append { partition, records } => {
                    let first = *next_offset.get(&partition).unwrap_or(&0);
                    let batch = Batch {
                        topic: "t".into(),
                        partition,
                        records: (0..records as i64)
                            .map(|i| Record {
                                offset: first + i,
                                timestamp: Some(i),
                                key: Some(vec![partition as u8]),
                                value: Some(vec![i as u8; (i as usize) % 7]),
                                headers: vec![],
                            })
                            .collect(),
                    };
                    next_offset.insert(partition, first + records as i64);
                    let position = wal.append(&batch).expect("append");
                    prop_assert!(highest_position.is_none_or(|h| position > h), "position {} reused", position);
                    highest_position = Some(position);
                    model.insert(position, batch);
                }
                Op::Ack(k) => {
                    if !model.is_empty() {
                        let position = *model.keys().nth(k % model.len()).expect("key");
                        wal.ack(&[position]).expect("ack");
                        model.remove(&position);
                    }
                }
                Op::ReadFrom(k) => {
                    let from = if model.is_empty() { 0 } else { *model.keys().nth(k % model.len()).expect("key") };
                    let got: Vec<(WalPosition, Batch)> = wal
                        .read_from(from, usize::MAX)
                        .expect("read")
                        .into_iter()
                        .map(|e| match e {
                            WalEntry::Valid { position, batch, .. } => (position, batch),
                            WalEntry::Corrupted { position, reason, .. } => panic!("entry {position} corrupted: {reason}"),
                        })
                        .collect();
                    let want: Vec<(WalPosition, Batch)> = model.range(from..).map(|(p, b)| (*p, b.clone())).collect();
                    prop_assert_eq!(got, want);
                }
                Op::Restart => {
                    drop(wal);
                    wal = open(dir.path());
                }
            }
            prop_assert_eq!(wal.len(), model.len());
            let mut progress: BTreeMap<TopicPartition, i64> = BTreeMap::new();
            for b in model.values() {
                let next = b.next_offset().expect("non-empty");
                let slot = progress.entry(TopicPartition::new(b.topic.clone(), b.partition)).or_insert(next);
                *slot = (*slot).max(next);
            }
            prop_assert_eq!(wal.partition_progress(), progress);
            prop_assert_eq!(wal.oldest_position(), model.keys().next().copied());
        }
    }
}
