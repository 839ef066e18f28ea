//! What operators see and steer of a running relay, apart from the data
//! path: the run's state and the operator's pause (`control`), the
//! Prometheus registry (`metrics`), the per-partition report (`status`),
//! and the HTTP endpoint that serves them (`admin`).
//!
//! Dependencies point one way: `metrics` and `status` read `control`,
//! `admin` reads all three; none of them reads back from `admin`. The
//! data path (`source`, `shipper`) writes facts here through [`Shared`]
//! and decides on `control` alone, never on a metric: a metric is a
//! report, and a report that drives the relay could not be changed for
//! reporting's sake.
//!
//! Built by `pipeline` (one [`Shared`] per run) and the CLI.

pub mod admin;
pub mod control;
pub mod metrics;
pub mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use control::Control;
use metrics::Metrics;

use crate::wal::Wal;

/// What the stages of one run share with operators: handed to `source`
/// and `shipper` by `pipeline`, read by `admin`.
#[derive(Clone)]
pub struct Shared {
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    /// Fresh handles; `paused` as [`Control::new`].
    pub fn new(paused: bool) -> Shared {
        Shared {
            control: Arc::new(Control::new(paused)),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// A target transaction committed: counted where the source looks
    /// (`control`) and where operators look (`metrics`); any outage ends.
    pub fn transaction_committed(&self) {
        self.control.transaction_committed();
        self.metrics.transactions_committed.inc();
    }
}

/// The WALs an instance has open: one, or one per unit it owns (`scale`),
/// each there from its pipeline's start to its end. What `admin` reports on.
#[derive(Clone)]
pub struct Wals {
    /// `wal.dir`: the WAL itself, or the parent of the units' WALs.
    dir: PathBuf,
    open: Arc<Mutex<BTreeMap<PathBuf, Wal>>>,
}

impl Wals {
    pub fn new(dir: &Path) -> Wals {
        Wals {
            dir: dir.to_path_buf(),
            open: Arc::default(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds `wal` until the returned guard is dropped.
    pub fn register(&self, wal: Wal) -> Registered {
        let key = wal.dir().to_path_buf();
        self.lock().insert(key.clone(), wal);
        Registered {
            wals: self.clone(),
            key,
        }
    }

    /// The WALs open now.
    pub fn all(&self) -> Vec<Wal> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Wal>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A WAL in [`Wals`]; dropping it takes the WAL out.
pub struct Registered {
    wals: Wals,
    key: PathBuf,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.wals.lock().remove(&self.key);
    }
}
