//! `kafka-relay wal inspect | verify`: the write-ahead log, offline.
//!
//! `inspect` lists every entry in position order (partition, source offsets,
//! record count, stored bytes, status), then the quarantined entries, then
//! totals. `verify` checks every entry's frame (version, crc32, decode) and
//! the WAL invariants that hold across entries, and exits 1 naming each bad
//! entry.
//!
//! Both open the WAL with [`Wal::open_existing`]. sled 0.34 cannot open read-only, so
//! opening takes the directory's exclusive lock: while a relay runs, the
//! command waits [`crate::wal::LOCK_WAIT`] and then fails with "the WAL at …
//! is in use: stop the relay first".
//!
//! Invariants:
//! - Neither command changes the WAL: no append, ack or quarantine (the
//!   relay's start-up quarantines; these only report). A missing WAL is an
//!   error, never silently created.
//! - Memory is bounded by one page of decoded entries ([`page_len`]) plus
//!   per-partition totals, whatever the WAL's size: entries are read in
//!   pages with [`Wal::read_from`], quarantined ones one at a time, and the
//!   output (JSON included) is streamed.
//! - Record contents (keys, values, headers) are never printed, only sizes:
//!   they may be sensitive.
//!
//! Called by `cli::main`. Exit codes: 0 success; 1 `verify` found a problem
//! or the WAL is unusable (missing, in use, unreadable); 2 configuration.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Write};

use clap::Subcommand;
use serde_json::json;

use super::Failure;
use crate::config::Config;
use crate::record::{Batch, TopicPartition};
use crate::wal::{decode_frame, CorruptionReason, Wal, WalEntry, WalPosition};

/// Decoded bytes one page of entries may hold, about.
const PAGE_BYTES: u64 = 64 << 20;
/// Entries per page at most, however small the batches.
const MAX_PAGE_ENTRIES: u64 = 256;

#[derive(Subcommand)]
pub enum WalAction {
    /// One line per entry (position, partition, offsets, records, stored
    /// bytes, status), then quarantined entries and totals (relay stopped).
    Inspect {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Also each record's offset, key/value sizes and timestamp (never
        /// its contents).
        #[arg(long)]
        records: bool,
    },
    /// Check every entry's checksum and the WAL's invariants; exit 1 naming
    /// each bad entry (relay stopped; changes nothing).
    Verify,
}

pub async fn wal(config: Config, action: WalAction) -> Result<(), Failure> {
    tokio::task::spawn_blocking(move || run(&config, action))
        .await
        .map_err(Failure::runtime)?
}

fn run(config: &Config, action: WalAction) -> Result<(), Failure> {
    let wal = super::open_stopped_wal(config)?;
    let page = page_len(config.batch.max_bytes);
    let mut out = BufWriter::new(io::stdout().lock());
    let outcome = match action {
        WalAction::Inspect { json, records } => {
            let mut listing = Listing::default();
            if json {
                inspect_json(&wal, page, records, &mut listing, &mut out)
            } else {
                inspect_text(&wal, page, records, &mut listing, &mut out)
            }
        }
        WalAction::Verify => verify(&wal, page, &mut out),
    };
    // The report goes out before any failure message on stderr.
    out.flush().map_err(output_failed)?;
    outcome
}

/// Entries per page: enough to amortise the reads, few enough that a page
/// of batches of up to `batch_max_bytes` stays near [`PAGE_BYTES`]. (A WAL
/// written under a larger `batch.max_bytes` takes more, still one page.)
fn page_len(batch_max_bytes: u64) -> usize {
    let entries = (PAGE_BYTES / batch_max_bytes.max(1)).clamp(1, MAX_PAGE_ENTRIES);
    usize::try_from(entries).unwrap_or(1)
}

/// Calls `each` on every entry in position order, one page in memory at a
/// time.
fn for_each_entry(
    wal: &Wal,
    page: usize,
    mut each: impl FnMut(&WalEntry) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut from = 0;
    loop {
        let entries = wal.read_from(from, page).map_err(Failure::runtime)?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let next = last.position().checked_add(1);
        for entry in &entries {
            each(entry)?;
        }
        match next {
            Some(next) => from = next,
            None => return Ok(()),
        }
    }
}

