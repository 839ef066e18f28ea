//! TLS, mutual TLS and SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on
//! both sides, against the harness brokers' real listeners and certificates
//! the harness made this run (`harness::certs`); and the mistakes an
//! operator makes with them (a wrong password, a CA that does not sign the
//! broker's certificate, a SASL mechanism the listener does not enable),
//! each stopping `run` at start with the side, the broker and the cause,
//! and named by `check`, the secret never printed.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::harness::kafka::{KafkaCluster, SASL_PASSWORD, SASL_USER, SCRAM_PASSWORD, SCRAM_USER};
use crate::harness::relay::{cli, produce_sequence, RelayProcess, RelaySetup};
use crate::harness::{checker, clients, clusters};

/// How a relay side connects: `(bootstrap, [side.properties] lines)`.
struct Link {
    bootstrap: String,
    properties: Vec<(&'static str, String)>,
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Server-authenticated TLS, trusting `ca`.
fn tls(cluster: &KafkaCluster, ca: &std::path::Path) -> Link {
    Link {
        bootstrap: cluster.ssl_bootstrap.clone(),
        properties: vec![
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", path(ca)),
        ],
    }
}

/// Mutual TLS: the client certificate and its encrypted key.
fn mtls(cluster: &KafkaCluster) -> Link {
    let certs = cluster.certs;
    Link {
        bootstrap: cluster.mtls_bootstrap.clone(),
        properties: vec![
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", path(&certs.ca)),
            ("ssl.certificate.location", path(&certs.client_cert)),
            ("ssl.key.location", path(&certs.client_key)),
            ("ssl.key.password", certs.client_key_password.into()),
        ],
    }
}

/// SASL over TLS with `mechanism`, as `user` / `password`.
fn sasl_ssl(cluster: &KafkaCluster, mechanism: &str, user: &str, password: &str) -> Link {
    Link {
        bootstrap: cluster.sasl_ssl_bootstrap.clone(),
        properties: vec![
            ("security.protocol", "SASL_SSL".into()),
            ("ssl.ca.location", path(&cluster.certs.ca)),
            ("sasl.mechanism", mechanism.into()),
            ("sasl.username", user.into()),
            ("sasl.password", password.into()),
        ],
    }
}

fn properties_toml(side: &str, link: &Link) -> String {
    let mut out = format!("\n[{side}.properties]\n");
    for (k, v) in &link.properties {
        out.push_str(&format!("{k:?} = {v:?}\n"));
    }
    out
}

/// Points `setup`'s source and target at these listeners.
fn connect(setup: &mut RelaySetup, source: &Link, target: &Link) {
    setup.source_bootstrap = source.bootstrap.clone();
    setup.target_bootstrap = target.bootstrap.clone();
    setup.extra_toml = format!(
        "{}{}",
        properties_toml("source", source),
        properties_toml("target", target)
    );
}

/// How long a client that must be refused is given.
const REFUSED: Duration = Duration::from_secs(3);

fn client(link: &Link) -> ClientConfig {
    let mut c = clients::client_config(&link.bootstrap);
    for (k, v) in &link.properties {
        c.set(*k, v);
    }
    c
}

fn metadata(link: &Link, limit: Duration) -> Result<usize, String> {
    let consumer: BaseConsumer = client(link).create().map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, limit)
        .map(|m| m.brokers().len())
        .map_err(|e| e.to_string())
}

#[test]
fn every_tls_listener_takes_its_clients_and_refuses_the_others() {
    let c = clusters();
    for cluster in [&c.source, &c.target] {
        let certs = cluster.certs;
        let good = [
            ("SSL", tls(cluster, &certs.ca)),
            ("mTLS", mtls(cluster)),
            (
                "SASL_SSL PLAIN",
                sasl_ssl(cluster, "PLAIN", SASL_USER, SASL_PASSWORD),
            ),
            (
                "SASL_SSL SCRAM-SHA-256",
                sasl_ssl(cluster, "SCRAM-SHA-256", SCRAM_USER, SCRAM_PASSWORD),
            ),
            (
                "SASL_SSL SCRAM-SHA-512",
                sasl_ssl(cluster, "SCRAM-SHA-512", SCRAM_USER, SCRAM_PASSWORD),
            ),
        ];
        for (what, link) in &good {
            assert_eq!(
                metadata(link, Duration::from_secs(20)),
                Ok(1),
                "{} {what}",
                cluster.name
            );
        }
        // The mTLS listener refuses a client without a certificate.
        let mut no_cert = tls(cluster, &certs.ca);
        no_cert.bootstrap = cluster.mtls_bootstrap.clone();
        assert!(
            metadata(&no_cert, REFUSED).is_err(),
            "{}: mTLS without a client certificate",
            cluster.name
        );
        assert!(
            metadata(&tls(cluster, &certs.untrusted_ca), REFUSED).is_err(),
            "{}: untrusted CA",
            cluster.name
        );
        assert!(
            metadata(
                &sasl_ssl(cluster, "SCRAM-SHA-512", SCRAM_USER, "wrong"),
                REFUSED
            )
            .is_err(),
            "{}: wrong SCRAM password",
            cluster.name
        );
    }
}

/// Waits for `setup`'s relay, started as the binary, to stop on its own
/// (it must not retry for ever): its exit code and everything it printed.
fn run_must_fail(setup: &RelaySetup) -> (Option<i32>, String) {
    let log = setup.dir.path().join("relay.log");
    let relay = RelayProcess::start(&setup.config_file(), &log);
    let status = relay.wait_exit(Duration::from_secs(90));
    (
        status.code(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// `kafka-relay check`: its exit code and output.
fn check(setup: &RelaySetup) -> (i32, String) {
    let (code, stdout, stderr) = cli(&setup.config_file(), &["check"]);
    (code, format!("{stdout}{stderr}"))
}

/// `kafka-relay check` fails naming `side`'s `broker` and `cause`, without
/// printing `secret`.
fn check_names(
    setup: &RelaySetup,
    case: &str,
    side: &str,
    broker: &str,
    cause: &str,
    secret: &str,
) {
    let (code, out) = check(setup);
    crate::harness::kafka::log(format!("{case}, check says: {}", problem_lines(&out)));
    assert_eq!(code, 1, "check must fail:\n{out}");
    assert!(
        out.lines().any(
            |l| l.starts_with(&format!("problem  {side}: cannot reach {broker}"))
                && l.contains(cause)
        ),
        "check must name {cause:?} on {side} {broker}:\n{out}"
    );
    assert_secret_not_in(secret, "check", &out);
}

fn assert_nothing_on_target(setup: &RelaySetup) {
    let on_target = clients::consume_all(
        &clusters().target.bootstrap,
        &setup.target_topic,
        clients::Isolation::ReadUncommitted,
    );
    assert_eq!(on_target.len(), 0, "nothing may reach the target");
}

fn assert_secret_not_in(secret: &str, what: &str, output: &str) {
    assert!(
        !output.contains(secret),
        "the secret {secret:?} appears in {what}'s output:\n{output}"
    );
}

/// A relay run copies `per_partition` records of each of 2 partitions
/// exactly once (the independent checker), the relay in-process.
fn copies_exactly_once(
    name: &str,
    source: impl Fn(&KafkaCluster) -> Link,
    target: impl Fn(&KafkaCluster) -> Link,
) {
    let c = clusters();
    let mut setup = RelaySetup::new(c, name, 2);
    let per_partition = 300;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        per_partition,
    );
    connect(&mut setup, &source(&c.source), &target(&c.target));
    let summary = setup.relay_until(setup.config(), 2 * per_partition as usize);
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, per_partition);
    checker::assert_identical_to_source(
        &c.source.bootstrap,
        &setup.source_topic,
        &c.target.bootstrap,
        &setup.target_topic,
    );
    assert_eq!(summary.shipper.records, 2 * per_partition);
}

#[test]
fn source_over_mtls_target_over_sasl_ssl_scram_sha_512_copies_exactly_once() {
    copies_exactly_once("tls-mtls-scram512", mtls, |t| {
        sasl_ssl(t, "SCRAM-SHA-512", SCRAM_USER, SCRAM_PASSWORD)
    });
}

#[test]
fn source_over_sasl_ssl_scram_sha_256_target_over_tls_copies_exactly_once() {
    copies_exactly_once(
        "tls-scram256-ssl",
        |s| sasl_ssl(s, "SCRAM-SHA-256", SCRAM_USER, SCRAM_PASSWORD),
        |t| tls(t, &t.certs.ca),
    );
}

/// The binary, source over server-authenticated TLS and target over
/// SASL_SSL/PLAIN: exactly once, and neither password is in its log.
#[test]
fn binary_over_tls_and_sasl_ssl_plain_copies_exactly_once_without_logging_secrets() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "tls-bin-plain", 2);
    let per_partition = 300;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        per_partition,
    );
    connect(
        &mut setup,
        &tls(&c.source, &c.source.certs.ca),
        &sasl_ssl(&c.target, "PLAIN", SASL_USER, SASL_PASSWORD),
    );
    let (code, out) = check(&setup);
    assert_eq!(code, 0, "check must pass:\n{out}");
    assert!(out.contains("may run transactions"), "{out}");
    assert_secret_not_in(SASL_PASSWORD, "check", &out);
    let log = setup.dir.path().join("relay.log");
    let relay = RelayProcess::start(&setup.config_file(), &log);
    setup.wait_for_target_or_report(
        c,
        2 * per_partition as usize,
        Duration::from_secs(120),
        || relay.log_tail(),
    );
    relay.stop();
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, per_partition);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(out.contains("relay running"), "{out}");
    assert_secret_not_in(SASL_PASSWORD, "the relay", &out);
}

