//! The harness for fleetbus's end-to-end tests: each test starts its own real servers (a
//! nats-server with mutual TLS, JetStream and auth callout; where needed a kube-apiserver with
//! etcd) on free ports, with fresh certificates and a random subject prefix. Servers die with
//! the test.

pub mod audit;
pub mod exec_bench;
pub mod fleet;
pub mod forward;
pub mod frames_bench;
pub mod fuzz_input;
pub mod fuzz_seeds;
pub mod nats_env;
pub mod placement;
pub mod pod;
pub mod proxy_bench;
mod proxy_floor;
pub mod python;
pub mod scale;
pub mod tunnel_seed;
pub mod wait;
pub mod works;

pub use fleet::Fleet;
pub use forward::Forward;
pub use nats_env::{NatsEnv, captured_logs};
pub use wait::eventually;

/// The SHA-256 of `bytes`, in hex (to compare what arrived with what was sent).
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
