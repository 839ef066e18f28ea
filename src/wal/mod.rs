//! The write-ahead log: where consumed batches wait, durable, until a target
//! transaction carrying them has committed.
//!
//! On-disk layout of `wal.dir`: frames in segment files of the WAL's own
//! (see `segment`), and one sled 0.34 database holding only small values:
//! where each frame is, and metadata.
//!
//! ```text
//! segments/<id:020>.seg  frames back to back, see `frame`: version | crc32 | len | bincode(Batch)
//! segments/<id:020>.spare drained segments kept to be written over as later ones (see
//!                        `segment`), as many as fit in `max_bytes`
//! sled tree "index"      key: position, u64 big-endian (so sled iterates in append order)
//!                        value: segment u64 | offset u64 | len u32, big-endian (`segment::Location`)
//! sled tree "meta"       key b"tail" -> segment u64 | offset u64 | position u64, big-endian:
//!                        where the next append writes and the position it takes,
//!                        stored after every append's index entries; key
//!                        b"next_position" -> u64 big-endian: the same position as
//!                        WALs made before segments stored it (read, no longer written)
//! sled tree "quarantine" key: position (as in "index") -> the raw bytes of an entry that
//!                        failed its checks, moved here by `quarantine` and kept for people
//! sled tree "appended"   key: position (as in "index") -> i64 big-endian, ms since the
//!                        epoch when the entry was appended (for "age of the oldest entry")
//! sled tree "delivered"  key: source topic bytes | 0x00 | partition i32 big-endian
//!                        value: i64 big-endian, the next source offset the target has
//!                        committed, as last known to this relay (for `status`)
//! sled tree "batches"    WALs made before segments held whole frames here (key as in
//!                        "index"); `open` moves them into a segment and empties it
//! ```
//!
//! Why frames are not sled values: sled keeps every value it has written
//! resident until it is removed, and rewrites values as it consolidates
//! its pages, so a backlog cost its size in memory and 2.6–5.8 times its
//! size in disk writes (docs/benchmarks.md). A segment is written once and
//! read back through the kernel's page cache.
//!
//! "appended" and "delivered" are for operators only: nothing that decides
//! what to ship reads them. The target's checkpoints stay the authority on
//! delivery; "delivered" is a local copy so `status` can show progress
//! while the target is unreachable or the relay is stopped.
//!
//! Invariants:
//! - `append` returns only after its records (position and frame) are
//!   fsync'd in their segment: that one fsync is what makes an entry
//!   durable. Its index entries are written to sled after it and made
//!   durable by sled's own periodic flush or by the next fsync of sled
//!   (a `quarantine`, an `ack` that drains a segment); after a crash
//!   before that, `open` finds the records in the segments from the stored
//!   tail on and indexes them again. An index entry so never points at
//!   bytes that were not durable first. This relies on sled recovering a
//!   prefix of its writes, which its log-structured design gives.
//! - `ack` removes entries without an fsync of its own: a crash can undo
//!   it, which leaves those entries in the WAL, already delivered; the
//!   shipper skips them by the target's checkpoints and acks them again.
//!   `quarantine` returns only after its move is fsync'd.
//! - A segment file is deleted, or retired to a spare, only when no index
//!   entry points into it any more, durably (after an fsync of sled that
//!   follows the removals), and never while it is the segment being
//!   appended to. Segments left without entries by a crash
//!   are deleted at the next `open`; a new segment is started at each open.
//! - Positions only grow and are never reused, across restarts too, even
//!   when every entry was acknowledged: recovery takes the larger of the
//!   persisted `next_position` and the last key + 1. (Target checkpoints
//!   carry WAL positions, so a reused position would be a lie.)
//! - `read_from` returns only entries whose `append` has returned: an entry
//!   is visible to readers from the moment it is durable, not before.
//! - Every read checks the frame; a bad entry (flipped bits, a short or
//!   missing segment) is a [`WalEntry::Corrupted`] value, never skipped,
//!   never a panic, and never shipped. Only a corrupted entry can be
//!   quarantined.
//! - An "appended" time exists for an entry from its append on; one left
//!   behind by a crash between the removal of an entry and of its time is
//!   deleted at the next `open`.
//! - The in-memory accounting (`bytes`, `len`, `partition_progress`, `depth`,
//!   entries per segment) always describes exactly the entries in "index"
//!   below `next_position`; it is rebuilt by one scan at `open` and updated
//!   only after the change it describes is written (and, for an append,
//!   durable).
//!
//! Callers: `pipeline` opens it and quarantines corrupted entries at start-up,
//! `source` appends and pauses on `is_full`, `shipper` reads and acks. The
//! API is synchronous (sled and file I/O block): those run it on their own
//! threads or through `spawn_blocking`.

mod frame;
mod segment;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

pub use frame::{
    decode_frame, encode_batch, CorruptionReason, FrameBuilder, FrameEncodeError, FramedBatch,
    FORMAT_VERSION, HEADER_LEN, MAX_PAYLOAD, RECORD_OVERHEAD,
};

pub use segment::Location;

use crate::record::{Batch, TopicPartition};

