//! Opening and recovery: the sled database and its trees, the segment
//! files and spares, the scan of the records appended after the index was
//! last made durable, the move of a WAL made before segments, and the one
//! scan that rebuilds the in-memory accounting.
//!
//! Invariants kept here:
//! - Positions are never reused across restarts, even when every entry was
//!   acknowledged: [`Wal::recover`] takes the larger of the stored next
//!   position and the last key + 1.
//! - [`Wal::index_unindexed_tail`] indexes only records that follow each
//!   other from the stored next position, from the stored tail on: an
//!   append that was fsync'd in its segment but whose index was not yet
//!   durable is found again; a torn append, or an older record of a reused
//!   segment, never is.
//! - Segment files no entry points into after recovery (acknowledged, or
//!   torn appends) are retired, and every open starts a new segment: the
//!   next segment id is above every id on disk and every id an entry
//!   names, even one whose file is gone (its entries stay corrupted, they
//!   never read a new segment).
//! - Spares beyond `spare_limit` are deleted at open.
//! - An "appended" time whose entry is gone (a crash between the two
//!   removals of an ack) is deleted.
//! - The move of the legacy "batches" tree into a segment is crash-safe:
//!   each chunk is fsync'd indexed before the tree is emptied, and an entry
//!   both in the index and in "batches" keeps the index's.
//! - [`Wal::open_existing`] never creates a WAL where there is none.
//! - A snapshot sled had not finished writing (`snap.<lsn>.generating`, a
//!   kill before its rename) does not make the WAL unopenable: sled 0.34
//!   picks it as the newest snapshot and refuses the whole directory as
//!   corrupt, so when sled fails past its lock such files are deleted and
//!   the open is tried once more. The previous snapshot is still there,
//!   and sled replays its log from it.
//! - A key problem (an entry encrypted under another key id, or while no
//!   key is given) fails the open with [`WalError::WrongKey`] /
//!   [`WalError::KeyMissing`] from the recovery scan, before anything is
//!   quarantined or appended; no entry is changed or removed for it.
//! - The legacy move copies the old frames as they are (plain): a WAL that
//!   old predates encryption.
//!
//! Called through [`Wal::open`] by `pipeline` at start-up, and through
//! [`Wal::open_existing`] by the offline commands of `cli` (`wal`, `dlq`,
//! `status`, `verify`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::index::{
    Accounting, EntryInfo, APPENDED, DELIVERED, INDEX, LEGACY_BATCHES, META, QUARANTINE,
};
use super::writer::Writer;
use super::{segment, Inner, Location, Wal, WalError, WalKey, WalOptions, WalPosition};

/// How long `open` waits for sled's directory lock before reporting
/// [`WalError::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// sled's segment size for new WALs. sled writes any log message larger
/// than a quarter segment to a file of its own (a "blob": create, write,
/// fsync, later unlink); while frames were sled values that was every
/// default batch at sled's 512 KiB default (docs/benchmarks.md). Index
/// entries are small, but a migrated WAL's legacy frames are not.
pub(super) const SEGMENT_SIZE: usize = 8 << 20;

/// sled's page cache. sled now holds only index entries and metadata.
const CACHE_CAPACITY: u64 = 16 << 20;

/// Bounds of the size at which the WAL starts a new segment file: a
/// sixteenth of `wal.max_bytes`, so a drained WAL gives back all but about
/// that much disk, and a full one is some 16 files.
const SEGMENT_BYTES_MIN: u64 = 4 << 10;
const SEGMENT_BYTES_MAX: u64 = 64 << 20;

/// The segment size the WAL in `dir` was created with (sled refuses to open
/// it with another), or [`SEGMENT_SIZE`] for a new one. sled keeps it in
/// the text file `conf` as a line `segment_size: <bytes>`.
pub(super) fn segment_size_of(dir: &Path) -> usize {
    std::fs::read(dir.join("conf"))
        .ok()
        .and_then(|raw| {
            String::from_utf8_lossy(&raw)
                .lines()
                .find_map(|l| l.strip_prefix("segment_size: ")?.trim().parse().ok())
        })
        .unwrap_or(SEGMENT_SIZE)
}

