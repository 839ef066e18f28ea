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
            ("SASL_SSL PLAIN", sasl_ssl(cluster, "PLAIN", SASL_USER, SASL_PASSWORD)),
            ("SASL_SSL SCRAM-SHA-256", sasl_ssl(cluster, "SCRAM-SHA-256", SCRAM_USER, SCRAM_PASSWORD)),
            ("SASL_SSL SCRAM-SHA-512", sasl_ssl(cluster, "SCRAM-SHA-512", SCRAM_USER, SCRAM_PASSWORD)),
        ];
        for (what, link) in &good {
            assert_eq!(metadata(link, Duration::from_secs(20)), Ok(1), "{} {what}", cluster.name);
        }
        // The mTLS listener refuses a client without a certificate.
        let mut no_cert = tls(cluster, &certs.ca);
        no_cert.bootstrap = cluster.mtls_bootstrap.clone();
        assert!(metadata(&no_cert, REFUSED).is_err(), "{}: mTLS without a client certificate", cluster.name);
        assert!(metadata(&tls(cluster, &certs.untrusted_ca), REFUSED).is_err(), "{}: untrusted CA", cluster.name);
        assert!(
            metadata(&sasl_ssl(cluster, "SCRAM-SHA-512", SCRAM_USER, "wrong"), REFUSED).is_err(),
            "{}: wrong SCRAM password",
            cluster.name
        );
    }
}
