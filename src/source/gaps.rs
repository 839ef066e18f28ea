//! Finding the source positions the relay cannot resume from, and applying
//! `source.on_gap` to them.
//!
//! The consumer runs with `auto.offset.reset = error`: librdkafka never
//! moves a position by itself, it reports `AutoOffsetReset` and stops
//! fetching that partition. Its error does not say which partition (rust-
//! rdkafka drops that), so [`GapFinder::check`] compares the relay's own
//! read position of every assigned partition with the source's watermarks:
//! - below the log start: the source deleted `[position, log start)` before
//!   the relay read it (retention, `DeleteRecords`): a [`Gap`];
//! - above the log end: the log was recreated or truncated, and its offsets
//!   are being reused: always an error, whatever the policy, since the
//!   relay cannot tell new records from copied ones;
//! - the partition is not in the source's metadata any more: a gap of
//!   unknown end (`PartitionGone`).
//!
//! Invariants:
//! - Nothing is skipped without the policy saying `skip`, and a skipped gap
//!   is in the gap store (fsync'd) before the consumer is moved past it, so
//!   no record after a gap can reach the WAL before the gap is on disk.
//! - With `fail`, nothing is written: a restart finds the same gap again.
//! - Only a partition with a gap is assigned anew; the others keep their
//!   fetch positions.
//!
//! Not found: a log truncated or recreated and written past the relay's
//! position again before the check looks (its end is then above the
//! position). librdkafka stopped that partition, so it copies nothing and
//! its lag grows; telling it apart needs topic ids, which the client does
//! not expose.
//!
//! Called by the source thread (`Source::on_error`) and by start-up
//! (`pipeline`, for partitions known from checkpoints that are gone).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::Offset;

use super::assignment::Assignment;
use super::SourceError;
use crate::config::OnGap;
use crate::gap::{Gap, GapCause, Gaps};
use crate::ops::metrics::Metrics;
use crate::record::TopicPartition;

/// Short: the poll thread waits on these calls, and a source that does
/// not answer is asked again a second later.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What became of one partition in a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The relay's position is within the source's log.
    InRange,
    Gap(Gap),
}

/// Classifies one position against the source's `[low, high]`: pure, so
/// every case is unit-tested.
pub fn classify(
    tp: &TopicPartition,
    next: i64,
    low: i64,
    high: i64,
    now_ms: i64,
) -> Result<Finding, SourceError> {
    if next < low {
        Ok(Finding::Gap(Gap {
            tp: tp.clone(),
            from: next,
            to: Some(low),
            cause: GapCause::DeletedAtSource,
            detected_ms: now_ms,
        }))
    } else if next > high {
        Err(SourceError::LogEndBehind {
            tp: tp.clone(),
            next,
            end: high,
        })
    } else {
        Ok(Finding::InRange)
    }
}

/// Applies `source.on_gap`: with `fail`, the error naming the gap; with
/// `skip`, the gap stored durably, logged and counted.
pub struct GapPolicy {
    pub on_gap: OnGap,
    pub store: Gaps,
    pub metrics: std::sync::Arc<Metrics>,
}

impl GapPolicy {
    /// `Ok` once the gap is recorded (skip); the error to stop with (fail).
    pub fn apply(&self, gap: Gap) -> Result<(), SourceError> {
        match self.on_gap {
            OnGap::Fail => {
                tracing::error!(
                    partition = %gap.tp,
                    from = gap.from,
                    to = ?gap.to,
                    cause = gap.cause.label(),
                    "the source no longer has records the relay has not copied; source.on_gap = \"fail\": stopping, nothing skipped"
                );
                Err(SourceError::Gap(gap))
            }
            OnGap::Skip => {
                if let Some(recorded) = self.store.get(&gap.tp, gap.from)? {
                    // Found again after a restart that read nothing past it.
                    match (recorded.to, gap.to) {
                        // Retention moved on meanwhile: the gap grew.
                        (Some(old), Some(new)) if new > old => {
                            let grown = Gap {
                                detected_ms: recorded.detected_ms,
                                ..gap
                            };
                            self.store.record(&grown)?;
                            self.metrics.source_lost(&grown.tp, (new - old) as u64);
                            tracing::error!(
                                partition = %grown.tp,
                                from = grown.from,
                                was_to = old,
                                to = new,
                                "source gap found again, grown: more records lost before the relay copied them; recorded"
                            );
                        }
                        _ => {
                            tracing::warn!(partition = %gap.tp, from = gap.from, "source gap found again; it is recorded already")
                        }
                    }
                    return Ok(());
                }
                self.store.record(&gap)?;
                self.metrics.source_gap(&gap);
                tracing::error!(
                    partition = %gap.tp,
                    from = gap.from,
                    to = ?gap.to,
                    offsets = ?gap.offsets(),
                    cause = gap.cause.label(),
                    "source records lost before the relay copied them; source.on_gap = \"skip\": gap recorded, reading on"
                );
                Ok(())
            }
        }
    }
}

