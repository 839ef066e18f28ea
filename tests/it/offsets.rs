//! Consumer groups failing over from the source to the target with the
//! relay's translated offsets (`[offsets]`) read every record exactly once
//! across both clusters: what they processed on the source is not read
//! again on the target, and nothing is skipped.
//!
//! The source is written by a transactional producer that aborts every
//! other transaction, so its offsets are full of commit markers and
//! aborted records: the offsets groups commit often fall on one, and the
//! translation must go to the next copied record.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::harness::clients::{self, client_config, transactional_producer};
use crate::harness::relay::{cli, RelayProcess, RelaySetup};
use crate::harness::{clusters, kafka, seed};

const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(30);

/// `transactions` committed transactions of 4 records per partition, each
/// followed by an aborted one of 2; returns the committed values.
fn produce_with_gaps(topic: &str, round: &str, transactions: usize) -> Vec<String> {
    let producer = transactional_producer(
        &clusters().source.bootstrap,
        &clients::unique_name("offsets-src"),
    );
    let mut committed = Vec::new();
    for t in 0..transactions {
        for (records, commit) in [(4, true), (2, false)] {
            producer.begin_transaction().expect("begin");
            let mut values = Vec::new();
            for p in 0..PARTITIONS {
                for i in 0..records {
                    let value = format!("{round}-p{p}-t{t}-{i}-{commit}");
                    producer
                        .send(
                            BaseRecord::<(), str>::to(topic)
                                .payload(&value)
                                .partition(p),
                        )
                        .map_err(|(e, _)| e)
                        .expect("enqueue");
                    values.push(value);
                }
            }
            if commit {
                producer.commit_transaction(TIMEOUT).expect("commit");
                committed.extend(values);
            } else {
                producer.flush(TIMEOUT).expect("flush");
                producer.abort_transaction(TIMEOUT).expect("abort");
            }
        }
    }
    committed
}

/// A consumer of `group` on `bootstrap`, read_committed, committing nothing
/// by itself.
fn group_consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer")
}

/// Reads `topic` as `group` from its committed offsets (the earliest
/// without): `take[p]` records of each partition, then commits the
/// position after the last one; with `take` = `None`, to the end without
/// committing. Returns the values read.
fn read_as_group(
    bootstrap: &str,
    topic: &str,
    group: &str,
    take: Option<&BTreeMap<i32, usize>>,
) -> Vec<String> {
    let consumer = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Stored)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut values = Vec::new();
    let mut taken: BTreeMap<i32, (usize, i64)> = BTreeMap::new();
    let mut done = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "{group}: reading {topic} did not finish in 60 s"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let (n, last) = taken.entry(p).or_insert((0, -1));
                if take.is_some_and(|t| *n >= t[&p]) {
                    done.insert(p);
                    continue;
                }
                *n += 1;
                *last = m.offset();
                values.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                if take.is_some_and(|t| *n >= t[&p]) {
                    done.insert(p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                assert!(
                    take.is_none() || done.contains(&p),
                    "{group}: partition {p} of {topic} ended after {:?} of {:?} records",
                    taken.get(&p),
                    take.map(|t| t[&p])
                );
                done.insert(p);
            }
            Some(Err(e)) => panic!("{group}: reading {topic}: {e}"),
            None => {}
        }
    }
    if take.is_some() {
        let mut commit = TopicPartitionList::new();
        for (p, (_, last)) in &taken {
            commit
                .add_partition_offset(topic, *p, Offset::Offset(last + 1))
                .expect("tpl");
        }
        consumer
            .commit(&commit, CommitMode::Sync)
            .expect("commit on the source");
    }
    values
}

