//! `kafka-relay status`, `pause` and `resume`.
//!
//! `status` asks the running relay through its admin endpoint; when nothing
//! answers there (the relay is stopped, or has no `[admin] listen`), it
//! opens the WAL directory and reports the same per-partition picture from
//! it (`status::collect`), without changing it. A WAL that is locked while
//! no endpoint answers belongs to a relay running without `[admin]`: that
//! is said plainly rather than guessed around.
//!
//! `pause` and `resume` need the endpoint: they steer a running relay.

use super::admin_client::{AdminCallError, Endpoint};
use super::Failure;
use crate::config::Config;
use crate::ops::status::{self, Status};
use crate::wal::{Wal, WalError};

#[derive(Clone, Copy)]
pub enum Steer {
    Pause,
    Resume,
}

pub async fn status(config: Config, json: bool) -> Result<(), Failure> {
    let report = tokio::task::spawn_blocking(move || collect(&config))
        .await
        .map_err(Failure::runtime)??;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Failure::runtime)?
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn collect(config: &Config) -> Result<Status, Failure> {
    let unreachable = match Endpoint::of(config) {
        Some(endpoint) => match endpoint.call("GET", "/status") {
            Ok(report) => return Ok(report),
            Err(AdminCallError::Unreachable { .. }) => Some(endpoint.addr),
            Err(e) => return Err(Failure::runtime(e)),
        },
        None => None,
    };
    let mut wals = Vec::new();
    let dirs = match super::unit_wal_dirs(config)? {
        Some(units) => units,
        None => vec![config.wal.dir.clone()],
    };
    for dir in dirs {
        let wal = Wal::open_existing_with_key(&dir, config.wal_options(), config.wal_key()).map_err(|e| match (e, unreachable) {
            (WalError::Locked { .. }, Some(addr)) => Failure::runtime(format!(
                "the WAL at {} is in use by a running relay, but nothing answers at {addr} (admin.listen): is the relay still starting?",
                dir.display()
            )),
            (WalError::Locked { .. }, None) => Failure::runtime(format!(
                "the WAL at {} is in use by a running relay without an admin endpoint: set [admin] listen to see its status while it runs",
                dir.display()
            )),
            (e, _) => Failure::runtime(e),
        })?;
        wals.push(wal);
    }
    status::collect(
        &config.relay_id(),
        &config.wal.dir,
        &wals,
        None,
        crate::now_ms(),
    )
    .map_err(Failure::runtime)
}

pub async fn steer(config: Config, how: Steer) -> Result<(), Failure> {
    let verb = match how {
        Steer::Pause => "pause",
        Steer::Resume => "resume",
    };
    let Some(endpoint) = Endpoint::of(&config) else {
        return Err(Failure::runtime(format!(
            "{verb} steers a running relay through its admin endpoint: set [admin] listen in the configuration"
        )));
    };
    let path = format!("/{verb}");
    let report = tokio::task::spawn_blocking(move || endpoint.call("POST", &path))
        .await
        .map_err(Failure::runtime)?
        .map_err(Failure::runtime)?;
    println!(
        "relay {}: {} (WAL {} batches, {} records)",
        report.relay, report.state, report.wal.batches, report.wal.records
    );
    Ok(())
}
