//! Unit tests of `config`.

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
    let c = Config::from_toml_str(include_str!("../../examples/relay.toml"), env(&[]))
        .expect("example");
    assert_eq!(c.format, Format::Raw);
    assert!(matches!(c.source.topics, TopicSelection::List(_)));
    assert_eq!(
        c.target.topic_configs_exclude, DEFAULT_TOPIC_CONFIGS_EXCLUDE,
        "the example shows the default"
    );
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
    assert_eq!(
        problems(&bad),
        ["source.topic_regex: is not a valid regular expression: unclosed group"]
    );
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
            (
                "KAFKA_RELAY_TARGET__PROPERTIES__SECURITY_PROTOCOL",
                "SASL_PLAINTEXT",
            ),
            ("KAFKA_RELAY_TARGET__PROPERTIES__SASL_MECHANISM", "PLAIN"),
            ("KAFKA_RELAY_TARGET__PROPERTIES__SASL_USERNAME", "relay"),
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

/// Problems for `MINIMAL` with `extra` added under `[wal]` (so it can open
/// sections of its own) or with a replacement in it.
fn problems_with(from: &str, to: &str) -> Vec<String> {
    assert!(MINIMAL.contains(from), "{from:?} is not in MINIMAL");
    problems(&MINIMAL.replace(from, to))
}

fn has(p: &[String], line: &str) -> bool {
    p.iter().any(|l| l == line)
}

fn has_prefix(p: &[String], start: &str) -> bool {
    p.iter().any(|l| l.starts_with(start))
}

#[test]
fn missing_required_keys_are_all_named() {
    let p = problems("");
    for line in [
        "source.bootstrap_servers: missing (required)",
        "source.topics: missing: set source.topics (a list) or source.topic_regex",
        "target.bootstrap_servers: missing (required)",
        "target.transactional_id: missing (required)",
        "wal.dir: missing (required)",
    ] {
        assert!(has(&p, line), "{line:?} not in {p:?}");
    }
    assert_eq!(p.len(), 5, "{p:?}");
}

#[test]
fn blank_names_are_refused() {
    let text = MINIMAL
        .replace("\"relay-1\"", "\"\"")
        .replace("\"src:9092\"", "\" \"")
        .replace("[source]", "relay_id = \"\"\n[source]")
        .replace(
            "topics = [\"orders\"]",
            "topics = [\"orders\"]\ngroup_id = \"\"",
        );
    let p = problems(&text);
    for line in [
        "relay_id: must not be empty",
        "source.bootstrap_servers: must not be empty",
        "source.group_id: must not be empty",
        "target.transactional_id: must not be empty",
    ] {
        assert!(has(&p, line), "{line:?} not in {p:?}");
    }
}

#[test]
fn topic_names_follow_kafka_rules() {
    let p = problems_with("[\"orders\"]", "[\"orders\", \"bad name\", \"\"]");
    assert!(
        has(&p, "source.topics: \"bad name\" is not a valid topic name: use letters, digits, '.', '_' and '-'"),
        "{p:?}"
    );
    assert!(
        has(&p, "source.topics: topic names must not be empty"),
        "{p:?}"
    );
    let p = problems_with("transactional_id", "topic = \"a/b\"\ntransactional_id");
    assert!(
        p[0].starts_with("target.topic: \"a/b\" is not a valid topic name"),
        "{p:?}"
    );
    let p = problems_with("[wal]", "[dlq]\ntopic = \"..\"\n[wal]");
    assert_eq!(p, ["dlq.topic: \"..\" is not a valid topic name"]);
}

#[test]
fn nothing_may_be_written_into_the_checkpoint_topic() {
    let p = problems_with(
        "transactional_id",
        "topic = \"cp\"\ncheckpoint_topic = \"cp\"\ntransactional_id",
    );
    assert_eq!(
        p,
        ["target.topic: must differ from target.checkpoint_topic (\"cp\")"]
    );
    let p = problems_with(
        "transactional_id",
        "checkpoint_topic = \"orders\"\ntransactional_id",
    );
    assert!(
        p[0].starts_with(
            "source.topics: \"orders\" would be copied into the target's checkpoint topic"
        ),
        "{p:?}"
    );
    let p = problems_with(
        "[wal]",
        "[dlq]\ntopic = \"__kafka_relay_checkpoints.relay-1\"\n[wal]",
    );
    assert!(
        p[0].starts_with("dlq.topic: must differ from target.checkpoint_topic"),
        "{p:?}"
    );
}

