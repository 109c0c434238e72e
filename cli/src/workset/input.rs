//! Reading what `fleetbus create work NAME --placement P -f FILE` is given: the same objects
//! or ManifestWork as `create work --cluster`, with the rollout from flags, or one OCM
//! `ManifestWorkReplicaSet` document (`spec.manifestWorkTemplate`, `spec.placementRefs` with
//! their `rolloutStrategy`).

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use fleetbus_schema::v1::{
    MandatoryDecisionGroup, RolloutStrategy, RolloutType, WorkSetPlacementRef,
};
use serde::Deserialize;
use serde_json::Value;

use crate::placement::input::int_or_string;
use crate::work::input::{self, WorkInput};

/// How a ManifestWorkReplicaSet rolls out, from flags (OCM's RolloutStrategy).
#[derive(Debug, Clone, Default, Args)]
pub struct RolloutFlags {
    /// Rollout type: All (default), Progressive or ProgressivePerGroup.
    #[arg(long, requires = "placement", value_parser = ["All", "Progressive", "ProgressivePerGroup"])]
    pub rollout: Option<String>,
    /// Progressive: clusters in flight at once, a number or a percentage (default: the
    /// placement's clustersPerDecisionGroup).
    #[arg(long, requires = "placement")]
    pub max_concurrency: Option<String>,
    /// Failed clusters tolerated before the rollout stops, a number or a percentage (default 0).
    #[arg(long, requires = "placement")]
    pub max_failures: Option<String>,
    /// A cluster still progressing after this long counts as failed (default: none).
    #[arg(long, requires = "placement", value_parser = humantime::parse_duration)]
    pub progress_deadline: Option<Duration>,
    /// How long a cluster must stay successful before the rollout moves on.
    #[arg(long, requires = "placement", value_parser = humantime::parse_duration)]
    pub min_success_time: Option<Duration>,
    /// A decision group (name, or index) to roll out first, tolerating no failure (repeatable).
    #[arg(long = "mandatory-group", requires = "placement")]
    pub mandatory_groups: Vec<String>,
}

impl RolloutFlags {
    fn given(&self) -> bool {
        self.rollout.is_some()
            || self.max_concurrency.is_some()
            || self.max_failures.is_some()
            || self.progress_deadline.is_some()
            || self.min_success_time.is_some()
            || !self.mandatory_groups.is_empty()
    }

    /// The strategy these flags describe (`--max-concurrency` alone means Progressive).
    pub fn strategy(&self) -> RolloutStrategy {
        let kind = match self.rollout.as_deref() {
            Some("Progressive") => RolloutType::Progressive,
            Some("ProgressivePerGroup") => RolloutType::ProgressivePerGroup,
            Some(_) => RolloutType::All,
            None if self.max_concurrency.is_some() => RolloutType::Progressive,
            None => RolloutType::All,
        };
        let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis() as i64);
        RolloutStrategy {
            r#type: kind as i32,
            max_concurrency: self.max_concurrency.clone().unwrap_or_default(),
            mandatory_decision_groups: self.mandatory_groups.iter().map(|g| mandatory(g)).collect(),
            progress_deadline_ms: ms(self.progress_deadline),
            max_failures: self.max_failures.clone().unwrap_or_default(),
            min_success_time_ms: ms(self.min_success_time),
        }
    }
}

fn mandatory(group: &str) -> MandatoryDecisionGroup {
    match group.parse::<i32>() {
        Ok(index) => MandatoryDecisionGroup {
            group_name: String::new(),
            group_index: Some(index),
        },
        Err(_) => MandatoryDecisionGroup {
            group_name: group.to_owned(),
            group_index: None,
        },
    }
}

/// A ManifestWorkReplicaSet read from a file.
#[derive(Debug, Default)]
pub struct WorkSetInput {
    /// The template's manifests and options.
    pub template: WorkInput,
    /// Its placements with their rollout strategies.
    pub refs: Vec<WorkSetPlacementRef>,
}

