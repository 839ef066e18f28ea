//! `kafka-relay verify`, the real binary against the harness clusters: it
//! passes on a faithful copy with every record counted, names the exact
//! offsets of a record written twice, one altered on the target and one the
//! relay never delivered, and counts apart, without failing, the records
//! the target deleted after delivery and the offsets the relay recorded as
//! lost at the source.

use std::process::Command;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use serde_json::Value;

use kafka_relay::gap::{Gap, GapCause};
use kafka_relay::record::TopicPartition;

use crate::harness::clients::{self, Isolation};
use crate::harness::clusters;
use crate::harness::relay::{produce_sequence, RelaySetup};

/// Runs `kafka-relay verify --json`; returns the exit code, the JSON report
/// and stderr.
fn verify(config: &std::path::Path) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["verify", "--json", "--config"])
        .arg(config)
        .output()
        .expect("run kafka-relay verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify printed no JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (out.status.code(), json, stderr)
}

/// Runs `kafka-relay verify` with `args` and the table output; returns
/// the exit code and stdout.
fn verify_text(config: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["verify", "--config"])
        .arg(config)
        .args(args)
        .output()
        .expect("run kafka-relay verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The report row of source partition `p`.
fn row(report: &Value, p: i64) -> &Value {
    report["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .find(|r| r["partition"] == p)
        .unwrap_or_else(|| panic!("no row for partition {p} in {report:#}"))
}

fn counts(row: &Value) -> [u64; 5] {
    ["records", "matched", "missing", "duplicated", "differing"]
        .map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

/// The two counts that do not fail the audit: [lost at source, deleted at target].
fn not_failures(row: &Value) -> [u64; 2] {
    ["lost_at_source", "deleted_at_target"]
        .map(|k| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}")))
}

fn high_watermark(bootstrap: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = clients::client_config(bootstrap)
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("watermarks")
        .1
}

/// Writes one record with a plain (non-transactional) producer, as another
/// writer or a bad replay would.
fn produce_copy(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    like: &OwnedMessage,
    value: Option<&[u8]>,
) {
    let producer: BaseProducer = clients::client_config(bootstrap)
        .create()
        .expect("producer");
    let mut headers = OwnedHeaders::new();
    if let Some(hs) = like.headers() {
        for h in hs.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let mut record = BaseRecord::<[u8], [u8]>::to(topic)
        .partition(partition)
        .headers(headers);
    if let Some(k) = like.key() {
        record = record.key(k);
    }
    if let Some(v) = value {
        record = record.payload(v);
    }
    if let Some(ts) = like.timestamp().to_millis() {
        record = record.timestamp(ts);
    }
    producer.send(record).map_err(|(e, _)| e).expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// The committed records of `partition`, in offset order.
fn records_of(bootstrap: &str, topic: &str, partition: i32) -> Vec<OwnedMessage> {
    let mut v: Vec<OwnedMessage> = clients::consume_all(bootstrap, topic, Isolation::ReadCommitted)
        .into_iter()
        .filter(|m| m.partition() == partition)
        .collect();
    v.sort_by_key(|m| m.offset());
    v
}

#[test]
fn verify_passes_after_a_clean_sync() {
    let c = clusters();
    let setup = RelaySetup::new(c, "verify-clean", 3);
    let per_partition = 120;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        3,
        0,
        per_partition,
    );
    setup.relay_until(setup.config(), 3 * per_partition as usize);

    let (code, report, stderr) = verify(&setup.config_file());

    assert_eq!(
        code,
        Some(0),
        "verify failed after a clean sync:\n{report:#}\n{stderr}"
    );
    assert_eq!(report["passed"], true);
    assert!(
        stderr.trim().is_empty(),
        "stderr is not a terminal: no progress bar, and a clean audit logs nothing:\n{stderr}"
    );
    for p in 0..3 {
        let r = row(&report, p);
        assert_eq!(r["topic"], setup.source_topic.as_str());
        assert_eq!(
            (r["from"].as_i64(), r["to"].as_i64()),
            (Some(0), Some(per_partition as i64))
        );
        assert_eq!(
            counts(r),
            [per_partition, per_partition, 0, 0, 0],
            "partition {p}: records, matched, missing, duplicated, differing"
        );
    }
    assert_eq!(report["totals"]["matched"], 3 * per_partition);
    assert_eq!(report["totals"]["other"], 0);
    // The relay is stopped, so the dead-letter queue could be looked at.
    assert_eq!(report["dead_letters"]["checked"], true);
    assert_eq!(report["dead_letters"]["in_range"], 0);
}

#[test]
fn verify_catches_a_duplicate_and_a_deleted_record() {
    let c = clusters();
    let setup = RelaySetup::new(c, "verify-faults", 3);
    let per_partition = 50;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        3,
        0,
        per_partition,
    );
    setup.relay_until(setup.config(), 3 * per_partition as usize);
    let (code, _, stderr) = verify(&setup.config_file());
    assert_eq!(
        code,
        Some(0),
        "the sync itself must be clean first:\n{stderr}"
    );

    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = &setup.source_topic;
    let source_of = |p: i32| records_of(source, topic, p);

    // Partition 0: the first record deleted on the target, after delivery;
    // and one more written to the source with the relay stopped, so the
    // relay never delivered it: missing.
    let deleted = records_of(target, topic, 0)[0].clone();
    clients::delete_records(target, topic, 0, deleted.offset() + 1);
    let deleted_source = source_of(0)
        .into_iter()
        .find(|m| m.payload() == deleted.payload())
        .expect("the deleted record is on the source");
    produce_sequence(source, topic, 1, per_partition, 1);
    let missing = source_of(0).pop().expect("the undelivered record");

    // Partition 1: an extra copy of a relayed record, byte for byte.
    let copied = source_of(1)[7].clone();
    let extra_at = high_watermark(target, topic, 1);
    produce_copy(target, topic, 1, &copied, copied.payload());

    // Partition 2: a record replaced by one with the same key and timestamp
    // and another value (delete the original, write the altered one).
    let original = records_of(target, topic, 2)[0].clone();
    clients::delete_records(target, topic, 2, original.offset() + 1);
    let altered_source = source_of(2)
        .into_iter()
        .find(|m| m.payload() == original.payload())
        .expect("the altered record is on the source");
    let altered_at = high_watermark(target, topic, 2);
    produce_copy(target, topic, 2, &original, Some(b"tampered"));

    let (code, report, stderr) = verify(&setup.config_file());

    assert_eq!(code, Some(1), "verify must fail:\n{report:#}\n{stderr}");
    assert_eq!(report["passed"], false);
    let n = per_partition;
    assert_eq!(
        counts(row(&report, 0)),
        [n + 1, n - 1, 1, 0, 0],
        "partition 0"
    );
    assert_eq!(not_failures(row(&report, 0)), [0, 1], "partition 0");
    assert_eq!(counts(row(&report, 1)), [n, n, 0, 1, 0], "partition 1");
    assert_eq!(counts(row(&report, 2)), [n, n - 1, 0, 0, 1], "partition 2");
    let examples = |p| row(&report, p)["examples"].clone();
    assert_eq!(
        examples(0)["missing"],
        serde_json::json!([missing.offset()])
    );
    assert_eq!(
        examples(0)["deleted_at_target"],
        serde_json::json!([deleted_source.offset()])
    );
    assert_eq!(
        examples(1)["duplicated"],
        serde_json::json!([{"source_offset": copied.offset(), "target_partition": 1, "target_offset": extra_at}])
    );
    assert_eq!(
        examples(2)["differing"],
        serde_json::json!([{"source_offset": altered_source.offset(), "target_partition": 2, "target_offset": altered_at}])
    );
    let totals = &report["totals"];
    assert_eq!(
        (
            &totals["missing"],
            &totals["duplicated"],
            &totals["differing"],
            &totals["other"]
        ),
        (
            &Value::from(1),
            &Value::from(1),
            &Value::from(1),
            &Value::from(0)
        )
    );
    assert_eq!(totals["deleted_at_target"], 1);
    assert!(
        stderr.contains(
            "verify failed: 1 missing, 1 duplicated, 1 differing (of 151 source records); not failures: 0 lost at source, 1 deleted at target"
        ),
        "stderr names the counts:\n{stderr}"
    );
    assert!(
        !stderr.contains("ERROR"),
        "the end of a partition is no error:\n{stderr}"
    );

    // The table for people names the same offsets.
    let (code, text) = verify_text(&setup.config_file(), &[]);
    eprintln!("{text}");
    assert_eq!(code, Some(1));
    for needle in [
        format!("{topic}/0: missing source offsets {}", missing.offset()),
        format!(
            "{topic}/0: deleted at target, source offsets {}",
            deleted_source.offset()
        ),
        format!(
            "{topic}/1: duplicated (source offset -> target partition/offset) {} -> 1/{extra_at}",
            copied.offset()
        ),
        format!(
            "{topic}/2: differing (source offset -> target partition/offset) {} -> 2/{altered_at}",
            altered_source.offset()
        ),
        "verify FAILED".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }
}

#[test]
fn verify_checks_only_the_requested_range_of_an_envelope_copy_pooled_by_key_hash() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "verify-envelope", 2);
    let renamed = clients::unique_name("verify-envelope-dump");
    clients::create_topic(&c.target.bootstrap, &renamed, 3, &[]);
    setup.target_topic = renamed.clone();
    let toml = format!("format = \"envelope\"\n{}", setup.toml()).replace(
        "transactional_id =",
        &format!("topic = \"{renamed}\"\npartitioning = \"key_hash\"\ntransactional_id ="),
    );
    let config_file = setup.dir.path().join("envelope.toml");
    std::fs::write(&config_file, &toml).expect("write config");
    let per_partition: u64 = 60;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        per_partition,
    );
    let config =
        kafka_relay::config::Config::from_toml_str(&toml, std::iter::empty()).expect("config");
    setup.relay_until(config, 2 * per_partition as usize);

    let (target, topic) = (&c.target.bootstrap, &setup.source_topic);
    let source0 = records_of(&c.source.bootstrap, topic, 0);
    let (from, to) = (10usize, 40usize);
    // --from as a time (offset `from` has the first timestamp at or after it), --to as an offset.
    let from_ts = source0[from].timestamp().to_millis().expect("timestamp");
    let args = [
        "--from".to_string(),
        format!("ts:{from_ts}"),
        "--to".to_string(),
        to.to_string(),
    ];
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
            .args(["verify", "--json", "--config"])
            .arg(&config_file)
            .args(&args)
            .output()
            .expect("run kafka-relay verify");
        let json: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), json)
    };

    let (code, report) = run();
    let in_range = (to - from) as u64;
    let outside = 2 * per_partition - 2 * in_range;
    assert_eq!(code, Some(0), "{report:#}");
    for p in 0..2 {
        let r = row(&report, p);
        assert_eq!(
            (r["from"].as_u64(), r["to"].as_u64()),
            (Some(from as u64), Some(to as u64))
        );
        assert_eq!(r["target_topic"], renamed.as_str());
        assert!(
            r["target_partition"].is_null(),
            "key_hash pools every target partition"
        );
        assert_eq!(counts(r), [in_range, in_range, 0, 0, 0], "partition {p}");
    }
    assert_eq!(
        report["totals"]["other"], outside,
        "target records outside the range are other, and do not fail"
    );

    // An extra copy of a record in the range fails the audit; one outside it does not.
    let target_copy = |source_offset: usize| {
        clients::consume_all(target, &renamed, Isolation::ReadCommitted)
            .into_iter()
            .find(|m| {
                let json: Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
                json["partition"] == 0 && json["offset"] == source_offset
            })
            .expect("the envelope of the record is on the target")
    };
    let inside = target_copy(from + 5);
    let extra_at = high_watermark(target, &renamed, 2);
    produce_copy(target, &renamed, 2, &inside, inside.payload());
    let beyond = target_copy(to + 3);
    produce_copy(target, &renamed, 2, &beyond, beyond.payload());

    let (code, report) = run();
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(counts(row(&report, 0)), [in_range, in_range, 0, 1, 0]);
    assert_eq!(counts(row(&report, 1)), [in_range, in_range, 0, 0, 0]);
    assert_eq!(
        row(&report, 0)["examples"]["duplicated"],
        serde_json::json!([{"source_offset": from + 5, "target_partition": 2, "target_offset": extra_at}])
    );
    assert_eq!(report["totals"]["other"], outside + 1);
}