/// A wrong SCRAM-SHA-512 password on the target: `run` stops at start with
/// the side, the broker and the cause, exit 1; `check` names it; neither
/// prints the password; nothing is lost: with the right password the same
/// relay (same WAL) then copies everything exactly once.
#[test]
fn wrong_scram_password_on_the_target_stops_run_at_start_and_loses_nothing() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "tls-bad-password", 2);
    let per_partition = 200;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        2,
        0,
        per_partition,
    );
    let wrong = "not-the-scram-password-5821";
    connect(
        &mut setup,
        &mtls(&c.source),
        &sasl_ssl(&c.target, "SCRAM-SHA-512", SCRAM_USER, wrong),
    );
    let (code, out) = run_must_fail(&setup);
    crate::harness::kafka::log(format!("wrong password, run says: {}", last_line(&out)));
    assert_eq!(code, Some(1), "run must exit 1:\n{out}");
    let expected = format!(
        "target: cannot connect to {}: ",
        c.target.sasl_ssl_bootstrap
    );
    assert!(
        out.contains(&expected),
        "run must name the side and broker ({expected}):\n{out}"
    );
    assert!(
        out.contains("Authentication failed") && out.contains("SCRAM-SHA-512"),
        "run must name the authentication failure:\n{out}"
    );
    assert!(out.contains("not an outage"), "{out}");
    assert_secret_not_in(wrong, "run", &out);
    assert_secret_not_in(c.source.certs.client_key_password, "run", &out);

    check_names(
        &setup,
        "wrong password",
        "target",
        &c.target.sasl_ssl_bootstrap,
        "Authentication failed",
        wrong,
    );
    assert_nothing_on_target(&setup);
    connect(
        &mut setup,
        &mtls(&c.source),
        &sasl_ssl(&c.target, "SCRAM-SHA-512", SCRAM_USER, SCRAM_PASSWORD),
    );
    setup.relay_until(setup.config(), 2 * per_partition as usize);
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 2, per_partition);
}

