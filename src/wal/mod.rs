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
//! With `wal.encryption_key_file` set (see `crypt`, `frame`), only the frames
//! change: each is written as frame version 2, the 9-byte header as above
//! (its length and crc32 now over the sealed body) and a sealed body:
//!
//! ```text
//! segments/<id:020>.seg  frames back to back: version 2 | crc32 | len | key_id (4) |
//!                        nonce (24) | XChaCha20-Poly1305(bincode(Batch)) | tag (16)
//!                        AAD: version | len | key_id | nonce; key_id: SHA-256(key)[..4]
//! sled tree "quarantine" the raw bytes of a corrupted entry, so encrypted as it was stored
//! sled tree "dead_letters" (crate::dlq) value version 2 | key_id | nonce | sealed | tag
//! the other trees        unchanged, not encrypted: positions, segment offsets and
//!                        lengths, append times, delivered offsets per partition
//! ```
//!
//! A WAL may hold both versions: entries from before encryption was enabled
//! are read (and drain) as they are. Encryption adds 44 bytes per entry
//! (`ENCRYPTION_OVERHEAD`), counted in its stored bytes.
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
//!   (`writer.rs`, `index.rs`, `open.rs`)
//! - `ack` removes entries without an fsync of its own: a crash can undo
//!   it, which leaves those entries in the WAL, already delivered; the
//!   shipper skips them by the target's checkpoints and acks them again.
//!   `quarantine` returns only after its move is fsync'd. (`ack.rs`)
//! - A segment file is deleted, or retired to a spare, only when no index
//!   entry points into it any more, durably (after an fsync of sled that
//!   follows the removals), and never while it is the segment being
//!   appended to. Segments left without entries by a crash
//!   are deleted at the next `open`; a new segment is started at each open.
//!   (`ack.rs`, `writer.rs`, `open.rs`)
//! - Positions only grow and are never reused, across restarts too, even
//!   when every entry was acknowledged: recovery takes the larger of the
//!   persisted `next_position` and the last key + 1. (Target checkpoints
//!   carry WAL positions, so a reused position would be a lie.)
//!   (`open.rs`, `index.rs`)
//! - `read_from` returns only entries whose `append` has returned: an entry
//!   is visible to readers from the moment it is durable, not before.
//!   (`writer.rs`, `reader.rs`)
//! - Every read checks the frame; a bad entry (flipped bits, a short or
//!   missing segment, an encrypted frame whose tag does not authenticate
//!   under the configured key) is a [`WalEntry::Corrupted`] value, never
//!   skipped, never a panic, and never shipped. Only a corrupted entry can
//!   be quarantined. (`reader.rs`, `ack.rs`)
//! - A key problem is never corruption: an entry encrypted under another
//!   key id than the configured one is [`WalError::WrongKey`], one
//!   encrypted while no key is configured [`WalError::KeyMissing`]; reads,
//!   `quarantine` and `open` (whose recovery reads every entry) fail with
//!   it, and nothing is quarantined or removed for it. The key id is
//!   compared only after the frame's length and crc32 pass, so a damaged
//!   key id is corruption, not a wrong key. (`frame.rs`, `reader.rs`,
//!   `ack.rs`, `open.rs`)
//! - With a key, every frame an append writes is encrypted under a fresh
//!   random nonce; without one, frames are written plain, exactly as before
//!   encryption existed. (`writer.rs`, `crypt.rs`)
//! - An "appended" time exists for an entry from its append on; one left
//!   behind by a crash between the removal of an entry and of its time is
//!   deleted at the next `open`. (`writer.rs`, `ack.rs`, `open.rs`)
//! - The in-memory accounting (`bytes`, `len`, `partition_progress`, `depth`,
//!   entries per segment) always describes exactly the entries in "index"
//!   below `next_position`; it is rebuilt by one scan at `open` and updated
//!   only after the change it describes is written (and, for an append,
//!   durable). (`index.rs`, and each file that changes entries)
//!
//! Files, by role; each opens with the invariants it keeps, next to the
//! code that keeps them:
//! - `mod.rs` (this file): the layout, the [`Wal`] handle and its state,
//!   options, errors, [`WalEntry`], small accessors;
//! - `open.rs`: opening sled and the segments, and recovery: the scan of
//!   the unindexed tail, the move of the legacy "batches" tree, the scan
//!   that rebuilds the accounting;
//! - `writer.rs`: `append`, `append_framed`, `append_all`, and segment
//!   rotation on append;
//! - `reader.rs`: `read_from`, `read_within`, `location`, the quarantined
//!   entries;
//! - `ack.rs`: `ack`, `ack_delivered`, `quarantine`, the delivered progress,
//!   retiring drained segments to spares;
//! - `index.rs`: the sled trees and their key encodings, the in-memory
//!   accounting, `depth`, `partition_progress`;
//! - `check.rs`: the offline walk and checks behind `kafka-relay wal
//!   inspect | verify` (entries a page at a time, totals, the rules
//!   between entries);
//! - `segment.rs`, `frame.rs`: segment files and the frame format (plain
//!   and encrypted);
//! - `crypt.rs`: the key (`wal.encryption_key_file`), its id, sealing;
//!   `tests.rs`: the unit tests of `Wal`.
//!
//! Callers: `pipeline` opens it and quarantines corrupted entries at start-up,
//! `source` appends and pauses on `is_full`, `shipper` reads and acks,
//! `cli::wal` walks and checks it offline (`check`). The
//! API is synchronous (sled and file I/O block): those run it on their own
//! threads or through `spawn_blocking`.

