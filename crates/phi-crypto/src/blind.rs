//! Blind indexes: keyed HMAC-SHA256 over normalized values, so the database can find equal
//! values without holding them.
//!
//! Each purpose (`Patient.name`, `Patient.birthdate`, …) has its own key, derived from the
//! keyring's blind-index root with HKDF: equal values under different parameters give unrelated
//! tokens, and the tokens say nothing about the encryption keys. Tokens are truncated to 64 bits:
//! enough that a false match is negligible (about n/2^64 per lookup), short enough to keep index
//! rows small. What each kind of term reveals is written in `docs/security/phi-classification.md`.

use std::collections::BTreeSet;
use std::fmt;

use ring::{hkdf, hmac};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::keyring::Keyring;
use crate::phi::Phi;

/// Shortest prefix a string search may use: shorter ones would make the index a dictionary of
/// initials and match most of the table anyway.
pub const MIN_PREFIX_CHARS: usize = 3;
/// Longest prefix indexed; a longer query is matched on its first this many characters.
pub const MAX_PREFIX_CHARS: usize = 64;

/// A truncated HMAC of one normalized value. Not PHI by itself, but linkable across rows of one
/// purpose, so it stays out of logs all the same.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlindToken(pub [u8; 8]);

impl BlindToken {
    /// Lowercase hex, for places that keep tokens as text (audit entries, canonical criteria).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for BlindToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindToken(<redacted>)")
    }
}

/// Derives per-purpose keys from the keyring's blind-index root.
pub struct BlindIndex {
    root: hkdf::Prk,
}

impl fmt::Debug for BlindIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndex")
    }
}

/// Why a query cannot be answered from a blind index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlindQueryError {
    #[error(
        "a blind index answers prefixes of {MIN_PREFIX_CHARS} or more letters; use a longer \
         prefix or :exact"
    )]
    PrefixTooShort,
    #[error("the value is empty after normalization")]
    Empty,
    #[error(
        "a blind date index answers a year, year-month or full date (YYYY, YYYY-MM, YYYY-MM-DD)"
    )]
    NotADate,
}

/// The key of one purpose.
pub struct BlindKey(hmac::Key);

impl fmt::Debug for BlindKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindKey")
    }
}

impl BlindKey {
    fn token(&self, kind: &str, value: &str) -> BlindToken {
        let mut context = hmac::Context::with_key(&self.0);
        // The kind separates term families inside one purpose (prefix vs. exact, …).
        context.update(kind.as_bytes());
        context.update(&[0]);
        context.update(value.as_bytes());
        let tag = context.sign();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        BlindToken(out)
    }

    /// The token of arbitrary bytes under this purpose's key (e.g. a canonical search
    /// condition, for conditional-create claims).
    pub fn digest(&self, bytes: &[u8]) -> BlindToken {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(b"digest\0");
        context.update(bytes);
        let tag = context.sign();
        let mut out = [0u8; 8];
        out.copy_from_slice(&tag.as_ref()[..8]);
        BlindToken(out)
    }

    /// Terms for a FHIR string parameter (names, address parts): every prefix of 3 or more
    /// folded characters of the whole value (FHIR string search is a case- and
    /// accent-insensitive starts-with), with `words` of each word too (for parameters that match
    /// any word, such as `Patient.name`), and the exact value for `:exact`.
    pub fn string_terms(&self, value: &Phi<String>, words: bool) -> BTreeSet<BlindToken> {
        let mut terms = BTreeSet::new();
        terms.insert(self.token("exact", &value.expose().nfc().collect::<String>()));
        let folded = fold(value.expose());
        let word_starts = folded.split(' ').filter(|_| words);
        // The first word's prefixes are also the whole value's: collect first, hash each once.
        let mut prefixes = BTreeSet::new();
        for word in std::iter::once(folded.as_str()).chain(word_starts) {
            let chars: Vec<char> = word.chars().take(MAX_PREFIX_CHARS).collect();
            // A word shorter than the minimum is still findable whole (as part of a longer
            // prefix of the value, or by :exact).
            for end in MIN_PREFIX_CHARS..=chars.len() {
                prefixes.insert(chars[..end].iter().collect::<String>());
            }
        }
        terms.extend(prefixes.iter().map(|prefix| self.token("prefix", prefix)));
        terms
    }

