//! kafka-relay: a durable, exactly-once relay that copies Kafka topics from a
//! source cluster to a target cluster over links that fail.
//!
//! The data path, one module per stage:
//!
//! ```text
//! source (rdkafka consumer, read_committed)
//!   -> wal (sled, checksummed batches, fsync'd)
//!   -> shipper (transactional producer on the target, with a checkpoint record)
//!   -> checkpoint (committed progress on the target, read back on recovery)
//! ```
//!
//! `gap` records what the source deleted before the relay copied it.
//! `offsets` writes the exact source-to-target offset map next to the
//! checkpoints and translates consumer groups' offsets with it.
//! `topics` creates target topics like their source topics and keeps them
//! so, with the blocking admin calls of `kafka`.
//! `pipeline` starts and stops the stages; `config` loads and validates the
//! TOML file; `format` shapes target records; `ops` (control, metrics,
//! status, admin) is what operators see and steer; `cli` is the
//! command-line edge that turns typed errors into messages for people.

pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod format;
pub mod gap;
pub mod kafka;
pub mod offsets;
pub mod ops;
pub mod pipeline;
pub mod record;
pub mod scale;
pub mod shipper;
pub mod source;
pub mod topics;
pub mod verify;
pub mod wal;

/// Wall-clock milliseconds since the epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
