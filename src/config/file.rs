//! The file's shape (`Raw*`, one struct per section) and turning TOML text
//! plus environment overrides into it.
//!
//! Only syntax, types and unknown keys are checked here, by serde, which
//! stops at the first error. Everything that can be checked after parsing,
//! including required keys, is left to `validate`, which reports every
//! problem at once: so required keys are `Option` here, sections default to
//! empty, and sizes and `source.start` are kept as TOML values.
//!
//! Error messages never quote the offending line: it may hold a password.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::env::{self, Override, TOP_LEVEL};
use super::{ConfigError, Format, OnExhausted, OnGap, Partitioning, Position, Problem};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub relay_id: Option<String>,
    pub enabled: Option<bool>,
    pub format: Option<Format>,
    #[serde(default)]
    pub source: RawSource,
    #[serde(default)]
    pub target: RawTarget,
    #[serde(default)]
    pub wal: RawWal,
    #[serde(default)]
    pub batch: RawBatch,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub transaction: RawTransaction,
    #[serde(default)]
    pub rate: RawRate,
    #[serde(default)]
    pub record: RawRecord,
    #[serde(default)]
    pub dlq: RawDlq,
    #[serde(default)]
    pub admin: RawAdmin,
    pub scale: Option<RawScale>,
    pub offsets: Option<RawOffsets>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSource {
    pub bootstrap_servers: Option<String>,
    pub topics: Option<Vec<String>>,
    pub topic_regex: Option<String>,
    pub group_id: Option<String>,
    pub start: Option<toml::Value>,
    pub on_gap: Option<OnGap>,
    pub refresh_interval_secs: Option<u64>,
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    /// `sasl.password`, read from this file.
    pub password_file: Option<PathBuf>,
    /// Client properties read from files, by property name.
    #[serde(default)]
    pub property_files: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub bootstrap_servers: Option<String>,
    pub topic: Option<String>,
    pub transactional_id: Option<String>,
    pub checkpoint_topic: Option<String>,
    pub partitioning: Option<Partitioning>,
    pub transaction_timeout_ms: Option<u64>,
    pub create_topics: Option<bool>,
    pub sync_topics_interval_secs: Option<u64>,
    pub topic_configs_include: Option<Vec<String>>,
    pub topic_configs_exclude: Option<Vec<String>>,
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    /// `sasl.password`, read from this file.
    pub password_file: Option<PathBuf>,
    /// Client properties read from files, by property name.
    #[serde(default)]
    pub property_files: BTreeMap<String, PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWal {
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<toml::Value>,
    pub min_free_bytes: Option<toml::Value>,
    pub encryption_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    pub max_records: Option<i64>,
    pub max_bytes: Option<toml::Value>,
    pub linger_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTransaction {
    pub max_records: Option<i64>,
    pub max_bytes: Option<toml::Value>,
    pub commit_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecord {
    pub max_bytes: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDlq {
    pub topic: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub open_paths: Option<Vec<String>>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScale {
    pub units: Option<i64>,
    pub session_timeout_ms: Option<i64>,
    pub units_topic: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOffsets {
    pub groups: Option<Vec<String>>,
    pub interval_secs: Option<i64>,
    pub map_topic: Option<String>,
    pub map_retention_ms: Option<i64>,
    pub map_retention_bytes: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    pub max_bytes_per_sec: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub initial_backoff_ms: Option<u64>,
    pub max_backoff_ms: Option<u64>,
    pub multiplier: Option<f64>,
    pub jitter: Option<bool>,
    pub max_attempts: Option<u32>,
    pub max_elapsed_ms: Option<u64>,
    pub record_attempts: Option<u32>,
    pub on_exhausted: Option<OnExhausted>,
}

/// Parses `text` (from `path`, if any) and applies `overrides`.
pub(super) fn parse(
    text: &str,
    overrides: &[Override],
    path: Option<&Path>,
) -> Result<RawConfig, ConfigError> {
    let positioned = |e: toml::de::Error| ConfigError::Parse {
        path: path.map(Path::to_path_buf),
        position: e.span().map(|s| position(text, s.start)),
        message: explain(e.message()),
    };
    if overrides.is_empty() {
        // Straight from the text: errors keep their line and column.
        return toml::from_str(text).map_err(positioned);
    }
    let file: toml::Table = toml::from_str(text).map_err(positioned)?;
    let mut table = file.clone();
    env::apply(&mut table, overrides);
    let e = match toml::Value::Table(table).try_into::<RawConfig>() {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    // Whose fault? The file's own errors keep their position; otherwise
    // name the variables that break it, each on its own.
    match toml::from_str::<RawConfig>(text) {
        Err(fe) if fe.message() == e.message() => Err(positioned(fe)),
        Ok(_) => {
            let culprits: Vec<Problem> = overrides
                .iter()
                .filter_map(|o| {
                    let mut t = file.clone();
                    env::apply(&mut t, std::slice::from_ref(o));
                    let err = toml::Value::Table(t).try_into::<RawConfig>().err()?;
                    Some(Problem {
                        key: o.key(),
                        message: format!("from {}: {}", o.var, explain(err.message())),
                    })
                })
                .collect();
            if culprits.is_empty() {
                Err(unplaced(path, overrides, &e))
            } else {
                Err(ConfigError::Invalid(culprits))
            }
        }
        Err(_) => Err(unplaced(path, overrides, &e)),
    }
}

/// An error of the file and the environment together.
fn unplaced(path: Option<&Path>, overrides: &[Override], e: &toml::de::Error) -> ConfigError {
    let vars: Vec<&str> = overrides.iter().map(|o| o.var.as_str()).collect();
    ConfigError::Parse {
        path: path.map(Path::to_path_buf),
        position: None,
        message: format!(
            "with environment overrides {}: {}",
            vars.join(", "),
            explain(e.message())
        ),
    }
}

/// toml's message on one line, with a hint for the usual mistakes.
fn explain(message: &str) -> String {
    let mut out = message.trim().lines().collect::<Vec<_>>().join("; ");
    if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        if TOP_LEVEL.contains(&field) {
            out.push_str(&format!(
                " (`{field}` is a top-level key: put it above the first [section] header)"
            ));
        } else if message.contains("`properties`") {
            out.push_str(
                " (librdkafka client properties go in the section's [….properties] table, \
                 with quoted names: \"security.protocol\" = \"SASL_PLAINTEXT\")",
            );
        }
    }
    out
}

/// Line and column (in characters), from 1, of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> Position {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}
