//! Scale-out (`[scale]`): instances of one relay share its source
//! partitions through Kafka's consumer-group protocol. Whatever the group
//! does while records flow (an instance killed with SIGKILL, instances
//! added and stopped), the target holds every record once, in order, as an
//! independent `read_committed` reader sees it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_relay::checkpoint::{self, Checkpoint};
use kafka_relay::config::Config;
use kafka_relay::ops::{Shared, Wals};
use kafka_relay::pipeline::{self, PipelineError, UnitHandles};
use kafka_relay::record::{Batch, Record, TopicPartition};
use kafka_relay::scale::Unit;
use kafka_relay::shipper::ShipperError;
use kafka_relay::topics::Topics;
use kafka_relay::wal::Wal;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::harness::admin::{sum, try_scrape};
use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{
    background_producer, cli, produce_sequence, sequence_value, units_owned, RelayProcess,
    RelaySetup,
};
use crate::harness::{checker, clusters, kafka};

const PARTITIONS: i32 = 6;
const UNITS: u32 = 6;

/// A relay of `PARTITIONS` partitions in `UNITS` units, and the instances
/// running it.
struct Fleet {
    setup: RelaySetup,
    config: PathBuf,
    /// Name, process, admin endpoint.
    instances: Vec<(String, RelayProcess, String)>,
    producer: Option<SourceWriter>,
}

