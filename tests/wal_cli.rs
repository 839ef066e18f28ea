//! `kafka-relay wal inspect | verify`, run as the real binary against a WAL
//! built with the library in a temporary directory. No Kafka: these
//! commands never connect.

#[path = "common/wal_damage.rs"]
mod wal_damage;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kafka_relay::record::{Batch, Header, Record};
use kafka_relay::wal::{Wal, WalEntry, WalOptions};

const OPTIONS: WalOptions = WalOptions { max_bytes: 1 << 30 };

/// A WAL of four batches on two partitions, and a config pointing at it.
struct Fixture {
    _tmp: tempfile::TempDir,
    config: PathBuf,
    wal_dir: PathBuf,
}

fn batch(partition: i32, offsets: std::ops::Range<i64>) -> Batch {
    Batch {
        topic: "orders".into(),
        partition,
        records: offsets
            .map(|offset| Record {
                offset,
                timestamp: Some(1_700_000_000_000 + offset),
                key: Some(format!("key-{offset}").into_bytes()),
                value: Some(vec![b'v'; 10 + offset as usize]),
                headers: vec![Header {
                    key: "trace".into(),
                    value: Some(b"secret-header".to_vec()),
                }],
            })
            .collect(),
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("temp dir");
    let wal_dir = tmp.path().join("wal");
    {
        let wal = Wal::open(&wal_dir, OPTIONS).expect("open WAL");
        for b in [
            batch(0, 0..3),
            batch(1, 0..2),
            batch(0, 3..7),
            batch(1, 2..3),
        ] {
            wal.append(&b).expect("append");
        }
    }
    let config = tmp.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[source]
bootstrap_servers = "src:9092"
topics = ["orders"]
[target]
bootstrap_servers = "dst:9092"
transactional_id = "relay-1"
[wal]
dir = '{}'
"#,
            wal_dir.display()
        ),
    )
    .expect("write config");
    Fixture {
        _tmp: tmp,
        config,
        wal_dir,
    }
}

/// Every live entry, read with the library (the test's own truth).
fn entries(dir: &Path) -> Vec<WalEntry> {
    let wal = Wal::open(dir, OPTIONS).expect("open WAL");
    wal.read_from(0, 1000).expect("read")
}

fn relay(config: &Path, args: &[&str]) -> Output {
    let config = config.to_str().expect("UTF-8 temp path");
    let mut all = vec!["wal", "--config", config];
    all.extend_from_slice(args);
    Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(&all)
        .env_remove("KAFKA_RELAY_LOG")
        .output()
        .expect("run kafka-relay")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn wal_inspect_lists_every_batch_with_its_size() {
    let f = fixture();
    let truth = entries(&f.wal_dir);
    assert_eq!(truth.len(), 4);

    // Text: one line per entry, in position order.
    let text = relay(&f.config, &["inspect"]);
    assert_eq!(text.status.code(), Some(0), "stderr: {}", stderr(&text));
    let out = stdout(&text);
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 6 && w[0].parse::<u64>().is_ok())
        .collect();
    let expected: Vec<(u64, &str, &str, usize)> = vec![
        (0, "orders/0", "0..2", 3),
        (1, "orders/1", "0..1", 2),
        (2, "orders/0", "3..6", 4),
        (3, "orders/1", "2..2", 1),
    ];
    assert_eq!(lines.len(), expected.len(), "{out}");
    for ((line, (position, tp, offsets, records)), entry) in lines.iter().zip(&expected).zip(&truth)
    {
        assert_eq!(entry.position(), *position);
        let bytes = entry.stored_bytes().to_string();
        let want = [
            position.to_string().as_str(),
            tp,
            offsets,
            records.to_string().as_str(),
            bytes.as_str(),
            "ok",
        ]
        .map(str::to_string);
        assert_eq!(line.as_slice(), want.as_slice(), "{out}");
    }
    let total_bytes: u64 = truth.iter().map(WalEntry::stored_bytes).sum();
    assert!(
        out.contains(&format!(
            "totals: 4 entries, 10 records, {total_bytes} bytes, 0 corrupted, 0 quarantined"
        )),
        "{out}"
    );
    let p0_bytes = truth[0].stored_bytes() + truth[2].stored_bytes();
    assert!(
        out.contains(&format!(
            "partition orders/0: 2 entries, 7 records, {p0_bytes} bytes, offsets 0..6"
        )),
        "{out}"
    );

    // JSON, with records: the same numbers, and sizes instead of contents.
    let json = relay(&f.config, &["inspect", "--json", "--records"]);
    assert_eq!(json.status.code(), Some(0), "stderr: {}", stderr(&json));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    let listed = doc["entries"].as_array().expect("entries");
    assert_eq!(listed.len(), truth.len());
    for (row, entry) in listed.iter().zip(&truth) {
        let WalEntry::Valid {
            position,
            batch,
            stored_bytes,
        } = entry
        else {
            panic!("fixture entry {} is corrupted", entry.position());
        };
        assert_eq!(row["position"], *position);
        assert_eq!(row["partition"], batch.partition);
        assert_eq!(row["records"], batch.records.len());
        assert_eq!(row["stored_bytes"], *stored_bytes);
        assert_eq!(row["status"], "ok");
        let details = row["record_list"].as_array().expect("record_list");
        assert_eq!(details.len(), batch.records.len());
        for (d, r) in details.iter().zip(&batch.records) {
            assert_eq!(d["offset"], r.offset);
            assert_eq!(d["timestamp"], r.timestamp.expect("fixture timestamps"));
            assert_eq!(d["key_bytes"], r.key.as_ref().map_or(0, Vec::len));
            assert_eq!(d["value_bytes"], r.value.as_ref().map_or(0, Vec::len));
        }
    }
    assert_eq!(doc["totals"]["stored_bytes"], total_bytes);
    assert_eq!(doc["totals"]["records"], 10);
    assert_eq!(doc["partitions"].as_array().map(Vec::len), Some(2));
    let raw = stdout(&json);
    for secret in ["key-0", "secret-header", "vvvvvvvvvv"] {
        assert!(!raw.contains(secret), "record contents leaked: {secret}");
    }
    let with_records = relay(&f.config, &["inspect", "--records"]);
    assert!(
        stdout(&with_records)
            .contains("offset=3 timestamp=1700000000003 key_bytes=5 value_bytes=13 headers=1"),
        "{}",
        stdout(&with_records)
    );
}

