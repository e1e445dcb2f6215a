//! [`Phi`]: a value that is protected health information.

use std::fmt;

/// A PHI value (a name, a birth date, an identifier, a decrypted resource). It cannot be printed:
/// `Debug` says only that something is redacted and there is no `Display`, so a PHI value that
/// reaches a log line, an error or a panic message shows nothing. Reading it takes an explicit
/// [`Phi::expose`], which is easy to find in review.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Phi<T>(T);

impl<T> Phi<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Call only where the value is needed (sealing, matching, responding),
    /// never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_exposed(self) -> T {
        self.0
    }

    /// Transforms the value without exposing it to anything but `f`.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Phi<U> {
        Phi(f(self.0))
    }
}

impl<T> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phi(<redacted>)")
    }
}

impl<T> From<T> for Phi<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::Phi;

    #[test]
    fn debug_shows_no_phi() {
        let name = Phi::new(String::from("Canary Smith"));
        let nested = Some(vec![Phi::new(19230719u32)]);
        for shown in [
            format!("{name:?}"),
            format!("{name:#?}"),
            format!("{nested:?}"),
        ] {
            assert!(!shown.contains("Canary"), "{shown}");
            assert!(!shown.contains("19230719"), "{shown}");
            assert!(shown.contains("redacted"));
        }
        assert_eq!(name.expose(), "Canary Smith");
        assert_eq!(name.map(|n| n.len()).into_exposed(), 12);
    }
}
