//! `fleetbus create|get|delete msa`, `get token`, `grant`, `revoke`, `get grants`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    ConditionStatus, Empty, Grant, GrantList, ManagedServiceAccount, MsaList, MsaListRequest,
    MsaRef, PolicyRule, TokenReply,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{HubFlags, Output, TokenOutput};
use crate::hub_client::HubClient;
use crate::output::{age, now_ms, table, timestamp};

/// One rule as in a ClusterRole's `rules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RuleYaml {
    #[serde(default)]
    api_groups: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    resource_names: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    verbs: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RulesYaml {
    List(Vec<RuleYaml>),
    Role { rules: Vec<RuleYaml> },
}

/// Reads `rules.yaml`: a list of rules, or an object with a `rules:` list (a ClusterRole).
pub fn read_rules(path: &Path) -> anyhow::Result<Vec<PolicyRule>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse_rules(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Parses rules from `text` (the contents of `rules.yaml`).
pub fn parse_rules(text: &str) -> anyhow::Result<Vec<PolicyRule>> {
    let rules = match serde_yaml::from_str::<RulesYaml>(text) {
        Ok(RulesYaml::List(rules) | RulesYaml::Role { rules }) => rules,
        Err(_) => {
            // Say what is wrong with the plainest reading: a list of rules.
            serde_yaml::from_str::<Vec<RuleYaml>>(text)?;
            anyhow::bail!("expected a list of rules or an object with `rules:`");
        }
    };
    if rules.is_empty() {
        anyhow::bail!("no rules");
    }
    Ok(rules
        .into_iter()
        .map(|r| PolicyRule {
            verbs: r.verbs,
            api_groups: r.api_groups,
            resources: r.resources,
            resource_names: r.resource_names,
            non_resource_urls: r.non_resource_urls,
        })
        .collect())
}

/// `fleetbus create msa`.
pub async fn create(
    hub: &HubFlags,
    msa: ManagedServiceAccount,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let created: ManagedServiceAccount = client.call(ApiEndpoint::MsaCreate, &msa).await?;
    writeln!(
        out,
        "managedserviceaccount {} created on cluster {}",
        created.name, created.cluster
    )?;
    Ok(())
}

/// `fleetbus get msa`.
pub async fn get(
    hub: &HubFlags,
    cluster: &str,
    name: Option<&str>,
    output: Output,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let list: MsaList = client
        .call(
            ApiEndpoint::MsaList,
            &MsaListRequest {
                cluster: cluster.to_owned(),
            },
        )
        .await?;
    let items: Vec<&ManagedServiceAccount> = list
        .items
        .iter()
        .filter(|m| name.is_none_or(|n| m.name == n))
        .collect();
    if let (Some(n), true) = (name, items.is_empty()) {
        anyhow::bail!("managed service account {n} not found");
    }
    match output {
        Output::Table if items.is_empty() => writeln!(out, "No managed service accounts found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|m| {
                    let status = m.status.clone().unwrap_or_default();
                    let ready = status
                        .conditions
                        .iter()
                        .find(|c| c.r#type == "TokenReported")
                        .map_or("Unknown", |c| match c.status() {
                            ConditionStatus::True => "True",
                            ConditionStatus::False => "False",
                            _ => "Unknown",
                        });
                    let expires = timestamp(status.expiration_ms)
                        .as_str()
                        .unwrap_or("<none>")
                        .to_owned();
                    vec![
                        m.name.clone(),
                        m.cluster.clone(),
                        ready.into(),
                        expires,
                        age(m.created_ms, now),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(&["NAME", "CLUSTER", "TOKEN READY", "EXPIRES", "AGE"], &rows)
            )?;
        }
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&as_list(&items))?)?,
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(&as_list(&items))?)?,
    }
    Ok(())
}

