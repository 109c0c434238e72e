//! The rollout of a ManifestWorkReplicaSet, free of I/O: where each selected cluster stands
//! (OCM's ToApply, Progressing, Succeeded, Failed, TimeOut), which clusters the strategy
//! (`All`, `Progressive`, `ProgressivePerGroup`) releases next, when it stops on failures, and
//! the summary counts. Everything is recomputed from what the clusters report, so a failed
//! cluster that recovers lets a stopped rollout continue.

use std::collections::{HashMap, HashSet};

use fleetbus_schema::v1::{
    Condition, ConditionStatus, DecisionGroup, ManifestWork, RolloutStrategy, RolloutType,
    WorkSetSummary,
};

use crate::placement_spec::{Amount, positive};

/// Where one selected cluster stands at the set's current generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Its work does not carry the current generation yet.
    ToApply,
    /// Released; the cluster has not reported success or failure yet.
    Progressing,
    /// Applied and available, not degraded.
    Succeeded,
    /// Degraded or not applied, with the cluster's words.
    Failed(String),
    /// Progressing for longer than `progressDeadline`.
    TimeOut,
    /// Its previous work is still being removed; it gets a new one once that is gone.
    Removing,
}

impl State {
    /// OCM's name for it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ToApply => "ToApply",
            Self::Progressing => "Progressing",
            Self::Succeeded => "Succeeded",
            Self::Failed(_) => "Failed",
            Self::TimeOut => "TimeOut",
            Self::Removing => "Removing",
        }
    }

    fn failed(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::TimeOut)
    }
}

/// What the hub knows of one cluster's generated work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The set's generation the work carries.
    pub set_generation: i64,
    /// The work's own generation.
    pub generation: i64,
    /// Deletion requested.
    pub deleting: bool,
    /// When the hub last wrote the work (released it).
    pub released_ms: i64,
    /// The cluster's report is about the work's current generation.
    pub current: bool,
    /// Work-level conditions.
    pub applied: Option<ConditionStatus>,
    /// `Available`.
    pub available: Option<ConditionStatus>,
    /// `Degraded`.
    pub degraded: Option<ConditionStatus>,
    /// Why it is degraded or not applied.
    pub message: String,
    /// The placement that released it.
    pub placement: String,
}

impl Observed {
    /// Reads a generated work.
    pub fn of(work: &ManifestWork) -> Self {
        let status = work.status.as_ref();
        let find = |kind: &str| -> Option<&Condition> {
            status?.conditions.iter().find(|c| c.r#type == kind)
        };
        let degraded = find("Degraded");
        let applied = find("Applied");
        // A failed apply carries the apiserver's words; prefer them.
        let message = match (applied, degraded) {
            (Some(a), _) if a.status() == ConditionStatus::False => a.message.clone(),
            (_, Some(d)) if d.status() == ConditionStatus::True => d.message.clone(),
            _ => String::new(),
        };
        Self {
            set_generation: work.work_set_generation,
            generation: work.generation,
            deleting: work.deletion_ms > 0,
            released_ms: work.updated_ms,
            current: status
                .is_some_and(|s| s.reported_ms > 0 && s.observed_generation >= work.generation),
            applied: applied.map(Condition::status),
            available: find("Available").map(Condition::status),
            degraded: degraded.map(Condition::status),
            message,
            placement: work.placement.clone(),
        }
    }
}

/// The state of a cluster whose work is `observed` (None: it has none) at `generation`.
pub fn state(observed: Option<&Observed>, generation: i64, deadline_ms: i64, now_ms: i64) -> State {
    let Some(o) = observed else {
        return State::ToApply;
    };
    if o.deleting {
        return State::Removing;
    }
    if o.set_generation < generation {
        return State::ToApply;
    }
    let truly = |c: Option<ConditionStatus>| c == Some(ConditionStatus::True);
    if o.current && (truly(o.degraded) || o.applied == Some(ConditionStatus::False)) {
        return State::Failed(o.message.clone());
    }
    if o.current && truly(o.applied) && truly(o.available) {
        return State::Succeeded;
    }
    if deadline_ms > 0 && now_ms >= o.released_ms.saturating_add(deadline_ms) {
        return State::TimeOut;
    }
    State::Progressing
}

/// One selected cluster as the planner sees it.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// Cluster name.
    pub cluster: &'a str,
    /// Its state.
    pub state: State,
    /// Succeeded, but not yet for `minSuccessTime`.
    pub soaking: bool,
}

