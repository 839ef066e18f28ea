//! `kafka-relay offsets translate --group G [--write [--force]] [--json]`:
//! a consumer group's committed source offsets, translated to the target
//! with the offset map (`offsets`), for a one-off cut-over.
//!
//! Prints one line per partition: source offset, target offset (or why
//! there is none), and what the target group holds now. `--write` commits
//! the exact translations that are ahead of the target group's offsets
//! (all exact ones with `--force`); it refuses a group with members on the
//! target. The relay may keep running meanwhile.
//!
//! Called by `cli::main`. Exit codes: 0 every partition translated exactly
//! (and written, with `--write`); 1 a partition was not (ahead of the relay,
//! older than the map, unmapped) or a cluster failed; 2 configuration.

use std::io::Write;

use clap::Subcommand;
use serde_json::json;

use super::Failure;
use crate::config::Config;
use crate::offsets::groups::{self, Row};
use crate::offsets::translate::Translation;

#[derive(Subcommand)]
pub enum OffsetsAction {
    /// Translate a consumer group's committed source offsets to the target.
    Translate {
        /// The consumer group (the same name on both clusters).
        #[arg(long)]
        group: String,
        /// Commit the translations to the group on the target.
        #[arg(long)]
        write: bool,
        /// With --write: also move target offsets backwards.
        #[arg(long, requires = "write")]
        force: bool,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub async fn offsets(config: Config, action: OffsetsAction) -> Result<(), Failure> {
    tokio::task::spawn_blocking(move || run(&config, action))
        .await
        .map_err(Failure::runtime)?
}

fn run(config: &Config, action: OffsetsAction) -> Result<(), Failure> {
    let OffsetsAction::Translate {
        group,
        write,
        force,
        json,
    } = action;
    let rows = groups::translate_groups(config, std::slice::from_ref(&group))
        .map_err(Failure::runtime)?
        .pop()
        .unwrap_or_default();
    let written = if write {
        Some(groups::write(config, &group, &rows, force).map_err(Failure::runtime)?)
    } else {
        None
    };
    let mut out = std::io::stdout().lock();
    let printed = if json {
        print_json(&mut out, &group, &rows, written)
    } else {
        print_text(&mut out, &group, &rows, written)
    };
    printed.map_err(|e| Failure::runtime(format!("cannot write to stdout: {e}")))?;
    let untranslated = rows
        .iter()
        .filter(|r| !matches!(r.translation, Translation::Exact(_)))
        .count();
    if rows.is_empty() {
        return Err(Failure::runtime(format!(
            "consumer group {group} has no committed offsets on the source for the topics the relay copies"
        )));
    }
    if untranslated > 0 {
        return Err(Failure::runtime(format!(
            "{untranslated} of {} partitions of {group} not translated exactly (see above){}",
            rows.len(),
            if write {
                "; those were not written"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// Words for a translation, for people.
fn describe(t: Translation) -> String {
    match t {
        Translation::Exact(o) => o.to_string(),
        Translation::Ahead { copied_to } => {
            format!("none yet: the relay has copied up to source offset {copied_to} only")
        }
        Translation::TooOld { oldest } => {
            format!("none: older than the offset map, which starts at source offset {oldest}")
        }
        Translation::Unmapped => "none: the offset map has no record of this partition".into(),
    }
}

fn print_text(
    out: &mut impl Write,
    group: &str,
    rows: &[Row],
    written: Option<usize>,
) -> std::io::Result<()> {
    writeln!(out, "consumer group {group}")?;
    for r in rows {
        let now = r
            .target_offset_now
            .map_or_else(|| "none".to_string(), |o| o.to_string());
        writeln!(
            out,
            "  {} source {} -> target {} {} (target group now: {now})",
            r.source,
            r.source_offset,
            r.target,
            describe(r.translation)
        )?;
    }
    if let Some(n) = written {
        writeln!(out, "written: {n} partition(s) moved on the target")?;
    }
    Ok(())
}

fn print_json(
    out: &mut impl Write,
    group: &str,
    rows: &[Row],
    written: Option<usize>,
) -> std::io::Result<()> {
    let partitions: Vec<_> = rows
        .iter()
        .map(|r| {
            let (target_offset, reason) = match r.translation {
                Translation::Exact(o) => (Some(o), None),
                t => (None, Some(describe(t))),
            };
            json!({
                "topic": r.source.topic,
                "partition": r.source.partition,
                "source_offset": r.source_offset,
                "target_topic": r.target.topic,
                "target_offset": target_offset,
                "not_translated": reason,
                "target_group_offset": r.target_offset_now,
            })
        })
        .collect();
    let doc = json!({ "group": group, "partitions": partitions, "written": written });
    writeln!(out, "{doc}")
}