mod ack;
pub(crate) mod check;
mod crypt;
mod frame;
mod index;
mod open;
mod reader;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use crypt::{fresh_nonce, KeyFileError, KeyId, SealError, WalKey};
pub use frame::{
    decode_frame, decode_frame_with, encode_batch, encrypt_frame, CorruptionReason, FrameBuilder,
    FrameEncodeError, FrameError, FramedBatch, ENCRYPTED_VERSION, ENCRYPTION_OVERHEAD,
    FORMAT_VERSION, HEADER_LEN, MAX_PAYLOAD, RECORD_OVERHEAD,
};
pub use index::{Depth, WalDepth};
pub use open::LOCK_WAIT;
pub use segment::Location;

use crate::record::{Batch, TopicPartition};
use index::Accounting;
use writer::Writer;

/// Where an entry sits in the WAL: strictly increasing, never reused.
pub type WalPosition = u64;

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
    /// A stored value sealed under another key than the configured one:
    /// a configuration problem, never corruption (nothing is quarantined).
    #[error("WAL in {}: {what} is encrypted with key id {found}, but wal.encryption_key_file holds key id {configured}: not the key this WAL was written with (nothing was changed; configure the original key file)", .dir.display())]
    WrongKey {
        dir: PathBuf,
        /// The value: "entry <position>", "dead letter <id>".
        what: String,
        found: KeyId,
        configured: KeyId,
    },
    /// A stored value is encrypted and no key is configured.
    #[error("WAL in {}: {what} is encrypted (key id {found}), but no wal.encryption_key_file is set (nothing was changed; configure the key file it was written with)", .dir.display())]
    KeyMissing {
        dir: PathBuf,
        what: String,
        found: KeyId,
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

impl WalError {
    /// Splits why `what` in the WAL in `dir` could not be read: corruption
    /// (`Ok`, the reason), or a key problem (`Err`, the error for it).
    pub(crate) fn split_key_problem(
        dir: &Path,
        what: impl FnOnce() -> String,
        error: FrameError,
    ) -> Result<CorruptionReason, WalError> {
        match error {
            FrameError::Corrupted(reason) => Ok(reason),
            FrameError::WrongKey { found, configured } => Err(WalError::WrongKey {
                dir: dir.to_path_buf(),
                what: what(),
                found,
                configured,
            }),
            FrameError::KeyMissing { found } => Err(WalError::KeyMissing {
                dir: dir.to_path_buf(),
                what: what(),
                found,
            }),
        }
    }
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
    /// `wal.encryption_key_file`'s key: appends are encrypted with it, and
    /// reads of encrypted values need it.
    key: Option<WalKey>,
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

    /// The key appends are encrypted with, if one is configured.
    pub fn key(&self) -> Option<&WalKey> {
        self.inner.key.as_ref()
    }

    /// Decodes stored frame bytes with this WAL's key (a quarantined
    /// entry's raw bytes, for `wal inspect`).
    pub fn decode(&self, raw: &[u8]) -> Result<Batch, FrameError> {
        decode_frame_with(raw, self.key())
    }

    /// Stored entry `position`, checked: valid or corrupted, or an error
    /// for a key problem, which is never corruption.
    fn check(&self, position: WalPosition, raw: &[u8]) -> Result<WalEntry, WalError> {
        let stored_bytes = raw.len() as u64;
        match self.decode(raw) {
            Ok(batch) => Ok(WalEntry::Valid {
                position,
                batch,
                stored_bytes,
            }),
            Err(e) => Ok(WalEntry::Corrupted {
                position,
                reason: WalError::split_key_problem(
                    &self.inner.dir,
                    || format!("entry {position}"),
                    e,
                )?,
                stored_bytes,
            }),
        }
    }

    /// fsync of everything written so far, side trees included.
    pub fn sync(&self) -> Result<(), WalError> {
        self.flush("fsync of a side tree")
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
}

#[cfg(test)]
mod tests;
