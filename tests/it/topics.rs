//! Target topic management on real Kafka: a missing target topic is made
//! like its source topic, an existing one takes the source's configs and
//! keeps the target's own, a running relay follows source changes at each
//! sync, and a target topic that cannot take the records stops the start.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, produce_sequence_to, RelayProcess, RelaySetup};
use crate::harness::{checker, clusters};

fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_missing_target_topic_is_created_with_the_source_partitions_and_retention() {
    let c = clusters();
    let setup = RelaySetup::source_only(
        c,
        "topics-created",
        3,
        &[
            ("retention.ms", "-1"),
            ("cleanup.policy", "compact,delete"),
            ("max.message.bytes", "2000000"),
            // Excluded by default: the target cluster's business.
            ("min.insync.replicas", "1"),
        ],
    );
    let (source, target, topic) = (
        &c.source.bootstrap,
        &c.target.bootstrap,
        &setup.target_topic,
    );
    assert_eq!(clients::partition_count(target, topic), None);
    produce_sequence(source, &setup.source_topic, 3, 0, 200);

    setup.relay_until(setup.config(), 600);

    assert_eq!(clients::partition_count(target, topic), Some(3));
    assert_eq!(
        clients::topic_configs(target, topic),
        configs(&[
            ("cleanup.policy", "compact,delete"),
            ("max.message.bytes", "2000000"),
            ("retention.ms", "-1"),
        ]),
        "the source topic's own configs, without the excluded min.insync.replicas"
    );
    checker::assert_exactly_once(target, topic, 3, 200);
}

#[test]
fn an_existing_target_topic_takes_the_source_configs_and_keeps_those_the_filter_leaves_to_it() {
    let c = clusters();
    let setup = RelaySetup::source_only(c, "topics-existing", 2, &[("retention.ms", "-1")]);
    let (target, topic) = (&c.target.bootstrap, &setup.target_topic);
    clients::create_topic(
        target,
        topic,
        2,
        &[
            ("retention.ms", "604800000"), // managed: the source's value wins
            ("segment.ms", "3600000"),     // managed, the source does not set it: removed
            ("min.insync.replicas", "1"),  // excluded by default: the target's own, kept
        ],
    );
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 2, 0, 100);

    setup.relay_until(setup.config(), 200);

    assert_eq!(
        clients::topic_configs(target, topic),
        configs(&[("min.insync.replicas", "1"), ("retention.ms", "-1")])
    );
    checker::assert_exactly_once(target, topic, 2, 100);
}

#[test]
fn source_config_and_partition_changes_reach_the_target_at_the_next_sync() {
    let c = clusters();
    let mut setup = RelaySetup::source_only(c, "topics-sync", 2, &[("retention.ms", "-1")]);
    setup.target_toml = "sync_topics_interval_secs = 2\n".to_string();
    let (source, target, topic) = (
        &c.source.bootstrap,
        &c.target.bootstrap,
        &setup.target_topic,
    );
    produce_sequence(source, &setup.source_topic, 2, 0, 100);
    let log = setup.dir.path().join("relay.log");
    let relay = RelayProcess::start(&setup.config_file(), &log);
    setup.wait_for_target_or_report(c, 200, Duration::from_secs(120), || relay.log_tail());

    clients::set_topic_config(
        source,
        &setup.source_topic,
        &[
            ("retention.ms", "86400000"),
            ("cleanup.policy", "compact,delete"),
        ],
    );
    clients::add_partitions(source, &setup.source_topic, 4);
    let want = configs(&[
        ("cleanup.policy", "compact,delete"),
        ("retention.ms", "86400000"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while clients::partition_count(target, topic) != Some(4)
        || clients::topic_configs(target, topic) != want
    {
        assert!(
            Instant::now() < deadline,
            "the target did not follow the source within 30s: {:?} partitions, configs {:?}; relay log:\n{}",
            clients::partition_count(target, topic),
            clients::topic_configs(target, topic),
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    relay.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    for needle in [
        "created target topic",
        "added partitions to target topic",
        "changed target topic configs",
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(needle) && l.contains(topic.as_str()))
            .unwrap_or_else(|| panic!("no {needle:?} line in the relay log:\n{text}"));
        eprintln!("{line}");
    }

    // This run copied the partitions it found at start. Restarted, the
    // relay copies the new ones into the partitions the sync added.
    produce_sequence_to(source, &setup.source_topic, 2..4, 0, 100);
    setup.relay_until(setup.config(), 400);
    checker::assert_exactly_once(target, topic, 4, 100);
}

#[test]
fn a_target_topic_with_too_few_partitions_is_a_clear_error_when_creation_is_off() {
    let c = clusters();
    let mut setup = RelaySetup::source_only(c, "topics-too-few", 3, &[]);
    let (target, topic) = (&c.target.bootstrap, &setup.target_topic);
    clients::create_topic(target, topic, 2, &[]);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 3, 0, 50);
    setup.target_toml = "create_topics = false\n".to_string();

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let run = kafka_relay::pipeline::run(setup.config(), std::future::pending());
    let err = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), run).await })
        .expect("the start must fail, not hang")
        .expect_err("a target topic too small for partitioning = \"same\"");
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.starts_with(&format!(
            "target topic {topic} has 2 partition(s) but source topic(s) {topic} have 3: target.partitioning = \"same\""
        )) && message.contains("set target.create_topics = true"),
        "{message}"
    );
    assert!(
        clients::consume_all(target, topic, Isolation::ReadUncommitted).is_empty(),
        "nothing may be shipped to a topic that cannot take it"
    );
    assert_eq!(
        clients::partition_count(target, topic),
        Some(2),
        "unchanged"
    );

    // Allowed to, the relay adds the partition and copies everything.
    setup.target_toml.clear();
    setup.relay_until(setup.config(), 150);
    assert_eq!(clients::partition_count(target, topic), Some(3));
    checker::assert_exactly_once(target, topic, 3, 50);
}
