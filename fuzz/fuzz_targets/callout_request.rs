//! The auth-callout request nats-server sends for every new connection: the request JWT
//! decoded, the client certificate in it parsed, and the answer (a user JWT with the
//! identity's permissions, or a refusal) signed. Input: the request as it arrives.

#![no_main]

use std::future::Future;
use std::sync::OnceLock;

use fleetbus_nats::callout::{Authorizer, Callout};
use fleetbus_nats::permissions::ProxyAccess;
use fleetbus_nats::pki::CertInfo;
use fleetbus_schema::{Identity, Subjects};
use libfuzzer_sys::fuzz_target;

/// Admits every identity, so that every request that decodes reaches the signing.
struct AdmitAll;

impl Authorizer for AdmitAll {
    fn authorize(
        &self,
        _identity: &Identity,
        _cert: &CertInfo,
    ) -> impl Future<Output = Result<ProxyAccess, String>> + Send {
        async { Ok(ProxyAccess::All) }
    }
}

static CALLOUT: OnceLock<Callout<AdmitAll>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let callout = CALLOUT
        .get_or_init(|| Callout::new(nkeys::KeyPair::new_account(), Subjects::default(), AdmitAll));
    let _ = futures::executor::block_on(callout.answer(data));
});