#[test]
fn verify_counts_a_dead_lettered_record_as_missing_and_says_so() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "verify-dlq", 1);
    setup.extra_toml = "[record]\nmax_bytes = 1000\n".to_string();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 20);
    let producer: BaseProducer = clients::client_config(&c.source.bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, [u8]>::to(&setup.source_topic)
                .key("too-large")
                .payload(&[7u8; 5000][..])
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("send the oversized record");
    producer.flush(Duration::from_secs(30)).expect("flush");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 20, 20);
    setup.relay_until(setup.config(), 40);
    let dead_offset = records_of(&c.source.bootstrap, &setup.source_topic, 0)
        .iter()
        .find(|m| m.key() == Some(b"too-large"))
        .expect("the oversized record is on the source")
        .offset();

    let (code, report, _) = verify(&setup.config_file());
    assert_eq!(
        code,
        Some(1),
        "a dead letter is not on the target: {report:#}"
    );
    assert_eq!(counts(row(&report, 0)), [41, 40, 1, 0, 0]);
    assert_eq!(
        row(&report, 0)["examples"]["missing"],
        serde_json::json!([dead_offset])
    );
    assert_eq!(report["dead_letters"]["checked"], true);
    assert_eq!(report["dead_letters"]["in_range"], 1);
    let (_, text) = verify_text(&setup.config_file(), &[]);
    assert!(
        text.contains("1 record(s) of the range are in the dead-letter queue"),
        "{text}"
    );

    // A range that ends before the dead letter is clean.
    let to = dead_offset.to_string();
    let (code, text) = verify_text(&setup.config_file(), &["--to", &to]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("dead-letter queue: no record of the range"),
        "{text}"
    );
}

