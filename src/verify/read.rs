//! The I/O of an audit: fixes the snapshot (every range before anything
//! is read), reads the relay's checkpoint topic and the target's topic
//! configs, then reads each unit's source ranges and target partitions and
//! hands them to `matching`. Blocking; called by `cli::verify`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::checkpoint;
use crate::config::{Config, Partitioning};
use crate::gap::Gap;
use crate::kafka::{self, target_client};
use crate::record::TopicPartition;
use crate::source;

use super::{
    classify_missing, expected, gap_window, key_digest, lost_at_source, match_records, observed,
    Bound, Delivered, Digest, Evidence, Identity, Options, PartitionReport, RelayCheckpoints,
    Report, Side, SourceEntry, TargetAt, TargetEntry, TargetRange, TargetReport, VerifyError,
    STALL, TIMEOUT,
};

/// The source partitions read against one target unit.
struct Unit {
    topic: String,
    /// Target partitions with their `[low, high)` at start.
    partitions: Vec<TargetRange>,
    /// Source partitions with their range.
    sources: Vec<SourceRange>,
    /// The target topic's `cleanup.policy`, or why it is unknown.
    cleanup_policy: Result<String, String>,
}

/// A source partition's range `[from, to)`.
struct SourceRange {
    tp: TopicPartition,
    from: i64,
    to: i64,
    /// Where its recorded gaps are counted ([`gap_window`]).
    gaps_in: (i64, i64),
}

/// What the relay's checkpoint topic says, by source partition.
#[derive(Default)]
struct RelayRecords {
    delivered: HashMap<TopicPartition, Delivered>,
    gaps: HashMap<TopicPartition, Vec<Gap>>,
}

impl RelayRecords {
    /// Reads the checkpoint topic; a failure is reported, not fatal: then
    /// nothing counts as delivered, so every record not on the target stays
    /// `missing`.
    fn read(config: &Config, options: &Options) -> (RelayRecords, RelayCheckpoints) {
        let topic = config.target.checkpoint_topic.clone();
        let committed = match checkpoint::read_committed(
            &target_client(config),
            &topic,
            &config.relay_id(),
            TIMEOUT,
        ) {
            Ok(c) => c,
            Err(e) => {
                let note = RelayCheckpoints {
                    topic,
                    read: false,
                    partitions: 0,
                    gaps: 0,
                    not_read_because: Some(e.to_string()),
                };
                return (RelayRecords::default(), note);
            }
        };
        let note = RelayCheckpoints {
            topic,
            read: true,
            partitions: committed.checkpoints.len(),
            gaps: committed.gaps.len(),
            not_read_because: None,
        };
        let mut records = RelayRecords::default();
        for (tp, cp) in committed.checkpoints {
            records.delivered.entry(tp).or_default().before = Some(cp.next_offset);
        }
        // Replayed dead letters were delivered, but out of order.
        let replayed = committed.replayed.iter().filter_map(|id| replayed_at(id));
        for (tp, offset) in options.dead_letters.iter().cloned().chain(replayed) {
            records
                .delivered
                .entry(tp)
                .or_default()
                .dead_letters
                .push(offset);
        }
        for d in records.delivered.values_mut() {
            d.dead_letters.sort_unstable();
            d.dead_letters.dedup();
        }
        for gap in committed.gaps {
            records.gaps.entry(gap.tp.clone()).or_default().push(gap);
        }
        (records, note)
    }
}

/// The source position of a replay marker's dead-letter id,
/// `topic/partition/offset` (a topic name has no `/`).
fn replayed_at(id: &str) -> Option<(TopicPartition, i64)> {
    let (rest, offset) = id.rsplit_once('/')?;
    let (topic, partition) = rest.rsplit_once('/')?;
    Some((
        TopicPartition::new(topic, partition.parse().ok()?),
        offset.parse().ok()?,
    ))
}

/// Asks the target for `topic`'s `cleanup.policy` (DescribeConfigs).
fn cleanup_policy(config: &Config, topic: &str) -> Result<String, VerifyError> {
    let describe_error = |source| VerifyError::DescribeConfigs {
        topic: topic.to_string(),
        source: Box::new(source),
    };
    kafka::Admin::with_timeout(&target_client(config), TIMEOUT)
        .and_then(|admin| admin.topic_config(topic, "cleanup.policy"))
        .map_err(describe_error)?
        .ok_or_else(|| VerifyError::NoCleanupPolicy(topic.to_string()))
}

