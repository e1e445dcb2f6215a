//! Per-entry receipts in the C2SP `tlog-proof` format (c2sp.org/tlog-proof): the entry's
//! index, its inclusion proof, and the signed checkpoint the proof leads to. With the entry's
//! bytes and the log's verifier key, anyone can check a receipt offline.

use crate::hash::{Hash, leaf_hash};
use crate::merkle::verify_inclusion;
use crate::note::{Checkpoint, NoteError, VerifierKey};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Checkpoint(#[from] NoteError),
    #[error("the inclusion proof does not lead to the checkpoint's root")]
    NotIncluded,
}

/// A `tlog-proof`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub index: u64,
    pub path: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl Receipt {
    pub fn to_text(&self) -> String {
        let mut text = format!("{HEADER}\nindex {}\n", self.index);
        for hash in &self.path {
            text.push_str(&hash.to_base64());
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    pub fn parse(text: &str) -> Result<Self, ReceiptError> {
        let (head, checkpoint) = text.split_once("\n\n").ok_or(ReceiptError::Malformed(
            "no blank line before the checkpoint",
        ))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(ReceiptError::Malformed(
                "the first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let mut line = lines.next();
        if line.is_some_and(|l| l.starts_with("extra ")) {
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix("index "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or(ReceiptError::Malformed("no index line"))?;
        let path = lines
            .map(|l| {
                Hash::from_base64(l)
                    .ok_or(ReceiptError::Malformed("a proof line is not a base64 hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            index,
            path,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Checks that `entry_bytes` are in the log named `origin` signed by `key`; returns the
    /// checkpoint that proves it.
    pub fn verify(
        &self,
        entry_bytes: &[u8],
        key: &VerifierKey,
        origin: &str,
    ) -> Result<Checkpoint, ReceiptError> {
        let checkpoint = key.open_checkpoint(&self.checkpoint, origin)?;
        let leaf = leaf_hash(entry_bytes);
        if verify_inclusion(
            self.index,
            checkpoint.size,
            &leaf,
            &self.path,
            &checkpoint.root,
        ) {
            Ok(checkpoint)
        } else {
            Err(ReceiptError::NotIncluded)
        }
    }
}
