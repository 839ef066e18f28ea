//! The relay's admin endpoint seen from a test: a setup that serves it,
//! plain HTTP calls to it, and its `/metrics` parsed as Prometheus text.
//! Used by `tests/it` (operations) and `tests/chaos` (the WAL's growth
//! while the target is silent).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use super::relay::RelaySetup;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A relay setup whose binary serves the admin endpoint; returns its address.
pub fn with_admin(setup: &mut RelaySetup) -> String {
    let addr = format!("127.0.0.1:{}", free_port());
    setup.extra_toml += &format!("\n[admin]\nlisten = \"{addr}\"\n");
    addr
}

/// `(status code, body)` of an HTTP call to the admin endpoint; `None`
/// while nothing listens.
pub fn http(method: &str, url: &str) -> Option<(u16, String)> {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build(),
    );
    let response = match method {
        "POST" => agent.post(url).send_empty(),
        _ => agent.get(url).call(),
    };
    let mut response = response.ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    Some((response.status().as_u16(), body))
}

/// One sample of a scrape: series name (with `_total` for counters), labels, value.
pub type Sample = (String, BTreeMap<String, String>, f64);

/// Every sample of a scrape, parsed as Prometheus text: series name
/// (with `_total` for counters) and labels -> value.
pub fn scrape(admin: &str) -> Vec<Sample> {
    let (code, text) = http("GET", &format!("http://{admin}/metrics")).expect("scrape");
    assert_eq!(code, 200, "{text}");
    parse(&text)
}

/// As [`scrape`], but `None` while nothing answers (a relay starting up or
/// just killed) instead of a panic.
pub fn try_scrape(admin: &str) -> Option<Vec<Sample>> {
    match http("GET", &format!("http://{admin}/metrics"))? {
        (200, text) => Some(parse(&text)),
        _ => None,
    }
}

fn parse(text: &str) -> Vec<Sample> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
    parsed
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                other => panic!("unexpected sample type {other:?} for {}", s.metric),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (s.metric, labels, value)
        })
        .collect()
}

/// Sum of a metric's samples whose labels include `filter`.
pub fn sum(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    filter: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && filter
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}