/// The consumers' context. librdkafka hands every error event, the
/// end-of-partition signal included, to the client's error callback as well,
/// whose default logs it as an ERROR: an auditor would read a failure into
/// the expected end of a read. The end is handled by [`read`]; anything else
/// is logged as a warning (librdkafka retries it).
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() != Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::warn!(%error, reason, "librdkafka reported an error");
        }
    }
}

impl ConsumerContext for Quiet {}

type Reader = BaseConsumer<Quiet>;

fn consumer(mut client: ClientConfig, group: &str, side: Side) -> Result<Reader, VerifyError> {
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        // A start position gone (retention) must fail the audit, not skip records.
        .set("auto.offset.reset", "error");
    client
        .create_with_context(Quiet)
        .map_err(|source| VerifyError::Client { side, source })
}

fn watermarks(
    consumer: &Reader,
    side: Side,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), VerifyError> {
    consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .map_err(|source| VerifyError::Watermarks {
            side,
            tp: TopicPartition::new(topic, partition),
            source,
        })
}

/// Resolves a bound on one source partition holding `[low, high)`.
fn resolve(
    consumer: &Reader,
    tp: &TopicPartition,
    bound: Bound,
    low: i64,
    high: i64,
) -> Result<i64, VerifyError> {
    let offset = match bound {
        Bound::Offset(o) => o,
        Bound::Time(ms) => {
            let mut tpl = TopicPartitionList::new();
            let lookup_error = |source| VerifyError::OffsetsForTimes {
                tp: tp.clone(),
                ms,
                source,
            };
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ms))
                .map_err(lookup_error)?;
            let found = consumer
                .offsets_for_times(tpl, TIMEOUT)
                .map_err(lookup_error)?;
            let offset = found
                .find_partition(&tp.topic, tp.partition)
                .map(|e| e.offset());
            match offset {
                Some(Offset::Offset(o)) if o >= 0 => o,
                // No record at or after that time.
                _ => high,
            }
        }
    };
    Ok(offset.clamp(low, high))
}

/// Runs the whole audit. `progress` counts offsets read on both sides.
pub fn verify(
    config: &Config,
    options: &Options,
    progress: &ProgressBar,
) -> Result<Report, VerifyError> {
    let group = format!("{}.verify", config.group_id());
    let src = consumer(kafka::source_client(config), &group, Side::Source)?;
    let target = consumer(target_client(config), &group, Side::Target)?;

    // Before the snapshot (see the module doc).
    progress.set_message("relay checkpoints");
    let (relay, relay_note) = RelayRecords::read(config, options);

    // The snapshot: every range is fixed before anything is read.
    let mut ranges = Vec::new();
    for tp in source::partitions(&src, config)? {
        let (low, high) = watermarks(&src, Side::Source, &tp.topic, tp.partition)?;
        let from = match options.from {
            Some(b) => resolve(&src, &tp, b, low, high)?,
            None => low,
        };
        let to = match options.to {
            Some(b) => resolve(&src, &tp, b, low, high)?,
            None => high,
        };
        let to = to.max(from);
        ranges.push(SourceRange {
            tp,
            from,
            to,
            gaps_in: gap_window(options, from, to, high),
        });
    }
    let units = units(config, &target, ranges)?;
    let total: i64 = units
        .iter()
        .map(|u| {
            u.sources.iter().map(|r| r.to - r.from).sum::<i64>()
                + u.partitions.iter().map(|r| r.to - r.from).sum::<i64>()
        })
        .sum();
    progress.set_length(total.max(0) as u64);

    let mut partitions = Vec::new();
    let mut targets = Vec::new();
    for unit in units {
        let (rows, report) = verify_unit(config, options, &src, &target, unit, &relay, progress)?;
        partitions.extend(rows);
        targets.push(report);
    }
    progress.finish_and_clear();
    Ok(Report::new(
        config.format,
        config.target.partitioning,
        partitions,
        targets,
        relay_note,
    ))
}

