//! The relay's main promise on the happy path: every source record reaches
//! the target once, byte for byte, in the same partition and order.

use std::collections::BTreeMap;

use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clusters};

type Comparable = (
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
    Option<i64>,
);

fn comparable(messages: &[OwnedMessage]) -> BTreeMap<i32, Vec<Comparable>> {
    let mut by: BTreeMap<i32, Vec<(i64, Comparable)>> = BTreeMap::new();
    for m in messages {
        let headers = m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        by.entry(m.partition()).or_default().push((
            m.offset(),
            (
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
                m.timestamp().to_millis(),
            ),
        ));
    }
    by.into_iter()
        .map(|(p, mut v)| {
            v.sort_by_key(|(o, _)| *o);
            (p, v.into_iter().map(|(_, c)| c).collect())
        })
        .collect()
}

#[test]
fn records_arrive_byte_identical_in_order_exactly_once() {
    let c = clusters();
    let setup = RelaySetup::new(c, "happy", 3);
    let per_partition = 1000;
    produce_sequence(
        &c.source.bootstrap,
        &setup.source_topic,
        3,
        0,
        per_partition,
    );

    let summary = setup.relay_until(setup.config(), 3 * per_partition as usize);

    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 3, per_partition);
    let source = comparable(&clients::consume_all(
        &c.source.bootstrap,
        &setup.source_topic,
        Isolation::ReadCommitted,
    ));
    let target = comparable(&clients::consume_all(
        &c.target.bootstrap,
        &setup.target_topic,
        Isolation::ReadCommitted,
    ));
    assert_eq!(source.len(), 3);
    assert!(
        source == target,
        "target records differ from the source (key, value, headers or timestamp)"
    );
    assert_eq!(summary.shipper.records, 3 * per_partition);
    assert_eq!(summary.source.records, 3 * per_partition);
}
