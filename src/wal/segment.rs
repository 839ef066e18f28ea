//! Segment files: where the WAL keeps the bytes of its frames, outside sled.
//!
//! ```text
//! <wal.dir>/segments/00000000000000000007.seg   records back to back, each:
//!     position  u64 BE   the entry's WAL position
//!     frame     n bytes  exactly as `frame::encode_batch` made it (its own header
//!                        holds the length and the crc32), or `frame::encrypt_frame`
//! <wal.dir>/segments/00000000000000000003.spare a drained segment kept to be
//!                        written over as a later one (see `retire`, `reuse`)
//! index value (in sled)   segment u64 BE | offset u64 BE | len u32 BE   (20 bytes):
//!                         where the *frame* starts, and its length
//! ```
//!
//! A segment is only ever appended to, by one writer, through positioned
//! writes at the end the writer keeps in memory: a failed write leaves
//! bytes past that end, which the next write overwrites. Readers go
//! through the index; only [`scan`] reads a segment without it, to index
//! what was appended after the index was last made durable.
//!
//! A drained segment is recycled rather than deleted, while few spares
//! exist: renamed to a spare, later renamed to the next segment's name and
//! written over from its start. Writing into a file's pages the kernel
//! already holds is several times cheaper than into new ones (a fresh page
//! has to be found, zeroed and, on a VM, backed by the host; docs/benchmarks.md
//! has the figures), and overwriting allocated blocks needs no block
//! allocation before the fdatasync.
//!
//! Invariants kept here:
//! - A new segment's directory entry is fsync'd before the segment is
//!   handed out, so an index entry can never outlive the file it names.
//!   That holds for a reused spare too.
//! - A reused segment holds an older segment's records past what has been
//!   written to it. Nothing reads them as entries: readers go through the
//!   index, and [`scan`] stops at the first record whose position is not
//!   the next one, which an older record's never is (positions are never
//!   reused).
//! - [`read_at`] returns what is there, short if the file is: the frame
//!   check that follows reports the damage.
//! - [`scan`] returns only whole records whose frame passes its checks and
//!   whose positions follow each other from the one it is given; it stops
//!   at the first record that does not (a torn append, garbage, damage).
//!   It needs no key: an encrypted frame counts as whole when its length
//!   and crc32 check out (`frame::intact`); its key id and tag are checked
//!   when it is loaded, so a key problem fails the `open` that follows
//!   instead of cutting the WAL short here.
//!
//! Called only by `wal` (`open.rs`, `writer.rs`, `reader.rs`, `ack.rs`),
//! which decides when to rotate and delete.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::frame::{intact, HEADER_LEN, MAX_BODY};

const SUFFIX: &str = ".seg";
const SPARE_SUFFIX: &str = ".spare";
/// Bytes before each frame in a segment: its position.
pub const RECORD_PREFIX: u64 = 8;

/// Where one frame lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    pub const ENCODED_LEN: usize = 20;

    pub fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub fn from_bytes(raw: &[u8]) -> Option<Location> {
        let raw: &[u8; Self::ENCODED_LEN] = raw.try_into().ok()?;
        let (segment, rest) = raw.split_at(8);
        let (offset, len) = rest.split_at(8);
        Some(Location {
            segment: u64::from_be_bytes(segment.try_into().ok()?),
            offset: u64::from_be_bytes(offset.try_into().ok()?),
            len: u32::from_be_bytes(len.try_into().ok()?),
        })
    }

    pub fn end(self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// The segments folder of the WAL in `wal_dir`.
pub fn dir_of(wal_dir: &Path) -> PathBuf {
    wal_dir.join("segments")
}

pub fn path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SUFFIX}"))
}

fn spare_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SPARE_SUFFIX}"))
}

/// Ids of the segment files in `dir`, ascending; other files are not ours
/// and are left alone. A missing folder holds none.
pub fn list(dir: &Path) -> io::Result<Vec<u64>> {
    list_with(dir, SUFFIX)
}

