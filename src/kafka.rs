//! What the relay knows about Kafka clients, in one place: the client
//! settings of each side, the families of librdkafka error codes the
//! stages sort errors by, and blocking admin calls (list topics with their
//! partition counts, describe topic configs, create topics, add partitions,
//! alter topic configs), each with a typed error naming the call.
//!
//! A family is a judgement about what an error means for the relay (the
//! cluster is out of reach for now; credentials are wrong; a partition is
//! unknown; the target refuses a record for good). Each is named once
//! here so that the source, the shipper, the checkpoint reader, `check`
//! and `verify` cannot drift apart on it. Producer errors of a transaction
//! are sorted by rdkafka's own `is_retriable()` / `txn_requires_abort()` /
//! `is_fatal()` (`shipper::retry`); these families cover the codes those
//! flags do not decide.
//!
//! Every admin call blocks its thread until the cluster answers or
//! [`ADMIN_TIMEOUT`] passes, so callers run them on a thread of their own or
//! in `spawn_blocking`, never on the async executor. rdkafka completes admin
//! futures from its own thread; the current-thread runtime an [`Admin`]
//! keeps only waits for them.
//!
//! Called by `source`, `shipper`, `checkpoint`, `topics`, `cli::check`
//! and `verify`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigEntry, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::types::RDKafkaErrorCode as C;

use crate::config::Config;

/// How long one admin call may take, request and broker operation alike.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A librdkafka client configuration with exactly these properties.
pub fn client_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in properties {
        client.set(k, v);
    }
    client
}

/// The source's pass-through properties and `bootstrap.servers`; each
/// client adds the settings it controls itself.
pub fn source_client(config: &Config) -> ClientConfig {
    client_config(&config.source_client_config())
}

/// The target's pass-through properties and `bootstrap.servers`, for the
/// producer, the checkpoint reader and the admin calls.
pub fn target_client(config: &Config) -> ClientConfig {
    client_config(&config.target_client_config())
}

/// The code of a librdkafka error, if it has one.
pub fn code(e: &KafkaError) -> Option<C> {
    e.rdkafka_error_code()
}

/// The cluster is out of reach for now (down, restarting, a connection
/// lost, a request timed out, leadership moving): the same call may
/// succeed later.
pub fn unreachable(code: C) -> bool {
    matches!(
        code,
        C::BrokerTransportFailure
            | C::Resolve
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotController
            | C::KafkaStorageError
    )
}

/// Another producer with the same transactional.id has initialised
/// transactions since ours did: ours can commit nothing any more.
pub fn fenced(code: C) -> bool {
    matches!(
        code,
        C::Fenced | C::ProducerFenced | C::InvalidProducerEpoch
    )
}

/// Credentials or permissions are wrong: retrying cannot help.
pub fn auth_failed(code: C) -> bool {
    matches!(
        code,
        C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
    )
}

/// A connection's TLS handshake or SASL authentication failed (an
/// untrusted or unreadable certificate, a wrong password, a mechanism the
/// listener does not enable): a setting of this side is wrong, and
/// connecting again cannot fix it. librdkafka reports these on its error
/// events while the call that needed the connection only times out.
pub fn security_failed(code: C) -> bool {
    matches!(
        code,
        C::SSL
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState
    )
}

/// Which cluster a client talks to, as messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// A side's TLS or SASL settings do not let it connect. Not an outage:
/// the relay stops instead of retrying.
#[derive(Debug, thiserror::Error)]
#[error("{side}: cannot connect to {servers}: {cause}. This is a TLS or SASL setting of the {side} ([{side}.properties]), not an outage: fix it and start again")]
pub struct SecurityError {
    pub side: Side,
    pub servers: String,
    /// What librdkafka reported, naming the broker (it never quotes a password).
    pub cause: String,
}

/// A client context that keeps the first TLS or SASL failure librdkafka
/// reports on its error events (or logs), for [`SecurityWatch::failure`].
/// librdkafka delivers them only while the client is polled (a threaded
/// producer polls itself).
#[derive(Default)]
pub struct SecurityWatch(Mutex<Option<String>>);

/// Words of librdkafka's log lines about a failed handshake or
/// authentication, for failures that reach the log before an error event.
const SECURITY_LOG_WORDS: [&str; 4] = [
    "SSL handshake failed",
    "certificate verify failed",
    "SASL authentication error",
    "Unsupported SASL mechanism",
];