/// Where an entry sits in the WAL: strictly increasing, never reused.
pub type WalPosition = u64;

const INDEX: &str = "index";
/// Whole frames as sled values: WALs from before segments (migrated at open).
const LEGACY_BATCHES: &str = "batches";
const META: &str = "meta";
const QUARANTINE: &str = "quarantine";
const APPENDED: &str = "appended";
const DELIVERED: &str = "delivered";
const NEXT_POSITION: &[u8] = b"next_position";
/// Where the next append writes and the position it takes:
/// segment u64 BE | offset u64 BE | position u64 BE, in one value so a
/// crash never leaves one without the other.
const TAIL: &[u8] = b"tail";

/// How long `open` waits for sled's directory lock before reporting
/// [`WalError::Locked`].
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// sled's segment size for new WALs. sled writes any log message larger
/// than a quarter segment to a file of its own (a "blob": create, write,
/// fsync, later unlink); while frames were sled values that was every
/// default batch at sled's 512 KiB default (docs/benchmarks.md). Index
/// entries are small, but a migrated WAL's legacy frames are not.
const SEGMENT_SIZE: usize = 8 << 20;

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
fn segment_size_of(dir: &Path) -> usize {
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

fn is_lock_error(e: &sled::Error) -> bool {
    // sled reports its flock failure only as text.
    matches!(e, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("cannot open the WAL in {}: its lock is held (is another relay using this wal.dir?)", .dir.display())]
    Locked {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("cannot open the WAL in {}: {source}", .dir.display())]
    Open {
        dir: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("WAL in {}: {op} failed: {source}", .dir.display())]
    Io {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("WAL in {}: tree `{tree}` holds a {len}-byte key, but only 8-byte positions are ever written", .dir.display())]
    BadKey {
        dir: PathBuf,
        tree: &'static str,
        len: usize,
    },
    #[error("WAL in {}: the stored next position is {len} bytes instead of 8; refusing to guess, since positions must never be reused", .dir.display())]
    BadMeta { dir: PathBuf, len: usize },
    #[error("WAL in {}: no positions left after {last}", .dir.display())]
    PositionsExhausted { dir: PathBuf, last: WalPosition },
    #[error("refusing to append an empty batch of {tp}")]
    EmptyBatch { tp: TopicPartition },
    #[error("cannot append a batch of {tp}: {source}")]
    Frame {
        tp: TopicPartition,
        #[source]
        source: FrameEncodeError,
    },
    #[error("WAL in {}: entry {position} is valid; only corrupted entries are quarantined", .dir.display())]
    NotCorrupted { dir: PathBuf, position: WalPosition },
    #[error("no WAL in {} (wal.dir): has a relay run with this directory?", .dir.display())]
    Missing { dir: PathBuf },
    #[error("WAL in {}: {op} failed: {source}", .dir.display())]
    Segment {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Options fixed when the WAL is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Stored bytes (frame lengths) at which the WAL counts as full
    /// (`wal.max_bytes`). sled's own files are larger: log overhead, and
    /// space it reclaims only gradually.
    pub max_bytes: u64,
}

/// One stored entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalEntry {
    Valid {
        position: WalPosition,
        batch: Batch,
        stored_bytes: u64,
    },
    Corrupted {
        position: WalPosition,
        reason: CorruptionReason,
        stored_bytes: u64,
    },
}

impl WalEntry {
    fn check(position: WalPosition, raw: &[u8]) -> WalEntry {
        let stored_bytes = raw.len() as u64;
        match decode_frame(raw) {
            Ok(batch) => WalEntry::Valid {
                position,
                batch,
                stored_bytes,
            },
            Err(reason) => WalEntry::Corrupted {
                position,
                reason,
                stored_bytes,
            },
        }
    }

    pub fn position(&self) -> WalPosition {
        match self {
            WalEntry::Valid { position, .. } | WalEntry::Corrupted { position, .. } => *position,
        }
    }

    pub fn stored_bytes(&self) -> u64 {
        match self {
            WalEntry::Valid { stored_bytes, .. } | WalEntry::Corrupted { stored_bytes, .. } => {
                *stored_bytes
            }
        }
    }
}

/// What the WAL knows about one unacknowledged entry, kept in memory.
#[derive(Debug, Clone)]
struct EntryInfo {
    stored_bytes: u64,
    /// The segment file holding its frame.
    segment: u64,
    records: u64,
    /// When it was appended, ms since the epoch.
    appended_ms: i64,
    /// Source partition and next offset; `None` for a corrupted entry,
    /// whose partition is unknown.
    progress: Option<(TopicPartition, i64)>,
}

impl EntryInfo {
    fn of(entry: &WalEntry, segment: u64, appended_ms: i64) -> EntryInfo {
        let (records, progress) = match entry {
            WalEntry::Valid { batch, .. } => (batch.records.len() as u64, progress_of(batch)),
            WalEntry::Corrupted { .. } => (0, None),
        };
        EntryInfo {
            stored_bytes: entry.stored_bytes(),
            segment,
            records,
            appended_ms,
            progress,
        }
    }
}

/// Unacknowledged entries of one source partition (or of the corrupted
/// entries, whose partition is unknown), as `status` and `/metrics` show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
    /// Append time of the oldest entry, ms since the epoch.
    pub oldest_appended_ms: Option<i64>,
}

