//! The byte framing of one WAL entry: pure functions, no storage.
//!
//! A plain frame (no `wal.encryption_key_file`):
//!
//! ```text
//! offset  size  field
//! 0       1     version      FORMAT_VERSION = 1
//! 1       4     crc32        crc32fast over `payload`, little-endian
//! 5       4     payload_len  little-endian u32, at most MAX_PAYLOAD
//! 9       n     payload      bincode 2 (`config::standard()`) of `record::Batch`
//! ```
//!
//! An encrypted frame (`wal.encryption_key_file` set; see `crypt`): the same
//! 9-byte header, so length and checksum are checked without the key, then
//! the sealed body:
//!
//! ```text
//! offset  size  field
//! 0       1     version      ENCRYPTED_VERSION = 2
//! 1       4     crc32        crc32fast over bytes 9.. (key id, nonce, ciphertext, tag), LE
//! 5       4     body_len     little-endian u32: 4 + 24 + n + 16, at most MAX_BODY
//! 9       4     key_id       first 4 bytes of SHA-256 of the key
//! 13      24    nonce        random, fresh for every frame (XChaCha20-Poly1305)
//! 37      n     ciphertext   of the plain frame's payload (bincode of the Batch)
//! 37+n    16    tag          Poly1305, over the ciphertext and the associated data
//! AAD:    version | body_len | key_id | nonce   (bytes 0, 5..37: every header field
//!         but the crc32, which is computed over the sealed bytes afterwards)
//! ```
//!
//! Invariants:
//! - [`decode_frame`] returns `Ok` only for bytes [`encode_batch`] produced
//!   (up to crc32 collisions); anything else is a [`CorruptionReason`], never
//!   a panic. It reads plain frames only; [`decode_frame_with`] reads both.
//! - [`decode_frame_with`] reports a key problem (a frame sealed under
//!   another key id than the configured one, or sealed while no key is
//!   configured) as [`FrameError::WrongKey`] / [`FrameError::KeyMissing`],
//!   never as corruption, and only for a frame whose length and crc32 check
//!   out: a damaged key id is corruption, not a wrong key. With the right
//!   key id, a tag that does not authenticate (tampering, or damage the
//!   crc32 missed) is [`CorruptionReason::AuthenticationFailed`].
//! - A plain frame is read whether or not a key is configured (entries
//!   written before encryption was enabled drain normally).
//! - Every frame [`encode_batch`] accepts, [`decode_frame`] decodes: both use
//!   the same `MAX_PAYLOAD`, and the decoder's bincode limit grows with the
//!   payload (see `decode_payload`), so a stored batch can never come back
//!   as "corrupted" just for being big.
//! - Decoding allocates at most `claim_limit(payload tier)`: about 128 times
//!   the payload length in the worst case, whatever the bytes claim.
//!
//! Called by `wal::Wal` on every append, every read and at recovery, and by
//! the fuzz target `fuzz/fuzz_targets/wal_frame_decode.rs`.

use super::crypt::{self, KeyId, WalKey, KEY_ID_LEN, NONCE_LEN, TAG_LEN};
use crate::record::{Batch, RecordRef};

pub const FORMAT_VERSION: u8 = 1;
/// The version of an encrypted frame.
pub const ENCRYPTED_VERSION: u8 = 2;
pub const HEADER_LEN: usize = 9;
/// Largest payload a frame may hold. Far above any sane `batch.max_bytes`;
/// the cap keeps the decoder's allocation bound meaningful.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;
/// Bytes of an encrypted frame's body before its ciphertext: key id, nonce.
const SEALED_HEAD: usize = KEY_ID_LEN + NONCE_LEN;
/// Bytes an encrypted frame holds beyond a plain one: key id, nonce, tag.
pub const ENCRYPTION_OVERHEAD: usize = SEALED_HEAD + TAG_LEN;
/// Largest body (the bytes after the header) of any frame.
pub const MAX_BODY: usize = MAX_PAYLOAD + ENCRYPTION_OVERHEAD;

/// Upper bound on the bytes bincode *claims* (its allocation guard) per
/// payload byte when decoding any `Batch`. bincode claims `size_of` for
/// every value and `len * size_of::<T>()` for every container before
/// filling it; the worst real ratio is an empty `Header` (48 bytes in
/// memory, 2 encoded), so 24. Checked by
/// `tests::worst_case_batches_decode_at_the_tier_edge`.
const CLAIM_FACTOR: usize = 32;
const CLAIM_SLACK: usize = 4096;

