//! `kafka-relay dlq list | show | replay | purge`: the dead-letter queue, from
//! the command line. All of them open the WAL directory, so they run while
//! the relay is stopped (sled holds an exclusive lock on it).
//!
//! `replay` sends dead letters to the target with the relay's own
//! transactional producer, one transaction per record together with a replay
//! marker in the checkpoint topic: a replay cut short and run again never
//! delivers a record twice.

use std::sync::atomic::AtomicBool;

use clap::Subcommand;

use super::Failure;
use crate::config::Config;
use crate::dlq::{DeadLetter, DeadLetters};
use crate::ops::Shared;
use crate::shipper::Shipper;
use crate::wal::Wal;

#[derive(Subcommand)]
pub enum DlqAction {
    /// One line per dead letter: id, size, reason.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One dead letter in full.
    Show { id: String },
    /// Send dead letters to the target again (exactly once), then remove them.
    Replay {
        /// Ids (`topic/partition/offset`); none means all.
        ids: Vec<String>,
    },
    /// Remove dead letters without sending them.
    Purge {
        ids: Vec<String>,
        /// Remove every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

pub async fn dlq(config: Config, action: DlqAction) -> Result<(), Failure> {
    tokio::task::spawn_blocking(move || run(&config, action))
        .await
        .map_err(Failure::runtime)?
}

fn open(config: &Config) -> Result<(Wal, DeadLetters), Failure> {
    let wal = super::open_stopped_wal(config)?;
    let letters = DeadLetters::open(&wal).map_err(Failure::runtime)?;
    Ok((wal, letters))
}

fn run(config: &Config, action: DlqAction) -> Result<(), Failure> {
    let (wal, store) = open(config)?;
    match action {
        DlqAction::List { json } => {
            let all = store.list().map_err(Failure::runtime)?;
            if json {
                let rows: Vec<serde_json::Value> = all.iter().map(summary).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!("{:<40} {:>10}  reason", "id", "bytes");
                for l in &all {
                    println!(
                        "{:<40} {:>10}  {}",
                        l.id(),
                        l.record.payload_len(),
                        l.reason
                    );
                }
                println!("{} dead letter(s)", all.len());
            }
        }
        DlqAction::Show { id } => {
            let letter = store
                .get(&id)
                .map_err(Failure::runtime)?
                .ok_or_else(|| Failure::runtime(format!("no dead letter {id}")))?;
            let mut detail = summary(&letter);
            detail["key"] = preview(letter.record.key.as_deref());
            detail["value"] = preview(letter.record.value.as_deref());
            detail["timestamp"] = letter.record.timestamp.into();
            detail["headers"] = letter
                .record
                .headers
                .iter()
                .map(|h| serde_json::json!({ "key": h.key, "value": preview(h.value.as_deref()) }))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&detail).map_err(Failure::runtime)?
            );
        }
        DlqAction::Purge { ids, all } => {
            let removed = if all {
                store.purge().map_err(Failure::runtime)?
            } else {
                let mut n = 0;
                for id in &ids {
                    if store.remove(id).map_err(Failure::runtime)? {
                        n += 1;
                    } else {
                        eprintln!("no dead letter {id}");
                    }
                }
                n
            };
            println!("purged {removed} dead letter(s)");
        }
        DlqAction::Replay { ids } => {
            let mut letters = store.list().map_err(Failure::runtime)?;
            if !ids.is_empty() {
                letters.retain(|l| ids.contains(&l.id()));
                if letters.len() != ids.len() {
                    return Err(Failure::runtime(
                        "some of those ids are not in the dead-letter queue (see `dlq list`)",
                    ));
                }
            }
            drop(store);
            let stop = AtomicBool::new(false);
            let mut shipper = Shipper::connect(config, wal, Shared::new(false), &stop)
                .map_err(Failure::runtime)?;
            let report = shipper.replay(&letters).map_err(Failure::runtime)?;
            println!(
                "replayed {} dead letter(s); {} were already on the target from an earlier replay and were only removed",
                report.replayed, report.already_replayed
            );
        }
    }
    Ok(())
}

fn summary(l: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "id": l.id(),
        "topic": l.topic,
        "partition": l.partition,
        "offset": l.record.offset,
        "bytes": l.record.payload_len(),
        "reason": l.reason,
        "attempts": l.attempts,
        "at_ms": l.at_ms,
    })
}

/// Text for UTF-8 bytes (first 200 characters), else a size.
fn preview(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        None => serde_json::Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => s.chars().take(200).collect::<String>().into(),
            Err(_) => format!("<{} bytes, not UTF-8>", b.len()).into(),
        },
    }
}