impl SecurityWatch {
    /// The first TLS or SASL failure seen, if any.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Takes note of an error event (call from [`ClientContext::error`]).
    pub fn on_error(&self, error: &KafkaError, reason: &str) {
        if code(error).is_some_and(security_failed) {
            self.note(reason);
        }
    }

    /// Takes note of a log line (call from [`ClientContext::log`]).
    pub fn on_log(&self, level: RDKafkaLogLevel, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
            && SECURITY_LOG_WORDS.iter().any(|w| message.contains(w))
        {
            self.note(message);
        }
    }

    fn note(&self, cause: &str) {
        // librdkafka prefixes its thread (`[thrd:ssl://host:port/bootstrap]: `);
        // the broker is named again right after it.
        let cause = match cause.strip_prefix("[thrd:") {
            Some(rest) => rest.split_once("]: ").map_or(cause, |(_, msg)| msg),
            None => cause,
        };
        let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(cause.trim().to_string());
        }
    }
}

impl ClientContext for SecurityWatch {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.on_log(level, message);
        DefaultClientContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.on_error(&error, reason);
        DefaultClientContext.error(error, reason);
    }
}

impl ConsumerContext for SecurityWatch {}

/// Whether `client` connects with TLS or SASL (`security.protocol` other
/// than PLAINTEXT), the only connections [`probe_security`] can find wrong.
pub fn uses_security(client: &ClientConfig) -> bool {
    client
        .get("security.protocol")
        .is_some_and(|p| !p.eq_ignore_ascii_case("PLAINTEXT"))
}

/// Connects to one side once, before the relay starts work there, to tell
/// a wrong TLS or SASL setting from an outage: a TLS or SASL failure is a
/// [`SecurityError`]; success, a cluster out of reach, or any other
/// failure is `Ok`, left to the caller's usual handling (an outage is
/// ridden out there). Waits up to `limit`; returns at once without
/// connecting for a PLAINTEXT client.
pub fn probe_security(
    client: &ClientConfig,
    side: Side,
    limit: Duration,
) -> Result<(), SecurityError> {
    if !uses_security(client) {
        return Ok(());
    }
    let servers = client
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    let fail = |cause: String| SecurityError {
        side,
        servers: servers.clone(),
        cause,
    };
    let consumer: BaseConsumer<SecurityWatch> =
        match client.create_with_context(SecurityWatch::default()) {
            Ok(c) => c,
            // A setting librdkafka refuses outright (an unreadable key file):
            // reported by the client the caller creates next, as before.
            Err(_) => return Ok(()),
        };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let step = Duration::from_secs(1).min(deadline.saturating_duration_since(Instant::now()));
        if consumer.fetch_metadata(None, step).is_ok() {
            return Ok(());
        }
        // Error events and logs reach the context only through a poll.
        let _ = consumer.poll(Duration::from_millis(50));
        if let Some(cause) = consumer.context().failure() {
            return Err(fail(cause));
        }
    }
    Ok(())
}

/// The cluster does not know a topic or partition (deleted, not created
/// yet, or metadata not yet propagated).
pub fn unknown_partition(code: C) -> bool {
    matches!(
        code,
        C::UnknownTopicOrPartition | C::UnknownPartition | C::UnknownTopic
    )
}

/// The target refuses a record for reasons sending it again cannot fix:
/// its size or form, permissions, a topic that is not there. (An unknown
/// topic can appear later; the retry policy's `record_attempts` gives it
/// that chance first. An unknown *partition* is not here: a partition
/// added to the target is known once metadata is refreshed.)
pub fn refused_for_good(code: C) -> bool {
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::MessageBatchTooLarge
            | C::InvalidRecord
            | C::InvalidMessage
            | C::InvalidTimestamp
            | C::TopicAuthorizationFailed
            | C::UnknownTopicOrPartition
            | C::UnknownTopic
    )
}

/// Why an admin call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminRequestError {
    #[error("cannot create an admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot start the runtime admin calls wait on: {0}")]
    Runtime(#[source] std::io::Error),
    /// The request did not get an answer (unreachable, timed out) or could not be built.
    #[error("{call}: {source}")]
    Failed {
        call: String,
        #[source]
        source: KafkaError,
    },
    /// The cluster answered, and refused.
    #[error("{call}: the cluster answered {code:?} ({code})")]
    Refused {
        call: String,
        code: RDKafkaErrorCode,
    },
}

