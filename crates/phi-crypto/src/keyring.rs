//! Master keys (KEKs): versioned, held outside the database, one active at a time.
//!
//! A keyring also holds the root of the blind-index keys. It is separate from every encryption
//! key, so knowing index values says nothing about ciphertexts, and it does not rotate with the
//! master keys (rotating it means recomputing every index; see the classification document).
//!
//! And it holds the seed of the server's token signing key (Ed25519, for access tokens): beside
//! the master keys and never in the database, and, like the index root, not rotated with them
//! (a new signing key would invalidate every token issued).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::data_key::{KeyId, KeyOwner};
use crate::error::CryptoError;

/// 256-bit key material, wiped from memory on drop.
pub(crate) type Secret = Zeroizing<[u8; 32]>;

pub(crate) fn random_secret(rng: &SystemRandom) -> Result<Secret, CryptoError> {
    let mut secret = Zeroizing::new([0u8; 32]);
    rng.fill(secret.as_mut()).map_err(|_| CryptoError::Random)?;
    Ok(secret)
}

/// The file format's name and version, checked on load.
const FORMAT: &str = "cairn-keyring/1";
/// Format byte of a wrapped data key.
const WRAP_FORMAT: u8 = 1;

/// One master key version.
struct MasterKey {
    key: LessSafeKey,
    secret: Secret,
    created: Option<OffsetDateTime>,
}

/// What is known about one master-key version, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyInfo {
    pub version: u32,
    /// `None` for a key given in `CAIRN_MASTER_KEY` (its age is not known).
    pub created: Option<OffsetDateTime>,
    pub active: bool,
}

/// A data key wrapped by a master key: safe to store anywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: u32,
    /// Format byte, nonce, then the AES-256-GCM ciphertext and tag of the data key.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_version", &self.kek_version)
            .finish_non_exhaustive()
    }
}

/// The master keys and the blind-index root.
pub struct Keyring {
    keys: BTreeMap<u32, MasterKey>,
    active: u32,
    index_root: Secret,
    token_seed: Secret,
    audit_seed: Secret,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyringFile {
    format: String,
    active: u32,
    master_keys: Vec<MasterKeyFile>,
    blind_index_key: String,
    /// Absent in keyring files written before access tokens existed: the seed is then derived
    /// from the blind-index key, so such a file keeps one signing key without being rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_signing_seed: Option<String>,
    /// Absent in keyring files written before the audit log existed: derived from the
    /// blind-index key then, as for the token seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_signing_seed: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterKeyFile {
    version: u32,
    #[serde(with = "time::serde::rfc3339")]
    created: OffsetDateTime,
    key: String,
}

impl Keyring {
    /// A new keyring: master key version 1 and a blind-index root, both random.
    pub fn generate(now: OffsetDateTime) -> Result<Self, CryptoError> {
        let rng = SystemRandom::new();
        let mut keys = BTreeMap::new();
        keys.insert(1, master_key(random_secret(&rng)?, Some(now))?);
        Ok(Self {
            keys,
            active: 1,
            index_root: random_secret(&rng)?,
            token_seed: random_secret(&rng)?,
            audit_seed: random_secret(&rng)?,
        })
    }

    /// A keyring of one master key given as base64 (`CAIRN_MASTER_KEY`). The blind-index root
    /// is derived from it with HKDF under its own label, so the two never coincide.
    pub fn from_master_key_base64(encoded: &str) -> Result<Self, CryptoError> {
        let secret = decode_secret(encoded.trim(), "CAIRN_MASTER_KEY")?;
        let index_root = derive(&secret, b"cairn blind-index root v1")?;
        let token_seed = derive(&secret, b"cairn token signing seed v1")?;
        let audit_seed = derive(&secret, b"cairn audit signing seed v1")?;
        let mut keys = BTreeMap::new();
        keys.insert(1, master_key(secret, None)?);
        Ok(Self {
            keys,
            active: 1,
            index_root,
            token_seed,
            audit_seed,
        })
    }