impl Depth {
    fn add(&mut self, info: &EntryInfo) {
        self.batches += 1;
        self.records += info.records;
        self.bytes += info.stored_bytes;
        self.oldest_appended_ms = Some(
            self.oldest_appended_ms
                .map_or(info.appended_ms, |t| t.min(info.appended_ms)),
        );
    }
}

/// The whole WAL's depth: per source partition, plus corrupted entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalDepth {
    pub partitions: BTreeMap<TopicPartition, Depth>,
    pub corrupted: Depth,
    pub total: Depth,
    /// The most stored bytes the WAL has held since it was opened (for
    /// sizing `wal.max_bytes`).
    pub peak_bytes: u64,
}

fn delivered_key(tp: &TopicPartition) -> Vec<u8> {
    let mut k = Vec::with_capacity(tp.topic.len() + 5);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k
}

fn parse_delivered(key: &[u8], value: &[u8]) -> Option<(TopicPartition, i64)> {
    let split = key.len().checked_sub(5)?;
    let (topic, rest) = key.split_at(split);
    let partition = i32::from_be_bytes(rest.get(1..5)?.try_into().ok()?);
    let next = i64::from_be_bytes(value.try_into().ok()?);
    Some((
        TopicPartition::new(std::str::from_utf8(topic).ok()?, partition),
        next,
    ))
}

fn progress_of(batch: &Batch) -> Option<(TopicPartition, i64)> {
    let next = batch.next_offset()?;
    Some((
        TopicPartition::new(batch.topic.clone(), batch.partition),
        next,
    ))
}

#[derive(Debug, Default)]
struct Accounting {
    entries: BTreeMap<WalPosition, EntryInfo>,
    /// Invariant: the sum of `entries[..].stored_bytes`.
    bytes: u64,
    /// The most `bytes` has been since the WAL was opened.
    peak_bytes: u64,
    /// Invariant: per segment, how many of `entries` have their frame
    /// there; a segment with none has no key.
    per_segment: BTreeMap<u64, u64>,
    /// The segment appends go to; it is never deleted. A copy of the
    /// writer's, set under both locks, so an ack can tell without waiting
    /// for the writer lock (held across an append's fsync).
    current_segment: Option<u64>,
    /// The position the next append takes. Every key in "index" is below
    /// it, and it only moves after the entry at its old value is durable.
    next_position: WalPosition,
}

impl Accounting {
    fn add(&mut self, position: WalPosition, info: EntryInfo) {
        self.bytes += info.stored_bytes;
        self.peak_bytes = self.peak_bytes.max(self.bytes);
        *self.per_segment.entry(info.segment).or_default() += 1;
        if let Some(old) = self.entries.insert(position, info) {
            self.forget(&old);
        }
    }

    /// Removes the entry; returns its segment if that now holds no entry
    /// and is not being appended to (so its file can go).
    fn remove(&mut self, position: WalPosition) -> Option<u64> {
        let info = self.entries.remove(&position)?;
        self.forget(&info)
    }

    fn forget(&mut self, info: &EntryInfo) -> Option<u64> {
        self.bytes -= info.stored_bytes;
        let left = self.per_segment.get_mut(&info.segment)?;
        *left -= 1;
        if *left > 0 {
            return None;
        }
        self.per_segment.remove(&info.segment);
        (self.current_segment != Some(info.segment)).then_some(info.segment)
    }
}

/// The segment appends go to. Only the holder of `Inner::writer` touches it.
#[derive(Debug)]
struct Writer {
    /// Open segment and the end of its last durable frame: where the next
    /// frame is written, whatever a failed write left past it.
    current: Option<(u64, Arc<File>, u64)>,
    /// The id the next new segment takes: above every id seen at open.
    next_segment: u64,
}

impl Writer {
    /// Moves the current segment's end past `written`, once they are
    /// indexed durably.
    fn advance(&mut self, written: &[Location]) {
        if let (Some((_, _, end)), Some(last)) = (self.current.as_mut(), written.last()) {
            *end = last.end();
        }
    }
}

