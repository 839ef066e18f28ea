//! Unit tests of `Wal` against a real sled directory (frame tests live in
//! `frame.rs`, the model-based test in `tests/wal_model.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::index::{LEGACY_BATCHES, NEXT_POSITION, TAIL};
use super::open::{segment_size_of, SEGMENT_SIZE};
use super::*;
use crate::record::Record;

fn batch(topic: &str, partition: i32, first: i64, n: i64) -> Batch {
    Batch {
        topic: topic.into(),
        partition,
        records: (first..first + n)
            .map(|offset| Record {
                offset,
                timestamp: Some(offset),
                key: None,
                value: Some(vec![7; 32]),
                headers: vec![],
            })
            .collect(),
    }
}

/// Batch `i` of 100 records with 40-byte values (~4 KiB framed): sixteen
/// fill a 64 KiB segment, the size `open` gives.
fn fat(i: i64) -> Batch {
    let mut b = batch("t", 0, i * 100, 100);
    for r in &mut b.records {
        r.value = Some(vec![i as u8; 40]);
    }
    b
}

fn open(dir: &Path) -> Wal {
    Wal::open(dir, WalOptions { max_bytes: 1 << 20 }).expect("open")
}

fn frame_len(b: &Batch) -> u64 {
    encode_batch(b).expect("encode").len() as u64
}

/// Writes `bytes` at `offset` of the file at `path`, behind the WAL's back.
fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open segment");
    segment::write_at(&file, offset, bytes).expect("overwrite");
}

/// Puts `raw` at `position` behind the WAL's back: over the entry's frame
/// in its segment, as a disk fault would, or (for a position the WAL does
/// not hold, or bytes of another length) in a segment of its own that the
/// index is pointed at.
fn put_raw(wal: &Wal, position: WalPosition, raw: &[u8]) {
    if let Some((path, at)) = wal.location(position).expect("location") {
        if at.len as usize == raw.len() {
            overwrite(&path, at.offset, raw);
            return;
        }
    }
    let id = 1_000_000 + position;
    let file = segment::create(&wal.inner.segments, id).expect("create segment");
    segment::write_at(&file, 0, raw).expect("write raw");
    let at = Location {
        segment: id,
        offset: 0,
        len: raw.len() as u32,
    };
    wal.inner
        .index
        .insert(position.to_be_bytes(), &at.to_bytes())
        .expect("index raw");
}

fn segment_files(wal: &Wal) -> Vec<u64> {
    segment::list(&wal.inner.segments).expect("list segments")
}

fn damaged(b: &Batch) -> Vec<u8> {
    let mut raw = encode_batch(b).expect("encode");
    let last = raw.len() - 1;
    raw[last] ^= 0x01;
    raw
}

#[test]
fn wal_is_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Wal>();
}

#[test]
fn append_then_read_returns_the_batches_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let batches = [
        batch("a", 0, 0, 3),
        batch("b", 1, 10, 1),
        batch("a", 0, 3, 2),
    ];
    let positions: Vec<_> = batches
        .iter()
        .map(|b| wal.append(b).expect("append"))
        .collect();
    assert_eq!(positions, vec![0, 1, 2]);
    let got = wal.read_from(0, 10).expect("read");
    let want: Vec<_> = positions
        .iter()
        .zip(&batches)
        .map(|(&position, b)| WalEntry::Valid {
            position,
            batch: b.clone(),
            stored_bytes: frame_len(b),
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(wal.read_from(1, 1).expect("read"), want[1..2].to_vec());
    assert_eq!(wal.read_from(2, 10).expect("read"), want[2..].to_vec());
    assert!(wal.read_from(3, 10).expect("read").is_empty());
    assert!(wal.read_from(0, 0).expect("read").is_empty());
    assert_eq!(wal.bytes(), batches.iter().map(frame_len).sum::<u64>());
}

#[test]
fn positions_are_never_reused_after_ack_all_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let a = wal.append(&batch("t", 0, 0, 5)).expect("append");
    let b = wal.append(&batch("t", 0, 5, 5)).expect("append");
    wal.ack(&[a, b]).expect("ack");
    assert!(wal.is_empty());
    assert_eq!(wal.bytes(), 0);
    drop(wal);
    let wal = open(dir.path());
    assert_eq!(wal.oldest_position(), None);
    assert_eq!(wal.next_position(), b + 1);
    let c = wal.append(&batch("t", 0, 10, 5)).expect("append");
    assert!(c > b, "position {c} reused (last was {b})");
}

#[test]
fn accounting_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let a = wal.append(&batch("t", 0, 0, 5)).expect("append");
    wal.append(&batch("t", 1, 0, 3)).expect("append");
    wal.append(&batch("t", 0, 5, 5)).expect("append");
    let bad = wal.append(&batch("u", 0, 0, 1)).expect("append");
    wal.ack(&[a]).expect("ack");
    // A corrupted entry still counts in bytes and len, not in progress.
    let raw = damaged(&batch("u", 0, 0, 1));
    put_raw(&wal, bad, &raw);
    drop(wal);

    let wal = open(dir.path());
    let expected_bytes =
        frame_len(&batch("t", 1, 0, 3)) + frame_len(&batch("t", 0, 5, 5)) + raw.len() as u64;
    assert_eq!(wal.bytes(), expected_bytes);
    assert_eq!(wal.len(), 3);
    assert_eq!(wal.oldest_position(), Some(a + 1));
    assert_eq!(wal.next_position(), bad + 1);
    assert_eq!(
        wal.partition_progress(),
        BTreeMap::from([
            (TopicPartition::new("t", 0), 10),
            (TopicPartition::new("t", 1), 3),
        ])
    );
}

