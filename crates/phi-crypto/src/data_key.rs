//! Data keys (DEKs): one per patient compartment, one for everything outside any compartment.

use std::fmt;

use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::error::CryptoError;
use crate::keyring::{Secret, WrappedKey};

/// Whose data a data key protects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyOwner {
    /// The compartment of `Patient/{id}`: the patient and everything about them.
    Patient(String),
    /// Resources in no patient compartment.
    System,
}

impl KeyOwner {
    /// The owner as stored: `Patient/{id}` or `system`.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Patient(id) => format!("Patient/{id}").into(),
            Self::System => "system".into(),
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "system" => Some(Self::System),
            other => other
                .strip_prefix("Patient/")
                .filter(|id| !id.is_empty())
                .map(|id| Self::Patient(id.to_owned())),
        }
    }

    /// The patient id, if this is a patient compartment.
    pub fn patient_id(&self) -> Option<&str> {
        match self {
            Self::Patient(id) => Some(id),
            Self::System => None,
        }
    }
}

impl fmt::Display for KeyOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

/// A data key's random identifier, written in every blob it seals. It is not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 16]);

impl KeyId {
    pub const LEN: usize = 16;

    pub fn random() -> Result<Self, CryptoError> {
        let mut id = [0u8; Self::LEN];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| CryptoError::Random)?;
        Ok(Self(id))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An unwrapped data key, ready to seal and open. Never stored in this form.
pub struct DataKey {
    pub(crate) owner: KeyOwner,
    pub(crate) id: KeyId,
    pub(crate) key: LessSafeKey,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("owner", &self.owner)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    pub(crate) fn from_secret(
        owner: KeyOwner,
        id: KeyId,
        secret: &Secret,
    ) -> Result<Self, CryptoError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, secret.as_ref()).map_err(|_| CryptoError::Integrity {
                what: "a data key is not 256 bits",
            })?;
        Ok(Self {
            owner,
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    pub fn owner(&self) -> &KeyOwner {
        &self.owner
    }

    pub fn id(&self) -> KeyId {
        self.id
    }
}

/// A data key as the key store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub owner: KeyOwner,
    pub key_id: KeyId,
    pub created: OffsetDateTime,
    pub state: KeyState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// In use, wrapped by a master key.
    Wrapped(WrappedKey),
    /// Destroyed by erasure: the wrapped bytes are gone; only this tombstone remains.
    Destroyed { at: OffsetDateTime },
}
