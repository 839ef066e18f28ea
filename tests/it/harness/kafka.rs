//! Real Apache Kafka brokers for the integration tests.
//!
//! Each [`KafkaCluster`] is one JVM running a KRaft broker+controller on free
//! loopback ports, its data in a temp dir. The broker jars of the release
//! [`kafka_version`] names (`KAFKA_RELAY_KAFKA_VERSION`, default
//! [`DEFAULT_KAFKA_VERSION`]) come from Maven through `tests/kafka/pom.xml`
//! and are cached in `.kafka-cache/kafka-<version>/` (or
//! `$KAFKA_RELAY_KAFKA_JARS`).
//!
//! Invariants:
//! - No orphan JVMs. Every broker (and any other JVM a test or benchmark
//!   starts, through [`spawn_tied`]) is spawned with `PR_SET_PDEATHSIG =
//!   SIGKILL` from a thread that lives exactly as long as the child, so the
//!   child dies with the test process even on SIGKILL; and an `atexit` hook
//!   stops every such child still running when the binary exits normally
//!   (also after failed tests, which do not abort the process).
//! - If Java, Maven or the broker cannot start, the caller panics with what is
//!   missing: a test never passes without a real broker.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::certs::{certs, Certs};
use super::proxy::FaultProxy;

/// Kafka version of the harness brokers unless `KAFKA_RELAY_KAFKA_VERSION`
/// names another; keep in step with `<kafka.version>` in `tests/kafka/pom.xml`
/// (which `.ci/run` reads).
pub const DEFAULT_KAFKA_VERSION: &str = "4.1.1";
/// The SASL/PLAIN user every harness broker knows on its SASL_PLAINTEXT listener.
pub const SASL_USER: &str = "relay";
pub const SASL_PASSWORD: &str = "relay-secret";
/// The SCRAM user (SCRAM-SHA-256 and SCRAM-SHA-512) every harness broker
/// knows on its SASL_SSL listener, made at format time (`--add-scram`).
pub const SCRAM_USER: &str = "relay-scram";
pub const SCRAM_PASSWORD: &str = "relay-scram-secret";

/// Running children of [`spawn_tied`] by pid, with what they are and the dir
/// to remove once stopped, for the exit hook.
static RUNNING: Mutex<BTreeMap<u32, (String, Option<PathBuf>)>> = Mutex::new(BTreeMap::new());
static EXIT_HOOK: OnceLock<()> = OnceLock::new();
/// Dirs without a child of their own (the test certificates), removed by the exit hook.
static DIRS_TO_REMOVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes `dir` when the test binary exits (after its brokers stopped).
pub fn remove_at_exit(dir: &Path) {
    ensure_exit_hook();
    DIRS_TO_REMOVE
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(dir.to_path_buf());
}

/// The Apache Kafka release of this run's brokers (and of the benchmark's
/// MirrorMaker): `KAFKA_RELAY_KAFKA_VERSION`, else [`DEFAULT_KAFKA_VERSION`].
/// Maven gets it as `-Dkafka.version`; each version has its own jar cache.
pub fn kafka_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let version = std::env::var("KAFKA_RELAY_KAFKA_VERSION")
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_KAFKA_VERSION.to_string());
        // It becomes a Maven property and a directory name: nothing but a release number.
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit())
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'),
            "KAFKA_RELAY_KAFKA_VERSION={version:?} is not a Kafka release such as 3.9.1"
        );
        version
    })
}

/// Writes past the test harness's output capture, so the CI log shows broker
/// lifecycle lines even for passing tests.
pub fn log(line: impl AsRef<str>) {
    let _ = writeln!(std::io::stderr(), "[harness] {}", line.as_ref());
}

