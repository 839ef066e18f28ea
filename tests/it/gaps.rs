//! Source gaps on real Kafka: records the source deleted before the relay
//! copied them (DeleteRecords here, which is what retention does) are never
//! passed over silently. By default the relay stops, naming the range, and
//! stops again after a restart; with `source.on_gap = "skip"` the gap is
//! recorded in the WAL and on the target, counted in `/metrics` and
//! `status`, and everything else arrives exactly once.

use std::time::Duration;

use crate::harness::admin::{scrape, sum, with_admin};
use crate::harness::clients::{self, delete_records, Isolation};
use crate::harness::relay::{
    cli, produce_sequence, sequence_value, status_json, wait_for, RelayProcess, RelaySetup,
};
use crate::harness::{clusters, kafka};

/// The values on the target partition 0, read_committed, in offset order.
fn target_values(setup: &RelaySetup) -> Vec<String> {
    let mut messages = clients::consume_all(
        &clusters().target.bootstrap,
        &setup.target_topic,
        Isolation::ReadCommitted,
    );
    messages.sort_by_key(|m| (rdkafka::Message::partition(m), rdkafka::Message::offset(m)));
    messages
        .iter()
        .map(|m| {
            String::from_utf8_lossy(rdkafka::Message::payload(m).unwrap_or_default()).into_owned()
        })
        .collect()
}

fn sequence(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|seq| sequence_value(0, seq)).collect()
}

#[test]
fn records_deleted_at_the_source_before_copying_stop_the_relay_and_a_restart_stops_again() {
    let c = clusters();
    let setup = RelaySetup::new(c, "gap-fail", 1);
    let config = setup.config_file();
    let log = setup.dir.path().join("relay.log");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 100);
    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target_or_report(c, 100, Duration::from_secs(90), || relay.log_tail());
    relay.stop();

    // While the relay is down, 100 more arrive and the source deletes half of them.
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 100, 100);
    delete_records(&c.source.bootstrap, &setup.source_topic, 0, 150);

    let expected = format!(
        // The CLI's last line: the halting log line names the range too.
        "error: source partition {}/0: offsets [100, 150) (50 offsets) were deleted at the source",
        setup.source_topic
    );
    for run in 1..=2 {
        let relay = RelayProcess::start(&config, &log);
        let status = relay.wait_exit(Duration::from_secs(120));
        assert!(
            !status.success(),
            "run {run}: the relay must stop on a gap, exited {status}"
        );
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            text.matches(&expected).count(),
            run,
            "run {run}: the error names the exact range once per run; log:\n{text}"
        );
    }
    // Nothing after the gap was copied: the relay skipped nothing on its own.
    assert_eq!(target_values(&setup), sequence(0..100));
    let (code, out, _) = cli(&config, &["status", "--json"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\"source_gaps\": []"),
        "with on_gap = fail nothing is recorded: {out}"
    );
    kafka::log(format!(
        "gap-fail: the relay stopped twice with: {expected} ..."
    ));
}