/// Whether `tp` is in the source's metadata. `Err` only when the metadata
/// cannot be read at all.
pub fn partition_exists<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tp: &TopicPartition,
) -> Result<bool, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(&tp.topic), CALL_TIMEOUT)?;
    Ok(metadata.topics().iter().any(|t| {
        t.name() == tp.topic
            && t.error().is_none()
            && t.partitions().iter().any(|p| p.id() == tp.partition)
    }))
}

/// Why a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// librdkafka reported a position out of range: look at the partitions
    /// it stopped fetching.
    OutOfRange,
    /// The source does not know a topic or partition: look for partitions
    /// that are gone.
    Unknown,
}

impl Assignment {
    /// Checks the assigned partitions against the source and applies the
    /// policy to what it finds.
    ///
    /// Only a partition that librdkafka has stopped fetching (`stopped`,
    /// from its statistics) is compared with the source's log: one it
    /// still fetches may hold records in its queue that the source has
    /// deleted since, and those are no gap. A stopped partition is assigned
    /// anew (a stopped partition cannot be sought): past a skipped gap at
    /// the log start, else at its own position. A gone one is unassigned.
    /// `pending` gives the next offset of a partition's batch still being
    /// filled. A partition assigned anew is not paused: the caller pauses
    /// it again if it must.
    pub fn check<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        policy: &GapPolicy,
        trigger: Trigger,
        pending: impl Fn(&TopicPartition) -> Option<i64>,
        stopped: impl Fn(&TopicPartition) -> bool,
    ) -> Result<usize, SourceError> {
        let mut found = 0;
        let partitions: Vec<TopicPartition> = self.partitions().cloned().collect();
        for tp in partitions {
            if let Some(p) = pending(&tp) {
                self.read_up_to(&tp, p);
            }
            let Some(position) = self.position(&tp) else {
                continue;
            };
            if trigger == Trigger::Unknown {
                if !partition_exists(consumer, &tp).map_err(SourceError::Consume)? {
                    found += 1;
                    policy.apply(Gap {
                        tp: tp.clone(),
                        from: match position {
                            Offset::Offset(n) => n,
                            _ => 0,
                        },
                        to: None,
                        cause: GapCause::PartitionGone,
                        detected_ms: crate::now_ms(),
                    })?;
                    self.remove(consumer, &tp)?;
                }
                continue;
            }
            if !stopped(&tp) {
                continue;
            }
            let (low, high) = consumer
                .fetch_watermarks(&tp.topic, tp.partition, CALL_TIMEOUT)
                .map_err(SourceError::Consume)?;
            let restart = match position {
                Offset::Offset(next) => match classify(&tp, next, low, high, crate::now_ms())? {
                    Finding::Gap(gap) => {
                        found += 1;
                        policy.apply(gap)?;
                        Offset::Offset(low)
                    }
                    Finding::InRange => position,
                },
                // Nothing read yet: where it was asked to start, resolved anew.
                logical => logical,
            };
            self.restart_at(consumer, &tp, restart)?;
        }
        Ok(found)
    }
}