/// Groups the source ranges by the target partitions they are written to.
fn units(
    config: &Config,
    target: &Reader,
    ranges: Vec<SourceRange>,
) -> Result<Vec<Unit>, VerifyError> {
    // Per target topic: its partitions and its cleanup.policy.
    let mut target_topics: BTreeMap<String, (Vec<i32>, Result<String, String>)> = BTreeMap::new();
    let mut grouped: BTreeMap<(String, Option<i32>), Vec<SourceRange>> = BTreeMap::new();
    for range in ranges {
        let topic = config.target_topic_for(&range.tp.topic);
        if !target_topics.contains_key(&topic) {
            let metadata = target
                .fetch_metadata(Some(&topic), TIMEOUT)
                .map_err(|source| VerifyError::TargetMetadata {
                    servers: config.target.bootstrap_servers.clone(),
                    source,
                })?;
            let ids: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if ids.is_empty() {
                return Err(VerifyError::MissingTargetTopic(topic));
            }
            // Not knowing it only turns the compaction rule off.
            let policy = cleanup_policy(config, &topic).map_err(|e| e.to_string());
            target_topics.insert(topic.clone(), (ids, policy));
        }
        let partition = match config.target.partitioning {
            Partitioning::Same => Some(range.tp.partition),
            Partitioning::KeyHash => None,
        };
        grouped.entry((topic, partition)).or_default().push(range);
    }
    let mut units = Vec::new();
    for ((topic, partition), sources) in grouped {
        let (all, policy) = &target_topics[&topic];
        let ids: Vec<i32> = match partition {
            Some(p) if all.contains(&p) => vec![p],
            Some(p) => {
                return Err(VerifyError::MissingTargetPartition {
                    topic,
                    partition: p,
                })
            }
            None => all.clone(),
        };
        let mut partitions = Vec::new();
        for p in ids {
            let (from, to) = watermarks(target, Side::Target, &topic, p)?;
            partitions.push(TargetRange {
                partition: p,
                from,
                to,
            });
        }
        units.push(Unit {
            cleanup_policy: policy.clone(),
            topic,
            partitions,
            sources,
        });
    }
    Ok(units)
}

fn verify_unit(
    config: &Config,
    options: &Options,
    src: &Reader,
    target: &Reader,
    unit: Unit,
    relay: &RelayRecords,
    progress: &ProgressBar,
) -> Result<(Vec<PartitionReport>, TargetReport), VerifyError> {
    let format = config.format;
    let compacted = unit
        .cleanup_policy
        .as_ref()
        .is_ok_and(|p| p.split(',').any(|p| p.trim() == "compact"));
    let mut source_entries = Vec::new();
    let mut keys = Vec::new();
    let mut counts = vec![0u64; unit.sources.len()];
    for (index, SourceRange { tp, from, to, .. }) in unit.sources.iter().enumerate() {
        progress.set_message(format!("source {tp}"));
        let range = TargetRange {
            partition: tp.partition,
            from: *from,
            to: *to,
        };
        read(src, Side::Source, &tp.topic, &[range], progress, |m| {
            let (_, record) = source::to_record(m);
            let (digest, identity) = expected(format, &tp.topic, tp.partition, &record);
            counts[index] += 1;
            if compacted {
                keys.push(key_digest(record.key.as_deref()));
            }
            source_entries.push(SourceEntry {
                source: index,
                offset: record.offset,
                digest,
                identity,
            });
        })?;
    }
    progress.set_message(format!("target {}", unit.topic));
    // Only target records that resemble one of the range (by digest or
    // identity) can be matched, duplicated or differing; the rest are
    // `other` whatever happens, so they are counted here and not kept:
    // memory follows the source range, not the size of the target.
    // Sorted vectors, not hash sets: no slack per record.
    let mut digests: Vec<Digest> = source_entries.iter().map(|s| s.digest).collect();
    digests.sort_unstable();
    digests.dedup();
    let mut identities: Vec<Identity> = source_entries.iter().filter_map(|s| s.identity).collect();
    identities.sort_unstable();
    identities.dedup();
    let mut target_entries = Vec::new();
    let mut target_records = 0u64;
    let mut unlike = 0u64;
    let mut other_examples = Vec::new();
    read(
        target,
        Side::Target,
        &unit.topic,
        &unit.partitions,
        progress,
        |m| {
            target_records += 1;
            let (digest, identity) = observed(format, m);
            let at = TargetAt {
                partition: m.partition(),
                offset: m.offset(),
            };
            if digests.binary_search(&digest).is_ok()
                || identity.is_some_and(|i| identities.binary_search(&i).is_ok())
            {
                target_entries.push(TargetEntry {
                    at,
                    digest,
                    identity,
                });
            } else {
                unlike += 1;
                other_examples.push(at);
                // Keep the lowest offsets without holding them all.
                if other_examples.len() > 4 * options.examples.max(1) {
                    other_examples.sort_unstable_by_key(|a| (a.partition, a.offset));
                    other_examples.truncate(options.examples);
                }
            }
        },
    )?;
    drop((digests, identities));
    // Pooled partitions arrive interleaved; pairing goes in offset order.
    target_entries.sort_unstable_by_key(|t| (t.at.partition, t.at.offset));
    let mut matching = match_records(
        unit.sources.len(),
        &source_entries,
        &target_entries,
        options.examples,
    );
    drop(target_entries);
    let evidence = Evidence {
        delivered: unit
            .sources
            .iter()
            .map(|r| relay.delivered.get(&r.tp).cloned().unwrap_or_default())
            .collect(),
        target_deleted: unit.partitions.iter().map(|r| r.from.max(0) as u64).sum(),
        keys: compacted.then_some(keys),
    };
    classify_missing(
        &mut matching.tallies,
        &source_entries,
        &matching.missing,
        &evidence,
        options.examples,
    );
    other_examples.extend(matching.other_examples);
    other_examples.sort_unstable_by_key(|a| (a.partition, a.offset));
    other_examples.truncate(options.examples);
    let target_partition = match config.target.partitioning {
        Partitioning::Same => unit.partitions.first().map(|r| r.partition),
        Partitioning::KeyHash => None,
    };
    let rows = unit
        .sources
        .into_iter()
        .zip(matching.tallies)
        .zip(counts)
        .map(|((range, mut tally), records)| {
            let gaps = relay.gaps.get(&range.tp).into_iter().flatten();
            (tally.lost_at_source, tally.examples.lost_at_source) =
                lost_at_source(gaps, range.gaps_in, options.examples);
            PartitionReport {
                topic: range.tp.topic,
                partition: range.tp.partition,
                from: range.from,
                to: range.to,
                target_topic: unit.topic.clone(),
                target_partition,
                records,
                tally,
            }
        })
        .collect();
    let (cleanup_policy, cleanup_policy_unknown_because) = match unit.cleanup_policy {
        Ok(p) => (Some(p), None),
        Err(why) => (None, Some(why)),
    };
    let report = TargetReport {
        records: target_records,
        topic: unit.topic,
        partitions: unit.partitions,
        other: matching.other + unlike,
        other_examples,
        cleanup_policy,
        cleanup_policy_unknown_because,
    };
    Ok((rows, report))
}

