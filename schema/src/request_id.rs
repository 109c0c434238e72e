//! The request id: what ties one call to its log lines and audit events. A caller sends it in
//! the [`REQUEST_ID`](crate::headers::REQUEST_ID) header; whoever handles the call logs it in
//! its span and writes it into the audit events the call causes. It comes from outside, so it
//! is checked before it reaches a log line: 1 to 64 ASCII letters, digits, `-`, `_` or `.`
//! (a UUID, a ULID or hex all fit; no spaces, control characters or quotes).

use std::fmt;
use std::str::FromStr;

/// The longest request id accepted.
pub const MAX_LEN: usize = 64;

/// A request id that is safe to log and to put in a header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

/// Why a request id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    /// Empty or longer than [`MAX_LEN`].
    #[error("a request id has 1 to {MAX_LEN} characters")]
    Length,
    /// A character outside `[A-Za-z0-9._-]`.
    #[error("a request id consists of letters, digits, '-', '_' and '.'")]
    Charset,
}

impl RequestId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, RequestIdError> {
        if id.is_empty() || id.len() > MAX_LEN {
            return Err(RequestIdError::Length);
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(RequestIdError::Charset);
        }
        Ok(Self(id.to_owned()))
    }

    /// An id made of 128 random bits (32 lowercase hex digits); the caller brings the bits,
    /// this crate does no I/O.
    pub fn from_bits(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RequestId {
    type Err = RequestIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        for good in [
            "a",
            "3f2a9c1e-7b4d-4e8f-9a0b-1c2d3e4f5a6b",
            "01HZX3Q9V7K2M4N6P8R0S2T4W6",
            "cli.run_7",
            &"x".repeat(MAX_LEN),
        ] {
            assert_eq!(RequestId::new(good).unwrap().as_str(), good);
        }
        assert_eq!(RequestId::new(""), Err(RequestIdError::Length));
        assert_eq!(
            RequestId::new(&"x".repeat(MAX_LEN + 1)),
            Err(RequestIdError::Length)
        );
        for bad in ["a b", "a\nb", "a\"b", "é", "a*", "a>b", "a/b", "\u{1b}[31m"] {
            assert_eq!(RequestId::new(bad), Err(RequestIdError::Charset), "{bad:?}");
        }
        assert_eq!(
            RequestId::from_bits(0xab).as_str(),
            "000000000000000000000000000000ab"
        );
    }
}
