//! `kafka-relay config check`, run as the real binary: secrets from files
//! and the environment are applied and never printed; problems are named
//! with exit code 2. No Kafka: the command reaches no cluster.

use std::path::Path;
use std::process::Command;

fn config_check(config: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kafka-relay"));
    command.args(["config", "check", "--config"]).arg(config);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run kafka-relay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_check_prints_the_effective_config_with_every_secret_hidden() {
    let dir = tempfile::tempdir().expect("dir");
    let password = dir.path().join("source-password");
    std::fs::write(&password, "s0urce-pa55\n").expect("write");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[source]
bootstrap_servers = "src:9092"
topics = ["orders"]
password_file = "{}"
[source.properties]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "relay"
[target]
bootstrap_servers = "dst:9092"
transactional_id = "relay-1"
[target.properties]
"security.protocol" = "SASL_PLAINTEXT"
"sasl.mechanism" = "PLAIN"
"sasl.username" = "relay"
[wal]
dir = "{}"
[admin]
listen = "9644"
"#,
            password.display(),
            dir.path().join("wal").display()
        ),
    )
    .expect("write config");
    let (code, out, err) = config_check(
        &config,
        &[
            (
                "KAFKA_RELAY_TARGET__PROPERTIES__SASL_PASSWORD",
                "t4rget-pa55",
            ),
            ("KAFKA_RELAY_ADMIN__TOKEN", "adm1n-t0ken"),
            ("KAFKA_RELAY_BATCH__MAX_RECORDS", "321"),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for secret in ["s0urce-pa55", "t4rget-pa55", "adm1n-t0ken"] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "{secret} shown:\n{out}{err}"
        );
    }
    // The effective values: from the file, the environment and the defaults.
    for line in [
        r#""sasl.password" = "***""#,
        r#"token = "***""#,
        "max_records = 321",
        r#"listen = "127.0.0.1:9644""#,
        r#"checkpoint_topic = "__kafka_relay_checkpoints.relay-1""#,
        "max_backoff_ms = 30000",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    assert_eq!(
        out.matches(r#""sasl.password" = "***""#).count(),
        2,
        "{out}"
    );

    // A secret file that is not there: named, exit 2, nothing printed.
    std::fs::remove_file(&password).expect("remove");
    let (code, out, err) = config_check(&config, &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("source.password_file: cannot read"), "{err}");
    assert!(out.is_empty(), "{out}");
}
