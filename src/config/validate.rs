//! Validation: from the file's shape (`file::RawConfig`) to a [`Config`],
//! filling in defaults and collecting every problem, each naming its key.
//!
//! One function per section, in file order; checks that span sections come
//! last in [`validate`]. A section function always returns a value (a
//! default where the input was bad) so that later checks still run and the
//! user sees every problem in one go.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use super::file::{
    RawAdmin, RawBatch, RawConfig, RawDlq, RawOffsets, RawRate, RawRecord, RawRetry, RawScale,
    RawSource, RawTarget, RawTransaction, RawWal,
};
use super::*;

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn non_empty(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.add(key, "must not be empty");
        }
    }

    /// A required text key: a problem if missing or blank; `""` stands in.
    fn required(&mut self, key: &str, value: Option<String>) -> String {
        match value {
            None => {
                self.add(key, "missing (required)");
                String::new()
            }
            Some(v) => {
                self.non_empty(key, &v);
                v
            }
        }
    }

    fn topic_name(&mut self, key: &str, name: &str) {
        if let Some(why) = topic_name_problem(name) {
            self.add(key, why);
        }
    }
}

/// Kafka's rules for topic names: 1..=249 of `[A-Za-z0-9._-]`, not `.` or `..`.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("must not be empty".to_string())
    } else if name.len() > 249 {
        Some(format!("{name:?} is longer than 249 characters"))
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not a valid topic name"))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Some(format!(
            "{name:?} is not a valid topic name: use letters, digits, '.', '_' and '-'"
        ))
    } else {
        None
    }
}

pub(super) fn validate(raw: RawConfig, env_problems: Vec<Problem>) -> Result<Config, ConfigError> {
    let mut p = Problems(env_problems);
    if let Some(id) = &raw.relay_id {
        p.non_empty("relay_id", id);
    }
    let source = source(raw.source, &mut p);
    let target = target(raw.target, raw.relay_id.as_deref(), &mut p);
    let wal = wal(raw.wal, &mut p);
    let batch = batch(raw.batch, &wal, &mut p);
    let transaction = transaction(raw.transaction, &mut p);
    let record = record(raw.record, &mut p);
    let dlq = dlq(raw.dlq, &mut p);
    let rate = rate(raw.rate, &mut p);
    let retry = retry(raw.retry, &mut p);
    let admin = admin(raw.admin, &mut p);
    let scale = raw
        .scale
        .map(|s| scale(s, raw.relay_id.as_deref(), &target, &mut p));
    let offsets = raw.offsets.map(|o| offsets(o, &mut p));
    if let Some(o) = &offsets {
        // A group's target offsets are per target partition: only a
        // partition copied into one partition of the same number maps.
        if target.partitioning != Partitioning::Same {
            p.add(
                "offsets",
                "needs target.partitioning = \"same\": with records spread by key, a target partition holds several source partitions and no source offset maps to one target offset",
            );
        }
        let several = !matches!(&source.topics, TopicSelection::List(t) if t.len() == 1);
        if target.topic.is_some() && several {
            p.add(
                "offsets",
                "needs one source topic per target topic: with target.topic set, several source topics share its partitions",
            );
        }
        for topic in std::iter::once(&target.checkpoint_topic).chain(&target.topic) {
            if &o.map_topic == topic {
                p.add(
                    "offsets.map_topic",
                    format!(
                        "must differ from target.checkpoint_topic and target.topic ({topic:?})"
                    ),
                );
            }
        }
    }
    if let Some(s) = &scale {
        // Each unit's WAL gets its share of the bound (`scale`).
        let share = wal.max_bytes / u64::from(s.units);
        if share < batch.max_bytes {
            p.add(
                "scale.units",
                format!("wal.max_bytes / scale.units = {share} bytes, below batch.max_bytes ({}): each unit's WAL gets that share; raise wal.max_bytes or lower scale.units", batch.max_bytes),
            );
        }
    }

    // Relayed records or dead letters in the checkpoint topic would corrupt
    // the relay's progress.
    let checkpoints = &target.checkpoint_topic;
    if target.topic.as_ref() == Some(checkpoints) {
        p.add(
            "target.topic",
            format!("must differ from target.checkpoint_topic ({checkpoints:?})"),
        );
    }
    if let (None, TopicSelection::List(topics)) = (&target.topic, &source.topics) {
        if topics.contains(checkpoints) {
            p.add(
                "source.topics",
                format!("{checkpoints:?} would be copied into the target's checkpoint topic of the same name; set target.topic or target.checkpoint_topic"),
            );
        }
    }
    if dlq.topic.as_ref() == Some(checkpoints) {
        p.add(
            "dlq.topic",
            format!("must differ from target.checkpoint_topic ({checkpoints:?})"),
        );
    }

    if !p.0.is_empty() {
        return Err(ConfigError::Invalid(p.0));
    }
    Ok(Config {
        relay_id: raw.relay_id,
        enabled: raw.enabled.unwrap_or(true),
        source,
        target,
        wal,
        batch,
        retry,
        transaction,
        rate,
        record,
        dlq,
        admin,
        scale,
        offsets,
        unit: None,
        format: raw.format.unwrap_or_default(),
    })
}

