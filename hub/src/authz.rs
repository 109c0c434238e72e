//! The hub's answer to nats-server's auth callout: who may connect right now. A spoke may
//! connect only while its cluster is accepted and only with the key the hub last signed for
//! it (or the one before, while a rotation is in flight). Everyone else with a certificate
//! from the fleet CA gets the permissions of their identity.

use std::sync::{Arc, OnceLock};

use fleetbus_nats::callout::Authorizer;
use fleetbus_nats::pki::CertInfo;
use fleetbus_schema::Identity;
use fleetbus_schema::v1::{Acceptance, ClusterRecord};

use crate::store::ClusterStore;

/// Decides with the cluster records in JetStream. The store is set once the hub's own
/// connection (which this callout admits) has opened it; until then spokes are refused.
pub struct HubAuthorizer {
    store: Arc<OnceLock<ClusterStore>>,
}

impl HubAuthorizer {
    /// An authorizer and the slot its store goes into.
    pub fn new() -> (Self, Arc<OnceLock<ClusterStore>>) {
        let store = Arc::new(OnceLock::new());
        (
            Self {
                store: store.clone(),
            },
            store,
        )
    }
}

impl Authorizer for HubAuthorizer {
    async fn authorize(&self, identity: &Identity, cert: &CertInfo) -> Result<(), String> {
        let Identity::Spoke(cluster) = identity else {
            return Ok(());
        };
        let store = self.store.get().ok_or("the hub is starting")?;
        let record = store
            .get(cluster)
            .await
            .map_err(|e| format!("{identity}: {e}"))?;
        spoke_may_connect(record.as_ref(), cert).map_err(|reason| format!("{identity}: {reason}"))
    }
}

/// The pure decision for a spoke certificate.
pub fn spoke_may_connect(
    record: Option<&ClusterRecord>,
    cert: &CertInfo,
) -> Result<(), &'static str> {
    let record = record.ok_or("cluster is not registered")?;
    if record.acceptance() != Acceptance::Accepted {
        return Err("cluster is not accepted");
    }
    let fp = cert.key_fingerprint.as_str();
    let known = [&record.key_fingerprint, &record.previous_key_fingerprint];
    if fp.is_empty() || !known.iter().any(|k| k.as_str() == fp) {
        return Err("certificate key is not the cluster's current key");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(fp: &str) -> CertInfo {
        CertInfo {
            identity: None,
            not_before_ms: 0,
            not_after_ms: 1,
            key_fingerprint: fp.into(),
            serial: "01".into(),
        }
    }

    fn record(acceptance: Acceptance) -> ClusterRecord {
        ClusterRecord {
            acceptance: acceptance as i32,
            key_fingerprint: "new".into(),
            previous_key_fingerprint: "old".into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_accepted_clusters_with_a_known_key() {
        assert!(spoke_may_connect(Some(&record(Acceptance::Accepted)), &cert("new")).is_ok());
        assert!(spoke_may_connect(Some(&record(Acceptance::Accepted)), &cert("old")).is_ok());
        assert_eq!(
            spoke_may_connect(Some(&record(Acceptance::Accepted)), &cert("other")),
            Err("certificate key is not the cluster's current key")
        );
        assert_eq!(
            spoke_may_connect(Some(&record(Acceptance::Pending)), &cert("new")),
            Err("cluster is not accepted")
        );
        assert_eq!(
            spoke_may_connect(Some(&record(Acceptance::Denied)), &cert("new")),
            Err("cluster is not accepted")
        );
        assert_eq!(
            spoke_may_connect(None, &cert("new")),
            Err("cluster is not registered")
        );
    }

    #[test]
    fn empty_previous_key_matches_nothing() {
        let mut r = record(Acceptance::Accepted);
        r.previous_key_fingerprint.clear();
        assert!(spoke_may_connect(Some(&r), &cert("")).is_err());
    }
}