#[test]
fn verify_names_a_missing_target_topic_and_exits_1() {
    let c = clusters();
    let setup = RelaySetup::new(c, "verify-no-target", 1);
    let absent = clients::unique_name("verify-absent");
    let toml = setup.toml().replace(
        "transactional_id =",
        &format!("topic = \"{absent}\"\ntransactional_id ="),
    );
    let config_file = setup.dir.path().join("absent.toml");
    std::fs::write(&config_file, toml).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["verify", "--config"])
        .arg(&config_file)
        .output()
        .expect("run kafka-relay verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: target topic \"{absent}\" does not exist")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no report without a target");
}

#[test]
fn verify_counts_records_the_target_deleted_apart_from_relay_loss() {
    let c = clusters();
    let setup = RelaySetup::new(c, "verify-target-deleted", 2);
    let per_partition: u64 = 40;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        per_partition,
    );
    setup.relay_until(setup.config(), 2 * per_partition as usize);
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = &setup.source_topic;

    // The target deletes its first 10 copies of partition 0 (DeleteRecords,
    // as retention would), after the relay delivered them.
    let deleted = 10;
    let first_kept = records_of(target, topic, 0)[deleted].offset();
    clients::delete_records(target, topic, 0, first_kept);

    let (code, report, stderr) = verify(&setup.config_file());
    assert_eq!(
        code,
        Some(0),
        "deleted at the target is no relay failure:\n{report:#}\n{stderr}"
    );
    assert!(stderr.trim().is_empty(), "{stderr}");
    let n = per_partition;
    let kept = n - deleted as u64;
    assert_eq!(counts(row(&report, 0)), [n, kept, 0, 0, 0], "partition 0");
    assert_eq!(not_failures(row(&report, 0)), [0, deleted as u64]);
    assert_eq!(
        row(&report, 0)["examples"]["deleted_at_target"],
        serde_json::json!((0..deleted).collect::<Vec<_>>())
    );
    assert_eq!(counts(row(&report, 1)), [n, n, 0, 0, 0], "partition 1");
    assert_eq!(not_failures(row(&report, 1)), [0, 0]);
    assert_eq!(report["totals"]["deleted_at_target"], deleted);
    assert_eq!(report["totals"]["missing"], 0);
    assert_eq!(report["relay_checkpoints"]["read"], true);
    assert_eq!(report["relay_checkpoints"]["partitions"], 2);
    assert_eq!(report["targets"][0]["cleanup_policy"], "delete");

    let (code, text) = verify_text(&setup.config_file(), &[]);
    eprintln!("{text}");
    assert_eq!(code, Some(0));
    for needle in [
        "lost at source deleted at target".to_string(),
        format!("{topic}/0: deleted at target, source offsets 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        "10 record(s) the relay delivered were deleted by the target since".to_string(),
        "verify passed: every source record is on the target exactly once, or was deleted by the target after delivery".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }

    // A record the relay never delivered is missing beside them, and fails.
    produce_sequence(source, topic, 1, per_partition, 1);
    let (code, report, stderr) = verify(&setup.config_file());
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(counts(row(&report, 0)), [n + 1, kept, 1, 0, 0]);
    assert_eq!(not_failures(row(&report, 0)), [0, deleted as u64]);
    assert_eq!(
        row(&report, 0)["examples"]["missing"],
        serde_json::json!([n])
    );
    assert!(
        stderr.contains(&format!(
            "verify failed: 1 missing, 0 duplicated, 0 differing (of {} source records); not failures: 0 lost at source, {deleted} deleted at target",
            2 * n + 1
        )),
        "{stderr}"
    );
}