fn source(raw: RawSource, p: &mut Problems) -> SourceConfig {
    let bootstrap_servers = p.required("source.bootstrap_servers", raw.bootstrap_servers);
    if let Some(g) = &raw.group_id {
        p.non_empty("source.group_id", g);
    }
    let topics = match (raw.topics, raw.topic_regex) {
        (Some(_), Some(_)) => {
            p.add(
                "source.topics",
                "set either source.topics or source.topic_regex, not both",
            );
            TopicSelection::List(Vec::new())
        }
        (None, None) => {
            p.add(
                "source.topics",
                "missing: set source.topics (a list) or source.topic_regex",
            );
            TopicSelection::List(Vec::new())
        }
        (Some(list), None) => {
            if list.is_empty() {
                p.add("source.topics", "must not be empty");
            }
            if list.iter().any(|t| t.trim().is_empty()) {
                p.add("source.topics", "topic names must not be empty");
            }
            for t in list.iter().filter(|t| !t.trim().is_empty()) {
                p.topic_name("source.topics", t);
            }
            TopicSelection::List(list)
        }
        (None, Some(re)) => {
            if re.trim().is_empty() {
                p.add("source.topic_regex", "must not be empty");
            } else if let Err(e) = regex::Regex::new(&re) {
                p.add(
                    "source.topic_regex",
                    format!("is not a valid regular expression: {}", regex_mistake(&e)),
                );
            }
            TopicSelection::Regex(re)
        }
    };
    let start = start(raw.start, &topics, p);
    SourceConfig {
        bootstrap_servers,
        start,
        on_gap: raw.on_gap.unwrap_or_default(),
        refresh_interval_secs: raw.refresh_interval_secs.unwrap_or(30),
        topics,
        group_id: raw.group_id,
        properties: properties(
            "source",
            raw.properties,
            secret_files(raw.password_file, raw.property_files),
            p,
        ),
    }
}

/// What is wrong with a regex: its message spans lines, drawing a caret
/// under the mistake; its `error:` line says what the mistake is.
fn regex_mistake(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(&text)
        .to_string()
}

/// Topic config key patterns (`target.topic_configs_*`): each non-empty
/// and compiling as `topics` uses it.
fn key_patterns(key: &str, patterns: &[String], p: &mut Problems) {
    for pattern in patterns {
        if pattern.is_empty() {
            p.add(key, "an empty pattern matches no key: leave it out");
        } else if let Err(e) = crate::topics::key_pattern(pattern) {
            p.add(
                key,
                format!(
                    "{pattern:?} is not a valid regular expression: {}",
                    regex_mistake(&e)
                ),
            );
        }
    }
}

