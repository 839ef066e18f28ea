//! The dead-letter queue: records the target can never accept, kept locally
//! with the reason instead of being dropped.
//!
//! Stored in the tree `dead_letters` of the WAL's sled database (same
//! directory, lock and fsync). Layout:
//!
//! ```text
//! key:   source topic bytes | 0x00 | partition (i32 BE) | offset (i64 BE)
//! value: version u8 (= 1) | bincode 2 of `DeadLetter`             (no wal.encryption_key_file)
//!    or: version u8 (= 2) | key_id (4) | nonce (24) | ciphertext | tag (16)
//!        XChaCha20-Poly1305 of the bincode above, under the WAL's key (see `wal::crypt`);
//!        AAD: version | key_id | nonce | the sled key, so a value moved to
//!        another record's key does not authenticate
//! ```
//!
//! The keys (source coordinates: topic, partition, offset) stay in the
//! clear, as the WAL's index does: `count_by_partition` reads them alone.
//!
//! Invariants:
//! - With a key configured, every value `put` writes is encrypted, under a
//!   fresh nonce; without one, values are written plain, as before.
//! - A value encrypted under another key id than the configured one, or
//!   with none configured, is a `WalError::WrongKey` / `KeyMissing` error,
//!   never `DlqError::Corrupted`; a value with the right key id whose tag
//!   does not authenticate is `Corrupted`. Plain (version 1) values are
//!   read whether or not a key is configured.
//! - A record is dead-lettered durably (fsync'd) *before* the transaction
//!   whose checkpoint moves past it commits, so a crash cannot lose it.
//! - Keys are the record's source coordinates, so dead-lettering the same
//!   record again (after a crash and re-ship) does not duplicate it.
//!
//! Written by the shipper; read and purged by `kafka-relay dlq`.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::record::{Record, TopicPartition};
use crate::wal::{KeyId, Wal, WalError, WalKey};

const TREE: &str = "dead_letters";
const VERSION: u8 = 1;
/// The version of an encrypted value.
const ENCRYPTED: u8 = 2;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SEALED_HEAD: usize = 1 + KEY_ID_LEN + NONCE_LEN;

/// Why a stored value could not be read: damage, or a key problem.
enum Unreadable {
    Corrupted(String),
    WrongKey { found: KeyId, configured: KeyId },
    KeyMissing { found: KeyId },
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("dead-letter store: {0}")]
    Storage(#[from] sled::Error),
    #[error("dead-letter entry {id} is unreadable: {reason}")]
    Corrupted { id: String, reason: String },
    #[error("{0:?} is not a dead-letter id (expected topic/partition/offset)")]
    BadId(String),
    #[error("cannot encrypt dead letter {id}: {reason}")]
    Seal { id: String, reason: String },
}

/// One dead-lettered record with why and when.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub record: Record,
    pub reason: String,
    pub attempts: u32,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
}

impl DeadLetter {
    /// `topic/partition/offset`: how operators name an entry.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.record.offset)
    }
}

pub struct DeadLetters {
    wal: Wal,
    tree: sled::Tree,
}

