//! What a WAL promises across a SIGKILL before sled makes its index
//! durable. The test binary re-runs itself as a child that works on a WAL,
//! reports what it did, and SIGKILLs itself at once (sled flushes on its
//! own only every 500 ms), as sled's own crash tests kill a real process;
//! the parent reopens the WAL and checks.
//! - An append is durable once it returns: every reported batch comes back
//!   exactly as written, and the position counter does not go back.
//! - An ack is not fsync'd, so a crash may undo it; but a segment is
//!   deleted only after the acks that drained it are durable, so no entry
//!   ever comes back pointing into a deleted segment.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use kafka_relay::record::{Batch, Record};
use kafka_relay::wal::{Wal, WalEntry, WalOptions};

const CHILD_DIR: &str = "KAFKA_RELAY_WAL_CRASH_CHILD_DIR";
const OPTIONS: WalOptions = WalOptions { max_bytes: 1 << 30 };
/// Segments of 4 KiB (the smallest): each group of two batches gets its own.
const SMALL_SEGMENTS: WalOptions = WalOptions {
    max_bytes: 64 << 10,
};
const BATCHES: i64 = 40;
/// The ack test acks the batches up to this one, one at a time: the first
/// batch of a group, so its ack drains no segment.
const ACKED: u64 = 30;

fn batch(i: i64) -> Batch {
    Batch {
        topic: "t".into(),
        partition: (i % 3) as i32,
        records: (0..10)
            .map(|r| Record {
                offset: i * 10 + r,
                timestamp: Some(i),
                key: Some(format!("k{i}-{r}").into_bytes()),
                value: Some(vec![i as u8; 300]),
                headers: vec![],
            })
            .collect(),
    }
}

/// Appends `BATCHES` batches in groups of two, as the source appends
/// partitions that fill together, printing each position.
fn append_all(wal: &Wal) -> Vec<u64> {
    let mut positions = Vec::new();
    for i in (0..BATCHES).step_by(2) {
        for p in wal
            .append_all(&[batch(i), batch(i + 1)])
            .expect("child: append")
        {
            println!("appended {p}");
            positions.push(p);
        }
    }
    positions
}

/// SIGKILL: no destructor, no flush.
fn die() -> ! {
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL returned");
}

/// Runs this binary's test `name` as a child on `dir`, expects it to have
/// SIGKILLed itself, and returns the positions it reported appending.
fn run_child(name: &str, dir: &std::path::Path, round: u32) -> Vec<u64> {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--exact", name, "--nocapture"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "round {round}: the child killed itself"
    );
    let reported: Vec<u64> = BufReader::new(out.stdout.as_slice())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("appended ")?.parse().ok())
        .collect();
    assert_eq!(
        reported.len(),
        BATCHES as usize,
        "round {round}: the child appended all"
    );
    reported
}

/// Runs test `name` as a child on a fresh directory, reopens the WAL it
/// left, and returns the directory (kept alive), the WAL, the positions the
/// child reported and the entries the WAL holds now.
fn crash_and_reopen(
    name: &str,
    options: WalOptions,
    round: u32,
) -> (tempfile::TempDir, Wal, Vec<u64>, Vec<(u64, Batch)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reported = run_child(name, dir.path(), round);
    let wal = Wal::open(dir.path(), options).expect("reopen after the kill");
    let got = valid_entries(&wal, round);
    (dir, wal, reported, got)
}

/// The reopened WAL's entries; any corrupted one fails the test.
fn valid_entries(wal: &Wal, round: u32) -> Vec<(u64, Batch)> {
    wal.read_from(0, 1000)
        .expect("read")
        .into_iter()
        .map(|e| match e {
            WalEntry::Valid {
                position, batch, ..
            } => (position, batch),
            other => panic!("round {round}: {other:?}"),
        })
        .collect()
}

/// The batches the child reported at the positions `keep` selects, as the
/// reopened WAL should hold them.
fn expected(reported: &[u64], keep: impl Fn(u64) -> bool) -> Vec<(u64, Batch)> {
    reported
        .iter()
        .zip(0..)
        .filter(|(p, _)| keep(**p))
        .map(|(p, i)| (*p, batch(i)))
        .collect()
}

fn positions(v: &[(u64, Batch)]) -> Vec<u64> {
    v.iter().map(|(p, _)| *p).collect()
}

#[test]
fn appends_survive_a_sigkill_before_the_index_is_flushed() {
    const NAME: &str = "appends_survive_a_sigkill_before_the_index_is_flushed";
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let wal = Wal::open(std::path::Path::new(&dir), OPTIONS).expect("child: open WAL");
        append_all(&wal);
        die();
    }
    for round in 0..3 {
        let (_dir, wal, reported, got) = crash_and_reopen(NAME, OPTIONS, round);
        let want = expected(&reported, |_| true);
        // Positions first: a short message when entries are missing.
        assert_eq!(
            positions(&got),
            positions(&want),
            "round {round}: every reported append is there"
        );
        assert!(got == want, "round {round}: entries came back changed");
        assert_eq!(
            wal.next_position(),
            BATCHES as u64,
            "round {round}: positions go on"
        );
        assert_eq!(wal.append(&batch(BATCHES)).expect("append"), BATCHES as u64);
    }
}

#[test]
fn acks_undone_by_a_sigkill_never_leave_an_entry_in_a_deleted_segment() {
    const NAME: &str = "acks_undone_by_a_sigkill_never_leave_an_entry_in_a_deleted_segment";
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let wal = Wal::open(std::path::Path::new(&dir), SMALL_SEGMENTS).expect("child: open WAL");
        let positions = append_all(&wal);
        // Every second ack drains a segment, which is then deleted; the
        // last one drains nothing.
        for p in positions.iter().filter(|p| **p <= ACKED) {
            wal.ack(&[*p]).expect("child: ack");
        }
        die();
    }
    for round in 0..3 {
        let (_dir, _wal, reported, got) = crash_and_reopen(NAME, SMALL_SEGMENTS, round);
        let unacked = expected(&reported, |p| p > ACKED);
        // The acks up to the last drained segment are durable; the last
        // ack (of the first batch of a group) may be undone.
        let kept = got
            .iter()
            .skip_while(|(p, _)| *p == ACKED)
            .cloned()
            .collect::<Vec<_>>();
        assert!(
            got.first().is_none_or(|(p, _)| *p >= ACKED),
            "round {round}: an ack before the last drained segment was undone: {:?}",
            positions(&got)
        );
        assert_eq!(
            positions(&kept),
            positions(&unacked),
            "round {round}: every unacked batch is there"
        );
        assert!(kept == unacked, "round {round}: entries came back changed");
    }
}