#[test]
fn start_position_mistakes_are_named() {
    let start = |s: &str| {
        problems_with(
            "topics = [\"orders\"]",
            &format!("topics = [\"orders\"]\nstart = {s}"),
        )
    };
    assert_eq!(
        start("{ timestamp_ms = -1 }"),
        ["source.start.timestamp_ms: must not be negative"]
    );
    assert_eq!(
        start("{ timestamp_ms = \"yesterday\" }"),
        ["source.start.timestamp_ms: must be an integer: milliseconds since the epoch"]
    );
    assert!(start("{ timestamp = 5 }")[0]
        .starts_with("source.start: \"timestamp\" is not a start position"));
    assert!(start("5")[0].starts_with("source.start: is not a start position"));
    assert_eq!(
        start("{ offsets = { \"orders/0\" = -3 } }"),
        ["source.start.offsets: offset for \"orders/0\" must not be negative"]
    );
    assert_eq!(
        start("{ offsets = { \"orders/x\" = 1 } }"),
        ["source.start.offsets: \"orders/x\" is not of the form \"topic/partition\""]
    );
    // With a regex the topics are not known at load; the form still is.
    let c = Config::from_toml_str(
        &MINIMAL.replace(
            "topics = [\"orders\"]",
            "topic_regex = \"^o\"\nstart = { offsets = { \"other/1\" = 7 } }",
        ),
        env(&[]),
    )
    .expect("regex with offsets");
    assert_eq!(
        c.source.start,
        StartPosition::Offsets([(TopicPartition::new("other", 1), 7)].into())
    );
    let c = Config::from_toml_str(
        &MINIMAL.replace(
            "topics = [\"orders\"]",
            "topics = [\"orders\"]\nstart = \"latest\"",
        ),
        env(&[]),
    )
    .expect("latest");
    assert_eq!(c.source.start, StartPosition::Latest);
}

#[test]
fn sizes_must_be_positive_and_well_formed() {
    assert_eq!(
        problems_with("dir = ", "max_bytes = -5\ndir = "),
        ["wal.max_bytes: must not be negative"]
    );
    assert_eq!(
        problems_with("[wal]", "[record]\nmax_bytes = 0\n[wal]"),
        ["record.max_bytes: must be greater than 0"]
    );
    assert!(problems_with("dir = ", "max_bytes = true\ndir = ")[0]
        .starts_with("wal.max_bytes: must be a number of bytes or a size"));
    // 0 turns the free-space check off.
    let c = Config::from_toml_str(
        &MINIMAL.replace("dir = ", "min_free_bytes = 0\ndir = "),
        env(&[]),
    )
    .expect("min_free_bytes = 0");
    assert_eq!(c.wal.min_free_bytes, 0);
}

#[test]
fn human_byte_size_units() {
    for (text, bytes) in [
        ("\"512MB\"", 512_000_000),
        ("\"512MiB\"", 512 << 20),
        ("\"1 GB\"", 1_000_000_000),
        ("\"64 KiB\"", 64 << 10),
        ("\"1048576\"", 1 << 20),
        ("1048576", 1 << 20),
    ] {
        let c = Config::from_toml_str(
            &(MINIMAL.to_string() + &format!("[transaction]\nmax_bytes = {text}\n")),
            env(&[]),
        )
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.transaction.max_bytes, bytes, "{text}");
    }
}

#[test]
fn target_transaction_timeout_has_a_floor() {
    assert_eq!(
        problems_with(
            "transactional_id",
            "transaction_timeout_ms = 10\ntransactional_id"
        ),
        ["target.transaction_timeout_ms: must be at least 1000"]
    );
}

#[test]
fn every_controlled_property_names_where_its_setting_lives() {
    for (section, key, hint) in [
        (
            "source",
            "bootstrap.servers",
            "use the typed key source.bootstrap_servers",
        ),
        (
            "target",
            "bootstrap.servers",
            "use the typed key target.bootstrap_servers",
        ),
        (
            "target",
            "metadata.broker.list",
            "use the typed key target.bootstrap_servers",
        ),
        ("source", "group.id", "use source.group_id"),
        ("target", "transactional.id", "use target.transactional_id"),
        (
            "target",
            "transaction.timeout.ms",
            "use target.transaction_timeout_ms",
        ),
        ("source", "isolation.level", "always reads read_committed"),
        (
            "source",
            "enable.auto.commit",
            "commits source offsets itself",
        ),
        ("target", "enable.idempotence", "always idempotent"),
        ("source", "auto.offset.reset", "use source.start"),
        ("target", "linger.ms", "[transaction]"),
    ] {
        let p = problems_with(
            "[wal]",
            &format!("[{section}.properties]\n\"{key}\" = \"x\"\n[wal]"),
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with(&format!(
                "{section}.properties.\"{key}\": is set by the relay: "
            )) && p[0].contains(hint),
            "{section} {key}: {p:?}"
        );
    }
    // linger.ms means nothing to the consumer but is not the relay's there either.
    Config::from_toml_str(
        &MINIMAL.replace("[wal]", "[source.properties]\n\"linger.ms\" = 5\n[wal]"),
        env(&[]),
    )
    .expect("source linger.ms");
    let p = problems_with("[wal]", "[target.properties]\n\"acks\" = 1\n[wal]");
    assert!(
        p[0].starts_with(
            "target.properties.\"acks\": is \"1\", but the transactional producer needs \"all\""
        ),
        "{p:?}"
    );
}