/// `group`'s committed offsets on `bootstrap` (partitions with one).
fn committed(bootstrap: &str, topic: &str, group: &str) -> BTreeMap<i32, i64> {
    let consumer = group_consumer(bootstrap, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let found = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// How many records of each partition a group processes before failing
/// over, each drawn from `range`.
fn random_takes(rng: &mut StdRng, range: std::ops::Range<usize>) -> BTreeMap<i32, usize> {
    (0..PARTITIONS)
        .map(|p| (p, rng.random_range(range.clone())))
        .collect()
}

/// `group` reads the target from its (translated) offsets to the end: with
/// what it read on the source, each committed value exactly once.
fn group_reads_the_rest_on_the_target_exactly_once(
    what: &str,
    setup: &RelaySetup,
    group: &str,
    produced: &[String],
    source: &[String],
) {
    let target = read_as_group(
        &clusters().target.bootstrap,
        &setup.target_topic,
        group,
        None,
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in source.iter().chain(&target) {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| *v)
        .collect();
    let missing: Vec<_> = produced
        .iter()
        .filter(|v| !counts.contains_key(v.as_str()))
        .collect();
    let foreign = counts.len() - (produced.len() - missing.len());
    assert!(
        twice.is_empty() && missing.is_empty() && foreign == 0,
        "{what}: {} read twice (first {:?}), {} never read (first {:?}), {foreign} not produced; {} read on the source, {} on the target",
        twice.len(),
        twice.first(),
        missing.len(),
        missing.first(),
        source.len(),
        target.len()
    );
}

/// A relay whose target transactions hold a few records each, so that the
/// target's offsets have commit markers of their own between the copies
/// and differ from the source's in a way a translation must follow.
fn offsets_setup(name: &str, groups: &str) -> RelaySetup {
    let mut setup = RelaySetup::new(clusters(), name, PARTITIONS);
    setup.batch_max_bytes = Some(100);
    setup.extra_toml += &format!(
        "\n[transaction]\nmax_records = 5\n\n[offsets]\ngroups = [{groups}]\ninterval_secs = 1\n"
    );
    setup
}

#[test]
fn a_group_failing_over_with_synced_offsets_reads_every_record_exactly_once() {
    let c = clusters();
    let mut rng = StdRng::seed_from_u64(seed("offsets-sync"));
    let group = clients::unique_name("failover");
    let setup = offsets_setup("offsets-sync", &format!("\"{group}\""));
    let produced = produce_with_gaps(&setup.source_topic, "a", 10);
    let per_partition = produced.len() / PARTITIONS as usize;
    let relay = RelayProcess::start(&setup.config_file(), &setup.dir.path().join("relay.log"));
    setup.wait_for_target_or_report(c, produced.len(), Duration::from_secs(120), || {
        relay.log_tail()
    });

    // Anywhere from one record to all but one.
    let takes = random_takes(&mut rng, 1..per_partition);
    let on_source = read_as_group(
        &c.source.bootstrap,
        &setup.source_topic,
        &group,
        Some(&takes),
    );
    let source_offsets = committed(&c.source.bootstrap, &setup.source_topic, &group);
    crate::harness::relay::wait_for(
        "the group's translated offsets on the target",
        Duration::from_secs(60),
        &relay,
        || committed(&c.target.bootstrap, &setup.target_topic, &group).len() == PARTITIONS as usize,
    );
    let target_offsets = committed(&c.target.bootstrap, &setup.target_topic, &group);
    relay.stop();
    assert_ne!(
        source_offsets, target_offsets,
        "the target's markers differ from the source's, so a copy of the offsets would be wrong"
    );
    kafka::log(format!(
        "offsets-sync: took {takes:?} per partition; source offsets {source_offsets:?} -> target {target_offsets:?}"
    ));

    group_reads_the_rest_on_the_target_exactly_once(
        "fail-over with synced offsets",
        &setup,
        &group,
        &produced,
        &on_source,
    );
}

#[test]
fn translate_after_the_wal_is_lost_writes_offsets_a_group_resumes_from_exactly_once() {
    let c = clusters();
    let mut rng = StdRng::seed_from_u64(seed("offsets-cli"));
    let group = clients::unique_name("cutover");
    // No groups to sync: the cut-over is the operator's, with the CLI.
    let setup = offsets_setup("offsets-cli", "");
    let log = setup.dir.path().join("relay.log");
    let mut produced = produce_with_gaps(&setup.source_topic, "a", 6);
    let relay = RelayProcess::start(&setup.config_file(), &log);
    setup.wait_for_target_or_report(c, produced.len(), Duration::from_secs(120), || {
        relay.log_tail()
    });
    relay.stop();

    // The WAL is gone: the relay resumes from the target's checkpoints and
    // the map it keeps on writing there.
    std::fs::remove_dir_all(setup.wal_dir()).expect("remove the WAL");
    produced.extend(produce_with_gaps(&setup.source_topic, "b", 6));
    let relay = RelayProcess::start(&setup.config_file(), &log);
    setup.wait_for_target_or_report(c, produced.len(), Duration::from_secs(120), || {
        relay.log_tail()
    });
    relay.stop();

    let (code, _, stderr) = cli(
        &setup.config_file(),
        &["offsets", "translate", "--group", &group],
    );
    assert_eq!(code, 1, "a group without offsets is an error: {stderr}");
    assert!(stderr.contains("no committed offsets"), "{stderr}");

    // Into what was copied after the WAL was lost: the map there was
    // rebuilt from the target alone.
    let per_partition = produced.len() / PARTITIONS as usize;
    let takes = random_takes(&mut rng, per_partition / 2 + 1..per_partition);
    let on_source = read_as_group(
        &c.source.bootstrap,
        &setup.source_topic,
        &group,
        Some(&takes),
    );
    let (code, stdout, stderr) = cli(
        &setup.config_file(),
        &[
            "offsets",
            "translate",
            "--group",
            &group,
            "--write",
            "--json",
        ],
    );
    assert_eq!(code, 0, "translate --write: {stdout}{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["written"], PARTITIONS, "{doc}");
    let printed: BTreeMap<i32, i64> = doc["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().expect("partition") as i32,
                p["target_offset"].as_i64().expect("an exact translation"),
            )
        })
        .collect();
    let target_offsets = committed(&c.target.bootstrap, &setup.target_topic, &group);
    assert_eq!(
        printed, target_offsets,
        "what translate printed is what it wrote"
    );
    kafka::log(format!(
        "offsets-cli: took {takes:?} per partition after losing the WAL; target offsets {target_offsets:?}"
    ));

    group_reads_the_rest_on_the_target_exactly_once(
        "cut-over with translate --write",
        &setup,
        &group,
        &produced,
        &on_source,
    );
}