/// The source producer's stop flag and thread (records per partition).
type SourceWriter = (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
);

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
            producer: None,
        }
    }

    /// A producer writing to the source, `instances` sharing the units,
    /// and `records` on the target already.
    fn running(name: &str, instances: &[&str], records: usize) -> Fleet {
        let c = clusters();
        let mut fleet = Fleet::new(name);
        fleet.producer = Some(background_producer(
            c.source.bootstrap.clone(),
            fleet.setup.source_topic.clone(),
            PARTITIONS,
        ));
        for name in instances {
            fleet.start(name);
        }
        fleet.wait_for_balance(&format!("{} instances", instances.len()));
        fleet
            .setup
            .wait_for_target(c, records, Duration::from_secs(90));
        fleet
    }

    fn log(&self, name: &str) -> PathBuf {
        self.setup.dir.path().join(format!("{name}.log"))
    }

    fn start(&mut self, name: &str) {
        let wal = self.setup.dir.path().join(format!("wal-{name}"));
        let [port] = kafka::free_ports();
        let admin = format!("127.0.0.1:{port}");
        let process =
            RelayProcess::start_instance(&self.config, &self.log(name), name, &wal, &admin);
        self.instances.push((name.to_string(), process, admin));
    }

    fn get(&self, name: &str) -> &RelayProcess {
        &self.instances[self.position(name)].1
    }

    fn position(&self, name: &str) -> usize {
        self.instances
            .iter()
            .position(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("no instance {name}"))
    }

    fn take(&mut self, name: &str) -> RelayProcess {
        let i = self.position(name);
        self.instances.remove(i).1
    }

    /// The units an instance's log says it was given, minus those revoked.
    fn units_of(&self, name: &str) -> BTreeSet<u32> {
        units_owned(&std::fs::read_to_string(self.log(name)).unwrap_or_default())
    }

    /// Waits until the running instances own every unit between them, each
    /// unit once, with none idle.
    fn wait_for_balance(&self, why: &str) {
        self.wait_for_balance_among(why, |_| true)
    }

    /// As [`Self::wait_for_balance`], among the instances `counted` names.
    fn wait_for_balance_among(&self, why: &str, counted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let owned: Vec<BTreeSet<u32>> = self
                .instances
                .iter()
                .filter(|(n, _, _)| counted(n))
                .map(|(n, _, _)| self.units_of(n))
                .collect();
            // What the instances' endpoints say they run.
            let running: f64 = self
                .instances
                .iter()
                .filter(|(n, _, _)| counted(n))
                .filter_map(|(_, _, admin)| try_scrape(admin))
                .map(|samples| sum(&samples, "kafka_relay_units_owned", &[]))
                .sum();
            let all: usize = owned.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<u32> = owned.iter().flatten().copied().collect();
            if all == UNITS as usize
                && union.len() == UNITS as usize
                && running == f64::from(UNITS)
                && owned.iter().all(|o| !o.is_empty())
            {
                kafka::log(format!("scale: {why}: units {owned:?}"));
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{why}: units not shared out within 90 s: {owned:?}, {running} running by /metrics\n{}",
                self.tails()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn tails(&self) -> String {
        self.instances
            .iter()
            .map(|(n, p, _)| format!("--- {n}:\n{}", p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the producer, waits for every record on the target, stops
    /// the instances, and checks the copy.
    fn finish(mut self) {
        let Some(producer) = self.producer.take() else {
            panic!("finish needs the producer Fleet::running started");
        };
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
        for (_, p, _) in self.instances.drain(..) {
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
    // Records flowing through every instance before the kill.
    let mut fleet = Fleet::running("scale-kill", &["a", "b", "c"], 1200);
    fleet.take("b").kill9();
    kafka::log("scale: instance b killed with SIGKILL");
    fleet.wait_for_balance("after the kill, two instances");
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish();
}

#[test]
fn scaling_two_to_three_to_two_while_producing_loses_and_doubles_nothing() {
    let mut fleet = Fleet::running("scale-grow", &["a", "b"], 600);
    fleet.start("c");
    fleet.wait_for_balance("grown to three");
    std::thread::sleep(Duration::from_secs(3));
    // A clean stop: its open transactions finish, its units move on.
    fleet.take("a").stop();
    kafka::log("scale: instance a stopped");
    fleet.wait_for_balance("shrunk to two");
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish();
}

#[test]
fn a_paused_instance_whose_units_moved_on_ships_nothing_of_them_when_it_wakes() {
    let fleet = Fleet::running("scale-zombie", &["a", "b", "c"], 1200);
    // Frozen mid-work: its WAL holds batches, maybe a transaction is open.
    fleet.get("b").signal(libc::SIGSTOP);
    kafka::log("scale: instance b frozen (SIGSTOP)");
    // Its log is frozen too, so it still lists the units it had.
    fleet.wait_for_balance_among("b frozen, its units with a and c", |n| n != "b");
    std::thread::sleep(Duration::from_secs(5));
    fleet.get("b").signal(libc::SIGCONT);
    kafka::log("scale: instance b woken (SIGCONT)");
    // On waking it finds its units gone: what it held is not shipped.
    let log = fleet.log("b");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("lost=true")
    {
        assert!(
            Instant::now() < deadline,
            "b never noticed it had lost its units\n{}",
            fleet.tails()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    fleet.wait_for_balance("b back in the group");
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish();
}

#[test]
fn a_new_owner_of_a_unit_fences_the_old_one_which_ships_nothing_more() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "scale-fence", 2);
    setup.extra_toml = "[scale]\nunits = 1\n".to_string();
    let relay = setup.config();
    let unit = Unit { index: 0, count: 1 };
    // Two owners of the one unit, as after a hand-over the old owner did
    // not notice: each with a WAL of its own, the same transactional.id.
    let owner = |name: &str| -> (Config, UnitHandles) {
        let mut config = unit.config(&relay);
        config.wal.dir = setup.dir.path().join(name);
        let handles = UnitHandles {
            wals: Wals::new(&config.wal.dir),
            topics: Arc::new(Topics::new(&config).expect("topics")),
        };
        (config, handles)
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let producer = background_producer(c.source.bootstrap.clone(), setup.source_topic.clone(), 2);
    let (config, handles) = owner("old");
    let old = runtime.spawn(pipeline::run_unit(
        config,
        Shared::new(false),
        handles,
        std::future::pending::<()>(),
    ));
    setup.wait_for_target(c, 400, Duration::from_secs(90));
    let (config, handles) = owner("new");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let new = runtime.spawn(pipeline::run_unit(
        config,
        Shared::new(false),
        handles,
        async {
            let _ = stopped.await;
        },
    ));
    // The old owner learns it at its next transaction, and stops there.
    let ended =
        runtime.block_on(async { tokio::time::timeout(Duration::from_secs(90), old).await });
    if !matches!(
        &ended,
        Ok(Ok(Err(PipelineError::Shipper(ShipperError::Fenced { unit: u })))) if *u == unit
    ) {
        let why = format!("{ended:?}");
        // Its threads still run: a runtime dropped as usual would wait for them.
        runtime.shutdown_background();
        panic!("the old owner did not stop as fenced: {why}");
    }
    producer.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let per_partition = producer.1.join().expect("producer");
    setup.wait_for_target(c, (per_partition * 2) as usize, Duration::from_secs(120));
    let _ = stop.send(());
    runtime
        .block_on(new)
        .expect("new owner task")
        .unwrap_or_else(|e| panic!("new owner failed: {e}"));
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, per_partition);
}

#[test]
fn a_unit_never_ships_wal_batches_of_partitions_outside_it() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "scale-foreign", 2);
    setup.extra_toml = "[scale]\nunits = 2\n".to_string();
    let relay = setup.config();
    let unit = Unit { index: 0, count: 2 };
    let topic = setup.source_topic.clone();
    let tp = |p| kafka_relay::record::TopicPartition::new(topic.clone(), p);
    let (own, foreign) = if unit.owns(&tp(0)) { (0, 1) } else { (1, 0) };
    produce_sequence(&c.source.bootstrap, &topic, 2, 0, 100);
    let config = unit.config(&relay);
    // Left by a relay that had another `scale.units`: a batch of the other
    // unit's partition in this unit's WAL.
    {
        let wal = Wal::open(&config.wal.dir, config.wal_options()).expect("wal");
        let records = (0..10)
            .map(|offset| Record {
                offset,
                timestamp: Some(0),
                key: None,
                value: Some(b"not this unit's".to_vec()),
                headers: Vec::new(),
            })
            .collect();
        wal.append(&Batch {
            topic: topic.clone(),
            partition: foreign,
            records,
        })
        .expect("append");
    }
    let handles = UnitHandles {
        wals: Wals::new(&config.wal.dir),
        topics: Arc::new(Topics::new(&config).expect("topics")),
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = runtime.spawn(pipeline::run_unit(
        config,
        Shared::new(false),
        handles,
        async {
            let _ = stopped.await;
        },
    ));
    setup.wait_for_target(c, 100, Duration::from_secs(90));
    // A while longer, for anything else it might ship.
    std::thread::sleep(Duration::from_secs(3));
    let _ = stop.send(());
    runtime
        .block_on(run)
        .expect("unit task")
        .unwrap_or_else(|e| panic!("unit failed: {e}"));
    let on_target = clients::values_by_partition(&clients::consume_all(
        &c.target.bootstrap,
        &setup.target_topic,
        Isolation::ReadCommitted,
    ));
    let expected: Vec<Vec<u8>> = (0..100)
        .map(|s| sequence_value(own, s).into_bytes())
        .collect();
    assert_eq!(
        on_target.get(&own),
        Some(&expected),
        "its own partition, exactly"
    );
    assert_eq!(on_target.get(&foreign), None, "the other unit's partition");
}

/// Commits one checkpoint of `tp` at `next` to `topic` in a transaction.
fn commit_checkpoint(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    tp: &TopicPartition,
    next_offset: i64,
) {
    producer.begin_transaction().expect("begin");
    let value = checkpoint::encode_value(Checkpoint {
        next_offset,
        wal_position: 0,
    });
    producer
        .send(
            BaseRecord::to(topic)
                .key(&checkpoint::encode_key("relay", tp))
                .payload(&value),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
}

#[test]
fn a_checkpoint_read_ends_while_other_units_keep_committing() {
    let c = clusters();
    let topic = clients::unique_name("ckpt-busy");
    let client = kafka_relay::kafka::client_config(
        &[("bootstrap.servers".to_string(), c.target.bootstrap.clone())]
            .into_iter()
            .collect(),
    );
    checkpoint::ensure_topic(&client, &topic).expect("checkpoint topic");
    let ours = TopicPartition::new("orders", 0);
    commit_checkpoint(
        &clients::transactional_producer(&c.target.bootstrap, &format!("{topic}.unit-0")),
        &topic,
        &ours,
        42,
    );
    // Another unit commits every few milliseconds, as busy units do.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (stop, bootstrap, topic) = (stop.clone(), c.target.bootstrap.clone(), topic.clone());
        std::thread::spawn(move || {
            let producer = clients::transactional_producer(&bootstrap, &format!("{topic}.unit-1"));
            let theirs = TopicPartition::new("orders", 1);
            let mut next = 0;
            while !stop.load(Ordering::Relaxed) {
                next += 1;
                commit_checkpoint(&producer, &topic, &theirs, next);
                std::thread::sleep(Duration::from_millis(20));
            }
            next
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    // The read must end (its limit is a failure, not a speed target).
    let read = checkpoint::read_committed(&client, &topic, "relay", Duration::from_secs(60));
    stop.store(true, Ordering::Relaxed);
    let commits = busy.join().expect("busy unit");
    let committed = read.unwrap_or_else(|e| panic!("read beside {commits} commits: {e}"));
    assert_eq!(
        committed.checkpoints.get(&ours).map(|c| c.next_offset),
        Some(42)
    );
    kafka::log(format!(
        "checkpoint read ended beside another unit's {commits} commits"
    ));
}

#[test]
fn a_relay_whose_fleet_disagrees_on_its_units_refuses_to_start() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "scale-refuse", 1);
    let relay_id = setup.config().relay_id();
    let units_topic = format!("__kafka_relay_units.{relay_id}");
    clients::create_topic(&c.source.bootstrap, &units_topic, 4, &[]);
    // Without [scale], beside a fleet that may be running: it would not be fenced.
    let (code, out, err) = cli(&setup.config_file(), &["run", "--instance", "x"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "this relay has been scaled out (its units topic {units_topic} exists"
        )),
        "{err}"
    );
    // With another number of units than the topic records.
    setup.extra_toml = "[scale]\nunits = 6\n".to_string();
    let (code, out, err) = cli(&setup.config_file(), &["run", "--instance", "x"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "the units topic {units_topic} has 4 partitions, but scale.units = 6"
        )),
        "{err}"
    );
    assert_eq!(
        clients::consume_all(
            &c.target.bootstrap,
            &setup.target_topic,
            Isolation::ReadUncommitted
        )
        .len(),
        0,
        "a refused relay copied records"
    );
}