    /// The term a string search (`name=smi`) looks up.
    pub fn string_query(&self, query: &str) -> Result<BlindToken, BlindQueryError> {
        let folded = fold(query);
        let chars: Vec<char> = folded.chars().take(MAX_PREFIX_CHARS).collect();
        if chars.is_empty() {
            return Err(BlindQueryError::Empty);
        }
        if chars.len() < MIN_PREFIX_CHARS {
            return Err(BlindQueryError::PrefixTooShort);
        }
        Ok(self.token("prefix", &chars.iter().collect::<String>()))
    }

    /// The term `:exact` looks up: the whole value, case and accents as written.
    pub fn exact_query(&self, query: &str) -> BlindToken {
        self.token("exact", &query.nfc().collect::<String>())
    }

    /// Terms for a token parameter (identifier, telecom): `system|value`, the value in any
    /// system, and the system alone (for `system|`). `None` system means "no system", which
    /// FHIR's `|value` asks for.
    pub fn token_terms(&self, system: Option<&str>, value: &Phi<String>) -> BTreeSet<BlindToken> {
        let value = value.expose().trim();
        let mut terms = BTreeSet::new();
        terms.insert(self.token("value", value));
        terms.insert(self.token("system|value", &join(system.unwrap_or(""), value)));
        if let Some(system) = system {
            terms.insert(self.token("system", system));
        }
        terms
    }

    /// The term a token search looks up: `system|value`, `|value` (no system), `value` (any
    /// system) or `system|` (any value in the system).
    pub fn token_query(&self, system: Option<&str>, value: Option<&str>) -> BlindToken {
        match (system, value) {
            (Some(system), Some(value)) => self.token("system|value", &join(system, value.trim())),
            (None, Some(value)) => self.token("value", value.trim()),
            (Some(system), None) => self.token("system", system),
            (None, None) => self.token("value", ""),
        }
    }

    /// Terms for a date that is PHI (a birth date): one bucket per precision the date has, so
    /// `1970`, `1970-03` and `1970-03-14` each find it. A partial date (`1970-03`) is found by
    /// the coarser buckets only, matching FHIR's rule that the target lies within the query.
    pub fn date_terms(&self, date: &Phi<String>) -> BTreeSet<BlindToken> {
        let date = date.expose();
        let mut terms = BTreeSet::new();
        for len in [4, 7, 10] {
            if let Some(bucket) = date.get(..len).filter(|_| date.len() >= len) {
                terms.insert(self.token("date", bucket));
            }
        }
        terms
    }

    /// The bucket a date search looks up.
    pub fn date_query(&self, query: &str) -> Result<BlindToken, BlindQueryError> {
        let shape_ok = matches!(query.len(), 4 | 7 | 10)
            && query.chars().enumerate().all(|(i, c)| match i {
                4 | 7 => c == '-',
                _ => c.is_ascii_digit(),
            });
        if !shape_ok {
            return Err(BlindQueryError::NotADate);
        }
        Ok(self.token("date", query))
    }
}

impl BlindIndex {
    pub fn new(keyring: &Keyring) -> Self {
        Self {
            root: hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, keyring.index_root()),
        }
    }

    /// The key for one purpose, e.g. `Patient.name`.
    pub fn key(&self, purpose: &str) -> BlindKey {
        let info = [b"cairn blind index v1\0".as_slice(), purpose.as_bytes()];
        // HKDF-Expand only fails when asked for more than 255 hash lengths; 32 bytes never is.
        let key = self
            .root
            .expand(&info, hmac::HMAC_SHA256)
            .map(hmac::Key::from)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, purpose.as_bytes()));
        BlindKey(key)
    }
}

fn join(system: &str, value: &str) -> String {
    let mut joined = String::with_capacity(system.len() + value.len() + 1);
    joined.push_str(system);
    joined.push('|');
    joined.push_str(value);
    joined
}

/// Folds text for string search: compatibility decomposition, accents removed, lower case,
/// punctuation and runs of whitespace turned into single spaces.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.extend(c.to_lowercase());
        } else if c.is_whitespace() || c == '-' || c == ',' || c == '.' {
            pending_space = true;
        }
        // Other punctuation (apostrophes: O'Brien) is dropped without splitting the word.
    }
    out
}

/// Normalizes a telecom value: lower case, no spaces or phone punctuation, so `+1 (555) 010-99`
/// and `+155501099` are one value.
pub fn normalize_telecom(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests;
