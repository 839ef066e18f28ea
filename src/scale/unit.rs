//! A unit of ownership: the share of a relay's source partitions that one
//! instance copies at a time, with a transactional.id and a WAL of its own.
//!
//! Invariants:
//! - Which unit a partition belongs to depends only on its topic name, its
//!   number and `scale.units`, so every instance computes the same split
//!   without talking to the others.
//! - A unit's transactional.id is the same whichever instance owns it: an
//!   owner's `init_transactions` fences every earlier owner of the unit,
//!   so at most one of them can commit its partitions.
//! - A unit's configuration keeps the relay's `relay_id`, checkpoint topic
//!   and consumer group: checkpoints are per partition, so a new owner
//!   resumes exactly where the last committed transaction left it.
//!
//! Used by `scale` (which pipelines to run) and by the source (which
//! partitions a unit's pipeline reads).

use std::fmt;

use crate::config::Config;
use crate::record::TopicPartition;

/// Unit `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unit {
    pub index: u32,
    pub count: u32,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unit-{}", self.index)
    }
}

impl Unit {
    /// Whether `tp` is this unit's. The partition number is added to the
    /// topic's hash, so consecutive partitions of a topic land in
    /// consecutive units and a topic spreads over all of them.
    pub fn owns(&self, tp: &TopicPartition) -> bool {
        self.owns_partition(&tp.topic, tp.partition)
    }

    /// [`Unit::owns`], without a `TopicPartition` to build (the shipper
    /// asks for every WAL batch).
    pub fn owns_partition(&self, topic: &str, partition: i32) -> bool {
        self.count > 0 && unit_index(topic, partition, self.count) == self.index
    }

    /// The configuration of this unit's pipeline: its own WAL directory
    /// under `wal.dir`, its share of `wal.max_bytes`, and its own
    /// transactional.id; everything else as the relay's.
    pub fn config(&self, relay: &Config) -> Config {
        let mut config = relay.clone();
        // relay_id defaults to the transactional.id changed below.
        config.relay_id = Some(relay.relay_id());
        config.source.group_id = Some(relay.group_id());
        config.target.transactional_id = format!("{}.{self}", relay.target.transactional_id);
        config.wal.dir = relay.wal.dir.join(self.to_string());
        config.wal.max_bytes = relay.wal.max_bytes / u64::from(self.count.max(1));
        config.unit = Some(*self);
        config
    }
}

/// The unit of `tp` among `count`.
pub fn unit_of(tp: &TopicPartition, count: u32) -> u32 {
    unit_index(&tp.topic, tp.partition, count)
}

fn unit_index(topic: &str, partition: i32, count: u32) -> u32 {
    let hash = crc32fast::hash(topic.as_bytes());
    // The partition number is never negative for a real partition.
    ((u64::from(hash) + u64::from(partition.unsigned_abs())) % u64::from(count.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_belongs_to_exactly_one_unit() {
        let count = 5;
        for p in 0..40 {
            let tp = TopicPartition::new("orders", p);
            let owners = (0..count)
                .filter(|i| Unit { index: *i, count }.owns(&tp))
                .count();
            assert_eq!(owners, 1, "{tp:?}");
        }
    }

    #[test]
    fn a_topic_spreads_over_every_unit() {
        let count = 12;
        let mut seen = vec![0; count as usize];
        for p in 0..24 {
            seen[unit_of(&TopicPartition::new("events", p), count) as usize] += 1;
        }
        assert_eq!(seen, vec![2; 12]);
    }

    #[test]
    fn a_unit_keeps_the_relays_checkpoints_and_group_but_has_its_own_id_and_wal() {
        let relay = Config::from_toml_str(
            r#"
            [source]
            bootstrap_servers = "s:9092"
            topics = ["a"]
            [target]
            bootstrap_servers = "t:9092"
            transactional_id = "rel"
            [wal]
            dir = "/var/wal"
            max_bytes = 1200000000
            [scale]
            units = 12
            "#,
            std::iter::empty(),
        )
        .expect("config");
        let unit = Unit {
            index: 3,
            count: 12,
        }
        .config(&relay);
        assert_eq!(unit.relay_id(), "rel");
        assert_eq!(unit.group_id(), relay.group_id());
        assert_eq!(unit.target.checkpoint_topic, relay.target.checkpoint_topic);
        assert_eq!(unit.target.transactional_id, "rel.unit-3");
        assert_eq!(unit.wal.dir, std::path::Path::new("/var/wal/unit-3"));
        assert_eq!(unit.wal.max_bytes, 100_000_000);
    }
}