#[test]
fn a_corrupted_entry_is_reported_not_skipped_and_can_be_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let good = wal.append(&batch("t", 0, 0, 2)).expect("append");
    let bad = wal.append(&batch("t", 0, 2, 2)).expect("append");
    let after = wal.append(&batch("t", 0, 4, 2)).expect("append");
    let raw = damaged(&batch("t", 0, 2, 2));
    put_raw(&wal, bad, &raw);

    let entries = wal.read_from(0, 10).expect("read");
    assert_eq!(
        entries.iter().map(WalEntry::position).collect::<Vec<_>>(),
        vec![good, bad, after]
    );
    assert!(matches!(entries[0], WalEntry::Valid { .. }));
    assert!(matches!(
        &entries[1],
        WalEntry::Corrupted {
            reason: CorruptionReason::ChecksumMismatch { .. },
            stored_bytes,
            ..
        } if *stored_bytes == raw.len() as u64
    ));
    assert!(matches!(entries[2], WalEntry::Valid { .. }));

    // Valid entries are never quarantined; unknown positions are a no-op.
    assert!(matches!(
        wal.quarantine(good),
        Err(WalError::NotCorrupted { position, .. }) if position == good
    ));
    wal.quarantine(999).expect("unknown position");

    let bytes_before = wal.bytes();
    wal.quarantine(bad).expect("quarantine");
    wal.quarantine(bad).expect("quarantining twice is a no-op");
    assert_eq!(wal.bytes(), bytes_before - raw.len() as u64);
    assert_eq!(wal.len(), 2);
    assert_eq!(
        wal.read_from(0, 10)
            .expect("read")
            .iter()
            .map(WalEntry::position)
            .collect::<Vec<_>>(),
        vec![good, after]
    );
    assert_eq!(
        wal.quarantined().expect("quarantined"),
        vec![(bad, raw.clone())]
    );

    // Kept across restarts, and still not shipped.
    drop(wal);
    let wal = open(dir.path());
    assert_eq!(wal.quarantined().expect("quarantined"), vec![(bad, raw)]);
    assert_eq!(wal.len(), 2);
}

#[test]
fn full_when_max_bytes_reached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = batch("t", 0, 0, 2);
    let second = batch("t", 0, 2, 4);
    let max_bytes = frame_len(&first) + frame_len(&second);
    let wal = Wal::open(dir.path(), WalOptions { max_bytes }).expect("open");
    wal.append(&first).expect("append");
    assert!(!wal.is_full());
    let p = wal.append(&second).expect("append");
    assert!(wal.is_full());
    assert_eq!(wal.max_bytes(), max_bytes);
    wal.ack(&[p]).expect("ack");
    assert!(!wal.is_full());
}

#[test]
fn empty_batches_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let err = wal.append(&batch("t", 3, 0, 0)).expect_err("empty batch");
    assert!(matches!(err, WalError::EmptyBatch { .. }), "{err:?}");
    assert!(err.to_string().contains("t/3"), "{err}");
    assert_eq!(wal.next_position(), 0, "no position spent");
}

#[test]
fn acking_unknown_or_twice_is_a_no_op() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let a = wal.append(&batch("t", 0, 0, 1)).expect("append");
    let b = wal.append(&batch("t", 0, 1, 1)).expect("append");
    wal.ack(&[]).expect("nothing");
    wal.ack(&[a, 42, a]).expect("ack");
    wal.ack(&[a]).expect("again");
    assert_eq!(wal.len(), 1);
    assert_eq!(wal.oldest_position(), Some(b));
    assert_eq!(wal.bytes(), frame_len(&batch("t", 0, 1, 1)));
}

#[test]
fn entries_not_yet_durable_are_invisible_and_unackable() {
    // A key at next_position is what an append looks like before its fsync.
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let a = wal.append(&batch("t", 0, 0, 1)).expect("append");
    let in_flight = wal.next_position();
    put_raw(
        &wal,
        in_flight,
        &encode_batch(&batch("t", 0, 1, 1)).expect("encode"),
    );
    assert_eq!(wal.read_from(0, 10).expect("read").len(), 1);
    assert!(wal.read_from(in_flight, 10).expect("read").is_empty());
    wal.ack(&[in_flight]).expect("ack");
    assert_eq!(wal.len(), 1);
    assert_eq!(wal.oldest_position(), Some(a));
}

#[test]
fn a_second_open_of_the_same_dir_is_a_typed_lock_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _wal = open(dir.path());
    let err = Wal::open_waiting(
        dir.path(),
        WalOptions { max_bytes: 1 },
        None,
        Duration::from_millis(100),
    )
    .expect_err("locked");
    assert!(matches!(err, WalError::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_dir_that_is_a_file_is_a_typed_open_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let err = Wal::open(&file, WalOptions { max_bytes: 1 }).expect_err("a file");
    assert!(matches!(err, WalError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn a_damaged_next_position_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path());
        wal.append(&batch("t", 0, 0, 1)).expect("append");
        wal.inner
            .meta
            .insert(NEXT_POSITION, &[1u8, 2, 3][..])
            .expect("insert");
        wal.inner.db.flush().expect("flush");
    }
    let err = Wal::open(dir.path(), WalOptions { max_bytes: 1 }).expect_err("bad meta");
    assert!(
        matches!(
            err,
            WalError::BadKey { .. } | WalError::BadMeta { len: 3, .. }
        ),
        "{err:?}"
    );
}

#[test]
fn a_foreign_key_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    wal.append(&batch("t", 0, 0, 1)).expect("append");
    // Nine bytes sort between positions 0 and 1, inside read_from's range.
    let odd = [0, 0, 0, 0, 0, 0, 0, 0, 5];
    wal.inner.index.insert(odd, &b"x"[..]).expect("insert");
    let err = wal.read_from(0, 10).expect_err("bad key");
    assert!(
        matches!(
            err,
            WalError::BadKey {
                len: 9,
                tree: "index",
                ..
            }
        ),
        "{err:?}"
    );
    drop(wal);
    let err = Wal::open(dir.path(), WalOptions { max_bytes: 1 }).expect_err("bad key at open");
    assert!(matches!(err, WalError::BadKey { .. }), "{err:?}");
}