/// OCM ManagedServiceAccount-shaped objects.
pub fn as_list(items: &[&ManagedServiceAccount]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|m| {
            let status = m.status.clone().unwrap_or_default();
            let rules: Vec<Value> = m
                .rules
                .iter()
                .map(|r| json!({"apiGroups": r.api_groups, "resources": r.resources, "resourceNames": r.resource_names, "nonResourceURLs": r.non_resource_urls, "verbs": r.verbs}))
                .collect();
            json!({
                "apiVersion": "authentication.open-cluster-management.io/v1beta1",
                "kind": "ManagedServiceAccount",
                "metadata": { "name": m.name, "namespace": m.cluster, "creationTimestamp": timestamp(m.created_ms), "generation": m.generation },
                "spec": {
                    "rotation": { "enabled": true, "validity": humantime::format_duration(Duration::from_secs(m.validity_seconds.max(0) as u64)).to_string() },
                    "ttlSecondsAfterCreation": (m.ttl_seconds_after_creation > 0).then_some(m.ttl_seconds_after_creation),
                    "rules": rules,
                    "rulesNamespace": (!m.rules_namespace.is_empty()).then_some(&m.rules_namespace),
                },
                "status": {
                    "expirationTimestamp": timestamp(status.expiration_ms),
                    "tokenSecretRef": (!status.token_secret_name.is_empty()).then(|| json!({
                        "name": status.token_secret_name,
                        "lastRefreshTimestamp": timestamp(status.last_refresh_ms),
                    })),
                    "conditions": status.conditions.iter().map(|c| json!({
                        "type": c.r#type,
                        "status": match c.status() { ConditionStatus::True => "True", ConditionStatus::False => "False", _ => "Unknown" },
                        "reason": c.reason,
                        "message": c.message,
                        "lastTransitionTime": timestamp(c.last_transition_ms),
                    })).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// `fleetbus delete msa`.
pub async fn delete(
    hub: &HubFlags,
    cluster: &str,
    name: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let _: Empty = client
        .call(
            ApiEndpoint::MsaDelete,
            &MsaRef {
                cluster: cluster.into(),
                name: name.into(),
            },
        )
        .await?;
    writeln!(
        out,
        "managedserviceaccount {name} deleted from cluster {cluster}"
    )?;
    Ok(())
}

/// `fleetbus get token`.
pub async fn token(
    hub: &HubFlags,
    cluster: &str,
    name: &str,
    output: TokenOutput,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let reply: TokenReply = client
        .call(
            ApiEndpoint::TokenGet,
            &MsaRef {
                cluster: cluster.into(),
                name: name.into(),
            },
        )
        .await?;
    match output {
        TokenOutput::Token => writeln!(out, "{}", reply.token)?,
        TokenOutput::Kubeconfig => write!(out, "{}", kubeconfig(cluster, name, &reply))?,
    }
    Ok(())
}

/// A kubeconfig for the token, pointing at the cluster's apiserver as the spoke reaches it.
pub fn kubeconfig(cluster: &str, user: &str, reply: &TokenReply) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(&reply.ca_pem);
    let ca_line = if reply.ca_pem.is_empty() {
        String::new()
    } else {
        format!("\n    certificate-authority-data: {ca}")
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {}{ca_line}\nusers:\n- name: {user}\n  user:\n    token: {}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\ncurrent-context: {cluster}\n",
        reply.server, reply.token
    )
}

/// `fleetbus grant` / `revoke`.
pub async fn grant(
    hub: &HubFlags,
    grant: Grant,
    revoke: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    if revoke {
        let _: Empty = client.call(ApiEndpoint::GrantDelete, &grant).await?;
        writeln!(
            out,
            "revoked {} on cluster {} from user {}",
            grant.msa, grant.cluster, grant.user
        )?;
    } else {
        let _: Grant = client.call(ApiEndpoint::GrantCreate, &grant).await?;
        writeln!(
            out,
            "granted {} on cluster {} to user {}",
            grant.msa, grant.cluster, grant.user
        )?;
    }
    Ok(())
}

/// `fleetbus get grants`.
pub async fn grants(hub: &HubFlags, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let list: GrantList = client.call(ApiEndpoint::GrantList, &Empty {}).await?;
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|g| json!({"user": g.user, "cluster": g.cluster, "msa": g.msa, "createdBy": g.created_by, "creationTimestamp": timestamp(g.created_ms)}))
        .collect();
    match output {
        Output::Table if items.is_empty() => writeln!(out, "No grants found.")?,
        Output::Table => {
            let now = now_ms();
            let rows: Vec<Vec<String>> = list
                .items
                .iter()
                .map(|g| {
                    vec![
                        g.user.clone(),
                        g.cluster.clone(),
                        g.msa.clone(),
                        g.created_by.clone(),
                        age(g.created_ms, now),
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                table(&["USER", "CLUSTER", "MSA", "GRANTED BY", "AGE"], &rows)
            )?;
        }
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?,
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(&items)?)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_as_list_or_cluster_role() {
        let list = "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch]\n";
        let rules = parse_rules(list).unwrap();
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);
        let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\nrules:\n- nonResourceURLs: [/healthz]\n  verbs: [get]\n";
        assert_eq!(
            parse_rules(role).unwrap()[0].non_resource_urls,
            ["/healthz"]
        );
    }

    #[test]
    fn bad_rules_are_clear_errors() {
        assert!(
            parse_rules("- apiGroups: [apps]\n  resources: [x]\n")
                .unwrap_err()
                .to_string()
                .contains("verbs")
        );
        assert!(
            parse_rules("- verbs: [get]\n  resorces: [pods]\n")
                .unwrap_err()
                .to_string()
                .contains("resorces")
        );
        assert!(parse_rules("[]").is_err());
        assert!(parse_rules("::: not yaml").is_err());
    }
}
