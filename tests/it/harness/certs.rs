//! Certificates for the brokers' TLS listeners, made with `openssl` once per
//! test binary into a temp dir (removed when the binary exits):
//! - a CA, and a broker certificate it signs for `127.0.0.1` / `localhost`
//!   (subject alternative names, so librdkafka's default hostname check passes);
//! - a client certificate it signs, for mutual TLS, its key encrypted with
//!   [`Certs::client_key_password`];
//! - a second CA that signs nothing the brokers present: a client trusting
//!   only it must fail the handshake.
//!
//! Fresh keys every run: nothing secret is kept in the repository. If
//! `openssl` is missing or fails, the caller panics with its output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Certs {
    pub dir: PathBuf,
    /// The CA that signs the broker and client certificates (PEM).
    pub ca: PathBuf,
    /// A CA that signs neither (PEM).
    pub untrusted_ca: PathBuf,
    /// The broker's PEM key store: its private key (unencrypted PKCS#8), then its certificate.
    pub broker_keystore: PathBuf,
    /// The client's certificate (PEM), signed by [`Certs::ca`].
    pub client_cert: PathBuf,
    /// The client's private key (PEM, encrypted PKCS#8).
    pub client_key: PathBuf,
    pub client_key_password: &'static str,
}

/// The run's certificates, made on first call.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("kafka-relay-it-{}-certs", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        super::kafka::remove_at_exit(&dir);
        let certs = Certs {
            ca: dir.join("ca.pem"),
            untrusted_ca: dir.join("untrusted-ca.pem"),
            broker_keystore: dir.join("broker-keystore.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
            client_key_password: "client-key-secret",
            dir,
        };
        make(&certs);
        super::kafka::log(format!("test certificates made in {}", certs.dir.display()));
        certs
    })
}

fn make(c: &Certs) {
    let d = &c.dir;
    let days = "3";
    for (name, cn) in [
        ("ca", "kafka-relay test CA"),
        ("untrusted-ca", "kafka-relay untrusted CA"),
    ] {
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                days,
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    std::fs::write(
        d.join("broker.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write broker.ext");
    std::fs::write(d.join("client.ext"), "extendedKeyUsage=clientAuth\n")
        .expect("write client.ext");
    for (name, cn) in [("broker", "127.0.0.1"), ("client", "kafka-relay-client")] {
        openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &format!("{name}-plain-key.pem"),
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}-plain-key.pem"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca-key.pem",
                "-CAcreateserial",
                "-sha256",
                "-days",
                days,
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    // The broker's PEM key store: key, then certificate chain.
    let key = std::fs::read_to_string(d.join("broker-plain-key.pem")).expect("broker key");
    let cert = std::fs::read_to_string(d.join("broker.pem")).expect("broker cert");
    std::fs::write(&c.broker_keystore, format!("{key}{cert}")).expect("write broker key store");
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "client-plain-key.pem",
            "-passout",
            &format!("pass:{}", c.client_key_password),
            "-out",
            "client-key.pem",
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl to make test certificates: {e} (openssl is needed)")
        });
    assert!(
        out.status.success(),
        "openssl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
