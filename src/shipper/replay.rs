//! Dead-letter replay (`kafka-relay dlq replay`): sends letters from the
//! dead-letter queue to the target, each in a transaction of its own with a
//! replay marker in the checkpoint topic, then removes it from the queue.
//!
//! Invariant: a letter reaches the target exactly once. Its marker commits
//! with it; a letter whose marker is already committed (an interrupted
//! replay) is only removed, and the markers keep the shipper from sending
//! it from the WAL again. Runs with the relay stopped: the WAL lock
//! guarantees it.
//!
//! Called by `cli::dlq`, on a `Shipper` from [`Shipper::connect`].

use rdkafka::error::KafkaError;

use super::delivery::NOT_A_RECORD;
use super::{Shipper, ShipperError};
use crate::checkpoint;
use crate::dlq::DeadLetter;

/// What a dead-letter replay did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayReport {
    pub replayed: u64,
    /// Already on the target from an earlier, interrupted replay; only removed.
    pub already_replayed: u64,
}

impl Shipper {
    /// Replays dead letters to the target, each in its own transaction with
    /// a replay marker, then removes it from the queue. A letter whose marker
    /// is already committed is only removed: replaying is exactly-once too.
    /// Runs with the relay stopped (the WAL lock guarantees it).
    pub fn replay(&mut self, letters: &[DeadLetter]) -> Result<ReplayReport, ShipperError> {
        let mut report = ReplayReport::default();
        for letter in letters {
            let id = letter.id();
            if !self.replayed.contains(&id) {
                self.replay_one(letter, &id)
                    .map_err(|e| ShipperError::Replay {
                        id: id.clone(),
                        source: e,
                    })?;
                report.replayed += 1;
            } else {
                report.already_replayed += 1;
            }
            self.dead_letters.remove(&id)?;
            self.replayed.insert(id);
        }
        Ok(report)
    }

    fn replay_one(&mut self, letter: &DeadLetter, id: &str) -> Result<(), KafkaError> {
        self.in_transaction(|s| {
            s.send_record(
                &letter.topic,
                letter.partition,
                &letter.record,
                NOT_A_RECORD,
            )?;
            s.send_to_checkpoint_topic(
                &checkpoint::encode_replay_key(&s.settings.relay_id, id),
                &checkpoint::encode_replay_value(),
            )
        })
    }
}
