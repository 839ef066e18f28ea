//! The effective configuration as TOML: every key with the value the relay
//! runs with (file, then environment, then secret files, then defaults),
//! secrets shown as `"***"`. What `kafka-relay config check` prints.
//!
//! Invariant: a value [`is_secret`] names, and `admin.token`, never leave
//! this module in clear. Built from the validated [`Config`], so what it
//! shows is what was checked.

use toml::{Table, Value};

use super::*;

const HIDDEN: &str = "***";

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn list(items: &[String]) -> Value {
    Value::Array(items.iter().map(|s| text(s.clone())).collect())
}

fn snake(debug: impl fmt::Debug) -> Value {
    let name = format!("{debug:?}");
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    text(out)
}

fn properties(props: &Properties) -> Value {
    Value::Table(
        props
            .0
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    text(if is_secret(k) { HIDDEN } else { v.as_str() }),
                )
            })
            .collect(),
    )
}

fn table(entries: impl IntoIterator<Item = (&'static str, Option<Value>)>) -> Value {
    Value::Table(
        entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

impl Config {
    /// The configuration as the relay runs it, as TOML, secrets hidden.
    pub fn effective_toml(&self) -> String {
        let s = &self.source;
        let (selection_key, selection) = match &s.topics {
            TopicSelection::List(names) => ("topics", list(names)),
            TopicSelection::Regex(re) => ("topic_regex", text(re.clone())),
        };
        let start = match &s.start {
            StartPosition::Earliest => text("earliest"),
            StartPosition::Latest => text("latest"),
            StartPosition::Timestamp(ms) => table([("timestamp_ms", Some(int(*ms)))]),
            StartPosition::Offsets(map) => {
                let offsets: Table = map
                    .iter()
                    .map(|(tp, o)| (format!("{}/{}", tp.topic, tp.partition), int(*o)))
                    .collect();
                let mut t = Table::new();
                t.insert("offsets".to_string(), Value::Table(offsets));
                Value::Table(t)
            }
        };
        let mut source = Table::new();
        source.insert(
            "bootstrap_servers".into(),
            text(s.bootstrap_servers.clone()),
        );
        source.insert(selection_key.into(), selection);
        source.insert("group_id".into(), text(self.group_id()));
        source.insert("start".into(), start);
        source.insert("on_gap".into(), snake(s.on_gap));
        source.insert("refresh_interval_secs".into(), int(s.refresh_interval_secs));
        source.insert("properties".into(), properties(&s.properties));

        let t = &self.target;
        let target = table([
            ("bootstrap_servers", Some(text(t.bootstrap_servers.clone()))),
            ("topic", t.topic.clone().map(text)),
            ("transactional_id", Some(text(t.transactional_id.clone()))),
            ("checkpoint_topic", Some(text(t.checkpoint_topic.clone()))),
            ("partitioning", Some(snake(t.partitioning))),
            (
                "transaction_timeout_ms",
                Some(int(t.transaction_timeout_ms)),
            ),
            ("create_topics", Some(Value::Boolean(t.create_topics))),
            (
                "sync_topics_interval_secs",
                Some(int(t.sync_topics_interval_secs)),
            ),
            (
                "topic_configs_include",
                t.topic_configs_include.as_deref().map(list),
            ),
            (
                "topic_configs_exclude",
                Some(list(&t.topic_configs_exclude)),
            ),
            ("properties", Some(properties(&t.properties))),
        ]);
        let r = &self.retry;
        let mut root = Table::new();
        root.insert("relay_id".into(), text(self.relay_id()));
        root.insert("enabled".into(), Value::Boolean(self.enabled));
        root.insert("format".into(), snake(self.format));
        root.insert("source".into(), Value::Table(source));
        root.insert("target".into(), target);
        root.insert(
            "wal".into(),
            table([
                ("dir", Some(text(self.wal.dir.display().to_string()))),
                (
                    "encryption_key_file",
                    self.wal
                        .encryption_key_file
                        .as_ref()
                        .map(|p| text(p.display().to_string())),
                ),
                ("max_bytes", Some(int(self.wal.max_bytes))),
                ("min_free_bytes", Some(int(self.wal.min_free_bytes))),
            ]),
        );
        root.insert(
            "batch".into(),
            table([
                ("max_records", Some(int(self.batch.max_records))),
                ("max_bytes", Some(int(self.batch.max_bytes))),
                ("linger_ms", Some(int(self.batch.linger_ms))),
            ]),
        );
        root.insert(
            "transaction".into(),
            table([
                ("max_records", Some(int(self.transaction.max_records))),
                ("max_bytes", Some(int(self.transaction.max_bytes))),
                (
                    "commit_interval_ms",
                    Some(int(self.transaction.commit_interval_ms)),
                ),
            ]),
        );
        root.insert(
            "retry".into(),
            table([
                ("initial_backoff_ms", Some(int(r.initial_backoff_ms))),
                ("max_backoff_ms", Some(int(r.max_backoff_ms))),
                ("multiplier", Some(Value::Float(r.multiplier))),
                ("jitter", Some(Value::Boolean(r.jitter))),
                ("max_attempts", Some(int(r.max_attempts))),
                ("max_elapsed_ms", Some(int(r.max_elapsed_ms))),
                ("record_attempts", Some(int(r.record_attempts))),
                ("on_exhausted", Some(snake(r.on_exhausted))),
            ]),
        );
        root.insert(
            "rate".into(),
            table([("max_bytes_per_sec", self.rate.max_bytes_per_sec.map(int))]),
        );
        root.insert(
            "record".into(),
            table([("max_bytes", Some(int(self.record.max_bytes)))]),
        );
        root.insert(
            "dlq".into(),
            table([("topic", self.dlq.topic.clone().map(text))]),
        );
        root.insert(
            "admin".into(),
            table([
                ("listen", self.admin.listen.map(|a| text(a.to_string()))),
                ("token", self.admin.token.as_ref().map(|_| text(HIDDEN))),
                ("open_paths", Some(list(&self.admin.open_paths))),
                (
                    "tls_cert_file",
                    self.admin
                        .tls
                        .as_ref()
                        .map(|t| text(t.cert_file.display().to_string())),
                ),
                (
                    "tls_key_file",
                    self.admin
                        .tls
                        .as_ref()
                        .map(|t| text(t.key_file.display().to_string())),
                ),
                (
                    "tls_ca_file",
                    self.admin
                        .tls
                        .as_ref()
                        .map(|t| text(t.ca_file.display().to_string())),
                ),
            ]),
        );
        if let Some(scale) = &self.scale {
            root.insert(
                "scale".into(),
                table([
                    ("units", Some(int(scale.units))),
                    ("session_timeout_ms", Some(int(scale.session_timeout_ms))),
                    ("units_topic", Some(text(scale.units_topic.clone()))),
                ]),
            );
        }
        if let Some(o) = &self.offsets {
            root.insert(
                "offsets".into(),
                table([
                    ("groups", Some(list(&o.groups))),
                    ("interval_secs", Some(int(o.interval_secs))),
                    ("map_topic", Some(text(o.map_topic.clone()))),
                    ("map_retention_ms", Some(int(o.map_retention_ms))),
                    ("map_retention_bytes", Some(int(o.map_retention_bytes))),
                ]),
            );
        }
        toml::to_string(&root)
            .unwrap_or_else(|e| format!("# cannot render the configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_config_reads_back_as_the_same_config_with_secrets_hidden() {
        let text = r#"
            [source]
            bootstrap_servers = "s:9092"
            topic_regex = "^orders-.*"
            start = { offsets = { "orders-1/0" = 42 } }
            [source.properties]
            "security.protocol" = "SASL_PLAINTEXT"
            "sasl.mechanism" = "PLAIN"
            "sasl.username" = "relay"
            "sasl.password" = "hunter2-secret"
            [target]
            bootstrap_servers = "t:9092"
            transactional_id = "rel"
            partitioning = "key_hash"
            [wal]
            dir = "/var/wal"
            [retry]
            on_exhausted = "dead_letter"
            [admin]
            listen = "9644"
            token = "adm1n-token"
            [scale]
            units = 4
        "#;
        let config = Config::from_toml_str(text, std::iter::empty()).expect("config");
        let shown = config.effective_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("adm1n"),
            "{shown}"
        );
        // With the secrets put back, it is the same configuration.
        let back = shown
            .replace(
                r#""sasl.password" = "***""#,
                r#""sasl.password" = "hunter2-secret""#,
            )
            .replace(r#"token = "***""#, r#"token = "adm1n-token""#);
        let again = Config::from_toml_str(&back, std::iter::empty())
            .unwrap_or_else(|e| panic!("{e}\n{shown}"));
        // The same, but for the defaults it now names.
        assert_eq!(again.relay_id(), config.relay_id());
        assert_eq!(again.group_id(), config.group_id());
        let mut named = again.clone();
        (named.relay_id, named.source.group_id) = (None, None);
        assert_eq!(named, config, "{shown}");
        assert_eq!(again.effective_toml(), shown);
    }
}