/// Reads `text` for work set `name`; `placement` is `--placement`.
pub fn parse(
    source: &str,
    text: &str,
    name: &str,
    placement: Option<&str>,
    flags: &RolloutFlags,
) -> anyhow::Result<WorkSetInput> {
    let mut documents = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("{source}: document {}: {e}", i + 1))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    let is_set =
        |v: &Value| v.get("kind").and_then(Value::as_str) == Some("ManifestWorkReplicaSet");
    let Some(doc) = documents.iter().find(|d| is_set(d)) else {
        let Some(placement) = placement else {
            bail!("name a placement with --placement (or a cluster with --cluster)");
        };
        return Ok(WorkSetInput {
            template: input::parse(source, text)?,
            refs: vec![WorkSetPlacementRef {
                name: placement.to_owned(),
                rollout_strategy: Some(flags.strategy()),
            }],
        });
    };
    if documents.len() > 1 {
        bail!("{source}: a ManifestWorkReplicaSet must be the only document in the file");
    }
    if let Some(named) = doc.pointer("/metadata/name").and_then(Value::as_str)
        && named != name
    {
        bail!("{source} describes ManifestWorkReplicaSet {named}, not {name}");
    }
    let template = doc
        .pointer("/spec/manifestWorkTemplate")
        .cloned()
        .unwrap_or(Value::Null);
    let wrapped = serde_json::json!({"kind": "ManifestWork", "spec": template}).to_string();
    let template = input::parse(source, &wrapped)?;
    let mut refs = Vec::new();
    let listed = doc
        .pointer("/spec/placementRefs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, r) in listed.iter().enumerate() {
        let at = format!("{source}: spec.placementRefs[{i}]");
        let ref_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        if ref_name.is_empty() {
            bail!("{at}: name is required");
        }
        let strategy = match r.get("rolloutStrategy") {
            Some(s) => strategy(s).with_context(|| format!("{at}.rolloutStrategy"))?,
            None => RolloutStrategy::default(),
        };
        refs.push(WorkSetPlacementRef {
            name: ref_name.to_owned(),
            rollout_strategy: Some(strategy),
        });
    }
    match placement {
        _ if !refs.is_empty() && flags.given() => {
            bail!(
                "{source} sets placementRefs with their rollout; drop the rollout flags or edit the file"
            )
        }
        Some(p) if refs.is_empty() => refs.push(WorkSetPlacementRef {
            name: p.to_owned(),
            rollout_strategy: Some(flags.strategy()),
        }),
        Some(p) if !refs.iter().any(|r| r.name == p) => {
            bail!("{source} has no placementRef named {p}")
        }
        None if refs.is_empty() => {
            bail!("{source}: spec.placementRefs is empty; name a placement with --placement")
        }
        _ => {}
    }
    Ok(WorkSetInput { template, refs })
}

/// A duration as OCM writes it (`90m`, `1h30m`, `None`).
fn duration(v: Option<&Value>, what: &str) -> anyhow::Result<i64> {
    match v.and_then(Value::as_str) {
        None | Some("") | Some("None") => Ok(0),
        Some(text) => humantime::parse_duration(text)
            .map(|d| d.as_millis() as i64)
            .map_err(|e| anyhow::anyhow!("{what} {text:?}: {e}")),
    }
}

