//! The per-partition picture an operator asks for with `kafka-relay status`:
//! WAL depth, the last checkpoint, dead letters, source lag and records
//! lost at the source (`gap`), per source topic-partition, plus the relay's
//! state and every source gap with its exact range.
//!
//! One shape for both ways of asking: a running relay builds it from its
//! live handles and serves it as JSON on the admin endpoint's `/status`; for
//! a stopped relay the CLI builds it from the WAL directory. Both go
//! through [`collect`], so the two can never disagree on what a column
//! means.
//!
//! Invariant: collecting never changes the WAL. Last checkpoints come from
//! the WAL's local copy of delivered progress (see `wal`), which may trail
//! the target's checkpoint topic by the transaction in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dlq::{DeadLetters, DlqError};
use crate::gap::{Gap, GapError, Gaps};
use crate::record::TopicPartition;
use crate::wal::{Depth, Wal, WalDepth, WalError};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    DeadLetters(#[from] DlqError),
    #[error(transparent)]
    Gaps(#[from] GapError),
}

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Asked of the running relay through its admin endpoint.
    Live,
    /// Read from the WAL directory of a stopped relay.
    Offline,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub relay: String,
    pub origin: Origin,
    /// `running`, `paused`, `starting: <step>`, `target outage`,
    /// `halted: <why>`, or `stopped`.
    pub state: String,
    pub paused: bool,
    /// Seconds since target transactions began failing, during an outage.
    pub target_outage_secs: Option<u64>,
    pub wal: WalStatus,
    pub dead_letters: u64,
    /// Ranges the source deleted before the relay copied them, and
    /// partitions gone from the source (`source.on_gap = "skip"`).
    #[serde(default)]
    pub source_gaps: Vec<GapStatus>,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapStatus {
    pub topic: String,
    pub partition: i32,
    pub from: i64,
    /// `None`: the partition is gone, the end is unknown.
    pub to: Option<i64>,
    pub offsets: Option<u64>,
    pub cause: String,
    pub detected_ms: i64,
    /// Committed to the target's checkpoint topic yet.
    pub on_target: bool,
}

impl GapStatus {
    fn of(gap: &Gap, on_target: bool) -> GapStatus {
        GapStatus {
            topic: gap.tp.topic.clone(),
            partition: gap.tp.partition,
            from: gap.from,
            to: gap.to,
            offsets: gap.offsets(),
            cause: gap.cause.label().to_string(),
            detected_ms: gap.detected_ms,
            on_target,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalStatus {
    pub dir: String,
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Age of the oldest waiting batch; `None` when the WAL is empty.
    pub oldest_entry_age_secs: Option<f64>,
    /// Entries that failed their checksum, not yet quarantined.
    pub corrupted_batches: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub wal_batches: u64,
    pub wal_records: u64,
    pub wal_bytes: u64,
    pub oldest_entry_age_secs: Option<f64>,
    /// Next source offset the target has committed.
    pub last_checkpoint: Option<i64>,
    /// Records on the source not read yet (live only).
    pub source_lag: Option<i64>,
    pub dead_letters: u64,
    /// Offsets of this partition in source gaps.
    #[serde(default)]
    pub lost_at_source: u64,
}

/// What only a running relay knows.
#[derive(Debug, Clone, Default)]
pub struct LiveState {
    pub state: String,
    pub paused: bool,
    pub target_outage_secs: Option<u64>,
    pub lag: BTreeMap<TopicPartition, i64>,
}

/// Builds the report from the WALs in `dir` (and their dead-letter
/// queues): the relay's one, or its units' (`scale`), whose partitions
/// never overlap. `live` is `None` for a stopped relay.
pub fn collect(
    relay: &str,
    dir: &Path,
    wals: &[Wal],
    live: Option<LiveState>,
    now_ms: i64,
) -> Result<Status, StatusError> {
    let mut depth = WalDepth::default();
    let mut delivered = BTreeMap::new();
    let mut dead = BTreeMap::new();
    let mut gaps = Vec::new();
    let mut max_bytes = 0;
    for wal in wals {
        depth.merge(&wal.depth());
        delivered.extend(wal.delivered()?);
        dead.extend(DeadLetters::open(wal)?.count_by_partition()?);
        gaps.extend(Gaps::open(wal)?.all()?);
        max_bytes += wal.max_bytes();
    }
    let mut lost: BTreeMap<&TopicPartition, u64> = BTreeMap::new();
    for (gap, _) in &gaps {
        *lost.entry(&gap.tp).or_default() += gap.offsets().unwrap_or(0);
    }
    let origin = if live.is_some() {
        Origin::Live
    } else {
        Origin::Offline
    };
    let live = live.unwrap_or_else(|| LiveState {
        state: "stopped".to_string(),
        ..LiveState::default()
    });
    let age = |d: &Depth| {
        d.oldest_appended_ms
            .map(|t| (now_ms - t).max(0) as f64 / 1000.0)
    };
    let known: BTreeSet<&TopicPartition> = depth
        .partitions
        .keys()
        .chain(delivered.keys())
        .chain(dead.keys())
        .chain(live.lag.keys())
        .chain(lost.keys().copied())
        .collect();
    let partitions = known
        .into_iter()
        .map(|tp| {
            let d = depth.partitions.get(tp).copied().unwrap_or_default();
            PartitionStatus {
                topic: tp.topic.clone(),
                partition: tp.partition,
                wal_batches: d.batches,
                wal_records: d.records,
                wal_bytes: d.bytes,
                oldest_entry_age_secs: age(&d),
                last_checkpoint: delivered.get(tp).copied(),
                source_lag: live.lag.get(tp).copied(),
                dead_letters: dead.get(tp).copied().unwrap_or(0),
                lost_at_source: lost.get(tp).copied().unwrap_or(0),
            }
        })
        .collect();
    Ok(Status {
        relay: relay.to_string(),
        origin,
        state: live.state,
        paused: live.paused,
        target_outage_secs: live.target_outage_secs,
        wal: WalStatus {
            dir: dir.display().to_string(),
            batches: depth.total.batches,
            records: depth.total.records,
            bytes: depth.total.bytes,
            max_bytes,
            oldest_entry_age_secs: age(&depth.total),
            corrupted_batches: depth.corrupted.batches,
        },
        dead_letters: dead.values().sum(),
        source_gaps: gaps.iter().map(|(g, on)| GapStatus::of(g, *on)).collect(),
        partitions,
    })
}

impl Status {
    /// The report as a table for people.
    pub fn table(&self) -> String {
        let origin = match self.origin {
            Origin::Live => "live, from the admin endpoint",
            Origin::Offline => "relay stopped, read from its WAL",
        };
        let mut out = format!("relay {}: {} ({origin})\n", self.relay, self.state);
        if let Some(secs) = self.target_outage_secs {
            out += &format!("target unreachable for {secs}s\n");
        }
        out += &format!(
            "WAL {}: {} batches, {} records, {} of {} bytes ({:.1}%), oldest {}{}\n",
            self.wal.dir,
            self.wal.batches,
            self.wal.records,
            self.wal.bytes,
            self.wal.max_bytes,
            100.0 * self.wal.bytes as f64 / self.wal.max_bytes.max(1) as f64,
            age_text(self.wal.oldest_entry_age_secs),
            match self.wal.corrupted_batches {
                0 => String::new(),
                n => format!(", {n} CORRUPTED (quarantined at the next start)"),
            },
        );
        out += &format!("dead letters: {}\n", self.dead_letters);
        for g in &self.source_gaps {
            out += &format!(
                "SOURCE GAP {}/{}: {}, {}{}\n",
                g.topic,
                g.partition,
                match (g.to, g.offsets) {
                    (Some(to), Some(n)) => format!("offsets [{}, {to}) lost ({n} offsets)", g.from),
                    _ => format!("gone from offset {} on", g.from),
                },
                g.cause,
                if g.on_target {
                    ""
                } else {
                    " (not yet in the target's checkpoint topic)"
                },
            );
        }
        out += "\n";
        let header = [
            "TOPIC",
            "PARTITION",
            "WAL BATCHES",
            "WAL RECORDS",
            "WAL BYTES",
            "OLDEST",
            "CHECKPOINT",
            "LAG",
            "DEAD LETTERS",
            "LOST AT SOURCE",
        ];
        let rows: Vec<[String; 10]> = self
            .partitions
            .iter()
            .map(|p| {
                [
                    p.topic.clone(),
                    p.partition.to_string(),
                    p.wal_batches.to_string(),
                    p.wal_records.to_string(),
                    p.wal_bytes.to_string(),
                    age_text(p.oldest_entry_age_secs),
                    p.last_checkpoint.map_or("-".into(), |o| o.to_string()),
                    p.source_lag.map_or("-".into(), |l| l.to_string()),
                    p.dead_letters.to_string(),
                    p.lost_at_source.to_string(),
                ]
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].len())
                    .chain([header[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<&str>| {
            let mut l = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| {
                    if i == 0 {
                        format!("{c:<w$}")
                    } else {
                        format!("{c:>w$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ");
            l.truncate(l.trim_end().len());
            l + "\n"
        };
        out += &line(header.to_vec());
        for row in &rows {
            out += &line(row.iter().map(String::as_str).collect());
        }
        if rows.is_empty() {
            out += "(no partition seen yet)\n";
        }
        out
    }
}

fn age_text(secs: Option<f64>) -> String {
    match secs {
        None => "-".to_string(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::DeadLetter;
    use crate::record::{Batch, Record};
    use crate::wal::WalOptions;

    fn batch(topic: &str, partition: i32, offsets: std::ops::Range<i64>) -> Batch {
        Batch {
            topic: topic.into(),
            partition,
            records: offsets
                .map(|offset| Record {
                    offset,
                    timestamp: None,
                    key: None,
                    value: Some(vec![7; 10]),
                    headers: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn status_lists_every_source_gap_with_its_range_and_the_offsets_lost_per_partition() {
        use crate::gap::GapCause;
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect("wal");
        let gaps = Gaps::open(&wal).expect("gaps");
        let deleted = Gap {
            tp: TopicPartition::new("orders", 1),
            from: 100,
            to: Some(150),
            cause: GapCause::DeletedAtSource,
            detected_ms: 5,
        };
        let gone = Gap {
            tp: TopicPartition::new("orders", 2),
            from: 7,
            to: None,
            cause: GapCause::PartitionGone,
            detected_ms: 6,
        };
        gaps.record(&deleted).expect("record");
        gaps.record(&gone).expect("record");
        gaps.mark_shipped(std::slice::from_ref(&deleted))
            .expect("mark");
        let s = collect("r1", wal.dir(), std::slice::from_ref(&wal), None, 0).expect("status");
        let listed: Vec<_> = s
            .source_gaps
            .iter()
            .map(|g| (g.partition, g.from, g.to, g.offsets, g.on_target))
            .collect();
        assert_eq!(
            listed,
            [
                (1, 100, Some(150), Some(50), true),
                (2, 7, None, None, false)
            ]
        );
        let lost: Vec<_> = s
            .partitions
            .iter()
            .map(|p| (p.partition, p.lost_at_source))
            .collect();
        assert_eq!(lost, [(1, 50), (2, 0)]);
        let table = s.table();
        assert!(
            table.contains(
                "SOURCE GAP orders/1: offsets [100, 150) lost (50 offsets), deleted_at_source\n"
            ),
            "{table}"
        );
        assert!(
            table.contains("SOURCE GAP orders/2: gone from offset 7 on, partition_gone (not yet in the target's checkpoint topic)"),
            "{table}"
        );
    }

    #[test]
    fn offline_status_shows_depth_checkpoints_and_dead_letters_per_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        {
            let wal = Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect("wal");
            let first = wal.append(&batch("orders", 0, 0..5)).expect("append");
            wal.append(&batch("orders", 0, 5..8)).expect("append");
            wal.append(&batch("orders", 1, 0..4)).expect("append");
            wal.ack_delivered(
                &[first],
                &BTreeMap::from([(TopicPartition::new("orders", 0), 5)]),
            )
            .expect("ack");
            DeadLetters::open(&wal)
                .expect("dlq")
                .put(&DeadLetter {
                    topic: "orders".into(),
                    partition: 2,
                    record: batch("orders", 2, 9..10).records.remove(0),
                    reason: "test".into(),
                    attempts: 1,
                    at_ms: 0,
                })
                .expect("put");
        }
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // Reopened, as `status` does for a stopped relay.
        let wal = Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect("wal");
        let s =
            collect("r1", wal.dir(), std::slice::from_ref(&wal), None, now_ms()).expect("status");
        assert_eq!((s.origin, s.state.as_str()), (Origin::Offline, "stopped"));
        assert_eq!((s.wal.batches, s.wal.records, s.dead_letters), (2, 7, 1));
        let rows: Vec<_> = s
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition,
                    p.wal_batches,
                    p.wal_records,
                    p.last_checkpoint,
                    p.dead_letters,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (0, 1, 3, Some(5), 0),
                (1, 1, 4, None, 0),
                (2, 0, 0, None, 1)
            ]
        );
        // Append times survive the reopen: ages count from the append, not the open.
        let age = s.partitions[0].oldest_entry_age_secs.expect("age");
        assert!((1.0..60.0).contains(&age), "age {age}");
        let table = s.table();
        assert!(table.contains("relay r1: stopped"), "{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("orders") && l.contains(" 5 ")),
            "{table}"
        );
    }
}
