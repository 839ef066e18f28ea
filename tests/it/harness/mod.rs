//! The one test harness every integration test shares: two real Apache Kafka
//! clusters (*source* and *target*), started once per test run on first use
//! and stopped when the run ends, plus the clients, the relay runner and the
//! independent exactly-once checker the tests use.

pub mod admin;
pub mod certs;
pub mod checker;
pub mod clients;
pub mod kafka;
pub mod proxy;
pub mod relay;

use std::sync::OnceLock;

pub use kafka::KafkaCluster;

pub struct Clusters {
    pub source: KafkaCluster,
    pub target: KafkaCluster,
}

/// The run's clusters, started in parallel on first call.
pub fn clusters() -> &'static Clusters {
    static CLUSTERS: OnceLock<Clusters> = OnceLock::new();
    CLUSTERS.get_or_init(|| {
        let source = std::thread::spawn(|| KafkaCluster::start("source"));
        let target = KafkaCluster::start("target");
        let source = match source.join() {
            Ok(c) => c,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Clusters { source, target }
    })
}

/// The seed for a randomised test: `KAFKA_RELAY_TEST_SEED` to replay one,
/// else fresh. Printed past the output capture so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("KAFKA_RELAY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    kafka::log(format!(
        "{test}: seed {seed} (replay with KAFKA_RELAY_TEST_SEED={seed})"
    ));
    seed
}
