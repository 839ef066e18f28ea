//! `kafka-relay verify`: compares a source range with the target (see
//! `crate::verify` for the rules) and prints a table per partition, or JSON
//! with `--json`. Exit 0 when nothing is missing, duplicated or differing
//! (records lost at the source or deleted at the target are shown and do
//! not fail), 1 otherwise or when a cluster cannot be read, 2 for a bad
//! configuration.
//!
//! When the WAL directory can be opened (the relay is stopped), the report
//! also says how many records of the range sit in the dead-letter queue:
//! they count as missing, by design, until `dlq replay` delivers them, and
//! never as deleted at the target.

use std::io::IsTerminal as _;
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::Failure;
use crate::config::Config;
use crate::dlq::{DeadLetter, DeadLetters};
use crate::record::TopicPartition;
use crate::verify::{self, Bound, Options, Report, SourceGap};
use crate::wal::Wal;

#[derive(Args)]
pub struct VerifyArgs {
    /// Start of the source range, inclusive, for every partition: an offset,
    /// or `ts:<ms since the epoch>` for the first record at or after that
    /// time. Default: the oldest record.
    #[arg(long)]
    from: Option<Bound>,
    /// End of the source range, exclusive, same forms as `--from`.
    /// Default: the end of each partition when verify starts.
    #[arg(long)]
    to: Option<Bound>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Example offsets listed per kind of difference and partition.
    #[arg(long, default_value_t = 10)]
    examples: usize,
}

/// Dead letters of the verified ranges, if the WAL could be looked at.
#[derive(Serialize)]
struct DeadLetterNote {
    /// False when the WAL could not be opened (relay running, no WAL yet).
    checked: bool,
    in_range: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_checked_because: Option<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a Report,
    dead_letters: &'a DeadLetterNote,
}

pub async fn verify(config: Config, args: VerifyArgs) -> Result<(), Failure> {
    tokio::task::spawn_blocking(move || run(&config, &args))
        .await
        .map_err(Failure::runtime)?
}

fn run(config: &Config, args: &VerifyArgs) -> Result<(), Failure> {
    let letters = dead_letters(config);
    let options = Options {
        from: args.from,
        to: args.to,
        examples: args.examples,
        dead_letters: letters
            .iter()
            .flatten()
            .map(|l| {
                (
                    TopicPartition::new(l.topic.clone(), l.partition),
                    l.record.offset,
                )
            })
            .collect(),
    };
    let progress = progress_bar();
    let report = verify::verify(config, &options, &progress).map_err(Failure::runtime)?;
    let dead = dead_letter_note(letters, &report);
    if args.json {
        let json = JsonReport {
            report: &report,
            dead_letters: &dead,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&json).map_err(Failure::runtime)?
        );
    } else {
        print!("{}", render(&report, &dead));
    }
    if report.passed() {
        Ok(())
    } else {
        let t = &report.totals;
        let mut message = format!(
            "verify failed: {} missing, {} duplicated, {} differing (of {} source records)",
            t.missing, t.duplicated, t.differing, t.records
        );
        if t.lost_at_source > 0 || t.deleted_at_target > 0 {
            message += &format!(
                "; not failures: {} lost at source, {} deleted at target",
                t.lost_at_source, t.deleted_at_target
            );
        }
        Err(Failure { message, code: 1 })
    }
}

const PROGRESS_TEMPLATE: &str =
    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} offsets ({eta}) {msg}";

/// On stderr, and only for a person watching: hidden when stderr is not a
/// terminal, so logs and CI output stay clean.
fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(PROGRESS_TEMPLATE) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// The dead letters, read before the audit and closed again at once: sled
/// locks the WAL, so this only works while the relay is stopped, and keeps
/// a relay from starting while it lasts.
fn dead_letters(config: &Config) -> Result<Vec<DeadLetter>, String> {
    Wal::open_existing_with_key(&config.wal.dir, config.wal_options(), config.wal_key())
        .map_err(|e| e.to_string())
        .and_then(|wal| DeadLetters::open(&wal).map_err(|e| e.to_string()))
        .and_then(|store| store.list().map_err(|e| e.to_string()))
}