impl Member<'_> {
    fn busy(&self) -> bool {
        self.state == State::Progressing || (self.state == State::Succeeded && self.soaking)
    }

    fn done(&self) -> bool {
        (self.state == State::Succeeded && !self.soaking) || self.state.failed()
    }
}

/// Where a rollout stands after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// More to do.
    Progressing,
    /// Every cluster finished (failures within `maxFailures`).
    Complete,
    /// Stopped on failures: why.
    Stopped(String),
}

/// What to do next: clusters to release now, and where the rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Clusters whose work should now carry the current generation.
    pub release: Vec<&'a str>,
    /// Where it stands.
    pub outcome: Outcome,
}

fn mandatory(strategy: &RolloutStrategy, group: &DecisionGroup) -> bool {
    strategy
        .mandatory_decision_groups
        .iter()
        .any(|m| match m.group_index {
            Some(i) => i == group.index,
            None => !m.group_name.is_empty() && m.group_name == group.name,
        })
}

fn failure_text(members: &[&Member<'_>], budget: usize, scope: &str) -> String {
    let failed: Vec<&&Member<'_>> = members.iter().filter(|m| m.state.failed()).collect();
    let named: Vec<String> = failed
        .iter()
        .take(3)
        .map(|m| match &m.state {
            State::Failed(why) if !why.is_empty() => format!("{} ({why})", m.cluster),
            State::TimeOut => format!("{} (progressDeadline exceeded)", m.cluster),
            _ => m.cluster.to_owned(),
        })
        .collect();
    format!(
        "rollout stopped: {} {scope} failed, more than maxFailures {budget}: {}",
        failed.len(),
        named.join(", ")
    )
}

/// Releases `ToApply` members in order while fewer than `limit` are busy.
fn fill<'a>(members: &[&Member<'a>], limit: usize, release: &mut Vec<&'a str>) {
    let mut busy = members.iter().filter(|m| m.busy()).count();
    for m in members {
        if busy >= limit {
            break;
        }
        if m.state == State::ToApply {
            release.push(m.cluster);
            busy += 1;
        }
    }
}

