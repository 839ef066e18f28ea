//! Configuration: the TOML file plus environment overrides, turned into a
//! typed [`Config`] and validated once, at load. Every key is documented here
//! (doc comments on the fields) and in `docs/configuration.md`;
//! `examples/relay.toml` shows them all.
//!
//! Invariants: a `Config` value has passed validation: required keys are
//! present, names are non-empty, ranges hold, and the pass-through client
//! properties do not override what the relay controls. The rest of the crate
//! relies on that and does not re-check. Secrets (passwords, tokens, keys)
//! never appear in its `Debug` output or in [`Config::redacted_summary`].
//!
//! Loading, in order: parse the file (`file`), apply environment overrides
//! (`env`), validate and fill in defaults (`validate`), collecting every
//! problem rather than stopping at the first. It is layered by hand with
//! `serde` + `toml` rather than with a layering crate such as `figment`: the
//! layering is a few dozen lines, and deserialising the file text directly
//! keeps toml's line and column in syntax, type and unknown-key errors,
//! which a generic layer loses; the environment layer also needs to know
//! which keys are text (`KAFKA_TOPIC_NAME=123` is a topic name).
//!
//! Adding a section `[foo]`: a `FooConfig` here and a field in [`Config`];
//! a `RawFoo` in `file` and a field in `RawConfig`; a `foo()` in `validate`;
//! `"foo"` in `env::SECTIONS` (and any text-valued key names in
//! `env::TEXT_KEYS`); then docs/configuration.md and examples/relay.toml
//! (a test checks that every key of the example is documented).
//!
//! Called by the CLI (`Config::load`), and by `demo` and tests
//! (`Config::from_toml_str`).

mod effective;
mod env;
mod file;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::record::TopicPartition;

pub use env::ENV_PREFIX;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or not the expected shape (a wrong type, an unknown
    /// key). Stops at the first such error, which toml reports.
    #[error("{}", parse_message(.path.as_deref(), .position.as_ref(), .message))]
    Parse {
        /// The file, when loaded from one.
        path: Option<PathBuf>,
        /// Where in the file; `None` when an environment override caused it.
        position: Option<Position>,
        message: String,
    },
    /// Every validation problem found, one per line when displayed.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// A place in the configuration text, both counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    /// In characters, not bytes.
    pub column: usize,
}

fn parse_message(path: Option<&Path>, position: Option<&Position>, message: &str) -> String {
    match (path, position) {
        (Some(p), Some(at)) => format!("{}:{}:{}: {message}", p.display(), at.line, at.column),
        (Some(p), None) => format!("{}: {message}", p.display()),
        (None, Some(at)) => format!("line {}, column {}: {message}", at.line, at.column),
        (None, None) => message.to_string(),
    }
}

/// One validation failure, naming the key (or the environment variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path, e.g. `source.topics` or `target.properties."sasl.password"`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Which source topics to relay (`source.topics` or `source.topic_regex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSelection {
    /// Exactly these topics; non-empty, each a valid topic name.
    List(Vec<String>),
    /// Every topic whose name matches (the pattern compiles); resolved by the source.
    Regex(String),
}

impl TopicSelection {
    /// Whether the selection takes `topic`. A regex never takes an internal
    /// topic (`__…`); a pattern that does not compile takes nothing
    /// (validation refuses it before any run).
    pub fn selects(&self, topic: &str) -> bool {
        match self {
            TopicSelection::List(names) => names.iter().any(|n| n == topic),
            TopicSelection::Regex(pattern) => {
                !topic.starts_with("__")
                    && regex::Regex::new(pattern).is_ok_and(|re| re.is_match(topic))
            }
        }
    }
}

/// Where to start a partition of which nothing is known (no checkpoint, nothing in the WAL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest record still on the source (the default).
    Earliest,
    /// Only records written after the relay starts.
    Latest,
    /// First record at or after this time (ms since the epoch, not negative).
    Timestamp(i64),
    /// Explicit offsets (not negative); partitions not listed start at the
    /// earliest offset. With a topic list, every topic here is in it.
    Offsets(BTreeMap<TopicPartition, i64>),
}

