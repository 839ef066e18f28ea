//! Integration tests against real Apache Kafka. One binary, so all tests share
//! the two clusters the harness starts (see `harness`).

mod cli_check;
mod crash;
mod dead_letters;
mod disk_full;
mod encryption;
mod gaps;
// Shared with tests/chaos, which uses parts (fault proxy, broker restarts) this binary does not.
#[allow(dead_code)]
mod harness;
mod offsets;
mod operations;
mod relay_exactly_once;
mod relay_options;
mod retry_policy;
mod scale;
mod security;
mod topics;
mod topology;
mod transactions;
mod verify;
#[path = "../common/wal_damage.rs"]
mod wal_damage;
mod wal_recovery;
