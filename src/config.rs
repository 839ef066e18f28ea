//! Configuration: the TOML file plus environment overrides, turned into a
//! typed [`Config`] and validated once, at load. Every key is documented in
//! `docs/configuration.md`; `examples/relay.toml` uses them all.
//!
//! Invariants: a `Config` value has passed validation: required keys are
//! present, ranges hold, the pass-through client properties do not override
//! what the relay controls. Secrets (passwords, tokens, keys) never appear in
//! its `Debug` output or [`Config::redacted_summary`].
//!
//! Loading is layered by hand (file, then environment) with `serde` + `toml`:
//! the layering is a dozen lines, and parsing the file directly keeps toml's
//! line/column in syntax and type errors, which a generic config layer loses.
//!
//! Called by the CLI (`Config::load`) and by `demo` and tests
//! (`Config::from_toml_str`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::record::TopicPartition;

/// Prefix of environment overrides: `KAFKA_RELAY_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "KAFKA_RELAY_";
const SECTIONS: [&str; 9] = [
    "source",
    "target",
    "wal",
    "batch",
    "retry",
    "transaction",
    "rate",
    "record",
    "dlq",
];
const TOP_LEVEL: [&str; 3] = ["relay_id", "enabled", "format"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One validation failure, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Which source topics to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSelection {
    List(Vec<String>),
    Regex(String),
}

/// Where to start a partition of which nothing is known (no checkpoint, nothing in the WAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// First record at or after this time (ms since the epoch).
    Timestamp(i64),
    /// Explicit offsets; partitions not listed start at the earliest offset.
    Offsets(BTreeMap<TopicPartition, i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Target partition number = source partition number: order per source partition kept.
    #[default]
    Same,
    /// librdkafka's partitioner on the key: order kept per key.
    KeyHash,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Key, value, headers and timestamp copied byte for byte.
    #[default]
    Raw,
    /// One JSON object per record with `offset` and `msgBody` (see `format`).
    Envelope,
}

/// Client properties passed through to librdkafka, with secrets redacted in `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties(pub BTreeMap<String, String>);

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if is_secret(k) { "***" } else { v.as_str() })),
            )
            .finish()
    }
}

/// True for property names whose values must never be printed.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "sasl.jaas.config",
        "ssl.key.pem",
        "token",
        "ssl_key",
    ]
    .iter()
    .any(|s| key.contains(s))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Names this relay in checkpoints and logs; defaults to `target.transactional_id`.
    pub relay_id: Option<String>,
    /// `false`: the relay validates its configuration and moves nothing.
    pub enabled: bool,
    pub source: SourceConfig,
    pub target: TargetConfig,
    pub wal: WalConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    pub transaction: TransactionConfig,
    pub rate: RateConfig,
    pub record: RecordConfig,
    pub dlq: DlqConfig,
    pub format: Format,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    pub bootstrap_servers: String,
    pub topics: TopicSelection,
    pub group_id: Option<String>,
    pub start: StartPosition,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub bootstrap_servers: String,
    /// All source topics go to this topic; `None` keeps each source topic's name.
    pub topic: Option<String>,
    pub transactional_id: String,
    pub checkpoint_topic: String,
    pub partitioning: Partitioning,
    pub transaction_timeout_ms: u64,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    /// Intake pauses while the WAL's filesystem has less free space than this.
    pub min_free_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    pub max_records: usize,
    pub max_bytes: u64,
    pub linger_ms: u64,
}

/// How much one target transaction carries (`[transaction]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    pub max_records: usize,
    pub max_bytes: u64,
    /// How long to wait for more WAL batches to fill a transaction; 0 commits
    /// as soon as the WAL has nothing more waiting.
    pub commit_interval_ms: u64,
}

/// Per-record limits (`[record]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// Records with more bytes of key, value and headers go to the
    /// dead-letter queue instead of poisoning a transaction.
    pub max_bytes: u64,
}

/// The dead-letter queue (`[dlq]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DlqConfig {
    /// A target topic that also receives every dead letter, in the same
    /// transaction as the checkpoint that moves past it.
    pub topic: Option<String>,
}