fn key(tp: &TopicPartition, offset: i64) -> Vec<u8> {
    let mut k = Vec::with_capacity(tp.topic.len() + 13);
    k.extend_from_slice(tp.topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&tp.partition.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn parse_id(id: &str) -> Result<Vec<u8>, DlqError> {
    let bad = || DlqError::BadId(id.to_string());
    let (rest, offset) = id.rsplit_once('/').ok_or_else(bad)?;
    let (topic, partition) = rest.rsplit_once('/').ok_or_else(bad)?;
    let partition: i32 = partition.parse().map_err(|_| bad())?;
    let offset: i64 = offset.parse().map_err(|_| bad())?;
    Ok(key(&TopicPartition::new(topic, partition), offset))
}

/// The associated data of an encrypted value: its header and its sled key.
fn aad(head: &[u8], k: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(head.len() + k.len());
    aad.extend_from_slice(head);
    aad.extend_from_slice(k);
    aad
}

/// The encrypted value of `plain` (the bincode of a letter) stored at `k`.
fn seal(wal_key: &WalKey, k: &[u8], plain: Vec<u8>) -> Result<Vec<u8>, crate::wal::SealError> {
    let nonce = crate::wal::fresh_nonce()?;
    let mut value = Vec::with_capacity(SEALED_HEAD + plain.len() + TAG_LEN);
    value.push(ENCRYPTED);
    value.extend_from_slice(&wal_key.id().0);
    value.extend_from_slice(&nonce);
    let aad = aad(&value, k);
    value.extend(plain);
    let tag = wal_key.seal(&nonce, &aad, &mut value[SEALED_HEAD..])?;
    value.extend_from_slice(&tag);
    Ok(value)
}

/// The plain bincode of the encrypted value `raw` stored at `k`.
fn unseal(wal_key: Option<&WalKey>, k: &[u8], raw: &[u8]) -> Result<Vec<u8>, Unreadable> {
    if raw.len() < SEALED_HEAD + TAG_LEN {
        return Err(Unreadable::Corrupted(format!(
            "encrypted entry of {} bytes, shorter than its key id, nonce and tag",
            raw.len()
        )));
    }
    let (head, sealed) = raw.split_at(SEALED_HEAD);
    let mut id = [0; KEY_ID_LEN];
    id.copy_from_slice(&head[1..1 + KEY_ID_LEN]);
    let found = KeyId(id);
    let Some(wal_key) = wal_key else {
        return Err(Unreadable::KeyMissing { found });
    };
    if wal_key.id() != found {
        return Err(Unreadable::WrongKey {
            found,
            configured: wal_key.id(),
        });
    }
    let mut nonce = [0; NONCE_LEN];
    nonce.copy_from_slice(&head[1 + KEY_ID_LEN..]);
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut tag_bytes = [0; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut plain = ciphertext.to_vec();
    if !wal_key.open(&nonce, &aad(head, k), &mut plain, &tag_bytes) {
        return Err(Unreadable::Corrupted(format!(
            "encrypted entry (key id {found}, the configured key) does not authenticate: altered or damaged"
        )));
    }
    Ok(plain)
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 512 * 1024 * 1024 }>()
}

impl DeadLetters {
    pub fn open(wal: &Wal) -> Result<DeadLetters, DlqError> {
        Ok(DeadLetters {
            tree: wal.side_tree(TREE)?,
            wal: wal.clone(),
        })
    }

    /// Stores `letter` durably; `false` if that record was already there.
    pub fn put(&self, letter: &DeadLetter) -> Result<bool, DlqError> {
        let k = key(
            &TopicPartition::new(letter.topic.clone(), letter.partition),
            letter.record.offset,
        );
        let plain = bincode::encode_to_vec(letter, config()).map_err(|e| DlqError::Corrupted {
            id: letter.id(),
            reason: e.to_string(),
        })?;
        let value = match self.wal.key() {
            Some(wal_key) => seal(wal_key, &k, plain).map_err(|e| DlqError::Seal {
                id: letter.id(),
                reason: e.to_string(),
            })?,
            None => {
                let mut value = Vec::with_capacity(1 + plain.len());
                value.push(VERSION);
                value.extend(plain);
                value
            }
        };
        let previous = self.tree.insert(k, value)?;
        self.wal.sync()?;
        Ok(previous.is_none())
    }

    fn decode(&self, k: &[u8], raw: &[u8]) -> Result<DeadLetter, Unreadable> {
        let plain = |payload: &[u8]| {
            bincode::decode_from_slice(payload, config())
                .map(|(l, _)| l)
                .map_err(|e| Unreadable::Corrupted(e.to_string()))
        };
        match raw.split_first() {
            Some((&VERSION, payload)) => plain(payload),
            Some((&ENCRYPTED, _)) => plain(&unseal(self.wal.key(), k, raw)?),
            Some((v, _)) => Err(Unreadable::Corrupted(format!("unknown version {v}"))),
            None => Err(Unreadable::Corrupted("empty entry".to_string())),
        }
    }

    /// The error for entry `id` that `decode` could not read.
    fn unreadable(&self, id: String, why: Unreadable) -> DlqError {
        let dir = self.wal.dir().to_path_buf();
        match why {
            Unreadable::Corrupted(reason) => DlqError::Corrupted { id, reason },
            Unreadable::WrongKey { found, configured } => DlqError::Wal(WalError::WrongKey {
                dir,
                what: format!("dead letter {id}"),
                found,
                configured,
            }),
            Unreadable::KeyMissing { found } => DlqError::Wal(WalError::KeyMissing {
                dir,
                what: format!("dead letter {id}"),
                found,
            }),
        }
    }

    /// Every entry in source order (topic, partition, offset).
    pub fn list(&self) -> Result<Vec<DeadLetter>, DlqError> {
        self.tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                self.decode(&k, &v)
                    .map_err(|why| self.unreadable(String::from_utf8_lossy(&k).into_owned(), why))
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Result<Option<DeadLetter>, DlqError> {
        let k = parse_id(id)?;
        match self.tree.get(&k)? {
            None => Ok(None),
            Some(v) => self
                .decode(&k, &v)
                .map(Some)
                .map_err(|why| self.unreadable(id.to_string(), why)),
        }
    }

    /// Whether this source record is in the queue.
    pub fn contains(&self, tp: &TopicPartition, offset: i64) -> Result<bool, DlqError> {
        Ok(self.tree.contains_key(key(tp, offset))?)
    }

    /// Removes one entry; `false` if there was none.
    pub fn remove(&self, id: &str) -> Result<bool, DlqError> {
        let removed = self.tree.remove(parse_id(id)?)?.is_some();
        self.wal.sync()?;
        Ok(removed)
    }

    /// Removes every entry; returns how many there were.
    pub fn purge(&self) -> Result<usize, DlqError> {
        let n = self.tree.len();
        self.tree.clear()?;
        self.wal.sync()?;
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// Entries per source partition, from the keys alone (no decoding).
    pub fn count_by_partition(&self) -> Result<BTreeMap<TopicPartition, u64>, DlqError> {
        let mut out = BTreeMap::new();
        for item in self.tree.iter().keys() {
            let k = item?;
            // topic | 0x00 | partition (4) | offset (8)
            let Some(split) = k.len().checked_sub(13) else {
                continue;
            };
            let (Ok(topic), Ok(partition)) = (
                std::str::from_utf8(&k[..split]),
                <[u8; 4]>::try_from(&k[split + 1..split + 5]),
            ) else {
                continue;
            };
            *out.entry(TopicPartition::new(topic, i32::from_be_bytes(partition)))
                .or_default() += 1;
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    //! The dead-letter store across a reopen.

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

    fn files_contain(dir: &std::path::Path, needle: &[u8]) -> bool {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if std::fs::read(&path)
                    .expect("read")
                    .windows(needle.len())
                    .any(|w| w == needle)
                {
                    return true;
                }
            }
        }
        false
    }

    #[test]
    fn dead_letters_are_encrypted_on_disk_with_the_wal_s_key() {
        use crate::wal::WalKey;
        const SECRET: &[u8] = b"a-dead-lettered-value-in-plaintext";
        const REASON: &str = "a-reason-naming-the-record-in-plaintext";
        let secret_letter = || {
            let mut l = letter(9);
            l.record.value = Some(SECRET.to_vec());
            l.reason = REASON.into();
            l
        };
        let options = WalOptions { max_bytes: 1 << 20 };
        let (key, other) = (WalKey::from_bytes([1; 32]), WalKey::from_bytes([2; 32]));
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = Wal::open_with_key(dir.path(), options, Some(key.clone())).expect("wal");
            let dlq = DeadLetters::open(&wal).expect("dlq");
            assert!(dlq.put(&secret_letter()).expect("put"));
            assert_eq!(dlq.list().expect("list"), [secret_letter()]);
        }
        assert!(!files_contain(dir.path(), SECRET), "the value is encrypted");
        assert!(
            !files_contain(dir.path(), REASON.as_bytes()),
            "the reason too"
        );

        let wal = Wal::open_with_key(dir.path(), options, Some(key.clone())).expect("wal");
        let dlq = DeadLetters::open(&wal).expect("dlq");
        assert_eq!(dlq.get("orders/1/9").expect("get"), Some(secret_letter()));
        assert_eq!(dlq.count_by_partition().expect("count").len(), 1);
        drop((dlq, wal));

        let wal = Wal::open_with_key(dir.path(), options, Some(other.clone())).expect("wal");
        let err = DeadLetters::open(&wal)
            .expect("dlq")
            .list()
            .expect_err("wrong key");
        assert!(
            matches!(&err, DlqError::Wal(WalError::WrongKey { found, configured, .. })
                if *found == key.id() && *configured == other.id()),
            "{err:?}"
        );
        assert!(err.to_string().contains("dead letter orders"), "{err}");
        drop(wal);
        let wal = Wal::open(dir.path(), options).expect("wal");
        let err = DeadLetters::open(&wal)
            .expect("dlq")
            .get("orders/1/9")
            .expect_err("no key");
        assert!(
            matches!(err, DlqError::Wal(WalError::KeyMissing { .. })),
            "{err:?}"
        );
        drop(wal);

        // Control: without a key the same letter is in the clear; with one
        // enabled later it is still read.
        let plain_dir = tempfile::tempdir().expect("tempdir");
        {
            let wal = Wal::open(plain_dir.path(), options).expect("wal");
            DeadLetters::open(&wal)
                .expect("dlq")
                .put(&secret_letter())
                .expect("put");
        }
        assert!(files_contain(plain_dir.path(), SECRET));
        let wal = Wal::open_with_key(plain_dir.path(), options, Some(key)).expect("wal");
        assert_eq!(
            DeadLetters::open(&wal).expect("dlq").list().expect("list"),
            [secret_letter()]
        );
    }

    #[test]
    fn an_encrypted_dead_letter_moved_to_another_record_s_key_does_not_authenticate() {
        let key = crate::wal::WalKey::from_bytes([1; 32]);
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open_with_key(dir.path(), WalOptions { max_bytes: 1 << 20 }, Some(key))
            .expect("wal");
        let dlq = DeadLetters::open(&wal).expect("dlq");
        dlq.put(&letter(1)).expect("put");
        let moved = dlq
            .tree
            .get(parse_id("orders/1/1").expect("id"))
            .expect("get")
            .expect("held");
        dlq.tree
            .insert(parse_id("orders/1/2").expect("id"), moved)
            .expect("insert");
        assert!(matches!(
            dlq.get("orders/1/2"),
            Err(DlqError::Corrupted { .. })
        ));
        assert_eq!(dlq.get("orders/1/1").expect("get"), Some(letter(1)));
    }
}
