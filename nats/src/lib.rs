//! How fleetbus talks over NATS, apart from the contract in `fleetbus-schema`: mutual-TLS
//! connections with a private inbox per identity, the auth callout that turns a client
//! certificate into per-identity permissions, the fleet PKI, nats-server configuration and a
//! launcher for local runs and tests.
//!
//! Must not depend on the hub or the spoke.

pub mod audit;
pub mod callout;
pub mod connect;
pub mod files;
pub mod init;
pub mod jwt;
pub mod layout;
pub mod ops;
pub mod permissions;
pub mod pki;
pub mod ports;
pub mod process;
pub mod refusals;
pub mod request_id;
pub mod rpc;
pub mod server;
pub mod system;
pub mod tunnel;

pub use connect::{ConnectError, TlsFiles};
pub use layout::PkiDir;

/// Where fleetbus caches downloaded or built servers: `$FLEETBUS_CACHE`, else
/// `~/.cache/fleetbus`.
pub fn cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("FLEETBUS_CACHE") {
        return dir.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    std::path::PathBuf::from(home).join(".cache/fleetbus")
}

/// Installs rustls's `ring` provider for the process. Binaries call it first thing; calling it
/// again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