const fn claim_limit(payload_cap: usize) -> usize {
    payload_cap
        .saturating_mul(CLAIM_FACTOR)
        .saturating_add(CLAIM_SLACK)
}

/// Why stored bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptionReason {
    #[error("entry is {len} bytes, shorter than the {HEADER_LEN}-byte frame header")]
    TooShort { len: usize },
    #[error("unknown frame format version {0} (this build reads versions {FORMAT_VERSION} and {ENCRYPTED_VERSION})")]
    UnknownVersion(u8),
    #[error("frame header declares {declared} payload bytes but {actual} are stored")]
    LengthMismatch { declared: usize, actual: usize },
    #[error(
        "frame header declares {declared} payload bytes, above the {MAX_PAYLOAD}-byte maximum"
    )]
    PayloadTooLarge { declared: usize },
    #[error("checksum mismatch: header says {expected:#010x}, payload hashes to {actual:#010x}")]
    ChecksumMismatch { expected: u32, actual: u32 },
    #[error("payload passes its checksum but does not decode as a batch: {0}")]
    Decode(String),
    #[error("encrypted frame body is {len} bytes, shorter than its key id, nonce and tag")]
    SealedTooShort { len: usize },
    #[error("encrypted frame (key id {key_id}, the configured key) does not authenticate: altered or damaged")]
    AuthenticationFailed { key_id: KeyId },
    // The two below are found by the WAL before any frame is decoded.
    #[error("its segment file {segment:020}.seg is missing")]
    SegmentMissing { segment: u64 },
    #[error("its index entry is {len} bytes instead of 20 (segment, offset, length)")]
    BadLocation { len: usize },
}

/// Why stored bytes could not be read as a batch: damage, or a key problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Corrupted(#[from] CorruptionReason),
    #[error("it is encrypted with key id {found}, but wal.encryption_key_file holds key id {configured}: not the key it was written with")]
    WrongKey { found: KeyId, configured: KeyId },
    #[error("it is encrypted (key id {found}), but no wal.encryption_key_file is set")]
    KeyMissing { found: KeyId },
}

/// Why a batch cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameEncodeError {
    #[error("batch encodes to {payload_len} bytes, above the {MAX_PAYLOAD}-byte frame maximum")]
    TooLarge { payload_len: usize },
    #[error("bincode could not encode the batch: {0}")]
    Encode(String),
    #[error("cannot encrypt the frame: {0}")]
    Seal(#[from] crypt::SealError),
}

/// The associated data of an encrypted frame: every header field but the crc32.
fn sealed_aad(frame: &[u8]) -> [u8; 1 + 4 + SEALED_HEAD] {
    let mut aad = [0; 1 + 4 + SEALED_HEAD];
    aad[0] = frame[0];
    aad[1..].copy_from_slice(&frame[5..HEADER_LEN + SEALED_HEAD]);
    aad
}

/// The encrypted frame of plain frame `plain` (as [`FramedBatch::frame`]
/// gives it), under `key` and a fresh nonce.
pub fn encrypt_frame(plain: &[u8], key: &WalKey) -> Result<Vec<u8>, FrameEncodeError> {
    let payload = plain.get(HEADER_LEN..).unwrap_or_default();
    let body_len = SEALED_HEAD + payload.len() + TAG_LEN;
    // payload <= MAX_PAYLOAD (checked when it was framed), so body_len <= MAX_BODY < u32::MAX.
    let body_len_u32 = u32::try_from(body_len).map_err(|_| FrameEncodeError::TooLarge {
        payload_len: payload.len(),
    })?;
    let nonce = crypt::fresh_nonce()?;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.push(ENCRYPTED_VERSION);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&body_len_u32.to_le_bytes());
    out.extend_from_slice(&key.id().0);
    out.extend_from_slice(&nonce);
    let aad = sealed_aad(&out);
    out.extend_from_slice(payload);
    let tag = key.seal(&nonce, &aad, &mut out[HEADER_LEN + SEALED_HEAD..])?;
    out.extend_from_slice(&tag);
    let crc = crc32fast::hash(&out[HEADER_LEN..]);
    out[1..5].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Frames `batch` for storage.
pub fn encode_batch(batch: &Batch) -> Result<Vec<u8>, FrameEncodeError> {
    Ok(FramedBatch::of(batch)?.into_frame())
}

