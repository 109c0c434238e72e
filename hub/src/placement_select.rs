//! Placement decisions, free of I/O: which clusters a Placement selects from what the hub knows
//! of each (labels, claims, cluster set, taints from availability), kept stable as the fleet
//! changes, split into decision groups, and OCM's `PlacementSatisfied` condition.

use std::collections::{BTreeMap, HashSet};

use fleetbus_schema::v1::{ConditionStatus, DecisionGroup, LabelSelector, Placement, Toleration};

use crate::placement_spec::positive;

/// Set by the hub while a cluster's availability is Unknown (effect NoSelect).
pub const UNREACHABLE: &str = "cluster.open-cluster-management.io/unreachable";
/// Set by the hub while a cluster's availability is False (effect NoSelect).
pub const UNAVAILABLE: &str = "cluster.open-cluster-management.io/unavailable";

/// A cluster taint (OCM `spec.taints[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    /// Its key.
    pub key: &'static str,
    /// NoSelect, PreferNoSelect or NoSelectIfNew.
    pub effect: &'static str,
    /// When this hub first saw it (Unix ms).
    pub added_ms: i64,
}

/// What a placement looks at in one accepted cluster.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Cluster name.
    pub name: String,
    /// Effective labels.
    pub labels: BTreeMap<String, String>,
    /// ClusterClaims.
    pub claims: BTreeMap<String, String>,
    /// The cluster set it is in.
    pub set: Option<String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// Whether the hub knows its availability yet; right after a hub starts it may not, and
    /// such a cluster keeps the decisions it had.
    pub settled: bool,
}

/// Whether `labels` satisfy `selector` (Kubernetes semantics; empty matches all).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|r| {
            let value = labels.get(&r.key);
            match r.operator.as_str() {
                "In" => value.is_some_and(|v| r.values.contains(v)),
                "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `t` tolerates `taint` at `now_ms`.
fn tolerates(t: &Toleration, taint: &Taint, now_ms: i64) -> bool {
    let effect = t.effect.is_empty() || t.effect == taint.effect;
    let key = t.key.is_empty() || t.key == taint.key;
    // The hub's taints carry no value.
    let value = t.operator == "Exists" || t.value.is_empty();
    let in_time = t
        .toleration_seconds
        .is_none_or(|s| now_ms < taint.added_ms.saturating_add(s.saturating_mul(1000)));
    effect && key && value && in_time
}

/// Where the fleet narrows down for a placement: accepted clusters, those in its sets, those
/// matching its predicates, and those whose taints it tolerates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funnel {
    /// Accepted clusters.
    pub clusters: usize,
    /// In the placement's cluster sets.
    pub in_sets: usize,
    /// Also matching a predicate.
    pub matching: usize,
    /// Also without an intolerable taint.
    pub feasible: usize,
}

/// A placement's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Selected clusters, sorted by name.
    pub clusters: Vec<String>,
    /// How the fleet narrowed down.
    pub funnel: Funnel,
}

fn in_sets(p: &Placement, c: &Facts) -> bool {
    p.cluster_sets.is_empty() || c.set.as_ref().is_some_and(|s| p.cluster_sets.contains(s))
}

fn predicates_match(p: &Placement, c: &Facts) -> bool {
    p.predicates.is_empty()
        || p.predicates.iter().any(|predicate| {
            let s = predicate
                .required_cluster_selector
                .clone()
                .unwrap_or_default();
            matches(&s.label_selector.unwrap_or_default(), &c.labels)
                && matches(&s.claim_selector.unwrap_or_default(), &c.claims)
        })
}

fn taints_allow(p: &Placement, c: &Facts, selected_before: bool, now_ms: i64) -> bool {
    c.taints.iter().all(|taint| {
        let tolerated = || p.tolerations.iter().any(|t| tolerates(t, taint, now_ms));
        match taint.effect {
            "NoSelect" => tolerated(),
            "NoSelectIfNew" => selected_before || tolerated(),
            _ => true,
        }
    })
}

/// Selects clusters for `p` from `fleet`. Clusters selected `before` stay selected while they
/// remain feasible, so a placement with `numberOfClusters` does not move as clusters come and
/// go; new ones are added in name order.
pub fn decide(p: &Placement, fleet: &[Facts], before: &HashSet<&str>, now_ms: i64) -> Decision {
    let mut funnel = Funnel {
        clusters: fleet.len(),
        ..Default::default()
    };
    let mut feasible: Vec<&str> = Vec::new();
    for c in fleet {
        if !c.settled {
            if before.contains(c.name.as_str()) {
                feasible.push(&c.name);
            }
            continue;
        }
        if !in_sets(p, c) {
            continue;
        }
        funnel.in_sets += 1;
        if !predicates_match(p, c) {
            continue;
        }
        funnel.matching += 1;
        if taints_allow(p, c, before.contains(c.name.as_str()), now_ms) {
            feasible.push(&c.name);
        }
    }
    funnel.feasible = feasible.len();
    let mut clusters: Vec<String> = match p.number_of_clusters {
        None => feasible.iter().map(|c| (*c).to_owned()).collect(),
        Some(n) => {
            let n = usize::try_from(n).unwrap_or(0);
            let (kept, new): (Vec<&str>, Vec<&str>) =
                feasible.iter().partition(|c| before.contains(**c));
            kept.into_iter()
                .chain(new)
                .take(n)
                .map(str::to_owned)
                .collect()
        }
    };
    clusters.sort();
    Decision { clusters, funnel }
}