/// Calls `each` on every quarantined entry (position, raw bytes), oldest
/// first, one at a time.
fn for_each_quarantined(
    wal: &Wal,
    mut each: impl FnMut(WalPosition, &[u8]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    for item in wal.quarantined_iter() {
        let (position, raw) = item.map_err(Failure::runtime)?;
        each(position, &raw)?;
    }
    Ok(())
}

fn output_failed(e: io::Error) -> Failure {
    Failure::runtime(format!("cannot write the output: {e}"))
}

/// `writeln!` whose failure (a closed pipe, a full disk) ends the command.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).map_err(output_failed)?
    };
}

fn first_last(batch: &Batch) -> Option<(i64, i64)> {
    Some((batch.records.first()?.offset, batch.records.last()?.offset))
}

fn tp_of(batch: &Batch) -> TopicPartition {
    TopicPartition::new(batch.topic.clone(), batch.partition)
}

/// Running totals of a listing: a few numbers per partition, never entries.
#[derive(Default)]
struct Listing {
    entries: u64,
    records: u64,
    bytes: u64,
    corrupted: u64,
    quarantined: u64,
    quarantined_bytes: u64,
    partitions: BTreeMap<TopicPartition, PartitionTotals>,
}

#[derive(Default)]
struct PartitionTotals {
    entries: u64,
    records: u64,
    bytes: u64,
    offsets: Option<(i64, i64)>,
}

impl Listing {
    fn add(&mut self, entry: &WalEntry) {
        self.entries += 1;
        self.bytes += entry.stored_bytes();
        match entry {
            WalEntry::Valid {
                batch,
                stored_bytes,
                ..
            } => {
                let records = batch.records.len() as u64;
                self.records += records;
                let p = self.partitions.entry(tp_of(batch)).or_default();
                p.entries += 1;
                p.records += records;
                p.bytes += stored_bytes;
                if let Some((first, last)) = first_last(batch) {
                    p.offsets = Some(match p.offsets {
                        Some((lo, hi)) => (lo.min(first), hi.max(last)),
                        None => (first, last),
                    });
                }
            }
            WalEntry::Corrupted { .. } => self.corrupted += 1,
        }
    }

    fn add_quarantined(&mut self, raw: &[u8]) {
        self.quarantined += 1;
        self.quarantined_bytes += raw.len() as u64;
    }
}

const COLUMNS: &str = "  position  partition                       offsets                    records       bytes  status";

fn text_line(
    out: &mut impl Write,
    position: WalPosition,
    batch: Option<&Batch>,
    bytes: u64,
    status: &str,
) -> Result<(), Failure> {
    let (partition, offsets, records) = match batch {
        Some(b) => (
            tp_of(b).to_string(),
            first_last(b).map_or("-".to_string(), |(f, l)| format!("{f}..{l}")),
            b.records.len().to_string(),
        ),
        None => ("-".to_string(), "-".to_string(), "-".to_string()),
    };
    say!(
        out,
        "{position:>10}  {partition:<30}  {offsets:<25}  {records:>7}  {bytes:>10}  {status}"
    );
    Ok(())
}

fn text_records(out: &mut impl Write, batch: &Batch) -> Result<(), Failure> {
    let size = |b: &Option<Vec<u8>>| {
        b.as_ref()
            .map_or("none".to_string(), |b| b.len().to_string())
    };
    for r in &batch.records {
        say!(
            out,
            "{:>10}  offset={} timestamp={} key_bytes={} value_bytes={} headers={}",
            "",
            r.offset,
            r.timestamp.map_or("none".to_string(), |t| t.to_string()),
            size(&r.key),
            size(&r.value),
            r.headers.len()
        );
    }
    Ok(())
}