/// The source trusts a CA that did not sign the broker's certificate.
#[test]
fn untrusted_broker_certificate_on_the_source_stops_run_at_start() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "tls-untrusted", 1);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 50);
    connect(
        &mut setup,
        &tls(&c.source, &c.source.certs.untrusted_ca),
        &sasl_ssl(&c.target, "SCRAM-SHA-256", SCRAM_USER, SCRAM_PASSWORD),
    );
    let (code, out) = run_must_fail(&setup);
    crate::harness::kafka::log(format!("untrusted CA, run says: {}", last_line(&out)));
    assert_eq!(code, Some(1), "run must exit 1:\n{out}");
    let expected = format!("source: cannot connect to {}: ", c.source.ssl_bootstrap);
    assert!(
        out.contains(&expected),
        "run must name the side and broker ({expected}):\n{out}"
    );
    assert!(
        out.contains("certificate verify failed"),
        "run must name the cause:\n{out}"
    );
    assert_secret_not_in(SCRAM_PASSWORD, "run", &out);

    check_names(
        &setup,
        "untrusted CA",
        "source",
        &c.source.ssl_bootstrap,
        "certificate verify failed",
        SCRAM_PASSWORD,
    );
    assert_nothing_on_target(&setup);
}

/// The source asks for SCRAM-SHA-512 on a listener that enables only PLAIN.
#[test]
fn sasl_mechanism_the_listener_does_not_enable_stops_run_at_start() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "tls-mechanism", 1);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 50);
    let source = Link {
        bootstrap: c.source.sasl_bootstrap.clone(),
        properties: vec![
            ("security.protocol", "SASL_PLAINTEXT".into()),
            ("sasl.mechanism", "SCRAM-SHA-512".into()),
            ("sasl.username", SCRAM_USER.into()),
            ("sasl.password", SCRAM_PASSWORD.into()),
        ],
    };
    connect(&mut setup, &source, &tls(&c.target, &c.target.certs.ca));
    let (code, out) = run_must_fail(&setup);
    crate::harness::kafka::log(format!("wrong mechanism, run says: {}", last_line(&out)));
    assert_eq!(code, Some(1), "run must exit 1:\n{out}");
    let expected = format!("source: cannot connect to {}: ", c.source.sasl_bootstrap);
    assert!(
        out.contains(&expected),
        "run must name the side and broker ({expected}):\n{out}"
    );
    assert!(
        out.contains("SCRAM-SHA-512") && out.contains("PLAIN"),
        "run must name the mechanism asked for and the ones enabled:\n{out}"
    );
    assert_secret_not_in(SCRAM_PASSWORD, "run", &out);

    check_names(
        &setup,
        "wrong mechanism",
        "source",
        &c.source.sasl_bootstrap,
        "SCRAM-SHA-512",
        SCRAM_PASSWORD,
    );
}

fn last_line(out: &str) -> &str {
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

fn problem_lines(out: &str) -> String {
    out.lines()
        .filter(|l| l.starts_with("problem"))
        .collect::<Vec<_>>()
        .join(" | ")
}
