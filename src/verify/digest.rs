//! What a source record should look like on the target, as a digest and an
//! identity (see the module doc of `verify`). Pure: called by `read` for
//! every record read on either side.

use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use sha2::{Digest as _, Sha256};

use crate::config::Format;
use crate::format;
use crate::record::Record;

/// SHA-256 of a record's key, value and headers (see the module doc).
pub type Digest = [u8; 32];
/// What names a record across a change of content (see the module doc);
/// a truncated SHA-256, 128 bits are plenty to tell records apart.
pub type Identity = [u8; 16];
/// A record key's truncated SHA-256: what compaction keeps one record of.
pub type KeyDigest = [u8; 16];

fn put_bytes(hasher: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        None => hasher.update([0u8]),
        Some(b) => {
            hasher.update([1u8]);
            hasher.update((b.len() as u64).to_be_bytes());
            hasher.update(b);
        }
    }
}

/// The digest of a record's key, value and headers (in order).
pub fn digest<'a>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl ExactSizeIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Digest {
    let mut hasher = Sha256::new();
    put_bytes(&mut hasher, key);
    put_bytes(&mut hasher, value);
    hasher.update((headers.len() as u64).to_be_bytes());
    for (k, v) in headers {
        put_bytes(&mut hasher, Some(k.as_bytes()));
        put_bytes(&mut hasher, v);
    }
    hasher.finalize().into()
}

fn truncated(hasher: Sha256) -> Identity {
    let full: [u8; 32] = hasher.finalize().into();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// `raw`: a record is named by its key and timestamp.
pub fn raw_identity(key: Option<&[u8]>, timestamp: Option<i64>) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"raw");
    put_bytes(&mut hasher, key);
    put_bytes(
        &mut hasher,
        timestamp.map(i64::to_be_bytes).as_ref().map(|b| &b[..]),
    );
    truncated(hasher)
}

/// `envelope`: a record is named by the source position inside its JSON.
pub fn envelope_identity(topic: &str, partition: i32, offset: i64) -> Identity {
    let mut hasher = Sha256::new();
    hasher.update(b"envelope");
    put_bytes(&mut hasher, Some(topic.as_bytes()));
    hasher.update(partition.to_be_bytes());
    hasher.update(offset.to_be_bytes());
    truncated(hasher)
}

/// What a source record should be on the target: its digest and identity.
pub fn expected(
    format: Format,
    topic: &str,
    partition: i32,
    record: &Record,
) -> (Digest, Option<Identity>) {
    let value = format::target_value(format, topic, partition, record);
    let copies = format::copies_metadata(format);
    let headers = record
        .headers
        .iter()
        .filter(|_| copies)
        .map(|h| (h.key.as_str(), h.value.as_deref()))
        .collect::<Vec<_>>();
    let digest = digest(record.key.as_deref(), value.as_deref(), headers.into_iter());
    let identity = match format {
        Format::Raw => raw_identity(record.key.as_deref(), record.timestamp),
        Format::Envelope => envelope_identity(topic, partition, record.offset),
    };
    (digest, Some(identity))
}

#[derive(serde::Deserialize)]
struct EnvelopePosition {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A target record's digest and identity (none: not an envelope where one
/// was expected).
pub fn observed(format: Format, m: &BorrowedMessage<'_>) -> (Digest, Option<Identity>) {
    let headers: Vec<(&str, Option<&[u8]>)> = m
        .headers()
        .map(|hs| hs.iter().map(|h| (h.key, h.value)).collect())
        .unwrap_or_default();
    let digest = digest(m.key(), m.payload(), headers.into_iter());
    let identity = match format {
        Format::Raw => Some(raw_identity(m.key(), m.timestamp().to_millis())),
        Format::Envelope => m
            .payload()
            .and_then(|p| serde_json::from_slice::<EnvelopePosition>(p).ok())
            .map(|e| envelope_identity(&e.topic, e.partition, e.offset)),
    };
    (digest, identity)
}

/// The key's digest, for compaction (a null key is never compacted).
pub fn key_digest(key: Option<&[u8]>) -> Option<KeyDigest> {
    key.map(|k| {
        let mut hasher = Sha256::new();
        hasher.update(b"key");
        hasher.update(k);
        truncated(hasher)
    })
}