/// Splits decisions into OCM decision groups: clusters matching each `decisionGroups` entry
/// first (in order), then the rest; each part in chunks of `clustersPerDecisionGroup`.
pub fn groups<'a>(
    p: &Placement,
    decisions: &[String],
    labels: impl Fn(&str) -> Option<&'a BTreeMap<String, String>>,
) -> Vec<DecisionGroup> {
    let strategy = p.group_strategy.clone().unwrap_or_default();
    let size = positive("", &strategy.clusters_per_decision_group)
        .ok()
        .flatten()
        .map_or(decisions.len(), |a| a.of(decisions.len(), true))
        .max(1);
    let mut taken: HashSet<&str> = HashSet::new();
    let mut parts: Vec<(String, Vec<&String>)> = Vec::new();
    for spec in &strategy.decision_groups {
        let selector = spec.group_cluster_selector.clone().unwrap_or_default();
        let members: Vec<&String> = decisions
            .iter()
            .filter(|c| !taken.contains(c.as_str()))
            .filter(|c| labels(c).is_some_and(|l| matches(&selector, l)))
            .collect();
        taken.extend(members.iter().map(|c| c.as_str()));
        parts.push((spec.group_name.clone(), members));
    }
    let rest: Vec<&String> = decisions
        .iter()
        .filter(|c| !taken.contains(c.as_str()))
        .collect();
    parts.push((String::new(), rest));
    let mut out = Vec::new();
    for (name, members) in parts {
        for chunk in members.chunks(size) {
            out.push(DecisionGroup {
                index: out.len() as i32,
                name: name.clone(),
                clusters_count: chunk.len() as i32,
                clusters: chunk.iter().map(|c| (*c).clone()).collect(),
            });
        }
    }
    out
}