fn inspect_text(
    wal: &Wal,
    page: usize,
    records: bool,
    listing: &mut Listing,
    out: &mut impl Write,
) -> Result<(), Failure> {
    say!(
        out,
        "WAL in {}: next position {}",
        wal.dir().display(),
        wal.next_position()
    );
    say!(out, "{COLUMNS}");
    for_each_entry(wal, page, |entry| {
        listing.add(entry);
        match entry {
            WalEntry::Valid {
                position,
                batch,
                stored_bytes,
            } => {
                text_line(out, *position, Some(batch), *stored_bytes, "ok")?;
                if records {
                    text_records(out, batch)?;
                }
            }
            WalEntry::Corrupted {
                position,
                reason,
                stored_bytes,
            } => text_line(
                out,
                *position,
                None,
                *stored_bytes,
                &format!("CORRUPTED: {reason}"),
            )?,
        }
        Ok(())
    })?;
    say!(out, "quarantined (set aside at start-up, never shipped):");
    for_each_quarantined(wal, |position, raw| {
        listing.add_quarantined(raw);
        let bytes = raw.len() as u64;
        match decode_frame(raw) {
            Err(reason) => text_line(
                out,
                position,
                None,
                bytes,
                &format!("QUARANTINED: {reason}"),
            ),
            Ok(batch) => text_line(
                out,
                position,
                Some(&batch),
                bytes,
                "QUARANTINED: passes its checks now",
            ),
        }
    })?;
    say!(
        out,
        "totals: {} entries, {} records, {} bytes, {} corrupted, {} quarantined ({} bytes)",
        listing.entries,
        listing.records,
        listing.bytes,
        listing.corrupted,
        listing.quarantined,
        listing.quarantined_bytes
    );
    for (tp, p) in &listing.partitions {
        let offsets = p
            .offsets
            .map_or("-".to_string(), |(f, l)| format!("{f}..{l}"));
        say!(
            out,
            "partition {tp}: {} entries, {} records, {} bytes, offsets {offsets}",
            p.entries,
            p.records,
            p.bytes
        );
    }
    Ok(())
}

fn json_entry(entry: &WalEntry, records: bool) -> serde_json::Value {
    match entry {
        WalEntry::Valid {
            position,
            batch,
            stored_bytes,
        } => {
            let (first, last) = first_last(batch).unzip();
            let mut v = json!({
                "position": position,
                "topic": batch.topic,
                "partition": batch.partition,
                "first_offset": first,
                "last_offset": last,
                "records": batch.records.len(),
                "stored_bytes": stored_bytes,
                "status": "ok",
                "reason": null,
            });
            if records {
                v["record_list"] = batch
                    .records
                    .iter()
                    .map(|r| {
                        json!({
                            "offset": r.offset,
                            "timestamp": r.timestamp,
                            "key_bytes": r.key.as_ref().map(Vec::len),
                            "value_bytes": r.value.as_ref().map(Vec::len),
                            "headers": r.headers.len(),
                        })
                    })
                    .collect();
            }
            v
        }
        WalEntry::Corrupted {
            position,
            reason,
            stored_bytes,
        } => json!({
            "position": position,
            "topic": null,
            "partition": null,
            "first_offset": null,
            "last_offset": null,
            "records": null,
            "stored_bytes": stored_bytes,
            "status": "corrupted",
            "reason": reason.to_string(),
        }),
    }
}

/// One JSON document, written element by element so it never sits in
/// memory whole.
fn inspect_json(
    wal: &Wal,
    page: usize,
    records: bool,
    listing: &mut Listing,
    out: &mut impl Write,
) -> Result<(), Failure> {
    say!(
        out,
        "{{\"dir\": {}, \"next_position\": {},\n\"entries\": [",
        json!(wal.dir().display().to_string()),
        wal.next_position()
    );
    let mut separator = "";
    for_each_entry(wal, page, |entry| {
        listing.add(entry);
        say!(out, "{separator}{}", json_entry(entry, records));
        separator = ",";
        Ok(())
    })?;
    say!(out, "],\n\"quarantined\": [");
    separator = "";
    for_each_quarantined(wal, |position, raw| {
        listing.add_quarantined(raw);
        let reason = decode_frame(raw).err().map(|r| r.to_string());
        say!(
            out,
            "{separator}{}",
            json!({ "position": position, "stored_bytes": raw.len(), "reason": reason })
        );
        separator = ",";
        Ok(())
    })?;
    let partitions: Vec<serde_json::Value> = listing
        .partitions
        .iter()
        .map(|(tp, p)| {
            let (first, last) = p.offsets.unzip();
            json!({
                "topic": tp.topic,
                "partition": tp.partition,
                "entries": p.entries,
                "records": p.records,
                "stored_bytes": p.bytes,
                "first_offset": first,
                "last_offset": last,
            })
        })
        .collect();
    let totals = json!({
        "entries": listing.entries,
        "records": listing.records,
        "stored_bytes": listing.bytes,
        "corrupted": listing.corrupted,
        "quarantined": listing.quarantined,
        "quarantined_bytes": listing.quarantined_bytes,
    });
    say!(
        out,
        "],\n\"totals\": {totals},\n\"partitions\": {}}}",
        serde_json::Value::Array(partitions)
    );
    Ok(())
}

