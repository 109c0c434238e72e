//! What a valid Placement and rollout strategy are: label selectors with Kubernetes operators,
//! tolerations with OCM's effects, group strategies, and OCM's "number or percentage" fields.

use std::collections::HashSet;

use fleetbus_schema::names::validate_label;
use fleetbus_schema::v1::{LabelSelector, Placement, RolloutStrategy, RolloutType};

use crate::cluster_labels::{validate_key, validate_value};
use crate::error::ApiError;

/// A count given as a number or a percentage (`3`, `25%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// An absolute number.
    Count(u32),
    /// A percentage, 0–100.
    Percent(u32),
}

impl Amount {
    /// Parses `text` (`what` names the field in errors); empty is `None`.
    pub fn parse(what: &str, text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let (digits, percent) = match text.strip_suffix('%') {
            Some(d) => (d.trim(), true),
            None => (text, false),
        };
        let n: u32 = digits
            .parse()
            .map_err(|_| format!("{what} {text:?} is not a number or a percentage"))?;
        if percent && n > 100 {
            return Err(format!("{what} {text} is more than 100%"));
        }
        Ok(Some(if percent {
            Self::Percent(n)
        } else {
            Self::Count(n)
        }))
    }

    /// The amount out of `total`, rounding a percentage up or down.
    pub fn of(self, total: usize, round_up: bool) -> usize {
        match self {
            Self::Count(n) => n as usize,
            Self::Percent(p) => {
                let scaled = total * p as usize;
                if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                }
            }
        }
    }
}

/// An amount that must be at least one cluster (`maxConcurrency`, `clustersPerDecisionGroup`).
pub fn positive(what: &str, text: &str) -> Result<Option<Amount>, String> {
    let amount = Amount::parse(what, text)?;
    if matches!(amount, Some(Amount::Count(0) | Amount::Percent(0))) {
        return Err(format!(
            "{what} must be at least 1 (or 1%–100%); got {}",
            text.trim()
        ));
    }
    Ok(amount)
}

fn bad(e: impl Into<String>) -> ApiError {
    ApiError::bad_request(e)
}

/// Checks a label selector (`what` names it in errors).
pub fn validate_selector(what: &str, selector: &LabelSelector) -> Result<(), ApiError> {
    for (key, value) in &selector.match_labels {
        validate_key(key).map_err(|e| bad(format!("{what}.matchLabels: {e}")))?;
        validate_value(value).map_err(|e| bad(format!("{what}.matchLabels: {e}")))?;
    }
    for (i, r) in selector.match_expressions.iter().enumerate() {
        let at = format!("{what}.matchExpressions[{i}]");
        validate_key(&r.key).map_err(|e| bad(format!("{at}: {e}")))?;
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return Err(bad(format!("{at}: operator {} needs values", r.operator)));
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                return Err(bad(format!(
                    "{at}: operator {} takes no values",
                    r.operator
                )));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(bad(format!(
                    "{at}: operator {other:?} is not In, NotIn, Exists or DoesNotExist"
                )));
            }
        }
        for v in &r.values {
            validate_value(v).map_err(|e| bad(format!("{at}: {e}")))?;
        }
    }
    Ok(())
}