/// How target partitions are chosen (`target.partitioning`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Partitioning {
    /// Target partition number = source partition number: order per source partition kept.
    #[default]
    Same,
    /// librdkafka's partitioner on the key: order kept per key.
    KeyHash,
}

/// How records are written to the target (top-level `format`).
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

/// True for property names whose values must never be printed. Covers
/// librdkafka's own list of sensitive properties.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "sasl.jaas.config",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "private.key",
        "ssl_key",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// The whole configuration, validated. Fields are the TOML keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `relay_id`: names this relay in checkpoints, its checkpoint topic and
    /// logs; defaults to `target.transactional_id` (see [`Config::relay_id`]).
    pub relay_id: Option<String>,
    /// `enabled` (default `true`); `false`: the relay validates its
    /// configuration and moves nothing.
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
    pub admin: AdminConfig,
    /// `[scale]`: present = this process is one of several instances
    /// sharing the source partitions (see `scale`); `None` = it copies all.
    pub scale: Option<ScaleConfig>,
    /// `[offsets]`: present = every transaction also writes the exact
    /// source-to-target offset map, and chosen consumer groups are
    /// translated (see `offsets`); `None` = neither.
    pub offsets: Option<OffsetsConfig>,
    /// Not a key: the unit of ownership a unit's pipeline copies, set by
    /// `scale` on that pipeline's copy of the configuration; `None` = every
    /// selected partition.
    pub unit: Option<crate::scale::Unit>,
    /// `format` (top level, default `"raw"`): how target records are shaped.
    pub format: Format,
}

/// `[source]`: the cluster and topics to copy from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// `bootstrap_servers` (required): `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// `topics` (non-empty list) or `topic_regex`: exactly one of the two.
    pub topics: TopicSelection,
    /// `group_id`: consumer group for committed source offsets (lag
    /// monitoring only); default `kafka-relay-<relay_id>`, see [`Config::group_id`].
    pub group_id: Option<String>,
    /// `start` (default `"earliest"`): used only where no progress is known.
    pub start: StartPosition,
    /// `on_gap` (default `"fail"`): what to do when the source no longer
    /// has records the relay has not copied yet (see `gap`).
    pub on_gap: OnGap,
    /// `refresh_interval_secs` (default 30; 0 = never): how often the
    /// source looks for new partitions of its topics and, with
    /// `topic_regex`, new topics; they are copied from their first record.
    pub refresh_interval_secs: u64,
    /// `[source.properties]`: librdkafka consumer properties, passed through.
    pub properties: Properties,
}

/// `[target]`: the cluster to copy to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    /// `bootstrap_servers` (required; env `kafka_address` too).
    pub bootstrap_servers: String,
    /// `topic`: all source topics go to this topic; `None` keeps each source
    /// topic's name (env `kafka_topic_name` too).
    pub topic: Option<String>,
    /// `transactional_id` (required): stable across restarts, it fences
    /// older incarnations; one per relay.
    pub transactional_id: String,
    /// `checkpoint_topic`: resolved, default `__kafka_relay_checkpoints.<relay_id>`.
    pub checkpoint_topic: String,
    /// `partitioning` (default `"same"`).
    pub partitioning: Partitioning,
    /// `transaction_timeout_ms` (default 60000, at least 1000).
    pub transaction_timeout_ms: u64,
    /// `create_topics` (default `true`): create missing target topics like
    /// their source topics, add partitions `partitioning = "same"` needs,
    /// and keep their configs like the source's (see `topics`). `false`:
    /// the relay changes no target topic, it only checks them at start.
    pub create_topics: bool,
    /// `sync_topics_interval_secs` (default 600): how often target topics
    /// are brought in line with their source topics while running; 0 =
    /// only at start.
    pub sync_topics_interval_secs: u64,
    /// `topic_configs_include`: if set, only topic config keys matching one
    /// of these regexes (whole key) are copied; each compiles.
    pub topic_configs_include: Option<Vec<String>>,
    /// `topic_configs_exclude` (default [`DEFAULT_TOPIC_CONFIGS_EXCLUDE`]):
    /// topic config keys (whole key matches) never copied, left to the
    /// target's operator; each compiles.
    pub topic_configs_exclude: Vec<String>,
    /// `[target.properties]`: librdkafka producer properties, passed through.
    pub properties: Properties,
}

