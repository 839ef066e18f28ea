//! Exact consumer-group offset translation, for consumers that move from
//! the source cluster to the target.
//!
//! With `[offsets]` set, every target transaction also writes the exact
//! source-to-target offset mapping of the records it copies (`map`), to a
//! topic on the target, in the same transaction. From that map a group's
//! committed source offsets translate to target offsets (`translate`):
//! exactly, or to the next copied record's when an offset falls in a gap.
//! `groups` reads the chosen groups' offsets on the source and commits the
//! translations to the same groups on the target, periodically or once
//! (`kafka-relay offsets translate`).
//!
//! Like the checkpoints, the map lives on the target and is read with
//! `read_committed`: it survives restarts and the loss of the WAL, and it
//! never names a record the target does not hold. How it compares with
//! MirrorMaker 2's checkpoints: docs/offsets.md.
//!
//! Called by the shipper (writes the map), the pipeline (runs the sync)
//! and the CLI.

pub mod groups;
pub mod map;
pub mod translate;

use rdkafka::error::KafkaError;

use crate::checkpoint::CheckpointError;
use crate::kafka::{AdminRequestError, Side};

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("no offset map: set [offsets] in the configuration (the relay writes the map only then, from the next transaction on)")]
    NoMap,
    #[error("cannot create a client: {0}")]
    Client(#[source] KafkaError),
    #[error("{1} cluster: {0}")]
    Admin(Side, #[source] AdminRequestError),
    #[error("{side} cluster: {call} failed: {source}")]
    Request {
        side: Side,
        call: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("offset map: {0}")]
    Map(#[from] CheckpointError),
    #[error("consumer group {group} has {members} member(s) on the target: its consumers own its offsets there; stop them first")]
    GroupActive { group: String, members: usize },
}