/// Checks a Placement's spec (not whether its cluster sets exist).
pub fn validate_placement(p: &Placement) -> Result<(), ApiError> {
    validate_label("placement name", &p.name).map_err(|e| bad(e.to_string()))?;
    for set in &p.cluster_sets {
        validate_label("cluster set name", set).map_err(|e| bad(e.to_string()))?;
    }
    for (i, predicate) in p.predicates.iter().enumerate() {
        let s = predicate
            .required_cluster_selector
            .clone()
            .unwrap_or_default();
        let at = format!("predicates[{i}].requiredClusterSelector");
        validate_selector(
            &format!("{at}.labelSelector"),
            &s.label_selector.unwrap_or_default(),
        )?;
        let claims = s.claim_selector.unwrap_or_default();
        if !claims.match_labels.is_empty() {
            return Err(bad(format!(
                "{at}.claimSelector takes matchExpressions only"
            )));
        }
        validate_selector(&format!("{at}.claimSelector"), &claims)?;
    }
    if p.number_of_clusters.is_some_and(|n| n < 0) {
        return Err(bad("numberOfClusters must not be negative"));
    }
    for (i, t) in p.tolerations.iter().enumerate() {
        let at = format!("tolerations[{i}]");
        if !t.key.is_empty() {
            validate_key(&t.key).map_err(|e| bad(format!("{at}: {e}")))?;
        }
        match t.operator.as_str() {
            "" | "Equal" if t.key.is_empty() => {
                return Err(bad(format!("{at}: operator Equal needs a key")));
            }
            "Exists" if !t.value.is_empty() => {
                return Err(bad(format!("{at}: operator Exists takes no value")));
            }
            "" | "Equal" | "Exists" => {}
            other => {
                return Err(bad(format!(
                    "{at}: operator {other:?} is not Equal or Exists"
                )));
            }
        }
        if !matches!(
            t.effect.as_str(),
            "" | "NoSelect" | "PreferNoSelect" | "NoSelectIfNew"
        ) {
            return Err(bad(format!(
                "{at}: effect {:?} is not NoSelect, PreferNoSelect or NoSelectIfNew",
                t.effect
            )));
        }
        if t.toleration_seconds.is_some_and(|s| s < 0) {
            return Err(bad(format!("{at}: tolerationSeconds must not be negative")));
        }
    }
    let groups = p.group_strategy.clone().unwrap_or_default();
    positive(
        "clustersPerDecisionGroup",
        &groups.clusters_per_decision_group,
    )
    .map_err(bad)?;
    let mut names = HashSet::new();
    for (i, g) in groups.decision_groups.iter().enumerate() {
        let at = format!("decisionStrategy.groupStrategy.decisionGroups[{i}]");
        if g.group_name.is_empty() {
            return Err(bad(format!("{at}: groupName is required")));
        }
        validate_value(&g.group_name).map_err(|e| bad(format!("{at}: {e}")))?;
        if !names.insert(g.group_name.as_str()) {
            return Err(bad(format!(
                "{at}: groupName {} is used twice",
                g.group_name
            )));
        }
        validate_selector(
            &format!("{at}.groupClusterSelector"),
            &g.group_cluster_selector.clone().unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Checks a rollout strategy (`what` names the placement ref in errors).
pub fn validate_strategy(what: &str, s: &RolloutStrategy) -> Result<(), ApiError> {
    let kind = RolloutType::try_from(s.r#type)
        .map_err(|_| bad(format!("{what}: unknown rollout type {}", s.r#type)))?;
    positive(&format!("{what}: maxConcurrency"), &s.max_concurrency).map_err(bad)?;
    Amount::parse(&format!("{what}: maxFailures"), &s.max_failures).map_err(bad)?;
    if s.progress_deadline_ms < 0 || s.min_success_time_ms < 0 {
        return Err(bad(format!(
            "{what}: progressDeadline and minSuccessTime must not be negative"
        )));
    }
    if kind == RolloutType::All {
        if !s.max_concurrency.is_empty() || !s.mandatory_decision_groups.is_empty() {
            return Err(bad(format!(
                "{what}: maxConcurrency and mandatoryDecisionGroups need rollout type Progressive or ProgressivePerGroup"
            )));
        }
    } else if kind == RolloutType::ProgressivePerGroup && !s.max_concurrency.is_empty() {
        return Err(bad(format!(
            "{what}: ProgressivePerGroup rolls out a whole group at a time; maxConcurrency is for Progressive"
        )));
    }
    for (i, m) in s.mandatory_decision_groups.iter().enumerate() {
        if m.group_name.is_empty() && m.group_index.is_none() {
            return Err(bad(format!(
                "{what}: mandatoryDecisionGroups[{i}] needs groupName or groupIndex"
            )));
        }
        if m.group_index.is_some_and(|i| i < 0) {
            return Err(bad(format!(
                "{what}: mandatoryDecisionGroups[{i}].groupIndex must not be negative"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::v1::{
        ClusterPredicate, ClusterSelector, GroupStrategy, LabelSelectorRequirement, Toleration,
    };

    #[test]
    fn amounts_are_numbers_or_percentages() {
        assert_eq!(Amount::parse("x", ""), Ok(None));
        assert_eq!(Amount::parse("x", "3"), Ok(Some(Amount::Count(3))));
        assert_eq!(Amount::parse("x", "10%"), Ok(Some(Amount::Percent(10))));
        assert!(
            Amount::parse("x", "150%")
                .unwrap_err()
                .contains("more than 100%")
        );
        assert!(Amount::parse("x", "-1").is_err());
        assert!(Amount::parse("x", "ten").is_err());
        let zero = positive("maxConcurrency", "0").unwrap_err();
        assert_eq!(
            zero,
            "maxConcurrency must be at least 1 (or 1%–100%); got 0"
        );
        assert!(positive("maxConcurrency", "0%").is_err());
        assert_eq!(Amount::Percent(10).of(10_000, true), 1000);
        assert_eq!(Amount::Percent(10).of(5, true), 1);
        assert_eq!(Amount::Percent(10).of(5, false), 0);
        assert_eq!(Amount::Count(4).of(2, true), 4);
    }

    fn with_expression(operator: &str, values: &[&str]) -> Placement {
        Placement {
            name: "p".into(),
            predicates: vec![ClusterPredicate {
                required_cluster_selector: Some(ClusterSelector {
                    label_selector: Some(LabelSelector {
                        match_expressions: vec![LabelSelectorRequirement {
                            key: "env".into(),
                            operator: operator.into(),
                            values: values.iter().map(|v| (*v).into()).collect(),
                        }],
                        ..Default::default()
                    }),
                    claim_selector: None,
                }),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn selectors_need_known_operators_and_the_right_values() {
        assert!(validate_placement(&with_expression("In", &["a"])).is_ok());
        assert!(validate_placement(&with_expression("Exists", &[])).is_ok());
        let err = |p: Placement| validate_placement(&p).unwrap_err().message;
        assert!(err(with_expression("In", &[])).contains("needs values"));
        assert!(err(with_expression("Exists", &["a"])).contains("takes no values"));
        assert_eq!(
            err(with_expression("Near", &["a"])),
            "predicates[0].requiredClusterSelector.labelSelector.matchExpressions[0]: operator \"Near\" is not In, NotIn, Exists or DoesNotExist"
        );
        assert!(err(with_expression("In", &["a b"])).contains("invalid label value"));
    }

    #[test]
    fn tolerations_and_groups_are_checked() {
        let mut p = Placement {
            name: "p".into(),
            tolerations: vec![Toleration {
                key: "cluster.open-cluster-management.io/unreachable".into(),
                operator: "Exists".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(validate_placement(&p).is_ok());
        p.tolerations[0].effect = "NoSchedule".into();
        assert!(
            validate_placement(&p)
                .unwrap_err()
                .message
                .contains("effect")
        );
        p.tolerations[0].effect.clear();
        p.group_strategy = Some(GroupStrategy {
            clusters_per_decision_group: "0".into(),
            ..Default::default()
        });
        assert!(
            validate_placement(&p)
                .unwrap_err()
                .message
                .contains("at least 1")
        );
        p.number_of_clusters = Some(-1);
        p.group_strategy = None;
        assert!(validate_placement(&p).is_err());
    }

    #[test]
    fn strategies_are_checked() {
        let progressive = |c: &str| RolloutStrategy {
            r#type: RolloutType::Progressive as i32,
            max_concurrency: c.into(),
            ..Default::default()
        };
        assert!(validate_strategy("p", &progressive("1")).is_ok());
        assert!(validate_strategy("p", &progressive("10%")).is_ok());
        assert_eq!(
            validate_strategy("placement p", &progressive("0"))
                .unwrap_err()
                .message,
            "placement p: maxConcurrency must be at least 1 (or 1%–100%); got 0"
        );
        assert_eq!(
            validate_strategy("placement p", &progressive("150%"))
                .unwrap_err()
                .message,
            "placement p: maxConcurrency 150% is more than 100%"
        );
        let all = RolloutStrategy {
            max_concurrency: "2".into(),
            ..Default::default()
        };
        assert!(validate_strategy("p", &all).is_err());
    }
}