pub struct KafkaCluster {
    pub name: String,
    /// PLAINTEXT listener: what tests and the relay use by default.
    pub bootstrap: String,
    /// SASL_PLAINTEXT listener with mechanism PLAIN and user [`SASL_USER`].
    pub sasl_bootstrap: String,
    /// SSL listener, server authentication only: the broker presents a
    /// certificate signed by [`Certs::ca`] for 127.0.0.1.
    pub ssl_bootstrap: String,
    /// SSL listener with `ssl.client.auth=required` (mutual TLS): the client
    /// must present a certificate signed by [`Certs::ca`].
    pub mtls_bootstrap: String,
    /// SASL_SSL listener (the TLS of `ssl_bootstrap`) with mechanisms PLAIN
    /// (user [`SASL_USER`]), SCRAM-SHA-256 and SCRAM-SHA-512 (user [`SCRAM_USER`]).
    pub sasl_ssl_bootstrap: String,
    /// The certificates of the TLS listeners (one set for both clusters).
    pub certs: &'static Certs,
    /// Through the fault proxy: the broker advertises the proxy's port here.
    pub proxied_bootstrap: String,
    pub proxy: FaultProxy,
    dir: PathBuf,
    pid: Mutex<Option<u32>>,
}

#[derive(Clone, Copy)]
struct Ports {
    plaintext: u16,
    controller: u16,
    sasl: u16,
    /// The broker's own PROXIED listener; clients reach it through `proxy`.
    proxied: u16,
    proxy: u16,
    ssl: u16,
    mtls: u16,
    sasl_ssl: u16,
}