/// Partitions the relay has progress for (a checkpoint or the WAL) that
/// the configuration still selects but the source no longer has: their
/// topic was deleted, or recreated with fewer partitions. Each is a gap
/// from its known next offset on.
pub fn gone_partitions(
    known: &BTreeMap<TopicPartition, i64>,
    existing: &[TopicPartition],
    selects: impl Fn(&TopicPartition) -> bool,
) -> Vec<Gap> {
    known
        .iter()
        .filter(|(tp, _)| selects(tp) && !existing.contains(tp))
        .map(|(tp, next)| Gap {
            tp: tp.clone(),
            from: *next,
            to: None,
            cause: GapCause::PartitionGone,
            detected_ms: crate::now_ms(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("orders", 2)
    }

    #[test]
    fn a_position_below_the_log_start_is_a_gap_up_to_it() {
        let found = classify(&tp(), 120, 5000, 9000, 7).expect("classify");
        assert_eq!(
            found,
            Finding::Gap(Gap {
                tp: tp(),
                from: 120,
                to: Some(5000),
                cause: GapCause::DeletedAtSource,
                detected_ms: 7,
            })
        );
    }

    #[test]
    fn a_position_within_the_log_is_no_gap() {
        for next in [5000, 7000, 9000] {
            assert_eq!(
                classify(&tp(), next, 5000, 9000, 0).expect("classify"),
                Finding::InRange
            );
        }
    }

    #[test]
    fn a_position_past_the_log_end_stops_whatever_the_policy() {
        match classify(&tp(), 9001, 0, 9000, 0) {
            Err(SourceError::LogEndBehind { next, end, .. }) => {
                assert_eq!((next, end), (9001, 9000))
            }
            other => panic!("expected LogEndBehind, got {other:?}"),
        }
    }

    #[test]
    fn a_gap_found_again_grown_records_the_larger_range_and_counts_only_the_growth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = crate::wal::Wal::open(dir.path(), crate::wal::WalOptions { max_bytes: 1 << 20 })
            .expect("wal");
        let metrics = std::sync::Arc::new(Metrics::new());
        let policy = GapPolicy {
            on_gap: OnGap::Skip,
            store: Gaps::open(&wal).expect("gaps"),
            metrics: metrics.clone(),
        };
        let gap = |to| Gap {
            tp: tp(),
            from: 100,
            to: Some(to),
            cause: GapCause::DeletedAtSource,
            detected_ms: 1,
        };
        policy.apply(gap(150)).expect("first");
        policy.store.mark_shipped(&[gap(150)]).expect("shipped");
        // Found again after a restart that read nothing past it, once the same, once grown.
        policy.apply(gap(150)).expect("same");
        policy.apply(gap(200)).expect("grown");
        assert_eq!(policy.store.all().expect("all"), vec![(gap(200), false)]);
        let lost = metrics
            .source_records_lost
            .get_or_create(&crate::ops::metrics::PartitionLabels::from(&tp()))
            .get();
        assert_eq!(
            lost, 100,
            "50 when found, 50 more when it grew, nothing for the repeat"
        );
    }

    #[test]
    fn with_fail_nothing_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = crate::wal::Wal::open(dir.path(), crate::wal::WalOptions { max_bytes: 1 << 20 })
            .expect("wal");
        let policy = GapPolicy {
            on_gap: OnGap::Fail,
            store: Gaps::open(&wal).expect("gaps"),
            metrics: std::sync::Arc::new(Metrics::new()),
        };
        let gap = Gap {
            tp: tp(),
            from: 5,
            to: Some(9),
            cause: GapCause::DeletedAtSource,
            detected_ms: 1,
        };
        assert!(matches!(policy.apply(gap), Err(SourceError::Gap(_))));
        assert!(policy.store.all().expect("all").is_empty());
    }

    #[test]
    fn only_selected_partitions_missing_from_the_source_are_gone() {
        let known: BTreeMap<TopicPartition, i64> = [
            (TopicPartition::new("a", 0), 10),
            (TopicPartition::new("a", 3), 40),
            (TopicPartition::new("b", 0), 5),
            (TopicPartition::new("old", 0), 7),
        ]
        .into_iter()
        .collect();
        let existing = [TopicPartition::new("a", 0), TopicPartition::new("a", 1)];
        let gone = gone_partitions(&known, &existing, |tp| tp.topic != "old");
        let gone: Vec<(String, i32, i64)> = gone
            .iter()
            .map(|g| (g.tp.topic.clone(), g.tp.partition, g.from))
            .collect();
        assert_eq!(gone, vec![("a".into(), 3, 40), ("b".into(), 0, 5)]);
    }
}