/// One broken rule, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Problem {
    #[error("position {position}: CORRUPTED: {reason}")]
    Corrupted {
        position: WalPosition,
        reason: CorruptionReason,
    },
    #[error("position {position}: {tp}: empty batch (append refuses those)")]
    EmptyBatch {
        position: WalPosition,
        tp: TopicPartition,
    },
    #[error("position {position}: {tp}: negative offset {offset}")]
    NegativeOffset {
        position: WalPosition,
        tp: TopicPartition,
        offset: i64,
    },
    #[error("position {position}: {tp}: offset {offset} follows offset {previous} inside the batch (offsets must strictly increase)")]
    OffsetsNotIncreasing {
        position: WalPosition,
        tp: TopicPartition,
        previous: i64,
        offset: i64,
    },
    #[error("position {position}: {tp}: batch starts at offset {first}, not after offset {previous_last} of position {previous_position} (a partition's batches follow each other in position order)")]
    PartitionGoesBack {
        position: WalPosition,
        tp: TopicPartition,
        first: i64,
        previous_position: WalPosition,
        previous_last: i64,
    },
    #[error(
        "position {position}: read after position {previous} (positions must strictly increase)"
    )]
    PositionsOutOfOrder {
        position: WalPosition,
        previous: WalPosition,
    },
    #[error("position {position}: at or past the next position {next} (only appended positions are below it)")]
    PastNextPosition {
        position: WalPosition,
        next: WalPosition,
    },
    #[error("quarantined position {position}: still among the live entries too (quarantine moves an entry)")]
    QuarantinedAndLive { position: WalPosition },
    #[error("quarantined position {position}: at or past the next position {next} (positions are never reused)")]
    QuarantinedPastNext {
        position: WalPosition,
        next: WalPosition,
    },
}

/// The rules between live entries, fed in position order. Holds one
/// (position, last offset) per partition, nothing per entry.
struct Checker {
    next_position: WalPosition,
    previous: Option<WalPosition>,
    last_by_partition: BTreeMap<TopicPartition, (WalPosition, i64)>,
}

impl Checker {
    fn new(next_position: WalPosition) -> Checker {
        Checker {
            next_position,
            previous: None,
            last_by_partition: BTreeMap::new(),
        }
    }

    fn check(&mut self, entry: &WalEntry) -> Vec<Problem> {
        let mut problems = Vec::new();
        let position = entry.position();
        if let Some(previous) = self.previous {
            if position <= previous {
                problems.push(Problem::PositionsOutOfOrder { position, previous });
            }
        }
        self.previous = Some(position);
        if position >= self.next_position {
            problems.push(Problem::PastNextPosition {
                position,
                next: self.next_position,
            });
        }
        let batch = match entry {
            WalEntry::Valid { batch, .. } => batch,
            WalEntry::Corrupted { reason, .. } => {
                // Its partition is unknown, so it takes no part in the
                // ordering rules.
                problems.push(Problem::Corrupted {
                    position,
                    reason: reason.clone(),
                });
                return problems;
            }
        };
        let tp = tp_of(batch);
        let Some((first, last)) = first_last(batch) else {
            problems.push(Problem::EmptyBatch { position, tp });
            return problems;
        };
        let mut previous_offset: Option<i64> = None;
        for r in &batch.records {
            if r.offset < 0 {
                problems.push(Problem::NegativeOffset {
                    position,
                    tp: tp.clone(),
                    offset: r.offset,
                });
            }
            if let Some(previous) = previous_offset {
                if r.offset <= previous {
                    problems.push(Problem::OffsetsNotIncreasing {
                        position,
                        tp: tp.clone(),
                        previous,
                        offset: r.offset,
                    });
                }
            }
            previous_offset = Some(r.offset);
        }
        if let Some(&(previous_position, previous_last)) = self.last_by_partition.get(&tp) {
            if first <= previous_last {
                problems.push(Problem::PartitionGoesBack {
                    position,
                    tp: tp.clone(),
                    first,
                    previous_position,
                    previous_last,
                });
            }
        }
        // Later batches are compared with the furthest offset seen, so one
        // bad batch does not hide (or fake) problems in the next.
        let furthest = match self.last_by_partition.get(&tp) {
            Some(&(p, l)) if l >= last => (p, l),
            _ => (position, last),
        };
        self.last_by_partition.insert(tp, furthest);
        problems
    }
}