#[test]
fn verify_reports_offsets_the_relay_recorded_as_lost_at_source_and_passes() {
    let c = clusters();
    let setup = RelaySetup::new(c, "verify-lost-at-source", 1);
    // The source deletes its first 10 records before the relay reads them.
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 30);
    clients::delete_records(&c.source.bootstrap, &setup.source_topic, 0, 10);
    setup.relay_until(setup.config(), 20);

    // The gap as the relay records it (`source.on_gap = "skip"`), in its
    // checkpoint topic, committed in a transaction.
    let config = setup.config();
    let gap = Gap {
        tp: TopicPartition::new(setup.source_topic.clone(), 0),
        from: 0,
        to: Some(10),
        cause: GapCause::DeletedAtSource,
        detected_ms: 1_700_000_000_000,
    };
    let (key, value) = kafka_relay::gap::encode_for_target(&config.relay_id(), &gap);
    let producer: BaseProducer = clients::client_config(&c.target.bootstrap)
        .set(
            "transactional.id",
            clients::unique_name("verify-gap-writer"),
        )
        .create()
        .expect("transactional producer");
    let t = Duration::from_secs(30);
    producer.init_transactions(t).expect("init transactions");
    producer.begin_transaction().expect("begin");
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(&config.target.checkpoint_topic)
                .key(&key)
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("send the gap record");
    producer.commit_transaction(t).expect("commit");

    let (code, report, stderr) = verify(&setup.config_file());
    assert_eq!(
        code,
        Some(0),
        "offsets lost at the source are no relay failure:\n{report:#}\n{stderr}"
    );
    let r = row(&report, 0);
    assert_eq!((r["from"].as_i64(), r["to"].as_i64()), (Some(10), Some(30)));
    assert_eq!(counts(r), [20, 20, 0, 0, 0]);
    assert_eq!(
        not_failures(r),
        [10, 0],
        "the gap lies below the range, and counts without --from"
    );
    assert_eq!(
        r["examples"]["lost_at_source"],
        serde_json::json!([{"from": 0, "to": 10, "cause": "deleted_at_source"}])
    );
    assert_eq!(report["totals"]["lost_at_source"], 10);
    assert_eq!(report["relay_checkpoints"]["gaps"], 1);

    let (code, text) = verify_text(&setup.config_file(), &[]);
    eprintln!("{text}");
    assert_eq!(code, Some(0));
    for needle in [
        format!(
            "{}/0: lost at source, as the relay recorded [0, 10) deleted_at_source",
            setup.source_topic
        ),
        "10 source offset(s) were lost at the source".to_string(),
        "verify passed: every source record the relay could copy is on the target exactly once\n"
            .to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} not in:\n{text}");
    }

    // With --from, only the overlap counts: [5, 10).
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["verify", "--json", "--from", "5", "--config"])
        .arg(setup.config_file())
        .output()
        .expect("run kafka-relay verify");
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(not_failures(row(&report, 0)), [5, 0]);
}