#[test]
fn properties_are_stringified_and_passed_through_with_bootstrap() {
    let c = Config::from_toml_str(
        &MINIMAL.replace(
            "[wal]",
            "[source.properties]\n\"fetch.max.bytes\" = 52428800\n\"check.crcs\" = true\n[target.properties]\n\"compression.type\" = \"zstd\"\n[wal]",
        ),
        env(&[]),
    )
    .expect("properties");
    let src = c.source_client_config();
    assert_eq!(src["fetch.max.bytes"], "52428800");
    assert_eq!(src["check.crcs"], "true");
    assert_eq!(src["bootstrap.servers"], "src:9092");
    let dst = c.target_client_config();
    assert_eq!(dst["compression.type"], "zstd");
    assert_eq!(dst["bootstrap.servers"], "dst:9092");
    let p = problems_with("[wal]", "[source.properties]\n\"x\" = [1]\n[wal]");
    assert_eq!(
        p,
        ["source.properties.\"x\": must be a string, number or boolean"]
    );
}

#[test]
fn security_settings_are_sane() {
    let sec = |props: &str| problems_with("[wal]", &format!("[source.properties]\n{props}\n[wal]"));
    let p = sec("\"security.protocol\" = \"SASL_SSL\"");
    assert_eq!(
        p,
        ["source.properties.\"sasl.mechanism\": security.protocol is SASL_SSL: set sasl.mechanism (e.g. PLAIN)"]
    );
    let p = sec("\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"");
    assert_eq!(
        p,
        ["source.properties.\"sasl.password\": sasl.mechanism SCRAM-SHA-512 needs sasl.password"]
    );
    let p = sec("\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"plain\"");
    assert!(
        p[0].starts_with("source.properties.\"sasl.mechanism\": \"plain\" is not a SASL mechanism"),
        "{p:?}"
    );
    let p = sec("\"security.protocol\" = \"TLS\"");
    assert!(
        p[0].starts_with(
            "source.properties.\"security.protocol\": \"TLS\" is not a security protocol"
        ),
        "{p:?}"
    );
    let p = sec("\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"");
    assert!(
        p[0].starts_with(
            "source.properties.\"security.protocol\": is PLAINTEXT but sasl.username is set"
        ),
        "{p:?}"
    );
    // The seed product's two modes are fine; GSSAPI needs no password.
    for ok in [
        "\"security.protocol\" = \"PLAINTEXT\"",
        "\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"",
        "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"GSSAPI\"",
    ] {
        Config::from_toml_str(&MINIMAL.replace("[wal]", &format!("[source.properties]\n{ok}\n[wal]")), env(&[]))
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn environment_override_precedence_and_order_independence() {
    let vars = [
        ("KAFKA_ADDRESS", "seed:9092"),
        ("KAFKA_RELAY_TARGET__BOOTSTRAP_SERVERS", "ours:9092"),
        ("KAFKA_RELAY_SOURCE__START__TIMESTAMP_MS", "1700000000000"),
        ("KAFKA_RELAY_ENABLED", "false"),
        ("KAFKA_RELAY_FORMAT", "envelope"),
        ("KAFKA_RELAY_WAL__MAX_BYTES", "2GiB"),
    ];
    let forward = Config::from_toml_str(MINIMAL, env(&vars)).expect("forward");
    let mut reversed = env(&vars);
    reversed.reverse();
    let backward = Config::from_toml_str(MINIMAL, reversed).expect("backward");
    assert_eq!(forward, backward);
    assert_eq!(forward.target.bootstrap_servers, "ours:9092");
    assert_eq!(
        forward.source.start,
        StartPosition::Timestamp(1_700_000_000_000)
    );
    assert!(!forward.enabled);
    assert_eq!(forward.format, Format::Envelope);
    assert_eq!(forward.wal.max_bytes, 2 << 30);
    let c = Config::from_toml_str(
        MINIMAL,
        env(&[(
            "KAFKA_RELAY_SOURCE__START",
            "{ offsets = { \"orders/0\" = 5 } }",
        )]),
    )
    .expect("inline table");
    assert_eq!(
        c.source.start,
        StartPosition::Offsets([(TopicPartition::new("orders", 0), 5)].into())
    );
    let p = match Config::from_toml_str(
        MINIMAL,
        env(&[("kafka_address", "a:9092"), ("KAFKA_ADDRESS", "b:9092")]),
    ) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(
        p[0].to_string()
            .contains("set by both KAFKA_ADDRESS and kafka_address"),
        "{p:?}"
    );
}

#[test]
fn the_environment_can_supply_required_keys() {
    let text = MINIMAL.replace("bootstrap_servers = \"dst:9092\"\n", "");
    let c = Config::from_toml_str(&text, env(&[("kafka_address", "seed:9092")])).expect("env");
    assert_eq!(c.target.bootstrap_servers, "seed:9092");
    assert_eq!(
        problems(&text),
        ["target.bootstrap_servers: missing (required)"]
    );
}

#[test]
fn bad_environment_overrides_name_the_variable() {
    let err = Config::from_toml_str(
        MINIMAL,
        env(&[
            ("KAFKA_RELAY_BATCH__MAX_RECORDS", "lots"),
            ("KAFKA_RELAY_SOURCE__TOPICZ", "a"),
            ("KAFKA_RELAY_TARGET__TOPIC", "fine"),
        ]),
    )
    .expect_err("bad overrides");
    let ConfigError::Invalid(p) = &err else {
        panic!("{err:?}")
    };
    let lines: Vec<String> = p.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0]
            .starts_with("batch.max_records: from KAFKA_RELAY_BATCH__MAX_RECORDS: invalid type"),
        "{lines:?}"
    );
    assert!(
        lines[1]
            .starts_with("source.topicz: from KAFKA_RELAY_SOURCE__TOPICZ: unknown field `topicz`"),
        "{lines:?}"
    );
    let p = match Config::from_toml_str(MINIMAL, env(&[("KAFKA_RELAY_SORCE__TOPICS", "a")])) {
        Err(ConfigError::Invalid(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(
        p[0].to_string()
            .starts_with("KAFKA_RELAY_SORCE__TOPICS: no section \"sorce\""),
        "{p:?}"
    );
    // Not configuration: ignored.
    Config::from_toml_str(
        MINIMAL,
        env(&[
            ("KAFKA_RELAY_TEST_SEED", "1"),
            ("KAFKA_RELAY_LOG_FORMAT", "json"),
        ]),
    )
    .expect("non-config variables");
}

#[test]
fn file_errors_keep_their_position_even_with_overrides() {
    let text = MINIMAL.replace("topics = [\"orders\"]", "topics = [\"orders\"]\ntopicz = 1");
    let err = Config::from_toml_str(&text, env(&[("KAFKA_TOPIC_NAME", "t")])).expect_err("unknown");
    assert!(
        err.to_string()
            .starts_with("line 5, column 1: unknown field `topicz`"),
        "{err}"
    );
}

#[test]
fn parse_errors_name_the_file_line_and_column_but_never_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("relay.toml");
    let text = MINIMAL.replace(
        "[wal]",
        "[target.properties]\n\"sasl.password\" = hunter2\n[wal]",
    );
    std::fs::write(&path, text).expect("write");
    let err = Config::load(&path, env(&[])).expect_err("syntax error");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:9:19: invalid string", path.display())),
        "{msg}"
    );
    assert!(
        !msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{msg}"
    );
    let missing = dir.path().join("nope.toml");
    let err = Config::load(&missing, env(&[])).expect_err("no file");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read {}", missing.display())),
        "{err}"
    );
}

#[test]
fn misplaced_keys_get_a_hint() {
    let err = Config::from_toml_str(&(MINIMAL.to_string() + "format = \"raw\"\n"), env(&[]))
        .expect_err("format under [wal]");
    assert!(
        err.to_string()
            .contains("top-level key: put it above the first [section] header"),
        "{err}"
    );
    let err = Config::from_toml_str(
        &MINIMAL.replace(
            "topics = [\"orders\"]",
            "topics = [\"orders\"]\nsecurity.protocol = \"SASL_PLAINTEXT\"",
        ),
        env(&[]),
    )
    .expect_err("property in [source]");
    assert!(err.to_string().contains("[….properties] table"), "{err}");
}

#[test]
fn helpers_resolve_defaults_and_overrides() {
    let c = Config::from_toml_str(
        &MINIMAL
            .replace("[source]", "relay_id = \"eu-to-us\"\n[source]")
            .replace("transactional_id", "topic = \"all\"\ntransactional_id"),
        env(&[]),
    )
    .expect("config");
    assert_eq!(c.relay_id(), "eu-to-us");
    assert_eq!(c.group_id(), "kafka-relay-eu-to-us");
    assert_eq!(
        c.target.checkpoint_topic,
        "__kafka_relay_checkpoints.eu-to-us"
    );
    assert_eq!(c.target_topic_for("orders"), "all");
}

#[test]
fn every_secret_kind_is_redacted() {
    let secrets = [
        ("sasl.password", "pw-1"),
        ("sasl.jaas.config", "jaas-2"),
        ("ssl.key.pem", "pem-3"),
        ("ssl.key.password", "keypw-4"),
        ("sasl.oauthbearer.client.secret", "oauth-5"),
        ("sasl.oauthbearer.config", "cfg-6"),
        ("some.token", "tok-7"),
    ];
    let props: String = secrets
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
        .collect::<String>()
        + "\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"u\"\n";
    let c = Config::from_toml_str(
        &MINIMAL.replace(
            "[wal]",
            &format!("[source.properties]\n{props}[target.properties]\n{props}[wal]"),
        ),
        env(&[(
            "KAFKA_RELAY_TARGET__PROPERTIES__SSL_KEYSTORE_PASSWORD",
            "env-8",
        )]),
    )
    .expect("config");
    let shown = format!("{c:?}\n{}", c.redacted_summary());
    for v in secrets.iter().map(|(_, v)| *v).chain(["env-8"]) {
        assert!(!shown.contains(v), "{v} leaked:\n{shown}");
    }
    assert!(shown.contains("\"sasl.password\": \"***\""), "{shown}");
    // The clients still get the real values.
    assert_eq!(c.target_client_config()["sasl.password"], "pw-1");
}

#[test]
fn every_key_of_the_example_is_documented() {
    let docs = include_str!("../../docs/configuration.md");
    let example: toml::Table =
        toml::from_str(include_str!("../../examples/relay.toml")).expect("example");
    for (key, value) in &example {
        match value {
            toml::Value::Table(section) => {
                assert!(
                    docs.contains(&format!("## `[{key}]`")),
                    "section [{key}] undocumented"
                );
                assert!(
                    env::SECTIONS.contains(&key.as_str()),
                    "[{key}] not in env::SECTIONS"
                );
                for k in section.keys().filter(|k| *k != "properties") {
                    assert!(
                        docs.contains(&format!("| `{k}` |")),
                        "{key}.{k} undocumented"
                    );
                }
            }
            _ => {
                assert!(docs.contains(&format!("| `{key}` |")), "{key} undocumented");
                assert!(
                    env::TOP_LEVEL.contains(&key.as_str()),
                    "{key} not in env::TOP_LEVEL"
                );
            }
        }
    }
}

#[test]
fn disabled_relays_still_validate() {
    let c =
        Config::from_toml_str(&format!("enabled = false\n{MINIMAL}"), env(&[])).expect("disabled");
    assert!(!c.enabled);
    assert!(c.redacted_summary().contains("(disabled)"));
    let p = problems(&format!(
        "enabled = false\n{}",
        MINIMAL.replace("[\"orders\"]", "[]")
    ));
    assert_eq!(p, ["source.topics: must not be empty"]);
}

#[test]
fn the_smallest_example_in_the_docs_parses() {
    let docs = include_str!("../../docs/configuration.md");
    let start = docs.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let end = start + docs[start..].find("```").expect("its end");
    let c = Config::from_toml_str(&docs[start..end], env(&[])).expect("docs example");
    assert_eq!(c.relay_id(), "kafka-relay-eu-to-us");
}

#[test]
fn admin_listener_is_off_by_default_and_needs_an_address_with_a_port() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.admin.listen, None);
    let c = Config::from_toml_str(
        &format!("{MINIMAL}\n[admin]\nlisten = \"127.0.0.1:9644\"\n"),
        env(&[]),
    )
    .expect("admin");
    assert_eq!(
        c.admin.listen,
        Some("127.0.0.1:9644".parse().expect("addr"))
    );
    let c = Config::from_toml_str(MINIMAL, env(&[("KAFKA_RELAY_ADMIN__LISTEN", "[::1]:9000")]))
        .expect("admin from env");
    assert_eq!(c.admin.listen, Some("[::1]:9000".parse().expect("addr")));
    let p = problems(&format!("{MINIMAL}\n[admin]\nlisten = \"localhost\"\n"));
    assert_eq!(
        p,
        ["admin.listen: \"localhost\" is not an address and port such as \"127.0.0.1:9644\" (or a port alone, for loopback)"]
    );
    let c = Config::from_toml_str(
        &format!("{MINIMAL}\n[admin]\nlisten = \"9644\"\n"),
        env(&[]),
    )
    .expect("port alone");
    assert_eq!(
        c.admin.listen,
        Some("127.0.0.1:9644".parse().expect("addr"))
    );
}