#[test]
fn a_skipped_source_gap_is_recorded_counted_reported_and_the_rest_arrives_once() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "gap-skip", 1);
    setup.source_toml = "on_gap = \"skip\"\n".into();
    let admin = with_admin(&mut setup);
    let config = setup.config_file();
    let log = setup.dir.path().join("relay.log");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 100);
    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target_or_report(c, 100, Duration::from_secs(90), || relay.log_tail());

    // A paused relay does not fetch: the source deletes records under it, at runtime.
    assert_eq!(cli(&config, &["pause"]).0, 0);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 100, 100);
    delete_records(&c.source.bootstrap, &setup.source_topic, 0, 150);
    assert_eq!(cli(&config, &["resume"]).0, 0);
    setup.wait_for_target_or_report(c, 150, Duration::from_secs(90), || relay.log_tail());

    let labels = [("topic", setup.source_topic.as_str()), ("partition", "0")];
    wait_for("the gap counted", Duration::from_secs(30), &relay, || {
        sum(
            &scrape(&admin),
            "kafka_relay_source_records_lost_total",
            &labels,
        ) == 50.0
    });
    assert_eq!(
        sum(
            &scrape(&admin),
            "kafka_relay_source_gaps_total",
            &[("cause", "deleted_at_source")]
        ),
        1.0
    );
    wait_for(
        "the gap on the target",
        Duration::from_secs(30),
        &relay,
        || status_json(&config)["source_gaps"][0]["on_target"] == true,
    );
    let s = status_json(&config);
    let gap = &s["source_gaps"][0];
    assert_eq!(
        (gap["from"].as_i64(), gap["to"].as_i64()),
        (Some(100), Some(150)),
        "{s}"
    );
    assert_eq!(s["partitions"][0]["lost_at_source"], 50, "{s}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.lines().any(|l| l.contains("ERROR")
            && l.contains("source records lost before the relay copied them")
            && l.contains("from=100")),
        "the gap is logged at ERROR with its range; log:\n{text}"
    );
    let (_, table, _) = cli(&config, &["status"]);
    kafka::log(format!("gap-skip: $ kafka-relay status\n{table}"));
    relay.stop();

    // The gap is in the relay's checkpoint topic, committed: it outlives the WAL.
    let relay_config = setup.config();
    let committed = kafka_relay::checkpoint::read_committed(
        &kafka_relay::kafka::target_client(&relay_config),
        &relay_config.target.checkpoint_topic,
        &relay_config.relay_id(),
        Duration::from_secs(60),
    )
    .expect("read checkpoints");
    let on_target: Vec<(i64, Option<i64>)> =
        committed.gaps.iter().map(|g| (g.from, g.to)).collect();
    assert_eq!(on_target, vec![(100, Some(150))]);

    // Lose the WAL: the restarted relay learns the gap from the target, counts
    // it again, and copies on exactly once.
    std::fs::remove_dir_all(setup.wal_dir()).expect("remove WAL");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 200, 50);
    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target_or_report(c, 200, Duration::from_secs(90), || relay.log_tail());
    wait_for(
        "the gap known again",
        Duration::from_secs(30),
        &relay,
        || {
            sum(
                &scrape(&admin),
                "kafka_relay_source_records_lost_total",
                &labels,
            ) == 50.0
        },
    );
    relay.stop();
    let mut expected = sequence(0..100);
    expected.extend(sequence(150..250));
    assert_eq!(
        target_values(&setup),
        expected,
        "everything the source still had arrives once, in order"
    );
}

#[test]
fn a_copied_topic_deleted_at_the_source_stops_the_relay_or_with_skip_is_recorded_as_gone() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "gap-gone", 1);
    let config = setup.config_file();
    let log = setup.dir.path().join("relay.log");
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 50);
    let relay = RelayProcess::start(&config, &log);
    setup.wait_for_target_or_report(c, 50, Duration::from_secs(90), || relay.log_tail());

    // Deleted under a running relay, then found again at the next start.
    clients::delete_topic(&c.source.bootstrap, &setup.source_topic);
    let gone = format!("error: source partition {}/0 is gone", setup.source_topic);
    let status = relay.wait_exit(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the relay must stop when a copied topic is deleted"
    );
    let relay = RelayProcess::start(&config, &log);
    assert!(!relay.wait_exit(Duration::from_secs(120)).success());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        text.matches(&gone).count(),
        2,
        "once at runtime, once at start; log:\n{text}"
    );

    setup.source_toml = "on_gap = \"skip\"\n".into();
    let admin = with_admin(&mut setup);
    let config = setup.config_file();
    let relay = RelayProcess::start(&config, &log);
    wait_for(
        "the gone partition recorded on the target",
        Duration::from_secs(60),
        &relay,
        || {
            // Asked before the endpoint is up, status refuses the locked WAL.
            let (code, out, _) = cli(&config, &["status", "--json"]);
            let s: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            code == 0
                && s["source_gaps"][0]["cause"] == "partition_gone"
                && s["source_gaps"][0]["on_target"] == true
        },
    );
    let s = status_json(&config);
    assert_eq!(s["source_gaps"][0]["from"], 50, "{s}");
    assert_eq!(
        sum(
            &scrape(&admin),
            "kafka_relay_source_gaps_total",
            &[("cause", "partition_gone")]
        ),
        1.0
    );
    relay.stop();
    assert_eq!(target_values(&setup), sequence(0..50));
}
