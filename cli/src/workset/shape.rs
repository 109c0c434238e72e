//! ManifestWorkReplicaSets as OCM prints them (`work.open-cluster-management.io/v1alpha1`):
//! the template as a ManifestWork spec, placement refs with their rollout strategies, and the
//! status (summary, placementSummary, conditions), plus the rollout per cluster when the hub
//! sent it.

use fleetbus_schema::v1::{RolloutStrategy, RolloutType, WorkSet, WorkSetSummary};
use serde_json::{Value, json};

use crate::output::{condition, timestamp};

fn duration(ms: i64) -> Value {
    if ms <= 0 {
        return json!("None");
    }
    json!(humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string())
}

/// A rollout strategy with OCM's field names.
pub fn strategy(s: &RolloutStrategy) -> Value {
    let mut config = json!({
        "progressDeadline": duration(s.progress_deadline_ms),
        "minSuccessTime": humantime::format_duration(std::time::Duration::from_millis(s.min_success_time_ms.max(0) as u64)).to_string(),
        "maxFailures": if s.max_failures.is_empty() { "0" } else { &s.max_failures },
    });
    let groups: Vec<Value> = s
        .mandatory_decision_groups
        .iter()
        .map(|g| match g.group_index {
            Some(i) => json!({"groupIndex": i}),
            None => json!({"groupName": g.group_name}),
        })
        .collect();
    let kind = match s.r#type() {
        RolloutType::All => "All",
        RolloutType::Progressive => "Progressive",
        RolloutType::ProgressivePerGroup => "ProgressivePerGroup",
    };
    if s.r#type() != RolloutType::All && !groups.is_empty() {
        config["mandatoryDecisionGroups"] = json!(groups);
    }
    if s.r#type() == RolloutType::Progressive && !s.max_concurrency.is_empty() {
        config["maxConcurrency"] = json!(s.max_concurrency);
    }
    let key = match s.r#type() {
        RolloutType::All => "all",
        RolloutType::Progressive => "progressive",
        RolloutType::ProgressivePerGroup => "progressivePerGroup",
    };
    let mut v = json!({"type": kind});
    v[key] = config;
    v
}

fn summary(s: &WorkSetSummary) -> Value {
    json!({
        "total": s.total, "applied": s.applied, "available": s.available,
        "degraded": s.degraded, "progressing": s.progressing,
        "desiredTotal": s.desired_total, "updated": s.updated, "failed": s.failed,
    })
}

/// One ManifestWorkReplicaSet.
pub fn work_set(set: &WorkSet) -> Value {
    let template = set.template.clone().unwrap_or_default();
    let spec = crate::work::shape::work(&template)["spec"].clone();
    let refs: Vec<Value> = set
        .placement_refs
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "rolloutStrategy": strategy(&r.rollout_strategy.clone().unwrap_or_default()),
            })
        })
        .collect();
    let status = set.status.clone().unwrap_or_default();
    let placement_summary: Vec<Value> = status
        .placement_summary
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "availableDecisionGroups": p.available_decision_groups,
                "summary": summary(&p.summary.unwrap_or_default()),
            })
        })
        .collect();
    let mut out = json!({
        "apiVersion": "work.open-cluster-management.io/v1alpha1",
        "kind": "ManifestWorkReplicaSet",
        "metadata": {
            "name": set.name,
            "generation": set.generation,
            "creationTimestamp": timestamp(set.created_ms),
            "deletionTimestamp": timestamp(set.deletion_ms),
        },
        "spec": {
            "manifestWorkTemplate": spec,
            "placementRefs": refs,
            "cascadeDeletionPolicy": "Background",
        },
        "status": {
            "observedGeneration": status.observed_generation,
            "summary": summary(&status.summary.unwrap_or_default()),
            "placementSummary": placement_summary,
            "conditions": status.conditions.iter().map(condition).collect::<Vec<_>>(),
        },
    });
    if !set.clusters.is_empty() {
        out["status"]["clusters"] = set
            .clusters
            .iter()
            .map(|c| {
                json!({
                    "cluster": c.cluster, "placement": c.placement, "decisionGroupIndex": c.group_index,
                    "status": c.status, "generation": c.generation,
                    "lastTransitionTime": timestamp(c.released_ms), "message": c.message,
                })
            })
            .collect();
    }
    out
}