#[test]
fn the_admin_token_comes_from_the_file_the_environment_or_a_file_and_is_never_shown() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("token");
    std::fs::write(&file, "t0ken-from-file\n").expect("write");
    let c = Config::from_toml_str(
        &format!(
            "{MINIMAL}\n[admin]\nlisten = \"9644\"\ntoken_file = \"{}\"\n",
            file.display()
        ),
        env(&[]),
    )
    .expect("token file");
    assert_eq!(
        c.admin.token.as_ref().map(Secret::expose),
        Some("t0ken-from-file")
    );
    assert_eq!(c.admin.open_paths, DEFAULT_ADMIN_OPEN_PATHS);
    assert!(!format!("{c:?}").contains("t0ken"), "token in Debug");
    assert!(!c.redacted_summary().contains("t0ken"));
    let c = Config::from_toml_str(MINIMAL, env(&[("KAFKA_RELAY_ADMIN__TOKEN", "12345")]))
        .expect("token from env");
    assert_eq!(c.admin.token.as_ref().map(Secret::expose), Some("12345"));
    let p = problems(&format!(
        "{MINIMAL}\n[admin]\ntoken = \"x\"\ntoken_file = \"{}\"\nopen_paths = [\"/pause\"]\n",
        file.display()
    ));
    assert!(
        has(
            &p,
            "admin.token: set admin.token or admin.token_file, not both"
        ),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("admin.open_paths: \"/pause\" cannot be opened")),
        "{p:?}"
    );
    let p = problems(&format!(
        "{MINIMAL}\n[admin]\ntoken_file = \"/nonexistent/token\"\n"
    ));
    assert!(
        p.iter()
            .any(|l| l.starts_with("admin.token_file: cannot read /nonexistent/token")),
        "{p:?}"
    );
}

