//! The environment layer: variables that override keys of the file, applied
//! after it is parsed and before validation.
//!
//! Scheme (documented in docs/configuration.md):
//! - `KAFKA_RELAY_<SECTION>__<KEY>` sets `<section>.<key>`; deeper paths
//!   nest the same way (`KAFKA_RELAY_SOURCE__START__TIMESTAMP_MS`).
//!   The part after the prefix is case-insensitive.
//! - `KAFKA_RELAY_<KEY>` sets a top-level key (`relay_id`, `enabled`, `format`).
//! - `KAFKA_RELAY_<SECTION>__PROPERTIES__<NAME>` sets a client property,
//!   `_` in the name standing for `.` (environment names have no dots).
//! - The seed product's `kafka_address` / `KAFKA_ADDRESS` set
//!   `target.bootstrap_servers`, `kafka_topic_name` / `KAFKA_TOPIC_NAME`
//!   set `target.topic`. `KAFKA_RELAY_*` wins over them: it is the more
//!   specific name.
//!
//! Other single-word `KAFKA_RELAY_*` variables (log settings, test knobs) are
//! not configuration and are ignored; a `KAFKA_RELAY_X__Y` naming no section
//! is a problem, since it can only be a misspelt override.
//!
//! Invariant: the result does not depend on the order of the environment.

use super::Problem;

/// Prefix of environment overrides: `KAFKA_RELAY_<SECTION>__<KEY>`.
pub const ENV_PREFIX: &str = "KAFKA_RELAY_";

/// The file's sections, as environment overrides may name them.
pub(super) const SECTIONS: [&str; 12] = [
    "source",
    "target",
    "wal",
    "batch",
    "retry",
    "transaction",
    "rate",
    "record",
    "dlq",
    "admin",
    "scale",
    "offsets",
];

/// Top-level keys, settable as `KAFKA_RELAY_<KEY>`.
pub(super) const TOP_LEVEL: [&str; 3] = ["relay_id", "enabled", "format"];

/// Keys whose values stay text even when they look like numbers or
/// booleans: a topic called `123` is still a topic name.
const TEXT_KEYS: [&str; 21] = [
    "bootstrap_servers",
    "topic",
    "topic_regex",
    "transactional_id",
    "checkpoint_topic",
    "group_id",
    "relay_id",
    "dir",
    "encryption_key_file",
    "format",
    "partitioning",
    "on_exhausted",
    "on_gap",
    "listen",
    "units_topic",
    "password_file",
    "token",
    "token_file",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
];

/// Keys whose values are lists: a comma-separated list (or a TOML array).
/// A regex with a comma in it needs the array form.
const LIST_KEYS: [&str; 3] = ["topics", "topic_configs_include", "topic_configs_exclude"];

/// The seed product's variable names and the keys they set.
const SEED_NAMES: [(&str, &str, &str); 4] = [
    ("kafka_address", "target", "bootstrap_servers"),
    ("KAFKA_ADDRESS", "target", "bootstrap_servers"),
    ("kafka_topic_name", "target", "topic"),
    ("KAFKA_TOPIC_NAME", "target", "topic"),
];

/// One environment variable that sets one key.
#[derive(Debug, Clone)]
pub(super) struct Override {
    /// The variable's name, for messages.
    pub var: String,
    /// The key it sets, e.g. `["target", "properties", "sasl.password"]`.
    pub path: Vec<String>,
    pub value: toml::Value,
}

impl Override {
    /// The key as problems name it: `target.properties."sasl.password"`.
    pub fn key(&self) -> String {
        self.path
            .iter()
            .map(|k| {
                if k.contains('.') {
                    format!("{k:?}")
                } else {
                    k.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The overrides found in `env`, in the order they apply, and problems
/// with the variables themselves.
pub(super) fn overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> (Vec<Override>, Vec<Problem>) {
    let mut seed = Vec::new();
    let mut ours = Vec::new();
    let mut problems = Vec::new();
    for (name, raw) in env {
        if let Some((_, section, key)) = SEED_NAMES.iter().find(|(n, _, _)| *n == name) {
            let path = vec![section.to_string(), key.to_string()];
            let value = value(&path, &raw);
            seed.push(Override {
                var: name,
                path,
                value,
            });
            continue;
        }
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let mut path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        match path.as_slice() {
            [key] if TOP_LEVEL.contains(&key.as_str()) => {}
            // Log settings, test knobs: not configuration.
            [_] => continue,
            [section, ..] if !SECTIONS.contains(&section.as_str()) => {
                problems.push(Problem {
                    key: name.clone(),
                    message: format!(
                        "no section {section:?}; environment overrides name one of {}",
                        SECTIONS.join(", ")
                    ),
                });
                continue;
            }
            _ if path.iter().any(String::is_empty) => {
                problems.push(Problem {
                    key: name.clone(),
                    message: "empty key: write KAFKA_RELAY_<SECTION>__<KEY>".to_string(),
                });
                continue;
            }
            _ => {}
        }
        if path.len() == 3 && (path[1] == "properties" || path[1] == "property_files") {
            path[2] = path[2].replace('_', ".");
        }
        let value = value(&path, &raw);
        ours.push(Override {
            var: name,
            path,
            value,
        });
    }
    seed.sort_by(|a, b| a.var.cmp(&b.var));
    ours.sort_by(|a, b| a.var.cmp(&b.var));
    // `kafka_address` and `KAFKA_ADDRESS` rank the same: differing values
    // would make one of them silently lose.
    for (i, a) in seed.iter().enumerate() {
        for b in &seed[i + 1..] {
            if a.path == b.path && a.value != b.value {
                problems.push(Problem {
                    key: a.key(),
                    message: format!(
                        "set by both {} and {} to different values; unset one",
                        a.var, b.var
                    ),
                });
            }
        }
    }
    seed.extend(ours);
    (seed, problems)
}

/// An environment value as TOML: numbers, booleans, arrays and inline
/// tables as such, anything else as a string. Text keys and properties are
/// always strings; list keys take a comma-separated list (or a TOML array).
fn value(path: &[String], raw: &str) -> toml::Value {
    let last = path.last().map_or("", String::as_str);
    if path
        .get(1)
        .is_some_and(|k| k == "properties" || k == "property_files")
        || TEXT_KEYS.contains(&last)
    {
        return toml::Value::String(raw.to_string());
    }
    if LIST_KEYS.contains(&last) && !raw.trim_start().starts_with('[') {
        return toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_string()))
                .collect(),
        );
    }
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Sets each override's key in `table`, creating sections as needed; an
/// override of a nested key replaces a non-table value on its way.
pub(super) fn apply(table: &mut toml::Table, overrides: &[Override]) {
    for o in overrides {
        set_path(table, &o.path, o.value.clone());
    }
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