#[test]
fn a_huge_stored_next_position_is_an_error_not_an_overflow() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path());
        wal.inner
            .meta
            .insert(NEXT_POSITION, &u64::MAX.to_be_bytes())
            .expect("insert");
    }
    let wal = open(dir.path());
    let err = wal.append(&batch("t", 0, 0, 1)).expect_err("exhausted");
    assert!(
        matches!(err, WalError::PositionsExhausted { .. }),
        "{err:?}"
    );
}

/// One thread appends, another plays the shipper (read, ack) until it has
/// seen everything: no entry lost, duplicated or out of order, and the
/// accounting ends at zero, also after reopen.
#[test]
fn concurrent_append_and_ack_keep_order_and_accounting() {
    const N: i64 = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                wal.append(&batch("t", 0, i, 1)).expect("append");
            }
            done.store(true, Ordering::SeqCst);
        });
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            let finished = done.load(Ordering::SeqCst);
            let entries = wal.read_from(cursor, 16).expect("read");
            let mut acked = Vec::new();
            for entry in entries {
                let WalEntry::Valid {
                    position, batch, ..
                } = entry
                else {
                    panic!("corrupted entry {entry:?}");
                };
                seen.push(batch.records[0].offset);
                cursor = position + 1;
                acked.push(position);
            }
            wal.ack(&acked).expect("ack");
            if finished && acked.is_empty() {
                break;
            }
        }
        assert_eq!(seen, (0..N).collect::<Vec<_>>());
    });
    assert!(wal.is_empty());
    assert_eq!(wal.bytes(), 0);
    drop(wal);
    let wal = open(dir.path());
    assert!(wal.is_empty());
    assert_eq!(wal.next_position(), N as u64);
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Damage sled's own files (garbage in the middle, truncation, zeroing) and
/// reopen: the result must be a typed error, or a WAL whose every entry is
/// either valid (and then exactly what was written) or reported corrupted.
/// Replay a failure with `KAFKA_RELAY_TEST_SEED=<printed seed>`.
#[test]
fn damaged_sled_files_give_a_typed_error_or_checked_entries() {
    let seed: u64 = std::env::var("KAFKA_RELAY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("damaged_sled_files: seed {seed} (replay with KAFKA_RELAY_TEST_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let written: Vec<Batch> = (0..20).map(|i| batch("t", 0, i * 10, 10)).collect();
    for round in 0..12 {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = open(dir.path());
            for b in &written {
                wal.append(b).expect("append");
            }
        }
        for file in files_under(dir.path()) {
            let mut bytes = std::fs::read(&file).expect("read");
            if bytes.is_empty() {
                continue;
            }
            match round % 3 {
                0 => {
                    let at = rng.random_range(0..bytes.len());
                    let end = (at + rng.random_range(1..256)).min(bytes.len());
                    rng.fill(&mut bytes[at..end]);
                }
                1 => bytes.truncate(rng.random_range(0..bytes.len())),
                _ => {
                    let at = rng.random_range(0..bytes.len());
                    let end = (at + 4096).min(bytes.len());
                    bytes[at..end].fill(0);
                }
            }
            std::fs::write(&file, bytes).expect("write");
        }
        match Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }) {
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("WAL"),
                    "round {round}: error names the WAL: {msg}"
                );
            }
            Ok(wal) => {
                let entries = match wal.read_from(0, 100) {
                    Ok(entries) => entries,
                    Err(e) => {
                        assert!(e.to_string().contains("WAL"), "round {round}: {e}");
                        continue;
                    }
                };
                for entry in entries {
                    if let WalEntry::Valid {
                        position, batch, ..
                    } = entry
                    {
                        assert_eq!(
                            Some(&batch),
                            written.get(position as usize),
                            "round {round}: entry {position} changed but passed its checks"
                        );
                    }
                }
            }
        }
    }
}

/// A kill while sled writes a snapshot leaves `snap.<lsn>.generating`,
/// empty or torn, beside the previous snapshot; sled 0.34 alone then
/// refuses the directory ("Read corrupted data"), which the SIGKILL test
/// once hit. The WAL opens anyway, with every entry intact.
#[test]
fn a_snapshot_sled_had_not_finished_when_killed_does_not_stop_the_open() {
    let written: Vec<Batch> = (0..20).map(|i| batch("t", 0, i * 10, 10)).collect();
    let unfinished: [&[u8]; 2] = [b"", &[0x5a; 700]];
    for leftover in unfinished {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = open(dir.path());
            for b in &written {
                wal.append(b).expect("append");
            }
        }
        let snapshot = dir.path().join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&snapshot, leftover).expect("write the unfinished snapshot");
        // What sled does with it alone: the reason for the clean-up. The
        // WAL's sled may still hold its lock for a moment after the drop
        // (its flusher thread): that refusal is not the one looked for.
        let open_alone = || {
            sled::Config::new()
                .path(dir.path())
                .segment_size(segment_size_of(dir.path()))
                .open()
        };
        let mut alone = open_alone();
        for _ in 0..100 {
            if !matches!(alone, Err(sled::Error::Io(_))) {
                break;
            }
            drop(alone);
            std::thread::sleep(std::time::Duration::from_millis(50));
            alone = open_alone();
        }
        assert!(
            matches!(alone, Err(sled::Error::Corruption { .. })),
            "sled itself should refuse a {}-byte unfinished snapshot, got {:?}",
            leftover.len(),
            alone.as_ref().map(|_| ())
        );
        drop(alone);

        let wal = open(dir.path());
        assert!(!snapshot.exists(), "the unfinished snapshot is deleted");
        let read: Vec<Batch> = wal
            .read_from(0, 100)
            .expect("read")
            .into_iter()
            .map(|entry| match entry {
                WalEntry::Valid { batch, .. } => batch,
                other => panic!("an entry did not survive: {other:?}"),
            })
            .collect();
        assert_eq!(read, written);
    }
}

