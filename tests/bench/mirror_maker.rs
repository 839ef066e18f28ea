//! The Apache Kafka MirrorMaker 2 contender: MirrorMaker 2 of the harness
//! brokers' Kafka release (4.1.1 unless `KAFKA_RELAY_KAFKA_VERSION` names
//! another) copying one topic from the source cluster to the
//! target cluster, in exactly-once or at-least-once mode.
//!
//! # How it runs
//!
//! One JVM per run, *dedicated* MirrorMaker 2 (`org.apache.kafka.connect.mirror.MirrorMaker`
//! with an `mm2.properties`, what `bin/connect-mirror-maker.sh` starts), with
//! `--clusters <target>` so it runs only the Connect worker that writes to the
//! target. Dedicated mode rather than a `ConnectDistributed` worker plus REST
//! calls: it is the deployment the MirrorMaker docs describe for exactly-once
//! (since 3.5), needs no REST round-trips to configure, and all MirrorMaker
//! defaults apply as shipped. The jars come through Maven from
//! `tests/kafka/mirror-maker-pom.xml` into `.kafka-cache/mirror-maker-<version>/`.
//! The JVM is started with the harness's [`kafka::spawn_tied`], so it dies with
//! the benchmark process and is stopped at exit if [`MirrorMaker::stop`] never ran.
//!
//! # What is set, and why
//!
//! Everything not listed keeps MirrorMaker's (and Kafka Connect's) defaults:
//! `DefaultReplicationPolicy`, so the target topic is `<source alias>.<topic>`
//! (see [`MirrorMaker::target_topic`]); `ByteArrayConverter`, so records are
//! copied byte for byte with their keys, headers and partition; the Connect
//! task producer's defaults (as its log shows them: `acks = all`, `linger.ms =
//! 5`, `batch.size = 16384`, one request in flight, no compression); the task
//! consumer's (`auto.offset.reset = earliest`, `max.poll.records = 500`).
//!
//! - Both modes: `<source>-><target>.topics` is exactly the benchmark topic;
//!   `tasks.max` is the topic's partition count, one task (one consumer and one
//!   producer) per partition, the most MirrorMaker will use for one topic (its
//!   default of 1 would leave it one thread). Single-node brokers, so every
//!   topic MirrorMaker creates has replication factor 1 (`replication.factor`
//!   for the mirrored topic, the offset-syncs, heartbeats and checkpoints
//!   topics, the Connect config/offset/status topics). Heartbeats,
//!   checkpoints and topic config and ACL sync are off: only the
//!   `MirrorSourceConnector`'s data copy is measured. The offset syncs it
//!   writes to the source cluster stay on, as by default.
//! - Exactly-once: `<target>.exactly.once.source.support = enabled` (KIP-618:
//!   each task's records and source offsets are committed in one Kafka
//!   transaction, with the default `transaction.boundary = poll`, so one
//!   transaction per task per poll), `dedicated.mode.enable.internal.rest =
//!   true` with a loopback `listeners` port (the leader fences zombie tasks
//!   through it), and `<source>.consumer.isolation.level = read_committed`, all
//!   three as the MirrorMaker docs ask for exactly-once. Nothing else is tuned.
//! - At-least-once: nothing more; MirrorMaker's defaults.
//!
//! The two modes use different cluster aliases, so their target topics differ
//! and both can run against one target cluster one after another. The Connect
//! worker's group id and its config/offset/status topics are named after the
//! alias *and the run* (`state`: the topic and its round), so every run
//! starts from fresh Connect state, as a new deployment would: with
//! MirrorMaker's default names (alias only) a second run in the same mode
//! first restarted the previous run's tasks and reached its first record
//! about 5 s later.
//!
//! With `emit.checkpoints.enabled = false` MirrorMaker still submits its
//! checkpoint connector, which Connect refuses: the log shows one `ERROR Failed
//! to configure MirrorCheckpointConnector`. That is the connector staying off,
//! not a fault; the heartbeat connector runs with no tasks.
//!
//! The JVM gets the heap `bin/connect-mirror-maker.sh` gives it, `-Xms256m
//! -Xmx2g` (with 1 GiB, at-least-once mode ran out of heap copying 2 M records
//! of 100 B: its tasks buffer every unacknowledged record), and the GC flags Kafka's
//! start scripts pass (G1, 20 ms pause target); its peak RSS includes that heap
//! as far as it was touched. It logs at INFO through log4j2 to
//! `mirror-maker.log` in its work dir.
//!
//! # What limits its figures
//!
//! - Start-up: the JVM, the Connect worker joining its group, reading its
//!   internal topics and starting tasks takes seconds before the first record
//!   is copied; a time measured from [`MirrorMaker::start`] includes the part
//!   after "Kafka MirrorMaker started" (start returns at that log line).
//! - In exactly-once mode, a record becomes visible to `read_committed`
//!   readers only when its task's transaction commits.
//! - It shares the machine (and its cores) with both brokers and the
//!   benchmark's own clients, like every contender.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::clients;
use crate::harness::kafka::{self, kafka_version};