/// Appends to a `Vec` without the zeroing and the sizing pass of
/// `encode_into_slice`; it cannot fail.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// The bincode of a `Batch` up to its first record: topic, partition and
/// record count. Encoding `(topic, partition, count as u64)` gives these
/// bytes, as bincode writes a `Vec`'s length as a `u64`.
fn batch_head(topic: &str, partition: i32, records: usize) -> Result<Vec<u8>, FrameEncodeError> {
    let mut head = Vec::with_capacity(batch_head_room(topic));
    bincode::encode_into_writer(
        (topic, partition, records as u64),
        VecWriter(&mut head),
        bincode::config::standard(),
    )
    .map_err(|e| FrameEncodeError::Encode(e.to_string()))?;
    Ok(head)
}

/// The most bytes [`batch_head`] can take: varints of at most 9 bytes (the
/// topic's length, the count) and 5 (the partition).
fn batch_head_room(topic: &str) -> usize {
    9 + topic.len() + 5 + 9
}

/// Bytes a record takes in a frame besides its payload, at most, when it
/// has no headers: offset, timestamp, and the two options' tags and lengths.
pub const RECORD_OVERHEAD: usize = 10 + 11 + 2 * 10 + 1;

/// Builds one batch's frame record by record, from borrowed bytes: what
/// the source does with consumed messages, so that a record's bytes are
/// copied once, from librdkafka's buffer into the frame. [`encode_batch`]
/// goes through it too, so a frame has one encoder.
///
/// Invariant: [`FrameBuilder::finish`] returns exactly the bytes
/// `encode_batch` would for the `Batch` of the records pushed. The frame
/// header and the batch's head (topic, partition, count: known only at
/// the end) go into room kept at the front of the buffer, so nothing is
/// moved once pushed.
pub struct FrameBuilder {
    topic: String,
    partition: i32,
    bytes: Vec<u8>,
    room: usize,
    records: usize,
    payload_len: usize,
    next_offset: Option<i64>,
    error: Option<String>,
}

impl FrameBuilder {
    /// `capacity`: the bytes of records expected, reserved up front so
    /// that pushing does not move what is already in.
    pub fn new(topic: &str, partition: i32, capacity: usize) -> FrameBuilder {
        FrameBuilder::in_buffer(Vec::new(), topic, partition, capacity)
    }

    /// [`FrameBuilder::new`] in a buffer of an earlier frame
    /// ([`FramedBatch::into_buffer`]): memory the process has written to
    /// already, where a fresh allocation of this size may be new pages
    /// (zeroed by the kernel, on a VM backed by the host, on every batch).
    pub fn in_buffer(
        mut bytes: Vec<u8>,
        topic: &str,
        partition: i32,
        capacity: usize,
    ) -> FrameBuilder {
        let room = HEADER_LEN + batch_head_room(topic);
        bytes.clear();
        bytes.reserve(room + capacity);
        bytes.resize(room, 0);
        FrameBuilder {
            topic: topic.to_string(),
            partition,
            bytes,
            room,
            records: 0,
            payload_len: 0,
            next_offset: None,
            error: None,
        }
    }

    /// Appends one record; its offset must be above the last one's (the
    /// caller's invariant, as for a `Batch`).
    pub fn push(&mut self, record: &RecordRef<'_>) {
        let written = bincode::encode_into_writer(
            record,
            VecWriter(&mut self.bytes),
            bincode::config::standard(),
        );
        // Only a writer can fail bincode here, and this one does not; kept
        // for `finish` rather than assumed.
        if let Err(e) = written {
            self.error.get_or_insert(e.to_string());
        }
        self.records += 1;
        self.payload_len += record.payload_len();
        self.next_offset = Some(record.offset + 1);
    }

    pub fn records(&self) -> usize {
        self.records
    }

    /// The offset after the last record pushed.
    pub fn next_offset(&self) -> Option<i64> {
        self.next_offset
    }

    /// Bytes of user data pushed (as [`Batch::payload_len`]).
    pub fn payload_len(&self) -> usize {
        self.payload_len
    }

