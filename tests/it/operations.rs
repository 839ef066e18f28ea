//! Operating a relay: the admin endpoint (`/metrics`, `/healthz`,
//! `/readyz`, `/status`), `enabled = false`, `pause` / `resume` and
//! `status` from the command line, live and offline, and the outage log
//! lines. Each runs the real binary against the harness clusters.

use std::time::Duration;

use crate::harness::admin::{http, scrape, sum, with_admin};
use crate::harness::checker::assert_exactly_once;
use crate::harness::clients::{self, Isolation};
use crate::harness::proxy::Faults;
use crate::harness::relay::{
    cli, produce_sequence, status_json, wait_for, RelayProcess, RelaySetup,
};
use crate::harness::{clusters, kafka};

fn target_count(setup: &RelaySetup) -> usize {
    clients::consume_all(
        &clusters().target.bootstrap,
        &setup.target_topic,
        Isolation::ReadCommitted,
    )
    .len()
}

#[test]
fn disabled_relay_moves_nothing_until_resumed_and_a_pause_holds_then_resumes_exactly_once() {
    let c = clusters();
    let partitions = 2;
    let mut setup = RelaySetup::new(c, "ops-pause", partitions);
    setup.top_toml = "enabled = false\n".into();
    let admin = with_admin(&mut setup);
    let config = setup.config_file();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, partitions, 0, 300);

    let relay = RelayProcess::start(&config, &setup.dir.path().join("relay.log"));
    // Disabled: recovers, connects and becomes ready, but moves nothing.
    wait_for("ready", Duration::from_secs(60), &relay, || {
        http("GET", &format!("http://{admin}/readyz")).is_some_and(|(code, _)| code == 200)
    });
    let (_, ready) = http("GET", &format!("http://{admin}/readyz")).expect("readyz");
    assert_eq!(ready.trim(), "ready (paused)");
    std::thread::sleep(Duration::from_secs(3));
    let s = status_json(&config);
    assert_eq!(s["origin"], "live");
    assert_eq!(s["state"], "paused");
    assert_eq!(s["wal"]["records"], 0, "a disabled relay consumed: {s}");
    assert_eq!(target_count(&setup), 0, "a disabled relay shipped");
    let m = scrape(&admin);
    assert_eq!(
        sum(&m, "kafka_relay_paused", &[("reason", "operator")]),
        1.0
    );
    assert_eq!(sum(&m, "kafka_relay_consumed_records_total", &[]), 0.0);

    let (code, out, err) = cli(&config, &["resume"]);
    assert_eq!(code, 0, "resume: {err}");
    assert!(out.contains(": running"), "{out}");
    kafka::log(format!("ops-pause: $ kafka-relay resume\n{out}"));
    setup.wait_for_target(c, 600, Duration::from_secs(60));

    let (code, out, err) = cli(&config, &["pause"]);
    assert_eq!(code, 0, "pause: {err}");
    assert!(out.contains(": paused"), "{out}");
    kafka::log(format!("ops-pause: $ kafka-relay pause\n{out}"));
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        partitions,
        300,
        200,
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(target_count(&setup), 600, "records moved while paused");
    let s = status_json(&config);
    assert_eq!(
        (s["state"].as_str(), s["paused"].as_bool()),
        (Some("paused"), Some(true))
    );
    let (_, table, _) = cli(&config, &["status"]);
    kafka::log(format!("ops-pause: $ kafka-relay status   (paused; 200 new records per partition wait on the source)\n{table}"));

    assert_eq!(cli(&config, &["resume"]).0, 0);
    setup.wait_for_target(c, 1000, Duration::from_secs(60));
    assert_exactly_once(&c.target.bootstrap, &setup.target_topic, partitions, 500);

    // The figures agree with what happened.
    wait_for("metrics settle", Duration::from_secs(30), &relay, || {
        let m = scrape(&admin);
        sum(&m, "kafka_relay_shipped_records_total", &[]) == 1000.0
            && sum(&m, "kafka_relay_source_lag_records", &[]) == 0.0
    });
    let m = scrape(&admin);
    let (_, text) = http("GET", &format!("http://{admin}/metrics")).expect("scrape");
    kafka::log(format!("ops-pause: $ curl {admin}/metrics\n{text}"));
    assert_eq!(sum(&m, "kafka_relay_consumed_records_total", &[]), 1000.0);
    assert!(sum(&m, "kafka_relay_shipped_bytes_total", &[]) > 1000.0 * 8.0);
    assert!(sum(&m, "kafka_relay_transactions_committed_total", &[]) >= 2.0);
    for p in 0..partitions {
        let p = p.to_string();
        let labels = [
            ("topic", setup.source_topic.as_str()),
            ("partition", p.as_str()),
        ];
        assert_eq!(
            sum(&m, "kafka_relay_last_checkpoint_offset", &labels),
            500.0
        );
        assert_eq!(sum(&m, "kafka_relay_shipped_records_total", &labels), 500.0);
    }
    assert_eq!(
        sum(&m, "kafka_relay_paused", &[("reason", "operator")]),
        0.0
    );
    assert_eq!(sum(&m, "kafka_relay_wal_bytes", &[]), 0.0);
    assert_eq!(sum(&m, "kafka_relay_target_reachable", &[]), 1.0);
    assert_eq!(
        http("GET", &format!("http://{admin}/healthz")),
        Some((200, "ok\n".into()))
    );
    let log = std::fs::read_to_string(&relay.log).expect("log");
    assert!(
        log.contains("relay paused") && log.contains("relay resumed"),
        "{log}"
    );

    relay.stop();
    // Stopped: status reads the WAL and shows the same per-partition picture.
    let s = status_json(&config);
    assert_eq!(
        (s["origin"].as_str(), s["state"].as_str()),
        (Some("offline"), Some("stopped"))
    );
    let rows = s["partitions"].as_array().expect("partitions");
    assert_eq!(rows.len(), partitions as usize, "{s}");
    for row in rows {
        assert_eq!(row["last_checkpoint"], 500, "{s}");
        assert_eq!(row["wal_records"], 0, "{s}");
    }
    let (code, table, err) = cli(&config, &["status"]);
    assert_eq!(code, 0, "{err}");
    kafka::log(format!("ops-pause: offline status table:\n{table}"));
    assert!(
        table.contains("stopped") && table.contains("CHECKPOINT"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .filter(|l| l.starts_with(&setup.source_topic) && l.contains(" 500 "))
            .count()
            == partitions as usize,
        "{table}"
    );
}

