//! Unit tests of `config` (kept beside it, out of the module's own file).

use super::*;

const MINIMAL: &str = r#"
[source]
bootstrap_servers = "src:9092"
topics = ["orders"]
[target]
bootstrap_servers = "dst:9092"
transactional_id = "relay-1"
[wal]
dir = "/var/lib/kafka-relay"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, env(&[])) {
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn the_example_config_parses() {
    let c =
        Config::from_toml_str(include_str!("../examples/relay.toml"), env(&[])).expect("example");
    assert_eq!(c.format, Format::Raw);
    assert!(matches!(c.source.topics, TopicSelection::List(_)));
}

#[test]
fn defaults_apply() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.relay_id(), "relay-1");
    assert_eq!(c.group_id(), "kafka-relay-relay-1");
    assert_eq!(c.wal.max_bytes, DEFAULT_WAL_MAX_BYTES);
    assert_eq!(c.batch.max_records, DEFAULT_BATCH_MAX_RECORDS);
    assert_eq!(
        c.target.checkpoint_topic,
        "__kafka_relay_checkpoints.relay-1"
    );
    assert_eq!(
        default_checkpoint_topic("eu→us/1"),
        "__kafka_relay_checkpoints.eu_us_1"
    );
    assert_eq!(c.source.start, StartPosition::Earliest);
    assert_eq!(c.target_topic_for("orders"), "orders");
    assert!(c.enabled);
}

#[test]
fn all_problems_are_reported_together_naming_their_keys() {
    let text = MINIMAL
        .replace("topics = [\"orders\"]", "topics = []")
        .replace("dir = ", "max_bytes = \"100MiB\"\ndir = ")
        + "[batch]\nmax_records = 0\nmax_bytes = \"200MiB\"\n";
    let p = problems(&text);
    assert!(
        p.iter().any(|l| l == "source.topics: must not be empty"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("batch.max_records: 0 is out of range")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("batch.max_bytes:") && l.contains("wal.max_bytes")),
        "{p:?}"
    );
    assert_eq!(p.len(), 3);
}

#[test]
fn retry_policy_has_defaults_limits_and_checks() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.retry, RetryConfig::default());
    assert!(
        !c.retry.is_spent(1_000, Duration::from_secs(86_400)),
        "unlimited by default"
    );
    let text = MINIMAL.to_string() + "[retry]\nmax_attempts = 3\nmax_elapsed_ms = 1000\n";
    let c = Config::from_toml_str(&text, env(&[])).expect("retry");
    assert!(!c.retry.is_spent(2, Duration::from_millis(10)));
    assert!(c.retry.is_spent(3, Duration::from_millis(10)));
    assert!(c.retry.is_spent(1, Duration::from_millis(1000)));
    let bad = MINIMAL.to_string()
        + "[retry]\ninitial_backoff_ms = 500\nmax_backoff_ms = 100\nmultiplier = 0.5\n";
    let p = problems(&bad);
    assert!(
        p.iter().any(|l| l.starts_with("retry.max_backoff_ms")),
        "{p:?}"
    );
    assert!(p.iter().any(|l| l.starts_with("retry.multiplier")), "{p:?}");
}

#[test]
fn transaction_limits_and_rate_cap_parse_with_defaults() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.transaction.max_records, DEFAULT_TRANSACTION_MAX_RECORDS);
    assert_eq!(c.rate.max_bytes_per_sec, None);
    let text = MINIMAL.to_string()
            + "[transaction]\nmax_records = 1000\nmax_bytes = \"4MiB\"\ncommit_interval_ms = 50\n[rate]\nmax_bytes_per_sec = \"2MiB\"\n";
    let c = Config::from_toml_str(&text, env(&[])).expect("limits");
    assert_eq!(c.transaction.max_records, 1000);
    assert_eq!(c.transaction.max_bytes, 4 << 20);
    assert_eq!(c.transaction.commit_interval_ms, 50);
    assert_eq!(c.rate.max_bytes_per_sec, Some(2 << 20));
    let bad =
        MINIMAL.to_string() + "[transaction]\nmax_records = 0\n[rate]\nmax_bytes_per_sec = 0\n";
    let p = problems(&bad);
    assert!(
        p.iter().any(|l| l.starts_with("transaction.max_records")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.starts_with("rate.max_bytes_per_sec")),
        "{p:?}"
    );
}

#[test]
fn batches_larger_than_a_wal_entry_are_refused() {
    let text = MINIMAL.replace("dir = ", "max_bytes = \"4GiB\"\ndir = ")
        + "[batch]\nmax_bytes = \"1GiB\"\n";
    let p = problems(&text);
    assert!(
        p.iter()
            .any(|l| l.starts_with("batch.max_bytes:") && l.contains("largest WAL entry")),
        "{p:?}"
    );
}

#[test]
fn topics_and_regex_are_exclusive_and_regex_must_compile() {
    let both = MINIMAL.replace(
        "topics = [\"orders\"]",
        "topics = [\"a\"]\ntopic_regex = \"a.*\"",
    );
    assert!(problems(&both)[0].contains("not both"));
    let bad = MINIMAL.replace("topics = [\"orders\"]", "topic_regex = \"(\"");
    assert!(problems(&bad)[0].starts_with("source.topic_regex: is not a valid regular expression"));
}