fn strategy(v: &Value) -> anyhow::Result<RolloutStrategy> {
    let (kind, key) = match v.get("type").and_then(Value::as_str).unwrap_or("All") {
        "All" => (RolloutType::All, "all"),
        "Progressive" => (RolloutType::Progressive, "progressive"),
        "ProgressivePerGroup" => (RolloutType::ProgressivePerGroup, "progressivePerGroup"),
        other => bail!("type {other:?} is not All, Progressive or ProgressivePerGroup"),
    };
    let empty = Value::Null;
    let config = v.get(key).unwrap_or(&empty);
    let field = |name: &str| -> anyhow::Result<String> {
        int_or_string(config.get(name).unwrap_or(&empty))
            .map_err(|e| anyhow::anyhow!("{key}.{name} {e}"))
    };
    let mut groups = Vec::new();
    for g in config
        .get("mandatoryDecisionGroups")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        groups.push(MandatoryDecisionGroup {
            group_name: g
                .get("groupName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            group_index: g
                .get("groupIndex")
                .and_then(Value::as_i64)
                .map(|i| i32::try_from(i).unwrap_or(-1)),
        });
    }
    Ok(RolloutStrategy {
        r#type: kind as i32,
        max_concurrency: field("maxConcurrency")?,
        mandatory_decision_groups: groups,
        progress_deadline_ms: duration(config.get("progressDeadline"), "progressDeadline")?,
        max_failures: field("maxFailures")?,
        min_success_time_ms: duration(config.get("minSuccessTime"), "minSuccessTime")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"
apiVersion: work.open-cluster-management.io/v1alpha1
kind: ManifestWorkReplicaSet
metadata: {name: web, namespace: default}
spec:
  manifestWorkTemplate:
    deleteOption: {propagationPolicy: Orphan}
    workload:
      manifests:
      - {apiVersion: v1, kind: ConfigMap, metadata: {name: web, namespace: default}, data: {k: v}}
  placementRefs:
  - name: canary
    rolloutStrategy:
      type: Progressive
      progressive:
        maxConcurrency: 25%
        maxFailures: 1
        progressDeadline: 1h30m
        minSuccessTime: 30s
        mandatoryDecisionGroups: [{groupName: first}, {groupIndex: 2}]
  - name: rest
"#;

    #[test]
    fn an_ocm_manifest_work_replica_set() {
        let set = parse("s.yaml", SET, "web", None, &RolloutFlags::default()).unwrap();
        assert_eq!(set.template.manifests.objects.len(), 1);
        assert!(set.template.delete_option.is_some());
        assert_eq!(set.refs.len(), 2);
        let s = set.refs[0].rollout_strategy.clone().unwrap();
        assert_eq!(s.r#type(), RolloutType::Progressive);
        assert_eq!(
            (s.max_concurrency.as_str(), s.max_failures.as_str()),
            ("25%", "1")
        );
        assert_eq!(s.progress_deadline_ms, 5_400_000);
        assert_eq!(s.min_success_time_ms, 30_000);
        assert_eq!(s.mandatory_decision_groups[1].group_index, Some(2));
        assert_eq!(
            set.refs[1].rollout_strategy.clone().unwrap().r#type(),
            RolloutType::All
        );
        let err = |p: Option<&str>, flags: &RolloutFlags| {
            parse("s.yaml", SET, "web", p, flags)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(Some("other"), &RolloutFlags::default()).contains("no placementRef named other")
        );
        let flags = RolloutFlags {
            rollout: Some("All".into()),
            ..Default::default()
        };
        assert!(err(Some("canary"), &flags).contains("drop the rollout flags"));
        assert!(parse("s.yaml", SET, "api", None, &RolloutFlags::default()).is_err());
    }

    #[test]
    fn plain_objects_take_the_rollout_from_flags() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let flags = RolloutFlags {
            max_concurrency: Some("1".into()),
            mandatory_groups: vec!["0".into(), "canary".into()],
            ..Default::default()
        };
        let set = parse("f", text, "w", Some("p"), &flags).unwrap();
        let s = set.refs[0].rollout_strategy.clone().unwrap();
        assert_eq!(s.r#type(), RolloutType::Progressive);
        assert_eq!(s.mandatory_decision_groups[0].group_index, Some(0));
        assert_eq!(s.mandatory_decision_groups[1].group_name, "canary");
        assert!(parse("f", text, "w", None, &flags).is_err());
    }

    #[test]
    fn bad_strategies_are_one_line() {
        let bad = SET.replace("type: Progressive", "type: Sometimes");
        let err = parse("s.yaml", &bad, "web", None, &RolloutFlags::default()).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("\"Sometimes\" is not All, Progressive or ProgressivePerGroup"),
            "{text}"
        );
    }
}