/// Handle to an open WAL; clones share it. Dropping the last clone closes
/// the sled database (and releases its directory lock).
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// `<dir>/segments`.
    segments: PathBuf,
    db: sled::Db,
    index: sled::Tree,
    meta: sled::Tree,
    quarantine: sled::Tree,
    appended: sled::Tree,
    delivered: sled::Tree,
    max_bytes: u64,
    /// Size at which appends move on to a new segment.
    segment_bytes: u64,
    /// Drained segments kept for reuse, at most: `max_bytes` worth. A
    /// backlog leaves as many segments as it filled, and every one kept
    /// spares the next ones fresh pages; the disk they hold is the budget
    /// `wal.max_bytes` set aside for a backlog anyway.
    spare_limit: usize,
    /// Held for a whole append, fsyncs included, so positions become
    /// durable in the order they are handed out.
    writer: Mutex<Writer>,
    /// Open segment files for reading, by id (the current one included).
    files: Mutex<BTreeMap<u64, Arc<File>>>,
    /// Drained segments waiting to be written over as new ones.
    spares: Mutex<Vec<PathBuf>>,
    /// Held only briefly (never across an fsync): `bytes`/`is_full` are
    /// called on hot paths.
    accounting: Mutex<Accounting>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let accounting = self.accounting();
        f.debug_struct("Wal")
            .field("dir", &self.inner.dir)
            .field("entries", &accounting.entries.len())
            .field("bytes", &accounting.bytes)
            .field("max_bytes", &self.inner.max_bytes)
            .field("next_position", &accounting.next_position)
            .finish()
    }
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
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        Wal::open_waiting(dir, options, LOCK_WAIT)
    }

    /// [`Wal::open`] for tools that read a relay's WAL: where there is none
    /// it fails with [`WalError::Missing`] instead of creating an empty one
    /// (which would report "nothing waiting" for a mistyped `wal.dir`).
    pub fn open_existing(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        // A directory that cannot be probed is left to sled, whose error names the cause.
        if !Wal::exists(dir).unwrap_or(true) {
            return Err(WalError::Missing {
                dir: dir.to_path_buf(),
            });
        }
        Wal::open(dir, options)
    }

    fn open_waiting(dir: &Path, options: WalOptions, lock_wait: Duration) -> Result<Wal, WalError> {
        let open_err = |source: sled::Error| {
            let dir = dir.to_path_buf();
            if is_lock_error(&source) {
                WalError::Locked { dir, source }
            } else {
                WalError::Open { dir, source }
            }
        };
        let deadline = Instant::now() + lock_wait;
        let db = loop {
            match sled_config(dir).open() {
                Ok(db) => break db,
                // sled releases its lock only when its last background I/O
                // job ends, a little after the previous handle was dropped.
                Err(e) if is_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
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

    /// The next position as last stored in "meta", by the tail or (in a
    /// WAL made before segments) its own key; 0 for a new WAL.
    fn stored_next_position(&self) -> Result<WalPosition, WalError> {
        let raw = self
            .inner
            .meta
            .get(NEXT_POSITION)
            .map_err(self.io("reading the next position"))?;
        let old = match raw {
            Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
                .map(WalPosition::from_be_bytes)
                .map_err(|_| WalError::BadMeta {
                    dir: self.inner.dir.clone(),
                    len: raw.len(),
                })?,
            None => 0,
        };
        Ok(self
            .stored_tail()?
            .map_or(old, |(_, _, next)| next.max(old)))
    }

    /// Writes the index `entries` (position, where its frame is), then the
    /// next position and the tail: where the next append will write, and
    /// where `index_unindexed_tail` looks. Not fsync'd.
    ///
    /// Plain inserts, not one `sled::Batch`: sled's atomic batches halved
    /// the WAL's append rate (docs/benchmarks.md), and atomicity buys
    /// nothing here. sled recovers a prefix of these writes, so whatever
    /// prefix survives a crash, the stored tail and next position never
    /// claim an entry whose index write was lost, and the scan from the
    /// tail re-indexes any whose was.
    fn index_entries(
        &self,
        entries: &[(WalPosition, Location)],
        next: WalPosition,
    ) -> Result<(), WalError> {
        for (position, location) in entries {
            self.inner
                .index
                .insert(position.to_be_bytes(), &location.to_bytes())
                .map_err(self.io("indexing an entry"))?;
        }
        let Some((_, last)) = entries.last() else {
            return Ok(());
        };
        let mut tail = [0u8; 24];
        tail[..8].copy_from_slice(&last.segment.to_be_bytes());
        tail[8..16].copy_from_slice(&last.end().to_be_bytes());
        tail[16..].copy_from_slice(&next.to_be_bytes());
        self.inner
            .meta
            .insert(TAIL, &tail)
            .map(drop)
            .map_err(self.io("storing the tail"))
    }

    /// The stored tail: (segment, offset, next position); `None` if no
    /// entry was ever indexed in a segment.
    fn stored_tail(&self) -> Result<Option<(u64, u64, WalPosition)>, WalError> {
        let Some(raw) = self
            .inner
            .meta
            .get(TAIL)
            .map_err(self.io("reading the tail"))?
        else {
            return Ok(None);
        };
        let Ok(raw) = <[u8; 24]>::try_from(raw.as_ref()) else {
            return Err(WalError::BadMeta {
                dir: self.inner.dir.clone(),
                len: raw.len(),
            });
        };
        let field = |at: usize| {
            let mut be = [0u8; 8];
            be.copy_from_slice(&raw[at..at + 8]);
            u64::from_be_bytes(be)
        };
        Ok(Some((field(0), field(8), field(16))))
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

    /// Stores `batch` durably and returns its position.
    ///
    /// An empty batch is refused ([`WalError::EmptyBatch`]): it would carry
    /// no offsets and nothing to ship. Appending never fails for being
    /// full; callers check [`Wal::is_full`] and stop consuming, so `bytes`
    /// can exceed `max_bytes` by what was on its way when they looked (the
    /// source: the groups of [`Wal::append_all`] queued for its appender).
    ///
    /// If this returns an error the entry may or may not be on disk, but its
    /// position was never handed out: the next append reuses it (and the
    /// bytes after the segment's last durable frame), and no reader has
    /// seen it. (Should a crash follow, `open` may still find it whole in
    /// its segment and keep it: its records are real source records, and
    /// the shipper skips any the target already has.)
    pub fn append(&self, batch: &Batch) -> Result<WalPosition, WalError> {
        Ok(self.append_all(std::slice::from_ref(batch))?[0])
    }

    /// [`Wal::append`] for several batches under one fsync (group commit:
    /// the fsync, not the bytes, is what an append costs on most disks). Positions are consecutive, in the order given. All or none
    /// become visible: on an error no position was handed out.
    pub fn append_all(&self, batches: &[Batch]) -> Result<Vec<WalPosition>, WalError> {
        let framed = batches
            .iter()
            .map(|batch| {
                FramedBatch::of(batch).map_err(|source| WalError::Frame {
                    tp: TopicPartition::new(batch.topic.clone(), batch.partition),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.append_framed(&framed)
    }

    /// [`Wal::append_all`] for batches framed already (the source frames
    /// them as it consumes: [`FrameBuilder`]).
    pub fn append_framed(&self, batches: &[FramedBatch]) -> Result<Vec<WalPosition>, WalError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(empty) = batches.iter().find(|b| b.records == 0) {
            return Err(WalError::EmptyBatch {
                tp: TopicPartition::new(empty.topic.clone(), empty.partition),
            });
        }

        let mut writer = self.writer();
        let mut positions = Vec::with_capacity(batches.len());
        let mut next = self.accounting().next_position;
        for _ in batches {
            positions.push(next);
            next = self.after(next)?;
        }
        let records: Vec<(WalPosition, &[u8])> = positions
            .iter()
            .copied()
            .zip(batches.iter().map(FramedBatch::frame))
            .collect();
        // The one fsync of an append; the index below is made durable by
        // the next ack, or by `open` from the segment if a crash comes first.
        let locations = self.write_frames(&mut writer, &records)?;
        let appended_ms = crate::now_ms();
        let entries: Vec<(WalPosition, Location)> = positions
            .iter()
            .copied()
            .zip(locations.iter().copied())
            .collect();
        self.index_entries(&entries, next)?;
        for position in &positions {
            self.inner
                .appended
                .insert(position.to_be_bytes(), &appended_ms.to_be_bytes())
                .map_err(self.io("storing the append time"))?;
        }
        writer.advance(&locations);

        // Durable: now readers may see them.
        let mut accounting = self.accounting();
        for ((position, location), batch) in positions.iter().zip(&locations).zip(batches) {
            accounting.add(
                *position,
                EntryInfo {
                    stored_bytes: u64::from(location.len),
                    segment: location.segment,
                    records: batch.records as u64,
                    appended_ms,
                    progress: batch.next_offset.map(|next| {
                        (
                            TopicPartition::new(batch.topic.clone(), batch.partition),
                            next,
                        )
                    }),
                },
            );
        }
        accounting.next_position = next;
        Ok(positions)
    }

    /// Writes `records` (position, frame) one after another at the end of
    /// the current segment (starting a new one first if they would take it
    /// past `segment_bytes`) and fsyncs them. Does not move the segment's
    /// end: the caller does once they are indexed.
    fn write_frames(
        &self,
        writer: &mut Writer,
        records: &[(WalPosition, &[u8])],
    ) -> Result<Vec<Location>, WalError> {
        let total: u64 = records
            .iter()
            .map(|(_, f)| segment::RECORD_PREFIX + f.len() as u64)
            .sum();
        let (segment, file, mut offset) = match &writer.current {
            Some((id, file, end)) if *end == 0 || *end + total <= self.inner.segment_bytes => {
                (*id, Arc::clone(file), *end)
            }
            _ => {
                let (id, file) = self.start_segment(writer)?;
                (id, file, 0)
            }
        };
        let mut locations = Vec::with_capacity(records.len());
        for (position, frame) in records {
            // Frames are at most MAX_PAYLOAD + header; a legacy value could claim more.
            let len = u32::try_from(frame.len()).map_err(|_| {
                self.seg_io("writing a frame to its segment")(std::io::Error::other(format!(
                    "a {}-byte frame does not fit a segment",
                    frame.len()
                )))
            })?;
            segment::write_at(&file, offset, &position.to_be_bytes())
                .and_then(|()| segment::write_at(&file, offset + segment::RECORD_PREFIX, frame))
                .map_err(self.seg_io("writing a frame to its segment"))?;
            let at = Location {
                segment,
                offset: offset + segment::RECORD_PREFIX,
                len,
            };
            locations.push(at);
            offset = at.end();
        }
        file.sync_data()
            .map_err(self.seg_io("fsync of a segment"))?;
        Ok(locations)
    }

    /// Starts the next segment (in a spare if there is one) and makes it
    /// the current one; the one it replaces is retired if no entry is left in it.
    fn start_segment(&self, writer: &mut Writer) -> Result<(u64, Arc<File>), WalError> {
        let id = writer.next_segment;
        let spare = self.spares().pop();
        let dir = &self.inner.segments;
        let file = match spare.map(|spare| segment::reuse(dir, &spare, id)) {
            Some(Ok(file)) => file,
            // Gone behind our back: a new file does as well.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                segment::create(dir, id).map_err(self.seg_io("creating a segment"))?
            }
            Some(Err(e)) => return Err(self.seg_io("reusing a spare segment")(e)),
            None => segment::create(dir, id).map_err(self.seg_io("creating a segment"))?,
        };
        let file = Arc::new(file);
        writer.next_segment = id + 1;
        let previous = writer.current.replace((id, Arc::clone(&file), 0));
        self.files().insert(id, Arc::clone(&file));
        let retired = {
            let mut accounting = self.accounting();
            accounting.current_segment = Some(id);
            previous
                .map(|(old, _, _)| old)
                .filter(|old| !accounting.per_segment.contains_key(old))
        };
        if let Some(old) = retired {
            self.retire_segment(old)?;
        }
        Ok((id, file))
    }

    /// A segment no entry points into, durably: kept as a spare while
    /// fewer than `spare_limit` are, deleted otherwise.
    fn retire_segment(&self, id: u64) -> Result<(), WalError> {
        self.files().remove(&id);
        let mut spares = self.spares();
        if spares.len() < self.inner.spare_limit {
            return match segment::retire(&self.inner.segments, id) {
                Ok(spare) => {
                    spares.push(spare);
                    Ok(())
                }
                // Gone already (lost, like any file can be): nothing to keep.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.seg_io("keeping a drained segment as a spare")(e)),
            };
        }
        segment::remove(&self.inner.segments, id).map_err(self.seg_io("deleting a drained segment"))
    }

    /// The entry an index value points at, read and checked, and its segment.
    fn load(&self, position: WalPosition, value: &[u8]) -> Result<(WalEntry, u64), WalError> {
        let Some(location) = Location::from_bytes(value) else {
            let entry = WalEntry::Corrupted {
                position,
                reason: CorruptionReason::BadLocation { len: value.len() },
                stored_bytes: 0,
            };
            return Ok((entry, u64::MAX));
        };
        let entry = match self.read_raw(location)? {
            Some(raw) => {
                let mut entry = WalEntry::check(position, &raw);
                // The index's length is what the entry holds on disk, also
                // when the segment ends early.
                match &mut entry {
                    WalEntry::Valid { stored_bytes, .. }
                    | WalEntry::Corrupted { stored_bytes, .. } => {
                        *stored_bytes = u64::from(location.len)
                    }
                }
                entry
            }
            None => WalEntry::Corrupted {
                position,
                reason: CorruptionReason::SegmentMissing {
                    segment: location.segment,
                },
                stored_bytes: u64::from(location.len),
            },
        };
        Ok((entry, location.segment))
    }

    /// The bytes at `location`, short where the segment is; `None` if the
    /// segment file is gone.
    fn read_raw(&self, location: Location) -> Result<Option<Vec<u8>>, WalError> {
        let file = {
            let mut files = self.files();
            match files.get(&location.segment) {
                Some(file) => Arc::clone(file),
                None => match segment::open(&self.inner.segments, location.segment) {
                    Ok(file) => {
                        let file = Arc::new(file);
                        files.insert(location.segment, Arc::clone(&file));
                        file
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(self.seg_io("opening a segment")(e)),
                },
            }
        };
        segment::read_at(&file, location.offset, location.len)
            .map(Some)
            .map_err(self.seg_io("reading a segment"))
    }

    /// Up to `max_entries` entries at or after `from`, in position order,
    /// each checked: corrupted ones are returned as such, not skipped.
    pub fn read_from(
        &self,
        from: WalPosition,
        max_entries: usize,
    ) -> Result<Vec<WalEntry>, WalError> {
        self.read_within(from, max_entries, u64::MAX)
    }

    /// [`Wal::read_from`], stopping once the entries read hold `max_bytes`
    /// stored bytes or more (at least one entry is read, however large):
    /// what bounds the memory of a reader. Sizes come from the index, so no
    /// entry past the budget is read from its segment.
    pub fn read_within(
        &self,
        from: WalPosition,
        max_entries: usize,
        max_bytes: u64,
    ) -> Result<Vec<WalEntry>, WalError> {
        // Entries at or past `end` are still being appended (not yet durable).
        let end = self.accounting().next_position;
        if from >= end || max_entries == 0 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for item in self
            .inner
            .index
            .range(from.to_be_bytes()..end.to_be_bytes())
            .take(max_entries)
        {
            if !out.is_empty() && bytes >= max_bytes {
                break;
            }
            let (key, value) = item.map_err(self.io("reading entries"))?;
            let entry = self.load(self.position_of(INDEX, &key)?, &value)?.0;
            bytes += entry.stored_bytes();
            out.push(entry);
        }
        Ok(out)
    }

    /// Where the frame of entry `position` is stored: its segment file,
    /// offset and length (`wal inspect`, and tests that damage a WAL on
    /// purpose). `None` for a position the WAL does not hold.
    pub fn location(&self, position: WalPosition) -> Result<Option<(PathBuf, Location)>, WalError> {
        let value = self
            .inner
            .index
            .get(position.to_be_bytes())
            .map_err(self.io("reading the index"))?;
        Ok(value
            .and_then(|v| Location::from_bytes(&v))
            .map(|l| (segment::path(&self.inner.segments, l.segment), l)))
    }

    /// Removes delivered entries, durably, all or none. Positions the WAL
    /// does not hold (already acked, quarantined, never appended) are
    /// ignored.
    pub fn ack(&self, positions: &[WalPosition]) -> Result<(), WalError> {
        self.ack_delivered(positions, &BTreeMap::new())
    }

    /// [`Wal::ack`], and stores `delivered` (source partition -> next
    /// offset the target committed) in the same fsync, for `status`.
    pub fn ack_delivered(
        &self,
        positions: &[WalPosition],
        delivered: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WalError> {
        self.store_delivered(delivered)?;
        let known: Vec<WalPosition> = {
            let accounting = self.accounting();
            positions
                .iter()
                .copied()
                .filter(|p| accounting.entries.contains_key(p))
                .collect()
        };
        if known.is_empty() {
            return Ok(());
        }
        // Plain removes, not fsync'd here: an ack a crash undoes only leaves
        // its entries in the WAL, and the shipper skips what the target's
        // checkpoints cover. Index entries go before their append times, so
        // a crash's prefix leaves at most times without entries (`open`
        // deletes those). `forget` makes the removal durable before it
        // deletes a segment the removal drained.
        for position in &known {
            self.inner
                .index
                .remove(position.to_be_bytes())
                .map_err(self.io("removing acknowledged entries"))?;
        }
        for position in &known {
            self.inner
                .appended
                .remove(position.to_be_bytes())
                .map_err(self.io("removing append times"))?;
        }
        self.forget(&known)
    }

    /// Drops removed entries from the accounting and deletes the segments
    /// they leave empty, once their removal is durable: after a crash, no
    /// index entry may point into a deleted segment (it would read as
    /// corrupted, and quarantine would drop the whole WAL).
    fn forget(&self, removed: &[WalPosition]) -> Result<(), WalError> {
        let drained: Vec<u64> = {
            let mut accounting = self.accounting();
            removed
                .iter()
                .filter_map(|p| accounting.remove(*p))
                .collect()
        };
        if !drained.is_empty() {
            self.flush("fsync before deleting a drained segment")?;
        }
        for id in drained {
            self.retire_segment(id)?;
        }
        Ok(())
    }

    /// Moves a corrupted entry's raw bytes to the "quarantine" tree, in one
    /// sled transaction, so it is never shipped and never silently lost.
    /// Refuses a valid entry ([`WalError::NotCorrupted`]); an unknown
    /// position is a no-op.
    pub fn quarantine(&self, position: WalPosition) -> Result<(), WalError> {
        if !self.accounting().entries.contains_key(&position) {
            return Ok(());
        }
        let key = position.to_be_bytes();
        // The check is inside the transaction so a concurrent ack cannot
        // slip between "it is corrupted" and "move it".
        let moved = (&self.inner.index, &self.inner.quarantine).transaction(|(index, q)| {
            let Some(value) = index.get(key)? else {
                return Ok(false);
            };
            let raw = match Location::from_bytes(&value) {
                Some(location) => self
                    .read_raw(location)
                    .map_err(ConflictableTransactionError::Abort)?
                    .unwrap_or_default(),
                None => value.to_vec(),
            };
            if decode_frame(&raw).is_ok() {
                return Err(ConflictableTransactionError::Abort(
                    WalError::NotCorrupted {
                        dir: self.inner.dir.clone(),
                        position,
                    },
                ));
            }
            q.insert(&key, raw)?;
            index.remove(&key)?;
            Ok(true)
        });
        match moved {
            Ok(_) => {}
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(source)) => {
                return Err(self.io("moving an entry to quarantine")(source))
            }
        }
        self.flush("fsync after quarantine")?;
        self.forget(&[position])
    }

    /// Writes the delivered progress (not fsync'd: sled's periodic flush
    /// does it; losing it loses nothing but a `status` figure).
    pub fn store_delivered(
        &self,
        delivered: &BTreeMap<TopicPartition, i64>,
    ) -> Result<(), WalError> {
        if delivered.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (tp, next) in delivered {
            batch.insert(delivered_key(tp), &next.to_be_bytes());
        }
        self.inner
            .delivered
            .apply_batch(batch)
            .map_err(self.io("storing delivered progress"))
    }

    /// The delivered progress last stored (see [`Wal::ack_delivered`]);
    /// unreadable keys are skipped, this is information only.
    pub fn delivered(&self) -> Result<BTreeMap<TopicPartition, i64>, WalError> {
        let mut out = BTreeMap::new();
        for item in self.inner.delivered.iter() {
            let (key, value) = item.map_err(self.io("reading delivered progress"))?;
            if let Some((tp, next)) = parse_delivered(&key, &value) {
                out.insert(tp, next);
            }
        }
        Ok(out)
    }

    /// Unacknowledged entries per source partition, from memory.
    pub fn depth(&self) -> WalDepth {
        let accounting = self.accounting();
        let mut depth = WalDepth {
            peak_bytes: accounting.peak_bytes,
            ..WalDepth::default()
        };
        for info in accounting.entries.values() {
            depth.total.add(info);
            match &info.progress {
                Some((tp, _)) => depth.partitions.entry(tp.clone()).or_default().add(info),
                None => depth.corrupted.add(info),
            }
        }
        depth
    }

    /// Quarantined entries, oldest first: position and raw bytes.
    pub fn quarantined(&self) -> Result<Vec<(WalPosition, Vec<u8>)>, WalError> {
        self.quarantined_iter().collect()
    }

    /// Quarantined entries one at a time, oldest first, so a large
    /// quarantine need not fit in memory (`kafka-relay wal inspect|verify`).
    pub fn quarantined_iter(
        &self,
    ) -> impl Iterator<Item = Result<(WalPosition, Vec<u8>), WalError>> + '_ {
        self.inner.quarantine.iter().map(|item| {
            let (key, raw) = item.map_err(self.io("reading the quarantine"))?;
            Ok((self.position_of(QUARANTINE, &key)?, raw.to_vec()))
        })
    }

    /// Stored bytes (frame lengths) of unacknowledged entries, corrupted
    /// ones included: what `wal.max_bytes` bounds.
    pub fn bytes(&self) -> u64 {
        self.accounting().bytes
    }

    pub fn max_bytes(&self) -> u64 {
        self.inner.max_bytes
    }

    pub fn is_full(&self) -> bool {
        self.bytes() >= self.inner.max_bytes
    }

    /// Unacknowledged entries, corrupted ones included.
    pub fn len(&self) -> usize {
        self.accounting().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn oldest_position(&self) -> Option<WalPosition> {
        self.accounting().entries.keys().next().copied()
    }

    /// The position the next append will take.
    pub fn next_position(&self) -> WalPosition {
        self.accounting().next_position
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Another tree in the WAL's database, for stores that must share its
    /// directory, lock and fsyncs (the dead-letter queue). Names of the
    /// WAL's own trees are refused.
    pub fn side_tree(&self, name: &str) -> Result<sled::Tree, WalError> {
        if [INDEX, LEGACY_BATCHES, META, QUARANTINE, APPENDED, DELIVERED].contains(&name) {
            return Err(WalError::Io {
                dir: self.inner.dir.clone(),
                op: "opening a side tree",
                source: sled::Error::Unsupported(format!("{name} is a WAL tree")),
            });
        }
        self.inner
            .db
            .open_tree(name)
            .map_err(self.io("opening a side tree"))
    }

    /// fsync of everything written so far, side trees included.
    pub fn sync(&self) -> Result<(), WalError> {
        self.flush("fsync of a side tree")
    }

    /// Per source partition, the highest next offset among unacknowledged
    /// valid entries: the source must resume at least there. Corrupted
    /// entries contribute nothing (their partition is unknown).
    pub fn partition_progress(&self) -> BTreeMap<TopicPartition, i64> {
        let accounting = self.accounting();
        let mut progress: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for (tp, next) in accounting
            .entries
            .values()
            .filter_map(|e| e.progress.as_ref())
        {
            match progress.get_mut(tp) {
                Some(slot) => *slot = (*slot).max(*next),
                None => {
                    progress.insert(tp.clone(), *next);
                }
            }
        }
        progress
    }

    fn accounting(&self) -> MutexGuard<'_, Accounting> {
        // Accounting updates cannot panic halfway, so a poisoned lock still
        // holds consistent numbers.
        self.inner
            .accounting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A poisoned writer still holds a durable end: `end` moves only
        // after the frames before it are indexed.
        self.inner
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn spares(&self) -> MutexGuard<'_, Vec<PathBuf>> {
        self.inner
            .spares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<File>>> {
        self.inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn seg_io(&self, op: &'static str) -> impl Fn(std::io::Error) -> WalError + '_ {
        move |source| WalError::Segment {
            dir: self.inner.dir.clone(),
            op,
            source,
        }
    }

    fn flush(&self, op: &'static str) -> Result<(), WalError> {
        self.inner.db.flush().map_err(self.io(op))?;
        Ok(())
    }

    fn io(&self, op: &'static str) -> impl Fn(sled::Error) -> WalError + '_ {
        move |source| WalError::Io {
            dir: self.inner.dir.clone(),
            op,
            source,
        }
    }

    fn after(&self, position: WalPosition) -> Result<WalPosition, WalError> {
        position
            .checked_add(1)
            .ok_or_else(|| WalError::PositionsExhausted {
                dir: self.inner.dir.clone(),
                last: position,
            })
    }

    fn position_of(&self, tree: &'static str, key: &[u8]) -> Result<WalPosition, WalError> {
        <[u8; 8]>::try_from(key)
            .map(WalPosition::from_be_bytes)
            .map_err(|_| WalError::BadKey {
                dir: self.inner.dir.clone(),
                tree,
                len: key.len(),
            })
    }
}

#[cfg(test)]
mod tests;
