//! FHIR primitive types that carry a format.
//!
//! Each is a newtype over the JSON value as it came, so a malformed value still parses and
//! round-trips; [`crate::validation`] checks the format and reports every bad value at once
//! instead of stopping at the first. `is_valid` on each type is the format rule itself.

use serde::{Deserialize, Serialize};
use time::{Date as CalendarDate, Month};

macro_rules! string_primitive {
    ($(#[$meta:meta])* $name:ident) => {
        string_primitive!(@define $(#[$meta])* $name, derive(Debug));
    };
    // Values that may be PHI (a birth date, a photo): Debug shows the type and length only.
    ($(#[$meta:meta])* $name:ident, redacted) => {
        string_primitive!(@define $(#[$meta])* $name, derive());
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "(<{} bytes redacted>)"), self.0.len())
            }
        }
    };
    (@define $(#[$meta:meta])* $name:ident, derive($($extra:ident)?)) => {
        $(#[$meta])*
        #[derive($($extra,)? Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The value as it appears in the JSON.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}

string_primitive!(
    /// `id`: 1–64 characters of `A-Z a-z 0-9 - .`.
    Id
);
string_primitive!(
    /// `code`: no leading or trailing whitespace, no runs of inner whitespace.
    Code
);
string_primitive!(
    /// `uri`, `url`, `canonical`, `oid`, `uuid`: no whitespace.
    Uri
);
string_primitive!(
    /// `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`, a real calendar date.
    Date,
    redacted
);
string_primitive!(
    /// `dateTime`: a date, or a date with time of day and a time zone.
    DateTime,
    redacted
);
string_primitive!(
    /// `instant`: a full timestamp with seconds and time zone.
    Instant,
    redacted
);
string_primitive!(
    /// `base64Binary`.
    Base64Binary,
    redacted
);

/// `decimal`: kept as the exact JSON number, so `1.50` stays `1.50` (FHIR keeps precision).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Decimal(pub serde_json::Number);

/// `positiveInt`: 1 to 2,147,483,647.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PositiveInt(pub u32);

/// `unsignedInt`: 0 to 2,147,483,647.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnsignedInt(pub u32);

/// `integer`: a signed 32-bit whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Integer(pub i32);

const FHIR_INT_MAX: u32 = i32::MAX as u32;

impl PositiveInt {
    pub fn is_valid(self) -> bool {
        (1..=FHIR_INT_MAX).contains(&self.0)
    }
}

impl UnsignedInt {
    pub fn is_valid(self) -> bool {
        self.0 <= FHIR_INT_MAX
    }
}

impl Id {
    pub fn is_valid(&self) -> bool {
        is_valid_id(&self.0)
    }
}

/// The `id` rule, shared with the server's own checks of ids in URLs.
pub fn is_valid_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Code {
    pub fn is_valid(&self) -> bool {
        let s = self.0.as_str();
        !s.is_empty()
            && !s.starts_with(char::is_whitespace)
            && !s.ends_with(char::is_whitespace)
            && !s.contains("  ")
            && !s.contains(['\t', '\n', '\r'])
    }
}

impl Uri {
    pub fn is_valid(&self) -> bool {
        !self.0.is_empty() && !self.0.contains(char::is_whitespace)
    }
}

impl Base64Binary {
    pub fn is_valid(&self) -> bool {
        let s: Vec<u8> = self
            .0
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if !s.len().is_multiple_of(4) {
            return false;
        }
        let body = s
            .strip_suffix(b"==")
            .or_else(|| s.strip_suffix(b"="))
            .unwrap_or(&s);
        body.iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    }
}

impl Date {
    pub fn is_valid(&self) -> bool {
        parse_partial_date(&self.0).is_some_and(|rest| rest.is_empty())
    }
}

impl DateTime {
    pub fn is_valid(&self) -> bool {
        match parse_partial_date(&self.0) {
            Some("") => true,
            Some(rest) => self.0.len() == 10 + rest.len() && is_valid_time_and_zone(rest),
            None => false,
        }
    }
}

impl Instant {
    pub fn is_valid(&self) -> bool {
        match parse_partial_date(&self.0) {
            Some(rest) if self.0.len() == 10 + rest.len() => is_valid_time_and_zone(rest),
            _ => false,
        }
    }
}

/// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD` at the start of `s` and returns what follows it.
/// The year is 0001–9999, and the day must exist in that month.
fn parse_partial_date(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| {
            part.iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        })
    };
    let year = digits(0..4).filter(|y| *y >= 1)?;
    if b.len() == 4 {
        return Some("");
    }
    if b.get(4) != Some(&b'-') {
        return None;
    }
    let month = digits(5..7).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        return Some("");
    }
    if b.get(7) != Some(&b'-') {
        return None;
    }
    let day = digits(8..10)?;
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    CalendarDate::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?)
        .ok()?;
    Some(&s[10..])
}

/// Checks `Thh:mm:ss[.fff…](Z|±hh:mm)`. FHIR allows a dateTime to stop at the date, but once a
/// time is given the seconds and the zone are required.
fn is_valid_time_and_zone(rest: &str) -> bool {
    let b = rest.as_bytes();
    let two = |i: usize, max: u8| -> bool {
        matches!((b.get(i), b.get(i + 1)), (Some(h), Some(l))
            if h.is_ascii_digit() && l.is_ascii_digit() && (h - b'0') * 10 + (l - b'0') <= max)
    };
    if b.first() != Some(&b'T') || !two(1, 23) || b.get(3) != Some(&b':') || !two(4, 59) {
        return false;
    }
    if b.get(6) != Some(&b':') || !two(7, 60) {
        return false;
    }
    let mut i = 9;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        b"Z" => true,
        [sign, ..] if *sign == b'+' || *sign == b'-' => {
            b.len() == i + 6 && two(i + 1, 14) && b[i + 3] == b':' && two(i + 4, 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
