//! Work status as OCM reports it, computed from what applying did and what the apiserver holds
//! now: per-manifest `Applied`, `Available`, `StatusFeedbackSynced` and `Degraded` with status
//! feedback values, and the work-level `Applied`, `Available` and `Degraded`.

use fleetbus_schema::conditions::set;
use fleetbus_schema::v1::feedback_value::Value as Fv;
use fleetbus_schema::v1::{
    Condition, ConditionStatus, FeedbackRule, FeedbackType, FeedbackValue, ManifestCondition,
    ResourceMeta,
};
use serde_json::Value;

use super::jsonpath;

/// Longest JSON text a feedback value may carry.
const MAX_RAW: usize = 1024;

/// Why a manifest could not be applied (the apiserver's reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason.
    pub reason: String,
    /// What went wrong, in the apiserver's words when it said something.
    pub message: String,
}

/// The object on the cluster as last read.
#[derive(Debug, Clone)]
pub enum Live {
    /// It exists.
    Present(Value),
    /// It does not exist.
    Absent,
    /// It could not be read.
    Unknown(String),
}

/// The status of one manifest; `previous` keeps transition times.
pub fn manifest(
    meta: ResourceMeta,
    applied: &Result<(), Failure>,
    live: &Live,
    rules: &[FeedbackRule],
    previous: Option<&ManifestCondition>,
    now: i64,
) -> ManifestCondition {
    let mut conditions = previous.map(|p| p.conditions.clone()).unwrap_or_default();
    match applied {
        Ok(()) => set(
            &mut conditions,
            "Applied",
            ConditionStatus::True,
            "AppliedManifestComplete",
            "Apply manifest complete",
            now,
        ),
        Err(f) => set(
            &mut conditions,
            "Applied",
            ConditionStatus::False,
            &f.reason,
            &f.message,
            now,
        ),
    }
    let mut feedback = Vec::new();
    match live {
        Live::Present(object) => {
            set(
                &mut conditions,
                "Available",
                ConditionStatus::True,
                "ResourceAvailable",
                "Resource is available",
                now,
            );
            let (status, reason, message) = degraded(object);
            set(&mut conditions, "Degraded", status, reason, &message, now);
            let empty = Value::Null;
            let object_status = object.get("status").unwrap_or(&empty);
            match collect_feedback(&meta.kind, object_status, rules) {
                Ok(values) if rules.is_empty() => {
                    feedback = values;
                    set(
                        &mut conditions,
                        "StatusFeedbackSynced",
                        ConditionStatus::True,
                        "NoStatusFeedbackSynced",
                        "",
                        now,
                    )
                }
                Ok(values) => {
                    feedback = values;
                    set(
                        &mut conditions,
                        "StatusFeedbackSynced",
                        ConditionStatus::True,
                        "StatusFeedbackSynced",
                        "",
                        now,
                    )
                }
                Err(why) => set(
                    &mut conditions,
                    "StatusFeedbackSynced",
                    ConditionStatus::False,
                    "StatusFeedbackSyncFailed",
                    &why,
                    now,
                ),
            }
        }
        Live::Absent => {
            set(
                &mut conditions,
                "Available",
                ConditionStatus::False,
                "ResourceNotAvailable",
                "Resource is not available",
                now,
            );
            conditions.retain(|c| c.r#type != "Degraded" && c.r#type != "StatusFeedbackSynced");
        }
        Live::Unknown(why) => set(
            &mut conditions,
            "Available",
            ConditionStatus::Unknown,
            "FetchingResourceFailed",
            why,
            now,
        ),
    }
    ManifestCondition {
        resource_meta: Some(meta),
        feedback,
        conditions,
    }
}

/// Whether the object's own conditions say it is failing.
fn degraded(object: &Value) -> (ConditionStatus, &'static str, String) {
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let field = |c: &Value, f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
    for c in &conditions {
        let (kind, status, reason) = (field(c, "type"), field(c, "status"), field(c, "reason"));
        let failing = (matches!(kind.as_str(), "Degraded" | "ReplicaFailure" | "Failed")
            && status == "True")
            || (kind == "Progressing" && status == "False" && reason == "ProgressDeadlineExceeded");
        if failing {
            let message = format!("{kind}: {} {}", reason, field(c, "message"))
                .trim()
                .to_owned();
            return (ConditionStatus::True, "ResourceDegraded", message);
        }
    }
    (ConditionStatus::False, "ResourceNotDegraded", String::new())
}

/// OCM's well-known status paths per kind.
fn well_known(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Deployment" => &[
            ("ReadyReplicas", ".readyReplicas"),
            ("Replicas", ".replicas"),
            ("AvailableReplicas", ".availableReplicas"),
        ],
        "DaemonSet" => &[
            ("NumberReady", ".numberReady"),
            ("DesiredNumberScheduled", ".desiredNumberScheduled"),
            ("NumberAvailable", ".numberAvailable"),
        ],
        "Job" => &[
            (
                "JobComplete",
                r#".conditions[?(@.type=="Complete")].status"#,
            ),
            ("JobSucceeded", ".succeeded"),
        ],
        "Pod" => &[
            ("PodReady", r#".conditions[?(@.type=="Ready")].status"#),
            ("PodPhase", ".phase"),
        ],
        _ => &[],
    }
}

