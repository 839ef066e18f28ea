//! The WAL alone against the disk under it, in one run, in one directory.
//!
//! For each record size, batches are shaped as kafka-relay's defaults shape
//! them (`batch.max_records` 500, `batch.max_bytes` 1 MiB). The WAL side
//! appends batches (each append returns after its fsync) and acknowledges
//! them sixteen at a time, as the shipper acks once per transaction (an ack
//! is not fsync'd; one that drains a segment fsyncs sled before retiring
//! it), after 128 MiB appended and acked unmeasured, so that it writes over
//! spare segments as a relay that has been running does. The disk side
//! writes the same number of bytes per fsync to a plain file with `write` +
//! `fdatasync`, the fastest a log that fsyncs each batch could go: into a
//! new file, and over a file already written,
//! in a ring of two WAL segments (128 MiB), which is what the WAL does once
//! it reuses drained segments; and once more in 8 MiB chunks into a new
//! file, the disk's sequential fsync'd bandwidth.
//!
//! The WAL side runs twice per round: plain, and encrypted
//! (`wal.encryption_key_file` set: every frame sealed with
//! XChaCha20-Poly1305 under a fresh nonce), each with the CPU time the
//! process spent (user + system, all its threads) per GiB of payload.

use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::Instant;

use kafka_relay::record::{Batch, Record};
use kafka_relay::wal::{Wal, WalKey, WalOptions};

use crate::{measure, mib, say};

pub struct Row {
    pub size: usize,
    pub records_per_batch: usize,
    pub batch_bytes: usize,
    /// MiB/s of record payload through append + fsync + ack.
    pub wal: f64,
    /// MiB/s of the same bytes per fsync to a new plain file.
    pub disk_same_chunks: f64,
    /// The same, over a file already written, in a ring of `RING` bytes.
    pub disk_same_chunks_ring: f64,
    /// MiB/s in 8 MiB fsync'd chunks.
    pub disk_large_chunks: f64,
    /// Bytes the WAL's process wrote to the block device per payload byte.
    pub write_amplification: f64,
    /// MiB/s as `wal`, with `wal.encryption_key_file` set.
    pub wal_encrypted: f64,
    /// CPU seconds (user + system) of the process per GiB of payload, plain.
    pub cpu_plain: f64,
    /// The same, encrypted.
    pub cpu_encrypted: f64,
}

const BATCH_MAX_RECORDS: usize = 500;
const BATCH_MAX_BYTES: usize = 1 << 20;
const ACK_EVERY: usize = 16;
const LARGE_CHUNK: usize = 8 << 20;
/// Two of the WAL's largest segments.
const RING: usize = 128 << 20;

/// Each figure is the median of `ROUNDS` runs, the WAL and the disk
/// measured in turn within each round: a virtual disk's speed drifts by
/// several times within minutes, and alternating keeps the comparison fair.
const ROUNDS: usize = 3;

