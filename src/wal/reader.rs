//! Reading: entries in position order through the index, each frame read
//! from its segment and checked; where a frame is; the quarantined
//! entries.
//!
//! Invariants kept here:
//! - Only entries below the accounting's `next_position` are read, so an
//!   entry is visible from the moment its append is durable, not before
//!   ([`Wal::read_within`]).
//! - Every read checks the frame ([`Wal::load`]): a bad entry (flipped
//!   bits, a short or missing segment, an unreadable index value, an
//!   encrypted frame that does not authenticate under the configured key)
//!   is a [`WalEntry::Corrupted`] value, never skipped, never a panic.
//! - A key problem (an encrypted entry under another key id than the
//!   configured one, or with none configured) is a [`WalError::WrongKey`] /
//!   [`WalError::KeyMissing`] error of the read, never a `Corrupted` entry:
//!   so it can never be quarantined, and `open` (whose recovery scan loads
//!   every entry) fails with it.
//! - An entry's stored bytes are the index's length, what it holds on disk,
//!   also when its segment ends early.
//! - A read's memory is bounded by its byte budget: sizes come from the
//!   index, so no entry past the budget is read from its segment (at least
//!   one entry is read, however large).
//!
//! Called by `shipper` ([`Wal::read_within`]), `pipeline` at start-up
//! ([`Wal::read_from`], to find corrupted entries), `check.rs` (the offline
//! walk), `open.rs` (the recovery scan loads every entry) and `ack.rs`
//! (quarantine reads the raw bytes).

use std::path::PathBuf;
use std::sync::Arc;

use super::index::{INDEX, QUARANTINE};
use super::{segment, CorruptionReason, Location, Wal, WalEntry, WalError, WalPosition};

impl Wal {
    /// The entry an index value points at, read and checked, and its segment.
    pub(super) fn load(
        &self,
        position: WalPosition,
        value: &[u8],
    ) -> Result<(WalEntry, u64), WalError> {
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
                let mut entry = self.check(position, &raw)?;
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
    pub(super) fn read_raw(&self, location: Location) -> Result<Option<Vec<u8>>, WalError> {
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
}
