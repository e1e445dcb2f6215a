//! Protection of PHI at rest, usable on its own by any service.
//!
//! - [`Phi`]: a PHI value that cannot be printed.
//! - Key hierarchy: versioned master keys ([`Keyring`], held outside the database) wrap one data
//!   key per patient compartment ([`KeyOwner`]), stored wrapped through the [`KeyStore`] port.
//! - [`seal`] / [`open`]: AES-256-GCM with associated data binding a body to its resource type,
//!   id, version and key, so a ciphertext moved anywhere else fails to open.
//! - [`BlindIndex`]: keyed HMAC tokens of normalized values, for search without plaintext.
//! - [`Vault`]: data keys on demand, rotation (rewrap), retirement checks and crypto-shredding.
//!
//! `ring` does all the cryptography. The crate does no IO and has no runtime or global state.

mod blind;
mod data_key;
mod error;
pub mod fakes;
mod keyring;
mod phi;
mod ports;
mod seal;
mod vault;

pub use blind::{
    BlindIndex, BlindKey, BlindQueryError, BlindToken, MAX_PREFIX_CHARS, MIN_PREFIX_CHARS, fold,
    normalize_telecom,
};
pub use data_key::{DataKey, KeyId, KeyOwner, KeyRecord, KeyState};
pub use error::{CryptoError, StoreFailure};
pub use keyring::{Keyring, MasterKeyInfo, WrappedKey};
pub use phi::Phi;
pub use ports::{FixedKeyring, KekUsage, KeyStore, MasterKeys};
pub use seal::{SealContext, open, seal, sealed_key_id};
pub use vault::{RewrapReport, Vault};
