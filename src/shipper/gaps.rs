//! Source gaps on the target: the gaps the source recorded (`gap`) are
//! committed to the checkpoint topic, in a transaction of their own.
//!
//! Invariant: a gap is on the target before any checkpoint that moves past
//! it commits (it is shipped after each WAL read, before the transaction of
//! the batches read), and is noted shipped only after its commit.
//!
//! Called by `Shipper::run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::retry::{backoff, classify, Recovery};
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
        loop {
            let sent = self.in_transaction(|s| {
                gaps.iter().try_for_each(|g: &Gap| {
                    let (key, value) = gap::encode_for_target(&s.settings.relay_id, g);
                    s.send_to_checkpoint_topic(&key, &value)
                })
            });
            match sent {
                Ok(()) => {
                    self.gaps.mark_shipped(&gaps)?;
                    tracing::info!(
                        gaps = gaps.len(),
                        "source gaps committed to the checkpoint topic"
                    );
                    return Ok(());
                }
                Err(error) => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(ShipperError::Stopped(
                            "committing source gaps; they stay in the WAL",
                        ));
                    }
                    let delay = delays.next().unwrap_or(Duration::from_secs(30));
                    self.shared.control.target_failed(&error);
                    tracing::warn!(%error, retry_in = ?delay, "cannot commit source gaps to the target; retrying");
                    std::thread::sleep(delay);
                    if classify(&error) == Recovery::Rebuild {
                        self.rebuild(stop)?;
                    }
                }
            }
        }
    }
}
