//! `fleetbus get clusters`, `accept`, `deny`, `delete cluster`.

use std::io::Write;

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{Acceptance, Cluster, ClusterList, ClusterNames, ConditionStatus};
use serde_json::{Value, json};

use crate::cli::{HubFlags, Output};
use crate::hub_client::HubClient;
use crate::output::{age, now_ms, table, timestamp};

const AVAILABLE: &str = "ManagedClusterConditionAvailable";

/// Prints the clusters.
pub async fn get(hub: &HubFlags, output: Output, out: &mut impl Write) -> anyhow::Result<()> {
    let client = HubClient::connect(hub).await?;
    let list = ClusterList {
        items: client.all_clusters().await?,
        next: String::new(),
    };
    match output {
        Output::Table => {
            if list.items.is_empty() {
                writeln!(out, "No clusters found.")?;
                return Ok(());
            }
            let now = now_ms();
            let rows: Vec<Vec<String>> = list.items.iter().map(|c| row(c, now)).collect();
            let header = [
                "NAME",
                "ACCEPTED",
                "AVAILABLE",
                "KUBE VERSION",
                "LABELS",
                "AGE",
            ];
            write!(out, "{}", table(&header, &rows))?;
        }
        Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&as_list(&list))?)?,
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(&as_list(&list))?)?,
    }
    Ok(())
}

/// One table row.
pub fn row(c: &Cluster, now: i64) -> Vec<String> {
    let claims = c.claims.clone().unwrap_or_default();
    let mut labels: Vec<String> = claims
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();
    vec![
        c.name.clone(),
        accepted(c.acceptance()).into(),
        c.conditions
            .iter()
            .find(|x| x.r#type == AVAILABLE)
            .map_or("", |x| status(x.status()))
            .into(),
        claims.kube_version,
        if labels.is_empty() {
            "<none>".into()
        } else {
            labels.join(",")
        },
        age(c.created_ms, now),
    ]
}

fn accepted(a: Acceptance) -> &'static str {
    match a {
        Acceptance::Accepted => "true",
        Acceptance::Denied => "false",
        _ => "pending",
    }
}

fn status(s: ConditionStatus) -> &'static str {
    match s {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        _ => "Unknown",
    }
}

/// OCM ManagedCluster-shaped objects, so `-o yaml` reads like `kubectl get managedcluster`.
pub fn as_list(list: &ClusterList) -> Value {
    let items: Vec<Value> = list
        .items
        .iter()
        .map(|c| {
            let claims = c.claims.clone().unwrap_or_default();
            json!({
                "apiVersion": "fleetbus.io/v1",
                "kind": "ManagedCluster",
                "metadata": {
                    "name": c.name,
                    "labels": claims.labels,
                    "creationTimestamp": timestamp(c.created_ms),
                },
                "spec": { "hubAcceptsClient": c.acceptance() == Acceptance::Accepted },
                "status": {
                    "acceptance": accepted(c.acceptance()),
                    "version": { "kubernetes": claims.kube_version },
                    "certificateExpiration": timestamp(c.certificate_not_after_ms),
                    "conditions": c.conditions.iter().map(|x| json!({
                        "type": x.r#type,
                        "status": status(x.status()),
                        "reason": x.reason,
                        "message": x.message,
                        "lastTransitionTime": timestamp(x.last_transition_ms),
                    })).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

/// accept / deny / delete.
pub async fn decide(
    hub: &HubFlags,
    endpoint: ApiEndpoint,
    names: Vec<String>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for name in &names {
        fleetbus_schema::ClusterName::new(name.as_str())?;
    }
    let client = HubClient::connect(hub).await?;
    let done: ClusterNames = client.call(endpoint, &ClusterNames { names }).await?;
    let verb = match endpoint {
        ApiEndpoint::ClustersAccept => "accepted",
        ApiEndpoint::ClustersDeny => "denied",
        _ => "deleted",
    };
    for name in done.names {
        writeln!(out, "cluster {name} {verb}")?;
    }
    Ok(())
}