#[test]
fn client_secrets_come_from_files_and_never_show() {
    let dir = tempfile::tempdir().expect("dir");
    let password = dir.path().join("password");
    std::fs::write(&password, "pa55word-in-file\r\n").expect("write");
    let key_password = dir.path().join("key-password");
    std::fs::write(&key_password, "k3y").expect("write");
    let sasl = "[source.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"relay\"\n";
    let text = MINIMAL.replace(
        "topics = [\"orders\"]",
        &format!(
            "topics = [\"orders\"]\npassword_file = \"{}\"",
            password.display()
        ),
    ) + sasl
        + &format!(
            "[target.property_files]\n\"ssl.key.password\" = \"{}\"\n",
            key_password.display()
        );
    let c = Config::from_toml_str(&text, env(&[])).expect("secret files");
    assert_eq!(
        c.source
            .properties
            .0
            .get("sasl.password")
            .map(String::as_str),
        Some("pa55word-in-file")
    );
    assert_eq!(
        c.target
            .properties
            .0
            .get("ssl.key.password")
            .map(String::as_str),
        Some("k3y")
    );
    let shown = format!("{c:?}{}", c.redacted_summary());
    assert!(
        !shown.contains("pa55word") && !shown.contains("k3y"),
        "{shown}"
    );
    // The file's path can come from the environment too.
    let c = Config::from_toml_str(
        &(MINIMAL.to_string() + sasl),
        env(&[(
            "KAFKA_RELAY_SOURCE__PROPERTY_FILES__SASL_PASSWORD",
            password.to_str().expect("path"),
        )]),
    )
    .expect("file from env");
    assert_eq!(
        c.source
            .properties
            .0
            .get("sasl.password")
            .map(String::as_str),
        Some("pa55word-in-file")
    );
    // Set twice, or a file that is not there: each named.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").expect("write");
    let p = problems(
        &(MINIMAL.replace(
            "transactional_id = \"relay-1\"",
            "transactional_id = \"relay-1\"\npassword_file = \"/nonexistent/pw\"",
        ) + sasl
            + "\"sasl.password\" = \"inline\"\n"
            + &format!(
                "[source.property_files]\n\"sasl.password\" = \"{}\"\n\"ssl.key.password\" = \"{}\"\n",
                password.display(),
                empty.display()
            )),
    );
    assert!(
        p.iter().any(|l| l
            .starts_with("source.property_files.\"sasl.password\": \"sasl.password\" is also set")),
        "{p:?}"
    );
    assert!(
        p.iter().any(
            |l| l.starts_with("source.property_files.\"ssl.key.password\": ")
                && l.ends_with("is empty")
        ),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("target.password_file: cannot read /nonexistent/pw")),
        "{p:?}"
    );
    assert!(!p.join("\n").contains("pa55word"), "{p:?}");
}