fn start(value: Option<toml::Value>, topics: &TopicSelection, p: &mut Problems) -> StartPosition {
    const FORMS: &str =
        "use \"earliest\", \"latest\", { timestamp_ms = N } or { offsets = { \"topic/0\" = N } }";
    let table = match value {
        None => return StartPosition::Earliest,
        Some(toml::Value::String(w)) => match w.as_str() {
            "earliest" => return StartPosition::Earliest,
            "latest" => return StartPosition::Latest,
            other => {
                p.add(
                    "source.start",
                    format!("{other:?} is not a start position: {FORMS}"),
                );
                return StartPosition::Earliest;
            }
        },
        Some(toml::Value::Table(t)) if t.len() == 1 => t,
        Some(_) => {
            p.add("source.start", format!("is not a start position: {FORMS}"));
            return StartPosition::Earliest;
        }
    };
    let Some((kind, value)) = table.into_iter().next() else {
        return StartPosition::Earliest;
    };
    match (kind.as_str(), value) {
        ("timestamp_ms", toml::Value::Integer(ms)) => {
            if ms < 0 {
                p.add("source.start.timestamp_ms", "must not be negative");
            }
            StartPosition::Timestamp(ms)
        }
        ("timestamp_ms", _) => {
            p.add(
                "source.start.timestamp_ms",
                "must be an integer: milliseconds since the epoch",
            );
            StartPosition::Earliest
        }
        ("offsets", toml::Value::Table(offsets)) => {
            StartPosition::Offsets(start_offsets(offsets, topics, p))
        }
        ("offsets", _) => {
            p.add(
                "source.start.offsets",
                "must be a table of \"topic/partition\" = offset",
            );
            StartPosition::Earliest
        }
        (other, _) => {
            p.add(
                "source.start",
                format!("{other:?} is not a start position: {FORMS}"),
            );
            StartPosition::Earliest
        }
    }
}

fn start_offsets(
    offsets: toml::Table,
    topics: &TopicSelection,
    p: &mut Problems,
) -> BTreeMap<TopicPartition, i64> {
    let key = "source.start.offsets";
    let mut map = BTreeMap::new();
    for (tp, offset) in offsets {
        let parsed = tp.rsplit_once('/').and_then(|(t, n)| {
            n.parse::<i32>()
                .ok()
                .filter(|n| *n >= 0 && !t.is_empty())
                .map(|n| (t, n))
        });
        let Some((topic, partition)) = parsed else {
            p.add(
                key,
                format!("{tp:?} is not of the form \"topic/partition\""),
            );
            continue;
        };
        if let TopicSelection::List(list) = topics {
            if !list.iter().any(|t| t == topic) {
                p.add(key, format!("topic {topic:?} is not in source.topics"));
            }
        }
        let offset = match offset {
            toml::Value::Integer(o) if o >= 0 => o,
            toml::Value::Integer(_) => {
                p.add(key, format!("offset for {tp:?} must not be negative"));
                continue;
            }
            _ => {
                p.add(key, format!("offset for {tp:?} must be an integer"));
                continue;
            }
        };
        map.insert(TopicPartition::new(topic, partition), offset);
    }
    map
}

fn target(raw: RawTarget, relay_id: Option<&str>, p: &mut Problems) -> TargetConfig {
    let bootstrap_servers = p.required("target.bootstrap_servers", raw.bootstrap_servers);
    if let Some(t) = &raw.topic {
        p.topic_name("target.topic", t);
    }
    let transactional_id = p.required("target.transactional_id", raw.transactional_id);
    let checkpoint_topic = match raw.checkpoint_topic {
        Some(t) => {
            p.topic_name("target.checkpoint_topic", &t);
            t
        }
        None => default_checkpoint_topic(relay_id.unwrap_or(&transactional_id)),
    };
    let transaction_timeout_ms = raw
        .transaction_timeout_ms
        .unwrap_or(DEFAULT_TRANSACTION_TIMEOUT_MS);
    if transaction_timeout_ms < 1000 {
        p.add("target.transaction_timeout_ms", "must be at least 1000");
    }
    let topic_configs_exclude = raw.topic_configs_exclude.unwrap_or_else(|| {
        DEFAULT_TOPIC_CONFIGS_EXCLUDE
            .iter()
            .map(ToString::to_string)
            .collect()
    });
    key_patterns("target.topic_configs_exclude", &topic_configs_exclude, p);
    if let Some(include) = &raw.topic_configs_include {
        key_patterns("target.topic_configs_include", include, p);
    }
    TargetConfig {
        bootstrap_servers,
        topic: raw.topic,
        transactional_id,
        checkpoint_topic,
        partitioning: raw.partitioning.unwrap_or_default(),
        transaction_timeout_ms,
        create_topics: raw.create_topics.unwrap_or(true),
        sync_topics_interval_secs: raw
            .sync_topics_interval_secs
            .unwrap_or(DEFAULT_SYNC_TOPICS_INTERVAL_SECS),
        topic_configs_include: raw.topic_configs_include,
        topic_configs_exclude,
        properties: properties(
            "target",
            raw.properties,
            secret_files(raw.password_file, raw.property_files),
            p,
        ),
    }
}