fn collect_feedback(
    kind: &str,
    status: &Value,
    rules: &[FeedbackRule],
) -> Result<Vec<FeedbackValue>, String> {
    let mut values = Vec::new();
    for rule in rules {
        let paths: Vec<(String, String)> = if rule.r#type() == FeedbackType::WellKnownStatus {
            well_known(kind)
                .iter()
                .map(|(n, p)| ((*n).to_owned(), (*p).to_owned()))
                .collect()
        } else {
            rule.json_paths
                .iter()
                .map(|p| (p.name.clone(), p.path.clone()))
                .collect()
        };
        for (name, path) in paths {
            let found = jsonpath::evaluate(status, &path).map_err(|e| e.to_string())?;
            let Some(found) = found else { continue };
            let value = match found {
                Value::Null => continue,
                Value::Bool(b) => Fv::Boolean(*b),
                Value::Number(n) if n.is_i64() => Fv::Integer(n.as_i64().unwrap_or_default()),
                Value::String(s) => Fv::String(s.clone()),
                other => {
                    let raw = other.to_string();
                    if raw.len() > MAX_RAW {
                        return Err(format!(
                            "value of {name} is {} bytes of JSON; at most {MAX_RAW} are reported",
                            raw.len()
                        ));
                    }
                    Fv::JsonRaw(raw)
                }
            };
            values.push(FeedbackValue {
                name,
                value: Some(value),
            });
        }
    }
    Ok(values)
}

