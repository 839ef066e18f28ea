//! How a source record is written to the target (`format` in the config).
//!
//! - `raw`: key, value, headers and timestamp byte for byte.
//! - `envelope`: one JSON object per record carrying the seed product's
//!   `offset` and `msgBody` fields plus `topic`, `partition`, `key`,
//!   `timestamp` and `headers`. Bytes that are not valid UTF-8 are written as
//!   base64 with a `..._base64: true` flag, never mangled.
//!
//! [`target_value`] and [`copies_metadata`] are the one definition of what a
//! source record becomes on the target: the shipper sends exactly that, and
//! `verify` computes the expected target form of a source record with the
//! same two functions, so the two can never drift apart.

use std::borrow::Cow;

use base64::Engine as _;
use serde::Serialize;

use crate::config::Format;
use crate::record::Record;

/// The value the target record carries for `record` of
/// `source_topic`/`partition`: the source value itself (`raw`) or its
/// envelope JSON. `None` is a null value.
pub fn target_value<'a>(
    format: Format,
    source_topic: &str,
    partition: i32,
    record: &'a Record,
) -> Option<Cow<'a, [u8]>> {
    match format {
        Format::Raw => record.value.as_deref().map(Cow::Borrowed),
        Format::Envelope => Some(Cow::Owned(envelope(source_topic, partition, record))),
    }
}

/// Whether the target record carries the source headers and timestamp
/// (`raw`); an envelope carries them inside its JSON instead, and its target
/// record has no headers and the producer's own timestamp.
pub fn copies_metadata(format: Format) -> bool {
    matches!(format, Format::Raw)
}

#[derive(Serialize)]
struct Envelope<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    key_base64: bool,
    #[serde(rename = "msgBody")]
    msg_body: Option<String>,
    #[serde(rename = "msgBody_base64")]
    msg_body_base64: bool,
    headers: Vec<EnvelopeHeader<'a>>,
}

#[derive(Serialize)]
struct EnvelopeHeader<'a> {
    key: &'a str,
    value: Option<String>,
    value_base64: bool,
}

/// Text if the bytes are UTF-8, else base64; the flag says which.
fn text_or_base64(bytes: Option<&[u8]>) -> (Option<String>, bool) {
    match bytes {
        None => (None, false),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_string()), false),
            Err(_) => (
                Some(base64::engine::general_purpose::STANDARD.encode(b)),
                true,
            ),
        },
    }
}

/// The envelope JSON for one record of `topic`/`partition`.
pub fn envelope(topic: &str, partition: i32, record: &Record) -> Vec<u8> {
    let (key, key_base64) = text_or_base64(record.key.as_deref());
    let (msg_body, msg_body_base64) = text_or_base64(record.value.as_deref());
    let headers = record
        .headers
        .iter()
        .map(|h| {
            let (value, value_base64) = text_or_base64(h.value.as_deref());
            EnvelopeHeader {
                key: &h.key,
                value,
                value_base64,
            }
        })
        .collect();
    let envelope = Envelope {
        topic,
        partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key,
        key_base64,
        msg_body,
        msg_body_base64,
        headers,
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Header;

    #[test]
    fn envelope_carries_offset_and_msg_body_and_base64s_binary() {
        let record = Record {
            offset: 41,
            timestamp: Some(1_700_000_000_000),
            key: Some(b"k1".to_vec()),
            value: Some(vec![0xff, 0x00, 0x80]),
            headers: vec![Header {
                key: "h".into(),
                value: Some(b"v".to_vec()),
            }],
        };
        let json: serde_json::Value =
            serde_json::from_slice(&envelope("orders", 2, &record)).expect("json");
        assert_eq!(json["offset"], 41);
        assert_eq!(json["partition"], 2);
        assert_eq!(json["topic"], "orders");
        assert_eq!(json["key"], "k1");
        assert_eq!(json["key_base64"], false);
        assert_eq!(json["msgBody"], "/wCA");
        assert_eq!(json["msgBody_base64"], true);
        assert_eq!(json["headers"][0]["value"], "v");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(json["msgBody"].as_str().expect("str"))
            .expect("base64");
        assert_eq!(
            decoded,
            [0xff, 0x00, 0x80],
            "binary bodies survive unmangled"
        );
    }

    #[test]
    fn envelope_keeps_utf8_text_as_text() {
        let record = Record {
            offset: 0,
            timestamp: None,
            key: None,
            value: Some("grüße".as_bytes().to_vec()),
            headers: vec![],
        };
        let json: serde_json::Value =
            serde_json::from_slice(&envelope("t", 0, &record)).expect("json");
        assert_eq!(json["msgBody"], "grüße");
        assert_eq!(json["msgBody_base64"], false);
        assert!(json["key"].is_null());
    }
}