/// The next step of a rollout over `groups` (in index order), whose clusters are `members`.
/// `default_concurrency` applies when `maxConcurrency` is not set (the placement's
/// clustersPerDecisionGroup).
pub fn plan<'a>(
    strategy: &RolloutStrategy,
    groups: &[DecisionGroup],
    members: &[Member<'a>],
    default_concurrency: usize,
) -> Plan<'a> {
    let index: HashMap<&str, &Member<'a>> = members.iter().map(|m| (m.cluster, m)).collect();
    let by_name = |name: &str| index.get(name).copied();
    let kind = RolloutType::try_from(strategy.r#type).unwrap_or(RolloutType::All);
    // Mandatory groups first, each part in index order.
    let ordered: Vec<(&DecisionGroup, bool)> = groups
        .iter()
        .filter(|g| mandatory(strategy, g))
        .map(|g| (g, true))
        .chain(
            groups
                .iter()
                .filter(|g| !mandatory(strategy, g))
                .map(|g| (g, false)),
        )
        .collect();
    let total = members.len();
    let budget_of = |n: usize| {
        Amount::parse("", &strategy.max_failures)
            .ok()
            .flatten()
            .map_or(0, |a| a.of(n, false))
    };
    let mut release = Vec::new();
    let finish = |release: Vec<&'a str>, all: &[&Member<'a>]| {
        let outcome = if release.is_empty() && all.iter().all(|m| m.done()) {
            Outcome::Complete
        } else {
            Outcome::Progressing
        };
        Plan { release, outcome }
    };
    let in_order = |part: &[(&DecisionGroup, bool)]| -> Vec<&Member<'a>> {
        part.iter()
            .flat_map(|(g, _)| g.clusters.iter())
            .filter_map(|c| by_name(c))
            .collect()
    };
    let everyone = in_order(&ordered);
    match kind {
        RolloutType::All => {
            fill(&everyone, usize::MAX, &mut release);
            let budget = budget_of(total);
            if everyone.iter().filter(|m| m.state.failed()).count() > budget {
                return Plan {
                    release,
                    outcome: Outcome::Stopped(failure_text(&everyone, budget, "clusters")),
                };
            }
            finish(release, &everyone)
        }
        RolloutType::Progressive => {
            let limit = positive("", &strategy.max_concurrency)
                .ok()
                .flatten()
                .map_or(default_concurrency, |a| a.of(total, true))
                .max(1);
            let split = ordered.iter().take_while(|(_, m)| *m).count();
            let (first, rest) = ordered.split_at(split);
            let (first, rest) = (in_order(first), in_order(rest));
            if first.iter().any(|m| m.state.failed()) {
                let why = failure_text(&first, 0, "clusters of mandatory decision groups");
                return Plan {
                    release,
                    outcome: Outcome::Stopped(why),
                };
            }
            if !first.iter().all(|m| m.done()) {
                fill(&first, limit, &mut release);
                return Plan {
                    release,
                    outcome: Outcome::Progressing,
                };
            }
            let budget = budget_of(total);
            if rest.iter().filter(|m| m.state.failed()).count() > budget {
                return Plan {
                    release,
                    outcome: Outcome::Stopped(failure_text(&rest, budget, "clusters")),
                };
            }
            fill(&rest, limit, &mut release);
            finish(release, &everyone)
        }
        RolloutType::ProgressivePerGroup => {
            for (group, required) in &ordered {
                let part = in_order(&[(*group, *required)]);
                let budget = if *required { 0 } else { budget_of(part.len()) };
                if part.iter().filter(|m| m.state.failed()).count() > budget {
                    let scope = format!("clusters of decision group {}", group.index);
                    return Plan {
                        release,
                        outcome: Outcome::Stopped(failure_text(&part, budget, &scope)),
                    };
                }
                if !part.iter().all(|m| m.done()) {
                    fill(&part, usize::MAX, &mut release);
                    return Plan {
                        release,
                        outcome: Outcome::Progressing,
                    };
                }
            }
            finish(release, &everyone)
        }
    }
}

/// Summary counts over a set's generated works (`observed`) at `generation`, for `desired`
/// selected clusters of which `failed` have failed.
pub fn summarize<'o>(
    observed: impl Iterator<Item = &'o Observed>,
    generation: i64,
    desired: usize,
    failed: usize,
) -> WorkSetSummary {
    let mut s = WorkSetSummary {
        desired_total: desired as i32,
        failed: failed as i32,
        ..Default::default()
    };
    let truly = |c: Option<ConditionStatus>| c == Some(ConditionStatus::True);
    for o in observed {
        s.total += 1;
        let updated = o.set_generation >= generation;
        s.updated += i32::from(updated);
        s.applied += i32::from(updated && o.current && truly(o.applied));
        s.available += i32::from(updated && o.current && truly(o.available));
        s.degraded += i32::from(o.current && truly(o.degraded));
        s.progressing += i32::from(!o.current);
    }
    s
}

/// OCM's `availableDecisionGroups`: groups whose every cluster succeeded, and clusters applied.
pub fn available_groups(
    groups: &[DecisionGroup],
    succeeded: &HashSet<&str>,
    applied: usize,
) -> String {
    let done = groups
        .iter()
        .filter(|g| g.clusters.iter().all(|c| succeeded.contains(c.as_str())))
        .count();
    let selected: usize = groups.iter().map(|g| g.clusters.len()).sum();
    format!("{done} ({applied} / {selected} clusters applied)")
}

#[cfg(test)]
mod tests;
