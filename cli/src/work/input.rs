//! Reading what `fleetbus create work -f` is given: multi-document YAML or JSON of plain
//! Kubernetes objects (a `List` is unpacked), or one OCM `ManifestWork` whose spec carries
//! manifests, `deleteOption` and `manifestConfigs`.

use fleetbus_schema::v1::{
    DeleteOption, FeedbackRule, FeedbackType, JsonPath, ManifestConfig, Manifests,
    PropagationPolicy, ResourceIdentifier, UpdateStrategy, UpdateStrategyType,
};
use serde::Deserialize;
use serde_json::Value;

/// The spec parts of a work read from a file.
#[derive(Debug, Default, PartialEq)]
pub struct WorkInput {
    /// Each manifest as JSON.
    pub manifests: Manifests,
    /// `spec.deleteOption`.
    pub delete_option: Option<DeleteOption>,
    /// `spec.manifestConfigs`.
    pub manifest_configs: Vec<ManifestConfig>,
}

/// Parses `text` (named `source` in errors).
pub fn parse(source: &str, text: &str) -> anyhow::Result<WorkInput> {
    let mut input = WorkInput::default();
    let mut objects = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("{source}: document {}: {e}", i + 1))?;
        match &value {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => anyhow::bail!("{source}: document {} is not a Kubernetes object", i + 1),
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        match kind {
            "ManifestWork" => {
                let spec = value.get("spec").cloned().unwrap_or(Value::Null);
                let manifests = spec
                    .pointer("/workload/manifests")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                objects.extend(manifests);
                input.delete_option = delete_option(spec.get("deleteOption"))
                    .map_err(|e| anyhow::anyhow!("{source}: spec.deleteOption: {e}"))?;
                input.manifest_configs = manifest_configs(spec.get("manifestConfigs"))
                    .map_err(|e| anyhow::anyhow!("{source}: spec.manifestConfigs: {e}"))?;
            }
            "List" => objects.extend(
                value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => objects.push(value),
        }
    }
    for (i, object) in objects.iter().enumerate() {
        if object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            anyhow::bail!("{source}: manifest {} has no kind", i + 1);
        }
        input.manifests.objects.push(serde_json::to_vec(object)?);
    }
    if input.manifests.objects.is_empty() {
        anyhow::bail!("{source}: no manifests found");
    }
    Ok(input)
}