#[test]
fn append_times_survive_reopen_and_leave_with_their_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = crate::now_ms();
    let (kept, acked) = {
        let wal = open(dir.path());
        let acked = wal.append(&batch("t", 0, 0, 3)).expect("append");
        let kept = wal.append(&batch("t", 1, 0, 5)).expect("append");
        wal.ack(&[acked]).expect("ack");
        (kept, acked)
    };
    let wal = open(dir.path());
    let appended = |p: WalPosition| wal.inner.appended.get(p.to_be_bytes()).expect("get");
    assert!(appended(acked).is_none(), "an ack removes the append time");
    assert!(appended(kept).is_some());
    let depth = wal.depth();
    assert_eq!((depth.total.batches, depth.total.records), (1, 5));
    let d = depth.partitions[&TopicPartition::new("t", 1)];
    let oldest = d.oldest_appended_ms.expect("an append time");
    assert!(
        oldest >= before && oldest <= crate::now_ms(),
        "the append's own time, kept across the reopen"
    );
}

#[test]
fn an_append_time_left_by_a_crash_is_removed_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path());
        wal.append(&batch("t", 0, 0, 1)).expect("append");
        // As if a crash fell between removing an entry and removing its time.
        wal.inner
            .appended
            .insert(99u64.to_be_bytes(), &1i64.to_be_bytes())
            .expect("insert orphan");
        wal.sync().expect("sync");
    }
    let wal = open(dir.path());
    assert!(wal
        .inner
        .appended
        .get(99u64.to_be_bytes())
        .expect("get")
        .is_none());
    assert_eq!(wal.inner.appended.len(), 1, "the live entry keeps its time");
}

#[test]
fn delivered_progress_is_stored_with_the_ack_and_read_back_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let progress = BTreeMap::from([
        (TopicPartition::new("a.b-c", 12), 40),
        (TopicPartition::new("t", 0), 3),
    ]);
    {
        let wal = open(dir.path());
        let p = wal.append(&batch("t", 0, 0, 3)).expect("append");
        wal.ack_delivered(&[p], &progress).expect("ack");
        assert!(wal.is_empty());
    }
    let wal = open(dir.path());
    assert_eq!(wal.delivered().expect("delivered"), progress);
    // A later checkpoint replaces the earlier one.
    wal.store_delivered(&BTreeMap::from([(TopicPartition::new("t", 0), 9)]))
        .expect("store");
    assert_eq!(
        wal.delivered().expect("delivered")[&TopicPartition::new("t", 0)],
        9
    );
}

#[test]
fn a_wal_made_before_segments_opens_with_its_entries_moved_into_a_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old: Vec<Batch> = (0..100).map(|i| batch("t", 0, i * 3, 3)).collect();
    {
        // What kafka-relay created before it chose its own sled segment
        // size, and before frames moved out of sled.
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .expect("sled default");
        let tree = db.open_tree(LEGACY_BATCHES).expect("tree");
        for (position, b) in old.iter().enumerate() {
            let frame = encode_batch(b).expect("frame");
            tree.insert((position as u64).to_be_bytes(), frame)
                .expect("insert");
        }
        // A corrupted one moves as it is, to be reported and quarantined.
        tree.insert(100u64.to_be_bytes(), damaged(&batch("t", 0, 300, 1)))
            .expect("insert");
        db.flush().expect("flush");
    }
    assert_eq!(segment_size_of(dir.path()), 512 * 1024);
    let check = |wal: &Wal| {
        let entries = wal.read_from(0, 1000).expect("read");
        assert_eq!(entries.len(), 101);
        for (entry, want) in entries.iter().zip(&old) {
            assert!(matches!(entry, WalEntry::Valid { batch, .. } if batch == want));
        }
        assert!(matches!(entries[100], WalEntry::Corrupted { .. }));
    };
    {
        let wal = open(dir.path());
        check(&wal);
        let legacy = wal.inner.db.open_tree(LEGACY_BATCHES).expect("tree");
        assert!(legacy.is_empty(), "moved out of sled");
        assert!(!segment_files(&wal).is_empty());
    }
    let wal = open(dir.path());
    check(&wal);
    assert_eq!(wal.append(&batch("t", 0, 301, 2)).expect("append"), 101);
}

#[test]
fn a_move_into_segments_cut_short_by_a_crash_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path());
        wal.append(&batch("t", 0, 0, 3)).expect("append");
        // Entry 0 moved (indexed) but still in the old tree; entry 1 not moved.
        let legacy = wal.inner.db.open_tree(LEGACY_BATCHES).expect("tree");
        legacy
            .insert(0u64.to_be_bytes(), damaged(&batch("x", 0, 0, 1)))
            .expect("insert");
        legacy
            .insert(
                1u64.to_be_bytes(),
                encode_batch(&batch("t", 0, 3, 2)).expect("frame"),
            )
            .expect("insert");
        wal.sync().expect("sync");
    }
    let wal = open(dir.path());
    let entries = wal.read_from(0, 10).expect("read");
    assert_eq!(
        entries,
        vec![
            WalEntry::Valid {
                position: 0,
                batch: batch("t", 0, 0, 3),
                stored_bytes: frame_len(&batch("t", 0, 0, 3)),
            },
            WalEntry::Valid {
                position: 1,
                batch: batch("t", 0, 3, 2),
                stored_bytes: frame_len(&batch("t", 0, 3, 2)),
            },
        ],
        "the index wins over the old tree's copy"
    );
}

