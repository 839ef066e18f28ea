//! Source gaps on the target: the gaps the source recorded (`gap`) are
//! committed to the checkpoint topic, in a transaction of their own.
//!
//! Invariant: a gap is on the target before any checkpoint that moves past
//! it commits (it is shipped after each WAL read, before the transaction of
//! the batches read), and is noted shipped only after its commit.
//!
//! Called by `Shipper::run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::retry::backoff;
use super::{Shipper, ShipperError};
use crate::gap::{self, Gap};

impl Shipper {
    /// Commits the gaps not yet on the target to the checkpoint topic, in a
    /// transaction of their own, retrying like any transaction until it
    /// commits or `stop`.
    pub(super) fn ship_gaps(&mut self, stop: &AtomicBool) -> Result<(), ShipperError> {
        let gaps = self.gaps.unshipped()?;
        if gaps.is_empty() {
            return Ok(());
        }
        let mut delays = backoff(&self.settings.retry);
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            let sent = self.in_transaction(|s| {
                gaps.iter().try_for_each(|g: &Gap| {
                    let (key, value) = gap::encode_for_target(&s.settings.relay_id, g);
                    s.send_to_checkpoint_topic(&key, &value)
                })
            });
            let error = match sent {
                Ok(()) => {
                    self.gaps.mark_shipped(&gaps)?;
                    self.shared.control.target_ok();
                    tracing::info!(
                        gaps = gaps.len(),
                        "source gaps committed to the checkpoint topic"
                    );
                    return Ok(());
                }
                Err(error) => error,
            };
            attempts += 1;
            if self.settings.retry.is_spent(attempts, started.elapsed()) {
                return Err(ShipperError::RetriesExhausted {
                    attempts,
                    elapsed_secs: started.elapsed().as_secs(),
                    last: error.to_string(),
                });
            }
            if stop.load(Ordering::Relaxed) {
                return Err(ShipperError::Stopped(
                    "committing source gaps; they stay in the WAL",
                ));
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(30));
            self.shared.control.target_failed(&error);
            tracing::warn!(%error, attempt = attempts, retry_in = ?delay, "cannot commit source gaps to the target; retrying with a new producer");
            std::thread::sleep(delay);
            // A few small records: a fresh producer (fenced in, checkpoints
            // read again) costs little, and leaves no half-aborted state
            // behind, whatever the error was.
            self.rebuild(stop, &error)?;
        }
    }
}