fn text(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn identifier(v: &Value) -> ResourceIdentifier {
    ResourceIdentifier {
        group: text(v, "group"),
        resource: text(v, "resource"),
        name: text(v, "name"),
        namespace: text(v, "namespace"),
    }
}

fn delete_option(v: Option<&Value>) -> anyhow::Result<Option<DeleteOption>> {
    let Some(v) = v else { return Ok(None) };
    let policy = match text(v, "propagationPolicy").as_str() {
        "" | "Foreground" => PropagationPolicy::Foreground,
        "Orphan" => PropagationPolicy::Orphan,
        "SelectivelyOrphan" => PropagationPolicy::SelectivelyOrphan,
        other => anyhow::bail!(
            "propagationPolicy {other:?} is not Foreground, Orphan or SelectivelyOrphan"
        ),
    };
    let rules = v
        .pointer("/selectivelyOrphans/orphaningRules")
        .and_then(Value::as_array)
        .map(|rules| rules.iter().map(identifier).collect())
        .unwrap_or_default();
    Ok(Some(DeleteOption {
        propagation_policy: policy as i32,
        orphaning_rules: rules,
    }))
}

fn manifest_configs(v: Option<&Value>) -> anyhow::Result<Vec<ManifestConfig>> {
    let Some(items) = v.and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut configs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let id = item
            .get("resourceIdentifier")
            .map(identifier)
            .unwrap_or_default();
        let strategy = match item.get("updateStrategy") {
            None => None,
            Some(s) => {
                let kind = match text(s, "type").as_str() {
                    "" | "ServerSideApply" => UpdateStrategyType::ServerSideApply,
                    "Update" => UpdateStrategyType::Update,
                    "CreateOnly" => UpdateStrategyType::CreateOnly,
                    "ReadOnly" => UpdateStrategyType::ReadOnly,
                    other => anyhow::bail!(
                        "[{i}].updateStrategy.type {other:?} is not ServerSideApply, Update, CreateOnly or ReadOnly"
                    ),
                };
                let ssa = s.get("serverSideApply").cloned().unwrap_or(Value::Null);
                Some(UpdateStrategy {
                    r#type: kind as i32,
                    field_manager: text(&ssa, "fieldManager"),
                    no_force: ssa.get("force").and_then(Value::as_bool) == Some(false),
                })
            }
        };
        let mut rules = Vec::new();
        for rule in item
            .get("feedbackRules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let kind = match text(&rule, "type").as_str() {
                "WellKnownStatus" => FeedbackType::WellKnownStatus,
                "JSONPaths" => FeedbackType::JsonPaths,
                other => anyhow::bail!(
                    "[{i}].feedbackRules type {other:?} is not WellKnownStatus or JSONPaths"
                ),
            };
            let paths = rule
                .get("jsonPaths")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| JsonPath {
                            name: text(p, "name"),
                            version: text(p, "version"),
                            path: text(p, "path"),
                        })
                        .collect()
                })
                .unwrap_or_default();
            rules.push(FeedbackRule {
                r#type: kind as i32,
                json_paths: paths,
            });
        }
        configs.push(ManifestConfig {
            resource_identifier: Some(id),
            update_strategy: strategy,
            feedback_rules: rules,
        });
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_objects_in_several_documents() {
        let input = parse("f", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: s}}\n").unwrap();
        assert_eq!(input.manifests.objects.len(), 2);
        let second: Value = serde_json::from_slice(&input.manifests.objects[1]).unwrap();
        assert_eq!(second["kind"], "Secret");
    }

    #[test]
    fn a_manifest_work_with_options() {
        let text = r#"
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata: {name: w}
spec:
  workload:
    manifests:
    - {apiVersion: apps/v1, kind: Deployment, metadata: {name: d, namespace: default}}
  deleteOption:
    propagationPolicy: SelectivelyOrphan
    selectivelyOrphans:
      orphaningRules: [{group: apps, resource: deployments, name: d, namespace: default}]
  manifestConfigs:
  - resourceIdentifier: {group: apps, resource: deployments, name: d, namespace: default}
    updateStrategy: {type: ServerSideApply, serverSideApply: {force: false}}
    feedbackRules:
    - type: JSONPaths
      jsonPaths: [{name: ready, path: .readyReplicas}]
"#;
        let input = parse("w.yaml", text).unwrap();
        assert_eq!(input.manifests.objects.len(), 1);
        let d = input.delete_option.unwrap();
        assert_eq!(d.propagation_policy(), PropagationPolicy::SelectivelyOrphan);
        assert_eq!(d.orphaning_rules[0].resource, "deployments");
        let c = &input.manifest_configs[0];
        assert!(c.update_strategy.as_ref().unwrap().no_force);
        assert_eq!(c.feedback_rules[0].json_paths[0].path, ".readyReplicas");
    }

    #[test]
    fn bad_input_names_the_document() {
        let err = parse("f.yaml", "kind: ConfigMap\n---\nkind: [unclosed\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.yaml: document 2:"), "{err}");
        assert!(
            parse("f", "- a\n- b\n")
                .unwrap_err()
                .to_string()
                .contains("not a Kubernetes object")
        );
        assert!(
            parse("f", "")
                .unwrap_err()
                .to_string()
                .contains("no manifests")
        );
        let bad_strategy =
            "kind: ManifestWork\nspec:\n  manifestConfigs:\n  - updateStrategy: {type: Sideways}\n";
        assert!(
            parse("f", bad_strategy)
                .unwrap_err()
                .to_string()
                .contains("Sideways")
        );
    }
}
