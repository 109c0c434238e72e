//! The fleetbus wire contract: protobuf messages (prost, compiled with protox), NATS subject
//! builders, header names, identities and validated names.
//!
//! Everything hub, spoke, CLI and auditors agree on lives here. This crate does no I/O and must
//! not depend on NATS, Kubernetes or any runtime.

pub mod chunks;
pub mod codec;
pub mod conditions;
pub mod headers;
pub mod identity;
pub mod manifests;
pub mod names;
pub mod request_id;
pub mod service;
pub mod subjects;
pub mod tunnel;

/// Generated protobuf types (`proto/fleetbus/v1`).
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/fleetbus.v1.rs"));
}

pub use codec::{DecodeError, decode};
pub use identity::{Identity, IdentityError};
pub use names::{ClusterName, NameError, UserName};
pub use request_id::RequestId;
pub use service::{AuditorEndpoint, Discovery, HUB_SERVICE};
pub use subjects::{ApiEndpoint, HubTopic, Subjects};