#[test]
fn segments_rotate_and_each_is_retired_once_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    // max_bytes 1 MiB: segments of 64 KiB; each batch ~4 KiB.
    let wal = open(dir.path());
    assert_eq!(wal.inner.segment_bytes, 64 << 10);
    let positions: Vec<WalPosition> = (0..100)
        .map(|i| wal.append(&fat(i)).expect("append"))
        .collect();
    let files = segment_files(&wal);
    assert!(files.len() >= 5, "rotated: {files:?}");
    let on_disk: u64 = files
        .iter()
        .map(|id| {
            std::fs::metadata(segment::path(&wal.inner.segments, *id))
                .expect("stat")
                .len()
        })
        .sum();
    assert_eq!(
        on_disk,
        wal.bytes() + 100 * segment::RECORD_PREFIX,
        "each frame written once, behind its position, nothing else"
    );

    wal.ack(&positions[..90]).expect("ack");
    let left = segment_files(&wal);
    assert!(left.len() <= 2, "drained segments retired: {left:?}");
    assert_eq!(
        spare_files(&wal).len(),
        files.len() - left.len(),
        "kept as spares, within max_bytes"
    );
    assert_eq!(left.last(), files.last(), "the current segment stays");

    // Everything acked: the current one stays until the next rotation.
    wal.ack(&positions[90..]).expect("ack");
    assert_eq!(segment_files(&wal), vec![*files.last().expect("one")]);
    drop(wal);
    let wal = open(dir.path());
    assert!(segment_files(&wal).is_empty(), "nothing to keep at open");
    let p = wal.append(&fat(100)).expect("append");
    assert_eq!(p, 100);
    assert!(
        segment_files(&wal)[0] > *files.last().expect("one"),
        "ids are not reused"
    );
    assert_eq!(wal.read_from(p, 1).expect("read").len(), 1);
}

/// Appends `fat(i)` for each `i`; their positions.
fn append_fat(wal: &Wal, batches: std::ops::Range<i64>) -> Vec<WalPosition> {
    batches
        .map(|i| wal.append(&fat(i)).expect("append"))
        .collect()
}

fn spare_files(wal: &Wal) -> Vec<PathBuf> {
    segment::list_spares(&wal.inner.segments).expect("list spares")
}

#[test]
fn a_reused_segment_s_old_records_are_never_taken_for_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let old = append_fat(&wal, 0..60);
    let rotated = segment_files(&wal).len();
    wal.ack(&old).expect("ack");
    let spares = spare_files(&wal).len();
    assert_eq!(
        spares,
        rotated - 1,
        "every drained one kept, the current stays"
    );
    // Into the current segment, then on into a reused spare.
    let mut kept = Vec::new();
    let spare_before = segment_files(&wal).len();
    let mut i = 60;
    while spare_files(&wal).len() == spares || kept.len() < 3 {
        kept.push((wal.append(&fat(i)).expect("append"), fat(i)));
        i += 1;
    }
    assert_eq!(segment_files(&wal).len(), spare_before + 1);
    let reused = *segment_files(&wal).last().expect("current");
    let in_reused = |p: WalPosition| {
        wal.location(p)
            .expect("location")
            .is_some_and(|(_, l)| l.segment == reused)
    };
    let written: u64 = kept
        .iter()
        .filter(|(p, _)| in_reused(*p))
        .map(|(_, b)| frame_len(b) + segment::RECORD_PREFIX)
        .sum();
    let on_disk = std::fs::metadata(segment::path(&wal.inner.segments, reused))
        .expect("stat")
        .len();
    assert!(
        on_disk > written,
        "an old segment's records follow the new ones"
    );
    // The worst case: the newest entries were only in their segment at a crash.
    let first_reused = kept
        .iter()
        .map(|(p, _)| *p)
        .find(|p| in_reused(*p))
        .expect("an entry in the reused segment");
    forget_index_from(&wal, first_reused);
    drop(wal);
    let wal = open(dir.path());
    let want: Vec<WalEntry> = kept
        .iter()
        .map(|(p, b)| WalEntry::Valid {
            position: *p,
            batch: b.clone(),
            stored_bytes: frame_len(b),
        })
        .collect();
    assert_eq!(wal.read_from(0, 1000).expect("read"), want);
    assert_eq!(wal.next_position(), kept.last().expect("kept").0 + 1);
}

#[test]
fn a_spare_lost_behind_the_wal_s_back_is_replaced_by_a_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let old = append_fat(&wal, 0..60);
    wal.ack(&old).expect("ack");
    let spares = spare_files(&wal);
    assert!(!spares.is_empty());
    for spare in &spares {
        std::fs::remove_file(spare).expect("lose a spare");
    }
    let rotated = segment_files(&wal).len();
    let kept: Vec<(WalPosition, Batch)> = (60..80)
        .map(|i| (wal.append(&fat(i)).expect("append"), fat(i)))
        .collect();
    assert!(
        segment_files(&wal).len() > rotated,
        "rotated into a new segment"
    );
    let read = wal.read_from(0, 100).expect("read");
    assert_eq!(read.len(), kept.len());
    for (entry, (p, b)) in read.iter().zip(&kept) {
        assert_eq!(
            entry,
            &WalEntry::Valid {
                position: *p,
                batch: b.clone(),
                stored_bytes: frame_len(b),
            }
        );
    }
}

/// Puts the WAL's index back to what it was before `from` was appended, as
/// a crash after the segment fsync but before sled made the index durable
/// leaves it: entries from `from` on are only in their segments.
fn forget_index_from(wal: &Wal, from: WalPosition) {
    let (_, before) = wal
        .location(from - 1)
        .expect("location")
        .expect("the entry before");
    let mut tail = [0u8; 24];
    tail[..8].copy_from_slice(&before.segment.to_be_bytes());
    tail[8..16].copy_from_slice(&before.end().to_be_bytes());
    tail[16..].copy_from_slice(&from.to_be_bytes());
    for position in from..wal.next_position() {
        wal.inner
            .index
            .remove(position.to_be_bytes())
            .expect("remove");
    }
    wal.inner.meta.insert(TAIL, &tail).expect("tail");
    wal.sync().expect("sync");
}