    /// Reads a keyring file's contents.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CryptoError> {
        // serde_json's messages never quote string contents, so no key leaks into the error.
        let file: KeyringFile = serde_json::from_slice(bytes)
            .map_err(|err| CryptoError::Keyring(format!("not a keyring file: {err}")))?;
        if file.format != FORMAT {
            return Err(CryptoError::Keyring(format!(
                "unknown format (expected {FORMAT})"
            )));
        }
        let mut keys = BTreeMap::new();
        for entry in file.master_keys {
            let secret = decode_secret(&entry.key, "a master key")?;
            if keys
                .insert(entry.version, master_key(secret, Some(entry.created))?)
                .is_some()
            {
                return Err(CryptoError::Keyring(format!(
                    "master key version {} appears twice",
                    entry.version
                )));
            }
        }
        if !keys.contains_key(&file.active) {
            return Err(CryptoError::Keyring(format!(
                "the active version {} is not among the master keys",
                file.active
            )));
        }
        let index_root = decode_secret(&file.blind_index_key, "the blind-index key")?;
        let token_seed = match &file.token_signing_seed {
            Some(seed) => decode_secret(seed, "the token signing seed")?,
            None => derive(&index_root, b"cairn token signing seed v1")?,
        };
        let audit_seed = match &file.audit_signing_seed {
            Some(seed) => decode_secret(seed, "the audit signing seed")?,
            None => derive(&index_root, b"cairn audit signing seed v1")?,
        };
        Ok(Self {
            keys,
            active: file.active,
            index_root,
            token_seed,
            audit_seed,
        })
    }

    /// The keyring file's contents. They are secret: write them only to a private file.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let master_keys = self
            .keys
            .iter()
            .map(|(version, key)| {
                // A key from the environment has no creation time; it is never written to a
                // file (rotation needs a keyring file), so this only guards the format.
                let created = key.created.ok_or_else(|| {
                    CryptoError::Keyring(
                        "a master key from CAIRN_MASTER_KEY cannot be written to a keyring file"
                            .into(),
                    )
                })?;
                Ok(MasterKeyFile {
                    version: *version,
                    created,
                    key: BASE64.encode(key.secret.as_ref()),
                })
            })
            .collect::<Result<Vec<_>, CryptoError>>()?;
        let file = KeyringFile {
            format: FORMAT.to_owned(),
            active: self.active,
            master_keys,
            blind_index_key: BASE64.encode(self.index_root.as_ref()),
            token_signing_seed: Some(BASE64.encode(self.token_seed.as_ref())),
            audit_signing_seed: Some(BASE64.encode(self.audit_seed.as_ref())),
        };
        serde_json::to_vec_pretty(&file)
            .map(Zeroizing::new)
            .map_err(|err| CryptoError::Keyring(format!("cannot encode the keyring: {err}")))
    }

    /// A copy with a new random master key, which becomes the active version.
    pub fn rotated(&self, now: OffsetDateTime) -> Result<Self, CryptoError> {
        let version = self.keys.keys().next_back().copied().unwrap_or(0) + 1;
        let mut next = self.duplicate()?;
        next.keys.insert(
            version,
            master_key(random_secret(&SystemRandom::new())?, Some(now))?,
        );
        next.active = version;
        Ok(next)
    }

    /// A copy without master key `version`. The caller must have proved that no data key is
    /// wrapped by it ([`crate::Vault::check_retirable`]); the active version is refused here.
    pub fn without(&self, version: u32) -> Result<Self, CryptoError> {
        if version == self.active {
            return Err(CryptoError::NotRetirable {
                version,
                reason: "it is the active version".into(),
            });
        }
        if !self.keys.contains_key(&version) {
            return Err(CryptoError::UnknownMasterKey(version));
        }
        let mut next = self.duplicate()?;
        next.keys.remove(&version);
        Ok(next)
    }

    pub fn active_version(&self) -> u32 {
        self.active
    }

    pub fn versions(&self) -> Vec<MasterKeyInfo> {
        self.keys
            .iter()
            .map(|(version, key)| MasterKeyInfo {
                version: *version,
                created: key.created,
                active: *version == self.active,
            })
            .collect()
    }

    pub fn has_version(&self, version: u32) -> bool {
        self.keys.contains_key(&version)
    }

    /// The 32-byte seed of the server's Ed25519 token signing key. Secret: it signs every
    /// access token this server accepts.
    pub fn token_signing_seed(&self) -> &[u8; 32] {
        &self.token_seed
    }

    /// The 32-byte seed of the audit log's Ed25519 checkpoint signing key. Secret: it vouches
    /// for the log's history to auditors.
    pub fn audit_signing_seed(&self) -> &[u8; 32] {
        &self.audit_seed
    }

    pub(crate) fn index_root(&self) -> &[u8; 32] {
        &self.index_root
    }

    /// Wraps a data key's material under the active master key, bound to its owner and id.
    pub(crate) fn wrap(
        &self,
        owner: &KeyOwner,
        key_id: &KeyId,
        material: &Secret,
    ) -> Result<WrappedKey, CryptoError> {
        let kek_version = self.active;
        let master = self
            .keys
            .get(&kek_version)
            .ok_or(CryptoError::UnknownMasterKey(kek_version))?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CryptoError::Random)?;
        let mut in_out = material.to_vec();
        master
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(wrap_aad(owner, key_id, kek_version)),
                &mut in_out,
            )
            .map_err(|_| CryptoError::Random)?;
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        bytes.push(WRAP_FORMAT);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&in_out);
        // The plaintext copy of the key was overwritten in place by the ciphertext.
        Ok(WrappedKey { kek_version, bytes })
    }

    /// Unwraps a data key. Fails if the wrapping was altered or belongs to another owner or id.
    pub(crate) fn unwrap(
        &self,
        owner: &KeyOwner,
        key_id: &KeyId,
        wrapped: &WrappedKey,
    ) -> Result<Secret, CryptoError> {
        let master = self
            .keys
            .get(&wrapped.kek_version)
            .ok_or(CryptoError::UnknownMasterKey(wrapped.kek_version))?;
        let (&format, rest) = wrapped.bytes.split_first().ok_or(CryptoError::Integrity {
            what: "empty wrapped key",
        })?;
        if format != WRAP_FORMAT {
            return Err(CryptoError::UnknownFormat(format));
        }
        if rest.len() != NONCE_LEN + 32 + AES_256_GCM.tag_len() {
            return Err(CryptoError::Integrity {
                what: "wrapped key has the wrong length",
            });
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Integrity {
                what: "bad wrapped-key nonce",
            })?;
        let mut in_out = Zeroizing::new(sealed.to_vec());
        let plain = master
            .key
            .open_in_place(
                nonce,
                Aad::from(wrap_aad(owner, key_id, wrapped.kek_version)),
                in_out.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Integrity {
                what: "the wrapped data key does not authenticate",
            })?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(plain);
        Ok(secret)
    }

    fn duplicate(&self) -> Result<Self, CryptoError> {
        let keys = self
            .keys
            .iter()
            .map(|(version, key)| Ok((*version, master_key(key.secret.clone(), key.created)?)))
            .collect::<Result<BTreeMap<_, _>, CryptoError>>()?;
        Ok(Self {
            keys,
            active: self.active,
            index_root: self.index_root.clone(),
            token_seed: self.token_seed.clone(),
            audit_seed: self.audit_seed.clone(),
        })
    }
}

