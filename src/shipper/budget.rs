//! How much the next transaction may carry: `[transaction]`'s limits,
//! shrunk while the link to the target is too slow for them.
//!
//! The shipper waits a bounded time for a transaction's deliveries
//! ([`Shipper::delivery_deadline`](super::Shipper)). Over a link that
//! carries less than one transaction's bytes within that time (a lossy
//! long link, a tight `rate.max_bytes_per_sec`), every attempt at the same
//! batches would time out again, for ever, while the link itself works.
//! So a transaction that failed because its deliveries outlasted the
//! deadline is retried with half as much (a prefix of its batches), and a
//! transaction that committed within a quarter of the deadline lets the
//! next one carry twice as much again, up to the configured limits.
//!
//! Invariants: the limits never exceed `[transaction]`'s; they never go
//! below one record and one byte, and the run loop always takes at least
//! one batch, so a shrunk budget still makes progress batch by batch.
//! Shrinking only shortens a transaction: the batches it leaves out stay
//! in the WAL and are read again for the next one.
//!
//! Owned by the `Shipper`; read by its run loop, changed by `retry`.

use crate::config::TransactionConfig;

#[derive(Debug, Clone)]
pub(super) struct Budget {
    configured: (usize, u64),
    max_records: usize,
    max_bytes: u64,
}

impl Budget {
    pub(super) fn new(limits: &TransactionConfig) -> Budget {
        Budget {
            configured: (limits.max_records, limits.max_bytes),
            max_records: limits.max_records,
            max_bytes: limits.max_bytes,
        }
    }

    pub(super) fn max_records(&self) -> usize {
        self.max_records
    }

    pub(super) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// After a transaction of `records` and `bytes` whose deliveries
    /// outlasted the deadline: the next attempt carries at most half of it.
    pub(super) fn halve_below(&mut self, records: usize, bytes: u64) {
        self.max_records = self.max_records.min(records / 2).max(1);
        self.max_bytes = self.max_bytes.min(bytes / 2).max(1);
    }

    /// After a transaction that committed well within the deadline.
    pub(super) fn grow(&mut self) {
        self.max_records = self.max_records.saturating_mul(2).min(self.configured.0);
        self.max_bytes = self.max_bytes.saturating_mul(2).min(self.configured.1);
    }

    /// How many of `sizes` (records, bytes per batch, in order) the next
    /// transaction takes: the longest prefix within the limits, at least one.
    pub(super) fn prefix(&self, sizes: impl IntoIterator<Item = (usize, u64)>) -> usize {
        let (mut records, mut bytes, mut taken) = (0usize, 0u64, 0usize);
        for (r, b) in sizes {
            if taken > 0 && (records + r > self.max_records() || bytes + b > self.max_bytes()) {
                break;
            }
            records += r;
            bytes += b;
            taken += 1;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_records: usize, max_bytes: u64) -> Budget {
        Budget::new(&TransactionConfig {
            max_records,
            max_bytes,
            commit_interval_ms: 0,
        })
    }

    #[test]
    fn a_timed_out_transaction_is_retried_with_at_most_half_of_it() {
        let mut b = budget(50_000, 32 << 20);
        // 10 batches of 100 records, 100 KiB each: the WAL held less than the limits.
        let sizes = vec![(100, 100 << 10); 10];
        assert_eq!(b.prefix(sizes.clone()), 10);
        b.halve_below(1000, 1000 << 10);
        assert_eq!((b.max_records(), b.max_bytes()), (500, 500 << 10));
        assert_eq!(b.prefix(sizes.clone()), 5);
        b.halve_below(500, 500 << 10);
        assert_eq!(b.prefix(sizes.clone()), 2);
        b.halve_below(200, 200 << 10);
        assert_eq!(b.prefix(sizes), 1);
    }

    #[test]
    fn a_shrunk_budget_still_takes_one_batch_however_large() {
        let mut b = budget(10, 1000);
        for _ in 0..100 {
            b.halve_below(1, 1);
        }
        assert_eq!((b.max_records(), b.max_bytes()), (1, 1));
        assert_eq!(b.prefix([(500, 1 << 20), (1, 1)]), 1);
    }

    #[test]
    fn quick_commits_grow_it_back_to_the_configured_limits_and_no_further() {
        let mut b = budget(50_000, 32 << 20);
        b.halve_below(50_000, 32 << 20);
        b.halve_below(25_000, 16 << 20);
        assert_eq!(b.max_bytes(), 8 << 20);
        b.grow();
        assert_eq!(b.max_bytes(), 16 << 20);
        b.grow();
        b.grow();
        assert_eq!((b.max_records(), b.max_bytes()), (50_000, 32 << 20));
    }

    #[test]
    fn many_small_records_shrink_by_their_count() {
        // 40 000 records of 10 bytes timed out: the record limit halves them.
        let mut b = budget(50_000, 32 << 20);
        b.halve_below(40_000, 400_000);
        assert_eq!(b.max_records(), 20_000);
        assert_eq!(b.prefix(vec![(500, 5000); 80]), 40);
    }
}