#[test]
fn appends_whose_index_was_not_yet_durable_are_found_in_their_segments_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written: Vec<Batch> = (0..6)
        .map(|i| batch("t", (i % 2) as i32, i * 5, 5))
        .collect();
    {
        let wal = open(dir.path());
        for b in &written[..2] {
            wal.append(b).expect("append");
        }
    }
    {
        // After a restart appends go to a new segment: the scan must carry on there.
        let wal = open(dir.path());
        wal.append_all(&written[2..]).expect("append");
        forget_index_from(&wal, 1);
        assert_eq!(wal.read_from(0, 10).expect("read").len(), 1);
    }
    let wal = open(dir.path());
    let entries = wal.read_from(0, 10).expect("read");
    let want: Vec<WalEntry> = written
        .iter()
        .enumerate()
        .map(|(p, b)| WalEntry::Valid {
            position: p as u64,
            batch: b.clone(),
            stored_bytes: frame_len(b),
        })
        .collect();
    assert_eq!(entries, want);
    assert_eq!(wal.next_position(), 6);
    assert_eq!(wal.bytes(), written.iter().map(frame_len).sum::<u64>());
    assert_eq!(wal.append(&batch("t", 0, 100, 1)).expect("append"), 6);
    drop(wal);
    // Indexed durably now: a second open finds the same, nothing twice.
    let wal = open(dir.path());
    assert_eq!(wal.len(), 7);
}

#[test]
fn a_record_after_the_tail_that_fails_its_checks_ends_the_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = open(dir.path());
        for i in 0..4 {
            wal.append(&batch("t", 0, i * 5, 5)).expect("append");
        }
        let (path, at) = wal.location(1).expect("location").expect("entry 1");
        forget_index_from(&wal, 1);
        // Entry 2's frame damaged: 1 is found, 2 and 3 are not (the source
        // reads them again, as after a lost WAL).
        let entry_2_payload = at.end() + segment::RECORD_PREFIX + HEADER_LEN as u64;
        overwrite(&path, entry_2_payload, &[0xFF]);
    }
    let wal = open(dir.path());
    assert_eq!(wal.len(), 2);
    assert_eq!(wal.next_position(), 2, "positions from the last one found");
    assert_eq!(
        wal.partition_progress(),
        BTreeMap::from([(TopicPartition::new("t", 0), 10)])
    );
}

#[test]
fn bytes_a_torn_append_left_in_a_segment_are_never_read_and_are_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = batch("t", 0, 0, 5);
    {
        let wal = open(dir.path());
        wal.append(&kept).expect("append");
        // A crash between writing a frame and indexing it leaves its bytes.
        let (path, at) = wal.location(0).expect("location").expect("entry 0");
        overwrite(&path, at.end(), &[0xAB; 700]);
    }
    let wal = open(dir.path());
    assert_eq!(wal.len(), 1);
    assert_eq!(wal.bytes(), frame_len(&kept));
    let next = batch("t", 0, 5, 2);
    let p = wal.append(&next).expect("append");
    assert_eq!(
        wal.read_from(0, 10).expect("read"),
        vec![
            WalEntry::Valid {
                position: 0,
                batch: kept.clone(),
                stored_bytes: frame_len(&kept),
            },
            WalEntry::Valid {
                position: p,
                batch: next.clone(),
                stored_bytes: frame_len(&next),
            },
        ]
    );
}

#[test]
fn a_missing_segment_file_is_a_corrupted_entry_that_can_be_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, lost) = {
        let wal = open(dir.path());
        wal.append(&batch("t", 0, 0, 5)).expect("append");
        let (path, at) = wal.location(0).expect("location").expect("entry 0");
        (path, at)
    };
    std::fs::remove_file(&path).expect("lose the segment");
    let wal = open(dir.path());
    assert_eq!(wal.bytes(), u64::from(lost.len), "still counted");
    let entries = wal.read_from(0, 10).expect("read");
    let [WalEntry::Corrupted { reason, .. }] = &entries[..] else {
        panic!("one corrupted entry: {entries:?}");
    };
    assert_eq!(
        reason,
        &CorruptionReason::SegmentMissing {
            segment: lost.segment
        }
    );
    assert!(reason.to_string().contains(".seg is missing"), "{reason}");
    // A new segment never takes the lost one's id while an entry names it.
    let p = wal.append(&batch("t", 0, 5, 5)).expect("append");
    assert!(!path.exists(), "the lost segment's name stays unused");
    assert!(matches!(
        &wal.read_from(0, 1).expect("read")[..],
        [WalEntry::Corrupted { .. }]
    ));
    wal.quarantine(0).expect("quarantine");
    assert_eq!(wal.len(), 1);
    assert_eq!(wal.oldest_position(), Some(p));
    assert_eq!(
        wal.quarantined().expect("quarantined"),
        vec![(0, Vec::new())]
    );
}

#[test]
fn append_all_is_one_group_of_consecutive_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let group = [
        batch("t", 0, 0, 2),
        batch("t", 1, 0, 3),
        batch("u", 0, 5, 1),
    ];
    assert_eq!(wal.append_all(&group).expect("append"), vec![0, 1, 2]);
    assert_eq!(segment_size_of(dir.path()), SEGMENT_SIZE);
    assert_eq!(segment_files(&wal).len(), 1, "one group, one segment");
    let read: Vec<WalPosition> = wal
        .read_from(0, 10)
        .expect("read")
        .iter()
        .map(WalEntry::position)
        .collect();
    assert_eq!(read, vec![0, 1, 2]);
    assert!(wal
        .append_all(&[batch("t", 0, 2, 1), batch("t", 0, 3, 0)])
        .is_err());
    assert_eq!(wal.len(), 3, "a group with an empty batch is refused whole");
    assert_eq!(wal.append(&batch("t", 0, 2, 1)).expect("append"), 3);
}

#[test]
fn read_within_stops_at_its_byte_budget_but_reads_at_least_one_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = open(dir.path());
    let batches: Vec<Batch> = (0..5).map(|i| batch("t", 0, i * 4, 4)).collect();
    for b in &batches {
        wal.append(b).expect("append");
    }
    let one = frame_len(&batches[0]);
    let count = |max_bytes| wal.read_within(0, 10, max_bytes).expect("read").len();
    assert_eq!(count(0), 1, "at least one, however small the budget");
    assert_eq!(count(one), 1);
    assert_eq!(
        count(one + 1),
        2,
        "the entry that crosses the budget is read"
    );
    assert_eq!(count(2 * one), 2);
    assert_eq!(count(u64::MAX), 5);
    assert_eq!(wal.read_within(3, 10, 2 * one).expect("read").len(), 2);
}