/// Reads `[from, to)` of each range of `topic` (read_committed), calling
/// `visit` per record. A partition is done at its last offset or at its end
/// (`enable.partition.eof`): under read_committed the last offsets of a
/// transactional topic are commit markers no reader ever sees.
fn read(
    consumer: &Reader,
    side: Side,
    topic: &str,
    ranges: &[TargetRange],
    progress: &ProgressBar,
    mut visit: impl FnMut(&BorrowedMessage<'_>),
) -> Result<(), VerifyError> {
    let assign_error = |source| VerifyError::Assign {
        side,
        topic: topic.to_string(),
        source,
    };
    // partition -> (next offset not yet counted in the progress, end)
    let mut open: HashMap<i32, (i64, i64)> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for r in ranges.iter().filter(|r| r.from < r.to) {
        tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.from))
            .map_err(assign_error)?;
        open.insert(r.partition, (r.from, r.to));
    }
    if open.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl).map_err(assign_error)?;
    let mut last_progress = Instant::now();
    let mut done = HashSet::new();
    while done.len() < open.len() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let p = m.partition();
                let Some((next, to)) = open.get_mut(&p).filter(|_| m.topic() == topic) else {
                    continue;
                };
                if done.contains(&p) {
                    continue;
                }
                last_progress = Instant::now();
                let offset = m.offset();
                if offset < *to {
                    visit(&m);
                }
                let reached = (offset + 1).min(*to);
                progress.inc((reached - *next).max(0) as u64);
                *next = reached;
                if offset + 1 >= *to {
                    done.insert(p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                if let Some((next, to)) = open.get_mut(&p) {
                    progress.inc((*to - *next).max(0) as u64);
                    *next = *to;
                    done.insert(p);
                    last_progress = Instant::now();
                }
            }
            Some(Err(e)) if is_fatal(&e) => {
                let _ = consumer.unassign();
                return Err(VerifyError::Read {
                    side,
                    topic: topic.to_string(),
                    source: e,
                });
            }
            // Leader moves, broker restarts: librdkafka retries by itself.
            Some(Err(e)) => {
                tracing::warn!(%side, topic, error = %e, "read error; librdkafka retries")
            }
            None => {}
        }
        if last_progress.elapsed() > STALL {
            let _ = consumer.unassign();
            let mut partitions: Vec<i32> = open
                .keys()
                .filter(|p| !done.contains(*p))
                .copied()
                .collect();
            partitions.sort_unstable();
            return Err(VerifyError::Stalled {
                side,
                topic: topic.to_string(),
                partitions,
            });
        }
    }
    let _ = consumer.unassign();
    Ok(())
}

fn is_fatal(e: &KafkaError) -> bool {
    kafka::code(e).is_some_and(|code| {
        kafka::auth_failed(code)
            || kafka::unknown_partition(code)
            || matches!(
                code,
                RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange
            )
    })
}