/// `[wal]`: the local write-ahead log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    /// `dir` (required): the sled database directory; one relay per directory.
    pub dir: PathBuf,
    /// `max_bytes` (default 1 GiB, > 0): undelivered data held before the
    /// source is paused.
    pub max_bytes: u64,
    /// `min_free_bytes` (default 64 MiB; 0 disables): intake pauses while the
    /// WAL's filesystem has less free space than this.
    pub min_free_bytes: u64,
    /// `encryption_key_file` (optional; absent = no encryption): a file
    /// holding a 256-bit key as 64 hex characters. WAL frames and dead
    /// letters are encrypted with it (see `wal::crypt`).
    pub encryption_key_file: Option<PathBuf>,
    /// The key read from `encryption_key_file` at load (its `Debug` shows
    /// only the key id).
    pub encryption_key: Option<crate::wal::WalKey>,
}

/// `[batch]`: how source records are grouped into WAL entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// `max_records` (default 500, 1..=1 000 000): records per WAL batch.
    pub max_records: usize,
    /// `max_bytes` (default 1 MiB, > 0, ≤ `wal.max_bytes` and the largest WAL entry).
    pub max_bytes: u64,
    /// `linger_ms` (default 100): how long a partial batch waits for more records.
    pub linger_ms: u64,
}

/// How much one target transaction carries (`[transaction]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `max_records` (default 50 000, ≥ 1).
    pub max_records: usize,
    /// `max_bytes` (default 32 MiB, > 0): also what bounds the shipper's
    /// memory, which holds one transaction's batches (and librdkafka a copy).
    pub max_bytes: u64,
    /// `commit_interval_ms` (default 0): how long to wait for more WAL
    /// batches to fill a transaction; 0 commits as soon as the WAL has
    /// nothing more waiting.
    pub commit_interval_ms: u64,
}

/// Per-record limits (`[record]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordConfig {
    /// `max_bytes` (default 1 000 000, > 0): records with more bytes of key,
    /// value and headers go to the dead-letter queue instead of poisoning a
    /// transaction.
    pub max_bytes: u64,
}

/// The dead-letter queue (`[dlq]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DlqConfig {
    /// `topic`: a target topic that also receives every dead letter, in the
    /// same transaction as the checkpoint that moves past it.
    pub topic: Option<String>,
}

/// Bandwidth cap towards the target (`[rate]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateConfig {
    /// `max_bytes_per_sec`: bytes of keys, values and headers per second
    /// (> 0, at most 4 GiB/s); `None` = no cap.
    pub max_bytes_per_sec: Option<u64>,
}

/// `[admin]`: the operator's HTTP endpoint (see `admin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// `listen`: address and port of the admin HTTP listener (`/metrics`,
    /// `/healthz`, `/readyz`, `/status`, `/pause`, `/resume`); a port alone
    /// means loopback; `None` (the default) = no listener.
    pub listen: Option<std::net::SocketAddr>,
    /// `token` or `token_file` (one of them; its content less one trailing
    /// line break): with one set, every request but a GET of `open_paths`
    /// needs `Authorization: Bearer <token>`. `None`: no check.
    pub token: Option<Secret>,
    /// `open_paths` (default [`DEFAULT_ADMIN_OPEN_PATHS`]): GET routes
    /// served without the token; only [`ADMIN_READ_PATHS`] may be listed.
    pub open_paths: Vec<String>,
    /// `tls_cert_file` + `tls_key_file` (both or neither, PEM, each
    /// readable): serve HTTPS; `None`: plain HTTP.
    pub tls: Option<AdminTls>,
}

/// The admin endpoint's certificate and key, and what the command line
/// verifies it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `tls_ca_file` (default: `tls_cert_file`, for a self-signed
    /// certificate): the CA `status`, `pause` and `resume` trust.
    pub ca_file: PathBuf,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: None,
            token: None,
            open_paths: DEFAULT_ADMIN_OPEN_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            tls: None,
        }
    }
}

