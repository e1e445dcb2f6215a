//! Sealing resource bodies: AES-256-GCM under a data key, bound to where the body belongs.
//!
//! A sealed blob is `format (1) | key id (16) | nonce (12) | ciphertext | tag (16)`. The
//! associated data is the format, the resource type, id and version, and the key id: a blob
//! copied to another row, version or compartment fails to open instead of showing the wrong
//! record.

use ring::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

use crate::data_key::{DataKey, KeyId};
use crate::error::CryptoError;
use crate::phi::Phi;

const SEAL_FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + KeyId::LEN + NONCE_LEN;

/// Where a sealed body belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealContext<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: u64,
}

impl SealContext<'_> {
    fn aad(&self, key_id: &KeyId) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + self.resource_type.len() + self.id.len());
        aad.extend_from_slice(b"cairn.seal\0");
        aad.push(SEAL_FORMAT);
        aad.extend_from_slice(self.resource_type.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.version.to_be_bytes());
        aad.extend_from_slice(key_id.as_bytes());
        aad
    }
}

/// Seals `plaintext` for `context` under `key`, with a fresh random nonce.
pub fn seal(
    key: &DataKey,
    context: SealContext<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| CryptoError::Random)?;
    let mut blob = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
    blob.push(SEAL_FORMAT);
    blob.extend_from_slice(key.id.as_bytes());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(plaintext);
    let (header, body) = blob.split_at_mut(HEADER_LEN);
    let tag = key
        .key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.aad(&key.id)),
            body,
        )
        .map_err(|_| CryptoError::Random)?;
    debug_assert_eq!(header[0], SEAL_FORMAT);
    blob.extend_from_slice(tag.as_ref());
    Ok(blob)
}

/// The id of the data key a blob was sealed with (to find the key before opening).
pub fn sealed_key_id(blob: &[u8]) -> Result<KeyId, CryptoError> {
    let (&format, rest) = blob.split_first().ok_or(CryptoError::Integrity {
        what: "empty sealed body",
    })?;
    if format != SEAL_FORMAT {
        return Err(CryptoError::UnknownFormat(format));
    }
    rest.get(..KeyId::LEN)
        .and_then(KeyId::from_bytes)
        .ok_or(CryptoError::Integrity {
            what: "sealed body too short",
        })
}

/// Opens a blob sealed for `context`. Fails with [`CryptoError::Integrity`] if it was altered or
/// belongs elsewhere, and with [`CryptoError::KeyMismatch`] if another data key sealed it.
pub fn open(
    key: &DataKey,
    context: SealContext<'_>,
    blob: &[u8],
) -> Result<Phi<Vec<u8>>, CryptoError> {
    let key_id = sealed_key_id(blob)?;
    if key_id != key.id {
        return Err(CryptoError::KeyMismatch);
    }
    if blob.len() < HEADER_LEN + AES_256_GCM.tag_len() {
        return Err(CryptoError::Integrity {
            what: "sealed body too short",
        });
    }
    let nonce = Nonce::try_assume_unique_for_key(&blob[1 + KeyId::LEN..HEADER_LEN])
        .map_err(|_| CryptoError::Integrity { what: "bad nonce" })?;
    let mut in_out = blob[HEADER_LEN..].to_vec();
    let len = key
        .key
        .open_in_place(nonce, Aad::from(context.aad(&key_id)), &mut in_out)
        .map_err(|_| CryptoError::Integrity {
            what: "the sealed body does not authenticate for this resource version",
        })?
        .len();
    in_out.truncate(len);
    Ok(Phi::new(in_out))
}

#[cfg(test)]
mod tests;
