//! Model-based property test of the WAL: random sequences of appends, acks,
//! reads, restarts (drop the `Wal` and reopen the same directory), on-disk
//! corruption of an entry and quarantines must behave like a plain ordered
//! map, and positions must never be reused.
//!
//! Replaying failures: proptest shrinks a failing run to a minimal operation
//! sequence, prints it, and appends its seed (a `cc <hex>` line) to
//! `tests/wal_model.proptest-regressions`; every later run replays the seeds
//! in that file first. Commit the file to keep a failure as a regression
//! case. `PROPTEST_CASES=1000 cargo test --test wal_model` runs a longer
//! search than the default 64 cases (1000 take ~20 s).

#[path = "common/wal_damage.rs"]
mod wal_damage;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kafka_relay::record::{Batch, Header, Record, TopicPartition};
use kafka_relay::wal::{encode_batch, Wal, WalEntry, WalError, WalOptions, WalPosition};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: i32,
        records: u8,
    },
    /// Ack the k-th oldest entry (modulo the number of entries).
    Ack(usize),
    /// Read from the k-th oldest entry (or past the end), at most `max` entries.
    ReadFrom {
        k: usize,
        max: usize,
    },
    Restart,
    /// Flip one byte of the k-th oldest valid entry in its segment file, then restart.
    Corrupt {
        k: usize,
        at: usize,
        xor: u8,
    },
    /// Quarantine the k-th oldest entry, valid or not.
    Quarantine(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3i32, 1..20u8).prop_map(|(partition, records)| Op::Append { partition, records }),
        5 => any::<usize>().prop_map(Op::Ack),
        4 => (any::<usize>(), 1..8usize).prop_map(|(k, max)| Op::ReadFrom { k, max }),
        2 => Just(Op::Restart),
        1 => (any::<usize>(), any::<usize>(), 1..=255u8).prop_map(|(k, at, xor)| Op::Corrupt { k, at, xor }),
        2 => any::<usize>().prop_map(Op::Quarantine),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Stored {
    Valid(Batch),
    Corrupted(Vec<u8>),
}

impl Stored {
    fn bytes(&self) -> u64 {
        match self {
            Stored::Valid(b) => encode_batch(b).expect("encode").len() as u64,
            Stored::Corrupted(raw) => raw.len() as u64,
        }
    }
}

#[derive(Default)]
struct Model {
    entries: BTreeMap<WalPosition, Stored>,
    quarantined: BTreeMap<WalPosition, Vec<u8>>,
    next_offset: BTreeMap<i32, i64>,
    highest_position: Option<WalPosition>,
}

impl Model {
    fn kth(&self, k: usize) -> Option<WalPosition> {
        (!self.entries.is_empty()).then(|| {
            *self
                .entries
                .keys()
                .nth(k % self.entries.len())
                .expect("k-th key")
        })
    }

    fn progress(&self) -> BTreeMap<TopicPartition, i64> {
        let mut progress = BTreeMap::new();
        for stored in self.entries.values() {
            if let Stored::Valid(b) = stored {
                let next = b.next_offset().expect("non-empty");
                let slot = progress
                    .entry(TopicPartition::new(b.topic.clone(), b.partition))
                    .or_insert(next);
                *slot = (*slot).max(next);
            }
        }
        progress
    }
}

fn open(dir: &Path, max_bytes: u64) -> Wal {
    Wal::open(dir, WalOptions { max_bytes }).expect("open WAL")
}