/// The admin routes that only read, and so may be served without the token.
pub const ADMIN_READ_PATHS: [&str; 4] = ["/metrics", "/healthz", "/readyz", "/status"];
/// `admin.open_paths` when not set: what probes and scrapers need.
pub const DEFAULT_ADMIN_OPEN_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

/// A secret value: never shown by `Debug` (nor `Display`, which it lacks).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The most units `scale.units` may name.
pub const MAX_UNITS: u32 = 1024;
/// `scale.session_timeout_ms` when not set.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 10_000;

/// `[scale]`: several relay instances sharing one relay's source partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleConfig {
    /// `units` (required, 1..=1024): how many units of ownership the
    /// source partitions are split into; fixed for the relay's life (the
    /// units topic's partition count records it), and the most instances
    /// that can share the work.
    pub units: u32,
    /// `session_timeout_ms` (default 10000): how long the group waits for
    /// a silent instance before its units go to the others; the larger
    /// part of a hand-over after a crash.
    pub session_timeout_ms: u64,
    /// `units_topic`: resolved, default `__kafka_relay_units.<relay_id>`;
    /// the source topic whose partitions stand for the units.
    pub units_topic: String,
}

/// `offsets.map_topic` when not set.
pub const DEFAULT_MAP_TOPIC: &str = "kafka-relay.offset-map";

/// `[offsets]`: the offset map on the target, and consumer-group translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetsConfig {
    /// `groups` (default none): regular expressions, each matching whole
    /// names, of the source consumer groups whose committed offsets are
    /// translated and committed to the same groups on the target. Empty =
    /// the map is written, only `kafka-relay offsets translate` reads it.
    pub groups: Vec<String>,
    /// `interval_secs` (default 30, 1..=86400): how often the groups are
    /// translated.
    pub interval_secs: u64,
    /// `map_topic` (default `kafka-relay.offset-map`): the target topic the
    /// map is written to, created with one partition and delete retention.
    pub map_topic: String,
    /// `map_retention_ms` (default 604800000, 7 days): how long the map
    /// remembers; a group further behind than that cannot be translated.
    pub map_retention_ms: u64,
    /// `map_retention_bytes` (default 1GiB): the map's size bound.
    pub map_retention_bytes: u64,
}

/// How the shipper retries a failed target transaction (`[retry]`).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// `initial_backoff_ms` (default 100, > 0): delay after the first failure.
    pub initial_backoff_ms: u64,
    /// `max_backoff_ms` (default 30 000, ≥ `initial_backoff_ms`).
    pub max_backoff_ms: u64,
    /// `multiplier` (default 2.0, ≥ 1.0): growth of the delay per attempt.
    pub multiplier: f64,
    /// `jitter` (default true): randomise each delay (full jitter) so relays
    /// restarted together do not retry in step.
    pub jitter: bool,
    /// `max_attempts` (default 0): attempts per transaction before
    /// `on_exhausted`; 0 = no limit.
    pub max_attempts: u32,
    /// `max_elapsed_ms` (default 0): time per transaction before
    /// `on_exhausted`; 0 = no limit.
    pub max_elapsed_ms: u64,
    /// `record_attempts` (default 3, ≥ 1): failed attempts on records the
    /// target refuses for good (too large, not authorised, no such topic)
    /// before `on_exhausted` applies to them.
    pub record_attempts: u32,
    /// `on_exhausted` (default `"halt"`).
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

/// `source.on_gap`: what the relay does when the source deleted records it
/// had not copied yet (retention, `DeleteRecords`) or a partition it was
/// copying is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnGap {
    /// Stop with an error naming the range. Nothing is recorded, so a
    /// restart finds the same gap and stops the same way.
    #[default]
    Fail,
    /// Record the gap (WAL, then the target's checkpoint topic), count it,
    /// and read on from the oldest record the source still has.
    Skip,
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