/// A 256-bit key derived from `secret` with HKDF-SHA256 under `label`.
fn derive(secret: &Secret, label: &'static [u8]) -> Result<Secret, CryptoError> {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, secret.as_ref())
        .expand(&[label], Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .map_err(|_| CryptoError::Keyring("cannot derive a key from the keyring".into()))?;
    Ok(out)
}

/// Associated data of a wrapped key: a wrapping moved to another owner or id fails to open.
fn wrap_aad(owner: &KeyOwner, key_id: &KeyId, kek_version: u32) -> Vec<u8> {
    let mut aad = b"cairn.dek.v1\0".to_vec();
    aad.extend_from_slice(owner.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(&kek_version.to_be_bytes());
    aad
}

fn master_key(secret: Secret, created: Option<OffsetDateTime>) -> Result<MasterKey, CryptoError> {
    let unbound = UnboundKey::new(&AES_256_GCM, secret.as_ref())
        .map_err(|_| CryptoError::Keyring("a master key is not 256 bits".into()))?;
    Ok(MasterKey {
        key: LessSafeKey::new(unbound),
        secret,
        created,
    })
}

fn decode_secret(encoded: &str, what: &str) -> Result<Secret, CryptoError> {
    let bytes = Zeroizing::new(
        BASE64
            .decode(encoded)
            .map_err(|_| CryptoError::Keyring(format!("{what} is not valid base64")))?,
    );
    let mut secret = Zeroizing::new([0u8; 32]);
    if bytes.len() != secret.len() {
        return Err(CryptoError::Keyring(format!(
            "{what} must be 32 bytes (256 bits), found {}",
            bytes.len()
        )));
    }
    secret.copy_from_slice(&bytes);
    Ok(secret)
}

/// HKDF output length marker for 32-byte keys.
pub(crate) struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests;
