//! Target topics: made like their source topics before anything is
//! shipped, and kept like them while the relay runs.
//!
//! Why: records keep their source timestamps, so a target topic with the
//! broker's default retention (7 days) deletes copied records older than
//! that right after they arrive; and `partitioning = "same"` needs at least
//! as many target partitions as the source topic has.
//!
//! With `target.create_topics = true` (the default), for every target topic
//! the relay writes records to:
//! - a missing one is created with the partition count of its source topic
//!   (the largest, when several go into one `target.topic`), the brokers'
//!   default replication factor and the source topic's configs;
//! - an existing one gets partitions added when `same` needs more;
//! - its configs are set as its source topic's for the keys the filter
//!   manages (`target.topic_configs_include` / `_exclude`), and kept as
//!   they are for the others.
//!
//! At start ([`Topics::prepare`]) and then every
//! `target.sync_topics_interval_secs` ([`Topics::sync_every`]). With
//! `create_topics = false` nothing on the target is changed: a target
//! topic too small for `same` stops the start, is logged at ERROR by a
//! sync, and a missing one is logged at WARN.
//!
//! Invariants:
//! - Only configs a source topic sets itself (DescribeConfigs source
//!   `DYNAMIC_TOPIC_CONFIG`) are copied: a broker default pinned as a topic
//!   override would stop following the target cluster's own defaults.
//! - AlterConfigs replaces a topic's whole set of dynamic configs (rdkafka
//!   0.39 has no incremental call), so a change sends the new full set:
//!   the target's values of unmanaged keys plus the source's values of
//!   managed ones. A managed key no source topic sets is removed. Nothing
//!   is sent when that set is what the target has. A manual change of an
//!   unmanaged key between our DescribeConfigs and AlterConfigs is undone
//!   (the window is one round trip, every sync).
//! - Partitions are only ever added, and only under `same`: under
//!   `key_hash`, more partitions would move keys to other partitions.
//! - The checkpoint and DLQ topics are not copied topics: never touched here.
//!
//! Split: `plan` is pure (topics as they are -> actions, or a mismatch),
//! unit-tested in `tests`; [`Topics`] asks both clusters through `kafka`'s
//! blocking calls and applies the plan.
//!
//! Called by `pipeline`: [`Topics::prepare`] after the shipper connected
//! and before the source starts, then [`Topics::sync_every`] on a thread of
//! its own until the run ends.

mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{ConfigEntry, ConfigSource};
use rdkafka::types::RDKafkaErrorCode;

pub use plan::{key_pattern, Mismatch, TooFewPartitions};
use plan::{plan, Action, ConfigFilter, Note, Plan, Rules, TopicState};

use crate::config::{Config, TopicSelection};
use crate::kafka::{self, Admin, AdminRequestError};

const PERMISSIONS: &str = "managing target topics (target.create_topics = true) needs DescribeConfigs on the source topics and Describe, Create, Alter and AlterConfigs on the target topics; target.create_topics = false leaves them to you";