fn status_of(m: &ManifestCondition, kind: &str) -> Option<ConditionStatus> {
    m.conditions
        .iter()
        .find(|c| c.r#type == kind)
        .map(|c| c.status())
}

fn describe(m: &ManifestCondition) -> String {
    let meta = m.resource_meta.clone().unwrap_or_default();
    let name = if meta.namespace.is_empty() {
        meta.name
    } else {
        format!("{}/{}", meta.namespace, meta.name)
    };
    format!("manifests[{}] {} {}", meta.ordinal, meta.kind, name)
}

/// Work-level conditions from the manifests; `conditions` holds the previous ones.
pub fn work(conditions: &mut Vec<Condition>, manifests: &[ManifestCondition], now: i64) {
    let total = manifests.len();
    let failed: Vec<String> = manifests
        .iter()
        .filter(|m| status_of(m, "Applied") != Some(ConditionStatus::True))
        .map(|m| {
            let why = m
                .conditions
                .iter()
                .find(|c| c.r#type == "Applied")
                .map(|c| c.message.clone())
                .unwrap_or_default();
            format!("{}: {why}", describe(m))
        })
        .collect();
    if failed.is_empty() {
        set(
            conditions,
            "Applied",
            ConditionStatus::True,
            "AppliedManifestWorkComplete",
            "Apply manifest work complete",
            now,
        );
    } else {
        let message = format!(
            "{} of {total} manifests failed to apply: {}",
            failed.len(),
            failed.join("; ")
        );
        set(
            conditions,
            "Applied",
            ConditionStatus::False,
            "AppliedManifestWorkFailed",
            &message,
            now,
        );
    }
    let available: Vec<_> = manifests
        .iter()
        .map(|m| status_of(m, "Available"))
        .collect();
    let missing = available
        .iter()
        .filter(|s| **s == Some(ConditionStatus::False))
        .count();
    if missing > 0 {
        set(
            conditions,
            "Available",
            ConditionStatus::False,
            "ResourcesNotAvailable",
            &format!("{missing} of {total} resources are not available"),
            now,
        );
    } else if total == 0 || available.iter().any(|s| *s != Some(ConditionStatus::True)) {
        set(
            conditions,
            "Available",
            ConditionStatus::Unknown,
            "ResourcesStatusUnknown",
            "",
            now,
        );
    } else {
        set(
            conditions,
            "Available",
            ConditionStatus::True,
            "ResourcesAvailable",
            "All resources are available",
            now,
        );
    }
    let degraded: Vec<String> = manifests
        .iter()
        .filter(|m| {
            status_of(m, "Degraded") == Some(ConditionStatus::True)
                || status_of(m, "Applied") == Some(ConditionStatus::False)
        })
        .map(describe)
        .collect();
    if degraded.is_empty() {
        set(
            conditions,
            "Degraded",
            ConditionStatus::False,
            "ManifestsHealthy",
            "",
            now,
        );
    } else {
        set(
            conditions,
            "Degraded",
            ConditionStatus::True,
            "ManifestsDegraded",
            &format!(
                "{} of {total} manifests failed or are degraded: {}",
                degraded.len(),
                degraded.join(", ")
            ),
            now,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::v1::JsonPath;
    use serde_json::json;

    fn meta(kind: &str, ordinal: i32) -> ResourceMeta {
        ResourceMeta {
            ordinal,
            kind: kind.into(),
            name: "x".into(),
            ..Default::default()
        }
    }

    fn get<'a>(m: &'a [Condition], kind: &str) -> &'a Condition {
        m.iter().find(|c| c.r#type == kind).unwrap()
    }

    #[test]
    fn feedback_from_json_paths_and_well_known_status() {
        let deployment = json!({"status": {"readyReplicas": 2, "replicas": 3, "observedGeneration": 4, "conditions": [{"type": "Available", "status": "True"}]}});
        let rules = vec![
            FeedbackRule {
                r#type: FeedbackType::WellKnownStatus as i32,
                json_paths: vec![],
            },
            FeedbackRule {
                r#type: FeedbackType::JsonPaths as i32,
                json_paths: vec![
                    JsonPath {
                        name: "available".into(),
                        path: r#".conditions[?(@.type=="Available")].status"#.into(),
                        ..Default::default()
                    },
                    JsonPath {
                        name: "all".into(),
                        path: ".conditions".into(),
                        ..Default::default()
                    },
                    JsonPath {
                        name: "absent".into(),
                        path: ".nothing".into(),
                        ..Default::default()
                    },
                ],
            },
        ];
        let m = manifest(
            meta("Deployment", 0),
            &Ok(()),
            &Live::Present(deployment),
            &rules,
            None,
            1,
        );
        let values: Vec<_> = m
            .feedback
            .iter()
            .map(|f| (f.name.as_str(), f.value.clone().unwrap()))
            .collect();
        assert_eq!(values[0], ("ReadyReplicas", Fv::Integer(2)));
        assert_eq!(values[1], ("Replicas", Fv::Integer(3)));
        assert_eq!(values[2], ("available", Fv::String("True".into())));
        assert!(matches!(&values[3], ("all", Fv::JsonRaw(raw)) if raw.contains("Available")));
        assert_eq!(values.len(), 4, "a missing field yields no value");
        assert_eq!(
            get(&m.conditions, "StatusFeedbackSynced").reason,
            "StatusFeedbackSynced"
        );
    }

    #[test]
    fn conditions_aggregate_like_ocm() {
        let ok = manifest(
            meta("ConfigMap", 0),
            &Ok(()),
            &Live::Present(json!({})),
            &[],
            None,
            1,
        );
        let failure = Failure {
            reason: "AppliedManifestFailed".into(),
            message: "namespaces \"nope\" not found".into(),
        };
        let bad = manifest(
            meta("ConfigMap", 1),
            &Err(failure),
            &Live::Absent,
            &[],
            None,
            1,
        );
        let mut conditions = Vec::new();
        work(&mut conditions, std::slice::from_ref(&ok), 1);
        assert_eq!(get(&conditions, "Applied").status(), ConditionStatus::True);
        assert_eq!(get(&conditions, "Available").reason, "ResourcesAvailable");
        work(&mut conditions, &[ok, bad], 2);
        let applied = get(&conditions, "Applied");
        assert_eq!(
            (applied.status(), applied.last_transition_ms),
            (ConditionStatus::False, 2)
        );
        assert!(
            applied
                .message
                .contains("manifests[1] ConfigMap x: namespaces \"nope\" not found"),
            "{}",
            applied.message
        );
        assert_eq!(
            get(&conditions, "Available").message,
            "1 of 2 resources are not available"
        );
        assert_eq!(get(&conditions, "Degraded").status(), ConditionStatus::True);
    }

    #[test]
    fn a_deployment_past_its_deadline_is_degraded() {
        let object = json!({"status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]}});
        let m = manifest(
            meta("Deployment", 0),
            &Ok(()),
            &Live::Present(object),
            &[],
            None,
            1,
        );
        let d = get(&m.conditions, "Degraded");
        assert_eq!(
            (d.status(), d.message.as_str()),
            (
                ConditionStatus::True,
                "Progressing: ProgressDeadlineExceeded too slow"
            )
        );
    }
}
