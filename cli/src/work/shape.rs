//! Works as OCM prints them: `ManifestWork` objects of `work.open-cluster-management.io/v1`
//! with spec, conditions and `resourceStatus`.

use fleetbus_schema::v1::feedback_value::Value as Fv;
use fleetbus_schema::v1::{
    FeedbackType, ManifestWork, PropagationPolicy, ResourceIdentifier, UpdateStrategyType,
};
use serde_json::{Value, json};

use crate::output::{condition, timestamp};

fn identifier(id: &ResourceIdentifier) -> Value {
    json!({"group": id.group, "resource": id.resource, "name": id.name, "namespace": id.namespace})
}

/// One work.
pub fn work(w: &ManifestWork) -> Value {
    let status = w.status.clone().unwrap_or_default();
    let manifests: Option<Vec<Value>> = w.manifests.as_ref().map(|m| {
        m.objects
            .iter()
            .map(|raw| serde_json::from_slice(raw).unwrap_or(Value::Null))
            .collect()
    });
    let delete_option = w.delete_option.as_ref().map(|d| {
        let policy = match d.propagation_policy() {
            PropagationPolicy::Foreground => "Foreground",
            PropagationPolicy::Orphan => "Orphan",
            PropagationPolicy::SelectivelyOrphan => "SelectivelyOrphan",
        };
        json!({
            "propagationPolicy": policy,
            "selectivelyOrphans": (!d.orphaning_rules.is_empty()).then(|| json!({
                "orphaningRules": d.orphaning_rules.iter().map(identifier).collect::<Vec<_>>()
            })),
        })
    });
    let configs: Vec<Value> = w
        .manifest_configs
        .iter()
        .map(|c| {
            let strategy = c.update_strategy.as_ref().map(|s| {
                let kind = match s.r#type() {
                    UpdateStrategyType::ServerSideApply => "ServerSideApply",
                    UpdateStrategyType::Update => "Update",
                    UpdateStrategyType::CreateOnly => "CreateOnly",
                    UpdateStrategyType::ReadOnly => "ReadOnly",
                };
                json!({"type": kind, "serverSideApply": (s.r#type() == UpdateStrategyType::ServerSideApply).then(|| json!({
                    "fieldManager": if s.field_manager.is_empty() { "fleetbus" } else { &s.field_manager },
                    "force": !s.no_force,
                }))})
            });
            let rules: Vec<Value> = c
                .feedback_rules
                .iter()
                .map(|r| match r.r#type() {
                    FeedbackType::WellKnownStatus => json!({"type": "WellKnownStatus"}),
                    FeedbackType::JsonPaths => json!({"type": "JSONPaths", "jsonPaths": r.json_paths.iter().map(|p| json!({"name": p.name, "path": p.path})).collect::<Vec<_>>()}),
                })
                .collect();
            json!({
                "resourceIdentifier": c.resource_identifier.as_ref().map(identifier),
                "updateStrategy": strategy,
                "feedbackRules": (!rules.is_empty()).then_some(rules),
            })
        })
        .collect();
    let resource_status: Vec<Value> = status
        .manifests
        .iter()
        .map(|m| {
            let meta = m.resource_meta.clone().unwrap_or_default();
            let values: Vec<Value> = m
                .feedback
                .iter()
                .map(|f| {
                    let field = match &f.value {
                        Some(Fv::Integer(i)) => json!({"type": "Integer", "integer": i}),
                        Some(Fv::String(s)) => json!({"type": "String", "string": s}),
                        Some(Fv::Boolean(b)) => json!({"type": "Boolean", "boolean": b}),
                        Some(Fv::JsonRaw(r)) => json!({"type": "JsonRaw", "jsonRaw": r}),
                        None => Value::Null,
                    };
                    json!({"name": f.name, "fieldValue": field})
                })
                .collect();
            json!({
                "resourceMeta": {
                    "ordinal": meta.ordinal, "group": meta.group, "version": meta.version,
                    "kind": meta.kind, "resource": meta.resource, "name": meta.name,
                    "namespace": meta.namespace,
                },
                "statusFeedback": (!values.is_empty()).then(|| json!({"values": values})),
                "conditions": m.conditions.iter().map(condition).collect::<Vec<_>>(),
            })
        })
        .collect();
    let conditions: Vec<Value> = status
        .conditions
        .iter()
        .map(|c| {
            let mut v = condition(c);
            v["observedGeneration"] = json!(status.observed_generation);
            v
        })
        .collect();
    json!({
        "apiVersion": "work.open-cluster-management.io/v1",
        "kind": "ManifestWork",
        "metadata": {
            "name": w.name,
            "namespace": w.cluster,
            "labels": (!w.work_set.is_empty()).then(|| json!({
                "work.open-cluster-management.io/manifestworkreplicaset": w.work_set,
                "work.open-cluster-management.io/placementname": w.placement,
            })),
            "generation": w.generation,
            "creationTimestamp": timestamp(w.created_ms),
            "deletionTimestamp": timestamp(w.deletion_ms),
        },
        "spec": {
            "workload": {
                "manifests": manifests,
                "manifestCount": w.manifest_count,
                "manifestsSizeBytes": w.manifests_size,
            },
            "deleteOption": delete_option,
            "manifestConfigs": (!configs.is_empty()).then_some(configs),
        },
        "status": {
            "conditions": conditions,
            "resourceStatus": {"manifests": resource_status},
            "lastReportTime": timestamp(status.reported_ms),
        },
    })
}

/// Several works as a `List`.
pub fn list(items: &[ManifestWork]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items.iter().map(work).collect::<Vec<_>>()})
}
