//! `kafka-relay check` and bad input: specific, one-line errors, and a clean
//! pass on a good configuration.

use std::process::Command;

use crate::harness::clusters;
use crate::harness::kafka::{SASL_PASSWORD, SASL_USER};
use crate::harness::relay::RelaySetup;

fn check(config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["--log", "error", "check", "--config"])
        .arg(config)
        .output()
        .expect("run kafka-relay check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Points the relay at the target's SASL_PLAINTEXT listener as the harness user.
fn use_target_over_sasl(setup: &mut RelaySetup, password: &str) {
    setup.extra_toml = format!(
        r#"
[target.properties]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "{SASL_USER}"
"sasl.password" = "{password}"
"#
    );
    setup.target_bootstrap = clusters().target.sasl_bootstrap.clone();
}

#[test]
fn check_passes_on_a_good_config_over_sasl_plain() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "check-ok", 2);
    use_target_over_sasl(&mut setup, SASL_PASSWORD);
    let (ok, out) = check(&setup.config_file());
    assert!(ok, "check failed on a good config:\n{out}");
    assert!(out.contains("check passed"), "{out}");
    assert!(out.contains("may run transactions"), "{out}");
    assert!(
        !out.contains(SASL_PASSWORD),
        "the password leaked into check's output:\n{out}"
    );
}

#[test]
fn check_names_wrong_credentials_and_a_missing_topic_without_printing_the_secret() {
    let c = clusters();
    let mut setup = RelaySetup::new(c, "check-bad", 1);
    let secret = "definitely-wrong-password";
    use_target_over_sasl(&mut setup, secret);
    let toml = setup.toml().replace(
        &format!("topics = [\"{}\"]", setup.source_topic),
        "topics = [\"no-such-topic\"]",
    );
    let path = setup.dir.path().join("bad.toml");
    std::fs::write(&path, toml).expect("write config");
    let (ok, out) = check(&path);
    assert!(!ok, "check must fail:\n{out}");
    assert!(
        out.contains("source topic \"no-such-topic\" does not exist"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("problem  target: cannot reach")
                && l.to_lowercase().contains("authentication")),
        "the target problem must name the authentication failure:\n{out}"
    );
    assert!(
        !out.contains(secret),
        "the password leaked into check's output:\n{out}"
    );
}

#[test]
fn malformed_config_is_rejected_with_the_key_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("broken.toml");
    let toml = r#"
[source]
bootstrap_servers = "127.0.0.1:1"
topics = []
[target]
bootstrap_servers = "127.0.0.1:2"
transactional_id = "t"
[wal]
dir = "/nonexistent/wal"
[batch]
max_records = 0
"#;
    std::fs::write(&path, toml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-relay"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "config errors exit 2:\n{text}");
    assert!(
        text.contains("source.topics"),
        "the bad key must be named:\n{text}"
    );
    assert!(
        text.contains("batch.max_records"),
        "every problem is reported, not just the first:\n{text}"
    );
}