pub const DEFAULT_TRANSACTION_TIMEOUT_MS: u64 = 60_000;
/// As MirrorMaker 2's `sync.topic.configs.interval.seconds`.
pub const DEFAULT_SYNC_TOPICS_INTERVAL_SECS: u64 = 600;
/// MirrorMaker 2's `DefaultConfigPropertyFilter` exclusions: settings that
/// belong to the target cluster (replication throttles, in-sync replicas,
/// unclean elections) or would change what the target does with copied
/// records' timestamps.
pub const DEFAULT_TOPIC_CONFIGS_EXCLUDE: [&str; 6] = [
    r"follower\.replication\.throttled\.replicas",
    r"leader\.replication\.throttled\.replicas",
    r"message\.timestamp\.difference\.max\.ms",
    r"message\.timestamp\.type",
    r"unclean\.leader\.election\.enable",
    r"min\.insync\.replicas",
];
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
pub const DEFAULT_TRANSACTION_MAX_BYTES: u64 = 32 << 20;

impl Config {
    /// Reads `path`, applies environment overrides from `env`, validates.
    /// The CLI passes `std::env::vars()`.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, env, Some(path))
    }

    /// Parses TOML text, applies environment overrides from `env`, validates.
    pub fn from_toml_str(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::parse(text, env, None)
    }

    fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        path: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let (overrides, env_problems) = env::overrides(env);
        let raw = file::parse(text, &overrides, path)?;
        validate::validate(raw, env_problems)
    }

    /// Whether this pipeline copies `tp` (partition-wise; the topic
    /// selection is `source.topics`): every partition, or its unit's.
    pub fn owns(&self, tp: &TopicPartition) -> bool {
        self.unit.is_none_or(|u| u.owns(tp))
    }

    /// The key the relay's WAL is opened with (`wal.encryption_key_file`):
    /// give it to [`crate::wal::Wal::open_with_key`].
    pub fn wal_key(&self) -> Option<crate::wal::WalKey> {
        self.wal.encryption_key.clone()
    }

    /// The options the relay's WAL is opened with (and [`Config::wal_key`]).
    pub fn wal_options(&self) -> crate::wal::WalOptions {
        crate::wal::WalOptions {
            max_bytes: self.wal.max_bytes,
        }
    }

    /// The relay's name: `relay_id`, or else `target.transactional_id`.
    pub fn relay_id(&self) -> String {
        self.relay_id
            .clone()
            .unwrap_or_else(|| self.target.transactional_id.clone())
    }

    /// The source consumer group: `source.group_id`, or else `kafka-relay-<relay_id>`.
    pub fn group_id(&self) -> String {
        self.source
            .group_id
            .clone()
            .unwrap_or_else(|| format!("kafka-relay-{}", self.relay_id()))
    }

    /// The target topic of records from `source_topic`: `target.topic`, or the same name.
    pub fn target_topic_for(&self, source_topic: &str) -> String {
        self.target
            .topic
            .clone()
            .unwrap_or_else(|| source_topic.to_string())
    }

    /// Pass-through properties plus `bootstrap.servers`, for the source clients.
    /// The relay adds the settings it controls (group, isolation, commits) itself.
    pub fn source_client_config(&self) -> BTreeMap<String, String> {
        with_bootstrap(&self.source.properties, &self.source.bootstrap_servers)
    }

    /// Pass-through properties plus `bootstrap.servers`, for the target clients.
    /// The relay adds the settings it controls (transactions, idempotence) itself.
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
            "relay {}{} | source {} topics {} | target {} topic {} | wal {} (max {} bytes{}) | format {:?} | source props {:?} | target props {:?}",
            self.relay_id(),
            if self.enabled { "" } else { " (disabled)" },
            self.source.bootstrap_servers,
            topics,
            self.target.bootstrap_servers,
            self.target.topic.as_deref().unwrap_or("<same name>"),
            self.wal.dir.display(),
            self.wal.max_bytes,
            match &self.wal.encryption_key {
                Some(key) => format!(", encrypted, key id {}", key.id()),
                None => String::new(),
            },
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

#[cfg(test)]
mod tests;
