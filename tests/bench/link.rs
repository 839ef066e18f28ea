//! The link between the contenders and the target cluster: loopback, or a
//! long one through the harness's fault proxy (`harness::proxy::Link`),
//! for the wide-area figures. Every contender runs next to the source and
//! crosses the same link to the target, so their figures compare.
//!
//! Written `loopback`, `<rtt>ms` or `<rtt>ms/<loss>%` (`150ms/1%`).

use std::time::Duration;

use crate::harness::proxy::{Faults, Link};
use crate::harness::Clusters;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinkSpec {
    Loopback,
    Wan { rtt_ms: u64, loss_pct: f64 },
}

impl LinkSpec {
    pub fn parse(s: &str) -> Option<LinkSpec> {
        if s == "loopback" {
            return Some(LinkSpec::Loopback);
        }
        let (rtt, loss) = match s.split_once('/') {
            Some((rtt, loss)) => (rtt, loss.strip_suffix('%')?.parse().ok()?),
            None => (s, 0.0),
        };
        let rtt_ms = rtt.strip_suffix("ms")?.parse().ok()?;
        (0.0..100.0).contains(&loss).then_some(LinkSpec::Wan {
            rtt_ms,
            loss_pct: loss,
        })
    }

    pub fn label(self) -> String {
        match self {
            LinkSpec::Loopback => "loopback".to_string(),
            LinkSpec::Wan {
                rtt_ms,
                loss_pct: 0.0,
            } => format!("{rtt_ms} ms RTT"),
            LinkSpec::Wan { rtt_ms, loss_pct } => format!("{rtt_ms} ms RTT, {loss_pct}% loss"),
        }
    }

    /// Puts the link in place on the target's proxy; returns the bootstrap
    /// the contenders use to reach the target.
    pub fn apply(self, c: &Clusters) -> &str {
        match self {
            LinkSpec::Loopback => {
                c.target.proxy.clear();
                &c.target.bootstrap
            }
            LinkSpec::Wan { rtt_ms, loss_pct } => {
                c.target.proxy.set(Faults {
                    link: Link {
                        one_way: Duration::from_millis(rtt_ms) / 2,
                        loss: loss_pct / 100.0,
                        ..Link::default()
                    },
                    ..Faults::default()
                });
                &c.target.proxied_bootstrap
            }
        }
    }
}
