//! The hub's answer to nats-server's auth callout: who may connect right now. A spoke may
//! connect only while its cluster is accepted and only with the key the hub last signed for
//! it (or the one before, while a rotation is in flight). Everyone else with a certificate
//! from the fleet CA gets the permissions of their identity.

use std::sync::{Arc, OnceLock};

use fleetbus_nats::callout::Authorizer;
use fleetbus_nats::permissions::ProxyAccess;
use fleetbus_nats::pki::CertInfo;
use fleetbus_schema::v1::{Acceptance, ClusterRecord, Grant};
use fleetbus_schema::{ClusterName, Identity, UserName};

use crate::store::{Bucket, ClusterStore};

/// The state the decisions read.
#[derive(Clone)]
pub struct AuthzState {
    /// Cluster records.
    pub clusters: ClusterStore,
    /// Grants (a granted user may reach that cluster's Kubernetes API).
    pub grants: Bucket<Grant>,
}

/// Decides with the records in JetStream. The state is set once the hub's own connection
/// (which this callout admits) has opened it; until then spokes and users are refused.
pub struct HubAuthorizer {
    state: Arc<OnceLock<AuthzState>>,
    admins: Vec<UserName>,
}

impl HubAuthorizer {
    /// An authorizer and the slot its state goes into.
    pub fn new(admins: Vec<UserName>) -> (Self, Arc<OnceLock<AuthzState>>) {
        let state = Arc::new(OnceLock::new());
        (
            Self {
                state: state.clone(),
                admins,
            },
            state,
        )
    }
}

impl Authorizer for HubAuthorizer {
    async fn authorize(&self, identity: &Identity, cert: &CertInfo) -> Result<ProxyAccess, String> {
        let state = || {
            self.state
                .get()
                .ok_or_else(|| format!("{identity}: the hub is starting"))
        };
        match identity {
            Identity::Spoke(cluster) => {
                let record = state()?
                    .clusters
                    .get(cluster)
                    .await
                    .map_err(|e| format!("{identity}: {e}"))?;
                spoke_may_connect(record.as_ref(), cert)
                    .map_err(|reason| format!("{identity}: {reason}"))?;
                Ok(ProxyAccess::None)
            }
            Identity::User(user) if self.admins.contains(user) => Ok(ProxyAccess::All),
            Identity::User(user) => {
                let grants = state()?
                    .grants
                    .list(&format!("{user}."))
                    .await
                    .map_err(|e| format!("{identity}: {e}"))?;
                Ok(proxy_clusters(user, &grants))
            }
            _ => Ok(ProxyAccess::None),
        }
    }
}

/// The clusters a user's grants open the Kubernetes API tunnel to.
pub fn proxy_clusters(user: &UserName, grants: &[Grant]) -> ProxyAccess {
    let mut clusters: Vec<ClusterName> = grants
        .iter()
        .filter(|g| g.user == user.as_str())
        .filter_map(|g| ClusterName::new(g.cluster.as_str()).ok())
        .collect();
    clusters.sort();
    clusters.dedup();
    if clusters.is_empty() {
        ProxyAccess::None
    } else {
        ProxyAccess::Clusters(clusters)
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
    fn grants_open_their_clusters_once() {
        let alice = UserName::new("alice").unwrap();
        let grant = |user: &str, cluster: &str| Grant {
            user: user.into(),
            cluster: cluster.into(),
            msa: "m".into(),
            ..Default::default()
        };
        assert_eq!(proxy_clusters(&alice, &[]), ProxyAccess::None);
        let grants = [
            grant("alice", "c2"),
            grant("alice", "c1"),
            grant("alice", "c1"),
            grant("bob", "c3"),
        ];
        let want = vec![
            ClusterName::new("c1").unwrap(),
            ClusterName::new("c2").unwrap(),
        ];
        assert_eq!(proxy_clusters(&alice, &grants), ProxyAccess::Clusters(want));
    }

    #[test]
    fn empty_previous_key_matches_nothing() {
        let mut r = record(Acceptance::Accepted);
        r.previous_key_fingerprint.clear();
        assert!(spoke_may_connect(Some(&r), &cert("")).is_err());
    }
}