impl KafkaCluster {
    /// Formats storage and starts one single-node KRaft cluster; blocks until
    /// it answers metadata requests.
    pub fn start(name: &str) -> KafkaCluster {
        let jars = broker_jars();
        let dir =
            std::env::temp_dir().join(format!("kafka-relay-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let [plaintext, controller, sasl, proxied, proxy, ssl, mtls, sasl_ssl] = free_ports();
        let ports = Ports {
            plaintext,
            controller,
            sasl,
            proxied,
            proxy,
            ssl,
            mtls,
            sasl_ssl,
        };
        let certs = certs();
        std::fs::write(
            dir.join("server.properties"),
            server_properties(&dir, ports, certs) + &extra_broker_properties(),
        )
        .expect("write server.properties");
        std::fs::write(
            dir.join("log4j2.properties"),
            log4j_properties(&dir.join("server.log")),
        )
        .expect("write log4j2.properties");

        let classpath = format!("{}/*", jars.display());
        let format = Command::new(java())
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "format", "--ignore-formatted"])
            .args(["-t", "kafkaRelayTestClusterA"])
            .args(["--add-scram", &format!("SCRAM-SHA-256=[name={SCRAM_USER},password={SCRAM_PASSWORD}]")])
            .args(["--add-scram", &format!("SCRAM-SHA-512=[name={SCRAM_USER},password={SCRAM_PASSWORD}]")])
            .arg("-c")
            .arg(dir.join("server.properties"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run java for the {name} cluster: {e} (Java 17 is needed; .ci/run installs it)"));
        assert!(
            format.status.success(),
            "formatting storage of the {name} cluster failed:\n{}{}",
            String::from_utf8_lossy(&format.stdout),
            String::from_utf8_lossy(&format.stderr)
        );

        let cluster = KafkaCluster {
            name: name.to_string(),
            bootstrap: format!("127.0.0.1:{}", ports.plaintext),
            sasl_bootstrap: format!("127.0.0.1:{}", ports.sasl),
            ssl_bootstrap: format!("127.0.0.1:{}", ports.ssl),
            mtls_bootstrap: format!("127.0.0.1:{}", ports.mtls),
            sasl_ssl_bootstrap: format!("127.0.0.1:{}", ports.sasl_ssl),
            certs,
            proxied_bootstrap: format!("127.0.0.1:{}", ports.proxy),
            proxy: FaultProxy::start(ports.proxy, ([127, 0, 0, 1], ports.proxied).into()),
            dir,
            pid: Mutex::new(None),
        };
        cluster.launch(&classpath);
        cluster
    }

    fn launch(&self, classpath: &str) {
        let started = Instant::now();
        let mut cmd = Command::new(java());
        cmd.args([
            "-Xms256m".to_string(),
            format!("-Xmx{}", broker_heap()),
            "-XX:+UseG1GC".to_string(),
            "-Djava.awt.headless=true".to_string(),
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            self.dir.join("log4j2.properties").display()
        ))
        .args(["-cp", classpath, "kafka.Kafka"])
        .arg(self.dir.join("server.properties"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(open_log(&self.dir.join("stdout.log"))))
        .stderr(Stdio::from(open_log(&self.dir.join("stderr.log"))));
        let pid = spawn_tied(cmd, &format!("{} cluster", self.name), Some(&self.dir))
            .unwrap_or_else(|e| panic!("cannot start the {} broker JVM: {e}", self.name));
        *self.pid.lock().expect("pid") = Some(pid);

        self.wait_ready(pid, Duration::from_secs(90));
        let running = self.running_version();
        assert_eq!(
            running.as_deref(),
            Some(kafka_version()),
            "the {} broker must run the selected Kafka release; its log:\n{}",
            self.name,
            self.log_tail()
        );
        log(format!(
            "{} cluster started: Apache Kafka {} (KRaft) at {} (SASL_PLAINTEXT {}, SSL {}, mTLS {}, SASL_SSL {}, via fault proxy {}), pid {pid}, ready in {:.1}s",
            self.name,
            kafka_version(),
            self.bootstrap,
            self.sasl_bootstrap,
            self.ssl_bootstrap,
            self.mtls_bootstrap,
            self.sasl_ssl_bootstrap,
            self.proxied_bootstrap,
            started.elapsed().as_secs_f64()
        ));
    }

    fn wait_ready(&self, pid: u32, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if !process_alive(pid) {
                panic!(
                    "the {} broker (pid {pid}) exited during start-up; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(
                &self.bootstrap.parse().expect("addr"),
                Duration::from_millis(500),
            )
            .is_ok()
                && super::clients::metadata_ok(&self.bootstrap)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the {} broker did not become ready within {limit:?}; its log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The release the broker logged at start-up (`Kafka version: …`, its
    /// last such line, so a restart reports the new process).
    fn running_version(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        text.lines()
            .rev()
            .find_map(|l| l.split("Kafka version: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    }

    /// Stops the broker (SIGKILL when `hard`, else SIGTERM and wait).
    pub fn stop(&self, hard: bool) {
        if let Some(pid) = self.pid.lock().expect("pid").take() {
            stop_tied(pid, hard);
        }
    }

    /// Starts the broker again on the same ports and data.
    pub fn restart(&self, hard: bool) {
        self.stop(hard);
        self.launch(&format!("{}/*", broker_jars().display()));
    }

    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for file in ["server.log", "stdout.log", "stderr.log"] {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(40);
            out.push_str(&format!("--- {file}\n{}\n", lines[start..].join("\n")));
        }
        out
    }
}

fn server_properties(dir: &Path, p: Ports, certs: &Certs) -> String {
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{SASL_USER}\" password=\"{SASL_PASSWORD}\" user_{SASL_USER}=\"{SASL_PASSWORD}\";"
    );
    // SCRAM credentials live in the cluster metadata (`--add-scram` at format time).
    let scram_jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    format!(
        "process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{ctl}
listeners=PLAINTEXT://127.0.0.1:{plain},CONTROLLER://127.0.0.1:{ctl},SASL_PLAINTEXT://127.0.0.1:{sasl},PROXIED://127.0.0.1:{proxied},SSL://127.0.0.1:{ssl},MTLS://127.0.0.1:{mtls},SASL_SSL://127.0.0.1:{sasl_ssl}
advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_PLAINTEXT://127.0.0.1:{sasl},PROXIED://127.0.0.1:{proxy},SSL://127.0.0.1:{ssl},MTLS://127.0.0.1:{mtls},SASL_SSL://127.0.0.1:{sasl_ssl}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,PROXIED:PLAINTEXT,SSL:SSL,MTLS:SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config={jaas}
listener.name.sasl_ssl.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram_jaas}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_jaas}
# TLS of the SSL, MTLS and SASL_SSL listeners: PEM files the tests made.
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.truststore.type=PEM
ssl.truststore.location={ca}
ssl.client.auth=none
listener.name.mtls.ssl.client.auth=required
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
# One node: internal topics must not ask for more replicas than exist.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
# Tests own their data for the whole run; never lose it to time-based retention.
log.retention.ms=-1
# Share groups are 4.x only; 3.9 ignores these keys.
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
",
        ctl = p.controller,
        plain = p.plaintext,
        sasl = p.sasl,
        proxied = p.proxied,
        proxy = p.proxy,
        ssl = p.ssl,
        mtls = p.mtls,
        sasl_ssl = p.sasl_ssl,
        keystore = certs.broker_keystore.display(),
        ca = certs.ca.display(),
        data = dir.join("data").display(),
    )
}

/// log4j2 settings that log at INFO to `file` (brokers and MirrorMaker).
pub fn log4j_properties(file: &Path) -> String {
    format!(
        "rootLogger.level=INFO
rootLogger.appenderRef.f.ref=F
appender.f.type=File
appender.f.name=F
appender.f.fileName={}
appender.f.layout.type=PatternLayout
appender.f.layout.pattern=[%d] %p %m (%c)%n
",
        file.display()
    )
}

pub fn open_log(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// Distinct free loopback ports: held open together so the OS cannot hand
/// out one twice, and never reused within the run (clusters start in parallel).
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < N {
        let listener = TcpListener::bind("127.0.0.1:0").expect("no free loopback port");
        let port = listener.local_addr().expect("local addr").port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            ports.push(port);
        }
        held.push(listener);
    }
    ports.try_into().expect("N ports")
}

/// The brokers' maximum heap: 768 MiB, enough for the tests, or
/// `KAFKA_RELAY_BROKER_HEAP` (e.g. `4g`). A broker of 5,000 partitions
/// with transactions filled 768 MiB and spent its time in full GCs (the
/// `partitions` benchmark).
pub fn broker_heap() -> String {
    std::env::var("KAFKA_RELAY_BROKER_HEAP").unwrap_or_else(|_| "768m".to_string())
}

/// `KAFKA_RELAY_BROKER_PROPERTIES`: `key=value` pairs, comma-separated,
/// added to both brokers' server.properties, for benchmark experiments
/// with a broker setting (a later line wins over the harness's own).
fn extra_broker_properties() -> String {
    let Ok(pairs) = std::env::var("KAFKA_RELAY_BROKER_PROPERTIES") else {
        return String::new();
    };
    let mut lines = String::from("# KAFKA_RELAY_BROKER_PROPERTIES\n");
    for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        assert!(
            pair.contains('='),
            "KAFKA_RELAY_BROKER_PROPERTIES: {pair:?} is not key=value"
        );
        lines.push_str(pair);
        lines.push('\n');
    }
    lines
}

pub fn java() -> String {
    match std::env::var("JAVA_HOME") {
        Ok(home) if Path::new(&home).join("bin/java").exists() => format!("{home}/bin/java"),
        _ => "java".to_string(),
    }
}

pub fn process_alive(pid: u32) -> bool {
    // /proc keeps zombies; a zombie child is a dead child.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"),
        Err(_) => false,
    }
}

fn stop_pid(pid: u32, hard: bool) {
    let signal = if hard { libc::SIGKILL } else { libc::SIGTERM };
    // SAFETY: plain kill(2) on a pid this process spawned.
    unsafe {
        libc::kill(pid as i32, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if process_alive(pid) {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}

/// Starts `cmd` as a child that cannot outlive this process: it gets
/// `PR_SET_PDEATHSIG = SIGKILL` and is spawned from a thread that waits for it
/// (the signal fires when the spawning *thread* ends, so that thread must live
/// as long as the child). Until [`stop_tied`], the exit hook stops it and then
/// removes `remove_at_exit`; `label` names it in that hook's log line.
/// Returns the child's pid.
pub fn spawn_tied(
    mut cmd: Command,
    label: &str,
    remove_at_exit: Option<&Path>,
) -> std::io::Result<u32> {
    ensure_exit_hook();
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("tied-{}", label.replace(' ', "-")))
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .expect("spawn the thread that owns a child process");
    let pid = rx.recv().expect("child-owning thread ended")?;
    RUNNING.lock().expect("running children").insert(
        pid,
        (label.to_string(), remove_at_exit.map(Path::to_path_buf)),
    );
    Ok(pid)
}

/// Stops a child of [`spawn_tied`] (SIGKILL when `hard`, else SIGTERM, then
/// SIGKILL after 30 s) and takes it off the exit hook's list; its dir stays.
pub fn stop_tied(pid: u32, hard: bool) {
    stop_pid(pid, hard);
    RUNNING.lock().expect("running children").remove(&pid);
}

extern "C" fn stop_all_at_exit() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    for (pid, (label, dir)) in running {
        stop_pid(pid, false);
        match dir {
            Some(dir) => {
                let _ = std::fs::remove_dir_all(&dir);
                log(format!("{label} stopped (pid {pid}), data removed"));
            }
            None => log(format!("{label} stopped (pid {pid})")),
        }
    }
    for dir in std::mem::take(&mut *DIRS_TO_REMOVE.lock().unwrap_or_else(|p| p.into_inner())) {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn ensure_exit_hook() {
    EXIT_HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(stop_all_at_exit);
        }
    });
}

/// Directory with the broker's jars, fetched with Maven on first use.
fn broker_jars() -> PathBuf {
    static JARS: OnceLock<PathBuf> = OnceLock::new();
    JARS.get_or_init(|| {
        let dir = std::env::var_os("KAFKA_RELAY_KAFKA_JARS")
            .map(PathBuf::from)
            .unwrap_or_else(|| kafka_cache(&format!("kafka-{}", kafka_version())));
        maven_jars(
            "tests/kafka/pom.xml",
            &dir,
            &format!("kafka_2.13-{}.jar", kafka_version()),
        )
    })
    .clone()
}

/// `.kafka-cache/<name>` in the crate: where fetched jars are kept between runs.
pub fn kafka_cache(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".kafka-cache")
        .join(name)
}

/// Returns `dir` holding the runtime jars of `pom` (relative to the crate)
/// for Kafka [`kafka_version`], first fetching them with Maven unless
/// `marker_jar` is already there.
/// Not safe to call twice at once for one `dir`; callers keep a `OnceLock`.
pub fn maven_jars(pom: &str, dir: &Path, marker_jar: &str) -> PathBuf {
    let marker = dir.join(marker_jar);
    if !marker.exists() {
        log(format!(
            "fetching the jars of {pom} (Kafka {}) with Maven into {}",
            kafka_version(),
            dir.display()
        ));
        let out = Command::new("mvn")
            .args(["-q", "-B", "dependency:copy-dependencies", "-DincludeScope=runtime"])
            .arg(format!("-Dkafka.version={}", kafka_version()))
            .arg(format!("-DoutputDirectory={}", dir.display()))
            .arg("-f")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(pom))
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run mvn to fetch the jars of {pom}: {e} (Maven is needed; .ci/run installs it)")
            });
        assert!(
            out.status.success() && marker.exists(),
            "mvn could not fetch the jars of {pom}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir.to_path_buf()
}