fn wal(raw: RawWal, p: &mut Problems) -> WalConfig {
    let dir = match raw.dir {
        None => {
            p.add("wal.dir", "missing (required)");
            PathBuf::new()
        }
        Some(d) => {
            if d.as_os_str().is_empty() {
                p.add("wal.dir", "must not be empty");
            }
            d
        }
    };
    let encryption_key = raw.encryption_key_file.as_deref().and_then(|path| {
        if path.as_os_str().is_empty() {
            p.add(
                "wal.encryption_key_file",
                "must not be empty (leave it out for no encryption)",
            );
            return None;
        }
        // The problem names the file and what is wrong with it, never its content.
        crate::wal::WalKey::load(path)
            .map_err(|e| p.add("wal.encryption_key_file", e.to_string()))
            .ok()
    });
    WalConfig {
        dir,
        encryption_key_file: raw.encryption_key_file,
        encryption_key,
        max_bytes: size(
            "wal.max_bytes",
            raw.max_bytes,
            DEFAULT_WAL_MAX_BYTES,
            false,
            p,
        ),
        // 0 is a valid choice here: never pause for disk space.
        min_free_bytes: size(
            "wal.min_free_bytes",
            raw.min_free_bytes,
            DEFAULT_WAL_MIN_FREE_BYTES,
            true,
            p,
        ),
    }
}

fn batch(raw: RawBatch, wal: &WalConfig, p: &mut Problems) -> BatchConfig {
    let max_bytes = size(
        "batch.max_bytes",
        raw.max_bytes,
        DEFAULT_BATCH_MAX_BYTES,
        false,
        p,
    );
    if max_bytes > crate::wal::MAX_PAYLOAD as u64 {
        p.add(
            "batch.max_bytes",
            format!(
                "({max_bytes}) exceeds the largest WAL entry ({} bytes)",
                crate::wal::MAX_PAYLOAD
            ),
        );
    }
    if max_bytes > wal.max_bytes {
        p.add(
            "batch.max_bytes",
            format!(
                "({max_bytes}) must not exceed wal.max_bytes ({})",
                wal.max_bytes
            ),
        );
    }
    let max_records = raw.max_records.unwrap_or(DEFAULT_BATCH_MAX_RECORDS as i64);
    if !(1..=MAX_BATCH_RECORDS).contains(&max_records) {
        p.add(
            "batch.max_records",
            format!("{max_records} is out of range 1..={MAX_BATCH_RECORDS}"),
        );
    }
    BatchConfig {
        max_records: max_records.clamp(1, MAX_BATCH_RECORDS) as usize,
        max_bytes,
        linger_ms: raw.linger_ms.unwrap_or(DEFAULT_LINGER_MS),
    }
}

fn transaction(raw: RawTransaction, p: &mut Problems) -> TransactionConfig {
    TransactionConfig {
        max_records: match raw.max_records {
            None => DEFAULT_TRANSACTION_MAX_RECORDS,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                p.add("transaction.max_records", format!("{n} must be at least 1"));
                DEFAULT_TRANSACTION_MAX_RECORDS
            }
        },
        max_bytes: size(
            "transaction.max_bytes",
            raw.max_bytes,
            DEFAULT_TRANSACTION_MAX_BYTES,
            false,
            p,
        ),
        commit_interval_ms: raw.commit_interval_ms.unwrap_or(0),
    }
}

