//! The WAL's encryption key (`wal.encryption_key_file`) and the sealing of
//! bytes with it: XChaCha20-Poly1305, a fresh random 192-bit nonce per
//! sealed value, the value's header as associated data.
//!
//! The key file holds the key as 64 hexadecimal characters (upper or lower
//! case; whitespace around them, such as a trailing newline, is ignored):
//! `openssl rand -hex 32 > wal.key` makes one. The key id is the first 4
//! bytes of SHA-256 of the 32 key bytes, shown as 8 hex digits; it is
//! stored in every sealed value, so that a value sealed with another key is
//! recognised as such before any decryption is tried (and so is never
//! mistaken for damage). An operator can compute it:
//! `xxd -r -p wal.key | sha256sum | cut -c1-8`.
//!
//! Invariants:
//! - Key material never appears in any `Debug`, `Display` or error text:
//!   only the key id does.
//! - Every [`WalKey::seal`] draws its nonce from the operating system's
//!   random source ([`fresh_nonce`]); a nonce is never derived, counted or
//!   reused. 192-bit random nonces make a collision negligible for any
//!   number of values a WAL can see.
//! - [`WalKey::open`] succeeds only for bytes [`WalKey::seal`] produced with
//!   this key and the same associated data: any changed byte of the
//!   ciphertext, tag, nonce or associated data fails it.
//!
//! Used by `frame` (WAL frames, format version 2) and by `crate::dlq`
//! (dead-letter values, version 2); loaded by `config::validate`.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 4;
/// Bytes of a nonce (XChaCha20-Poly1305).
pub const NONCE_LEN: usize = 24;
/// Bytes of an authentication tag (Poly1305).
pub const TAG_LEN: usize = 16;

/// Names a key without revealing it: the first 4 bytes of SHA-256 of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a key file cannot be used. Never holds any of the file's content.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("must hold a 256-bit key as 64 hexadecimal characters (e.g. `openssl rand -hex 32`), but holds {0}")]
    Format(String),
}

/// Why a value could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("no random bytes for a nonce from the operating system: {0}")]
    Random(String),
    #[error("a {0}-byte value is too long to encrypt")]
    TooLong(usize),
}

/// The WAL's key. Cloning copies it; `Debug` shows only its id.
#[derive(Clone, PartialEq, Eq)]
pub struct WalKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl fmt::Debug for WalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WalKey {{ id: {} }}", self.id)
    }
}

impl WalKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> WalKey {
        let digest = Sha256::digest(bytes);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        WalKey {
            bytes,
            id: KeyId(id),
        }
    }

    /// Parses the content of a key file (see the module comment).
    pub fn from_hex(text: &str) -> Result<WalKey, KeyFileError> {
        let text = text.trim();
        // Only lengths and kinds of characters are described: never the text.
        if text.len() != 2 * KEY_LEN {
            return Err(KeyFileError::Format(format!(
                "{} characters (after trimming whitespace)",
                text.chars().count()
            )));
        }
        let mut bytes = [0; KEY_LEN];
        for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
                return Err(KeyFileError::Format(
                    "characters that are not hexadecimal digits".to_string(),
                ));
            };
            bytes[i] = hi << 4 | lo;
        }
        Ok(WalKey::from_bytes(bytes))
    }

    /// Reads and parses the key file at `path`.
    pub fn load(path: &Path) -> Result<WalKey, KeyFileError> {
        let raw = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = std::str::from_utf8(&raw)
            .map_err(|_| KeyFileError::Format(format!("{} bytes that are not text", raw.len())))?;
        WalKey::from_hex(text)
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(self.bytes))
    }

    /// Encrypts `buffer` in place under `nonce`, authenticating `aad` with
    /// it; returns the tag.
    pub fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<[u8; TAG_LEN], SealError> {
        let len = buffer.len();
        let tag = self
            .cipher()
            .encrypt_inout_detached(&XNonce::from(*nonce), aad, buffer.into())
            .map_err(|_| SealError::TooLong(len))?;
        Ok(tag.into())
    }

    /// Decrypts `buffer` in place if `tag` authenticates it and `aad`;
    /// `false` (and `buffer` unspecified) if not.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> bool {
        self.cipher()
            .decrypt_inout_detached(&XNonce::from(*nonce), aad, buffer.into(), &Tag::from(*tag))
            .is_ok()
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A nonce from the operating system's random source.
pub fn fresh_nonce() -> Result<[u8; NONCE_LEN], SealError> {
    let mut nonce = [0; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| SealError::Random(e.to_string()))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn a_key_file_is_64_hex_characters_and_its_text_is_never_shown() {
        let key = WalKey::from_hex(&format!("  {}\n", HEX.to_uppercase())).expect("key");
        assert_eq!(key, WalKey::from_hex(HEX).expect("key"));
        let mut expected = [0u8; 32];
        for (i, b) in expected.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(key, WalKey::from_bytes(expected));
        // sha256 of 00..1f begins 630dcd29.
        assert_eq!(key.id().to_string(), "630dcd29");
        assert_eq!(format!("{key:?}"), "WalKey { id: 630dcd29 }");
        for bad in [&HEX[..62], &format!("{HEX}00"), &HEX.replace('0', "g")] {
            let e = WalKey::from_hex(bad).expect_err("refused").to_string();
            assert!(!e.contains(&bad[..16]), "{e}");
        }
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_nonce_and_aad() {
        let key = WalKey::from_hex(HEX).expect("key");
        let nonce = fresh_nonce().expect("nonce");
        assert_ne!(nonce, fresh_nonce().expect("nonce"), "fresh each time");
        let mut buf = b"plain text".to_vec();
        let tag = key.seal(&nonce, b"aad", &mut buf).expect("seal");
        assert_ne!(buf, b"plain text");
        let other = WalKey::from_bytes([7; 32]);
        assert!(!other.open(&nonce, b"aad", &mut buf.clone(), &tag));
        assert!(!key.open(&nonce, b"aaX", &mut buf.clone(), &tag));
        let mut flipped = buf.clone();
        flipped[0] ^= 1;
        assert!(!key.open(&nonce, b"aad", &mut flipped, &tag));
        assert!(key.open(&nonce, b"aad", &mut buf, &tag));
        assert_eq!(buf, b"plain text");
    }
}
