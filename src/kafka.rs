//! What the relay knows about Kafka clients, in one place: the client
//! settings of each side, and the families of librdkafka error codes the
//! stages sort errors by.
//!
//! A family is a judgement about what an error means for the relay (the
//! cluster is out of reach for now; credentials are wrong; a partition is
//! unknown; the target refuses a record for good). Each is named once
//! here so that the source, the shipper, the checkpoint reader, `check`
//! and `verify` cannot drift apart on it.
//!
//! Producer errors of a transaction are sorted by rdkafka's own
//! `is_retriable()` / `txn_requires_abort()` / `is_fatal()` (`shipper::retry`);
//! these families cover the codes those flags do not decide.

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode as C;

use crate::config::Config;

/// The source's pass-through properties and `bootstrap.servers`; each
/// client adds the settings it controls itself.
pub fn source_client(config: &Config) -> ClientConfig {
    client(config.source_client_config())
}

/// The target's pass-through properties and `bootstrap.servers`, for the
/// producer, the checkpoint reader and the admin calls.
pub fn target_client(config: &Config) -> ClientConfig {
    client(config.target_client_config())
}

fn client(properties: std::collections::BTreeMap<String, String>) -> ClientConfig {
    let mut client = ClientConfig::new();
    for (k, v) in properties {
        client.set(k, v);
    }
    client
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(unknown_partition(C::UnknownPartition));
    }
}