fn record(raw: RawRecord, p: &mut Problems) -> RecordConfig {
    RecordConfig {
        max_bytes: size(
            "record.max_bytes",
            raw.max_bytes,
            DEFAULT_RECORD_MAX_BYTES,
            false,
            p,
        ),
    }
}

fn dlq(raw: RawDlq, p: &mut Problems) -> DlqConfig {
    if let Some(t) = &raw.topic {
        p.topic_name("dlq.topic", t);
    }
    DlqConfig { topic: raw.topic }
}

fn admin(raw: RawAdmin, p: &mut Problems) -> AdminConfig {
    let listen = raw.listen.and_then(|text| {
        // A bare port binds to loopback.
        let full = if text.parse::<u16>().is_ok() {
            format!("127.0.0.1:{text}")
        } else {
            text.clone()
        };
        match full.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                p.add(
                    "admin.listen",
                    format!("{text:?} is not an address and port such as \"127.0.0.1:9644\" (or a port alone, for loopback)"),
                );
                None
            }
        }
    });
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            p.add(
                "admin.token",
                "set admin.token or admin.token_file, not both",
            );
            None
        }
        (Some(t), None) if t.trim().is_empty() => {
            p.add("admin.token", "must not be empty");
            None
        }
        (Some(t), None) => Some(Secret(t)),
        (None, Some(path)) => read_secret("admin.token_file", &path, p).map(Secret),
        (None, None) => None,
    };
    let open_paths = raw.open_paths.unwrap_or_else(|| {
        DEFAULT_ADMIN_OPEN_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    for path in &open_paths {
        if !ADMIN_READ_PATHS.contains(&path.as_str()) {
            p.add(
                "admin.open_paths",
                format!(
                    "{path:?} cannot be opened: only {} can (POST /pause and /resume always need the token)",
                    ADMIN_READ_PATHS.join(", ")
                ),
            );
        }
    }
    let tls = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let ca_file = raw.tls_ca_file.unwrap_or_else(|| cert_file.clone());
            for (key, path) in [
                ("admin.tls_cert_file", &cert_file),
                ("admin.tls_key_file", &key_file),
                ("admin.tls_ca_file", &ca_file),
            ] {
                if let Err(e) = std::fs::metadata(path) {
                    p.add(key, format!("cannot read {}: {e}", path.display()));
                }
            }
            Some(AdminTls {
                cert_file,
                key_file,
                ca_file,
            })
        }
        (None, None) => {
            if raw.tls_ca_file.is_some() {
                p.add(
                    "admin.tls_ca_file",
                    "needs admin.tls_cert_file and admin.tls_key_file",
                );
            }
            None
        }
        _ => {
            p.add(
                "admin.tls_cert_file",
                "set both admin.tls_cert_file and admin.tls_key_file, or neither",
            );
            None
        }
    };
    AdminConfig {
        listen,
        token,
        open_paths,
        tls,
    }
}

fn scale(
    raw: RawScale,
    relay_id: Option<&str>,
    target: &TargetConfig,
    p: &mut Problems,
) -> ScaleConfig {
    let units = match raw.units {
        None => {
            p.add("scale.units", "missing (required in [scale])");
            1
        }
        Some(n) if (1..=i64::from(MAX_UNITS)).contains(&n) => n as u32,
        Some(n) => {
            p.add(
                "scale.units",
                format!("{n} is out of range: 1 to {MAX_UNITS}"),
            );
            1
        }
    };
    let session_timeout_ms = match raw.session_timeout_ms {
        None => DEFAULT_SESSION_TIMEOUT_MS,
        Some(ms) if (1_000..=1_800_000).contains(&ms) => ms as u64,
        Some(ms) => {
            p.add(
                "scale.session_timeout_ms",
                format!("{ms} is out of range: 1000 to 1800000 (the brokers' group.min/max.session.timeout.ms bound it further)"),
            );
            DEFAULT_SESSION_TIMEOUT_MS
        }
    };
    let units_topic = match raw.units_topic {
        Some(t) => {
            p.topic_name("scale.units_topic", &t);
            t
        }
        None => format!(
            "__kafka_relay_units.{}",
            relay_id.unwrap_or(&target.transactional_id)
        ),
    };
    ScaleConfig {
        units,
        session_timeout_ms,
        units_topic,
    }
}

