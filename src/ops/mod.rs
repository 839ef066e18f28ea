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

use std::sync::Arc;

use control::Control;
use metrics::Metrics;

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
