//! Integration tests against real Apache Kafka. One binary, so all tests share
//! the two clusters the harness starts (see `harness`).

mod harness;
mod transactions;