/// The spare files in `dir` (see [`retire`]), ascending by the id they had.
pub fn list_spares(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(list_with(dir, SPARE_SUFFIX)?
        .into_iter()
        .map(|id| spare_path(dir, id))
        .collect())
}

fn list_with(dir: &Path, suffix: &str) -> io::Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let name = entry?.file_name();
        let id: Option<u64> = name
            .to_str()
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|stem| stem.len() == 20)
            .and_then(|stem| stem.parse().ok());
        ids.extend(id);
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Creates segment `segment`, durably named: the folder (and, the first
/// time, the folder's own entry in the WAL directory) is fsync'd.
pub fn create(dir: &Path, segment: u64) -> io::Result<File> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            File::open(parent)?.sync_all()?;
        }
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path(dir, segment))?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Turns drained segment `segment` into a spare and returns the spare's
/// path. Only for a segment no index entry points into, durably: a crash
/// that undoes the rename leaves a segment without entries, which `open`
/// deletes.
pub fn retire(dir: &Path, segment: u64) -> io::Result<PathBuf> {
    let spare = spare_path(dir, segment);
    std::fs::rename(path(dir, segment), &spare)?;
    Ok(spare)
}

/// Makes `spare` segment `segment`, durably named as [`create`] does, and
/// opens it to be written over from its start.
pub fn reuse(dir: &Path, spare: &Path, segment: u64) -> io::Result<File> {
    let target = path(dir, segment);
    std::fs::rename(spare, &target)?;
    let file = OpenOptions::new().read(true).write(true).open(target)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Opens an existing segment for reading.
pub fn open(dir: &Path, segment: u64) -> io::Result<File> {
    File::open(path(dir, segment))
}

/// Writes all of `bytes` at `offset`.
pub fn write_at(file: &File, offset: u64, bytes: &[u8]) -> io::Result<()> {
    file.write_all_at(bytes, offset)
}

/// Reads `len` bytes at `offset`, fewer where the file ends sooner.
pub fn read_at(file: &File, offset: u64, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The records of `file` (segment `segment`) from byte `from` on, for as
/// long as each is whole, its frame checks out and its position is the one
/// after the previous (`first` for the first): each record's position and
/// where its frame is.
pub fn scan(file: &File, segment: u64, from: u64, first: u64) -> io::Result<Vec<(u64, Location)>> {
    let mut found = Vec::new();
    let (mut offset, mut expected) = (from, first);
    loop {
        let head = read_at(file, offset, (RECORD_PREFIX as usize + HEADER_LEN) as u32)?;
        if head.len() < RECORD_PREFIX as usize + HEADER_LEN {
            return Ok(found);
        }
        let (position, frame_head) = head.split_at(RECORD_PREFIX as usize);
        let position = u64::from_be_bytes(position.try_into().unwrap_or_default());
        let mut payload_len = [0u8; 4];
        payload_len.copy_from_slice(&frame_head[5..9]);
        let payload_len = u32::from_le_bytes(payload_len) as usize;
        if position != expected || payload_len > MAX_BODY {
            return Ok(found);
        }
        let len = (HEADER_LEN + payload_len) as u32;
        let frame_at = offset + RECORD_PREFIX;
        if !intact(&read_at(file, frame_at, len)?) {
            return Ok(found);
        }
        found.push((
            position,
            Location {
                segment,
                offset: frame_at,
                len,
            },
        ));
        offset = frame_at + u64::from(len);
        let Some(next) = expected.checked_add(1) else {
            return Ok(found);
        };
        expected = next;
    }
}

/// Deletes segment `segment`; one already gone is not an error.
pub fn remove(dir: &Path, segment: u64) -> io::Result<()> {
    remove_file(&path(dir, segment))
}

/// Deletes a file; one already gone is not an error.
pub fn remove_file(file: &Path) -> io::Result<()> {
    match std::fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
