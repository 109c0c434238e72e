//! Who is on the other end of a connection. An identity is carried in exactly one URI SAN of
//! the client certificate: `fleetbus://hub`, `fleetbus://bootstrap`, `fleetbus://spoke/<cluster>`,
//! `fleetbus://user/<name>`, `fleetbus://auditor/<name>`.

use std::fmt;

use crate::names::{ClusterName, NameError, UserName};

const SCHEME: &str = "fleetbus://";

/// A principal of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The hub (all replicas share it).
    Hub,
    /// The short-lived identity a new spoke uses only to ask to join.
    Bootstrap,
    /// The agent of one managed cluster.
    Spoke(ClusterName),
    /// A person or automation using the hub API and the proxy.
    User(UserName),
    /// A read-only subscriber of the audit stream.
    Auditor(UserName),
}

/// Why a SAN is not a fleetbus identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not of the form `fleetbus://kind[/name]`.
    #[error("{0:?} is not a fleetbus identity URI")]
    NotAnIdentity(String),
    /// A known kind with a bad name.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl Identity {
    /// The URI placed in the certificate's SAN.
    pub fn uri(&self) -> String {
        match self.name() {
            Some(name) => format!("{SCHEME}{}/{name}", self.kind()),
            None => format!("{SCHEME}{}", self.kind()),
        }
    }

    /// Parses a SAN URI.
    pub fn from_uri(uri: &str) -> Result<Self, IdentityError> {
        let not = || IdentityError::NotAnIdentity(uri.to_owned());
        let rest = uri.strip_prefix(SCHEME).ok_or_else(not)?;
        let (kind, name) = match rest.split_once('/') {
            Some((kind, name)) => (kind, Some(name)),
            None => (rest, None),
        };
        Ok(match (kind, name) {
            ("hub", None) => Self::Hub,
            ("bootstrap", None) => Self::Bootstrap,
            ("spoke", Some(n)) => Self::Spoke(ClusterName::new(n)?),
            ("user", Some(n)) => Self::User(UserName::new(n)?),
            ("auditor", Some(n)) => Self::Auditor(UserName::new(n)?),
            _ => return Err(not()),
        })
    }

    /// `hub`, `bootstrap`, `spoke`, `user` or `auditor`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Hub => "hub",
            Self::Bootstrap => "bootstrap",
            Self::Spoke(_) => "spoke",
            Self::User(_) => "user",
            Self::Auditor(_) => "auditor",
        }
    }

    /// The cluster or user name, for identities that have one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Hub | Self::Bootstrap => None,
            Self::Spoke(c) => Some(c.as_str()),
            Self::User(u) | Self::Auditor(u) => Some(u.as_str()),
        }
    }
}

impl fmt::Display for Identity {
    /// `spoke:cluster1`, `user:alice`, `hub`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{}:{name}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let ids = [
            Identity::Hub,
            Identity::Bootstrap,
            Identity::Spoke(ClusterName::new("cluster1").unwrap()),
            Identity::User(UserName::new("alice").unwrap()),
            Identity::Auditor(UserName::new("audit").unwrap()),
        ];
        for id in ids {
            assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        }
        assert_eq!(
            Identity::Spoke(ClusterName::new("c1").unwrap()).uri(),
            "fleetbus://spoke/c1"
        );
        assert_eq!(
            Identity::User(UserName::new("a").unwrap()).to_string(),
            "user:a"
        );
    }

    #[test]
    fn refuses_foreign_or_malformed_uris() {
        for bad in [
            "spiffe://x/y",
            "fleetbus://",
            "fleetbus://hub/x",
            "fleetbus://spoke",
            "fleetbus://admin/a",
            "fleetbus://spoke/a/b",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            Identity::from_uri("fleetbus://spoke/a.b"),
            Err(IdentityError::Name(_))
        ));
    }
}