fn make_batch(model: &mut Model, partition: i32, records: u8) -> Batch {
    let first = *model.next_offset.get(&partition).unwrap_or(&0);
    model
        .next_offset
        .insert(partition, first + i64::from(records));
    Batch {
        topic: "t".into(),
        partition,
        records: (0..i64::from(records))
            .map(|i| Record {
                offset: first + i,
                timestamp: Some(i),
                key: (i % 3 != 0).then(|| vec![partition as u8]),
                value: Some(vec![i as u8; (i as usize) % 7]),
                headers: (0..i % 2)
                    .map(|_| Header {
                        key: "h".into(),
                        value: None,
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn check_entries(
    got: Vec<WalEntry>,
    want: Vec<(WalPosition, Stored)>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (entry, (position, stored)) in got.into_iter().zip(want) {
        prop_assert_eq!(entry.position(), position);
        prop_assert_eq!(entry.stored_bytes(), stored.bytes());
        match (entry, stored) {
            (WalEntry::Valid { batch, .. }, Stored::Valid(want)) => prop_assert_eq!(batch, want),
            (WalEntry::Corrupted { .. }, Stored::Corrupted(_)) => {}
            (entry, stored) => {
                prop_assert!(false, "entry {:?} but the model holds {:?}", entry, stored)
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn wal_behaves_like_an_ordered_map_across_restarts(
        max_bytes in 500..5000u64,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Some(open(dir.path(), max_bytes));
        let mut model = Model::default();

        for op in ops {
            let w = wal.as_ref().expect("open");
            match op {
                Op::Append { partition, records } => {
                    let batch = make_batch(&mut model, partition, records);
                    let position = w.append(&batch).expect("append");
                    prop_assert!(
                        model.highest_position.is_none_or(|h| position > h),
                        "position {} after {:?}: reused or going back", position, model.highest_position
                    );
                    model.highest_position = Some(position);
                    model.entries.insert(position, Stored::Valid(batch));
                }
                Op::Ack(k) => {
                    if let Some(position) = model.kth(k) {
                        w.ack(&[position]).expect("ack");
                        model.entries.remove(&position);
                    }
                }
                Op::ReadFrom { k, max } => {
                    let from = model.kth(k).unwrap_or(model.highest_position.map_or(0, |h| h + 1));
                    let want: Vec<_> = model.entries.range(from..).take(max).map(|(p, s)| (*p, s.clone())).collect();
                    check_entries(w.read_from(from, max).expect("read"), want)?;
                }
                Op::Restart => {
                    drop(wal.take());
                    wal = Some(open(dir.path(), max_bytes));
                }
                Op::Corrupt { k, at, xor } => {
                    // Only valid entries: a second flip could undo the first.
                    let valid: Vec<WalPosition> = model.entries.iter()
                        .filter(|(_, s)| matches!(s, Stored::Valid(_)))
                        .map(|(p, _)| *p)
                        .collect();
                    if !valid.is_empty() {
                        let position = valid[k % valid.len()];
                        let raw = wal_damage::flip_byte(w, position, at, xor);
                        drop(wal.take());
                        model.entries.insert(position, Stored::Corrupted(raw));
                        wal = Some(open(dir.path(), max_bytes));
                    }
                }
                Op::Quarantine(k) => {
                    if let Some(position) = model.kth(k) {
                        match model.entries[&position].clone() {
                            Stored::Valid(_) => {
                                let refused = matches!(w.quarantine(position), Err(WalError::NotCorrupted { .. }));
                                prop_assert!(refused, "valid entry {} quarantined", position);
                            }
                            Stored::Corrupted(raw) => {
                                w.quarantine(position).expect("quarantine");
                                model.entries.remove(&position);
                                model.quarantined.insert(position, raw);
                            }
                        }
                        let got: BTreeMap<_, _> = w.quarantined().expect("quarantined").into_iter().collect();
                        prop_assert_eq!(&got, &model.quarantined);
                    }
                }
            }

            let w = wal.as_ref().expect("open");
            prop_assert_eq!(w.len(), model.entries.len());
            let bytes: u64 = model.entries.values().map(Stored::bytes).sum();
            prop_assert_eq!(w.bytes(), bytes);
            prop_assert_eq!(w.is_full(), bytes >= max_bytes);
            prop_assert_eq!(w.partition_progress(), model.progress());
            prop_assert_eq!(w.oldest_position(), model.entries.keys().next().copied());
            prop_assert!(model.highest_position.is_none_or(|h| w.next_position() > h));
            // Disk is given back: every segment file holds a live entry,
            // but for the newest, which may be the one appends go to; of
            // drained ones at most `max_bytes` worth are kept, as spares to
            // write over: here, WALs under 8 KiB with 4 KiB segments, one.
            let live: BTreeSet<PathBuf> = model.entries.keys()
                .filter_map(|p| w.location(*p).expect("location").map(|(path, _)| path))
                .collect();
            let (spares, mut files): (Vec<PathBuf>, Vec<PathBuf>) =
                match std::fs::read_dir(dir.path().join("segments")) {
                    Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
                    Err(_) => Vec::<PathBuf>::new(),
                }
                .into_iter()
                .partition(|f| f.extension().is_some_and(|x| x == "spare"));
            prop_assert!(spares.len() <= 1, "spares kept: {:?}", spares);
            files.sort();
            if files.last().is_some_and(|newest| !live.contains(newest)) {
                files.pop();
            }
            let stale: Vec<&PathBuf> = files.iter().filter(|f| !live.contains(*f)).collect();
            prop_assert!(stale.is_empty(), "segments without entries kept: {:?}", stale);
        }
    }
}