#[test]
fn target_topic_management_is_on_by_default_with_mirror_maker_2s_exclusions() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert!(c.target.create_topics);
    assert_eq!(
        c.target.sync_topics_interval_secs,
        DEFAULT_SYNC_TOPICS_INTERVAL_SECS
    );
    assert_eq!(c.target.topic_configs_include, None);
    assert_eq!(
        c.target.topic_configs_exclude,
        DEFAULT_TOPIC_CONFIGS_EXCLUDE
    );
    let c = Config::from_toml_str(
        &MINIMAL.replace(
            "transactional_id",
            "create_topics = false\nsync_topics_interval_secs = 0\ntopic_configs_include = ['retention\\..*']\ntopic_configs_exclude = []\ntransactional_id",
        ),
        env(&[]),
    )
    .expect("topic keys");
    assert!(!c.target.create_topics);
    assert_eq!(c.target.sync_topics_interval_secs, 0);
    assert_eq!(
        c.target.topic_configs_include,
        Some(vec![r"retention\..*".to_string()])
    );
    assert!(c.target.topic_configs_exclude.is_empty());
}

#[test]
fn topic_config_patterns_must_compile_and_not_be_empty() {
    let p = problems_with(
        "transactional_id",
        "topic_configs_exclude = ['(', '']\ntopic_configs_include = ['a)|(b']\ntransactional_id",
    );
    assert_eq!(
        p,
        [
            "target.topic_configs_exclude: \"(\" is not a valid regular expression: unclosed group",
            "target.topic_configs_exclude: an empty pattern matches no key: leave it out",
            "target.topic_configs_include: \"a)|(b\" is not a valid regular expression: unopened group",
        ]
    );
}

