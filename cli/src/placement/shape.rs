//! Placements and cluster sets as OCM prints them (`cluster.open-cluster-management.io`
//! v1beta1 Placement, v1beta2 ManagedClusterSet).

use fleetbus_schema::v1::{ClusterSet, LabelSelector, Placement};
use serde_json::{Value, json};

use crate::output::{condition, timestamp};

/// Several objects as a `List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// A label selector, with empty parts left out.
pub fn selector(s: &LabelSelector) -> Value {
    let mut v = json!({});
    if !s.match_labels.is_empty() {
        let labels: std::collections::BTreeMap<_, _> = s.match_labels.iter().collect();
        v["matchLabels"] = json!(labels);
    }
    if !s.match_expressions.is_empty() {
        v["matchExpressions"] = s
            .match_expressions
            .iter()
            .map(|r| {
                let mut e = json!({"key": r.key, "operator": r.operator});
                if !r.values.is_empty() {
                    e["values"] = json!(r.values);
                }
                e
            })
            .collect();
    }
    v
}

/// One Placement with its status (decision groups list their clusters when the hub sent them).
pub fn placement(p: &Placement) -> Value {
    let predicates: Vec<Value> = p
        .predicates
        .iter()
        .map(|pr| {
            let s = pr.required_cluster_selector.clone().unwrap_or_default();
            let mut required = json!({});
            if let Some(l) = &s.label_selector {
                required["labelSelector"] = selector(l);
            }
            if let Some(c) = &s.claim_selector {
                required["claimSelector"] = selector(c);
            }
            json!({"requiredClusterSelector": required})
        })
        .collect();
    let tolerations: Vec<Value> = p
        .tolerations
        .iter()
        .map(|t| {
            json!({
                "key": t.key,
                "operator": if t.operator.is_empty() { "Equal" } else { &t.operator },
                "value": (!t.value.is_empty()).then_some(&t.value),
                "effect": (!t.effect.is_empty()).then_some(&t.effect),
                "tolerationSeconds": t.toleration_seconds,
            })
        })
        .collect();
    let mut spec = json!({
        "clusterSets": p.cluster_sets,
        "predicates": predicates,
        "tolerations": tolerations,
    });
    if let Some(n) = p.number_of_clusters {
        spec["numberOfClusters"] = json!(n);
    }
    if let Some(g) = &p.group_strategy {
        let groups: Vec<Value> = g
            .decision_groups
            .iter()
            .map(|d| {
                json!({
                    "groupName": d.group_name,
                    "groupClusterSelector": selector(&d.group_cluster_selector.clone().unwrap_or_default()),
                })
            })
            .collect();
        let per = if g.clusters_per_decision_group.is_empty() {
            "100%"
        } else {
            g.clusters_per_decision_group.as_str()
        };
        spec["decisionStrategy"] = json!({"groupStrategy": {
            "clustersPerDecisionGroup": per,
            "decisionGroups": groups,
        }});
    }
    let status = p.status.clone().unwrap_or_default();
    let groups: Vec<Value> = status
        .decision_groups
        .iter()
        .map(|g| {
            let mut v = json!({
                "decisionGroupIndex": g.index,
                "decisionGroupName": g.name,
                "clustersCount": g.clusters_count,
            });
            if !g.clusters.is_empty() {
                v["clusters"] = json!(g.clusters);
            }
            v
        })
        .collect();
    json!({
        "apiVersion": "cluster.open-cluster-management.io/v1beta1",
        "kind": "Placement",
        "metadata": {
            "name": p.name,
            "generation": p.generation,
            "creationTimestamp": timestamp(p.created_ms),
        },
        "spec": spec,
        "status": {
            "numberOfSelectedClusters": status.number_of_selected_clusters,
            "decisionGroups": groups,
            "conditions": status.conditions.iter().map(condition).collect::<Vec<_>>(),
        },
    })
}

/// One ManagedClusterSet.
pub fn cluster_set(s: &ClusterSet) -> Value {
    let (status, reason) = if s.cluster_count == 0 {
        ("True", "NoClusterMatched")
    } else {
        ("False", "ClustersSelected")
    };
    json!({
        "apiVersion": "cluster.open-cluster-management.io/v1beta2",
        "kind": "ManagedClusterSet",
        "metadata": {"name": s.name, "creationTimestamp": timestamp(s.created_ms)},
        "spec": {"clusterSelector": {"selectorType": "ExclusiveClusterSetLabel"}},
        "status": {"conditions": [{
            "type": "ClusterSetEmpty",
            "status": status,
            "reason": reason,
            "message": format!("{} ManagedClusters selected", s.cluster_count),
        }]},
    })
}
