//! Scale-out (`[scale]`): instances of one relay share its source
//! partitions through Kafka's consumer-group protocol. Whatever the group
//! does while records flow (an instance killed with SIGKILL, instances
//! added and stopped), the target holds every record once, in order, as an
//! independent `read_committed` reader sees it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::relay::{background_producer, RelayProcess, RelaySetup};
use crate::harness::{checker, clusters, kafka};

const PARTITIONS: i32 = 6;
const UNITS: u32 = 6;

/// A relay of `PARTITIONS` partitions in `UNITS` units, and the instances
/// running it.
struct Fleet {
    setup: RelaySetup,
    config: PathBuf,
    instances: Vec<(String, RelayProcess)>,
}

impl Fleet {
    fn new(name: &str) -> Fleet {
        let mut setup = RelaySetup::new(clusters(), name, PARTITIONS);
        setup.extra_toml = format!("[scale]\nunits = {UNITS}\nsession_timeout_ms = 6000\n");
        // A small WAL bound per unit is fine: the target is close.
        setup.wal_max_bytes = Some(64 << 20);
        let config = setup.config_file();
        Fleet {
            setup,
            config,
            instances: Vec::new(),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.setup.dir.path().join(format!("{name}.log"))
    }

    fn start(&mut self, name: &str) {
        let wal = self.setup.dir.path().join(format!("wal-{name}"));
        let process = RelayProcess::start_instance(&self.config, &self.log(name), name, &wal);
        self.instances.push((name.to_string(), process));
    }

    fn take(&mut self, name: &str) -> RelayProcess {
        let i = self
            .instances
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no instance {name}"));
        self.instances.remove(i).1
    }

    /// The units an instance's log says it was given, minus those revoked.
    fn units_of(&self, name: &str) -> BTreeSet<u32> {
        let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
        let mut units = BTreeSet::new();
        for line in text.lines() {
            let listed = |marker: &str| -> Option<Vec<u32>> {
                let after = line.split(marker).nth(1)?;
                let list = after.split("units=[").nth(1)?.split(']').next()?;
                Some(
                    list.split(',')
                        .filter_map(|u| u.trim().parse().ok())
                        .collect(),
                )
            };
            if let Some(given) = listed("units assigned to this instance") {
                units.extend(given);
            } else if let Some(taken) = listed("units revoked from this instance") {
                for u in taken {
                    units.remove(&u);
                }
            }
        }
        units
    }

    /// Waits until the running instances own every unit between them, each
    /// unit once, with none idle.
    fn wait_for_balance(&self, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let owned: Vec<BTreeSet<u32>> = self
                .instances
                .iter()
                .map(|(n, _)| self.units_of(n))
                .collect();
            let all: usize = owned.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
            if all == UNITS as usize
                && union.len() == UNITS as usize
                && owned.iter().all(|o| !o.is_empty())
            {
                kafka::log(format!("scale: {why}: units {owned:?}"));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{why}: units not shared out within 90 s: {owned:?}\n{}",
                self.tails()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn tails(&self) -> String {
        self.instances
            .iter()
            .map(|(n, p)| format!("--- {n}:\n{}", p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the producer, waits for every record on the target, stops
    /// the instances, and checks the copy.
    fn finish(
        mut self,
        producer: (
            std::sync::Arc<std::sync::atomic::AtomicBool>,
            std::thread::JoinHandle<u64>,
        ),
    ) {
        producer.0.store(true, std::sync::atomic::Ordering::Relaxed);
        let per_partition = producer.1.join().expect("producer");
        let expected = (per_partition * PARTITIONS as u64) as usize;
        let tails = self.tails();
        self.setup.wait_for_target_or_report(
            clusters(),
            expected,
            Duration::from_secs(180),
            || tails.clone(),
        );
        for (_, p) in self.instances.drain(..) {
            p.stop();
        }
        checker::assert_exactly_once(
            &clusters().target.bootstrap,
            &self.setup.target_topic,
            PARTITIONS,
            per_partition,
        );
        kafka::log(format!("scale: {expected} records exactly once, in order"));
    }
}

#[test]
fn three_instances_share_the_partitions_and_a_killed_one_loses_and_doubles_nothing() {
    let c = clusters();
    let mut fleet = Fleet::new("scale-kill");
    let producer = background_producer(
        c.source.bootstrap.clone(),
        fleet.setup.source_topic.clone(),
        PARTITIONS,
    );
    for name in ["a", "b", "c"] {
        fleet.start(name);
    }
    fleet.wait_for_balance("three instances");
    // Records flowing through every instance before the kill.
    fleet
        .setup
        .wait_for_target(c, 1200, Duration::from_secs(90));
    fleet.take("b").kill9();
    kafka::log("scale: instance b killed with SIGKILL");
    fleet.wait_for_balance("after the kill, two instances");
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish(producer);
}

#[test]
fn scaling_two_to_three_to_two_while_producing_loses_and_doubles_nothing() {
    let c = clusters();
    let mut fleet = Fleet::new("scale-grow");
    let producer = background_producer(
        c.source.bootstrap.clone(),
        fleet.setup.source_topic.clone(),
        PARTITIONS,
    );
    fleet.start("a");
    fleet.start("b");
    fleet.wait_for_balance("two instances");
    fleet.setup.wait_for_target(c, 600, Duration::from_secs(90));
    fleet.start("c");
    fleet.wait_for_balance("grown to three");
    std::thread::sleep(Duration::from_secs(3));
    // A clean stop: its open transactions finish, its units move on.
    fleet.take("a").stop();
    kafka::log("scale: instance a stopped");
    fleet.wait_for_balance("shrunk to two");
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish(producer);
}
