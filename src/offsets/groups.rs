//! Consumer groups: their committed offsets on the source, translated
//! (`translate`) and committed to the same groups on the target.
//!
//! Invariants: a group with members on the target is never written (its
//! consumers own their offsets there); a target offset is never moved
//! backwards by the periodic sync (a consumer that already moved on the
//! target would read records twice), only `offsets translate --write
//! --force` may; a partition whose translation is not [`Translation::Exact`]
//! is left as it is and reported.
//!
//! Called by the periodic sync ([`sync_every`], a thread the pipeline starts
//! when `offsets.groups` names groups) and by `kafka-relay offsets translate`.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::translate::{translate, Translation};
use super::OffsetsError;
use crate::config::{Config, OffsetsConfig};
use crate::kafka::{self, Side};
use crate::record::TopicPartition;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One partition of a group: its source offset, the translation, what the
/// target group holds now, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub source: TopicPartition,
    pub source_offset: i64,
    pub target: TopicPartition,
    pub translation: Translation,
    pub target_offset_now: Option<i64>,
}

impl Row {
    /// The offset to commit on the target, if this row should move it:
    /// an exact translation, ahead of the target group's (or `force`).
    pub fn to_commit(&self, force: bool) -> Option<i64> {
        match self.translation {
            Translation::Exact(t) if force || self.target_offset_now.is_none_or(|now| now < t) => {
                Some(t)
            }
            _ => None,
        }
    }
}

/// The translation of each group's committed source offsets, per
/// partition the relay copies, in the order of `groups`. The map is read
/// once for all of them.
pub fn translate_groups(config: &Config, groups: &[String]) -> Result<Vec<Vec<Row>>, OffsetsError> {
    let offsets = map_config(config)?;
    let source = kafka::source_client(config);
    let target = kafka::target_client(config);
    let partitions = copied_partitions(config, &source)?;
    let committed = groups
        .iter()
        .map(|group| committed(&source, Side::Source, group, &partitions))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = Duration::from_millis(config.target.transaction_timeout_ms) + TIMEOUT;
    let translations = translate(
        &target,
        &offsets.map_topic,
        &config.relay_id(),
        &committed,
        limit,
    )?;
    groups
        .iter()
        .zip(committed)
        .zip(translations)
        .map(|((group, committed), translations)| {
            let target_partitions: Vec<TopicPartition> =
                committed.keys().map(|tp| target_of(config, tp)).collect();
            let now = self::committed(&target, Side::Target, group, &target_partitions)?;
            Ok(translations
                .into_iter()
                .map(|(tp, translation)| {
                    let target = target_of(config, &tp);
                    Row {
                        source_offset: committed.get(&tp).copied().unwrap_or_default(),
                        target_offset_now: now.get(&target).copied(),
                        source: tp,
                        target,
                        translation,
                    }
                })
                .collect())
        })
        .collect()
}

/// Commits the rows that should move to `group` on the target; refuses a
/// group with members there. Returns how many partitions moved.
pub fn write(
    config: &Config,
    group: &str,
    rows: &[Row],
    force: bool,
) -> Result<usize, OffsetsError> {
    let target = kafka::target_client(config);
    if let Some(members) = members(&target, group)? {
        return Err(OffsetsError::GroupActive {
            group: group.to_string(),
            members,
        });
    }
    let mut tpl = TopicPartitionList::new();
    for row in rows {
        if let Some(offset) = row.to_commit(force) {
            tpl.add_partition_offset(
                &row.target.topic,
                row.target.partition,
                Offset::Offset(offset),
            )
            .map_err(|e| call_error(Side::Target, "OffsetCommit", e))?;
        }
    }
    if tpl.count() == 0 {
        return Ok(0);
    }
    let consumer = group_client(&target, group)?;
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| call_error(Side::Target, "OffsetCommit", e))?;
    Ok(tpl.count())
}

/// What one round of the periodic sync did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub groups: usize,
    /// Partitions whose target offset moved.
    pub committed: usize,
    /// Groups left alone: members on the target.
    pub active: usize,
    /// Partitions not translated exactly (ahead, too old, unmapped).
    pub untranslated: usize,
}

/// One round: every source group matching `offsets.groups`.
pub fn sync_once(config: &Config) -> Result<Round, OffsetsError> {
    let offsets = map_config(config)?;
    let patterns: Vec<regex::Regex> = offsets
        .groups
        .iter()
        .filter_map(|g| crate::topics::key_pattern(g).ok())
        .collect();
    let source = kafka::source_client(config);
    let mut round = Round::default();
    let groups: Vec<String> = source_groups(&source)?
        .into_iter()
        .filter(|group| patterns.iter().any(|p| p.is_match(group)))
        .collect();
    if groups.is_empty() {
        return Ok(round);
    }
    round.groups = groups.len();
    for (group, rows) in groups.iter().zip(translate_groups(config, &groups)?) {
        round.untranslated += rows
            .iter()
            .filter(|r| !matches!(r.translation, Translation::Exact(_)))
            .count();
        match write(config, group, &rows, false) {
            Ok(n) => round.committed += n,
            Err(OffsetsError::GroupActive { .. }) => round.active += 1,
            Err(e) => return Err(e),
        }
        for row in rows
            .iter()
            .filter(|r| !matches!(r.translation, Translation::Exact(_)))
        {
            tracing::debug!(group, source = %row.source, offset = row.source_offset, translation = ?row.translation, "group offset not translated this round");
        }
    }
    Ok(round)
}

