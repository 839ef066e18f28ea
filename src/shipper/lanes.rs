//! A pipeline's lanes (`[transaction] lanes`, see `lane`): one `Shipper`
//! per lane over the pipeline's WAL, connected, then run side by side.
//!
//! Invariants:
//! - The lanes connect together: a checkpoint read waits for every
//!   transaction open on the checkpoint topic when it began, and a lane's
//!   `init_transactions` is what aborts its crashed incarnation's. One
//!   after another, lane 0's read would wait for a later lane's old
//!   transaction to time out. (Creating the checkpoint topic twice at once
//!   is harmless: the second sees it exists.) A lane a shrunk `lanes` no
//!   longer runs is not initialised, so its open transaction, if any, is
//!   waited for until the broker aborts it at `transaction_timeout_ms`.
//! - The delivered progress the pipeline positions the source by is the
//!   union of the lanes': they share no partition.
//! - One lane failing stops them all (and the source, through the shared
//!   stop flag): the pipeline halts as it does when its one shipper fails,
//!   and every lane finishes or abandons its open transaction first; a lane
//!   that stopped because another failed reports the failure, not its stop.
//!
//! Called by `pipeline`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Lane, Shipper, ShipperError, ShipperStats, Wakeup};
use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::ops::Shared;
use crate::record::TopicPartition;
use crate::wal::Wal;

/// The connected shippers of one pipeline, lane 0 first.
pub struct Lanes {
    shippers: Vec<Shipper>,
}

impl Lanes {
    /// Connects every lane of `config.transaction.lanes` (see
    /// [`Shipper::connect`]). A lane's error stops the others and is the
    /// result, rather than their being stopped.
    pub fn connect(
        config: &Config,
        wal: &Wal,
        shared: &Shared,
        stop: &AtomicBool,
    ) -> Result<Lanes, ShipperError> {
        let connected: Vec<Result<Shipper, ShipperError>> = std::thread::scope(|scope| {
            let connecting: Vec<_> = Lane::all(config.transaction.lanes)
                .map(|lane| {
                    scope.spawn(move || {
                        let connected =
                            Shipper::connect(config, lane, wal.clone(), shared.clone(), stop);
                        // The run ends with this error: the other lanes need not go on trying.
                        if connected.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        connected
                    })
                })
                .collect();
            connecting
                .into_iter()
                .map(|handle| handle.join().unwrap_or(Err(ShipperError::LanePanicked)))
                .collect()
        });
        let mut shippers = Vec::with_capacity(connected.len());
        let mut stopped = None;
        for shipper in connected {
            match shipper {
                Ok(shipper) => shippers.push(shipper),
                // Stopped by the failure of another lane, or by a shutdown.
                Err(ShipperError::Stopped(what)) => stopped = stopped.or(Some(what)),
                Err(e) => return Err(e),
            }
        }
        if let Some(what) = stopped {
            return Err(ShipperError::Stopped(what));
        }
        if shippers.len() > 1 {
            tracing::info!(lanes = shippers.len(), "target lanes connected");
        }
        Ok(Lanes { shippers })
    }

    /// The delivered progress per source partition, over every lane.
    pub fn delivered(&self) -> BTreeMap<TopicPartition, Checkpoint> {
        let mut all = BTreeMap::new();
        for shipper in &self.shippers {
            all.extend(shipper.delivered().iter().map(|(tp, c)| (tp.clone(), *c)));
        }
        all
    }

    /// Every partition the relay has a checkpoint of (each lane read them all).
    pub fn copied(&self) -> BTreeSet<TopicPartition> {
        self.shippers
            .first()
            .map(|s| s.copied().clone())
            .unwrap_or_default()
    }

    /// Runs every lane until `stop` or one fails (see the invariants); the
    /// counts are the lanes' together.
    pub fn run(self, stop: &AtomicBool, wakeup: &Wakeup) -> Result<ShipperStats, ShipperError> {
        let mut shippers = self.shippers;
        if shippers.len() <= 1 {
            return match shippers.pop() {
                Some(shipper) => shipper.run(stop, wakeup),
                None => Ok(ShipperStats::default()),
            };
        }
        let results: Vec<Result<ShipperStats, ShipperError>> = std::thread::scope(|scope| {
            let running: Vec<_> = shippers
                .into_iter()
                .map(|shipper| {
                    scope.spawn(move || {
                        // However the lane ends, even by a panic, the others stop too.
                        let _others = StopOthers { stop, wakeup };
                        shipper.run(stop, wakeup)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|handle| handle.join().unwrap_or(Err(ShipperError::LanePanicked)))
                .collect()
        });
        let mut stats = ShipperStats::default();
        for result in results {
            match result {
                Ok(lane) => stats.add(&lane),
                // Stopping mid-transaction is a clean end: its batches stay in the WAL.
                Err(ShipperError::Stopped(what)) => tracing::info!("a lane stopped while {what}"),
                Err(e) => return Err(e),
            }
        }
        Ok(stats)
    }
}

/// Stops every lane (and the source) when the lane holding it ends.
struct StopOthers<'a> {
    stop: &'a AtomicBool,
    wakeup: &'a Wakeup,
}

impl Drop for StopOthers<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wakeup.notify();
    }
}
