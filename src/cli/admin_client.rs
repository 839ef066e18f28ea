//! The command line's side of the admin endpoint: `status`, `pause` and
//! `resume` ask the running relay at `[admin] listen` over HTTP.
//!
//! Blocking (ureq); callers run it inside `spawn_blocking`.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ops::status::Status;

/// How the running relay answered, or why it could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    /// Nothing listens there: the relay is not running (or has no endpoint).
    #[error("no relay answers at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the relay at {addr} answered {status}: {body}")]
    Refused {
        addr: SocketAddr,
        status: u16,
        body: String,
    },
    #[error("the relay at {addr} sent an unreadable status: {reason}")]
    BadAnswer { addr: SocketAddr, reason: String },
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /status`, or `POST /pause` / `POST /resume` (both answer with the
/// status after the change); with `token`, as a bearer token.
pub fn call(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> Result<Status, AdminCallError> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build(),
    );
    let url = format!("http://{addr}{path}");
    let bearer = token.map(|t| format!("Bearer {t}"));
    let sent = match (method, &bearer) {
        ("POST", Some(b)) => agent.post(&url).header("Authorization", b).send_empty(),
        ("POST", None) => agent.post(&url).send_empty(),
        (_, Some(b)) => agent.get(&url).header("Authorization", b).call(),
        (_, None) => agent.get(&url).call(),
    };
    let mut response = sent.map_err(|e| AdminCallError::Unreachable {
        addr,
        reason: e.to_string(),
    })?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| AdminCallError::BadAnswer {
            addr,
            reason: e.to_string(),
        })?;
    if status != 200 {
        return Err(AdminCallError::Refused {
            addr,
            status,
            body: body.trim().to_string(),
        });
    }
    serde_json::from_str(&body).map_err(|e| AdminCallError::BadAnswer {
        addr,
        reason: e.to_string(),
    })
}
