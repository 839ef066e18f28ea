//! The one test harness every integration test shares: two real Apache Kafka
//! clusters (*source* and *target*), started once per test run on first use
//! and stopped when the run ends, plus the clients tests use to drive them.

pub mod clients;
pub mod kafka;

use std::sync::OnceLock;

pub use kafka::{KafkaCluster, SASL_PASSWORD, SASL_USER};

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
