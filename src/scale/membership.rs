//! Membership: which units this instance owns, decided by Kafka's own
//! consumer-group protocol on the source cluster.
//!
//! The units topic (`scale.units_topic`) has one partition per unit and
//! never holds a record: it exists so that the group coordinator can hand
//! its partitions out. Each instance subscribes to it in the group
//! `<source group>.units`, with `cooperative-sticky` assignment (a
//! rebalance moves only the units it must) and static membership: the
//! instance name is its `group.instance.id`, so an instance restarted
//! within `scale.session_timeout_ms` gets its units back without a
//! rebalance.
//!
//! The poll loop runs on a thread of its own (librdkafka calls the
//! rebalance callbacks from `poll`) and sends [`Event`]s. A revocation
//! waits for the supervisor's answer, so the units' pipelines finish
//! their open transaction before the group hands the units on; a new
//! owner fences whatever did not finish in time.
//!
//! Called by `scale` only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{Config, ScaleConfig};
use crate::kafka::source_client;

/// How long a revocation waits for the units' pipelines to stop; past it
/// the units go on, and their new owner fences what is left.
const REVOKE_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// What the group decided, for the supervisor.
#[derive(Debug)]
pub enum Event {
    /// These units are this instance's now.
    Assigned(Vec<u32>),
    /// These units are no longer this instance's (revoked, or lost when
    /// the instance was out of touch with the group); answer on `done`
    /// once their pipelines stopped.
    Revoked {
        units: Vec<u32>,
        lost: bool,
        done: SyncSender<()>,
    },
    /// The membership ended for good (another process took this
    /// instance's name, or the consumer failed fatally).
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("cannot create the group consumer for the units: {0}")]
    Client(#[source] KafkaError),
    #[error("cannot subscribe to the units topic {topic}: {source}")]
    Subscribe {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error("cannot start the group membership thread: {0}")]
    Thread(#[source] std::io::Error),
}

struct Rebalancer {
    events: UnboundedSender<Event>,
}

impl ClientContext for Rebalancer {}

impl ConsumerContext for Rebalancer {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let units = units_of(list);
            if units.is_empty() {
                return;
            }
            let (done, wait) = sync_channel(1);
            let lost = consumer.assignment_lost();
            if self
                .events
                .send(Event::Revoked { units, lost, done })
                .is_ok()
                && matches!(
                    wait.recv_timeout(REVOKE_WAIT),
                    Err(RecvTimeoutError::Timeout)
                )
            {
                tracing::warn!(
                    "revoked units still stopping after {REVOKE_WAIT:?}; handing them on: their new owner fences them"
                );
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let units = units_of(list);
                if !units.is_empty() {
                    let _ = self.events.send(Event::Assigned(units));
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "units rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn units_of(list: &TopicPartitionList) -> Vec<u32> {
    list.elements()
        .iter()
        .filter_map(|e| u32::try_from(e.partition()).ok())
        .collect()
}

/// The running membership; [`Membership::leave`] ends it.
pub struct Membership {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    /// Joins the units group as `instance`; events go to `events`.
    pub fn join(
        config: &Config,
        scale: &ScaleConfig,
        instance: &str,
        events: UnboundedSender<Event>,
    ) -> Result<Membership, MembershipError> {
        let consumer: BaseConsumer<Rebalancer> = source_client(config)
            .set("group.id", group_id(config))
            .set("group.instance.id", instance)
            .set("client.id", format!("kafka-relay-{instance}"))
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", scale.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (scale.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create_with_context(Rebalancer {
                events: events.clone(),
            })
            .map_err(MembershipError::Client)?;
        consumer
            .subscribe(&[&scale.units_topic])
            .map_err(|source| MembershipError::Subscribe {
                topic: scale.units_topic.clone(),
                source,
            })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("units-group".to_string())
            .spawn(move || poll(&consumer, &flag, &events))
            .map_err(MembershipError::Thread)?;
        Ok(Membership {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling and closes the consumer. Blocking: call off the executor.
    pub fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The group the instances of a relay share its units in.
pub fn group_id(config: &Config) -> String {
    format!("{}.units", config.group_id())
}

fn poll(consumer: &BaseConsumer<Rebalancer>, stop: &AtomicBool, events: &UnboundedSender<Event>) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL) {
            None | Some(Ok(_)) => {}
            Some(Err(e)) => {
                let fatal = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::FencedInstanceId | RDKafkaErrorCode::Fatal)
                );
                if fatal {
                    let why = match e.rdkafka_error_code() {
                        Some(RDKafkaErrorCode::FencedInstanceId) => format!(
                            "another process joined the units group with this instance's name: {e}; give each instance its own --instance"
                        ),
                        _ => format!("the units group consumer failed: {e}"),
                    };
                    let _ = events.send(Event::Failed(why));
                    return;
                }
                tracing::warn!(error = %e, "units group consumer");
            }
        }
    }
    // Dropping the consumer closes it; the revocation it runs waits for
    // the supervisor only if it still listens.
}