#[test]
fn wal_verify_passes_on_a_sound_wal_and_names_a_corrupted_entry() {
    let f = fixture();
    let sound = relay(&f.config, &["verify"]);
    assert_eq!(sound.status.code(), Some(0), "stderr: {}", stderr(&sound));
    assert!(
        stdout(&sound).contains("WAL is sound"),
        "{}",
        stdout(&sound)
    );

    // Flip one payload byte of entry 2, as a bad disk would.
    let damaged = {
        let wal = Wal::open(&f.wal_dir, OPTIONS).expect("open WAL");
        let mid = wal_damage::stored_bytes(&wal, 2).len() / 2;
        wal_damage::flip_byte(&wal, 2, mid, 0x01)
    };

    let bad = relay(&f.config, &["verify"]);
    assert_eq!(bad.status.code(), Some(1), "stdout: {}", stdout(&bad));
    let out = stdout(&bad);
    assert!(
        out.lines()
            .any(|l| l.starts_with("position 2: CORRUPTED: checksum mismatch")),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("position ")).count(),
        1,
        "only the damaged entry is named: {out}"
    );
    assert!(
        stderr(&bad).contains("failed verification: 1 problem(s)"),
        "{}",
        stderr(&bad)
    );

    // Verify reports; it does not quarantine or drop anything.
    let wal = Wal::open(&f.wal_dir, OPTIONS).expect("reopen WAL");
    assert_eq!(wal.len(), 4, "every entry is still there");
    assert_eq!(
        wal_damage::stored_bytes(&wal, 2),
        damaged,
        "entry 2 unchanged"
    );
    assert!(
        wal.quarantined().expect("quarantine").is_empty(),
        "nothing was quarantined"
    );
}

#[test]
fn wal_commands_refuse_a_wal_in_use() {
    let f = fixture();
    let held = Wal::open(&f.wal_dir, OPTIONS).expect("open WAL");
    for args in [&["inspect"][..], &["verify"][..]] {
        let o = relay(&f.config, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: stdout {}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("is in use: stop the relay first"),
            "{args:?}: {err}"
        );
    }
    drop(held);
}

#[test]
fn offline_commands_refuse_a_missing_wal_instead_of_creating_one() {
    let f = fixture();
    let elsewhere = f.wal_dir.with_file_name("no-wal-here");
    let text = std::fs::read_to_string(&f.config).expect("read config");
    std::fs::write(
        &f.config,
        text.replace(
            &f.wal_dir.display().to_string(),
            &elsewhere.display().to_string(),
        ),
    )
    .expect("write config");
    let o = relay(&f.config, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no WAL in"), "{}", stderr(&o));
    assert!(!elsewhere.exists(), "nothing created");
    // The other offline readers too: an empty WAL created here would make
    // `status` report "nothing waiting" for a mistyped wal.dir.
    let config = f.config.to_str().expect("UTF-8 temp path");
    for args in [
        vec!["status", "--config", config],
        vec!["dlq", "--config", config, "list"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
            .args(&args)
            .output()
            .expect("run kafka-relay");
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no WAL in"), "{args:?}: {}", stderr(&o));
        assert!(!elsewhere.exists(), "{args:?} created a WAL");
    }
}