impl AdminRequestError {
    /// The error code the cluster (or librdkafka) gave, if any.
    pub fn code(&self) -> Option<RDKafkaErrorCode> {
        match self {
            AdminRequestError::Refused { code, .. } => Some(*code),
            AdminRequestError::Failed { source, .. } => source.rdkafka_error_code(),
            AdminRequestError::Client(_) | AdminRequestError::Runtime(_) => None,
        }
    }
}

/// An admin client of one cluster, with blocking calls.
pub struct Admin {
    timeout: Duration,
    client: AdminClient<DefaultClientContext>,
    /// Dropped by hand (see `Drop`).
    runtime: std::mem::ManuallyDrop<tokio::runtime::Runtime>,
}

/// A tokio runtime dropped the usual way panics inside an async context,
/// and the last owner of an `Admin` (the topic sync, a unit's pipeline)
/// may be dropped in one.
impl Drop for Admin {
    fn drop(&mut self) {
        // SAFETY: `runtime` is taken once, here, and never used after.
        let runtime = unsafe { std::mem::ManuallyDrop::take(&mut self.runtime) };
        runtime.shutdown_background();
    }
}

impl Admin {
    /// Calls wait up to [`ADMIN_TIMEOUT`].
    pub fn new(client: &ClientConfig) -> Result<Admin, AdminRequestError> {
        Admin::with_timeout(client, ADMIN_TIMEOUT)
    }

    /// Calls wait up to `timeout`: shorter for a thread with other work.
    pub fn with_timeout(
        client: &ClientConfig,
        timeout: Duration,
    ) -> Result<Admin, AdminRequestError> {
        Ok(Admin {
            timeout,
            client: client.create().map_err(AdminRequestError::Client)?,
            runtime: std::mem::ManuallyDrop::new(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(AdminRequestError::Runtime)?,
            ),
        })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout))
    }

    /// Whether `topic` exists with at least one partition.
    pub fn topic_exists(&self, topic: &str) -> Result<bool, AdminRequestError> {
        let metadata = self
            .client
            .inner()
            .fetch_metadata(Some(topic), self.timeout)
            .map_err(|source| AdminRequestError::Failed {
                call: format!("Metadata of topic {topic}"),
                source,
            })?;
        Ok(metadata
            .topics()
            .iter()
            .any(|t| t.error().is_none() && !t.partitions().is_empty()))
    }

    /// The value of one config of `topic` as the cluster reports it
    /// (its own, or the broker default); `None` if it reports none.
    pub fn topic_config(
        &self,
        topic: &str,
        key: &str,
    ) -> Result<Option<String>, AdminRequestError> {
        Ok(self
            .describe_topic_configs(&[topic])?
            .remove(topic)
            .and_then(|entries| entries.into_iter().find(|e| e.name == key))
            .and_then(|e| e.value))
    }

    /// Every topic the cluster has, with its number of partitions (topics
    /// the metadata answer marks with an error are left out).
    pub fn topic_partitions(&self) -> Result<BTreeMap<String, i32>, AdminRequestError> {
        let metadata = self
            .client
            .inner()
            .fetch_metadata(None, self.timeout)
            .map_err(|source| AdminRequestError::Failed {
                call: "Metadata".to_string(),
                source,
            })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    }

    /// Every config entry of each topic (with its source: the topic's own
    /// setting, a broker's, or the default).
    pub fn describe_topic_configs(
        &self,
        topics: &[&str],
    ) -> Result<BTreeMap<String, Vec<ConfigEntry>>, AdminRequestError> {
        if topics.is_empty() {
            return Ok(BTreeMap::new());
        }
        let call = || format!("DescribeConfigs of topic(s) {}", topics.join(", "));
        let resources: Vec<ResourceSpecifier> =
            topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let results = self
            .runtime
            .block_on(self.client.describe_configs(&resources, &self.options()))
            .map_err(|source| AdminRequestError::Failed {
                call: call(),
                source,
            })?;
        // One result per resource, in the order asked.
        let mut out = BTreeMap::new();
        for (topic, result) in topics.iter().zip(results) {
            let resource = result.map_err(|code| AdminRequestError::Refused {
                call: format!("DescribeConfigs of topic {topic}"),
                code,
            })?;
            out.insert(topic.to_string(), resource.entries);
        }
        if out.len() < topics.len() {
            return Err(AdminRequestError::Failed {
                call: call(),
                source: KafkaError::AdminOpCreation("fewer results than topics asked".into()),
            });
        }
        Ok(out)
    }

    /// Creates `topic` with `partitions` partitions, the broker's default
    /// replication factor and `configs`.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), AdminRequestError> {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        for (k, v) in configs {
            new = new.set(k, v);
        }
        let results = self
            .runtime
            .block_on(self.client.create_topics([&new], &self.options()));
        topic_results(format!("CreateTopics of topic {topic}"), results)
    }

    /// Grows `topic` to `total` partitions.
    pub fn create_partitions(&self, topic: &str, total: i32) -> Result<(), AdminRequestError> {
        let new = NewPartitions::new(topic, total.max(0) as usize);
        let results = self
            .runtime
            .block_on(self.client.create_partitions([&new], &self.options()));
        topic_results(
            format!("CreatePartitions of topic {topic} (to {total})"),
            results,
        )
    }

    /// Sets the topic's dynamic configs to exactly `configs`: AlterConfigs
    /// (not incremental) replaces the whole set, so a key left out goes back
    /// to the broker's default.
    pub fn alter_topic_configs(
        &self,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), AdminRequestError> {
        let call = || format!("AlterConfigs of topic {topic}");
        let mut change = AlterConfig::new(ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            change = change.set(k, v);
        }
        let results = self
            .runtime
            .block_on(self.client.alter_configs([&change], &self.options()))
            .map_err(|source| AdminRequestError::Failed {
                call: call(),
                source,
            })?;
        for result in results {
            result.map_err(|(_, code)| AdminRequestError::Refused { call: call(), code })?;
        }
        Ok(())
    }
}

