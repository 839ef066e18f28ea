//! The command line's side of the admin endpoint: `status`, `pause` and
//! `resume` ask the running relay at `[admin] listen` over HTTP, or HTTPS
//! with `admin.tls_cert_file`, sending `admin.token` when set.
//!
//! Blocking (ureq); callers run it inside `spawn_blocking`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

use crate::config::Config;
use crate::ops::status::Status;

/// How the running relay answered, or why it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// Nothing listens there: the relay is not running (or has no endpoint).
    #[error("no relay answers at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the relay at {addr} answered {status}: {body}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("the relay at {addr} sent an unreadable status: {reason}")]
    BadAnswer { addr: SocketAddr, reason: String },
    #[error("cannot use admin.tls_ca_file {ca} to check the relay's endpoint: {reason}")]
    Tls { ca: String, reason: String },
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the running relay's endpoint is and how to talk to it, from
/// `[admin]`: its address, the bearer token, and for HTTPS the CA file.
pub struct Endpoint {
    pub addr: SocketAddr,
    token: Option<String>,
    ca_file: Option<PathBuf>,
}

impl Endpoint {
    /// `None` when the configuration has no `[admin] listen`.
    pub fn of(config: &Config) -> Option<Endpoint> {
        let admin = &config.admin;
        admin.listen.map(|addr| Endpoint {
            addr,
            token: admin.token.as_ref().map(|t| t.expose().to_string()),
            ca_file: admin.tls.as_ref().map(|t| t.ca_file.clone()),
        })
    }

    fn agent(&self) -> Result<ureq::Agent, AdminCallError> {
        let mut builder = ureq::config::Config::builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false);
        if let Some(ca) = &self.ca_file {
            let bad = |reason: String| AdminCallError::Tls {
                ca: ca.display().to_string(),
                reason,
            };
            let pem = std::fs::read(ca).map_err(|e| bad(e.to_string()))?;
            let cert = Certificate::from_pem(&pem).map_err(|e| bad(e.to_string()))?;
            builder = builder.tls_config(
                TlsConfig::builder()
                    .provider(TlsProvider::NativeTls)
                    .root_certs(RootCerts::Specific(Arc::new(vec![cert])))
                    .build(),
            );
        }
        Ok(ureq::Agent::new_with_config(builder.build()))
    }

    /// `GET /status`, or `POST /pause` / `POST /resume` (both answer with
    /// the status after the change).
    pub fn call(&self, method: &str, path: &str) -> Result<Status, AdminCallError> {
        let addr = self.addr;
        let agent = self.agent()?;
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{addr}{path}");
        let bearer = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match (method, &bearer) {
            ("POST", Some(b)) => agent.post(&url).header("Authorization", b).send_empty(),
            ("POST", None) => agent.post(&url).send_empty(),
            (_, Some(b)) => agent.get(&url).header("Authorization", b).call(),
            (_, None) => agent.get(&url).call(),
        };
        let mut response = sent.map_err(|e| AdminCallError::Unreachable {
            addr,
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| AdminCallError::BadAnswer {
                addr,
                reason: e.to_string(),
            })?;
        if status != 200 {
            return Err(AdminCallError::Refused {
                addr,
                status,
                body: body.trim().to_string(),
            });
        }
        serde_json::from_str(&body).map_err(|e| AdminCallError::BadAnswer {
            addr,
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    use super::*;
    use crate::config::{AdminConfig, AdminTls, Secret};
    use crate::ops::admin::{self, Access, Handles};
    use crate::ops::{Shared, Wals};

    /// A self-signed certificate for 127.0.0.1, and its key, as PEM files.
    fn self_signed(dir: &std::path::Path, name: &str) -> (PathBuf, PathBuf) {
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("key");
        let mut subject = X509NameBuilder::new().expect("name");
        subject.append_entry_by_text("CN", name).expect("cn");
        let subject = subject.build();
        let mut cert = X509::builder().expect("x509");
        cert.set_version(2).expect("version");
        cert.set_subject_name(&subject).expect("subject");
        cert.set_issuer_name(&subject).expect("issuer");
        cert.set_pubkey(&key).expect("pubkey");
        cert.set_not_before(&Asn1Time::days_from_now(0).expect("t"))
            .expect("not before");
        cert.set_not_after(&Asn1Time::days_from_now(1).expect("t"))
            .expect("not after");
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .build(&cert.x509v3_context(None, None))
            .expect("san");
        cert.append_extension(san).expect("extension");
        cert.sign(&key, MessageDigest::sha256()).expect("sign");
        let (cert_file, key_file) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.build().to_pem().expect("pem")).expect("write");
        std::fs::write(&key_file, key.private_key_to_pem_pkcs8().expect("pem")).expect("write");
        (cert_file, key_file)
    }

    #[test]
    fn the_command_line_steers_an_https_endpoint_with_its_token_and_ca() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert_file, key_file) = self_signed(dir.path(), "relay-admin");
        let (other_ca, _) = self_signed(dir.path(), "someone-else");
        let tls = AdminTls {
            cert_file: cert_file.clone(),
            key_file,
            ca_file: cert_file.clone(),
        };
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let shared = Shared::new(false);
        let handles = Handles {
            relay: "r".to_string(),
            access: Access::of(&AdminConfig {
                token: Some(Secret("s3cret".to_string())),
                ..AdminConfig::default()
            }),
            wals: Wals::new(dir.path()),
            control: shared.control.clone(),
            metrics: shared.metrics.clone(),
        };
        let server = runtime
            .block_on(admin::start(
                ([127, 0, 0, 1], 0).into(),
                Some(&tls),
                handles,
            ))
            .expect("endpoint");
        let endpoint = |token: Option<&str>, ca: Option<&PathBuf>| Endpoint {
            addr: server.addr,
            token: token.map(str::to_string),
            ca_file: ca.cloned(),
        };
        // Its own CA and token: served.
        let report = endpoint(Some("s3cret"), Some(&cert_file))
            .call("POST", "/pause")
            .expect("pause over https");
        assert!(report.paused && shared.control.is_paused());
        // No token: refused by the endpoint, over a good connection.
        assert!(matches!(
            endpoint(None, Some(&cert_file)).call("GET", "/status"),
            Err(AdminCallError::Refused { status: 401, .. })
        ));
        // A CA that did not sign it, or plain HTTP: no answer at all.
        assert!(matches!(
            endpoint(Some("s3cret"), Some(&other_ca)).call("GET", "/status"),
            Err(AdminCallError::Unreachable { .. })
        ));
        assert!(endpoint(Some("s3cret"), None)
            .call("GET", "/status")
            .is_err());
        drop(server);
    }
}