/// Bandwidth cap towards the target (`[rate]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateConfig {
    /// Bytes of keys, values and headers per second; `None` = no cap.
    pub max_bytes_per_sec: Option<u64>,
}

/// How the shipper retries a failed target transaction (`[retry]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub multiplier: f64,
    /// Randomise each delay (full jitter) so relays restarted together do not retry in step.
    pub jitter: bool,
    /// Attempts per transaction before `on_exhausted`; 0 = no limit.
    pub max_attempts: u32,
    /// Time per transaction before `on_exhausted`; 0 = no limit.
    pub max_elapsed_ms: u64,
    /// Failed attempts on records the target refuses for good (too large,
    /// not authorised, no such topic) before `on_exhausted` applies to them.
    pub record_attempts: u32,
    pub on_exhausted: OnExhausted,
}

/// What happens to records the target refuses for good once
/// `record_attempts` transactions failed on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Keep retrying under the policy's limits, then stop the relay with the
    /// reason; everything stays in the WAL.
    #[default]
    Halt,
    /// Move the refused records to the dead-letter queue and ship the rest.
    /// (A link that is down is never a refused record: it still halts.)
    DeadLetter,
}

impl RetryConfig {
    /// True once `attempts` failures over `elapsed` exhaust the policy.
    pub fn is_spent(&self, attempts: u32, elapsed: Duration) -> bool {
        (self.max_attempts > 0 && attempts >= self.max_attempts)
            || (self.max_elapsed_ms > 0 && elapsed >= Duration::from_millis(self.max_elapsed_ms))
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 30_000,
            multiplier: 2.0,
            jitter: true,
            max_attempts: 0,
            max_elapsed_ms: 0,
            record_attempts: 3,
            on_exhausted: OnExhausted::Halt,
        }
    }
}