fn verify(wal: &Wal, page: usize, out: &mut impl Write) -> Result<(), Failure> {
    let next = wal.next_position();
    let mut checker = Checker::new(next);
    let mut listing = Listing::default();
    let mut problems = 0u64;
    for_each_entry(wal, page, |entry| {
        listing.add(entry);
        for problem in checker.check(entry) {
            problems += 1;
            say!(out, "{problem}");
        }
        Ok(())
    })?;
    for_each_quarantined(wal, |position, raw| {
        listing.add_quarantined(raw);
        let mut found = Vec::new();
        if position >= next {
            found.push(Problem::QuarantinedPastNext { position, next });
        }
        let live = wal.read_from(position, 1).map_err(Failure::runtime)?;
        if live.first().map(WalEntry::position) == Some(position) {
            found.push(Problem::QuarantinedAndLive { position });
        }
        for problem in found {
            problems += 1;
            say!(out, "{problem}");
        }
        Ok(())
    })?;
    say!(
        out,
        "checked {} entries ({} records, {} bytes) and {} quarantined entries in {}; next position {next}",
        listing.entries,
        listing.records,
        listing.bytes,
        listing.quarantined,
        wal.dir().display()
    );
    if problems == 0 {
        say!(out, "WAL is sound");
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "the WAL in {} failed verification: {problems} problem(s), each named on stdout",
            wal.dir().display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn valid(position: WalPosition, partition: i32, offsets: &[i64]) -> WalEntry {
        WalEntry::Valid {
            position,
            batch: Batch {
                topic: "orders".into(),
                partition,
                records: offsets
                    .iter()
                    .map(|&offset| Record {
                        offset,
                        timestamp: None,
                        key: None,
                        value: Some(vec![1]),
                        headers: vec![],
                    })
                    .collect(),
            },
            stored_bytes: 20,
        }
    }

    fn check_all(entries: &[WalEntry]) -> Vec<Problem> {
        let mut checker = Checker::new(100);
        entries.iter().flat_map(|e| checker.check(e)).collect()
    }

    #[test]
    fn interleaved_partitions_each_moving_forward_are_sound() {
        let problems = check_all(&[
            valid(0, 0, &[0, 1, 2]),
            valid(1, 1, &[0, 5]),
            valid(2, 0, &[3, 7]),
            WalEntry::Corrupted {
                position: 3,
                reason: CorruptionReason::TooShort { len: 1 },
                stored_bytes: 1,
            },
            valid(4, 1, &[6]),
        ]);
        assert_eq!(
            problems,
            vec![Problem::Corrupted {
                position: 3,
                reason: CorruptionReason::TooShort { len: 1 }
            }]
        );
    }

    #[test]
    fn a_batch_that_goes_back_in_its_partition_is_named_with_the_one_before() {
        let problems = check_all(&[
            valid(0, 0, &[0, 1, 2]),
            valid(1, 1, &[0]),
            valid(2, 0, &[2, 3]),
        ]);
        assert_eq!(
            problems,
            vec![Problem::PartitionGoesBack {
                position: 2,
                tp: TopicPartition::new("orders", 0),
                first: 2,
                previous_position: 0,
                previous_last: 2,
            }]
        );
    }

    #[test]
    fn offsets_inside_a_batch_must_strictly_increase() {
        let problems = check_all(&[valid(0, 0, &[4, 4, 3])]);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| matches!(p, Problem::OffsetsNotIncreasing { position: 0, .. })));
    }

    #[test]
    fn empty_batches_negative_offsets_and_positions_past_next_are_named() {
        let problems = check_all(&[valid(5, 0, &[]), valid(6, 1, &[-1]), valid(100, 2, &[0])]);
        assert!(matches!(
            problems[0],
            Problem::EmptyBatch { position: 5, .. }
        ));
        assert!(matches!(
            problems[1],
            Problem::NegativeOffset {
                position: 6,
                offset: -1,
                ..
            }
        ));
        assert!(matches!(
            problems[2],
            Problem::PastNextPosition {
                position: 100,
                next: 100
            }
        ));
        assert_eq!(problems.len(), 3, "{problems:?}");
    }
}
