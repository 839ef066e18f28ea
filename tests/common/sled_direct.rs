//! Direct access to a WAL's sled database, for tests that damage it on purpose.
//! Shared by `tests/wal_model.rs` and `tests/it/` through `#[path]`.

use std::path::Path;

/// Opens the WAL's sled database directly. sled releases its directory
/// lock only when its last background job ends, shortly after the `Wal` is
/// dropped, so a lock error is retried for a while (as `Wal::open` does).
pub fn open_sled(dir: &Path) -> sled::Db {
    let deadline = std::time::Instant::now() + kafka_relay::wal::LOCK_WAIT;
    loop {
        match kafka_relay::wal::sled_config(dir).open() {
            Ok(db) => return db,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("open sled in {}: {e}", dir.display()),
        }
    }
}