/// Stops the periodic sync when dropped.
pub struct GroupSync {
    _stop: mpsc::Sender<()>,
}

/// Starts the periodic sync on a thread of its own when `offsets.groups`
/// names any; it runs until the handle is dropped. A failed round is
/// logged and the next one tries again.
pub fn sync_every(config: &Config) -> std::io::Result<Option<GroupSync>> {
    let Some(offsets) = config.offsets.as_ref().filter(|o| !o.groups.is_empty()) else {
        return Ok(None);
    };
    let interval = Duration::from_secs(offsets.interval_secs);
    let config = config.clone();
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("group-sync".into())
        .spawn(move || {
            // Dropping the handle disconnects the channel: the run is over.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                match sync_once(&config) {
                    Ok(round) => tracing::info!(
                        groups = round.groups,
                        committed = round.committed,
                        active_on_target = round.active,
                        untranslated = round.untranslated,
                        "consumer group offsets translated to the target"
                    ),
                    Err(e) => tracing::warn!(error = %e, "consumer group offset translation failed; trying again next round"),
                }
            }
        })?;
    Ok(Some(GroupSync { _stop: stop }))
}

fn map_config(config: &Config) -> Result<&OffsetsConfig, OffsetsError> {
    config.offsets.as_ref().ok_or(OffsetsError::NoMap)
}

fn target_of(config: &Config, tp: &TopicPartition) -> TopicPartition {
    TopicPartition::new(config.target_topic_for(&tp.topic), tp.partition)
}

fn call_error(side: Side, call: &'static str, source: KafkaError) -> OffsetsError {
    OffsetsError::Request { side, call, source }
}

fn group_client(client: &ClientConfig, group: &str) -> Result<BaseConsumer, OffsetsError> {
    client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(OffsetsError::Client)
}

/// Every partition of the source topics the relay copies.
fn copied_partitions(
    config: &Config,
    source: &ClientConfig,
) -> Result<Vec<TopicPartition>, OffsetsError> {
    let admin = kafka::Admin::new(source).map_err(|e| OffsetsError::Admin(Side::Source, e))?;
    let topics = admin
        .topic_partitions()
        .map_err(|e| OffsetsError::Admin(Side::Source, e))?;
    Ok(topics
        .into_iter()
        .filter(|(t, _)| config.source.topics.selects(t))
        .flat_map(|(t, n)| (0..n).map(move |p| TopicPartition::new(t.clone(), p)))
        .collect())
}

/// The offsets `group` has committed on one side, for `partitions`
/// (partitions without one are left out).
fn committed(
    client: &ClientConfig,
    side: Side,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>, OffsetsError> {
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let consumer = group_client(client, group)?;
    let found = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| call_error(side, "OffsetFetch", e))?;
    Ok(found
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => {
                Some((TopicPartition::new(e.topic().to_string(), e.partition()), o))
            }
            _ => None,
        })
        .collect())
}

/// Every consumer group of the cluster.
fn source_groups(source: &ClientConfig) -> Result<Vec<String>, OffsetsError> {
    let consumer: BaseConsumer = source.create().map_err(OffsetsError::Client)?;
    let list = consumer
        .fetch_group_list(None, TIMEOUT)
        .map_err(|e| call_error(Side::Source, "ListGroups", e))?;
    Ok(list.groups().iter().map(|g| g.name().to_string()).collect())
}

/// How many members `group` has on the cluster; `None` for none.
fn members(client: &ClientConfig, group: &str) -> Result<Option<usize>, OffsetsError> {
    let consumer: BaseConsumer = client.create().map_err(OffsetsError::Client)?;
    let list = consumer
        .fetch_group_list(Some(group), TIMEOUT)
        .map_err(|e| call_error(Side::Target, "DescribeGroups", e))?;
    let n: usize = list
        .groups()
        .iter()
        .filter(|g| g.name() == group)
        .map(|g| g.members().len())
        .sum();
    Ok((n > 0).then_some(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(translation: Translation, now: Option<i64>) -> Row {
        Row {
            source: TopicPartition::new("orders".to_string(), 0),
            source_offset: 10,
            target: TopicPartition::new("orders".to_string(), 0),
            translation,
            target_offset_now: now,
        }
    }

    #[test]
    fn only_an_exact_translation_ahead_of_the_target_group_is_committed_unless_forced() {
        assert_eq!(row(Translation::Exact(7), None).to_commit(false), Some(7));
        assert_eq!(
            row(Translation::Exact(7), Some(5)).to_commit(false),
            Some(7)
        );
        assert_eq!(row(Translation::Exact(7), Some(7)).to_commit(false), None);
        assert_eq!(row(Translation::Exact(7), Some(9)).to_commit(false), None);
        assert_eq!(row(Translation::Exact(7), Some(9)).to_commit(true), Some(7));
        for t in [
            Translation::Ahead { copied_to: 3 },
            Translation::TooOld { oldest: 40 },
            Translation::Unmapped,
        ] {
            assert_eq!(row(t, None).to_commit(true), None);
        }
    }
}