#[test]
fn topic_config_patterns_from_the_environment_are_lists_of_text() {
    let c = Config::from_toml_str(
        MINIMAL,
        env(&[
            (
                "KAFKA_RELAY_TARGET__TOPIC_CONFIGS_EXCLUDE",
                r"min\.insync\.replicas,123",
            ),
            (
                "KAFKA_RELAY_TARGET__TOPIC_CONFIGS_INCLUDE",
                r#"['retention\.(ms|bytes)', 'a{1,2}']"#,
            ),
            ("KAFKA_RELAY_TARGET__CREATE_TOPICS", "false"),
            ("KAFKA_RELAY_TARGET__SYNC_TOPICS_INTERVAL_SECS", "30"),
        ]),
    )
    .expect("overrides");
    assert_eq!(
        c.target.topic_configs_exclude,
        [r"min\.insync\.replicas", "123"]
    );
    assert_eq!(
        c.target.topic_configs_include,
        Some(vec![
            r"retention\.(ms|bytes)".to_string(),
            "a{1,2}".to_string()
        ])
    );
    assert!(!c.target.create_topics);
    assert_eq!(c.target.sync_topics_interval_secs, 30);
}

#[test]
fn scale_names_its_units_and_checks_them() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.scale, None);
    assert_eq!(c.unit, None);
    let c = Config::from_toml_str(&(MINIMAL.to_string() + "[scale]\nunits = 12\n"), env(&[]))
        .expect("scale");
    assert_eq!(
        c.scale,
        Some(ScaleConfig {
            units: 12,
            session_timeout_ms: DEFAULT_SESSION_TIMEOUT_MS,
            units_topic: "__kafka_relay_units.relay-1".to_string(),
        })
    );
    let p = problems(&(MINIMAL.to_string() + "[scale]\nsession_timeout_ms = 10\n"));
    assert!(
        has(&p, "scale.units: missing (required in [scale])"),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("scale.session_timeout_ms: 10 is out of range")),
        "{p:?}"
    );
    let p = problems(&(MINIMAL.to_string() + "[scale]\nunits = 0\nunits_topic = \"a b\"\n"));
    assert!(
        has(&p, "scale.units: 0 is out of range: 1 to 1024"),
        "{p:?}"
    );
    assert!(
        p.iter().any(|l| l.starts_with("scale.units_topic:")),
        "{p:?}"
    );
    // Each unit's WAL gets wal.max_bytes / units, which must hold a batch.
    let p = problems(
        &(MINIMAL.replace("dir = ", "max_bytes = \"8MiB\"\ndir = ")
            + "[batch]\nmax_bytes = \"1MiB\"\n[scale]\nunits = 16\n"),
    );
    assert!(
        p.iter()
            .any(|l| l.starts_with("scale.units: wal.max_bytes / scale.units = 524288 bytes")),
        "{p:?}"
    );
    // The units come from the environment too.
    let c = Config::from_toml_str(
        &(MINIMAL.to_string() + "[scale]\nunits = 2\n"),
        env(&[("KAFKA_RELAY_SCALE__UNITS", "6")]),
    )
    .expect("env");
    assert_eq!(c.scale.map(|s| s.units), Some(6));
}

#[test]
fn admin_tls_needs_a_certificate_and_a_key_that_can_be_read() {
    let dir = tempfile::tempdir().expect("dir");
    let cert = dir.path().join("admin.crt");
    std::fs::write(&cert, "pem").expect("write");
    let c = Config::from_toml_str(
        &format!(
            "{MINIMAL}\n[admin]\nlisten = \"9644\"\ntls_cert_file = \"{0}\"\ntls_key_file = \"{0}\"\n",
            cert.display()
        ),
        env(&[]),
    )
    .expect("tls");
    let tls = c.admin.tls.expect("tls set");
    // A self-signed certificate is its own CA for the command line.
    assert_eq!(tls.ca_file, cert);
    let p = problems(&format!(
        "{MINIMAL}\n[admin]\ntls_cert_file = \"{}\"\n",
        cert.display()
    ));
    assert!(
        has(
            &p,
            "admin.tls_cert_file: set both admin.tls_cert_file and admin.tls_key_file, or neither"
        ),
        "{p:?}"
    );
    let p = problems(&format!(
        "{MINIMAL}\n[admin]\ntls_cert_file = \"{}\"\ntls_key_file = \"/nonexistent/admin.key\"\n",
        cert.display()
    ));
    assert!(
        p.iter()
            .any(|l| l.starts_with("admin.tls_key_file: cannot read /nonexistent/admin.key")),
        "{p:?}"
    );
}

