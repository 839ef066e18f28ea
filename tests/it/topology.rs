//! A living topology: partitions added to a copied topic, and new topics
//! that match `source.topic_regex`, are copied while the relay runs,
//! within `source.refresh_interval_secs`, from their first record and
//! exactly once; their target topics are grown or created first.

use std::time::Duration;

use rdkafka::Message;

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, sequence_value, RelayProcess, RelaySetup};
use crate::harness::{clusters, kafka};

/// The values of `topic` on the target, per partition, in offset order.
fn on_target(topic: &str) -> Vec<(i32, String)> {
    let mut messages = clients::consume_all(
        &clusters().target.bootstrap,
        topic,
        Isolation::ReadCommitted,
    );
    messages.sort_by_key(|m| (m.partition(), m.offset()));
    messages
        .iter()
        .map(|m| {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            (m.partition(), value)
        })
        .collect()
}

fn wait_for(topic: &str, count: usize, relay: &RelayProcess) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // The relay makes the target topic itself: until then it holds nothing.
    let made =
        || clients::partition_count(&clusters().target.bootstrap, topic).is_some_and(|n| n > 0);
    while !made() || on_target(topic).len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "{count} records of {topic} not on the target within 60 s; relay log:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn partitions_and_topics_added_to_the_source_are_copied_without_a_restart() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "topology", 1);
    let later = format!("{}-later", setup.source_topic);
    setup.selection_toml = Some(format!(
        "topic_regex = \"^{}(-later)?$\"",
        setup.source_topic
    ));
    setup.source_toml = "refresh_interval_secs = 2\n".into();
    let config = setup.config_file();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 20);
    let relay = RelayProcess::start(&config, &setup.dir.path().join("relay.log"));
    wait_for(&setup.target_topic, 20, &relay);

    // A second partition, on the source only: the relay grows the target
    // topic (`target.create_topics`) before it reads the new partition.
    clients::add_partitions(&c.source.bootstrap, &setup.source_topic, 2);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 2, 20, 20);
    wait_for(&setup.target_topic, 60, &relay);

    // A new topic that the regex takes, on the source only: the relay
    // creates it on the target first.
    clients::create_topic(&c.source.bootstrap, &later, 1, &[]);
    produce_sequence(&c.source.bootstrap, &later, 1, 0, 10);
    wait_for(&later, 10, &relay);
    relay.stop();

    let values = |p: i32, seqs: std::ops::Range<u64>| -> Vec<(i32, String)> {
        seqs.map(|seq| (p, sequence_value(p, seq))).collect()
    };
    let mut expected = values(0, 0..40);
    expected.extend(values(1, 20..40));
    assert_eq!(
        on_target(&setup.target_topic),
        expected,
        "the new partition is copied from its first record, once, in order"
    );
    assert_eq!(on_target(&later), values(0, 0..10));
    kafka::log("topology: a partition and a topic added at runtime were copied exactly once");
}
