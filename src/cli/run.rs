//! `kafka-relay run`: the relay in the foreground until a signal.

use super::{shutdown_signal, Failure};
use crate::config::Config;
use crate::pipeline;

pub async fn run(config: Config) -> Result<(), Failure> {
    tracing::info!(config = %config.redacted_summary(), "starting");
    pipeline::run(config, shutdown_signal())
        .await
        .map_err(Failure::runtime)?;
    Ok(())
}