/// `wal.encryption_key_file`: absent means no key; present, the file is
/// read and checked at load, and a problem names the key, never its content.
#[test]
fn wal_encryption_key_file_is_read_and_checked_at_load() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.wal.encryption_key_file, None);
    assert_eq!(c.wal_key(), None);

    let dir = tempfile::tempdir().expect("tempdir");
    let hex = "5f".repeat(32);
    let good = dir.path().join("wal.key");
    std::fs::write(&good, format!("{hex}\n")).expect("write");
    let with = |path: &std::path::Path| {
        MINIMAL.replace(
            "dir = ",
            &format!(
                "encryption_key_file = {:?}\ndir = ",
                path.display().to_string()
            ),
        )
    };
    let c = Config::from_toml_str(&with(&good), env(&[])).expect("a good key file");
    let key = c.wal_key().expect("a key");
    assert_eq!(key, crate::wal::WalKey::from_hex(&hex).expect("hex"));
    assert!(!format!("{c:?}").contains(&hex[..16]), "Debug shows no key");
    assert!(c
        .redacted_summary()
        .contains(&format!("key id {}", key.id())));
    assert!(!c.redacted_summary().contains(&hex[..16]));
    // Also from the environment, as text.
    let c = Config::from_toml_str(
        MINIMAL,
        env(&[(
            "KAFKA_RELAY_WAL__ENCRYPTION_KEY_FILE",
            &good.display().to_string(),
        )]),
    )
    .expect("from the environment");
    assert_eq!(c.wal_key(), Some(key));

    let short = dir.path().join("short.key");
    std::fs::write(&short, &hex[..40]).expect("write");
    let not_hex = dir.path().join("not-hex.key");
    std::fs::write(&not_hex, "zz".repeat(32)).expect("write");
    let missing = dir.path().join("missing.key");
    for (path, says) in [
        (&short, "holds 40 characters"),
        (&not_hex, "not hexadecimal"),
        (&missing, "cannot read"),
    ] {
        let p = problems(&with(path));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("wal.encryption_key_file: "), "{p:?}");
        assert!(p[0].contains(says), "{p:?}");
        assert!(
            !p[0].contains(&hex[..16]) && !p[0].contains("zzzz"),
            "{p:?}"
        );
    }
    assert_eq!(
        problems_with("dir = ", "encryption_key_file = \"\"\ndir = "),
        ["wal.encryption_key_file: must not be empty (leave it out for no encryption)"]
    );
}

#[test]
fn offsets_write_a_map_by_default_names_and_checks_its_groups_and_needs_partitions_that_map() {
    let c = Config::from_toml_str(MINIMAL, env(&[])).expect("minimal");
    assert_eq!(c.offsets, None, "no map without [offsets]");
    let c = Config::from_toml_str(&(MINIMAL.to_string() + "[offsets]\n"), env(&[]))
        .expect("empty [offsets]");
    assert_eq!(
        c.offsets,
        Some(OffsetsConfig {
            groups: vec![],
            interval_secs: 30,
            map_topic: DEFAULT_MAP_TOPIC.to_string(),
            map_retention_ms: 7 * 24 * 3600 * 1000,
            map_retention_bytes: 1 << 30,
        })
    );
    let p = problems(
        &(MINIMAL.to_string()
            + "[offsets]\ngroups = [\"app-(\", \"\"]\ninterval_secs = 0\nmap_retention_ms = 1000\nmap_topic = \"a b\"\n"),
    );
    for start in [
        "offsets.groups: \"app-(\" is not a valid regular expression",
        "offsets.groups: an empty pattern matches no key",
        "offsets.interval_secs: 0 is out of range: 1 to 86400",
        "offsets.map_retention_ms: 1000 is below 60000",
        "offsets.map_topic:",
    ] {
        assert!(has_prefix(&p, start), "{start}: {p:?}");
    }
    let with_offsets = |topics: &str, target: &str, offsets: &str| {
        problems(
            &MINIMAL
                .replace("topics = [\"orders\"]", topics)
                .replace(
                    "transactional_id = \"relay-1\"",
                    &format!("transactional_id = \"relay-1\"\n{target}"),
                )
                .replace("[wal]", &format!("[offsets]\n{offsets}\n[wal]")),
        )
    };
    // Records spread by key: no source offset maps to one target offset.
    let p = with_offsets("topics = [\"orders\"]", "partitioning = \"key_hash\"", "");
    assert!(
        has_prefix(&p, "offsets: needs target.partitioning = \"same\""),
        "{p:?}"
    );
    // Several source topics into one target topic share its partitions.
    let p = with_offsets(
        "topics = [\"orders\", \"refunds\"]",
        "topic = \"all\"",
        "map_topic = \"all\"",
    );
    assert!(
        has_prefix(&p, "offsets: needs one source topic per target topic"),
        "{p:?}"
    );
    assert!(has_prefix(&p, "offsets.map_topic: must differ"), "{p:?}");
    // Group patterns match whole names.
    let c = Config::from_toml_str(
        &(MINIMAL.to_string() + "[offsets]\ngroups = [\"app-.*\"]\n"),
        env(&[]),
    )
    .expect("groups");
    let pattern = crate::topics::key_pattern(&c.offsets.expect("offsets").groups[0]).expect("re");
    assert!(pattern.is_match("app-billing"));
    assert!(!pattern.is_match("my-app-billing"));
}