pub fn run(dir: &Path, bytes: u64, sizes: &[usize]) -> Vec<Row> {
    sizes
        .iter()
        .map(|&size| {
            let records_per_batch = BATCH_MAX_RECORDS.min((BATCH_MAX_BYTES / size).max(1));
            let batch_bytes = records_per_batch * size;
            let batches = (bytes as usize / batch_bytes).max(ACK_EVERY);
            let large_chunks = (batches * batch_bytes / LARGE_CHUNK).max(1);
            let (mut wal, mut amplification, mut same, mut ring, mut large) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let (mut sealed, mut cpu_plain, mut cpu_sealed) = (Vec::new(), Vec::new(), Vec::new());
            let key = WalKey::from_bytes([0x42; 32]);
            for _ in 0..ROUNDS {
                let (rate, amp, cpu) = wal_rate(dir, size, records_per_batch, batches, None);
                wal.push(rate);
                amplification.push(amp);
                cpu_plain.push(cpu);
                let (rate, _, cpu) =
                    wal_rate(dir, size, records_per_batch, batches, Some(key.clone()));
                sealed.push(rate);
                cpu_sealed.push(cpu);
                same.push(disk_rate(dir, batch_bytes, batches, None));
                ring.push(disk_rate(dir, batch_bytes, batches, Some(RING)));
                large.push(disk_rate(dir, LARGE_CHUNK, large_chunks, None));
            }
            let row = Row {
                size,
                records_per_batch,
                batch_bytes,
                wal: median(wal),
                disk_same_chunks: median(same),
                disk_same_chunks_ring: median(ring),
                disk_large_chunks: median(large),
                write_amplification: median(amplification),
                wal_encrypted: median(sealed),
                cpu_plain: median(cpu_plain),
                cpu_encrypted: median(cpu_sealed),
            };
            say(format!(
                "{size} B records, {records_per_batch} per batch: WAL {:.1} MiB/s ({:.2} CPU s/GiB), encrypted {:.1} MiB/s ({:.2} CPU s/GiB)",
                row.wal, row.cpu_plain, row.wal_encrypted, row.cpu_encrypted
            ));
            say(format!(
                "{size} B records, {records_per_batch} per batch: WAL {:.1} MiB/s, disk {:.1} MiB/s in the same chunks ({:.1} over a written file), {:.1} MiB/s in 8 MiB chunks (medians of {ROUNDS})",
                row.wal, row.disk_same_chunks, row.disk_same_chunks_ring, row.disk_large_chunks
            ));
            row
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Payload MiB/s through a WAL (encrypted with `key` if given) that has
/// written `RING` bytes before (its spare segments), its bytes written per
/// payload byte, and the process's CPU seconds per GiB of payload.
fn wal_rate(
    dir: &Path,
    size: usize,
    records_per_batch: usize,
    batches: usize,
    key: Option<WalKey>,
) -> (f64, f64, f64) {
    let wal_dir = tempfile::tempdir_in(dir).expect("WAL dir");
    let wal = Wal::open_with_key(
        wal_dir.path(),
        WalOptions {
            max_bytes: u64::MAX,
        },
        key,
    )
    .expect("open WAL");
    // One batch, renumbered each time: the clock times the WAL, not the
    // allocation of test data.
    let mut batch = Batch {
        topic: "bench".to_string(),
        partition: 0,
        records: (0..records_per_batch)
            .map(|_| Record {
                offset: 0,
                timestamp: Some(0),
                key: None,
                value: Some(vec![0x5au8; size]),
                headers: Vec::new(),
            })
            .collect(),
    };
    // Unmeasured: `RING` bytes appended and acked first, so the WAL has
    // the spare segments a running relay has, as the ring file is written
    // before its loop (a WAL's first segments are new files).
    let warm_up = (RING / (records_per_batch * size)).max(1);
    let mut pending = Vec::with_capacity(ACK_EVERY);
    let mut append = |b: usize, pending: &mut Vec<_>| {
        let first = (b * records_per_batch) as i64;
        for (i, record) in batch.records.iter_mut().enumerate() {
            record.offset = first + i as i64;
        }
        pending.push(wal.append(&batch).expect("append"));
        if pending.len() == ACK_EVERY {
            wal.ack(pending).expect("ack");
            pending.clear();
        }
    };
    for b in 0..warm_up {
        append(b, &mut pending);
    }
    wal.ack(&pending).expect("ack");
    pending.clear();
    let written_before = own_write_bytes();
    let cpu_before = own_cpu_secs();
    let started = Instant::now();
    for b in warm_up..warm_up + batches {
        append(b, &mut pending);
    }
    wal.ack(&pending).expect("ack");
    let secs = started.elapsed().as_secs_f64();
    let cpu = own_cpu_secs() - cpu_before;
    let payload = (batches * records_per_batch * size) as f64;
    let amplification = own_write_bytes().saturating_sub(written_before) as f64 / payload;
    (
        mib(payload) / secs,
        amplification,
        cpu / (mib(payload) / 1024.0),
    )
}

fn own_cpu_secs() -> f64 {
    measure::cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// MiB/s writing `chunks` chunks of `chunk` bytes, each followed by
/// fdatasync: appended to a new file, or with `ring`, written over a file
/// of that size already written (and synced, unmeasured), wrapping at its end.
fn disk_rate(dir: &Path, chunk: usize, chunks: usize, ring: Option<usize>) -> f64 {
    let file = tempfile::NamedTempFile::new_in(dir).expect("temp file");
    let mut f = file.as_file();
    let data = vec![0xa5u8; chunk];
    let slots = ring.map(|bytes| (bytes / chunk).max(1));
    if let Some(slots) = slots {
        for _ in 0..slots {
            f.write_all(&data).expect("write");
        }
        f.sync_data().expect("fdatasync");
    }
    let started = Instant::now();
    for i in 0..chunks {
        match slots {
            Some(slots) => f
                .write_all_at(&data, ((i % slots) * chunk) as u64)
                .expect("write"),
            None => f.write_all(&data).expect("write"),
        }
        f.sync_data().expect("fdatasync");
    }
    mib((chunk * chunks) as f64) / started.elapsed().as_secs_f64()
}

fn own_write_bytes() -> u64 {
    measure::write_bytes(std::process::id()).unwrap_or(0)
}

pub fn print(rows: &[Row]) {
    println!("| record size | records/batch | batch (KiB) | WAL append+fsync+ack (MiB/s) | disk, same bytes per fsync, new file (MiB/s) | disk, same, over a written file (MiB/s) | WAL / the faster disk | disk, 8 MiB per fsync (MiB/s) | WAL / disk 8 MiB | WAL bytes written / payload byte |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} B | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.1} | {:.0}% | {:.2} |",
            r.size,
            r.records_per_batch,
            r.batch_bytes as f64 / 1024.0,
            r.wal,
            r.disk_same_chunks,
            r.disk_same_chunks_ring,
            100.0 * r.wal / r.disk_same_chunks.max(r.disk_same_chunks_ring),
            r.disk_large_chunks,
            100.0 * r.wal / r.disk_large_chunks,
            r.write_amplification
        );
    }
    println!();
    println!("| record size | WAL plain (MiB/s) | WAL encrypted (MiB/s) | encrypted / plain | CPU s per GiB, plain | CPU s per GiB, encrypted |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} B | {:.1} | {:.1} | {:.0}% | {:.2} | {:.2} |",
            r.size,
            r.wal,
            r.wal_encrypted,
            100.0 * r.wal_encrypted / r.wal,
            r.cpu_plain,
            r.cpu_encrypted
        );
    }
}
