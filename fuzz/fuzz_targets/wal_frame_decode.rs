//! Arbitrary bytes given to the WAL frame decoder must yield a batch or a
//! `CorruptionReason`: never a panic, never a huge allocation (libFuzzer's
//! `-rss_limit_mb` catches the latter).
#![no_main]

use kafka_relay::wal::{decode_frame, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = decode_frame(data) {
        // Whatever decodes must survive its own round trip unchanged.
        assert_eq!(decode_frame(&encode_batch(&batch)).ok(), Some(batch));
    }
});
