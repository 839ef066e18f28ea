//! Arbitrary bytes given to the WAL frame decoder must yield a batch or a
//! `CorruptionReason`: never a panic, never a huge allocation (libFuzzer's
//! `-rss_limit_mb`/`-malloc_limit_mb` catch the latter).
//!
//! Run: `cd fuzz && cargo +nightly fuzz run wal_frame_decode -- -max_total_time=60`
#![no_main]

use kafka_relay::wal::{decode_frame, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_frame(data) {
        // Whatever decodes must survive its own round trip unchanged.
        let frame = encode_batch(&batch).expect("a decoded batch re-encodes");
        assert_eq!(decode_frame(&frame).ok(), Some(batch));
    }
});