// Segment files on their own (`segment.rs`).

#[test]
fn locations_round_trip_and_other_lengths_are_refused() {
    let l = segment::Location {
        segment: 7,
        offset: u64::MAX - 3,
        len: 513,
    };
    assert_eq!(segment::Location::from_bytes(&l.to_bytes()), Some(l));
    assert_eq!(segment::Location::from_bytes(&l.to_bytes()[..19]), None);
    assert_eq!(segment::Location::from_bytes(&[0; 21]), None);
}

#[test]
fn list_finds_only_segment_files_in_order() {
    let wal = tempfile::tempdir().expect("tempdir");
    let dir = segment::dir_of(wal.path());
    assert_eq!(segment::list(&dir).expect("list"), Vec::<u64>::new());
    for id in [12, 3, 40] {
        segment::create(&dir, id).expect("create");
    }
    std::fs::write(dir.join("notes.txt"), b"x").expect("write");
    std::fs::write(dir.join("5.seg"), b"x").expect("write");
    assert_eq!(segment::list(&dir).expect("list"), vec![3, 12, 40]);
    assert!(
        segment::create(&dir, 12).is_err(),
        "a segment is never created twice"
    );
    segment::remove(&dir, 12).expect("remove");
    segment::remove(&dir, 12).expect("removing twice is fine");
    assert_eq!(segment::list(&dir).expect("list"), vec![3, 40]);
}

#[test]
fn a_short_file_reads_short() {
    let wal = tempfile::tempdir().expect("tempdir");
    let dir = segment::dir_of(wal.path());
    let file = segment::create(&dir, 0).expect("create");
    segment::write_at(&file, 0, b"0123456789").expect("write");
    assert_eq!(segment::read_at(&file, 2, 3).expect("read"), b"234");
    assert_eq!(segment::read_at(&file, 8, 5).expect("read"), b"89");
    assert_eq!(segment::read_at(&file, 20, 5).expect("read"), b"");
}

mod encryption {
    //! Encrypted WALs (`wal.encryption_key_file`): round trips, key
    //! problems as typed errors (never corrupted entries), damage as
    //! corruption.

    use super::*;

    const SECRET: &[u8] = b"the-plaintext-of-a-record-value";

    fn key(byte: u8) -> WalKey {
        WalKey::from_bytes([byte; 32])
    }

    fn open_keyed(dir: &Path, key: Option<WalKey>) -> Result<Wal, WalError> {
        Wal::open_with_key(dir, WalOptions { max_bytes: 1 << 20 }, key)
    }

    fn secret_batch(first: i64) -> Batch {
        let mut b = batch("orders", 3, first, 4);
        for r in &mut b.records {
            r.value = Some(SECRET.to_vec());
        }
        b
    }

