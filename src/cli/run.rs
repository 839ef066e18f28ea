//! `kafka-relay run`: the relay in the foreground until a signal; one
//! instance of it when the configuration has `[scale]`.

use super::{shutdown_signal, Failure};
use crate::config::Config;
use crate::{pipeline, scale};

pub async fn run(config: Config, instance: Option<String>) -> Result<(), Failure> {
    tracing::info!(config = %config.redacted_summary(), "starting");
    match config.scale.clone() {
        None => {
            if instance.is_some() {
                tracing::warn!("--instance is used only with [scale]; ignored");
            }
            let check = config.clone();
            tokio::task::spawn_blocking(move || scale::refuse_if_scaled_out(&check))
                .await
                .map_err(Failure::runtime)?
                .map_err(Failure::runtime)?;
            pipeline::run(config, shutdown_signal())
                .await
                .map_err(Failure::runtime)?;
        }
        Some(s) => {
            let instance = scale::instance_name(instance).map_err(Failure::runtime)?;
            scale::run(config, s, instance, shutdown_signal())
                .await
                .map_err(Failure::runtime)?;
        }
    }
    Ok(())
}
