//! The admin HTTP endpoint (`[admin] listen`): what operators and their
//! tooling ask of a running relay.
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text exposition (see `metrics`) |
//! | `GET /healthz` | 200 `ok` while the relay's threads run; 503 once halted |
//! | `GET /readyz` | 200 once recovered and the target takes transactions; 503 with the reason while starting, in a target outage, or halted |
//! | `GET /status` | the per-partition picture as JSON (see `status`) |
//! | `POST /pause`, `POST /resume` | steer intake and shipping (see `control`); answer with the new `/status` |
//!
//! Started by `pipeline` once the WAL is open, before the (possibly long)
//! connection to the target, so a relay that waits for its target can be
//! watched; stopped when the run ends. It has no authentication: bind it to
//! loopback or a private interface. Reads of the WAL and the dead-letter
//! tree (sled) run on the blocking pool, never on the async executor.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::ops::control::{Control, Phase};
use crate::ops::metrics::Metrics;
use crate::ops::status::{self, LiveState, Status};
use crate::ops::Wals;
use crate::wal::WalDepth;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} (admin.listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the endpoint reads from and steers.
#[derive(Clone)]
pub struct Handles {
    pub relay: String,
    pub wals: Wals,
    pub control: Arc<Control>,
    pub metrics: Arc<Metrics>,
}

/// A running endpoint; dropping it stops it.
pub struct AdminServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` and serves until the returned server is dropped.
pub async fn start(addr: SocketAddr, handles: Handles) -> Result<AdminServer, AdminError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .with_state(handles);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%addr, "admin endpoint listening: /metrics /healthz /readyz /status, POST /pause /resume");
    Ok(AdminServer { addr, task })
}

fn unavailable(why: impl std::fmt::Display) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
}

async fn metrics(State(h): State<Handles>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let (mut depth, mut max_bytes, mut dead_letters) = (WalDepth::default(), 0, 0);
        let mut delivered = std::collections::BTreeMap::new();
        for wal in h.wals.all() {
            depth.merge(&wal.depth());
            max_bytes += wal.max_bytes();
            dead_letters += crate::dlq::DeadLetters::open(&wal).map_or(0, |d| d.len());
            match wal.delivered() {
                Ok(d) => delivered.extend(d),
                Err(e) => {
                    tracing::warn!(error = %e, "/metrics: last checkpoints unreadable from the WAL");
                }
            }
        }
        h.metrics.render(
            &depth,
            max_bytes,
            &delivered,
            dead_letters,
            &h.control,
            crate::now_ms(),
        )
    })
    .await;
    match rendered {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn healthz(State(h): State<Handles>) -> Response {
    match h.control.phase() {
        Phase::Halted(why) => unavailable(format!("halted: {why}")),
        _ => "ok\n".into_response(),
    }
}

async fn readyz(State(h): State<Handles>) -> Response {
    match h.control.readiness() {
        Ok(word) => format!("{word}\n").into_response(),
        Err(why) => unavailable(why),
    }
}

/// The live report: the WAL's picture plus what only the running relay knows.
pub fn live_status(h: &Handles) -> Result<Status, status::StatusError> {
    let control = &h.control;
    let state = match (control.phase(), control.outage_secs()) {
        (Phase::Starting(step), _) => format!("starting: {step}"),
        (Phase::Halted(why), _) => format!("halted: {why}"),
        (Phase::Running, _) if control.is_paused() => "paused".to_string(),
        (Phase::Running, Some(_)) => "target outage".to_string(),
        (Phase::Running, None) => "running".to_string(),
    };
    let live = LiveState {
        state,
        paused: control.is_paused(),
        target_outage_secs: control.outage_secs(),
        lag: h.metrics.lag(),
    };
    status::collect(
        &h.relay,
        h.wals.dir(),
        &h.wals.all(),
        Some(live),
        crate::now_ms(),
    )
}

async fn status_response(h: Handles) -> Response {
    match tokio::task::spawn_blocking(move || live_status(&h)).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => unavailable(e),
        Err(e) => unavailable(e),
    }
}

async fn status(State(h): State<Handles>) -> Response {
    status_response(h).await
}

async fn pause(State(h): State<Handles>) -> Response {
    h.control.pause("admin endpoint");
    status_response(h).await
}

async fn resume(State(h): State<Handles>) -> Response {
    h.control.resume("admin endpoint");
    status_response(h).await
}
