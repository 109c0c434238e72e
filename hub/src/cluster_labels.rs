//! A cluster's labels: those its spoke reports (`--labels`) with what the admin set or removed
//! on top (`fleetbus label cluster`, `fleetbus clusterset set`). The cluster-set label is the
//! admin's alone, so a spoke can never put itself into a set and receive that set's works.

use std::collections::BTreeMap;

use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::{ClusterClaims, ClusterLabelRequest, ClusterRecord};

use crate::error::ApiError;
use crate::registration::not_registered;
use crate::store::{Action, ClusterStore};

/// OCM's exclusive cluster-set membership label.
pub const CLUSTERSET_LABEL: &str = "cluster.open-cluster-management.io/clusterset";
/// The reserved claim carrying the cluster's Kubernetes version.
pub const KUBE_VERSION_CLAIM: &str = "kubeversion.open-cluster-management.io";

/// The labels placements see.
pub fn effective(record: &ClusterRecord) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = record
        .claims
        .iter()
        .flat_map(|c| c.labels.iter())
        .filter(|(k, _)| k.as_str() != CLUSTERSET_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for key in &record.removed_labels {
        labels.remove(key);
    }
    labels.extend(
        record
            .admin_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels
}

/// The cluster set a cluster is in, if any.
pub fn cluster_set(record: &ClusterRecord) -> Option<&str> {
    record
        .admin_labels
        .get(CLUSTERSET_LABEL)
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

/// The cluster's ClusterClaims, as `claimSelector` sees them.
pub fn claims(record: &ClusterRecord) -> BTreeMap<String, String> {
    let version = record
        .claims
        .as_ref()
        .map(|c| c.kube_version.clone())
        .unwrap_or_default();
    BTreeMap::from([(KUBE_VERSION_CLAIM.to_owned(), version)])
}

/// The claims the hub API shows: the spoke's, with the effective labels.
pub fn shown_claims(record: &ClusterRecord) -> ClusterClaims {
    ClusterClaims {
        kube_version: record
            .claims
            .as_ref()
            .map(|c| c.kube_version.clone())
            .unwrap_or_default(),
        labels: effective(record).into_iter().collect(),
    }
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a name of at most 63
/// characters (alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn validate_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "invalid label key {key:?}: the prefix must be a DNS subdomain"
            ));
        }
    }
    if name.is_empty() {
        return Err(format!("invalid label key {key:?}: the name part is empty"));
    }
    name_rule(name).map_err(|why| format!("invalid label key {key:?}: {why}"))
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` starting and ending
/// alphanumeric.
pub fn validate_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    name_rule(value).map_err(|why| format!("invalid label value {value:?}: {why}"))
}

/// The rule label names and values share.
fn name_rule(text: &str) -> Result<(), &'static str> {
    let inner = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if text.len() > 63
        || !text.bytes().all(inner)
        || !edge(text.bytes().next())
        || !edge(text.bytes().last())
    {
        return Err(
            "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        );
    }
    Ok(())
}

/// Validates a label request; the cluster-set label must go through `clusterset set`, so that
/// the set is known to exist.
pub fn validate(request: &ClusterLabelRequest) -> Result<ClusterName, ApiError> {
    let name = ClusterName::new(request.cluster.as_str())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if request.set.is_empty() && request.remove.is_empty() {
        return Err(ApiError::bad_request("no labels to set or remove"));
    }
    for (key, value) in &request.set {
        validate_key(key).map_err(ApiError::bad_request)?;
        validate_value(value).map_err(ApiError::bad_request)?;
        if key == CLUSTERSET_LABEL {
            return Err(ApiError::bad_request(format!(
                "set {CLUSTERSET_LABEL} with `fleetbus clusterset set {name} --clusterset SET`"
            )));
        }
    }
    for key in &request.remove {
        validate_key(key).map_err(ApiError::bad_request)?;
        if request.set.contains_key(key) {
            return Err(ApiError::bad_request(format!(
                "label {key:?} is both set and removed"
            )));
        }
    }
    Ok(name)
}

/// Applies a validated label request to the cluster's record.
pub async fn label(
    store: &ClusterStore,
    name: &ClusterName,
    request: &ClusterLabelRequest,
) -> Result<ClusterRecord, ApiError> {
    store
        .update(name, |current| {
            let mut record = current.ok_or_else(|| not_registered(name))?;
            let labels = effective(&record);
            for (key, value) in &request.set {
                match labels.get(key) {
                    Some(old) if old != value && !request.overwrite => {
                        return Err(ApiError::conflict(format!(
                            "cluster {name} already has label {key}={old}; use --overwrite to change it"
                        )));
                    }
                    _ => {}
                }
                record.admin_labels.insert(key.clone(), value.clone());
                record.removed_labels.retain(|k| k != key);
            }
            let reported = |key: &str| {
                record
                    .claims
                    .as_ref()
                    .is_some_and(|c| c.labels.contains_key(key))
            };
            for key in &request.remove {
                record.admin_labels.remove(key);
                if key != CLUSTERSET_LABEL
                    && reported(key)
                    && !record.removed_labels.contains(key)
                {
                    record.removed_labels.push(key.clone());
                }
            }
            record.removed_labels.sort();
            Ok((Action::Put(Box::new(record.clone())), record))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(spoke: &[(&str, &str)], admin: &[(&str, &str)], removed: &[&str]) -> ClusterRecord {
        ClusterRecord {
            claims: Some(ClusterClaims {
                kube_version: "v1.20.2".into(),
                labels: spoke
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            }),
            admin_labels: admin
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            removed_labels: removed.iter().map(|k| (*k).into()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn admin_labels_override_and_remove_spoke_labels() {
        let r = record(
            &[("env", "test"), ("zone", "a"), ("team", "x")],
            &[("env", "prod")],
            &["team"],
        );
        let labels = effective(&r);
        assert_eq!(labels["env"], "prod");
        assert_eq!(labels["zone"], "a");
        assert!(!labels.contains_key("team"));
    }

    #[test]
    fn a_spoke_cannot_put_itself_into_a_set() {
        let r = record(&[(CLUSTERSET_LABEL, "prod")], &[], &[]);
        assert!(!effective(&r).contains_key(CLUSTERSET_LABEL));
        assert_eq!(cluster_set(&r), None);
        let r = record(&[], &[(CLUSTERSET_LABEL, "prod")], &[]);
        assert_eq!(cluster_set(&r), Some("prod"));
        assert_eq!(effective(&r)[CLUSTERSET_LABEL], "prod");
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for ok in ["env", "app.kubernetes.io/name", "a_b.c-d", "x/y"] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a b", "Ex!/x", "a/", "/a", &"k".repeat(64)] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_value("").is_ok());
        assert!(validate_value("v1.20.2").is_ok());
        assert!(validate_value("a,b").is_err());
        assert!(validate_value("-a").is_err());
    }

    #[test]
    fn label_requests_are_checked() {
        let mut r = ClusterLabelRequest {
            cluster: "c1".into(),
            ..Default::default()
        };
        assert!(validate(&r).unwrap_err().message.contains("no labels"));
        r.set.insert(CLUSTERSET_LABEL.into(), "prod".into());
        assert!(validate(&r).unwrap_err().message.contains("clusterset set"));
        r.set.clear();
        r.set.insert("env".into(), "bad value".into());
        assert!(
            validate(&r)
                .unwrap_err()
                .message
                .contains("invalid label value")
        );
    }
}