// ---- the file's shape -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    relay_id: Option<String>,
    #[serde(default = "default_true")]
    enabled: bool,
    source: RawSource,
    target: RawTarget,
    wal: RawWal,
    #[serde(default)]
    batch: RawBatch,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    transaction: RawTransaction,
    #[serde(default)]
    rate: RawRate,
    #[serde(default)]
    record: RawRecord,
    #[serde(default)]
    dlq: RawDlq,
    #[serde(default)]
    format: Format,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    bootstrap_servers: String,
    topics: Option<Vec<String>>,
    topic_regex: Option<String>,
    group_id: Option<String>,
    #[serde(default)]
    start: Option<RawStart>,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawStart {
    Word(String),
    Timestamp { timestamp_ms: i64 },
    Offsets { offsets: BTreeMap<String, i64> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    bootstrap_servers: String,
    topic: Option<String>,
    transactional_id: String,
    checkpoint_topic: Option<String>,
    #[serde(default)]
    partitioning: Partitioning,
    #[serde(default = "default_transaction_timeout_ms")]
    transaction_timeout_ms: u64,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWal {
    dir: PathBuf,
    #[serde(default)]
    max_bytes: Option<ByteSize>,
    #[serde(default)]
    min_free_bytes: Option<ByteSize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    max_records: Option<i64>,
    max_bytes: Option<ByteSize>,
    linger_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTransaction {
    max_records: Option<i64>,
    max_bytes: Option<ByteSize>,
    commit_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecord {
    max_bytes: Option<ByteSize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDlq {
    topic: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRate {
    max_bytes_per_sec: Option<ByteSize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    multiplier: Option<f64>,
    jitter: Option<bool>,
    max_attempts: Option<u32>,
    max_elapsed_ms: Option<u64>,
    record_attempts: Option<u32>,
    on_exhausted: Option<OnExhausted>,
}

/// A size in bytes: an integer, or a string such as `"512MiB"` or `"1 GB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

fn default_true() -> bool {
    true
}
/// The default checkpoint topic of a relay: its own, named after it.
///
/// A topic of its own matters for correctness, not tidiness: a
/// `read_committed` reader stops at the first *open* transaction of any
/// producer on the partition, so checkpoints shared with another relay
/// could be read stale while that relay has a transaction open.
pub fn default_checkpoint_topic(relay_id: &str) -> String {
    let safe: String = relay_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("__kafka_relay_checkpoints.{safe}");
    // Kafka topic names are at most 249 characters.
    name.truncate(249);
    name
}
fn default_transaction_timeout_ms() -> u64 {
    60_000
}

pub const DEFAULT_WAL_MAX_BYTES: u64 = 1 << 30;
pub const DEFAULT_WAL_MIN_FREE_BYTES: u64 = 64 << 20;
pub const DEFAULT_BATCH_MAX_RECORDS: usize = 500;
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 1 << 20;
pub const DEFAULT_LINGER_MS: u64 = 100;
pub const MAX_BATCH_RECORDS: i64 = 1_000_000;
pub const DEFAULT_TRANSACTION_MAX_RECORDS: usize = 50_000;
/// Below the broker's default `max.message.bytes` (1048588), leaving room for
/// the record batch overhead.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 1_000_000;
pub const DEFAULT_TRANSACTION_MAX_BYTES: u64 = 64 << 20;

/// Properties the relay sets itself; the message says where the setting lives.
const CONTROLLED: [(&str, &str); 6] = [
    ("bootstrap.servers", "use the typed key bootstrap_servers"),
    ("group.id", "use source.group_id"),
    ("transactional.id", "use target.transactional_id"),
    ("isolation.level", "the relay always reads read_committed"),
    (
        "enable.auto.commit",
        "the relay commits source offsets itself, after the WAL fsync",
    ),
    (
        "enable.idempotence",
        "the transactional producer is always idempotent",
    ),
];

impl Config {
    /// Reads `path`, applies environment overrides from `env`, validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, env)
    }

    /// Parses TOML text, applies environment overrides from `env`, validates.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let overrides = env_overrides(env)?;
        let raw: RawConfig = if overrides.is_empty() {
            // Straight from the text: errors keep their line and column.
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
            for (path, value) in overrides {
                set_path(&mut table, &path, value);
            }
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    ConfigError::Parse(format!("after environment overrides: {e}"))
                })?
        };
        validate(raw)
    }

    pub fn relay_id(&self) -> String {
        self.relay_id
            .clone()
            .unwrap_or_else(|| self.target.transactional_id.clone())
    }

    pub fn group_id(&self) -> String {
        self.source
            .group_id
            .clone()
            .unwrap_or_else(|| format!("kafka-relay-{}", self.relay_id()))
    }

    pub fn target_topic_for(&self, source_topic: &str) -> String {
        self.target
            .topic
            .clone()
            .unwrap_or_else(|| source_topic.to_string())
    }

    /// Pass-through properties plus `bootstrap.servers`, for the source clients.
    pub fn source_client_config(&self) -> BTreeMap<String, String> {
        with_bootstrap(&self.source.properties, &self.source.bootstrap_servers)
    }

    /// Pass-through properties plus `bootstrap.servers`, for the target clients.
    pub fn target_client_config(&self) -> BTreeMap<String, String> {
        with_bootstrap(&self.target.properties, &self.target.bootstrap_servers)
    }

    /// One line for logs: where from, where to, what; no secrets.
    pub fn redacted_summary(&self) -> String {
        let topics = match &self.source.topics {
            TopicSelection::List(t) => t.join(","),
            TopicSelection::Regex(r) => format!("/{r}/"),
        };
        format!(
            "relay {} | source {} topics {} | target {} topic {} | wal {} (max {} bytes) | format {:?} | source props {:?} | target props {:?}",
            self.relay_id(),
            self.source.bootstrap_servers,
            topics,
            self.target.bootstrap_servers,
            self.target.topic.as_deref().unwrap_or("<same name>"),
            self.wal.dir.display(),
            self.wal.max_bytes,
            self.format,
            self.source.properties,
            self.target.properties,
        )
    }
}

fn with_bootstrap(props: &Properties, servers: &str) -> BTreeMap<String, String> {
    let mut out = props.0.clone();
    out.insert("bootstrap.servers".to_string(), servers.to_string());
    out
}

/// Environment variables that override file keys, as (path, value).
fn env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(Vec<String>, toml::Value)>, ConfigError> {
    let mut out = Vec::new();
    for (name, raw) in env {
        let path: Vec<String> = match name.as_str() {
            // The seed product's names.
            "kafka_address" | "KAFKA_ADDRESS" => vec!["target".into(), "bootstrap_servers".into()],
            "kafka_topic_name" | "KAFKA_TOPIC_NAME" => vec!["target".into(), "topic".into()],
            _ => {
                let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                    continue;
                };
                let mut parts: Vec<String> =
                    rest.split("__").map(str::to_ascii_lowercase).collect();
                let known = match parts.as_slice() {
                    [key] => TOP_LEVEL.contains(&key.as_str()),
                    [section, ..] => SECTIONS.contains(&section.as_str()),
                    [] => false,
                };
                // Other KAFKA_RELAY_* variables (log settings, test knobs) are not config keys.
                if !known {
                    continue;
                }
                // Property names use dots, which environment names cannot.
                if parts.len() == 3 && parts[1] == "properties" {
                    parts[2] = parts[2].replace('_', ".");
                }
                parts
            }
        };
        let value = env_value(&path, &raw);
        out.push((path, value));
    }
    Ok(out)
}

/// An environment value as TOML: numbers, booleans and arrays as such,
/// anything else as a string; `topics` also takes a comma-separated list.
fn env_value(path: &[String], raw: &str) -> toml::Value {
    // Names and addresses stay text even when they look like numbers
    // (a topic called "123" is still a topic name).
    const TEXT_KEYS: [&str; 11] = [
        "bootstrap_servers",
        "topic",
        "topic_regex",
        "transactional_id",
        "checkpoint_topic",
        "group_id",
        "relay_id",
        "dir",
        "format",
        "partitioning",
        "on_exhausted",
    ];
    if path.get(1).is_some_and(|k| k == "properties")
        || path.last().is_some_and(|k| TEXT_KEYS.contains(&k.as_str()))
    {
        return toml::Value::String(raw.to_string());
    }
    if let Ok(mut t) = toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        if let Some(v) = t.remove("v") {
            if !v.is_table() {
                return v;
            }
        }
    }
    if path.last().is_some_and(|k| k == "topics") {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .collect(),
        );
    }
    toml::Value::String(raw.to_string())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

