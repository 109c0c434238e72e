//! Validated names. Cluster and user names become subject tokens, so they are DNS-1123 labels:
//! lower-case alphanumerics and `-`, at most 63 characters, never `.`, `*`, `>` or whitespace.
//! A name can therefore never widen a wildcard or add a token.

use std::fmt;
use std::str::FromStr;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: {reason}")]
pub struct NameError {
    /// What kind of name it was meant to be (`cluster name`, …).
    pub what: &'static str,
    /// The refused input.
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

/// Checks `name` against DNS-1123 label rules.
pub fn validate_label(what: &'static str, name: &str) -> Result<(), NameError> {
    let fail = |reason| {
        Err(NameError {
            what,
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return fail("must not be empty");
    }
    if name.len() > 63 {
        return fail("must be at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail("must consist of lower-case letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return fail("must start and end with a letter or digit");
    }
    Ok(())
}

macro_rules! label_name {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// Validates and wraps `name`.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                validate_label($what, &name)?;
                Ok(Self(name))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

label_name!(
    /// The name of a managed cluster (`cluster1`).
    ClusterName,
    "cluster name"
);
label_name!(
    /// The name of a user or auditor (`alice`).
    UserName,
    "user name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["cluster1", "a", "eu-west-1", &"a".repeat(63)] {
            assert!(ClusterName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_could_change_a_subject() {
        for bad in [
            "",
            "a.b",
            "*",
            ">",
            "a b",
            "Cluster1",
            "-a",
            "a-",
            "a_b",
            "c1\n",
            &"a".repeat(64),
        ] {
            let err = ClusterName::new(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
        assert_eq!(
            ClusterName::new("a.b").unwrap_err().to_string(),
            "invalid cluster name \"a.b\": must consist of lower-case letters, digits and '-'"
        );
    }
}
