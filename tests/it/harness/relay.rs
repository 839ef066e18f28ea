//! Running the relay under test: its configuration, the real `kafka-relay`
//! binary as a child process (for kill tests), and the source workload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::clients::{self, Isolation};
use super::Clusters;

/// One relay's topics, ids and WAL dir, unique to the test that made it.
pub struct RelaySetup {
    pub source_topic: String,
    pub target_topic: String,
    pub transactional_id: String,
    /// Where the relay connects; the tests' own clients always use the direct listeners.
    pub source_bootstrap: String,
    pub target_bootstrap: String,
    pub wal_max_bytes: Option<u64>,
    pub batch_max_bytes: Option<u64>,
    /// `target.transaction_timeout_ms`; librdkafka times out a record
    /// that long after it was produced, too.
    pub transaction_timeout_ms: u64,
    pub dir: tempfile::TempDir,
    /// Appended to the config: more sections, such as `[target.properties]`.
    pub extra_toml: String,
    /// Put before the first section: top-level keys, such as `enabled`.
    pub top_toml: String,
    /// Put inside `[source]`: keys such as `on_gap`.
    pub source_toml: String,
    /// Replaces `topics = ["<source_topic>"]`, e.g. with a `topic_regex`.
    pub selection_toml: Option<String>,
    /// Put inside `[target]`: keys such as `create_topics`.
    pub target_toml: String,
}

impl RelaySetup {
    /// Creates the source and target topics with `partitions` partitions.
    pub fn new(clusters: &Clusters, name: &str, partitions: i32) -> RelaySetup {
        let setup = RelaySetup::source_only(clusters, name, partitions, &[]);
        clients::create_topic(
            &clusters.target.bootstrap,
            &setup.target_topic,
            partitions,
            &[],
        );
        setup
    }

    /// Creates only the source topic, with `partitions` partitions and
    /// `config`: the target topic (of the same name) is left to the relay
    /// or to the test.
    pub fn source_only(
        clusters: &Clusters,
        name: &str,
        partitions: i32,
        config: &[(&str, &str)],
    ) -> RelaySetup {
        let source_topic = clients::unique_name(name);
        let target_topic = source_topic.clone();
        clients::create_topic(
            &clusters.source.bootstrap,
            &source_topic,
            partitions,
            config,
        );
        RelaySetup {
            transactional_id: format!("{source_topic}-relay"),
            source_bootstrap: clusters.source.bootstrap.clone(),
            target_bootstrap: clusters.target.bootstrap.clone(),
            wal_max_bytes: None,
            batch_max_bytes: None,
            transaction_timeout_ms: 30_000,
            source_topic,
            target_topic,
            dir: test_dir(name),
            extra_toml: String::new(),
            top_toml: String::new(),
            source_toml: String::new(),
            selection_toml: None,
            target_toml: String::new(),
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.dir.path().join("wal")
    }

    pub fn toml(&self) -> String {
        let optional = |key: &str, value: Option<u64>| {
            value.map(|v| format!("{key} = {v}\n")).unwrap_or_default()
        };
        format!(
            r#"{top}
[source]
bootstrap_servers = "{source}"
{selection}
start = "earliest"
{source_extra}
[target]
bootstrap_servers = "{target}"
transactional_id = "{txid}"
transaction_timeout_ms = {txn_timeout}
{target_extra}

[wal]
dir = "{wal}"
{wal_max}
[batch]
max_records = 200
linger_ms = 20
{batch_max}
{extra}
"#,
            source = self.source_bootstrap,
            target = self.target_bootstrap,
            wal_max = optional("max_bytes", self.wal_max_bytes),
            batch_max = optional("max_bytes", self.batch_max_bytes),
            selection = self
                .selection_toml
                .clone()
                .unwrap_or_else(|| format!("topics = [\"{}\"]", self.source_topic)),
            txid = self.transactional_id,
            txn_timeout = self.transaction_timeout_ms,
            wal = self.wal_dir().display(),
            extra = self.extra_toml,
            top = self.top_toml,
            source_extra = self.source_toml,
            target_extra = self.target_toml,
        )
    }

    pub fn config(&self) -> kafka_relay::config::Config {
        kafka_relay::config::Config::from_toml_str(&self.toml(), std::iter::empty())
            .unwrap_or_else(|e| panic!("test config is invalid:\n{e}"))
    }

    /// Writes the config file the binary reads; returns its path.
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("relay.toml");
        std::fs::write(&path, self.toml()).expect("write relay.toml");
        path
    }

    /// Runs the relay in-process with `config` until `expected` records are
    /// on the target, then stops it as a signal would.
    pub fn relay_until(
        &self,
        config: kafka_relay::config::Config,
        expected: usize,
    ) -> kafka_relay::pipeline::RunSummary {
        let c = super::clusters();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = runtime.spawn(kafka_relay::pipeline::run(config, async {
            let _ = stopped.await;
        }));
        self.wait_for_target(c, expected, Duration::from_secs(120));
        let _ = stop.send(());
        runtime
            .block_on(relay)
            .expect("relay task")
            .unwrap_or_else(|e| panic!("relay failed: {e}"))
    }