    pub fn finish(mut self) -> Result<FramedBatch, FrameEncodeError> {
        if let Some(e) = self.error {
            return Err(FrameEncodeError::Encode(e));
        }
        let head = batch_head(&self.topic, self.partition, self.records)?;
        let payload_len = head.len() + self.bytes.len() - self.room;
        // Refused here so that decode_frame never rejects what was appended.
        if payload_len > MAX_PAYLOAD {
            return Err(FrameEncodeError::TooLarge { payload_len });
        }
        let start = self.room - head.len() - HEADER_LEN;
        self.bytes[start + HEADER_LEN..self.room].copy_from_slice(&head);
        let crc = crc32fast::hash(&self.bytes[start + HEADER_LEN..]);
        let header = &mut self.bytes[start..start + HEADER_LEN];
        header[0] = FORMAT_VERSION;
        header[1..5].copy_from_slice(&crc.to_le_bytes());
        // payload_len <= MAX_PAYLOAD < u32::MAX, so the cast is exact.
        header[5..9].copy_from_slice(&(payload_len as u32).to_le_bytes());
        Ok(FramedBatch {
            topic: self.topic,
            partition: self.partition,
            records: self.records,
            payload_len: self.payload_len,
            next_offset: self.next_offset,
            bytes: self.bytes,
            start,
        })
    }
}

/// One batch, framed for storage, with what the WAL and its callers need to
/// know about it without decoding it.
#[derive(Debug)]
pub struct FramedBatch {
    pub topic: String,
    pub partition: i32,
    /// How many records it holds.
    pub records: usize,
    /// Bytes of user data (as [`Batch::payload_len`]).
    pub payload_len: usize,
    /// The source offset after its last record; `None` if it holds none.
    pub next_offset: Option<i64>,
    bytes: Vec<u8>,
    start: usize,
}

impl FramedBatch {
    /// Frames a whole `Batch`.
    pub fn of(batch: &Batch) -> Result<FramedBatch, FrameEncodeError> {
        let capacity = batch.payload_len() + batch.records.len() * RECORD_OVERHEAD;
        let mut builder = FrameBuilder::new(&batch.topic, batch.partition, capacity);
        for record in &batch.records {
            builder.push(&RecordRef::from(record));
        }
        builder.finish()
    }

    /// The frame's bytes, as stored.
    pub fn frame(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn into_frame(mut self) -> Vec<u8> {
        self.bytes.drain(..self.start);
        self.bytes
    }

    /// The buffer, to build a later frame in ([`FrameBuilder::in_buffer`]).
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

/// Checks and decodes one stored plain frame: length, version, declared
/// length, checksum, then bincode with an allocation limit. An encrypted
/// frame needs [`decode_frame_with`]; here it is an unknown version.
pub fn decode_frame(bytes: &[u8]) -> Result<Batch, CorruptionReason> {
    let payload = envelope(bytes, FORMAT_VERSION)?;
    decode_batch(payload)
}

/// Checks and decodes one stored frame, plain or encrypted, with the
/// configured key (`None`: none is). See the module comment for what is
/// a key problem and what is corruption.
pub fn decode_frame_with(bytes: &[u8], key: Option<&WalKey>) -> Result<Batch, FrameError> {
    if bytes.first() != Some(&ENCRYPTED_VERSION) {
        return Ok(decode_frame(bytes)?);
    }
    let body = envelope(bytes, ENCRYPTED_VERSION)?;
    let (found, nonce, sealed) = split_sealed(body)?;
    let Some(key) = key else {
        return Err(FrameError::KeyMissing { found });
    };
    if key.id() != found {
        return Err(FrameError::WrongKey {
            found,
            configured: key.id(),
        });
    }
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut tag_bytes = [0; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut plain = ciphertext.to_vec();
    if !key.open(&nonce, &sealed_aad(bytes), &mut plain, &tag_bytes) {
        return Err(CorruptionReason::AuthenticationFailed { key_id: found }.into());
    }
    Ok(decode_batch(&plain)?)
}

/// Whether `bytes` are a whole frame that passes every check that needs no
/// key: a plain frame decodes; an encrypted one has its length and crc32
/// right. (`segment::scan` finds the end of the appended records with it.)
pub fn intact(bytes: &[u8]) -> bool {
    match bytes.first() {
        Some(&ENCRYPTED_VERSION) => envelope(bytes, ENCRYPTED_VERSION)
            .and_then(split_sealed)
            .is_ok(),
        _ => decode_frame(bytes).is_ok(),
    }
}

/// An encrypted body's key id, nonce, and ciphertext with its tag.
fn split_sealed(body: &[u8]) -> Result<(KeyId, [u8; NONCE_LEN], &[u8]), CorruptionReason> {
    if body.len() < ENCRYPTION_OVERHEAD {
        return Err(CorruptionReason::SealedTooShort { len: body.len() });
    }
    let (head, sealed) = body.split_at(SEALED_HEAD);
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&head[..KEY_ID_LEN]);
    let mut nonce = [0; NONCE_LEN];
    nonce.copy_from_slice(&head[KEY_ID_LEN..]);
    Ok((KeyId(id), nonce, sealed))
}

/// The header checks of a frame of `version`: length, version, declared
/// length, checksum. Returns the body.
fn envelope(bytes: &[u8], version: u8) -> Result<&[u8], CorruptionReason> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(CorruptionReason::TooShort { len: bytes.len() });
    };
    let [found, c0, c1, c2, c3, l0, l1, l2, l3] = *header;
    if found != version {
        return Err(CorruptionReason::UnknownVersion(found));
    }
    let expected = u32::from_le_bytes([c0, c1, c2, c3]);
    let declared = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let max = if version == ENCRYPTED_VERSION {
        MAX_BODY
    } else {
        MAX_PAYLOAD
    };
    if declared > max {
        return Err(CorruptionReason::PayloadTooLarge { declared });
    }
    if declared != body.len() {
        return Err(CorruptionReason::LengthMismatch {
            declared,
            actual: body.len(),
        });
    }
    let actual = crc32fast::hash(body);
    if actual != expected {
        return Err(CorruptionReason::ChecksumMismatch { expected, actual });
    }
    Ok(body)
}

