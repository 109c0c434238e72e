//! Reading a Placement: an OCM `Placement` document (cluster v1beta1), or flags with
//! kubectl-style selectors (`env=prod,tier in (a,b),!legacy`). The hub checks keys, values and
//! operators again; here the shapes are read and a wrong one is one clear line.

use std::collections::HashMap;

use anyhow::{Context, bail};
use fleetbus_schema::v1::{
    ClusterPredicate, ClusterSelector, DecisionGroupSpec, GroupStrategy, LabelSelector,
    LabelSelectorRequirement, Placement, Toleration,
};
use serde::Deserialize;
use serde_json::Value;

/// A number or a string (`3`, `"25%"`), as the text the hub parses.
pub fn int_or_string(v: &Value) -> anyhow::Result<String> {
    match v {
        Value::Number(n) => Ok(n.to_string()),
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => bail!("{other} is not a number or a percentage"),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Selector {
    #[serde(default)]
    match_labels: HashMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<Requirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(default)]
    values: Vec<String>,
}

impl From<Selector> for LabelSelector {
    fn from(s: Selector) -> Self {
        LabelSelector {
            match_labels: s.match_labels,
            match_expressions: s
                .match_expressions
                .into_iter()
                .map(|r| LabelSelectorRequirement {
                    key: r.key,
                    operator: r.operator,
                    values: r.values,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Required {
    label_selector: Option<Selector>,
    claim_selector: Option<Selector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Predicate {
    required_cluster_selector: Required,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TolerationDoc {
    #[serde(default)]
    key: String,
    #[serde(default)]
    operator: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    effect: String,
    toleration_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupDoc {
    group_name: String,
    group_cluster_selector: Option<Selector>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupStrategyDoc {
    #[serde(default)]
    decision_groups: Vec<GroupDoc>,
    clusters_per_decision_group: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DecisionStrategyDoc {
    group_strategy: Option<GroupStrategyDoc>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecDoc {
    #[serde(default)]
    cluster_sets: Vec<String>,
    number_of_clusters: Option<i32>,
    #[serde(default)]
    predicates: Vec<Predicate>,
    #[serde(default)]
    tolerations: Vec<TolerationDoc>,
    decision_strategy: Option<DecisionStrategyDoc>,
}

/// Reads one OCM Placement document named `name` (the file's name must agree).
pub fn parse_document(source: &str, text: &str, name: &str) -> anyhow::Result<Placement> {
    let doc: Value = serde_yaml::from_str(text).with_context(|| source.to_owned())?;
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "Placement" {
        bail!("{source}: kind is {kind:?}, not Placement");
    }
    if let Some(named) = doc.pointer("/metadata/name").and_then(Value::as_str)
        && named != name
    {
        bail!("{source} describes placement {named}, not {name}");
    }
    let spec: SpecDoc = match doc.get("spec") {
        None | Some(Value::Null) => SpecDoc::default(),
        Some(spec) => serde_json::from_value(spec.clone())
            .map_err(|e| anyhow::anyhow!("{source}: spec: {e}"))?,
    };
    let groups = spec
        .decision_strategy
        .and_then(|d| d.group_strategy)
        .map(|g| -> anyhow::Result<GroupStrategy> {
            Ok(GroupStrategy {
                decision_groups: g
                    .decision_groups
                    .into_iter()
                    .map(|d| DecisionGroupSpec {
                        group_name: d.group_name,
                        group_cluster_selector: d.group_cluster_selector.map(Into::into),
                    })
                    .collect(),
                clusters_per_decision_group: int_or_string(
                    &g.clusters_per_decision_group.unwrap_or(Value::Null),
                )
                .map_err(|e| anyhow::anyhow!("{source}: clustersPerDecisionGroup {e}"))?,
            })
        })
        .transpose()?;
    Ok(Placement {
        name: name.to_owned(),
        cluster_sets: spec.cluster_sets,
        number_of_clusters: spec.number_of_clusters,
        predicates: spec
            .predicates
            .into_iter()
            .map(|p| ClusterPredicate {
                required_cluster_selector: Some(ClusterSelector {
                    label_selector: p.required_cluster_selector.label_selector.map(Into::into),
                    claim_selector: p.required_cluster_selector.claim_selector.map(Into::into),
                }),
            })
            .collect(),
        tolerations: spec
            .tolerations
            .into_iter()
            .map(|t| Toleration {
                key: t.key,
                operator: t.operator,
                value: t.value,
                effect: t.effect,
                toleration_seconds: t.toleration_seconds,
            })
            .collect(),
        group_strategy: groups,
        ..Default::default()
    })
}

/// A kubectl-style selector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`,
/// separated by commas.
pub fn parse_selector(text: &str) -> anyhow::Result<LabelSelector> {
    let fail = |why: &str| anyhow::anyhow!("invalid selector {text:?}: {why}");
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(fail("unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(fail("unbalanced parentheses"));
    }
    parts.push(&text[start..]);
    let mut selector = LabelSelector::default();
    for part in parts.into_iter().map(str::trim) {
        if part.is_empty() {
            return Err(fail("empty requirement"));
        }
        let requirement =
            |key: &str, operator: &str, values: Vec<String>| LabelSelectorRequirement {
                key: key.trim().to_owned(),
                operator: operator.into(),
                values,
            };
        if let Some(key) = part.strip_prefix('!') {
            selector
                .match_expressions
                .push(requirement(key, "DoesNotExist", vec![]));
        } else if let Some((key, value)) = part.split_once("!=") {
            selector.match_expressions.push(requirement(
                key,
                "NotIn",
                vec![value.trim().to_owned()],
            ));
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            selector
                .match_labels
                .insert(key.trim().to_owned(), value.trim().to_owned());
        } else if let Some((key, operator, values)) = set_requirement(part) {
            let values = values.ok_or_else(|| {
                fail("the values of in/notin go in parentheses, e.g. env in (a,b)")
            })?;
            selector
                .match_expressions
                .push(requirement(key, operator, values));
        } else if part.contains(char::is_whitespace) || part.contains(['(', ')']) {
            return Err(fail(&format!("cannot read {part:?}")));
        } else {
            selector
                .match_expressions
                .push(requirement(part, "Exists", vec![]));
        }
    }
    Ok(selector)
}

/// `key in (a,b)` / `key notin (a,b)`: the key, the operator, and the values (None when they
/// are not in parentheses).
fn set_requirement(part: &str) -> Option<(&str, &'static str, Option<Vec<String>>)> {
    for (word, operator) in [(" notin ", "NotIn"), (" in ", "In")] {
        if let Some((key, rest)) = part.split_once(word) {
            let values = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .map(|inner| {
                    inner
                        .split(',')
                        .map(|v| v.trim().to_owned())
                        .filter(|v| !v.is_empty())
                        .collect()
                });
            return Some((key, operator, values));
        }
    }
    None
}

/// `--toleration KEY[=VALUE][:EFFECT]` (no value: operator Exists).
pub fn parse_toleration(text: &str) -> anyhow::Result<Toleration> {
    let (rest, effect) = match text.rsplit_once(':') {
        Some((rest, effect)) => (rest, effect.to_owned()),
        None => (text, String::new()),
    };
    let (key, value, operator) = match rest.split_once('=') {
        Some((k, v)) => (k, v.to_owned(), "Equal"),
        None => (rest, String::new(), "Exists"),
    };
    if key.is_empty() {
        bail!("invalid toleration {text:?}: expected KEY[=VALUE][:EFFECT]");
    }
    Ok(Toleration {
        key: key.to_owned(),
        operator: operator.into(),
        value,
        effect,
        toleration_seconds: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_read_like_kubectl() {
        let s = parse_selector("env=prod, tier in (a, b),zone!=x,legacy,!old,app==web").unwrap();
        assert_eq!(s.match_labels["env"], "prod");
        assert_eq!(s.match_labels["app"], "web");
        let ops: Vec<(&str, &str, Vec<&str>)> = s
            .match_expressions
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.operator.as_str(),
                    r.values.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            ops,
            [
                ("tier", "In", vec!["a", "b"]),
                ("zone", "NotIn", vec!["x"]),
                ("legacy", "Exists", vec![]),
                ("old", "DoesNotExist", vec![]),
            ]
        );
    }

    #[test]
    fn bad_selectors_are_one_line() {
        for (text, why) in [
            ("env in prod", "go in parentheses"),
            ("env in (a", "unbalanced"),
            ("a=b,,c", "empty requirement"),
            ("env prod", "cannot read"),
        ] {
            let err = parse_selector(text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid selector {text:?}")),
                "{err}"
            );
            assert!(err.contains(why), "{err}");
            assert!(!err.contains('\n'));
        }
    }

    #[test]
    fn an_ocm_placement_document() {
        let text = r#"
apiVersion: cluster.open-cluster-management.io/v1beta1
kind: Placement
metadata: {name: web, namespace: default}
spec:
  clusterSets: [prod]
  numberOfClusters: 2
  predicates:
  - requiredClusterSelector:
      labelSelector:
        matchLabels: {env: prod}
        matchExpressions: [{key: zone, operator: In, values: [a, b]}]
      claimSelector:
        matchExpressions: [{key: kubeversion.open-cluster-management.io, operator: Exists}]
  tolerations:
  - {key: cluster.open-cluster-management.io/unreachable, operator: Exists, tolerationSeconds: 60}
  decisionStrategy:
    groupStrategy:
      clustersPerDecisionGroup: 25%
      decisionGroups: [{groupName: canary, groupClusterSelector: {matchLabels: {tier: canary}}}]
"#;
        let p = parse_document("p.yaml", text, "web").unwrap();
        assert_eq!(p.cluster_sets, ["prod"]);
        assert_eq!(p.number_of_clusters, Some(2));
        let s = p.predicates[0].required_cluster_selector.clone().unwrap();
        assert_eq!(
            s.label_selector.unwrap().match_expressions[0].values,
            ["a", "b"]
        );
        assert_eq!(
            s.claim_selector.unwrap().match_expressions[0].operator,
            "Exists"
        );
        assert_eq!(p.tolerations[0].toleration_seconds, Some(60));
        let g = p.group_strategy.unwrap();
        assert_eq!(g.clusters_per_decision_group, "25%");
        assert_eq!(g.decision_groups[0].group_name, "canary");
        assert!(
            parse_document("p.yaml", text, "other")
                .unwrap_err()
                .to_string()
                .contains("describes placement web, not other")
        );
        let unsupported = "kind: Placement\nspec:\n  prioritizerPolicy: {mode: Additive}\n";
        let err = parse_document("p.yaml", unsupported, "web")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `prioritizerPolicy`"), "{err}");
    }

    #[test]
    fn tolerations_from_flags() {
        let t = parse_toleration("cluster.open-cluster-management.io/unreachable").unwrap();
        assert_eq!((t.operator.as_str(), t.effect.as_str()), ("Exists", ""));
        let t = parse_toleration("k=v:NoSelect").unwrap();
        assert_eq!(
            (
                t.key.as_str(),
                t.value.as_str(),
                t.operator.as_str(),
                t.effect.as_str()
            ),
            ("k", "v", "Equal", "NoSelect")
        );
        assert!(parse_toleration("=v").is_err());
    }
}