/// Counts the dead letters inside the verified ranges; or says why the
/// queue was not checked.
fn dead_letter_note(letters: Result<Vec<DeadLetter>, String>, report: &Report) -> DeadLetterNote {
    let not_checked = |why: String| DeadLetterNote {
        checked: false,
        in_range: 0,
        not_checked_because: Some(why),
    };
    match letters {
        Ok(letters) => DeadLetterNote {
            checked: true,
            in_range: letters
                .iter()
                .filter(|l| {
                    report.partitions.iter().any(|p| {
                        p.topic == l.topic
                            && p.partition == l.partition
                            && (p.from..p.to).contains(&l.record.offset)
                    })
                })
                .count() as u64,
            not_checked_because: None,
        },
        Err(why) => not_checked(why),
    }
}

fn render(report: &Report, dead: &DeadLetterNote) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "format {}, partitioning {}",
        report.format, report.partitioning
    );
    // The three that fail the audit first, then the two that do not.
    let _ = writeln!(
        out,
        "\n{:<30} {:>5} {:>23} {:>9} {:>9} {:>9} {:>10} {:>9} {:>14} {:>17}",
        "source topic",
        "part",
        "range",
        "records",
        "matched",
        "missing",
        "duplicated",
        "differing",
        "lost at source",
        "deleted at target"
    );
    // One row layout for the partitions and the total.
    let mut row = |topic: &str, part: String, range: String, records: u64, counts: [u64; 6]| {
        let [matched, missing, duplicated, differing, lost, deleted] = counts;
        let _ = writeln!(
            out,
            "{topic:<30} {part:>5} {range:>23} {records:>9} {matched:>9} {missing:>9} {duplicated:>10} {differing:>9} {lost:>14} {deleted:>17}",
        );
    };
    for p in &report.partitions {
        let t = &p.tally;
        row(
            &p.topic,
            p.partition.to_string(),
            format!("[{}, {})", p.from, p.to),
            p.records,
            [
                t.matched,
                t.missing,
                t.duplicated,
                t.differing,
                t.lost_at_source,
                t.deleted_at_target,
            ],
        );
    }
    let t = &report.totals;
    row(
        "total",
        String::new(),
        String::new(),
        t.records,
        [
            t.matched,
            t.missing,
            t.duplicated,
            t.differing,
            t.lost_at_source,
            t.deleted_at_target,
        ],
    );
    let _ = writeln!(
        out,
        "\n{:<30} {:>12} {:>9} {:>9}  cleanup.policy",
        "target topic", "partitions", "records", "other"
    );
    for target in &report.targets {
        let parts: Vec<String> = target
            .partitions
            .iter()
            .map(|r| r.partition.to_string())
            .collect();
        let _ = writeln!(
            out,
            "{:<30} {:>12} {:>9} {:>9}  {}",
            target.topic,
            parts.join(","),
            target.records,
            target.other,
            target.cleanup_policy.as_deref().unwrap_or("unknown")
        );
    }
    let mut examples = String::new();
    for p in &report.partitions {
        let e = &p.tally.examples;
        let tp = format!("{}/{}", p.topic, p.partition);
        for (label, offsets) in [
            ("missing source offsets", &e.missing),
            ("deleted at target, source offsets", &e.deleted_at_target),
        ] {
            if !offsets.is_empty() {
                let list: Vec<String> = offsets.iter().map(i64::to_string).collect();
                let _ = writeln!(examples, "  {tp}: {label} {}", list.join(", "));
            }
        }
        if !e.lost_at_source.is_empty() {
            let list: Vec<String> = e.lost_at_source.iter().map(gap_range).collect();
            let _ = writeln!(
                examples,
                "  {tp}: lost at source, as the relay recorded {}",
                list.join(", ")
            );
        }
        for (kind, pairs) in [("duplicated", &e.duplicated), ("differing", &e.differing)] {
            if !pairs.is_empty() {
                let list: Vec<String> = pairs
                    .iter()
                    .map(|x| {
                        format!(
                            "{} -> {}/{}",
                            x.source_offset, x.target_partition, x.target_offset
                        )
                    })
                    .collect();
                let _ = writeln!(
                    examples,
                    "  {tp}: {kind} (source offset -> target partition/offset) {}",
                    list.join(", ")
                );
            }
        }
    }
    if !examples.is_empty() {
        let _ = write!(out, "\nexamples:\n{examples}");
    }
    if t.lost_at_source > 0 {
        let _ = writeln!(
            out,
            "\n{} source offset(s) were lost at the source: deleted there before the relay read them, as the relay recorded when it found them; they do not fail the audit",
            t.lost_at_source
        );
    }
    if t.deleted_at_target > 0 {
        let _ = writeln!(
            out,
            "\n{} record(s) the relay delivered were deleted by the target since (retention, DeleteRecords or compaction); they do not fail the audit",
            t.deleted_at_target
        );
        if !dead.checked {
            let _ = writeln!(
                out,
                "(the dead-letter queue was not checked: a dead letter the relay moved past could be among them)"
            );
        }
    }
    if t.other > 0 {
        let _ = writeln!(
            out,
            "\n{} target record(s) match nothing in the range (older data, records after the snapshot, or another writer); they do not fail the audit",
            t.other
        );
    }
    match dead {
        DeadLetterNote {
            checked: true,
            in_range,
            ..
        } if *in_range > 0 => {
            let _ = writeln!(
                out,
                "\n{in_range} record(s) of the range are in the dead-letter queue and count as missing: see `kafka-relay dlq list`"
            );
        }
        DeadLetterNote {
            checked: false,
            not_checked_because: Some(why),
            ..
        } => {
            let _ = writeln!(out, "\ndead-letter queue not checked ({why})");
        }
        _ => {
            let _ = writeln!(out, "\ndead-letter queue: no record of the range");
        }
    }
    let cp = &report.relay_checkpoints;
    match &cp.not_read_because {
        None => {
            let _ = writeln!(
                out,
                "relay checkpoints ({}): {} partition(s), {} recorded source gap(s)",
                cp.topic, cp.partitions, cp.gaps
            );
        }
        Some(why) => {
            let _ = writeln!(
                out,
                "relay checkpoints ({}) not read ({why}): nothing counts as lost at source or deleted at target",
                cp.topic
            );
        }
    }
    for target in &report.targets {
        if let Some(why) = &target.cleanup_policy_unknown_because {
            let _ = writeln!(
                out,
                "cleanup.policy of {} unknown ({why}): no record counts as compacted away",
                target.topic
            );
        }
    }
    if report.passed() {
        let _ = writeln!(
            out,
            "\nverify passed: every source record{} is on the target exactly once{}",
            if t.lost_at_source > 0 {
                " the relay could copy"
            } else {
                ""
            },
            if t.deleted_at_target > 0 {
                ", or was deleted by the target after delivery"
            } else {
                ""
            }
        );
    } else {
        let _ = writeln!(out, "\nverify FAILED");
    }
    out
}

/// `[from, to) cause`; a gap with no end is `[from, ...)`.
fn gap_range(gap: &SourceGap) -> String {
    let to = gap.to.map_or("...".to_string(), |t| t.to_string());
    format!("[{}, {to}) {}", gap.from, gap.cause.label())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_progress_template_is_valid() {
        // An invalid one would silently fall back to indicatif's default.
        assert!(indicatif::ProgressStyle::with_template(super::PROGRESS_TEMPLATE).is_ok());
    }
}