/// bincode of a whole `Batch`, nothing after it.
fn decode_batch(payload: &[u8]) -> Result<Batch, CorruptionReason> {
    let (batch, used) =
        decode_payload(payload).map_err(|e| CorruptionReason::Decode(e.to_string()))?;
    if used != payload.len() {
        return Err(CorruptionReason::Decode(format!(
            "{} trailing bytes after the batch",
            payload.len() - used
        )));
    }
    Ok(batch)
}

/// bincode's limit is a const generic, so the limit is picked from a ladder
/// of payload tiers (each 4x the last): allocation stays within ~128x the
/// payload, and a valid payload always fits its tier's limit.
fn decode_payload(payload: &[u8]) -> Result<(Batch, usize), bincode::error::DecodeError> {
    macro_rules! ladder {
        ($($cap:expr),* $(,)?) => {
            $(
                if payload.len() <= $cap {
                    return decode_within::<{ claim_limit($cap) }>(payload);
                }
            )*
        };
    }
    ladder!(
        4 << 10,
        16 << 10,
        64 << 10,
        256 << 10,
        1 << 20,
        4 << 20,
        16 << 20,
        64 << 20
    );
    decode_within::<{ claim_limit(MAX_PAYLOAD) }>(payload)
}

fn decode_within<const LIMIT: usize>(
    payload: &[u8],
) -> Result<(Batch, usize), bincode::error::DecodeError> {
    bincode::decode_from_slice(payload, bincode::config::standard().with_limit::<LIMIT>())
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
                        value: (i == 2).then(|| b"v".to_vec()),
                    }],
                })
                .collect(),
        }
    }

    fn encode(batch: &Batch) -> Vec<u8> {
        encode_batch(batch).expect("encode")
    }

    /// A frame with a correct header around arbitrary payload bytes, so
    /// the bincode decoder itself is exercised.
    fn frame_around(payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![FORMAT_VERSION];
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn frame_round_trips() {
        let batch = sample();
        let frame = encode(&batch);
        assert_eq!(frame[0], FORMAT_VERSION);
        assert_eq!(decode_frame(&frame), Ok(batch));
    }

    /// The builder writes the batch's head last, into room it kept: the
    /// frame must still be the plain bincode of the whole `Batch`, for
    /// varints of every width (a topic name over 250 bytes, over 250
    /// records, a negative partition).
    #[test]
    fn a_built_frame_is_the_bincode_of_its_batch() {
        let long_topic = "t".repeat(249) + "xy";
        let cases = [
            ("orders", 2, 3),
            (long_topic.as_str(), -1, 300),
            ("t", i32::MAX, 70_000),
        ];
        for (topic, partition, count) in cases {
            let mut batch = sample();
            batch.topic = topic.to_string();
            batch.partition = partition;
            batch.records = (0..count)
                .map(|i| Record {
                    offset: i,
                    ..sample().records[(i % 3) as usize].clone()
                })
                .collect();
            let payload =
                bincode::encode_to_vec(&batch, bincode::config::standard()).expect("bincode");
            // Reserving nothing, so the frame also grows as it fills.
            let mut builder = FrameBuilder::new(topic, partition, 0);
            for record in &batch.records {
                builder.push(&RecordRef::from(record));
            }
            assert_eq!(builder.records(), batch.records.len());
            assert_eq!(builder.payload_len(), batch.payload_len());
            let framed = builder.finish().expect("finish");
            assert_eq!(framed.next_offset, batch.next_offset());
            assert_eq!(framed.frame(), frame_around(&payload).as_slice());
            assert_eq!(decode_frame(framed.frame()), Ok(batch));
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let frame = encode(&sample());
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
        let frame = encode(&sample());
        for len in 0..frame.len() {
            let got = decode_frame(&frame[..len]);
            if len < HEADER_LEN {
                assert_eq!(got, Err(CorruptionReason::TooShort { len }));
            } else {
                assert!(
                    matches!(got, Err(CorruptionReason::LengthMismatch { .. })),
                    "truncation to {len} bytes: {got:?}"
                );
            }
        }
    }

    #[test]
    fn appended_bytes_are_detected() {
        let mut frame = encode(&sample());
        frame.push(0);
        assert!(matches!(
            decode_frame(&frame),
            Err(CorruptionReason::LengthMismatch { .. })
        ));
    }

    #[test]
    fn unknown_version_is_named() {
        let mut frame = encode(&sample());
        frame[0] = 9;
        assert_eq!(
            decode_frame(&frame),
            Err(CorruptionReason::UnknownVersion(9))
        );
    }

    #[test]
    fn declared_length_above_the_maximum_is_refused_before_anything_else() {
        let mut frame = encode(&sample());
        frame[5..9].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_frame(&frame),
            Err(CorruptionReason::PayloadTooLarge {
                declared: u32::MAX as usize
            })
        );
    }

    #[test]
    fn trailing_bytes_inside_a_checksummed_payload_are_corruption() {
        let mut payload =
            bincode::encode_to_vec(sample(), bincode::config::standard()).expect("encode");
        payload.push(0);
        assert!(matches!(
            decode_frame(&frame_around(&payload)),
            Err(CorruptionReason::Decode(m)) if m.contains("trailing")
        ));
    }

    #[test]
    fn huge_declared_container_lengths_do_not_allocate() {
        // Checksummed payloads claiming a ~4 GiB topic string and a 2^32-element
        // record vector: bincode's limit must refuse before allocating.
        for payload in [
            &[0xfc, 0xff, 0xff, 0xff, 0xff, 0x00][..],
            &[0x00, 0x00, 0xfc, 0xff, 0xff, 0xff, 0xff][..],
        ] {
            assert!(matches!(
                decode_frame(&frame_around(payload)),
                Err(CorruptionReason::Decode(_))
            ));
        }
    }

    /// The decode limit depends on the payload tier; the tightest case is a
    /// payload just under a tier edge made of the smallest possible values.
    /// If bincode's claims ever grow past CLAIM_FACTOR, this fails.
    #[test]
    fn worst_case_batches_decode_at_the_tier_edge() {
        let tier = 4 << 10;
        let empty_record = |offset| Record {
            offset,
            timestamp: None,
            key: None,
            value: None,
            headers: vec![],
        };
        let fill = |make: &dyn Fn(usize) -> Batch| {
            // Grow until the payload would cross the tier edge.
            let mut n = 1;
            while encode(&make(n + 1)).len() - HEADER_LEN <= tier {
                n += 1;
            }
            make(n)
        };
        let many_records = fill(&|n| Batch {
            topic: String::new(),
            partition: 0,
            records: (0..n as i64).map(empty_record).collect(),
        });
        let many_headers = fill(&|n| Batch {
            topic: String::new(),
            partition: 0,
            records: vec![Record {
                headers: vec![
                    Header {
                        key: String::new(),
                        value: None,
                    };
                    n
                ],
                ..empty_record(0)
            }],
        });
        for (name, batch) in [("records", many_records), ("headers", many_headers)] {
            let frame = encode(&batch);
            let payload = frame.len() - HEADER_LEN;
            assert!(payload <= tier);
            // Not assert_eq: the Debug of thousands of empty headers helps nobody.
            match decode_frame(&frame) {
                Ok(decoded) => assert!(decoded == batch, "many empty {name}: decoded differently"),
                Err(e) => panic!("many empty {name} ({payload}-byte payload) refused: {e}"),
            }
        }
    }

    #[test]
    fn a_frame_above_the_maximum_is_refused_at_encode() {
        let batch = Batch {
            topic: "t".into(),
            partition: 0,
            records: vec![Record {
                offset: 0,
                timestamp: None,
                key: None,
                value: Some(vec![0; MAX_PAYLOAD]),
                headers: vec![],
            }],
        };
        assert!(matches!(
            encode_batch(&batch),
            Err(FrameEncodeError::TooLarge { .. })
        ));
    }

    /// Random byte strings (half with a valid header around a random payload,
    /// so bincode sees them) must decode or be reported, never panic.
    /// Replay a failure with `KAFKA_RELAY_TEST_SEED=<printed seed>`.
    #[test]
    fn random_bytes_never_panic() {
        let seed: u64 = std::env::var("KAFKA_RELAY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(rand::random);
        println!(
            "random_bytes_never_panic: seed {seed} (replay with KAFKA_RELAY_TEST_SEED={seed})"
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let valid = encode(&sample());
        for _ in 0..5000 {
            let bytes = match rng.random_range(0..3) {
                0 => {
                    let len = rng.random_range(0..200);
                    (0..len).map(|_| rng.random()).collect()
                }
                1 => {
                    let len = rng.random_range(0..200);
                    let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    frame_around(&payload)
                }
                // A valid payload with a few bytes changed, re-checksummed.
                _ => {
                    let mut payload = valid[HEADER_LEN..].to_vec();
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(0..payload.len());
                        payload[i] = rng.random();
                    }
                    frame_around(&payload)
                }
            };
            if let Ok(batch) = decode_frame(&bytes) {
                // Whatever decodes must be exactly what its own encoding says.
                assert_eq!(decode_frame(&encode(&batch)), Ok(batch));
            }
        }
    }

    fn key(byte: u8) -> WalKey {
        WalKey::from_bytes([byte; 32])
    }

    #[test]
    fn an_encrypted_frame_round_trips_with_its_key_only() {
        let batch = sample();
        let plain = encode(&batch);
        let sealed = encrypt_frame(&plain, &key(1)).expect("seal");
        assert_eq!(sealed[0], ENCRYPTED_VERSION);
        assert_eq!(sealed.len(), plain.len() + ENCRYPTION_OVERHEAD);
        assert!(intact(&sealed));
        assert_eq!(decode_frame_with(&sealed, Some(&key(1))), Ok(batch.clone()));
        assert_eq!(
            decode_frame_with(&sealed, Some(&key(2))),
            Err(FrameError::WrongKey {
                found: key(1).id(),
                configured: key(2).id()
            })
        );
        assert_eq!(
            decode_frame_with(&sealed, None),
            Err(FrameError::KeyMissing { found: key(1).id() })
        );
        // Plain frames are read with or without a key.
        assert_eq!(decode_frame_with(&plain, Some(&key(1))), Ok(batch.clone()));
        assert_eq!(decode_frame_with(&plain, None), Ok(batch));
    }

    /// Damage is corruption, never a key problem: a flip in the key id is
    /// caught by the crc32 before the key id is compared.
    #[test]
    fn every_single_bit_flip_of_an_encrypted_frame_is_corruption() {
        let sealed = encrypt_frame(&encode(&sample()), &key(1)).expect("seal");
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                let got = decode_frame_with(&bad, Some(&key(1)));
                assert!(
                    matches!(got, Err(FrameError::Corrupted(_))),
                    "flip of bit {bit} in byte {byte}: {got:?}"
                );
            }
        }
    }

    /// With the crc32 recomputed (tampering), every changed byte of the
    /// authenticated fields or the ciphertext fails the tag; the version
    /// and key id fields give their own answers.
    #[test]
    fn a_tampered_encrypted_frame_with_a_fixed_crc_does_not_authenticate() {
        let sealed = encrypt_frame(&encode(&sample()), &key(1)).expect("seal");
        for byte in HEADER_LEN + KEY_ID_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[byte] ^= 0x01;
            let crc = crc32fast::hash(&bad[HEADER_LEN..]);
            bad[1..5].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(
                decode_frame_with(&bad, Some(&key(1))),
                Err(FrameError::Corrupted(
                    CorruptionReason::AuthenticationFailed {
                        key_id: key(1).id()
                    }
                )),
                "byte {byte}"
            );
        }
    }
}