// ---- validation ---------------------------------------------------------------

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
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut p = Problems(Vec::new());

    p.non_empty("source.bootstrap_servers", &raw.source.bootstrap_servers);
    p.non_empty("target.bootstrap_servers", &raw.target.bootstrap_servers);
    p.non_empty("target.transactional_id", &raw.target.transactional_id);
    if let Some(t) = &raw.target.checkpoint_topic {
        p.non_empty("target.checkpoint_topic", t);
    }
    if let Some(id) = &raw.relay_id {
        p.non_empty("relay_id", id);
    }
    if let Some(g) = &raw.source.group_id {
        p.non_empty("source.group_id", g);
    }
    if let Some(t) = &raw.target.topic {
        p.non_empty("target.topic", t);
    }
    if raw.wal.dir.as_os_str().is_empty() {
        p.add("wal.dir", "must not be empty");
    }

    let topics = match (raw.source.topics, raw.source.topic_regex) {
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
            TopicSelection::List(list)
        }
        (None, Some(re)) => {
            if let Err(e) = regex::Regex::new(&re) {
                p.add(
                    "source.topic_regex",
                    format!("is not a valid regular expression: {e}"),
                );
            }
            TopicSelection::Regex(re)
        }
    };

    let start = match raw.source.start {
        None => StartPosition::Earliest,
        Some(RawStart::Word(w)) => match w.as_str() {
            "earliest" => StartPosition::Earliest,
            "latest" => StartPosition::Latest,
            other => {
                p.add(
                    "source.start",
                    format!("{other:?} is not a start position: use \"earliest\", \"latest\", {{ timestamp_ms = N }} or {{ offsets = {{ \"topic/0\" = N }} }}"),
                );
                StartPosition::Earliest
            }
        },
        Some(RawStart::Timestamp { timestamp_ms }) => {
            if timestamp_ms < 0 {
                p.add("source.start.timestamp_ms", "must not be negative");
            }
            StartPosition::Timestamp(timestamp_ms)
        }
        Some(RawStart::Offsets { offsets }) => {
            let mut map = BTreeMap::new();
            for (key, offset) in offsets {
                let parsed = key.rsplit_once('/').and_then(|(t, n)| {
                    n.parse::<i32>()
                        .ok()
                        .filter(|n| *n >= 0 && !t.is_empty())
                        .map(|n| (t, n))
                });
                match parsed {
                    None => p.add(
                        "source.start.offsets",
                        format!("{key:?} is not of the form \"topic/partition\""),
                    ),
                    Some((topic, partition)) => {
                        if let TopicSelection::List(list) = &topics {
                            if !list.iter().any(|t| t == topic) {
                                p.add(
                                    "source.start.offsets",
                                    format!("topic {topic:?} is not in source.topics"),
                                );
                            }
                        }
                        if offset < 0 {
                            p.add(
                                "source.start.offsets",
                                format!("offset for {key:?} must not be negative"),
                            );
                        }
                        map.insert(TopicPartition::new(topic, partition), offset);
                    }
                }
            }
            StartPosition::Offsets(map)
        }
    };

    let source_props = properties("source.properties", raw.source.properties, &mut p);
    let target_props = properties("target.properties", raw.target.properties, &mut p);

    if raw.target.transaction_timeout_ms < 1000 {
        p.add("target.transaction_timeout_ms", "must be at least 1000");
    }

    let wal_max = size(
        "wal.max_bytes",
        raw.wal.max_bytes,
        DEFAULT_WAL_MAX_BYTES,
        &mut p,
    );
    let batch_max_bytes = size(
        "batch.max_bytes",
        raw.batch.max_bytes,
        DEFAULT_BATCH_MAX_BYTES,
        &mut p,
    );
    if batch_max_bytes > crate::wal::MAX_PAYLOAD as u64 {
        p.add(
            "batch.max_bytes",
            format!(
                "({batch_max_bytes}) exceeds the largest WAL entry ({} bytes)",
                crate::wal::MAX_PAYLOAD
            ),
        );
    }
    if batch_max_bytes > wal_max {
        p.add(
            "batch.max_bytes",
            format!("({batch_max_bytes}) must not exceed wal.max_bytes ({wal_max})"),
        );
    }
    let max_records = raw
        .batch
        .max_records
        .unwrap_or(DEFAULT_BATCH_MAX_RECORDS as i64);
    if !(1..=MAX_BATCH_RECORDS).contains(&max_records) {
        p.add(
            "batch.max_records",
            format!("{max_records} is out of range 1..={MAX_BATCH_RECORDS}"),
        );
    }

    let retry = retry_config(raw.retry, &mut p);
    let transaction = TransactionConfig {
        max_records: match raw.transaction.max_records {
            None => DEFAULT_TRANSACTION_MAX_RECORDS,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                p.add("transaction.max_records", format!("{n} must be at least 1"));
                DEFAULT_TRANSACTION_MAX_RECORDS
            }
        },
        max_bytes: size(
            "transaction.max_bytes",
            raw.transaction.max_bytes,
            DEFAULT_TRANSACTION_MAX_BYTES,
            &mut p,
        ),
        commit_interval_ms: raw.transaction.commit_interval_ms.unwrap_or(0),
    };
    if let Some(t) = &raw.dlq.topic {
        p.non_empty("dlq.topic", t);
    }
    let record = RecordConfig {
        max_bytes: size(
            "record.max_bytes",
            raw.record.max_bytes,
            DEFAULT_RECORD_MAX_BYTES,
            &mut p,
        ),
    };
    let rate = RateConfig {
        max_bytes_per_sec: raw
            .rate
            .max_bytes_per_sec
            .map(|r| size("rate.max_bytes_per_sec", Some(r), 0, &mut p)),
    };
    if rate
        .max_bytes_per_sec
        .is_some_and(|r| r > u64::from(u32::MAX))
    {
        p.add("rate.max_bytes_per_sec", "must not exceed 4 GiB/s");
    }

    let min_free_bytes = match raw.wal.min_free_bytes {
        None => DEFAULT_WAL_MIN_FREE_BYTES,
        // 0 is a valid choice here: never pause for disk space.
        Some(ByteSize::Bytes(0)) => 0,
        other => size(
            "wal.min_free_bytes",
            other,
            DEFAULT_WAL_MIN_FREE_BYTES,
            &mut p,
        ),
    };
    let checkpoint_topic = raw.target.checkpoint_topic.clone().unwrap_or_else(|| {
        default_checkpoint_topic(
            raw.relay_id
                .as_deref()
                .unwrap_or(&raw.target.transactional_id),
        )
    });

    if !p.0.is_empty() {
        return Err(ConfigError::Invalid(p.0));
    }
    Ok(Config {
        relay_id: raw.relay_id,
        enabled: raw.enabled,
        source: SourceConfig {
            bootstrap_servers: raw.source.bootstrap_servers,
            topics,
            group_id: raw.source.group_id,
            start,
            properties: source_props,
        },
        target: TargetConfig {
            bootstrap_servers: raw.target.bootstrap_servers,
            topic: raw.target.topic,
            transactional_id: raw.target.transactional_id,
            checkpoint_topic,
            partitioning: raw.target.partitioning,
            transaction_timeout_ms: raw.target.transaction_timeout_ms,
            properties: target_props,
        },
        wal: WalConfig {
            dir: raw.wal.dir,
            max_bytes: wal_max,
            min_free_bytes,
        },
        batch: BatchConfig {
            max_records: max_records.max(1) as usize,
            max_bytes: batch_max_bytes,
            linger_ms: raw.batch.linger_ms.unwrap_or(DEFAULT_LINGER_MS),
        },
        retry,
        transaction,
        rate,
        record,
        dlq: DlqConfig {
            topic: raw.dlq.topic,
        },
        format: raw.format,
    })
}