#[test]
fn target_outage_shows_on_readyz_metrics_and_logs_with_its_duration() {
    let c = clusters();
    let partitions = 2;
    let mut setup = RelaySetup::new(c, "ops-outage", partitions);
    setup.target_bootstrap = c.target.proxied_bootstrap.clone();
    setup.extra_toml += "\n[retry]\ninitial_backoff_ms = 200\nmax_backoff_ms = 1000\n";
    let admin = with_admin(&mut setup);
    let config = setup.config_file();
    produce_sequence(&c.source.bootstrap, &setup.source_topic, partitions, 0, 100);
    let relay = RelayProcess::start(&config, &setup.dir.path().join("relay.log"));
    setup.wait_for_target(c, 200, Duration::from_secs(60));
    wait_for("ready", Duration::from_secs(30), &relay, || {
        http("GET", &format!("http://{admin}/readyz")).is_some_and(|(code, _)| code == 200)
    });

    c.target.proxy.set(Faults {
        blackhole: true,
        ..Faults::default()
    });
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        partitions,
        100,
        100,
    );
    wait_for(
        "readyz reports the outage",
        Duration::from_secs(90),
        &relay,
        || {
            http("GET", &format!("http://{admin}/readyz"))
                .is_some_and(|(code, body)| code == 503 && body.contains("target unreachable"))
        },
    );
    let m = scrape(&admin);
    assert_eq!(sum(&m, "kafka_relay_target_reachable", &[]), 0.0);
    assert!(
        sum(&m, "kafka_relay_wal_partition_records", &[]) > 0.0,
        "the WAL holds the outage's records"
    );
    let s = status_json(&config);
    assert_eq!(s["state"], "target outage", "{s}");
    assert!(s["target_outage_secs"].is_u64(), "{s}");

    c.target.proxy.clear();
    setup.wait_for_target(c, 400, Duration::from_secs(120));
    wait_for("ready again", Duration::from_secs(60), &relay, || {
        http("GET", &format!("http://{admin}/readyz")).is_some_and(|(code, _)| code == 200)
    });
    let m = scrape(&admin);
    assert!(
        sum(&m, "kafka_relay_retries_total", &[]) >= 1.0,
        "retries counted by kind"
    );
    assert_eq!(sum(&m, "kafka_relay_target_reachable", &[]), 1.0);
    relay.stop();
    assert_exactly_once(&c.target.bootstrap, &setup.target_topic, partitions, 200);
    let log = std::fs::read_to_string(setup.dir.path().join("relay.log")).expect("log");
    let began = log
        .lines()
        .find(|l| l.contains("target outage began"))
        .unwrap_or_else(|| panic!("no outage line:\n{log}"));
    let ended = log
        .lines()
        .find(|l| l.contains("target outage ended after"))
        .unwrap_or_else(|| panic!("no end line:\n{log}"));
    kafka::log(format!("ops-outage: {began}\nops-outage: {ended}"));
}

