//! What can go wrong protecting PHI. No variant carries plaintext or key material.

/// A failure of the key store behind [`crate::KeyStore`], for logs only.
pub type StoreFailure = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext or wrapped key did not authenticate: it was altered, or moved to a row,
    /// version or owner it was not sealed for.
    #[error("integrity failure: {what}")]
    Integrity { what: &'static str },
    /// The bytes are not a sealed blob or wrapped key this version understands.
    #[error("unknown sealed-data format {0}")]
    UnknownFormat(u8),
    /// The data was sealed with a data key other than the owner's current one.
    #[error("the data was sealed under a different data key than its owner's")]
    KeyMismatch,
    /// A wrapped data key names a master-key version the keyring does not hold.
    #[error("master key version {0} is not in the keyring")]
    UnknownMasterKey(u32),
    /// The owner's data key was destroyed (crypto-shredding): the data is gone for good.
    #[error("the data key was destroyed (erased)")]
    Erased,
    /// The keyring (file or environment) cannot be used; the text never contains key bytes.
    #[error("invalid keyring: {0}")]
    Keyring(String),
    /// Retiring a master key that still wraps data keys, or the active one.
    #[error("master key version {version} cannot be retired: {reason}")]
    NotRetirable { version: u32, reason: String },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The key store failed.
    #[error("the key store is unavailable")]
    Store(#[source] StoreFailure),
}
