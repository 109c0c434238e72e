//! The folder `fleetbus certs init` writes and hub, CLI and local-up read.
//!
//! ```text
//! ca.crt ca.key                 fleet CA (ca.key only on the hub)
//! server.crt server.key         nats-server
//! hub.crt hub.key               fleetbus://hub
//! bootstrap.crt bootstrap.key   fleetbus://bootstrap (join only)
//! users/<name>.crt .key         fleetbus://user/<name>
//! auditors/<name>.crt .key      fleetbus://auditor/<name>
//! servers/<name>.crt .key       another nats-server, such as a leaf node in a spoke's network
//! nkeys/issuer.nk               account key that signs auth-callout answers (hub only)
//! nkeys/callout.nk              the hub's auth-callout connection (AUTH account)
//! nkeys/system.nk               the hub's system-account connection (connection events, kicks)
//! secrets.key                   the hub's key for tokens at rest (hub only)
//! nats-auth.conf                accounts + auth callout block for nats-server to `include`
//! ```

use std::path::{Path, PathBuf};

use crate::connect::TlsFiles;

/// Paths inside a PKI folder.
#[derive(Debug, Clone)]
pub struct PkiDir {
    root: PathBuf,
}

impl PkiDir {
    /// The folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// CA certificate.
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }

    /// CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    /// `(cert, key)` of a named top-level pair (`server`, `hub`, `bootstrap`).
    pub fn pair(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.root.join(format!("{name}.crt")),
            self.root.join(format!("{name}.key")),
        )
    }

    /// `(cert, key)` of a user.
    pub fn user(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.root.join("users").join(format!("{name}.crt")),
            self.root.join("users").join(format!("{name}.key")),
        )
    }

    /// `(cert, key)` of an auditor.
    pub fn auditor(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.root.join("auditors").join(format!("{name}.crt")),
            self.root.join("auditors").join(format!("{name}.key")),
        )
    }

    /// `(cert, key)` of another nats-server (a leaf node, say).
    pub fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        (
            self.root.join("servers").join(format!("{name}.crt")),
            self.root.join("servers").join(format!("{name}.key")),
        )
    }

    /// The nats-server config fragment with the fleet's accounts and auth callout.
    pub fn nats_auth_conf(&self) -> PathBuf {
        self.root.join("nats-auth.conf")
    }

    /// The hub's symmetric key for secrets at rest.
    pub fn secrets_key(&self) -> PathBuf {
        self.root.join("secrets.key")
    }

    /// An nkey seed file (`issuer`, `callout`, `system`).
    pub fn nkey(&self, name: &str) -> PathBuf {
        self.root.join("nkeys").join(format!("{name}.nk"))
    }

    /// TLS files for a top-level pair.
    pub fn tls(&self, name: &str) -> TlsFiles {
        let (cert, key) = self.pair(name);
        TlsFiles {
            ca: self.ca_cert(),
            cert,
            key,
        }
    }
}
