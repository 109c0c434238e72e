//! What a valid managed service account request is: names, token validity bounds and RBAC
//! rule shapes, with defaults filled in.

use std::time::Duration;

use fleetbus_schema::v1::{ManagedServiceAccount, PolicyRule};
use fleetbus_schema::{ClusterName, UserName};

use crate::error::ApiError;

/// Shortest validity the apiserver's TokenRequest accepts.
pub const MIN_VALIDITY: Duration = Duration::from_secs(600);
/// Longest validity fleetbus asks for.
pub const MAX_VALIDITY: Duration = Duration::from_secs(2 * 365 * 86_400);
/// Default validity: a day. Short, because spokes rotate tokens on their own and the proxy
/// fetches a fresh one for every session; OCM's 360 days leave a leaked token usable for a year.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(86_400);

/// Validated cluster and MSA names (MSA names are DNS-1123 labels: they become keys).
pub fn names(cluster: &str, name: &str) -> Result<(ClusterName, UserName), ApiError> {
    let cluster = ClusterName::new(cluster).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // MSA names become subject-safe keys: DNS-1123 labels, like cluster and user names.
    let name = UserName::new(name).map_err(|e| {
        ApiError::bad_request(e.to_string().replace("user name", "service account name"))
    })?;
    Ok((cluster, name))
}

/// Checks a requested MSA and fills defaults.
pub fn validate(mut msa: ManagedServiceAccount) -> Result<ManagedServiceAccount, ApiError> {
    names(&msa.cluster, &msa.name)?;
    if msa.validity_seconds == 0 {
        msa.validity_seconds = DEFAULT_VALIDITY.as_secs() as i64;
    }
    let validity = Duration::from_secs(msa.validity_seconds.max(0) as u64);
    if validity < MIN_VALIDITY || validity > MAX_VALIDITY {
        return Err(ApiError::bad_request(format!(
            "validity must be between 10m and 730d (the apiserver refuses tokens shorter than 10m); got {}s",
            msa.validity_seconds
        )));
    }
    if msa.ttl_seconds_after_creation < 0 {
        return Err(ApiError::bad_request(
            "ttlSecondsAfterCreation must not be negative",
        ));
    }
    if !msa.rules_namespace.is_empty() {
        fleetbus_schema::names::validate_label("namespace", &msa.rules_namespace)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    for (i, rule) in msa.rules.iter().enumerate() {
        validate_rule(rule, !msa.rules_namespace.is_empty())
            .map_err(|why| ApiError::bad_request(format!("rules[{i}]: {why}")))?;
    }
    Ok(msa)
}

fn validate_rule(rule: &PolicyRule, namespaced: bool) -> Result<(), &'static str> {
    if rule.verbs.is_empty() {
        return Err("verbs must not be empty");
    }
    match (rule.resources.is_empty(), rule.non_resource_urls.is_empty()) {
        (true, true) => Err("needs resources or nonResourceURLs"),
        (false, false) => Err("resources and nonResourceURLs cannot be mixed in one rule"),
        (true, false) if namespaced => Err("nonResourceURLs need cluster-wide rules"),
        (false, true) if rule.api_groups.is_empty() => {
            Err("apiGroups must not be empty (\"\" is the core group)")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msa(validity: i64) -> ManagedServiceAccount {
        ManagedServiceAccount {
            name: "dep".into(),
            cluster: "cluster1".into(),
            validity_seconds: validity,
            ..Default::default()
        }
    }

    #[test]
    fn validity_defaults_and_bounds() {
        assert_eq!(validate(msa(0)).unwrap().validity_seconds, 86_400);
        assert!(
            validate(msa(599))
                .unwrap_err()
                .message
                .contains("between 10m and 730d")
        );
        assert!(validate(msa(3 * 365 * 86_400)).is_err());
        assert!(validate(msa(600)).is_ok());
    }

    #[test]
    fn names_and_rules_are_checked() {
        let mut bad = msa(0);
        bad.name = "Dep.x".into();
        assert!(
            validate(bad)
                .unwrap_err()
                .message
                .contains("invalid service account name")
        );
        let rule = |verbs: &[&str], groups: &[&str], res: &[&str], urls: &[&str]| PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: groups.iter().map(|s| s.to_string()).collect(),
            resources: res.iter().map(|s| s.to_string()).collect(),
            non_resource_urls: urls.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert!(validate_rule(&rule(&["list"], &["apps"], &["deployments"], &[]), false).is_ok());
        assert!(validate_rule(&rule(&[], &["apps"], &["deployments"], &[]), false).is_err());
        assert!(validate_rule(&rule(&["get"], &[], &[], &["/healthz"]), false).is_ok());
        assert!(validate_rule(&rule(&["get"], &[], &[], &["/healthz"]), true).is_err());
        assert!(validate_rule(&rule(&["get"], &[], &["pods"], &[]), false).is_err());
    }
}
