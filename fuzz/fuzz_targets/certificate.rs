//! PEM from the network: client certificates (auth callout), certificates the hub returns to
//! a spoke, CSRs a spoke sends to join or renew, which the hub signs. Each is parsed, its
//! identity and key read, and a CSR that parses is signed as the hub would. Input: text.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use fleetbus_hub::authz::spoke_may_connect;
use fleetbus_hub::registration::Signer;
use fleetbus_nats::pki::{self, Ca};
use fleetbus_schema::v1::{Acceptance, ClusterRecord};
use fleetbus_schema::{ClusterName, Identity};
use libfuzzer_sys::fuzz_target;

static SIGNER: OnceLock<Option<Signer>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(info) = pki::inspect(text) {
        let _ = info.require_identity();
        info.renew_at_ms(0.77);
        let record = ClusterRecord {
            acceptance: Acceptance::Accepted as i32,
            key_fingerprint: info.key_fingerprint.clone(),
            ..Default::default()
        };
        let _ = spoke_may_connect(Some(&record), &info);
    }
    let _ = pki::key_fingerprint(text);
    let _ = Identity::from_uri(text);
    if pki::csr_key_fingerprint(text).is_ok() {
        let signer = SIGNER.get_or_init(|| {
            let (ca, _) = Ca::generate("fuzz CA", Duration::from_secs(86_400)).ok()?;
            Some(Signer::new(ca, Duration::from_secs(3600)))
        });
        if let (Some(signer), Ok(cluster)) = (signer, ClusterName::new("cluster1")) {
            let _ = signer.sign(text, &cluster);
        }
    }
});
