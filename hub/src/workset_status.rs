//! A ManifestWorkReplicaSet's status from its rollout: the summary, placementSummary and
//! OCM's conditions `PlacementVerified`, `PlacementRolledOut` and `ManifestworkApplied`, and the
//! rollout per cluster that `workset.get` shows, computed from the hub's mirror.

use std::collections::{HashMap, HashSet};

use fleetbus_schema::conditions::set as set_condition;
use fleetbus_schema::v1::{
    ClusterRollout, ConditionStatus, DecisionGroup, WorkSet, WorkSetPlacementSummary, WorkSetStatus,
};

use crate::placement::PlacementService;
use crate::work::key;
use crate::workset_rollout::{Observed, Outcome, State, available_groups, state, summarize};

/// Clusters an audit message names at most.
const NAMED: usize = 10;

/// One placement ref's share of a set's rollout.
pub(crate) struct RefView {
    pub(crate) name: String,
    pub(crate) found: bool,
    pub(crate) groups: Vec<DecisionGroup>,
    pub(crate) states: Vec<(String, State)>,
    pub(crate) outcome: Outcome,
}

pub(crate) fn overall(views: &[RefView]) -> Outcome {
    if let Some(why) = views.iter().find_map(|v| match &v.outcome {
        Outcome::Stopped(why) => Some(why.clone()),
        _ => None,
    }) {
        return Outcome::Stopped(why);
    }
    let selected = views.iter().any(|v| !v.states.is_empty());
    if selected
        && views
            .iter()
            .all(|v| v.outcome == Outcome::Complete || v.states.is_empty())
    {
        Outcome::Complete
    } else {
        Outcome::Progressing
    }
}

/// The set's status from its placement refs' views.
pub(crate) fn status_of(
    set: &WorkSet,
    observed: &HashMap<String, Observed>,
    views: &[RefView],
    errors: &[String],
    now: i64,
) -> WorkSetStatus {
    let generation = set.generation;
    let failed = |v: &RefView| {
        v.states
            .iter()
            .filter(|(_, s)| matches!(s, State::Failed(_) | State::TimeOut))
            .count()
    };
    let selected: usize = views.iter().map(|v| v.states.len()).sum();
    let summary = summarize(
        observed.values(),
        generation,
        selected,
        views.iter().map(failed).sum(),
    );
    let placement_summary = views
        .iter()
        .map(|v| {
            let mine: Vec<&Observed> = v
                .states
                .iter()
                .filter_map(|(c, _)| observed.get(c))
                .collect();
            let s = summarize(mine.into_iter(), generation, v.states.len(), failed(v));
            let succeeded: HashSet<&str> = v
                .states
                .iter()
                .filter(|(_, st)| *st == State::Succeeded)
                .map(|(c, _)| c.as_str())
                .collect();
            WorkSetPlacementSummary {
                name: v.name.clone(),
                available_decision_groups: available_groups(
                    &v.groups,
                    &succeeded,
                    s.applied as usize,
                ),
                summary: Some(s),
            }
        })
        .collect();
    let mut conditions = set.status.clone().unwrap_or_default().conditions;
    let missing: Vec<&str> = views
        .iter()
        .filter(|v| !v.found)
        .map(|v| v.name.as_str())
        .collect();
    let refs: Vec<&str> = views.iter().map(|v| v.name.as_str()).collect();
    let (status, reason, message) = if !missing.is_empty() {
        (
            ConditionStatus::False,
            "PlacementDecisionNotFound",
            format!("placement {} not found", missing.join(", ")),
        )
    } else if selected == 0 {
        (
            ConditionStatus::False,
            "PlacementDecisionEmpty",
            format!("placement {} selects no cluster", refs.join(", ")),
        )
    } else {
        (ConditionStatus::True, "AsExpected", String::new())
    };
    set_condition(
        &mut conditions,
        "PlacementVerified",
        status,
        reason,
        &message,
        now,
    );
    let succeeded = views
        .iter()
        .flat_map(|v| v.states.iter())
        .filter(|(_, s)| *s == State::Succeeded)
        .count();
    let (status, reason, message) = match overall(views) {
        Outcome::Complete => {
            let failures = summary.failed;
            let tail = if failures > 0 {
                format!("; {failures} failed within maxFailures")
            } else {
                String::new()
            };
            (
                ConditionStatus::True,
                "Complete",
                format!(
                    "generation {generation} rolled out to {succeeded} of {selected} clusters{tail}"
                ),
            )
        }
        Outcome::Stopped(why) => (ConditionStatus::False, "Failed", why),
        Outcome::Progressing => (
            ConditionStatus::False,
            "Progressing",
            format!("{succeeded} of {selected} clusters succeeded at generation {generation}"),
        ),
    };
    set_condition(
        &mut conditions,
        "PlacementRolledOut",
        status,
        reason,
        &message,
        now,
    );
    let (status, reason, message) = match errors.first() {
        Some(first) => (
            ConditionStatus::False,
            "NotAsExpected",
            format!("{} works could not be written: {first}", errors.len()),
        ),
        None => (ConditionStatus::True, "AsExpected", String::new()),
    };
    set_condition(
        &mut conditions,
        "ManifestworkApplied",
        status,
        reason,
        &message,
        now,
    );
    WorkSetStatus {
        summary: Some(summary),
        placement_summary,
        conditions,
        observed_generation: generation,
    }
}

/// The rollout per selected cluster, as the API shows it (from the mirror, now).
pub fn rollout_rows(service: &PlacementService, set: &WorkSet, now: i64) -> Vec<ClusterRollout> {
    let mut claimed: HashSet<String> = HashSet::new();
    let mut rows = Vec::new();
    for r in &set.placement_refs {
        let deadline = r
            .rollout_strategy
            .as_ref()
            .map_or(0, |s| s.progress_deadline_ms);
        let Some(Some(p)) = service.placements.peek(&r.name, |p| p.cloned()) else {
            continue;
        };
        for g in p.status.unwrap_or_default().decision_groups {
            for c in g.clusters {
                if !claimed.insert(c.clone()) {
                    continue;
                }
                let found = service
                    .works
                    .works
                    .peek(&key(&c, &set.name), |w| {
                        w.map(|w| (w.work_set == set.name, Observed::of(w)))
                    })
                    .flatten();
                let (o, foreign) = match found {
                    Some((true, o)) => (Some(o), false),
                    Some((false, _)) => (None, true),
                    None => (None, false),
                };
                let st = if foreign {
                    State::Failed(format!(
                        "cluster {c} already has a work named {} that this ManifestWorkReplicaSet did not create",
                        set.name
                    ))
                } else {
                    state(o.as_ref(), set.generation, deadline, now)
                };
                let message = match &st {
                    State::Failed(why) => why.clone(),
                    State::TimeOut => "progressDeadline exceeded".into(),
                    _ => String::new(),
                };
                rows.push(ClusterRollout {
                    cluster: c,
                    placement: r.name.clone(),
                    group_index: g.index,
                    status: st.name().into(),
                    generation: o.as_ref().map_or(0, |o| o.set_generation),
                    released_ms: o.as_ref().map_or(0, |o| o.released_ms),
                    message,
                });
            }
        }
    }
    rows
}

pub(crate) fn single(clusters: &[String]) -> String {
    match clusters {
        [one] => one.clone(),
        _ => String::new(),
    }
}

/// `a, b, c` or `a, b, … (+8 more)`.
pub(crate) fn named(items: &[impl AsRef<str>]) -> String {
    let shown: Vec<&str> = items.iter().take(NAMED).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(NAMED);
    if more > 0 {
        format!("{}, … (+{more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