/// While the target takes transactions, the source reads only a few
/// transactions ahead of the shipper (`source::LEAD_TRANSACTIONS`): the
/// WAL's room up to `wal.max_bytes` is for outages. A shipper held to
/// 24 KiB/s copies about 350 KB of WAL entries here; a source reading
/// ahead would put nearly all of them in the WAL within a second or two.
#[test]
fn while_the_target_is_healthy_the_source_reads_only_a_few_transactions_ahead() {
    let c = clusters();
    let partitions = 2;
    let mut setup = RelaySetup::new(c, "ops-lead", partitions);
    let wal_max: u64 = 256 << 20;
    setup.wal_max_bytes = Some(wal_max);
    setup.batch_max_bytes = Some(2 << 10);
    setup.extra_toml +=
        "\n[transaction]\nmax_bytes = \"8KiB\"\n[rate]\nmax_bytes_per_sec = \"24KiB\"\n";
    let admin = with_admin(&mut setup);
    let lead = kafka_relay::source::lead_bytes(&setup.config());
    let per_partition = 3000;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        partitions,
        0,
        per_partition,
    );

    let config = setup.config_file();
    let relay = RelayProcess::start(&config, &setup.dir.path().join("relay.log"));
    let copied = partitions as usize * per_partition as usize;
    setup.wait_for_target(c, copied, Duration::from_secs(120));
    // The relay's own high-water mark, so no sampling can miss the peak.
    let peak = sum(&scrape(&admin), "kafka_relay_wal_peak_bytes", &[]);
    relay.stop();
    kafka::log(format!(
        "ops-lead: peak WAL {peak} bytes, lead {lead} bytes"
    ));
    // The lead, plus the groups already on their way to the WAL when the
    // source stopped reading (each at most a batch per partition).
    assert!(
        peak <= (2 * lead) as f64,
        "the WAL held {peak} bytes, above twice the lead of {lead}"
    );
    assert!(peak > 0.0, "the WAL never held anything");
    assert_exactly_once(
        &c.target.bootstrap,
        &setup.target_topic,
        partitions,
        per_partition,
    );
}

/// A stage that fails turns the relay `halted`, with the reason, on
/// `/healthz`, `/readyz` and `/status`: here the source stops on records the
/// source deleted before they were copied (`source.on_gap = "fail"`).
#[test]
fn a_failed_stage_turns_healthz_halted_with_the_reason() {
    let c = clusters();
    let setup = RelaySetup::new(c, "ops-halted", 1);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 20);
    setup.relay_until(setup.config(), 20);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 20, 20);
    clients::delete_records(&c.source.bootstrap, &setup.source_topic, 0, 30);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let shared = kafka_relay::ops::Shared::new(false);
    let run = runtime.block_on(kafka_relay::pipeline::run_with(
        setup.config(),
        shared.clone(),
        std::future::pending(),
    ));
    let err = run.expect_err("the relay must stop on the gap");
    let why = match shared.control.phase() {
        kafka_relay::ops::control::Phase::Halted(why) => why,
        other => panic!("after {err} the phase is {other:?}, not halted"),
    };
    assert!(why.contains("offsets [20, 30)"), "{why}");

    // What the endpoint serves from those handles.
    let config = setup.config();
    let wal = kafka_relay::wal::Wal::open(&config.wal.dir, config.wal_options()).expect("wal");
    let wals = kafka_relay::ops::Wals::new(&config.wal.dir);
    let _registered = wals.register(wal);
    let [port] = kafka::free_ports();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let _admin = runtime
        .block_on(kafka_relay::ops::admin::start(
            addr,
            None,
            kafka_relay::ops::admin::Handles {
                relay: config.relay_id(),
                access: kafka_relay::ops::admin::Access::of(&config.admin),
                wals,
                control: shared.control.clone(),
                metrics: shared.metrics.clone(),
            },
        ))
        .expect("admin endpoint");
    for path in ["/healthz", "/readyz"] {
        let (code, body) = http("GET", &format!("http://{addr}{path}")).expect(path);
        assert_eq!(code, 503, "{path}: {body}");
        assert!(
            body.starts_with("halted: ") && body.contains("offsets [20, 30)"),
            "{path}: {body}"
        );
    }
    let (_, status) = http("GET", &format!("http://{addr}/status")).expect("status");
    assert!(status.contains("\"state\":\"halted: "), "{status}");
    kafka::log(format!("ops-halted: GET /healthz -> 503 halted: {why}"));
}