/// Log line of dedicated MirrorMaker once its workers are up.
const STARTED_LINE: &str = "Kafka MirrorMaker started";
/// How long start-up may take before the run is declared broken.
const START_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ExactlyOnce,
    AtLeastOnce,
}

impl Mode {
    /// Cluster aliases (source, target). Distinct per mode: the source alias
    /// prefixes the target topic and names the Connect internal topics.
    fn aliases(self) -> (&'static str, &'static str) {
        match self {
            Mode::ExactlyOnce => ("source-eos", "target-eos"),
            Mode::AtLeastOnce => ("source-alo", "target-alo"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::ExactlyOnce => "exactly-once",
            Mode::AtLeastOnce => "at-least-once",
        }
    }
}

pub struct MirrorMaker {
    pid: u32,
    mode: Mode,
    /// Its config and logs: `<work_dir>/mirror-maker-<mode>`.
    dir: PathBuf,
}

impl MirrorMaker {
    /// Starts MM2 mirroring `topic` (all its partitions, from the earliest offset) from
    /// `source_bootstrap` to `target_bootstrap`; returns once the process is up (not necessarily copying yet).
    ///
    /// `topic` must already exist on the source: its partition count sets
    /// `tasks.max`, and MirrorMaker looks for new topics only every 10 minutes.
    /// `state` names this run's Connect group and internal topics.
    /// Logs and config go to `work_dir/mirror-maker-<mode>/`, replaced on each start.
    pub fn start(
        source_bootstrap: &str,
        target_bootstrap: &str,
        topic: &str,
        state: &str,
        mode: Mode,
        work_dir: &Path,
    ) -> MirrorMaker {
        let jars = jars();
        let dir = work_dir.join(format!("mirror-maker-{}", mode.label()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let partitions = partition_count(source_bootstrap, topic);
        let properties = mm2_properties(
            source_bootstrap,
            target_bootstrap,
            topic,
            state,
            partitions,
            mode,
        );
        std::fs::write(dir.join("mm2.properties"), properties).expect("write mm2.properties");
        std::fs::write(
            dir.join("log4j2.properties"),
            kafka::log4j_properties(&dir.join("mirror-maker.log")),
        )
        .expect("write log4j2.properties");

        let started = Instant::now();
        let mut cmd = Command::new(kafka::java());
        // Heap as the benchmark states it; GC flags as Kafka's scripts set them.
        cmd.args([
            "-Xms256m",
            "-Xmx2g",
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", jars.display()))
        .arg("org.apache.kafka.connect.mirror.MirrorMaker")
        .arg(dir.join("mm2.properties"))
        .args(["--clusters", mode.aliases().1])
        .stdin(Stdio::null())
        .stdout(Stdio::from(kafka::open_log(&dir.join("stdout.log"))))
        .stderr(Stdio::from(kafka::open_log(&dir.join("stderr.log"))));
        let label = format!("MirrorMaker 2 ({})", mode.label());
        let pid = kafka::spawn_tied(cmd, &label, None)
            .unwrap_or_else(|e| panic!("cannot start the {label} JVM: {e}"));
        let mm = MirrorMaker { pid, mode, dir };
        mm.wait_started(&label);
        kafka::log(format!(
            "{label} started: Apache Kafka {} dedicated MirrorMaker, {topic} ({partitions} partitions) \
             -> {}, pid {pid}, up in {:.1}s",
            kafka_version(),
            MirrorMaker::target_topic(topic, mode),
            started.elapsed().as_secs_f64()
        ));
        mm
    }

    /// The topic MM2 writes to on the target (e.g. `<source alias>.<topic>`); must differ between modes so both can run against one target cluster one after another.
    pub fn target_topic(topic: &str, mode: Mode) -> String {
        // DefaultReplicationPolicy's name for a remote topic.
        format!("{}.{topic}", mode.aliases().0)
    }

    /// The JVM's pid, for /proc sampling of RSS/CPU/IO.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for file in ["mirror-maker.log", "stdout.log", "stderr.log"] {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(40);
            out.push_str(&format!("--- {file}\n{}\n", lines[start..].join("\n")));
        }
        out
    }

    /// SIGTERM, wait, SIGKILL after a limit (the harness's 30 s).
    ///
    /// In exactly-once mode, first checks its log for transactional producers:
    /// figures from a run that silently fell back to plain producers would not
    /// be exactly-once figures.
    pub fn stop(self) {
        if self.mode == Mode::ExactlyOnce {
            let ids = self.transactional_ids();
            assert!(
                !ids.is_empty(),
                "MirrorMaker 2 in exactly-once mode used no transactional producer; its log:\n{}",
                self.log_tail()
            );
            kafka::log(format!(
                "MirrorMaker 2 (exactly-once) produced with {} transactional ids ({})",
                ids.len(),
                ids.join(", ")
            ));
        }
        let started = Instant::now();
        kafka::stop_tied(self.pid, false);
        kafka::log(format!(
            "MirrorMaker 2 ({}) stopped (pid {}) in {:.1}s",
            self.mode.label(),
            self.pid,
            started.elapsed().as_secs_f64()
        ));
    }

    /// The `transactional.id`s of the producers it created, from the client
    /// config dumps Kafka logs at INFO (`transactional.id = null` otherwise).
    fn transactional_ids(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("mirror-maker.log")).unwrap_or_default();
        let mut ids: Vec<String> = log
            .lines()
            .filter_map(|l| l.trim().strip_prefix("transactional.id = "))
            .filter(|id| *id != "null")
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn wait_started(&self, label: &str) {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let log =
                std::fs::read_to_string(self.dir.join("mirror-maker.log")).unwrap_or_default();
            if log.contains(STARTED_LINE) {
                return;
            }
            if !kafka::process_alive(self.pid) {
                panic!(
                    "{label} (pid {}) exited during start-up; its log:\n{}",
                    self.pid,
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{label} did not start within {START_LIMIT:?}; its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The MirrorMaker jars, fetched with Maven on first use.
fn jars() -> PathBuf {
    static JARS: OnceLock<PathBuf> = OnceLock::new();
    JARS.get_or_init(|| {
        kafka::maven_jars(
            "tests/kafka/mirror-maker-pom.xml",
            &kafka::kafka_cache(&format!("mirror-maker-{}", kafka_version())),
            &format!("connect-mirror-{}.jar", kafka_version()),
        )
    })
    .clone()
}

/// Partitions of `topic` on the source, which must exist already.
fn partition_count(bootstrap: &str, topic: &str) -> usize {
    let consumer: BaseConsumer = clients::client_config(bootstrap)
        .create()
        .expect("metadata client");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("metadata of {topic} on {bootstrap}: {e}"));
    let partitions = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    assert!(
        partitions > 0,
        "topic {topic} does not exist on {bootstrap}; create it before starting MirrorMaker"
    );
    partitions
}

fn mm2_properties(
    source_bootstrap: &str,
    target_bootstrap: &str,
    topic: &str,
    state: &str,
    partitions: usize,
    mode: Mode,
) -> String {
    let (source, target) = mode.aliases();
    // `topics` is a list of regexes; '.' is the only legal topic-name character
    // that is special there.
    let topic_regex = topic.replace('.', "[.]");
    let mut p = format!(
        "clusters = {source}, {target}
{source}.bootstrap.servers = {source_bootstrap}
{target}.bootstrap.servers = {target_bootstrap}
{source}->{target}.enabled = true
{source}->{target}.topics = {topic_regex}
tasks.max = {partitions}

# Connect state of this run only. By default it is named after the source
# alias alone, so a later run in the same mode would first restart the tasks
# of the previous run's config and wait to fence their transactional ids.
{target}.group.id = {source}-mm2-{state}
{target}.config.storage.topic = mm2-configs.{source}.{state}.internal
{target}.offset.storage.topic = mm2-offsets.{source}.{state}.internal
{target}.status.storage.topic = mm2-status.{source}.{state}.internal

# Single-node brokers: every topic MirrorMaker creates gets one replica.
replication.factor = 1
offset-syncs.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
config.storage.replication.factor = 1
offset.storage.replication.factor = 1
status.storage.replication.factor = 1

# Only the MirrorSourceConnector's data copy is compared.
emit.heartbeats.enabled = false
emit.checkpoints.enabled = false
sync.topic.configs.enabled = false
sync.topic.acls.enabled = false
"
    );
    if mode == Mode::ExactlyOnce {
        let [rest_port] = kafka::free_ports();
        p.push_str(&format!(
            "
# Exactly-once (KIP-618) as the MirrorMaker docs ask for it.
{target}.exactly.once.source.support = enabled
dedicated.mode.enable.internal.rest = true
listeners = http://127.0.0.1:{rest_port}
{source}.consumer.isolation.level = read_committed
"
        ));
    }
    p
}
