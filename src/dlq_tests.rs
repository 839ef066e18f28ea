//! Unit tests of `dlq` (kept beside it, out of the module's own file).

use super::*;
use crate::wal::WalOptions;

fn letter(offset: i64) -> DeadLetter {
    DeadLetter {
        topic: "orders".into(),
        partition: 1,
        record: Record {
            offset,
            timestamp: Some(1),
            key: Some(b"k".to_vec()),
            value: Some(vec![0; 10]),
            headers: vec![],
        },
        reason: "record of 10 bytes exceeds record.max_bytes (5)".into(),
        attempts: 0,
        at_ms: 1_700_000_000_000,
    }
}

#[test]
fn dead_letters_survive_reopen_and_are_not_duplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let wal = Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect("wal");
        let dlq = DeadLetters::open(&wal).expect("dlq");
        assert!(dlq.put(&letter(7)).expect("put"));
        assert!(
            !dlq.put(&letter(7)).expect("put again"),
            "same record, same entry"
        );
        assert!(dlq.put(&letter(3)).expect("put"));
        assert!(wal.is_empty(), "dead letters do not count as WAL entries");
    }
    let wal = Wal::open(dir.path(), WalOptions { max_bytes: 1 << 20 }).expect("wal");
    let dlq = DeadLetters::open(&wal).expect("dlq");
    let all = dlq.list().expect("list");
    assert_eq!(
        all.iter().map(DeadLetter::id).collect::<Vec<_>>(),
        ["orders/1/3", "orders/1/7"]
    );
    assert_eq!(dlq.get("orders/1/7").expect("get"), Some(letter(7)));
    assert!(matches!(dlq.get("orders-7"), Err(DlqError::BadId(_))));
    let mut other = letter(5);
    other.topic = "a.b-c".into();
    other.partition = 12;
    assert!(dlq.put(&other).expect("put"));
    assert_eq!(
        dlq.count_by_partition().expect("count"),
        BTreeMap::from([
            (TopicPartition::new("a.b-c", 12), 1),
            (TopicPartition::new("orders", 1), 2)
        ])
    );
    assert!(dlq.remove("a.b-c/12/5").expect("remove"));
    assert!(dlq.remove("orders/1/3").expect("remove"));
    assert_eq!(dlq.purge().expect("purge"), 1);
    assert!(dlq.is_empty());
}
