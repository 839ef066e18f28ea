//! Damage to a WAL entry on disk, made on purpose as a bad disk would make
//! it, for the tests that prove such damage is found and loses nothing.
//! Shared by `tests/wal_model.rs`, `tests/wal_cli.rs` and `tests/it/`
//! through `#[path]`.

use std::os::unix::fs::FileExt as _;

use kafka_relay::wal::{Wal, WalPosition};

/// The bytes entry `position` has in its segment file.
pub fn stored_bytes(wal: &Wal, position: WalPosition) -> Vec<u8> {
    let (path, at) = wal
        .location(position)
        .expect("read the WAL index")
        .unwrap_or_else(|| panic!("the WAL holds no entry {position}"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut raw = vec![0; at.len as usize];
    file.read_exact_at(&mut raw, at.offset)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    raw
}

/// XORs byte `at` (taken modulo the entry's length) of entry `position`
/// with `xor`, in place in its segment; returns the entry's bytes as they
/// now are.
pub fn flip_byte(wal: &Wal, position: WalPosition, at: usize, xor: u8) -> Vec<u8> {
    let (path, location) = wal
        .location(position)
        .expect("read the WAL index")
        .unwrap_or_else(|| panic!("the WAL holds no entry {position}"));
    let mut raw = stored_bytes(wal, position);
    let at = at % raw.len();
    raw[at] ^= xor;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.write_all_at(&raw[at..=at], location.offset + at as u64)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file.sync_data().expect("fsync the damage");
    raw
}
