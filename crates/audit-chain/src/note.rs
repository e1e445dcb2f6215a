//! Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint), signed
//! with Ed25519, and verifier keys in the note `vkey` form.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::hash::{Hash, sha256};

/// The signature type byte of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;
/// Signature lines start with an em dash and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note, key or checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed signed note: {0}")]
    Malformed(&'static str),
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
    #[error("no signature by {0} verifies")]
    Unsigned(String),
    #[error("a signature by {0} does not verify")]
    BadSignature(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
    #[error("the checkpoint is for log {found:?}, not {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("the signing key failed: {0}")]
    Signer(String),
}

/// A log's state: its origin (the log's name), its size, and its root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        )
    }

    /// Reads a checkpoint body (lines after the third, extension lines, are ignored).
    pub fn parse_body(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::BadCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && (s == &"0" || !s.starts_with('0')))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(NoteError::BadCheckpoint("the size is not a decimal number"))?;
        let root = lines
            .next()
            .and_then(Hash::from_base64)
            .ok_or(NoteError::BadCheckpoint(
                "the root is not a base64 SHA-256 hash",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// The public half of a note signing key: its name, id and Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    public: [u8; 32],
}

fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let hash = sha256(&[name.as_bytes(), b"\n", &[ED25519_TYPE], public]);
    u32::from_be_bytes([hash.0[0], hash.0[1], hash.0[2], hash.0[3]])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

impl VerifierKey {
    pub fn new(name: &str, public: [u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "a key name must be non-empty, without spaces or '+'",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        })
    }

    /// Reads `name+hex(id)+base64(0x01 ‖ public key)`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        // The name has no '+'; the base64 key may (it is the rest of the line).
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+id+key"));
        };
        let id = u32::from_str_radix(id, 16)
            .ok()
            .filter(|_| id.len() == 8)
            .ok_or(NoteError::BadKey("the key id is not 8 hex digits"))?;
        let key = STANDARD
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let (&kind, public) = key
            .split_first()
            .ok_or(NoteError::BadKey("the key is empty"))?;
        if kind != ED25519_TYPE {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let public: [u8; 32] = public
            .try_into()
            .map_err(|_| NoteError::BadKey("an Ed25519 key has 32 bytes"))?;
        let parsed = Self::new(name, public)?;
        if parsed.id != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(parsed)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The `vkey` text.
    pub fn to_vkey(&self) -> String {
        let mut key = vec![ED25519_TYPE];
        key.extend_from_slice(&self.public);
        format!("{}+{:08x}+{}", self.name, self.id, STANDARD.encode(key))
    }

    /// Checks that `note` carries a valid signature by this key; returns the note's text.
    /// Signatures by other keys are ignored, as the format says.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        if note.chars().any(|c| c.is_control() && c != '\n') {
            return Err(NoteError::Malformed("control characters"));
        }
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
        let (text, signatures) = (&note[..=split], &note[split + 2..]);
        let signatures = signatures.strip_suffix('\n').ok_or(NoteError::Malformed(
            "the last signature line has no newline",
        ))?;
        let mut verified = false;
        for line in signatures.split('\n') {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::Malformed(
                    "a signature line must start with an em dash",
                ))?;
            let (name, signature) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "a signature line needs a name and a signature",
            ))?;
            let signature = STANDARD
                .decode(signature)
                .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
            if signature.len() < 4 {
                return Err(NoteError::Malformed("a signature is too short"));
            }
            let id = u32::from_be_bytes([signature[0], signature[1], signature[2], signature[3]]);
            if name != self.name || id != self.id {
                continue;
            }
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(text.as_bytes(), &signature[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::Unsigned(self.name.clone()))
        }
    }

    /// Opens a signed checkpoint of the log named `origin`.
    pub fn open_checkpoint(&self, note: &str, origin: &str) -> Result<Checkpoint, NoteError> {
        let checkpoint = Checkpoint::parse_body(self.open(note)?)?;
        if checkpoint.origin != origin {
            return Err(NoteError::WrongOrigin {
                expected: origin.to_owned(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

/// Port: what signs checkpoints. The key may live in a file, a KMS or an HSM; only its public
/// half and its signatures are needed here.
pub trait CheckpointSigner: Send + Sync {
    /// The key as verifiers know it.
    fn verifier(&self) -> &VerifierKey;
    /// An Ed25519 signature of `message`.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], NoteError>;
}

/// An Ed25519 key held in memory (ring), derived from a 32-byte seed.
pub struct Ed25519Signer {
    pair: Ed25519KeyPair,
    verifier: VerifierKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| NoteError::Signer("not an Ed25519 seed".into()))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::Signer("unexpected public key length".into()))?;
        Ok(Self {
            pair,
            verifier: VerifierKey::new(name, public)?,
        })
    }
}

impl CheckpointSigner for Ed25519Signer {
    fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], NoteError> {
        self.pair
            .sign(message)
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::Signer("unexpected signature length".into()))
    }
}

/// Signs `checkpoint` as a note: its body, a blank line, one signature line.
pub fn sign_checkpoint(
    checkpoint: &Checkpoint,
    signer: &dyn CheckpointSigner,
) -> Result<String, NoteError> {
    let text = checkpoint.body();
    let key = signer.verifier();
    let mut signature = key.id.to_be_bytes().to_vec();
    signature.extend_from_slice(&signer.sign(text.as_bytes())?);
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{} {}\n",
        key.name,
        STANDARD.encode(signature)
    ))
}