/// How the WAL's sled database in `dir` is opened (sled refuses another
/// segment size than the one it was made with).
fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .segment_size(segment_size_of(dir))
        .cache_capacity(CACHE_CAPACITY)
}

/// Deletes the snapshot files sled left unfinished in `dir`, and returns
/// how many. sled 0.34 writes a snapshot to `snap.<lsn>.generating`,
/// fsyncs it, renames it to `snap.<lsn>` and only then removes the older
/// ones; but when it opens it takes the highest `snap.*` name, unfinished
/// or not, and a SIGKILL before the rename (an empty or torn file) makes
/// every later open fail with "Read corrupted data" (sled issues #1387,
/// #1527). The file is by construction not a snapshot sled relies on: the
/// previous one is still in place, and the log since it is replayed.
fn discard_unfinished_snapshots(dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn is_lock_error(e: &sled::Error) -> bool {
    // sled reports its flock failure only as text.
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

impl Wal {
    /// Whether `dir` already holds a WAL, found without opening (and so
    /// without creating) anything: offline tools must not leave an empty
    /// WAL where a mistyped `wal.dir` pointed. sled 0.34 keeps its data in
    /// the file `db` of its directory.
    fn exists(dir: &Path) -> std::io::Result<bool> {
        match std::fs::metadata(dir.join("db")) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Opens (or creates) the WAL in `dir` and rebuilds its accounting by
    /// checking every entry once. Corrupted entries do not fail the open;
    /// `read_from` reports them and the caller quarantines them. Fails if
    /// sled cannot open or read the directory, or if another process still
    /// holds it after [`LOCK_WAIT`].
    ///
    /// There is no read-only mode: sled 0.34 always opens for writing and
    /// takes an exclusive lock on the directory.
    ///
    /// Without a key: appends are plain, and an encrypted entry fails the
    /// open with [`WalError::KeyMissing`]. See [`Wal::open_with_key`].
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        Wal::open_waiting(dir, options, None, LOCK_WAIT)
    }

    /// [`Wal::open`] with the key of `wal.encryption_key_file`
    /// ([`crate::config::Config::wal_key`]; `None`: no encryption, as
    /// [`Wal::open`]). Appends are encrypted with it; plain entries (made
    /// before encryption was enabled) are still read. An entry encrypted
    /// under another key fails the open with [`WalError::WrongKey`]: a key
    /// problem is never corruption, so nothing is quarantined for it.
    pub fn open_with_key(
        dir: &Path,
        options: WalOptions,
        key: Option<WalKey>,
    ) -> Result<Wal, WalError> {
        Wal::open_waiting(dir, options, key, LOCK_WAIT)
    }

    /// [`Wal::open`] for tools that read a relay's WAL: where there is none
    /// it fails with [`WalError::Missing`] instead of creating an empty one
    /// (which would report "nothing waiting" for a mistyped `wal.dir`).
    pub fn open_existing(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        Wal::open_existing_with_key(dir, options, None)
    }

    /// [`Wal::open_existing`] with a key, as [`Wal::open_with_key`].
    pub fn open_existing_with_key(
        dir: &Path,
        options: WalOptions,
        key: Option<WalKey>,
    ) -> Result<Wal, WalError> {
        // A directory that cannot be probed is left to sled, whose error names the cause.
        if !Wal::exists(dir).unwrap_or(true) {
            return Err(WalError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Wal::open_with_key(dir, options, key)
    }

    pub(super) fn open_waiting(
        dir: &Path,
        options: WalOptions,
        key: Option<WalKey>,
        lock_wait: Duration,
    ) -> Result<Wal, WalError> {
        let open_err = |source: sled::Error| {
            let dir = dir.to_path_buf();
            if is_lock_error(&source) {
                WalError::Locked { dir, source }
            } else {
                WalError::Open { dir, source }
            }
        };
        let mut discarded = false;
        let deadline = Instant::now() + lock_wait;
        let db = loop {
            match sled_config(dir).open() {
                Ok(db) => break db,
                // sled releases its lock only when its last background I/O
                // job ends, a little after the previous handle was dropped.
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // Only once sled got past its lock and failed: never under
                // a live relay, which may be writing a snapshot right now.
                Err(e) if !discarded && !is_lock_error(&e) => {
                    discarded = true;
                    let removed =
                        discard_unfinished_snapshots(dir).map_err(|io| open_err(io.into()))?;
                    if removed == 0 {
                        return Err(open_err(e));
                    }
                    tracing::warn!(files = removed, dir = %dir.display(), "WAL: deleted a snapshot sled had not finished writing when it was stopped; opening from the one before it");
                }
                Err(e) => return Err(open_err(e)),
            }
        };
        let index = db.open_tree(INDEX).map_err(open_err)?;
        let meta = db.open_tree(META).map_err(open_err)?;
        let quarantine = db.open_tree(QUARANTINE).map_err(open_err)?;
        let appended = db.open_tree(APPENDED).map_err(open_err)?;
        let delivered = db.open_tree(DELIVERED).map_err(open_err)?;
        let segments = segment::dir_of(dir);
        let segment_bytes = (options.max_bytes / 16).clamp(SEGMENT_BYTES_MIN, SEGMENT_BYTES_MAX);
        let wal = Wal {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                segments,
                db,
                index,
                meta,
                quarantine,
                appended,
                delivered,
                key,
                max_bytes: options.max_bytes,
                segment_bytes,
                spare_limit: usize::try_from(options.max_bytes / segment_bytes)
                    .unwrap_or(usize::MAX)
                    .max(1),
                writer: Mutex::new(Writer {
                    current: None,
                    next_segment: 0,
                }),
                files: Mutex::new(BTreeMap::new()),
                spares: Mutex::new(Vec::new()),
                accounting: Mutex::new(Accounting::default()),
            }),
        };
        let mut spares = segment::list_spares(&wal.inner.segments)
            .map_err(wal.seg_io("listing spare segments"))?;
        for extra in spares.split_off(spares.len().min(wal.inner.spare_limit)) {
            segment::remove_file(&extra).map_err(wal.seg_io("deleting a spare segment"))?;
        }
        *wal.spares() = spares;
        let on_disk =
            segment::list(&wal.inner.segments).map_err(wal.seg_io("listing segment files"))?;
        wal.writer().next_segment = on_disk.last().map_or(0, |last| last + 1);
        wal.index_unindexed_tail(&on_disk)?;
        wal.migrate_legacy_batches()?;
        let recovered = wal.recover()?;
        // Never the id of a segment an entry names, even one whose file is
        // gone: its entries must stay corrupted, not read a new segment.
        if let Some(&named) = recovered.per_segment.keys().rfind(|&&id| id != u64::MAX) {
            let mut writer = wal.writer();
            writer.next_segment = writer.next_segment.max(named + 1);
        }
        // Nothing points into these any more: acknowledged, or torn appends.
        for id in on_disk {
            if !recovered.per_segment.contains_key(&id) {
                wal.retire_segment(id)?;
            }
        }
        *wal.accounting() = recovered;
        Ok(wal)
    }

    /// Moves the frames a WAL made before segments kept in its sled tree
    /// "batches" into a segment, then empties the tree. A crash part-way
    /// leaves some entries in both places: the index wins, and the rest
    /// moves at the next open.
    fn migrate_legacy_batches(&self) -> Result<(), WalError> {
        let legacy = self
            .inner
            .db
            .open_tree(LEGACY_BATCHES)
            .map_err(self.io("opening the pre-segment tree"))?;
        if legacy.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer();
        let mut moved = 0;
        let mut chunk = Vec::new();
        let mut entries = legacy.iter();
        loop {
            let item = entries.next();
            if let Some(item) = item.as_ref() {
                let (key, raw) = item
                    .clone()
                    .map_err(self.io("reading a pre-segment entry"))?;
                let position = self.position_of(LEGACY_BATCHES, &key)?;
                let in_index = self
                    .inner
                    .index
                    .contains_key(key)
                    .map_err(self.io("reading the index"))?;
                if !in_index {
                    chunk.push((position, raw));
                }
            }
            // A chunk at a time, so memory does not grow with the WAL.
            if chunk.len() < 64 && item.is_some() {
                continue;
            }
            if !chunk.is_empty() {
                let records: Vec<(WalPosition, &[u8])> =
                    chunk.iter().map(|(p, raw)| (*p, raw.as_ref())).collect();
                let locations = self.write_frames(&mut writer, &records)?;
                // Below the next position: appends go on from the new tail.
                let last = chunk.last().map_or(0, |(p, _)| *p);
                let next = self.stored_next_position()?.max(self.after(last)?);
                let entries: Vec<(WalPosition, Location)> = chunk
                    .iter()
                    .map(|(p, _)| *p)
                    .zip(locations.iter().copied())
                    .collect();
                self.index_entries(&entries, next)?;
                self.flush("fsync after moving entries to a segment")?;
                writer.advance(&locations);
                moved += chunk.len();
                chunk.clear();
            }
            if item.is_none() {
                break;
            }
        }
        legacy
            .clear()
            .map_err(self.io("emptying the pre-segment tree"))?;
        self.flush("fsync after moving entries to a segment")?;
        tracing::info!(entries = moved, dir = %self.inner.dir.display(), "WAL entries moved from sled into segment files");
        Ok(())
    }

    /// The one recovery scan: every entry is read, checked and counted.
    fn recover(&self) -> Result<Accounting, WalError> {
        let mut accounting = Accounting::default();
        // Entries written before "appended" existed count from now.
        let opened_ms = crate::now_ms();
        for item in self.inner.index.iter() {
            let (key, value) = item.map_err(self.io("scanning entries at recovery"))?;
            let position = self.position_of(INDEX, &key)?;
            let appended_ms = self
                .inner
                .appended
                .get(key)
                .map_err(self.io("reading an append time"))?
                .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
                .map_or(opened_ms, i64::from_be_bytes);
            let (entry, segment) = self.load(position, &value)?;
            accounting.add(position, EntryInfo::of(&entry, segment, appended_ms));
        }
        let mut orphans = sled::Batch::default();
        for item in self.inner.appended.iter() {
            let (key, _) = item.map_err(self.io("scanning append times"))?;
            if !accounting
                .entries
                .contains_key(&self.position_of(APPENDED, &key)?)
            {
                orphans.remove(key);
            }
        }
        self.inner
            .appended
            .apply_batch(orphans)
            .map_err(self.io("removing append times of removed entries"))?;
        let persisted = self.stored_next_position()?;
        let after_last = match accounting.entries.keys().next_back() {
            Some(&last) => self.after(last)?,
            None => 0,
        };
        // The meta counter covers acked-and-removed positions; the last key
        // covers an append whose meta write was lost.
        accounting.next_position = persisted.max(after_last);
        accounting.current_segment = self.writer().current.as_ref().map(|(id, _, _)| *id);
        Ok(accounting)
    }

    /// Indexes the records appended after the index was last made durable
    /// (their segment was fsync'd, the index not yet): from the stored
    /// tail on, through every later segment, for as long as records follow
    /// each other from the stored next position. Anything after the first
    /// record that does not (a torn append) was never handed out, or if
    /// damaged, is read again from the source, like a lost WAL.
    fn index_unindexed_tail(&self, on_disk: &[u64]) -> Result<(), WalError> {
        let (tail_segment, tail_offset, mut next) = match self.stored_tail()? {
            Some(tail) => tail,
            // Nothing was ever indexed durably: from the first segment.
            None => (
                on_disk.first().copied().unwrap_or(0),
                0,
                self.stored_next_position()?,
            ),
        };
        let mut found = Vec::new();
        for &id in on_disk.iter().filter(|&&id| id >= tail_segment) {
            let from = if id == tail_segment { tail_offset } else { 0 };
            let file = segment::open(&self.inner.segments, id)
                .map_err(self.seg_io("opening a segment"))?;
            let records =
                segment::scan(&file, id, from, next).map_err(self.seg_io("scanning a segment"))?;
            if let Some((last, _)) = records.last() {
                next = self.after(*last)?;
            }
            found.extend(records);
        }
        if found.is_empty() {
            return Ok(());
        }
        self.index_entries(&found, next)?;
        self.flush("fsync after indexing the tail")?;
        tracing::info!(
            entries = found.len(),
            dir = %self.inner.dir.display(),
            "WAL: indexed entries appended just before the last stop"
        );
        Ok(())
    }
}
