//! Appending: batches framed and written at the end of the current
//! segment under one fsync, their positions handed out, their index
//! entries written, and a new segment started when the current one is
//! full.
//!
//! Invariants kept here:
//! - An append returns only after its records (position and frame) are
//!   fsync'd in their segment ([`Wal::write_frames`]): that one fsync is
//!   what makes an entry durable. Its index entries follow, not fsync'd
//!   (see `mod.rs` and `open.rs` for how a crash before sled's flush is
//!   recovered).
//! - The writer lock is held across a whole append, fsync included, so
//!   positions become durable in the order they are handed out, and they
//!   are consecutive within one [`Wal::append_all`].
//! - The in-memory accounting, and with it `next_position`, moves only
//!   after the entries are durable and indexed, so a reader never sees an
//!   entry whose append has not returned; on an error no position was
//!   handed out, and the next append takes it again.
//! - [`Writer::current`]'s end moves only past frames that are indexed: a
//!   failed write leaves bytes past it, which the next write overwrites.
//! - With a key configured, every frame an append writes is encrypted
//!   (`frame::encrypt_frame`, a fresh nonce each) before the writer lock
//!   is taken; no plain frame of it reaches a segment. Without one, frames
//!   are written plain, exactly as before encryption existed.
//! - A new segment is started when a write would take the current one
//!   past `segment_bytes` (an empty segment takes any write), in a spare if
//!   there is one; the segment it replaces is retired only if no entry is
//!   left in it, and the current segment never is.
//!
//! Called by `source`'s appender thread ([`Wal::append_framed`]), by
//! `open.rs` (the legacy move writes through [`Wal::write_frames`]), and by
//! tests ([`Wal::append`], [`Wal::append_all`]).

use std::fs::File;
use std::sync::Arc;

use super::index::EntryInfo;
use super::{encrypt_frame, segment, FramedBatch, Location, Wal, WalError, WalPosition};
use crate::record::{Batch, TopicPartition};

/// The segment appends go to. Only the holder of `Inner::writer` touches it.
#[derive(Debug)]
pub(super) struct Writer {
    /// Open segment and the end of its last durable frame: where the next
    /// frame is written, whatever a failed write left past it.
    pub(super) current: Option<(u64, Arc<File>, u64)>,
    /// The id the next new segment takes: above every id seen at open.
    pub(super) next_segment: u64,
}

impl Writer {
    /// Moves the current segment's end past `written`, once they are
    /// indexed durably.
    pub(super) fn advance(&mut self, written: &[Location]) {
        if let (Some((_, _, end)), Some(last)) = (self.current.as_mut(), written.last()) {
            *end = last.end();
        }
    }
}

impl Wal {
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
    /// them as it consumes: [`FrameBuilder`](super::FrameBuilder)).
    pub fn append_framed(&self, batches: &[FramedBatch]) -> Result<Vec<WalPosition>, WalError> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(empty) = batches.iter().find(|b| b.records == 0) {
            return Err(WalError::EmptyBatch {
                tp: TopicPartition::new(empty.topic.clone(), empty.partition),
            });
        }

        // Encrypted before the writer lock is taken: the lock covers only I/O.
        let sealed = match self.key() {
            Some(key) => batches
                .iter()
                .map(|batch| {
                    encrypt_frame(batch.frame(), key).map_err(|source| WalError::Frame {
                        tp: TopicPartition::new(batch.topic.clone(), batch.partition),
                        source,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let frames: Vec<&[u8]> = if self.key().is_some() {
            sealed.iter().map(Vec::as_slice).collect()
        } else {
            batches.iter().map(FramedBatch::frame).collect()
        };

        let mut writer = self.writer();
        let mut positions = Vec::with_capacity(batches.len());
        let mut next = self.accounting().next_position;
        for _ in batches {
            positions.push(next);
            next = self.after(next)?;
        }
        let records: Vec<(WalPosition, &[u8])> = positions.iter().copied().zip(frames).collect();
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
    pub(super) fn write_frames(
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
}
