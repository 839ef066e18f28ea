//! A lane: one transactional producer's share of a pipeline's partitions.
//!
//! One idempotent producer keeps at most five produce requests in flight,
//! each of one partition, and stops for a few round trips per commit; over
//! a long link that, not the link, sets the rate (docs/benchmarks.md, "Over
//! a long link"). `[transaction] lanes` runs that many shippers over the
//! one WAL, each with its own producer, so that many transactions are in
//! flight at once, without another consumer or WAL as `[scale] units` needs.
//!
//! Invariants:
//! - Every partition belongs to exactly one lane, decided by its topic name,
//!   its number and the unit count only, so a partition's batches are
//!   shipped by one producer, in WAL order, and its checkpoints are written
//!   by that producer alone: lanes never share a partition, which is what
//!   keeps per-partition order and makes each lane's commits independent.
//! - A WAL entry whose partition is unknown (corrupted) is lane 0's, so
//!   exactly one lane reports it.
//! - Lane 0's transactional.id is the pipeline's own, so one lane is the
//!   relay as it was before lanes; lane i's is `<id>.lane-i`. A restart
//!   re-initialises every lane's id, fencing its earlier incarnation. When
//!   `lanes` shrinks, an open transaction of a lane no longer run is not
//!   fenced but aborted by the broker at its timeout; the checkpoint read at
//!   start-up (read_committed) waits for that, so it sees what committed.
//! - The transaction limits and the bandwidth cap are shared out: each lane
//!   gets `1/lanes` of them (at least one record and one byte), so the
//!   memory and the rate the configuration bounds stay bounded.
//!
//! Used by `lanes` (which shippers to run) and `Shipper` (what it reads).

use crate::config::TransactionConfig;
use crate::scale::spread;

/// Lane `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub index: u32,
    pub count: u32,
}

impl Lane {
    /// The only lane of a pipeline without lanes: every partition.
    pub const WHOLE: Lane = Lane { index: 0, count: 1 };

    /// Every lane of `count`.
    pub fn all(count: u32) -> impl Iterator<Item = Lane> {
        let count = count.max(1);
        (0..count).map(move |index| Lane { index, count })
    }

    /// Whether a partition of a pipeline split into `units` units is this
    /// lane's: `None` stands for an entry whose partition is unknown.
    /// Within a unit every partition's spread is the same modulo `units`,
    /// so the lane takes the spread divided by it, and a unit's partitions
    /// still spread over all its lanes.
    pub fn owns(&self, partition: Option<(&str, i32)>, units: u32) -> bool {
        match partition {
            None => self.index == 0,
            Some((topic, partition)) => {
                let share = spread(topic, partition) / u64::from(units.max(1));
                share % u64::from(self.count.max(1)) == u64::from(self.index)
            }
        }
    }

    /// This lane's transactional.id, from the pipeline's.
    pub fn transactional_id(&self, pipeline: &str) -> String {
        match self.index {
            0 => pipeline.to_string(),
            i => format!("{pipeline}.lane-{i}"),
        }
    }

    /// This lane's share of the pipeline's transaction limits.
    pub fn transaction(&self, pipeline: &TransactionConfig) -> TransactionConfig {
        let lanes = self.count.max(1);
        TransactionConfig {
            max_records: (pipeline.max_records / lanes as usize).max(1),
            max_bytes: (pipeline.max_bytes / u64::from(lanes)).max(1),
            ..pipeline.clone()
        }
    }

    /// This lane's share of the bandwidth cap (`rate.max_bytes_per_sec`).
    pub fn rate(&self, pipeline: Option<u64>) -> Option<u64> {
        pipeline.map(|cap| (cap / u64::from(self.count.max(1))).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::Unit;

    #[test]
    fn every_partition_belongs_to_exactly_one_lane_and_unknown_ones_to_lane_0() {
        for units in [1, 3, 4] {
            for p in 0..60 {
                let owners = Lane::all(4)
                    .filter(|l| l.owns(Some(("orders", p)), units))
                    .count();
                assert_eq!(owners, 1, "partition {p}, {units} units");
            }
        }
        let owners: Vec<u32> = Lane::all(4)
            .filter(|l| l.owns(None, 1))
            .map(|l| l.index)
            .collect();
        assert_eq!(owners, vec![0]);
    }

    #[test]
    fn a_units_partitions_spread_over_all_its_lanes() {
        // 4 units of 4 lanes: without dividing by the unit count, each
        // unit's partitions would all fall into one lane.
        let (units, lanes) = (4, 4);
        let unit = Unit {
            index: 1,
            count: units,
        };
        let mut per_lane = vec![0; lanes as usize];
        for p in 0..64 {
            let tp = crate::record::TopicPartition::new("events", p);
            if !unit.owns(&tp) {
                continue;
            }
            for lane in Lane::all(lanes).filter(|l| l.owns(Some(("events", p)), units)) {
                per_lane[lane.index as usize] += 1;
            }
        }
        assert_eq!(per_lane, vec![4; 4]);
    }

    #[test]
    fn lane_0_keeps_the_pipelines_id_and_limits_are_shared_out() {
        let lane = Lane { index: 2, count: 4 };
        assert_eq!(Lane::WHOLE.transactional_id("rel.unit-3"), "rel.unit-3");
        assert_eq!(lane.transactional_id("rel"), "rel.lane-2");
        let limits = TransactionConfig {
            max_records: 50_000,
            max_bytes: 32 << 20,
            commit_interval_ms: 7,
            lanes: 4,
        };
        let share = lane.transaction(&limits);
        assert_eq!(
            (share.max_records, share.max_bytes, share.commit_interval_ms),
            (12_500, 8 << 20, 7)
        );
        assert_eq!(lane.rate(Some(1000)), Some(250));
        assert_eq!(lane.rate(None), None);
        assert_eq!(Lane::WHOLE.transaction(&limits), limits);
    }
}