fn retry_config(raw: RawRetry, p: &mut Problems) -> RetryConfig {
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

fn size(key: &str, value: Option<ByteSize>, default: u64, p: &mut Problems) -> u64 {
    let bytes = match value {
        None => return default,
        Some(ByteSize::Bytes(b)) => b,
        Some(ByteSize::Text(t)) => match t.parse::<bytesize::ByteSize>() {
            Ok(b) => b.as_u64(),
            Err(e) => {
                p.add(
                    key,
                    format!("{t:?} is not a size ({e}); write e.g. 1048576, \"512MiB\" or \"1GB\""),
                );
                return default;
            }
        },
    };
    if bytes == 0 {
        p.add(key, "must be greater than 0");
    }
    bytes
}

fn properties(section: &str, raw: BTreeMap<String, toml::Value>, p: &mut Problems) -> Properties {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let full = format!("{section}.\"{key}\"");
        if let Some((_, why)) = CONTROLLED.iter().find(|(k, _)| *k == key) {
            p.add(&full, format!("is set by the relay: {why}"));
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
        out.insert(key, text);
    }
    let props = Properties(out);
    check_security(section, &props, p);
    props
}

/// SASL needs a mechanism, and PLAIN/SCRAM need a user and a password.
fn check_security(section: &str, props: &Properties, p: &mut Problems) {
    let get = |k: &str| props.0.get(k).map(String::as_str);
    let Some(protocol) = get("security.protocol") else {
        return;
    };
    if !protocol.to_ascii_uppercase().starts_with("SASL_") {
        return;
    }
    match get("sasl.mechanism").or(get("sasl.mechanisms")) {
        None => p.add(
            &format!("{section}.\"sasl.mechanism\""),
            format!("security.protocol is {protocol}: set sasl.mechanism (e.g. PLAIN)"),
        ),
        Some(m)
            if m.eq_ignore_ascii_case("PLAIN") || m.to_ascii_uppercase().starts_with("SCRAM") =>
        {
            for k in ["sasl.username", "sasl.password"] {
                if get(k).is_none_or(|v| v.is_empty()) {
                    p.add(
                        &format!("{section}.\"{k}\""),
                        format!("sasl.mechanism {m} needs {k}"),
                    );
                }
            }
        }
        Some(_) => {}
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
