//! A corrupted WAL entry gets a loud, specific error, is never shipped, and
//! loses nothing: start-up quarantines it and re-reads the source from the
//! target's checkpoints.

use kafka_relay::record::{Batch, Record};
use kafka_relay::wal::{Wal, WalOptions};
use rdkafka::Message;

use crate::harness::clients::{self, Isolation};
use crate::harness::relay::{produce_sequence, RelaySetup};
use crate::harness::{checker, clusters};

#[test]
fn corrupted_wal_entry_is_quarantined_and_its_records_still_arrive_once() {
    let c = clusters();
    let setup = RelaySetup::new(c, "wal-corrupt", 1);
    produce_sequence(&c.source.bootstrap, &setup.source_topic, 1, 0, 300);

    // Leave the WAL as a crashed run would: three batches of source records,
    // the middle one damaged on disk.
    let records: Vec<Record> = clients::consume_all(
        &c.source.bootstrap,
        &setup.source_topic,
        Isolation::ReadCommitted,
    )
    .iter()
    .map(|m| Record {
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
        headers: vec![],
    })
    .collect();
    {
        let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("open WAL");
        for chunk in records[..150].chunks(50) {
            wal.append(&Batch {
                topic: setup.source_topic.clone(),
                partition: 0,
                records: chunk.to_vec(),
            })
            .expect("append");
        }
        let mid = crate::wal_damage::stored_bytes(&wal, 1).len() / 2;
        crate::wal_damage::flip_byte(&wal, 1, mid, 0x01);
    }

    let summary = setup.relay_until(setup.config(), 300);

    assert_eq!(summary.quarantined, 1, "the damaged entry is quarantined");
    checker::assert_exactly_once(&c.target.bootstrap, &setup.target_topic, 1, 300);
    let wal = Wal::open(&setup.wal_dir(), WalOptions { max_bytes: 1 << 30 }).expect("reopen WAL");
    let quarantined = wal.quarantined().expect("quarantine");
    assert_eq!(quarantined.len(), 1);
    assert_eq!(
        quarantined[0].0, 1,
        "kept for inspection under its position"
    );
}
