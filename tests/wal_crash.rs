//! A WAL append is durable once it returns, even if the process dies before
//! sled makes the index durable: the test binary re-runs itself as a child
//! that appends, reports what it appended, and SIGKILLs itself at once
//! (sled flushes on its own only every 500 ms), as sled's own crash tests
//! kill a real process. The parent reopens the WAL and expects every
//! reported batch, exactly as written, and a position counter that does
//! not go back.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use kafka_relay::record::{Batch, Record};
use kafka_relay::wal::{Wal, WalEntry, WalOptions};

const CHILD_DIR: &str = "KAFKA_RELAY_WAL_CRASH_CHILD_DIR";
const OPTIONS: WalOptions = WalOptions { max_bytes: 1 << 30 };
const BATCHES: i64 = 40;

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

/// The child's part: append, say so, die.
fn child(dir: &str) -> ! {
    let wal = Wal::open(std::path::Path::new(dir), OPTIONS).expect("child: open WAL");
    for i in 0..BATCHES {
        // Groups of two, as the source appends partitions that fill together.
        if i % 2 == 0 {
            let group = [batch(i), batch(i + 1)];
            let positions = wal.append_all(&group).expect("child: append");
            for p in positions {
                println!("appended {p}");
            }
        }
    }
    // SIGKILL: no destructor, no flush.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL returned");
}

#[test]
fn appends_survive_a_sigkill_before_the_index_is_flushed() {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        child(&dir);
    }
    for round in 0..3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new(std::env::current_exe().expect("own path"))
            .args([
                "--exact",
                "appends_survive_a_sigkill_before_the_index_is_flushed",
                "--nocapture",
            ])
            .env(CHILD_DIR, dir.path())
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

        let wal = Wal::open(dir.path(), OPTIONS).expect("reopen after the kill");
        let entries = wal.read_from(0, 1000).expect("read");
        let got: Vec<(u64, Batch)> = entries
            .into_iter()
            .map(|e| match e {
                WalEntry::Valid {
                    position, batch, ..
                } => (position, batch),
                other => panic!("round {round}: {other:?}"),
            })
            .collect();
        let want: Vec<(u64, Batch)> = reported
            .iter()
            .zip(0..)
            .map(|(p, i)| (*p, batch(i)))
            .collect();
        // Positions first: a short message when entries are missing.
        let positions = |v: &[(u64, Batch)]| v.iter().map(|(p, _)| *p).collect::<Vec<_>>();
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
