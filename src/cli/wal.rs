//! `kafka-relay wal inspect | verify`: the write-ahead log, offline.
//!
//! `inspect` lists every entry in position order (partition, source offsets,
//! record count, stored bytes, status), then the quarantined entries, then
//! totals. `verify` checks every entry's frame (version, crc32, decode) and
//! the WAL invariants that hold across entries, and exits 1 naming each bad
//! entry. The walk and the checks are `wal::check`'s; this module prints
//! what they hand it and turns their errors into messages.
//!
//! Both open the WAL with [`Wal::open_existing_with_key`] (with the `wal.encryption_key_file`
//! key, if set). sled 0.34 cannot open read-only, so
//! opening takes the directory's exclusive lock: while a relay runs, the
//! command waits [`crate::wal::LOCK_WAIT`] and then fails with "the WAL at …
//! is in use: stop the relay first".
//!
//! Invariants:
//! - Neither command changes the WAL: no append, ack or quarantine (the
//!   relay's start-up quarantines; these only report). A missing WAL is an
//!   error, never silently created.
//! - Memory is bounded by one page of decoded entries ([`page_len`]) plus
//!   per-partition totals, whatever the WAL's size (`wal::check` walks the
//!   WAL a page at a time), and the output (JSON included) is streamed:
//!   each entry is printed as it is handed over.
//! - Record contents (keys, values, headers) are never printed, only sizes:
//!   they may be sensitive.
//!
//! Called by `cli::main`. Exit codes: 0 success; 1 `verify` found a problem
//! or the WAL is unusable (missing, in use, unreadable); 2 configuration.

use std::io::{self, BufWriter, Write};

use clap::Subcommand;
use serde_json::json;

use super::Failure;
use crate::config::Config;
use crate::record::Batch;
use crate::wal::check::{first_last, page_len, tp_of, Listing};
use crate::wal::{Wal, WalEntry, WalPosition};

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

fn output_failed(e: io::Error) -> Failure {
    Failure::runtime(format!("cannot write the output: {e}"))
}

/// `writeln!` whose failure (a closed pipe, a full disk) ends the command.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).map_err(output_failed)?
    };
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
    wal.list_entries::<Failure>(page, listing, |entry| {
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
    wal.list_quarantined::<Failure>(listing, |position, raw| {
        let bytes = raw.len() as u64;
        match wal.decode(raw) {
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
    wal.list_entries::<Failure>(page, listing, |entry| {
        say!(out, "{separator}{}", json_entry(entry, records));
        separator = ",";
        Ok(())
    })?;
    say!(out, "],\n\"quarantined\": [");
    separator = "";
    wal.list_quarantined::<Failure>(listing, |position, raw| {
        let reason = wal.decode(raw).err().map(|r| r.to_string());
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

fn verify(wal: &Wal, page: usize, out: &mut impl Write) -> Result<(), Failure> {
    let next = wal.next_position();
    let mut problems = 0u64;
    let listing = wal.check_entries::<Failure>(page, |problem| {
        problems += 1;
        say!(out, "{problem}");
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