/// `PlacementSatisfied`: status, reason and message.
pub fn satisfied(p: &Placement, d: &Decision) -> (ConditionStatus, &'static str, String) {
    let f = d.funnel;
    let why = format!(
        "{} accepted clusters, {} in the placement's cluster sets, {} matching its predicates, {} without a taint it does not tolerate",
        f.clusters, f.in_sets, f.matching, f.feasible
    );
    let selected = d.clusters.len();
    match p.number_of_clusters {
        _ if selected == 0 => (
            ConditionStatus::False,
            "NoManagedClusterMatched",
            format!("no cluster selected: {why}"),
        ),
        Some(n) if (selected as i64) < i64::from(n) => (
            ConditionStatus::False,
            "NotAllDecisionsScheduled",
            format!("{selected} of {n} clusters selected: {why}"),
        ),
        _ => (
            ConditionStatus::True,
            "AllDecisionsScheduled",
            "All cluster decisions scheduled".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::v1::{
        ClusterPredicate, ClusterSelector, DecisionGroupSpec, GroupStrategy,
        LabelSelectorRequirement,
    };

    fn facts(name: &str, labels: &[(&str, &str)], set: Option<&str>) -> Facts {
        Facts {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            set: set.map(Into::into),
            settled: true,
            ..Default::default()
        }
    }

    fn selecting(labels: &[(&str, &str)]) -> Placement {
        Placement {
            name: "p".into(),
            predicates: vec![ClusterPredicate {
                required_cluster_selector: Some(ClusterSelector {
                    label_selector: Some(LabelSelector {
                        match_labels: labels
                            .iter()
                            .map(|(k, v)| ((*k).into(), (*v).into()))
                            .collect(),
                        match_expressions: vec![],
                    }),
                    claim_selector: None,
                }),
            }],
            ..Default::default()
        }
    }

    fn names(d: &Decision) -> Vec<&str> {
        d.clusters.iter().map(String::as_str).collect()
    }

    #[test]
    fn selectors_follow_kubernetes() {
        let labels: BTreeMap<String, String> = [("env".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect();
        let req = |op: &str, values: &[&str]| LabelSelector {
            match_labels: Default::default(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "env".into(),
                operator: op.into(),
                values: values.iter().map(|v| (*v).into()).collect(),
            }],
        };
        assert!(matches(&LabelSelector::default(), &labels));
        assert!(matches(&req("In", &["prod", "dev"]), &labels));
        assert!(!matches(&req("NotIn", &["prod"]), &labels));
        assert!(matches(&req("NotIn", &["prod"]), &BTreeMap::new()));
        assert!(matches(&req("Exists", &[]), &labels));
        assert!(!matches(&req("DoesNotExist", &[]), &labels));
    }

    #[test]
    fn sets_predicates_and_taints_narrow_the_fleet() {
        let mut fleet = vec![
            facts("a", &[("env", "prod")], Some("s1")),
            facts("b", &[("env", "prod")], Some("s2")),
            facts("c", &[("env", "dev")], Some("s1")),
            facts("d", &[("env", "prod")], Some("s1")),
        ];
        fleet[3].taints.push(Taint {
            key: UNREACHABLE,
            effect: "NoSelect",
            added_ms: 1000,
        });
        let mut p = selecting(&[("env", "prod")]);
        p.cluster_sets = vec!["s1".into()];
        let d = decide(&p, &fleet, &HashSet::new(), 2000);
        assert_eq!(names(&d), ["a"]);
        assert_eq!(
            d.funnel,
            Funnel {
                clusters: 4,
                in_sets: 3,
                matching: 2,
                feasible: 1
            }
        );
        p.tolerations.push(Toleration {
            key: UNREACHABLE.into(),
            operator: "Exists".into(),
            toleration_seconds: Some(5),
            ..Default::default()
        });
        assert_eq!(
            names(&decide(&p, &fleet, &HashSet::new(), 2000)),
            ["a", "d"]
        );
        // tolerationSeconds is a grace window from when the taint was added.
        assert_eq!(names(&decide(&p, &fleet, &HashSet::new(), 6001)), ["a"]);
    }

    #[test]
    fn a_placement_that_selects_nothing_says_why() {
        let fleet = vec![facts("a", &[("env", "dev")], None)];
        let p = selecting(&[("env", "prod")]);
        let d = decide(&p, &fleet, &HashSet::new(), 0);
        let (status, reason, message) = satisfied(&p, &d);
        assert_eq!(status, ConditionStatus::False);
        assert_eq!(reason, "NoManagedClusterMatched");
        assert!(
            message.contains("1 accepted clusters, 1 in the placement's cluster sets, 0 matching"),
            "{message}"
        );
    }

    #[test]
    fn number_of_clusters_keeps_earlier_decisions() {
        let fleet: Vec<Facts> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| facts(n, &[], None))
            .collect();
        let mut unsettled = fleet.clone();
        unsettled[0].settled = false;
        let before: HashSet<&str> = ["b"].into_iter().collect();
        assert_eq!(
            names(&decide(&Placement::default(), &unsettled, &before, 0)),
            ["b", "c", "d"]
        );
        let p = Placement {
            number_of_clusters: Some(2),
            ..Default::default()
        };
        assert_eq!(names(&decide(&p, &fleet, &HashSet::new(), 0)), ["a", "b"]);
        let before: HashSet<&str> = ["c", "d"].into_iter().collect();
        assert_eq!(names(&decide(&p, &fleet, &before, 0)), ["c", "d"]);
        let before: HashSet<&str> = ["d"].into_iter().collect();
        let d = decide(&p, &fleet, &before, 0);
        assert_eq!(names(&d), ["a", "d"]);
        assert_eq!(satisfied(&p, &d).0, ConditionStatus::True);
        let p = Placement {
            number_of_clusters: Some(9),
            ..Default::default()
        };
        assert_eq!(
            satisfied(&p, &decide(&p, &fleet, &before, 0)).1,
            "NotAllDecisionsScheduled"
        );
    }

    #[test]
    fn groups_take_selected_clusters_first_then_chunks() {
        let fleet: Vec<Facts> = (0..7)
            .map(|i| {
                let tier = if i < 2 { "canary" } else { "main" };
                facts(&format!("c{i}"), &[("tier", tier)], None)
            })
            .collect();
        let p = Placement {
            group_strategy: Some(GroupStrategy {
                decision_groups: vec![DecisionGroupSpec {
                    group_name: "canary".into(),
                    group_cluster_selector: Some(LabelSelector {
                        match_labels: [("tier".to_owned(), "canary".to_owned())]
                            .into_iter()
                            .collect(),
                        match_expressions: vec![],
                    }),
                }],
                clusters_per_decision_group: "3".into(),
            }),
            ..Default::default()
        };
        let d = decide(&p, &fleet, &HashSet::new(), 0);
        let labels = |c: &str| fleet.iter().find(|f| f.name == c).map(|f| &f.labels);
        let g = groups(&p, &d.clusters, labels);
        let shape: Vec<(i32, &str, Vec<&str>)> = g
            .iter()
            .map(|g| {
                (
                    g.index,
                    g.name.as_str(),
                    g.clusters.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (0, "canary", vec!["c0", "c1"]),
                (1, "", vec!["c2", "c3", "c4"]),
                (2, "", vec!["c5", "c6"]),
            ]
        );
        let all = Placement::default();
        assert_eq!(groups(&all, &d.clusters, labels).len(), 1);
        assert!(groups(&all, &[], labels).is_empty());
    }
}