fn offsets(raw: RawOffsets, p: &mut Problems) -> OffsetsConfig {
    let groups = raw.groups.unwrap_or_default();
    key_patterns("offsets.groups", &groups, p);
    let interval_secs = match raw.interval_secs {
        None => 30,
        Some(s) if (1..=86_400).contains(&s) => s as u64,
        Some(s) => {
            p.add(
                "offsets.interval_secs",
                format!("{s} is out of range: 1 to 86400"),
            );
            30
        }
    };
    let map_topic = match raw.map_topic {
        Some(t) => {
            p.topic_name("offsets.map_topic", &t);
            t
        }
        None => DEFAULT_MAP_TOPIC.to_string(),
    };
    const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;
    let map_retention_ms = match raw.map_retention_ms {
        None => WEEK_MS as u64,
        Some(ms) if ms >= 60_000 => ms as u64,
        Some(ms) => {
            p.add(
                "offsets.map_retention_ms",
                format!("{ms} is below 60000: the map must outlive the groups' lag"),
            );
            WEEK_MS as u64
        }
    };
    let map_retention_bytes = size(
        "offsets.map_retention_bytes",
        raw.map_retention_bytes,
        1 << 30,
        false,
        p,
    );
    OffsetsConfig {
        groups,
        interval_secs,
        map_topic,
        map_retention_ms,
        map_retention_bytes,
    }
}

fn rate(raw: RawRate, p: &mut Problems) -> RateConfig {
    let max_bytes_per_sec = raw
        .max_bytes_per_sec
        .map(|r| size("rate.max_bytes_per_sec", Some(r), 0, false, p));
    // The token bucket counts in u32.
    if max_bytes_per_sec.is_some_and(|r| r > u64::from(u32::MAX)) {
        p.add("rate.max_bytes_per_sec", "must not exceed 4 GiB/s");
    }
    RateConfig { max_bytes_per_sec }
}

fn retry(raw: RawRetry, p: &mut Problems) -> RetryConfig {
    let d = RetryConfig::default();
    let r = RetryConfig {
        initial_backoff_ms: raw.initial_backoff_ms.unwrap_or(d.initial_backoff_ms),
        max_backoff_ms: raw.max_backoff_ms.unwrap_or(d.max_backoff_ms),
        multiplier: raw.multiplier.unwrap_or(d.multiplier),
        jitter: raw.jitter.unwrap_or(d.jitter),
        max_attempts: raw.max_attempts.unwrap_or(d.max_attempts),
        max_elapsed_ms: raw.max_elapsed_ms.unwrap_or(d.max_elapsed_ms),
        record_attempts: raw.record_attempts.unwrap_or(d.record_attempts),
        on_exhausted: raw.on_exhausted.unwrap_or(d.on_exhausted),
    };
    if r.record_attempts == 0 {
        p.add("retry.record_attempts", "must be at least 1");
    }
    if r.initial_backoff_ms == 0 {
        p.add("retry.initial_backoff_ms", "must be greater than 0");
    }
    if r.max_backoff_ms < r.initial_backoff_ms {
        p.add(
            "retry.max_backoff_ms",
            format!(
                "({}) must not be below retry.initial_backoff_ms ({})",
                r.max_backoff_ms, r.initial_backoff_ms
            ),
        );
    }
    if !(r.multiplier.is_finite() && r.multiplier >= 1.0) {
        p.add(
            "retry.multiplier",
            format!("{} must be a number of at least 1.0", r.multiplier),
        );
    }
    r
}