#[test]
fn start_positions_parse_and_are_checked() {
    let ts = MINIMAL.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nstart = { timestamp_ms = 1700000000000 }",
    );
    let c = Config::from_toml_str(&ts, env(&[])).expect("timestamp");
    assert_eq!(c.source.start, StartPosition::Timestamp(1_700_000_000_000));
    let offsets = MINIMAL.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nstart = { offsets = { \"orders/0\" = 42, \"orders/1\" = 0 } }",
    );
    let c = Config::from_toml_str(&offsets, env(&[])).expect("offsets");
    let StartPosition::Offsets(map) = c.source.start else {
        panic!("offsets")
    };
    assert_eq!(map[&TopicPartition::new("orders", 0)], 42);
    let bad = MINIMAL.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nstart = { offsets = { \"other/0\" = 1, \"orders\" = 2 } }",
    );
    let p = problems(&bad);
    assert!(
        p.iter()
            .any(|l| l.contains("\"other\" is not in source.topics")),
        "{p:?}"
    );
    assert!(p.iter().any(|l| l.contains("not of the form")), "{p:?}");
    let word = MINIMAL.replace(
        "topics = [\"orders\"]",
        "topics = [\"orders\"]\nstart = \"beginning\"",
    );
    assert!(problems(&word)[0].starts_with("source.start: \"beginning\" is not a start position"));
}

#[test]
fn controlled_properties_are_refused_with_the_typed_key_named() {
    let text = MINIMAL.to_string()
        + "[source.properties]\n\"group.id\" = \"x\"\n\"fetch.min.bytes\" = 1\n";
    let text = text.replace(
        "[wal]",
        "[target.properties]\n\"transactional.id\" = \"y\"\n[wal]",
    );
    let p = problems(&text);
    assert!(
        p.iter().any(
            |l| l == "source.properties.\"group.id\": is set by the relay: use source.group_id"
        ),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.contains("use target.transactional_id")),
        "{p:?}"
    );
}

#[test]
fn sasl_needs_mechanism_and_credentials() {
    let text = MINIMAL.replace("[wal]", "[target.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n[wal]");
    let p = problems(&text);
    assert!(p.iter().any(|l| l.contains("needs sasl.username")), "{p:?}");
    assert!(p.iter().any(|l| l.contains("needs sasl.password")), "{p:?}");
}

#[test]
fn environment_overrides_apply_including_the_seed_product_names() {
    let c = Config::from_toml_str(
        MINIMAL,
        env(&[
            ("kafka_address", "seed:9092"),
            ("KAFKA_TOPIC_NAME", "dump"),
            ("KAFKA_RELAY_BATCH__MAX_RECORDS", "10000"),
            ("KAFKA_RELAY_SOURCE__TOPICS", "a,b"),
            ("KAFKA_RELAY_TARGET__PROPERTIES__SASL_PASSWORD", "s3cret"),
            ("KAFKA_RELAY_LOG", "debug"),
            ("UNRELATED", "x"),
        ]),
    )
    .expect("overrides");
    assert_eq!(c.target.bootstrap_servers, "seed:9092");
    assert_eq!(c.target.topic.as_deref(), Some("dump"));
    assert_eq!(c.batch.max_records, 10_000);
    assert_eq!(
        c.source.topics,
        TopicSelection::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(c.target.properties.0["sasl.password"], "s3cret");
}

#[test]
fn numeric_looking_names_from_the_environment_stay_names() {
    let c = Config::from_toml_str(
        MINIMAL,
        env(&[
            ("KAFKA_TOPIC_NAME", "123"),
            ("KAFKA_RELAY_TARGET__TRANSACTIONAL_ID", "42"),
        ]),
    )
    .expect("numeric names");
    assert_eq!(c.target.topic.as_deref(), Some("123"));
    assert_eq!(c.target.transactional_id, "42");
}

#[test]
fn human_byte_sizes_are_accepted() {
    let text = MINIMAL.replace("dir = ", "max_bytes = \"2GiB\"\ndir = ")
        + "[batch]\nmax_bytes = \"512KiB\"\n";
    let c = Config::from_toml_str(&text, env(&[])).expect("sizes");
    assert_eq!(c.wal.max_bytes, 2 << 30);
    assert_eq!(c.batch.max_bytes, 512 << 10);
    let bad = MINIMAL.replace("dir = ", "max_bytes = \"lots\"\ndir = ");
    assert!(problems(&bad)[0].starts_with("wal.max_bytes: \"lots\" is not a size"));
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let text = MINIMAL.replace("topics = [\"orders\"]", "topics = [\"orders\"]\ntopicz = 1");
    let err = Config::from_toml_str(&text, env(&[])).expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("topicz") && msg.contains("line"), "{msg}");
}

#[test]
fn secrets_never_appear_in_debug_or_summary() {
    let text = MINIMAL.replace(
            "[wal]",
            "[target.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"hunter2-secret\"\n[wal]",
        );
    let c = Config::from_toml_str(&text, env(&[])).expect("config");
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!c.redacted_summary().contains("hunter2"));
    assert!(c.redacted_summary().contains("sasl.username"));
}