    /// Waits until `expected` records are visible to a `read_committed` reader of the target.
    pub fn wait_for_target(&self, clusters: &Clusters, expected: usize, limit: Duration) {
        self.wait_for_target_or_report(clusters, expected, limit, String::new)
    }

    /// As [`Self::wait_for_target`]; on timeout the panic also carries
    /// `report()` (a relay's log tail), for a post-mortem of a stuck relay.
    pub fn wait_for_target_or_report(
        &self,
        clusters: &Clusters,
        expected: usize,
        limit: Duration,
        report: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            // A target topic the relay is to create may not be there yet.
            let n = match clients::partition_count(&clusters.target.bootstrap, &self.target_topic) {
                None => 0,
                Some(_) => clients::consume_all(
                    &clusters.target.bootstrap,
                    &self.target_topic,
                    Isolation::ReadCommitted,
                )
                .len(),
            };
            if n >= expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {n} of {expected} records reached the target within {limit:?}\n{}",
                report()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// The test's working dir (config, WAL, relay log). Kept after the run when
/// `KAFKA_RELAY_KEEP_TEST_DIRS` is set, for post-mortems.
fn test_dir(name: &str) -> tempfile::TempDir {
    let keep = std::env::var_os("KAFKA_RELAY_KEEP_TEST_DIRS").is_some();
    let dir = tempfile::Builder::new()
        .prefix(&format!("kafka-relay-{name}-"))
        .disable_cleanup(keep)
        .tempdir()
        .expect("temp dir");
    if keep {
        super::kafka::log(format!(
            "{name}: working dir {} (kept)",
            dir.path().display()
        ));
    }
    dir
}

/// The `kafka-relay` binary running `run --config`, its stderr in a log file.
pub struct RelayProcess {
    child: Child,
    pub log: PathBuf,
}

/// A relay whose test failed half-way would outlive the run, its brokers
/// gone and its shipper retrying for ever: it dies with its handle.
impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl RelayProcess {
    pub fn start(config: &Path, log: &Path) -> RelayProcess {
        RelayProcess::start_with(config, log, |_| {})
    }

    /// One instance of a scaled-out relay (`[scale]`): `--instance name`,
    /// a WAL directory of its own, and its admin endpoint at `admin`.
    pub fn start_instance(
        config: &Path,
        log: &Path,
        name: &str,
        wal: &Path,
        admin: &str,
    ) -> RelayProcess {
        RelayProcess::start_with(config, log, |command| {
            command
                .args(["--instance", name])
                .env("KAFKA_RELAY_WAL__DIR", wal)
                .env("KAFKA_RELAY_ADMIN__LISTEN", admin);
        })
    }

    fn start_with(config: &Path, log: &Path, extra: impl FnOnce(&mut Command)) -> RelayProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("relay log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-relay"));
        command
            .args(["--log", "info,kafka_relay=debug", "run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file));
        extra(&mut command);
        let child = command.spawn().expect("start kafka-relay binary");
        RelayProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT...) and returns at once.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit; panics with the log otherwise.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "relay exited with {status}; log:\n{}",
                    self.log_tail()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "relay did not stop within 60s of SIGTERM; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the relay to exit on its own; panics after `limit`.
    pub fn wait_exit(mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "relay still running after {limit:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// What a scaled-out instance's log says the units group did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitsChange {
    /// "units assigned to this instance units=[..]"
    Assigned(Vec<u32>),
    /// "units revoked from this instance units=[..]"
    Revoked(Vec<u32>),
}

/// Each line of an instance's log (`text`) that tells of units assigned
/// or revoked, in order, with the line it was read from.
pub fn units_changes(text: &str) -> Vec<(&str, UnitsChange)> {
    let listed = |line: &str, marker: &str| -> Option<Vec<u32>> {
        let after = line.split(marker).nth(1)?;
        let list = after.split("units=[").nth(1)?.split(']').next()?;
        Some(
            list.split(',')
                .filter_map(|u| u.trim().parse().ok())
                .collect(),
        )
    };
    text.lines()
        .filter_map(|line| {
            if let Some(given) = listed(line, "units assigned to this instance") {
                Some((line, UnitsChange::Assigned(given)))
            } else {
                listed(line, "units revoked from this instance")
                    .map(|taken| (line, UnitsChange::Revoked(taken)))
            }
        })
        .collect()
}

/// The units an instance's log says it was given, minus those revoked.
pub fn units_owned(text: &str) -> BTreeSet<u32> {
    let mut units = BTreeSet::new();
    for (_, change) in units_changes(text) {
        match change {
            UnitsChange::Assigned(given) => units.extend(given),
            UnitsChange::Revoked(taken) => {
                for u in taken {
                    units.remove(&u);
                }
            }
        }
    }
    units
}

/// The binary's `args`, with `--config <file>` after the first:
/// (exit code, stdout, stderr).
pub fn cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let (first, rest) = args.split_first().expect("a command");
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .arg(first)
        .arg("--config")
        .arg(config)
        .args(rest)
        .output()
        .expect("run kafka-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kafka-relay status --json`, parsed.
pub fn status_json(config: &Path) -> serde_json::Value {
    let (code, stdout, stderr) = cli(config, &["status", "--json"]);
    assert_eq!(code, 0, "status failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("status --json: {e}: {stdout}"))
}

/// Polls `done` until it holds; panics after `limit` with the relay's log.
pub fn wait_for(what: &str, limit: Duration, relay: &RelayProcess, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; relay log:\n{}",
            relay.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `count` records to each partition of the source topic, continuing
/// each partition's sequence from `start`: value `p<partition>-<seq>`, a key,
/// two headers and an explicit timestamp, so the target can be checked byte
/// for byte. Timestamps are recent: old ones would be deleted by retention.
pub fn produce_sequence(bootstrap: &str, topic: &str, partitions: i32, start: u64, count: u64) {
    produce_sequence_to(bootstrap, topic, 0..partitions, start, count);
}

/// How long the workload waits for the source to take its records. Longer
/// than a broker restart under the nemesis (a SIGKILLed broker recovers its
/// logs first) and shorter than librdkafka's `message.timeout.ms` (300 s), so
/// a record is never given up on while the test still counts it.
const SOURCE_ACK_LIMIT: Duration = Duration::from_secs(240);

/// Counts the source's refusals, so a record the workload wrote and the
/// broker never took fails the test as that, not as a missing record later.
#[derive(Default)]
struct DeliveryTally {
    failed: std::sync::atomic::AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for DeliveryTally {}

impl ProducerContext for DeliveryTally {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().expect("tally") = Some(e.to_string());
        }
    }
}

/// [`produce_sequence`] into the partitions of `partitions` only.
pub fn produce_sequence_to(
    bootstrap: &str,
    topic: &str,
    partitions: std::ops::Range<i32>,
    start: u64,
    count: u64,
) {
    let producer: BaseProducer<DeliveryTally> = clients::client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create_with_context(DeliveryTally::default())
        .expect("source producer");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    for seq in start..start + count {
        for p in partitions.clone() {
            let value = sequence_value(p, seq);
            let key = format!("key-{}", seq % 13);
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(seq.to_string().as_bytes()),
                })
                .insert(Header {
                    key: "binary",
                    value: Some(&[0u8, 255, 7][..]),
                });
            let mut record = BaseRecord::to(topic)
                .partition(p)
                .key(&key)
                .payload(&value)
                .headers(headers)
                .timestamp(now_ms + seq as i64);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    wait_until_the_source_took_all(&producer, topic);
}

/// Flushes in steps, saying so when the source is slow (a broker restart),
/// and panics with the broker's refusal if any record was not taken.
fn wait_until_the_source_took_all(producer: &BaseProducer<DeliveryTally>, topic: &str) {
    let started = Instant::now();
    let mut said_slow = false;
    while producer.flush(Duration::from_secs(10)).is_err() {
        let waited = started.elapsed();
        assert!(
            waited < SOURCE_ACK_LIMIT,
            "the source did not take {} records of {topic} within {SOURCE_ACK_LIMIT:?} \
             (last refusal: {:?})",
            producer.in_flight_count(),
            producer.context().last_error.lock().expect("tally")
        );
        if !said_slow && waited >= Duration::from_secs(30) {
            said_slow = true;
            super::kafka::log(format!(
                "source producer: {} records of {topic} not yet acknowledged after {:.0}s",
                producer.in_flight_count(),
                waited.as_secs_f64()
            ));
        }
    }
    let tally = producer.context();
    let failed = tally.failed.load(Ordering::Relaxed);
    assert_eq!(
        failed,
        0,
        "the source refused {failed} records of {topic}: {:?}",
        tally.last_error.lock().expect("tally")
    );
    if said_slow {
        super::kafka::log(format!(
            "source producer: every record of {topic} acknowledged after {:.0}s",
            started.elapsed().as_secs_f64()
        ));
    }
}

pub fn sequence_value(partition: i32, seq: u64) -> String {
    format!("p{partition}-{seq:08}")
}

/// Writes to every partition of `topic` in chunks of 50 per partition until
/// the flag is set; the thread returns how many records per partition.
pub fn background_producer(
    bootstrap: String,
    topic: String,
    partitions: i32,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let mut written = 0;
        while !flag.load(Ordering::Relaxed) {
            produce_sequence(&bootstrap, &topic, partitions, written, 50);
            written += 50;
            std::thread::sleep(Duration::from_millis(100));
        }
        written
    });
    (stop, handle)
}
