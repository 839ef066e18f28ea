//! The running relay's state as operators see and steer it: the operator's
//! pause, the phase (starting, running, halted) and whether the target is
//! in an outage.
//!
//! One `Control` per run, shared (in an `Arc`, inside `ops::Shared`) by `pipeline`, which moves
//! the phase; `source` and `shipper`, which obey the pause and report
//! outages; and `admin`, which serves `/readyz`, `/status`, `/pause` and
//! `/resume` from it.
//!
//! Invariants:
//! - Pausing stops intake and shipping between batches: the source pauses
//!   its partitions (the assignment and the WAL stay), and the shipper
//!   finishes the transaction it is in and starts no other. Nothing in the
//!   WAL is dropped; resuming continues exactly where it stopped.
//! - Every change of the pause or of the outage state is logged once, with
//!   who or what caused it, at the moment it happens.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Where the run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Recovery: opening the WAL, connecting, reading checkpoints.
    Starting(&'static str),
    Running,
    /// A relay thread stopped with this error; the process is ending.
    Halted(String),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    outage_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Control {
    paused: AtomicBool,
    /// Target transactions committed in this run: the source's sign that
    /// the shipper is moving (`source::far_enough_ahead`).
    committed: AtomicU64,
    state: Mutex<State>,
}

impl Control {
    /// `paused`: start paused (`enabled = false`).
    pub fn new(paused: bool) -> Control {
        Control {
            paused: AtomicBool::new(paused),
            committed: AtomicU64::new(0),
            state: Mutex::new(State {
                phase: Phase::Starting("opening the WAL"),
                outage_since: None,
            }),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Pauses intake and shipping; returns false if already paused.
    pub fn pause(&self, by: &str) -> bool {
        let changed = !self.paused.swap(true, Ordering::Relaxed);
        if changed {
            tracing::warn!(by, "relay paused: no new records are read or shipped; the WAL and the partition assignment are kept");
        }
        changed
    }

    /// Resumes; returns false if it was not paused.
    pub fn resume(&self, by: &str) -> bool {
        let changed = self.paused.swap(false, Ordering::Relaxed);
        if changed {
            tracing::info!(by, "relay resumed: reading and shipping again");
        }
        changed
    }

    pub fn phase(&self) -> Phase {
        self.state().phase.clone()
    }

    pub fn set_phase(&self, phase: Phase) {
        self.state().phase = phase;
    }

    /// Seconds since target transactions began failing; `None` when the
    /// last one succeeded.
    pub fn outage_secs(&self) -> Option<u64> {
        self.state().outage_since.map(|t| t.elapsed().as_secs())
    }

    /// A target call failed: an outage begins, unless one is under way.
    /// Returns true when this began one.
    pub fn target_failed(&self, error: &dyn std::fmt::Display) -> bool {
        let mut state = self.state();
        if state.outage_since.is_some() {
            return false;
        }
        state.outage_since = Some(Instant::now());
        tracing::error!(%error, "target outage began: target transactions are failing; batches wait in the WAL and are retried");
        true
    }

    /// Target transactions committed in this run so far.
    pub fn commits(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// A target transaction committed: counted, and the outage, if any,
    /// is over. Returns true when this ended one.
    pub fn transaction_committed(&self) -> bool {
        self.committed.fetch_add(1, Ordering::Relaxed);
        self.target_ok()
    }

    /// The target answered: the outage, if any, is over.
    /// Returns true when this ended one.
    pub fn target_ok(&self) -> bool {
        let mut state = self.state();
        let Some(since) = state.outage_since.take() else {
            return false;
        };
        tracing::info!(
            duration_secs = since.elapsed().as_secs(),
            "target outage ended after {:.1}s: shipping again",
            since.elapsed().as_secs_f64()
        );
        true
    }

    /// `/readyz`: `Ok` with a word when the relay does its job, `Err` with
    /// the reason when not. Pausing does not make a relay unready: it is
    /// where the operator put it.
    pub fn readiness(&self) -> Result<&'static str, String> {
        let state = self.state();
        match (&state.phase, state.outage_since) {
            (Phase::Starting(step), _) => Err(format!("starting: {step}")),
            (Phase::Halted(why), _) => Err(format!("halted: {why}")),
            (Phase::Running, Some(since)) => Err(format!(
                "target unreachable for {}s: batches wait in the WAL",
                since.elapsed().as_secs()
            )),
            (Phase::Running, None) if self.is_paused() => Ok("ready (paused)"),
            (Phase::Running, None) => Ok("ready"),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Each update is one assignment: a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_phase_and_outage_but_not_the_pause() {
        let c = Control::new(true);
        assert_eq!(c.readiness(), Err("starting: opening the WAL".into()));
        c.set_phase(Phase::Running);
        assert_eq!(c.readiness(), Ok("ready (paused)"));
        assert!(c.resume("test") && !c.resume("test"));
        assert_eq!(c.readiness(), Ok("ready"));
        assert!(c.target_failed(&"timed out") && !c.target_failed(&"again"));
        assert!(c
            .readiness()
            .is_err_and(|r| r.starts_with("target unreachable")));
        assert!(c.target_ok() && !c.target_ok());
        c.set_phase(Phase::Halted("retries spent".into()));
        assert_eq!(c.readiness(), Err("halted: retries spent".into()));
    }
}