/// A size in bytes, greater than 0 unless `zero_ok`: an integer, or a string with a unit
/// such as `"512MiB"` or `"1 GB"` (parsed by `bytesize`: `KB`/`MB`/`GB` are
/// powers of 1000, `KiB`/`MiB`/`GiB` of 1024).
fn size(
    key: &str,
    value: Option<toml::Value>,
    default: u64,
    zero_ok: bool,
    p: &mut Problems,
) -> u64 {
    const FORMS: &str = "write e.g. 1048576, \"512MiB\" or \"1GB\"";
    let bytes = match value {
        None => return default,
        Some(toml::Value::Integer(b)) if b >= 0 => b as u64,
        Some(toml::Value::Integer(_)) => {
            p.add(key, "must not be negative");
            return default;
        }
        Some(toml::Value::String(t)) => match t.trim().parse::<bytesize::ByteSize>() {
            Ok(b) => b.as_u64(),
            Err(e) => {
                p.add(key, format!("{t:?} is not a size ({e}); {FORMS}"));
                return default;
            }
        },
        Some(_) => {
            p.add(key, format!("must be a number of bytes or a size; {FORMS}"));
            return default;
        }
    };
    if bytes == 0 && !zero_ok {
        p.add(key, "must be greater than 0");
    }
    bytes
}

/// Properties the relay sets itself: (name, only in this section, where the
/// setting lives). A pass-through value would be overridden or break the
/// relay's guarantees, so it is refused rather than silently ignored.
const CONTROLLED: [(&str, Option<&str>, &str); 15] = [
    (
        "bootstrap.servers",
        None,
        "use the typed key {section}.bootstrap_servers",
    ),
    (
        "metadata.broker.list",
        None,
        "use the typed key {section}.bootstrap_servers",
    ),
    ("group.id", Some("source"), "use source.group_id"),
    (
        "group.id",
        Some("target"),
        "the relay names its checkpoint reader's group itself",
    ),
    ("transactional.id", None, "use target.transactional_id"),
    (
        "transaction.timeout.ms",
        None,
        "use target.transaction_timeout_ms",
    ),
    (
        "isolation.level",
        None,
        "the relay always reads read_committed",
    ),
    (
        "enable.auto.commit",
        None,
        "the relay commits source offsets itself, after the WAL fsync",
    ),
    (
        "auto.commit.enable",
        None,
        "the relay commits source offsets itself, after the WAL fsync",
    ),
    (
        "enable.auto.offset.store",
        None,
        "the relay commits source offsets itself, after the WAL fsync",
    ),
    (
        "auto.offset.reset",
        Some("source"),
        "use source.start for where a new partition begins",
    ),
    (
        "enable.partition.eof",
        None,
        "the relay sets it for each of its clients",
    ),
    (
        "enable.idempotence",
        None,
        "the transactional producer is always idempotent",
    ),
    (
        "linger.ms",
        Some("target"),
        "the relay sets the producer's linger; size transactions with [transaction]",
    ),
    (
        "queue.buffering.max.ms",
        Some("target"),
        "the relay sets the producer's linger; size transactions with [transaction]",
    ),
];

/// `password_file` and `property_files` as one map: property name ->
/// (the key that named the file, its path).
fn secret_files(
    password_file: Option<PathBuf>,
    property_files: BTreeMap<String, PathBuf>,
) -> Vec<(String, String, PathBuf)> {
    let mut files: Vec<(String, String, PathBuf)> = property_files
        .into_iter()
        .map(|(k, path)| (k.clone(), format!("property_files.\"{k}\""), path))
        .collect();
    if let Some(path) = password_file {
        files.push((
            "sasl.password".to_string(),
            "password_file".to_string(),
            path,
        ));
    }
    files
}

