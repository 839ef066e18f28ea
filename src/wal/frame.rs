//! The byte framing of one WAL entry: pure functions, no storage.
//!
//! ```text
//! offset  size  field
//! 0       1     version      (FORMAT_VERSION = 1)
//! 1       4     crc32        crc32fast over `payload`, little-endian
//! 5       4     payload_len  little-endian u32
//! 9       n     payload      bincode 2 (`config::standard()`) of `record::Batch`
//! ```
//!
//! Invariant: [`decode_frame`] returns `Ok` only for bytes that [`encode_batch`]
//! produced (up to crc32 collisions); anything else is a [`CorruptionReason`],
//! never a panic, and never an allocation larger than the frame allows.
//!
//! Called by `wal::store` on every append and every read, and by the fuzz
//! target `fuzz/fuzz_targets/wal_frame_decode.rs`.

use crate::record::Batch;

pub const FORMAT_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 9;
/// Largest payload a frame may declare. Batches are bounded by
/// `batch.max_bytes` far below this; the cap keeps a corrupted length from
/// driving a huge allocation while decoding.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// Why stored bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptionReason {
    #[error("entry is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("header declares {declared} payload bytes but {actual} are stored")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("payload does not decode as a batch: {0}")]
    Decode(String),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_PAYLOAD>()
}

/// Frames `batch` for storage.
pub fn encode_batch(batch: &Batch) -> Vec<u8> {
    // Encoding owned, bounded data into a Vec cannot fail.
    let payload = bincode::encode_to_vec(batch, bincode_config()).unwrap_or_default();
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.push(FORMAT_VERSION);
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Checks and decodes one stored frame.
pub fn decode_frame(bytes: &[u8]) -> Result<Batch, CorruptionReason> {
    if bytes.len() < HEADER_LEN {
        return Err(CorruptionReason::TooShort { len: bytes.len() });
    }
    if bytes[0] != FORMAT_VERSION {
        return Err(CorruptionReason::UnknownVersion(bytes[0]));
    }
    let expected = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let declared = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let payload = &bytes[HEADER_LEN..];
    if declared != payload.len() || declared > MAX_PAYLOAD {
        return Err(CorruptionReason::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let actual = crc32fast::hash(payload);
    if actual != expected {
        return Err(CorruptionReason::ChecksumMismatch { expected, actual });
    }
    let (batch, used): (Batch, usize) = bincode::decode_from_slice(payload, bincode_config())
        .map_err(|e| CorruptionReason::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CorruptionReason::Decode(format!(
            "{} trailing bytes after the batch",
            payload.len() - used
        )));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::record::{Header, Record};

    fn sample() -> Batch {
        Batch {
            topic: "orders".into(),
            partition: 2,
            records: (0..3)
                .map(|i| Record {
                    offset: 100 + i,
                    timestamp: Some(1_700_000_000_000 + i),
                    key: (i != 1).then(|| format!("k{i}").into_bytes()),
                    value: Some(vec![i as u8; 10]),
                    headers: vec![Header {
                        key: "h".into(),
                        value: None,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn frame_round_trips() {
        let batch = sample();
        assert_eq!(decode_frame(&encode_batch(&batch)), Ok(batch));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let frame = encode_batch(&sample());
        for byte in 0..frame.len() {
            for bit in 0..8 {
                let mut bad = frame.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_frame(&bad).is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let frame = encode_batch(&sample());
        for len in 0..frame.len() {
            assert!(
                decode_frame(&frame[..len]).is_err(),
                "truncation to {len} bytes went unnoticed"
            );
        }
    }

    #[test]
    fn unknown_version_is_named() {
        let mut frame = encode_batch(&sample());
        frame[0] = 9;
        assert_eq!(
            decode_frame(&frame),
            Err(CorruptionReason::UnknownVersion(9))
        );
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        // A valid header around a payload whose bincode claims a 4 GiB vector.
        let payload = [0xfc, 0xff, 0xff, 0xff, 0xff, 0x00];
        let mut frame = vec![FORMAT_VERSION];
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&payload);
        assert!(matches!(
            decode_frame(&frame),
            Err(CorruptionReason::Decode(_))
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let seed: u64 = std::env::var("KAFKA_RELAY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        println!("random_bytes_never_panic seed {seed} (replay with KAFKA_RELAY_TEST_SEED={seed})");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let valid = encode_batch(&sample());
        for _ in 0..5000 {
            let len = rng.random_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Half the cases keep a well-formed header so the decoder itself is exercised.
            if rng.random_bool(0.5) && bytes.len() >= HEADER_LEN {
                bytes[0] = FORMAT_VERSION;
                let payload_len = (bytes.len() - HEADER_LEN) as u32;
                let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
                bytes[1..5].copy_from_slice(&crc.to_le_bytes());
                bytes[5..9].copy_from_slice(&payload_len.to_le_bytes());
            }
            let _ = decode_frame(&bytes);
        }
        assert!(decode_frame(&valid).is_ok());
    }
}
