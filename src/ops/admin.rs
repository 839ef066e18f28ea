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
//! watched; stopped when the run ends.
//!
//! Access ([`Access`]): with `admin.token` (or `token_file`) set, every
//! request needs `Authorization: Bearer <token>` except a GET of one of
//! `admin.open_paths` (by default `/metrics`, `/healthz`, `/readyz`, what
//! probes and scrapers need); `POST /pause` and `/resume` always need it.
//! Without a token nothing is checked, and the relay warns at start if it
//! listens beyond loopback. Tokens are compared by their SHA-256 digests,
//! so the comparison's time says nothing about the token. With
//! `admin.tls_cert_file` and `tls_key_file` it serves HTTPS (OpenSSL, the
//! library librdkafka already links), so the token never crosses a network
//! in clear.
//!
//! Reads of the WAL and the dead-letter tree (sled) run on the blocking
//! pool, never on the async executor.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use axum_server::tls_openssl::{OpenSSLAcceptor, OpenSSLConfig};

use crate::config::{AdminConfig, AdminTls};
use crate::ops::control::{Control, Phase};
use crate::ops::metrics::Metrics;
use crate::ops::status::{self, LiveState, Status};
use crate::ops::Wals;
use crate::wal::WalDepth;
use sha2::Digest as _;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on {addr} (admin.listen): {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot serve HTTPS with admin.tls_cert_file {cert} and admin.tls_key_file {key}: {reason}"
    )]
    Tls {
        cert: String,
        key: String,
        reason: String,
    },
}

/// Who may call what (`[admin] token`, `open_paths`).
#[derive(Clone, Default)]
pub struct Access {
    /// SHA-256 of the token; `None`: every request is served.
    token_digest: Option<[u8; 32]>,
    open_paths: Vec<String>,
}

impl Access {
    pub fn of(config: &AdminConfig) -> Access {
        Access {
            token_digest: config.token.as_ref().map(|t| digest(t.expose())),
            open_paths: config.open_paths.clone(),
        }
    }

    /// Whether a request for `path` with this `Authorization` header may be served.
    pub fn allows(&self, method: &Method, path: &str, authorization: Option<&str>) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        if method == Method::GET && self.open_paths.iter().any(|p| p == path) {
            return true;
        }
        authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|given| digest(given.trim()) == *expected)
    }
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

async fn guard(State(access): State<Access>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if access.allows(request.method(), request.uri().path(), authorization) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this route needs Authorization: Bearer <admin.token>\n",
        )
            .into_response()
    }
}

/// What the endpoint reads from and steers.
#[derive(Clone)]
pub struct Handles {
    pub relay: String,
    pub access: Access,
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
/// With `tls`, serves HTTPS with its certificate and key.
pub async fn start(
    addr: SocketAddr,
    tls: Option<&AdminTls>,
    handles: Handles,
) -> Result<AdminServer, AdminError> {
    let acceptor = match tls {
        Some(t) => Some(
            OpenSSLConfig::from_pem_file(&t.cert_file, &t.key_file)
                .map(OpenSSLAcceptor::new)
                .map_err(|e| AdminError::Tls {
                    cert: t.cert_file.display().to_string(),
                    key: t.key_file.display().to_string(),
                    reason: e.to_string(),
                })?,
        ),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| AdminError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let open_to_all = handles.access.token_digest.is_none();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .layer(middleware::from_fn_with_state(
            handles.access.clone(),
            guard,
        ))
        .with_state(handles);
    let task = match acceptor {
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "admin endpoint stopped");
            }
        }),
        Some(acceptor) => {
            let listener = listener
                .into_std()
                .map_err(|source| AdminError::Bind { addr, source })?;
            let server = axum_server::from_tcp(listener)
                .map_err(|source| AdminError::Bind { addr, source })?
                .acceptor(acceptor);
            tokio::spawn(async move {
                if let Err(e) = server.serve(app.into_make_service()).await {
                    tracing::error!(error = %e, "admin endpoint stopped");
                }
            })
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "admin endpoint listening: /metrics /healthz /readyz /status, POST /pause /resume");
    if !addr.ip().is_loopback() {
        if open_to_all {
            tracing::warn!(%addr, "the admin endpoint listens beyond loopback without admin.token: anyone who reaches it can pause and resume the relay");
        } else if tls.is_none() {
            tracing::warn!(%addr, "the admin endpoint listens beyond loopback over plain HTTP: admin.token crosses the network in clear (set admin.tls_cert_file and tls_key_file)");
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::ops::Shared;

    fn access(token: Option<&str>) -> Access {
        Access::of(&AdminConfig {
            token: token.map(|t| Secret(t.to_string())),
            ..AdminConfig::default()
        })
    }

    #[test]
    fn without_a_token_everything_is_served() {
        let a = access(None);
        assert!(a.allows(&Method::POST, "/pause", None));
        assert!(a.allows(&Method::GET, "/status", None));
    }

    #[test]
    fn with_a_token_only_probes_and_scrapes_go_without_it() {
        let a = access(Some("s3cret"));
        for path in ["/metrics", "/healthz", "/readyz"] {
            assert!(a.allows(&Method::GET, path, None), "{path}");
        }
        assert!(!a.allows(&Method::GET, "/status", None));
        assert!(!a.allows(&Method::POST, "/pause", None));
        // An open path is open to GET only.
        assert!(!a.allows(&Method::POST, "/metrics", None));
        assert!(!a.allows(&Method::POST, "/resume", Some("Bearer nope")));
        assert!(!a.allows(&Method::POST, "/resume", Some("s3cret")));
        assert!(a.allows(&Method::POST, "/resume", Some("Bearer s3cret")));
        assert!(a.allows(&Method::GET, "/status", Some("Bearer s3cret")));
    }

    #[test]
    fn the_endpoint_refuses_to_pause_without_the_token() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        let shared = Shared::new(false);
        let handles = Handles {
            relay: "r".to_string(),
            access: access(Some("s3cret")),
            wals: Wals::new(dir.path()),
            control: shared.control.clone(),
            metrics: shared.metrics.clone(),
        };
        let server = runtime
            .block_on(start(([127, 0, 0, 1], 0).into(), None, handles))
            .expect("endpoint");
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .build(),
        );
        let url = |path: &str| format!("http://{}{path}", server.addr);
        let post = |path: &str, auth: Option<&str>| {
            let request = agent.post(&url(path));
            let sent = match auth {
                Some(a) => request.header("Authorization", a).send_empty(),
                None => request.send_empty(),
            };
            sent.expect("answer").status().as_u16()
        };
        assert_eq!(post("/pause", None), 401);
        assert_eq!(post("/pause", Some("Bearer wrong")), 401);
        assert!(!shared.control.is_paused(), "refused, yet paused");
        assert_eq!(post("/pause", Some("Bearer s3cret")), 200);
        assert!(shared.control.is_paused());
        let get = |path: &str| {
            agent
                .get(&url(path))
                .call()
                .expect("answer")
                .status()
                .as_u16()
        };
        assert_eq!(get("/healthz"), 200);
        assert_eq!(get("/metrics"), 200);
        assert_eq!(get("/status"), 401);
        drop(server);
    }
}
