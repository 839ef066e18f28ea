//! The relay's main promise on the happy path: every source record reaches
//! the target once, byte for byte, in the same partition and order.

use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clusters};

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
    let compared = checker::assert_identical_to_source(
        &c.source.bootstrap,
        &setup.source_topic,
        &c.target.bootstrap,
        &setup.target_topic,
    );
    assert_eq!(compared.partitions, 3);
    assert_eq!(summary.shipper.records, 3 * per_partition);
    assert_eq!(summary.source.records, 3 * per_partition);
}