/// A secret's value from its file: the whole file, less one trailing
/// line break (as `echo` or an editor leaves it). Problems name the key
/// and the path, never the content.
fn read_secret(key: &str, path: &Path, p: &mut Problems) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let value = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            if value.is_empty() {
                p.add(key, format!("{} is empty", path.display()));
                None
            } else {
                Some(value.to_string())
            }
        }
        Err(e) => {
            p.add(key, format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

fn properties(
    section: &str,
    raw: BTreeMap<String, toml::Value>,
    files: Vec<(String, String, PathBuf)>,
    p: &mut Problems,
) -> Properties {
    let mut raw = raw;
    for (property, key, path) in files {
        let key = format!("{section}.{key}");
        if raw.contains_key(&property) {
            p.add(
                &key,
                format!("{property:?} is also set in [{section}.properties]: keep one"),
            );
            continue;
        }
        if let Some(value) = read_secret(&key, &path, p) {
            raw.insert(property, toml::Value::String(value));
        }
    }
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let full = format!("{section}.properties.\"{key}\"");
        if let Some((_, _, why)) = CONTROLLED
            .iter()
            .find(|(k, only, _)| *k == key && only.is_none_or(|s| s == section))
        {
            p.add(
                &full,
                format!("is set by the relay: {}", why.replace("{section}", section)),
            );
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Float(f) => f.to_string(),
            _ => {
                p.add(&full, "must be a string, number or boolean");
                continue;
            }
        };
        // Transactions need every replica's acknowledgement.
        if section == "target"
            && (key == "acks" || key == "request.required.acks")
            && !(text.eq_ignore_ascii_case("all") || text == "-1")
        {
            p.add(
                &full,
                format!(
                    "is {text:?}, but the transactional producer needs \"all\" (or leave it out)"
                ),
            );
        }
        out.insert(key, text);
    }
    let props = Properties(out);
    check_security(section, &props, p);
    props
}

/// The protocol is one librdkafka knows; SASL needs a mechanism it knows,
/// and PLAIN/SCRAM a user and a password; credentials without SASL would
/// silently go unused.
fn check_security(section: &str, props: &Properties, p: &mut Problems) {
    const PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
    const MECHANISMS: [&str; 5] = [
        "PLAIN",
        "SCRAM-SHA-256",
        "SCRAM-SHA-512",
        "GSSAPI",
        "OAUTHBEARER",
    ];
    let get = |k: &str| props.0.get(k).map(String::as_str);
    let key = |k: &str| format!("{section}.properties.\"{k}\"");
    let protocol = get("security.protocol").unwrap_or("PLAINTEXT");
    // librdkafka reads the protocol case-insensitively.
    if !PROTOCOLS.iter().any(|x| x.eq_ignore_ascii_case(protocol)) {
        p.add(
            &key("security.protocol"),
            format!(
                "{protocol:?} is not a security protocol: use {}",
                PROTOCOLS.join(", ")
            ),
        );
        return;
    }
    if !protocol.to_ascii_uppercase().starts_with("SASL_") {
        if let Some(k) = ["sasl.username", "sasl.password"]
            .into_iter()
            .find(|k| get(k).is_some())
        {
            p.add(
                &key("security.protocol"),
                format!("is {protocol} but {k} is set: use SASL_PLAINTEXT or SASL_SSL, or the credentials are never sent"),
            );
        }
        return;
    }
    let Some(m) = get("sasl.mechanism").or(get("sasl.mechanisms")) else {
        p.add(
            &key("sasl.mechanism"),
            format!("security.protocol is {protocol}: set sasl.mechanism (e.g. PLAIN)"),
        );
        return;
    };
    // ... but the mechanism case-sensitively.
    if !MECHANISMS.contains(&m) {
        p.add(
            &key("sasl.mechanism"),
            format!(
                "{m:?} is not a SASL mechanism: use {} (upper case)",
                MECHANISMS.join(", ")
            ),
        );
        return;
    }
    if m == "PLAIN" || m.starts_with("SCRAM-") {
        for k in ["sasl.username", "sasl.password"] {
            if get(k).is_none_or(str::is_empty) {
                p.add(&key(k), format!("sasl.mechanism {m} needs {k}"));
            }
        }
    }
}