    fn segment_bytes(wal: &Wal) -> Vec<u8> {
        let mut all = Vec::new();
        for id in segment::list(&wal.inner.segments).expect("list") {
            all.extend(std::fs::read(segment::path(&wal.inner.segments, id)).expect("read"));
        }
        all
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn valid_batches(wal: &Wal) -> Vec<Batch> {
        wal.read_from(0, 100)
            .expect("read")
            .into_iter()
            .map(|e| match e {
                WalEntry::Valid { batch, .. } => batch,
                other => panic!("not valid: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn encrypted_entries_round_trip_across_a_reopen_and_no_plaintext_reaches_a_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (secret_batch(0), secret_batch(10));
        {
            let wal = open_keyed(dir.path(), Some(key(1))).expect("open");
            wal.append(&a).expect("append");
            wal.append_all(std::slice::from_ref(&b))
                .expect("append_all");
            assert_eq!(valid_batches(&wal), [a.clone(), b.clone()]);
            let (path, at) = wal.location(0).expect("location").expect("held");
            let raw = segment::read_at(&std::fs::File::open(path).expect("f"), at.offset, at.len)
                .expect("raw");
            assert_eq!(raw[0], ENCRYPTED_VERSION);
            assert_eq!(raw[HEADER_LEN..HEADER_LEN + 4], key(1).id().0, "key id");
            assert_eq!(
                u64::from(at.len),
                frame_len(&a) + ENCRYPTION_OVERHEAD as u64,
                "stored bytes count the key id, nonce and tag"
            );
            assert!(!contains(&segment_bytes(&wal), SECRET));
            assert!(
                !contains(&segment_bytes(&wal), b"orders"),
                "topic names too"
            );
        }
        let wal = open_keyed(dir.path(), Some(key(1))).expect("reopen");
        assert_eq!(valid_batches(&wal), [a, b]);
        // Control: the same records without a key are in the clear.
        let plain_dir = tempfile::tempdir().expect("tempdir");
        let plain = open(plain_dir.path());
        plain.append(&secret_batch(0)).expect("append");
        assert!(contains(&segment_bytes(&plain), SECRET));
    }

    #[test]
    fn two_appends_of_the_same_batch_take_different_nonces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open_keyed(dir.path(), Some(key(1))).expect("open");
        wal.append(&secret_batch(0)).expect("append");
        wal.append(&secret_batch(0)).expect("append");
        let raw = |p| {
            let (path, at) = wal.location(p).expect("location").expect("held");
            segment::read_at(&std::fs::File::open(path).expect("f"), at.offset, at.len)
                .expect("raw")
        };
        let (x, y) = (raw(0), raw(1));
        assert_ne!(x[13..37], y[13..37], "nonces");
        assert_ne!(x[37..], y[37..], "ciphertexts");
    }

    #[test]
    fn a_wrong_key_is_a_wrong_key_error_never_a_corrupted_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        open_keyed(dir.path(), Some(key(1)))
            .expect("open")
            .append(&secret_batch(0))
            .expect("append");
        let err = open_keyed(dir.path(), Some(key(2))).expect_err("wrong key");
        match &err {
            WalError::WrongKey {
                found, configured, ..
            } => {
                assert_eq!(*found, key(1).id());
                assert_eq!(*configured, key(2).id());
            }
            other => panic!("not WrongKey: {other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains(&key(1).id().to_string()), "{text}");
        assert!(text.contains(&key(2).id().to_string()), "{text}");
        assert!(text.contains("entry 0"), "{text}");
        // Nothing was quarantined or removed: the right key reads it all.
        let wal = open_keyed(dir.path(), Some(key(1))).expect("right key");
        assert_eq!(valid_batches(&wal), [secret_batch(0)]);
        assert!(wal.quarantined().expect("quarantine").is_empty());
    }

    #[test]
    fn an_encrypted_wal_opened_without_a_key_is_a_key_missing_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        open_keyed(dir.path(), Some(key(1)))
            .expect("open")
            .append(&secret_batch(0))
            .expect("append");
        for err in [
            Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect_err("no key"),
            Wal::open_existing(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect_err("no key"),
        ] {
            assert!(
                matches!(err, WalError::KeyMissing { found, .. } if found == key(1).id()),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .contains("no wal.encryption_key_file is set"),
                "{err}"
            );
        }
    }

    /// A key problem inside an open WAL (an entry sealed under another key
    /// put behind its back): reads fail with it, and quarantine refuses it.
    #[test]
    fn a_key_problem_is_never_quarantined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open_keyed(dir.path(), Some(key(1))).expect("open");
        let at = wal.append(&secret_batch(0)).expect("append");
        let foreign =
            encrypt_frame(&encode_batch(&secret_batch(0)).expect("frame"), &key(2)).expect("seal");
        put_raw(&wal, at, &foreign);
        assert!(matches!(
            wal.read_from(0, 10),
            Err(WalError::WrongKey { .. })
        ));
        assert!(matches!(wal.quarantine(at), Err(WalError::WrongKey { .. })));
        assert!(wal.quarantined().expect("quarantine").is_empty());
        assert_eq!(wal.len(), 1);
    }

    #[test]
    fn a_flipped_byte_in_an_encrypted_frame_is_a_corrupted_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = open_keyed(dir.path(), Some(key(1))).expect("open");
        let checksum = wal.append(&secret_batch(0)).expect("append");
        let tag = wal.append(&secret_batch(10)).expect("append");
        let key_id = wal.append(&secret_batch(20)).expect("append");
        let raw_of = |p| {
            let (path, at) = wal.location(p).expect("location").expect("held");
            segment::read_at(&std::fs::File::open(path).expect("f"), at.offset, at.len)
                .expect("raw")
        };
        // A flip the crc32 catches: corruption before any key is looked at.
        let mut bad = raw_of(checksum);
        bad[40] ^= 0x10;
        put_raw(&wal, checksum, &bad);
        // A flip with the crc32 made right again (tampering): the tag catches it.
        let mut bad = raw_of(tag);
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let crc = crc32fast::hash(&bad[HEADER_LEN..]);
        bad[1..5].copy_from_slice(&crc.to_le_bytes());
        put_raw(&wal, tag, &bad);
        // A flip in the key id is damage, not another key.
        let mut bad = raw_of(key_id);
        bad[HEADER_LEN] ^= 0x80;
        put_raw(&wal, key_id, &bad);

        let entries = wal.read_from(0, 10).expect("read: damage is not an error");
        let reasons: Vec<_> = entries
            .iter()
            .map(|e| match e {
                WalEntry::Corrupted { reason, .. } => reason.clone(),
                other => panic!("not corrupted: {other:?}"),
            })
            .collect();
        assert!(matches!(
            reasons[0],
            CorruptionReason::ChecksumMismatch { .. }
        ));
        assert_eq!(
            reasons[1],
            CorruptionReason::AuthenticationFailed {
                key_id: key(1).id()
            }
        );
        assert!(matches!(
            reasons[2],
            CorruptionReason::ChecksumMismatch { .. }
        ));
        for p in [checksum, tag, key_id] {
            wal.quarantine(p).expect("corruption is quarantined");
        }
        assert_eq!(wal.quarantined().expect("quarantine").len(), 3);
        assert!(wal.is_empty());
    }

    /// After encryption is enabled, entries written before stay readable
    /// and drain as usual; new ones are encrypted.
    #[test]
    fn plain_entries_written_before_encryption_was_enabled_are_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        open(dir.path()).append(&secret_batch(0)).expect("append");
        let wal = open_keyed(dir.path(), Some(key(1))).expect("open with a key");
        wal.append(&secret_batch(10)).expect("append");
        assert_eq!(valid_batches(&wal), [secret_batch(0), secret_batch(10)]);
        let version = |p| {
            let (path, at) = wal.location(p).expect("location").expect("held");
            segment::read_at(&std::fs::File::open(path).expect("f"), at.offset, 1).expect("raw")[0]
        };
        assert_eq!(
            (version(0), version(1)),
            (FORMAT_VERSION, ENCRYPTED_VERSION)
        );
    }

    /// An encrypted append whose index was not durable before a crash is
    /// found again in its segment at open, as a plain one is.
    #[test]
    fn encrypted_appends_not_yet_indexed_are_found_in_their_segments_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = open_keyed(dir.path(), Some(key(1))).expect("open");
            wal.append(&secret_batch(0)).expect("append");
            wal.sync().expect("sync");
            wal.append(&secret_batch(10)).expect("append");
            forget_index_from(&wal, 1);
        }
        let wal = open_keyed(dir.path(), Some(key(1))).expect("reopen");
        assert_eq!(valid_batches(&wal), [secret_batch(0), secret_batch(10)]);
    }
}