/// The outcome of a one-topic CreateTopics or CreatePartitions call.
fn topic_results(
    call: String,
    results: Result<Vec<rdkafka::admin::TopicResult>, KafkaError>,
) -> Result<(), AdminRequestError> {
    let results = results.map_err(|source| AdminRequestError::Failed {
        call: call.clone(),
        source,
    })?;
    for result in results {
        result.map_err(|(_, code)| AdminRequestError::Refused {
            call: call.clone(),
            code,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_watch_keeps_the_first_handshake_or_authentication_failure() {
        let watch = SecurityWatch::default();
        watch.on_log(RDKafkaLogLevel::Warning, "[thrd:main]: broker down");
        watch.on_log(
            RDKafkaLogLevel::Debug,
            "SSL handshake failed: at debug level",
        );
        assert_eq!(watch.failure(), None);
        watch.on_error(
            &KafkaError::Global(C::BrokerTransportFailure),
            "ssl://b:1/bootstrap: Connection refused",
        );
        assert_eq!(watch.failure(), None);
        watch.on_error(
            &KafkaError::Global(C::SSL),
            "[thrd:ssl://b:1/bootstrap]: ssl://b:1/bootstrap: SSL handshake failed: certificate verify failed",
        );
        watch.on_error(&KafkaError::Global(C::Authentication), "later");
        assert_eq!(
            watch.failure().as_deref(),
            Some("ssl://b:1/bootstrap: SSL handshake failed: certificate verify failed")
        );
    }

    #[test]
    fn a_refused_record_is_never_an_outage_and_an_outage_never_a_refusal() {
        let all = [
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::RequestTimedOut,
            C::NotLeaderForPartition,
            C::MessageSizeTooLarge,
            C::InvalidRecord,
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
            C::UnknownTopicOrPartition,
            C::UnknownPartition,
        ];
        for code in all {
            assert!(
                !(unreachable(code) && (refused_for_good(code) || auth_failed(code))),
                "{code:?} is in two families that call for opposite actions"
            );
        }
        assert!(!refused_for_good(C::UnknownPartition));
        for code in [C::SSL, C::Authentication, C::SaslAuthenticationFailed] {
            assert!(security_failed(code) && !unreachable(code), "{code:?}");
        }
        assert!(unknown_partition(C::UnknownPartition));
    }
}