#[derive(Debug, thiserror::Error)]
pub enum TopicsError {
    #[error("target.topic_configs_include / target.topic_configs_exclude: {0}")]
    Filter(#[from] regex::Error),
    #[error("cannot read the source topics: {0} ({PERMISSIONS})")]
    Source(#[source] AdminRequestError),
    #[error("cannot read the target topics: {0} ({PERMISSIONS})")]
    Target(#[source] AdminRequestError),
    /// The call names the topic.
    #[error("cannot change a target topic: {0} ({PERMISSIONS}; a config the target cluster refuses can be left out with target.topic_configs_exclude)")]
    Apply(#[source] AdminRequestError),
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    #[error("cannot start the target topic sync thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Both clusters' admin clients and what the configuration asks of target topics.
pub struct Topics {
    source: Admin,
    target: Admin,
    selection: TopicSelection,
    /// `target.topic`: every source topic goes there; `None` keeps the name.
    target_topic: Option<String>,
    rules: Rules,
}

/// Stops the periodic sync when dropped; a sync under way finishes its
/// current call first, on its own thread.
pub struct SyncHandle {
    _stop: mpsc::Sender<()>,
}

impl Topics {
    /// Admin clients for both clusters (blocking: librdkafka starts its threads).
    pub fn new(config: &Config) -> Result<Topics, TopicsError> {
        let target = &config.target;
        Ok(Topics {
            source: Admin::new(&kafka::client_config(&config.source_client_config()))
                .map_err(TopicsError::Source)?,
            target: Admin::new(&kafka::client_config(&config.target_client_config()))
                .map_err(TopicsError::Target)?,
            selection: config.source.topics.clone(),
            target_topic: target.topic.clone(),
            rules: Rules {
                create: target.create_topics,
                partitioning: target.partitioning,
                filter: ConfigFilter::new(
                    target.topic_configs_include.as_deref(),
                    &target.topic_configs_exclude,
                )?,
            },
        })
    }

    /// Start-up (blocking): the target topics as the plan wants them, or an
    /// error. Nothing has been shipped yet, so a failure stops the start.
    pub fn prepare(&self) -> Result<(), TopicsError> {
        let plan = self.plan()?;
        tell(&plan.notes);
        for action in &plan.actions {
            self.apply(action)?;
        }
        tracing::info!(
            changed = plan.actions.len(),
            unchanged = plan.in_line,
            create_topics = self.rules.create,
            "target topics checked"
        );
        Ok(())
    }

    /// Syncs every `secs` seconds on a thread of its own until the handle
    /// is dropped; `None` for 0 (only at start).
    pub fn sync_every(self: Arc<Self>, secs: u64) -> Result<Option<SyncHandle>, TopicsError> {
        if secs == 0 {
            return Ok(None);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("topic-sync".into())
            .spawn(move || {
                // Dropping the handle disconnects the channel: the run is over.
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(secs))
                {
                    self.sync();
                }
            })
            .map_err(TopicsError::Thread)?;
        Ok(Some(SyncHandle { _stop: stop }))
    }

    /// One periodic sync: every failure is logged, and the next sync tries again.
    fn sync(&self) {
        let plan = match self.plan() {
            Ok(plan) => plan,
            Err(TopicsError::Mismatch(mismatch)) => {
                for m in &mismatch.0 {
                    tracing::error!(topic = %m.topic, partitions = m.has, needs = m.needs, "{m}; records of the missing partitions cannot be shipped, and the next start stops here");
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "target topic sync failed; trying again at the next interval");
                return;
            }
        };
        tell(&plan.notes);
        for action in &plan.actions {
            if let Err(e) = self.apply(action) {
                if matches!(action, Action::AlterConfigs { .. }) {
                    tracing::warn!(error = %e, "target topic sync failed; trying again at the next interval");
                } else {
                    tracing::error!(error = %e, "a target topic the relay writes to is missing or lacks partitions; trying again at the next interval");
                }
            }
        }
        tracing::debug!(
            changed = plan.actions.len(),
            unchanged = plan.in_line,
            "target topics synced"
        );
    }

    fn target_of(&self, source_topic: &str) -> String {
        self.target_topic
            .clone()
            .unwrap_or_else(|| source_topic.to_string())
    }

    /// Asks both clusters and plans.
    fn plan(&self) -> Result<Plan, TopicsError> {
        // A selected topic that is gone is the source's business (a gap), not ours.
        let sources = self
            .read(&self.source, |t| self.selection.selects(t))
            .map_err(TopicsError::Source)?;
        let wanted: BTreeSet<String> = sources.keys().map(|t| self.target_of(t)).collect();
        let targets = self
            .read(&self.target, |t| wanted.contains(t))
            .map_err(TopicsError::Target)?;
        Ok(plan(
            &sources,
            |t| self.target_of(t),
            &targets,
            &self.rules,
        )?)
    }

    /// The topics of one cluster that `take` takes, as they are; their
    /// configs only when the relay may change them (empty otherwise).
    fn read(
        &self,
        admin: &Admin,
        take: impl Fn(&str) -> bool,
    ) -> Result<BTreeMap<String, TopicState>, AdminRequestError> {
        let partitions: BTreeMap<String, i32> = admin
            .topic_partitions()?
            .into_iter()
            .filter(|(t, _)| take(t))
            .collect();
        let names: Vec<&str> = partitions.keys().map(String::as_str).collect();
        let mut configs = if self.rules.create {
            admin.describe_topic_configs(&names)?
        } else {
            BTreeMap::new()
        };
        Ok(partitions
            .iter()
            .map(|(topic, partitions)| {
                let state = TopicState {
                    partitions: *partitions,
                    configs: own_configs(configs.remove(topic).unwrap_or_default()),
                };
                (topic.clone(), state)
            })
            .collect())
    }

    fn apply(&self, action: &Action) -> Result<(), TopicsError> {
        match action {
            Action::Create {
                topic,
                partitions,
                configs,
            } => match self.target.create_topic(topic, *partitions, configs) {
                Ok(()) => {
                    tracing::info!(topic, partitions, ?configs, "created target topic");
                }
                // Made by someone else since we looked: the next sync looks again.
                Err(e) if e.code() == Some(RDKafkaErrorCode::TopicAlreadyExists) => {
                    tracing::warn!(
                        topic,
                        "target topic was created meanwhile by someone else; the next sync checks its partitions and configs"
                    );
                }
                Err(e) => return Err(TopicsError::Apply(e)),
            },
            Action::AddPartitions { topic, from, to } => {
                self.target
                    .create_partitions(topic, *to)
                    .map_err(TopicsError::Apply)?;
                tracing::info!(
                    topic,
                    partitions = to,
                    from,
                    "added partitions to target topic"
                );
            }
            Action::AlterConfigs {
                topic,
                configs,
                changes,
            } => {
                self.target
                    .alter_topic_configs(topic, configs)
                    .map_err(TopicsError::Apply)?;
                let changes: Vec<String> = changes.iter().map(ToString::to_string).collect();
                tracing::info!(
                    topic,
                    changes = %changes.join("; "),
                    ?configs,
                    "changed target topic configs"
                );
            }
        }
        Ok(())
    }
}

/// The configs a topic sets itself: not the brokers' or the defaults.
fn own_configs(entries: Vec<ConfigEntry>) -> BTreeMap<String, String> {
    entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect()
}

fn tell(notes: &[Note]) {
    for note in notes {
        match note {
            Note::Missing { topic } => tracing::warn!(
                topic,
                "target topic does not exist and target.create_topics = false: the target refuses records for it until it is created"
            ),
            Note::Disagree { topic, key, values } => tracing::warn!(
                topic,
                key,
                ?values,
                "source topics written into this target topic disagree on a config; the target keeps its own value (exclude the key, or align the sources)"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
