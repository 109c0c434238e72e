//! The placement controller: keeps every Placement's decisions and every
//! ManifestWorkReplicaSet's rollout current, computed from the hub's in-memory mirror of the
//! fleet (cluster records, availability, works) the moment any of it changes, instead of on a
//! resync period. Decisions are written to the placement's status; releasing a cluster writes
//! its generated work and notifies its spoke at once. Every step is a compare-and-set of a
//! value computed from the same mirror, so replicas running side by side agree.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fleetbus_schema::Identity;
use fleetbus_schema::conditions::set as set_condition;
use fleetbus_schema::v1::{
    Acceptance, AuditEvent, ClusterRollout, ConditionStatus, Placement, PlacementStatus, WorkSet,
    WorkSetPlacementSummary, WorkSetStatus,
};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cluster_labels::{claims, cluster_set, effective};
use crate::placement::PlacementService;
use crate::placement_select::{Facts, Taint, UNAVAILABLE, UNREACHABLE, decide, groups, satisfied};
use crate::registration::now_ms;
use crate::store::Action;
use crate::work::key;
use crate::workset_rollout::{
    Member, Observed, Outcome, State, available_groups, plan, state, summarize,
};
use crate::workset_works::Released;

/// Lets a burst of changes land before reconciling.
const DEBOUNCE: Duration = Duration::from_millis(10);
/// Bounds how often a busy fleet (thousands of status reports a second) reconciles.
const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Looks again this often anyway: silent spokes, progress deadlines, soak times.
const TICK: Duration = Duration::from_secs(1);
/// Generated works written at once.
const WRITES_IN_FLIGHT: usize = 256;
/// A generated work whose set is gone is removed only when older than this (another replica
/// may have created the set a moment ago).
const ORPHAN_AGE_MS: i64 = 30_000;
/// Clusters an audit message names at most.
const NAMED: usize = 10;

/// Follows the fleet until `shutdown`. `grace` is the lease timeout: until it has passed since
/// the start, a cluster not heard from yet keeps whatever decisions it had.
pub async fn run(service: PlacementService, grace: Duration, shutdown: CancellationToken) {
    let mut signals = [
        service.clusters.subscribe(),
        service.clustersets.subscribe(),
        service.placements.subscribe(),
        service.liveness.subscribe(),
        service.worksets.subscribe(),
        service.works.works.subscribe(),
    ];
    let mut controller = Controller::new(service, grace);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = changed(&mut signals) => {}
            () = tokio::time::sleep(TICK) => {}
        }
        let wait = DEBOUNCE.max(MIN_INTERVAL.saturating_sub(last.elapsed()));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        // The first four feed decisions; works and sets only the rollout.
        let inputs: u64 = signals[..4]
            .iter_mut()
            .map(|s| *s.borrow_and_update())
            .sum();
        for s in &mut signals[4..] {
            s.borrow_and_update();
        }
        last = Instant::now();
        controller.reconcile(inputs).await;
    }
}

async fn changed(signals: &mut [tokio::sync::watch::Receiver<u64>]) {
    let waits = signals.iter_mut().map(|s| Box::pin(s.changed()));
    let _ = futures::future::select_all(waits).await;
}

struct Controller {
    service: PlacementService,
    grace: Duration,
    started: Instant,
    /// Decision inputs last decided on, and when.
    decided: Option<(u64, Instant)>,
    /// Taint per cluster and when this hub first saw it.
    taints: HashMap<String, (&'static str, i64)>,
    /// (set, cluster) → (generation, first seen succeeded), for minSuccessTime.
    soak: HashMap<(String, String), (i64, i64)>,
    /// (set, cluster) → why its work cannot be written (a work of the same name not from the set).
    blocked: HashMap<(String, String), String>,
    /// set → (generation, outcome) last reported, to audit transitions once.
    outcomes: HashMap<String, (i64, &'static str)>,
}

/// One placement ref's share of a set's rollout.
struct RefView {
    name: String,
    found: bool,
    groups: Vec<fleetbus_schema::v1::DecisionGroup>,
    states: Vec<(String, State)>,
    outcome: Outcome,
}

impl Controller {
    fn new(service: PlacementService, grace: Duration) -> Self {
        Self {
            service,
            grace,
            started: Instant::now(),
            decided: None,
            taints: HashMap::new(),
            soak: HashMap::new(),
            blocked: HashMap::new(),
            outcomes: HashMap::new(),
        }
    }

    async fn reconcile(&mut self, inputs: u64) {
        let now = now_ms();
        let due = self
            .decided
            .is_none_or(|(seen, at)| seen != inputs || at.elapsed() >= TICK);
        if due && let Some(fleet) = self.fleet(now) {
            self.decide_all(&fleet, now).await;
            self.decided = Some((inputs, Instant::now()));
        }
        self.roll_all(now).await;
    }

    /// What placements look at in every accepted cluster; `None` until the mirror is ready.
    fn fleet(&mut self, now: i64) -> Option<Vec<Facts>> {
        let availability: HashMap<String, ConditionStatus> = self
            .service
            .liveness
            .availability()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let settling = self.started.elapsed() < self.grace;
        let mut fleet = self.service.clusters.scan("", |records| {
            records
                .filter(|(_, r)| r.acceptance() == Acceptance::Accepted)
                .map(|(_, r)| Facts {
                    name: r.name.clone(),
                    labels: effective(r),
                    claims: claims(r),
                    set: cluster_set(r).map(str::to_owned),
                    taints: Vec::new(),
                    settled: !settling || availability.contains_key(&r.name),
                })
                .collect::<Vec<_>>()
        })?;
        for f in &mut fleet {
            let taint = match availability.get(&f.name) {
                Some(ConditionStatus::True) => None,
                Some(ConditionStatus::False) => Some(UNAVAILABLE),
                _ => Some(UNREACHABLE),
            };
            let Some(key) = taint else {
                self.taints.remove(&f.name);
                continue;
            };
            let seen = self.taints.entry(f.name.clone()).or_insert((key, now));
            if seen.0 != key {
                *seen = (key, now);
            }
            f.taints.push(Taint {
                key,
                effect: "NoSelect",
                added_ms: seen.1,
            });
        }
        let names: HashSet<&str> = fleet.iter().map(|f| f.name.as_str()).collect();
        self.taints.retain(|k, _| names.contains(k.as_str()));
        Some(fleet)
    }

    async fn decide_all(&mut self, fleet: &[Facts], now: i64) {
        let by_name: HashMap<&str, &Facts> = fleet.iter().map(|f| (f.name.as_str(), f)).collect();
        let Some(placements) = self
            .service
            .placements
            .scan("", |all| all.map(|(_, p)| p.clone()).collect::<Vec<_>>())
        else {
            return;
        };
        for p in placements {
            let status = p.status.clone().unwrap_or_default();
            let before: HashSet<&str> = status
                .decision_groups
                .iter()
                .flat_map(|g| g.clusters.iter().map(String::as_str))
                .collect();
            let decision = decide(&p, fleet, &before, now);
            let decided = groups(&p, &decision.clusters, |c| {
                by_name.get(c).map(|f| &f.labels)
            });
            let mut conditions = status.conditions.clone();
            let (ok, reason, message) = satisfied(&p, &decision);
            set_condition(
                &mut conditions,
                "PlacementSatisfied",
                ok,
                reason,
                &message,
                now,
            );
            set_condition(
                &mut conditions,
                "PlacementMisconfigured",
                ConditionStatus::False,
                "Succeedconfigured",
                "Placement configurations check pass",
                now,
            );
            let moved = decided != status.decision_groups;
            let next = PlacementStatus {
                number_of_selected_clusters: decision.clusters.len() as i32,
                decision_groups: decided,
                conditions,
                decided_ms: if moved { now } else { status.decided_ms },
            };
            if next == status {
                continue;
            }
            let added: Vec<&str> = decision
                .clusters
                .iter()
                .map(String::as_str)
                .filter(|c| !before.contains(c))
                .collect();
            let kept: HashSet<&str> = decision.clusters.iter().map(String::as_str).collect();
            let mut removed: Vec<&str> = before.difference(&kept).copied().collect();
            removed.sort();
            match self.write_placement(&p, next).await {
                Ok(true) if moved => {
                    self.audit_decision(&p.name, decision.clusters.len(), &added, &removed)
                        .await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(placement = %p.name, error = %e, "could not store decisions")
                }
            }
        }
    }

    async fn write_placement(
        &self,
        p: &Placement,
        next: PlacementStatus,
    ) -> Result<bool, crate::error::ApiError> {
        self.service
            .placements
            .update(&p.name, |current| {
                let Some(mut current) = current else {
                    return Ok((Action::Keep, false));
                };
                // A newer spec is decided on the next round.
                if current.generation != p.generation || current.status.as_ref() == Some(&next) {
                    return Ok((Action::Keep, false));
                }
                current.status = Some(next.clone());
                Ok::<_, crate::error::ApiError>((Action::Put(Box::new(current)), true))
            })
            .await
    }

    async fn audit_decision(
        &self,
        placement: &str,
        selected: usize,
        added: &[&str],
        removed: &[&str],
    ) {
        let cluster = match (added, removed) {
            ([one], []) | ([], [one]) => (*one).to_owned(),
            _ => String::new(),
        };
        let changes: Vec<String> = added
            .iter()
            .map(|c| format!("+{c}"))
            .chain(removed.iter().map(|c| format!("-{c}")))
            .collect();
        self.emit(AuditEvent {
            cluster,
            kind: "placement".into(),
            action: "decide".into(),
            object: format!("placement/{placement}"),
            message: format!("{selected} clusters selected: {}", named(&changes)),
            ..Default::default()
        })
        .await;
    }

    async fn emit(&self, mut event: AuditEvent) {
        event.actor = Identity::Hub.to_string();
        if event.outcome.is_empty() {
            event.outcome = "success".into();
            event.code = 200;
        }
        self.service.audit.emit(event).await;
    }

    async fn roll_all(&mut self, now: i64) {
        let owned = self.service.works.works.scan("", |works| {
            let mut by_set: HashMap<String, HashMap<String, Observed>> = HashMap::new();
            for (_, w) in works.filter(|(_, w)| !w.work_set.is_empty()) {
                by_set
                    .entry(w.work_set.clone())
                    .or_default()
                    .insert(w.cluster.clone(), Observed::of(w));
            }
            by_set
        });
        let sets = self
            .service
            .worksets
            .scan("", |all| all.map(|(_, s)| s.clone()).collect::<Vec<_>>());
        let placements = self.service.placements.scan("", |all| {
            all.map(|(k, p)| (k.to_owned(), p.clone()))
                .collect::<HashMap<_, _>>()
        });
        let (Some(mut owned), Some(sets), Some(placements)) = (owned, sets, placements) else {
            return;
        };
        let names: HashSet<String> = sets.iter().map(|s| s.name.clone()).collect();
        self.soak.retain(|(s, _), _| names.contains(s));
        self.blocked.retain(|(s, _), _| names.contains(s));
        self.outcomes.retain(|s, _| names.contains(s));
        for set in sets {
            let observed = owned.remove(&set.name).unwrap_or_default();
            self.roll(&set, &observed, &placements, now).await;
        }
        for (set, works) in owned {
            let stale: Vec<String> = works
                .into_iter()
                .filter(|(_, o)| !o.deleting && now - o.released_ms > ORPHAN_AGE_MS)
                .map(|(c, _)| c)
                .collect();
            self.withdraw(&set, stale).await;
        }
    }

    /// Succeeded, but not yet for `min_ms`.
    fn soaking(
        &mut self,
        set: &str,
        cluster: &str,
        generation: i64,
        st: &State,
        min_ms: i64,
        now: i64,
    ) -> bool {
        let k = (set.to_owned(), cluster.to_owned());
        if *st != State::Succeeded {
            self.soak.remove(&k);
            return false;
        }
        let since = self.soak.entry(k).or_insert((generation, now));
        if since.0 != generation {
            *since = (generation, now);
        }
        min_ms > 0 && now - since.1 < min_ms
    }

    async fn roll(
        &mut self,
        set: &WorkSet,
        observed: &HashMap<String, Observed>,
        placements: &HashMap<String, Placement>,
        now: i64,
    ) {
        if set.deletion_ms > 0 {
            self.finish_deletion(set, observed).await;
            return;
        }
        let works = &self.service.works.works;
        self.blocked.retain(|(s, c), _| {
            s != &set.name
                || works
                    .peek(&key(c, s), |w| w.is_some_and(|w| w.work_set != *s))
                    .unwrap_or(true)
        });
        let generation = set.generation;
        let mut claimed: HashSet<&str> = HashSet::new();
        let mut views = Vec::new();
        let mut releases: Vec<(String, String)> = Vec::new();
        for r in &set.placement_refs {
            let strategy = r.rollout_strategy.clone().unwrap_or_default();
            let Some(p) = placements.get(&r.name) else {
                views.push(RefView {
                    name: r.name.clone(),
                    found: false,
                    groups: Vec::new(),
                    states: Vec::new(),
                    outcome: Outcome::Progressing,
                });
                continue;
            };
            let decided = p
                .status
                .as_ref()
                .map_or(&[][..], |s| s.decision_groups.as_slice());
            let mut members = Vec::new();
            for c in decided.iter().flat_map(|g| g.clusters.iter()) {
                if !claimed.insert(c.as_str()) {
                    continue;
                }
                let blocked = if self.blocked.is_empty() {
                    None
                } else {
                    self.blocked.get(&(set.name.clone(), c.clone()))
                };
                let st = match blocked {
                    Some(why) => State::Failed(why.clone()),
                    None => state(
                        observed.get(c),
                        generation,
                        strategy.progress_deadline_ms,
                        now,
                    ),
                };
                let min = strategy.min_success_time_ms;
                let soaking = min > 0 && self.soaking(&set.name, c, generation, &st, min, now);
                members.push(Member {
                    cluster: c.as_str(),
                    state: st,
                    soaking,
                });
            }
            let concurrency = decided.iter().map(|g| g.clusters.len()).max().unwrap_or(1);
            let step = plan(&strategy, decided, &members, concurrency);
            releases.extend(
                step.release
                    .iter()
                    .map(|c| ((*c).to_owned(), r.name.clone())),
            );
            views.push(RefView {
                name: r.name.clone(),
                found: true,
                states: members
                    .into_iter()
                    .map(|m| (m.cluster.to_owned(), m.state))
                    .collect(),
                groups: decided.to_vec(),
                outcome: step.outcome,
            });
        }
        let leaving: Vec<String> = observed
            .iter()
            .filter(|(c, o)| !o.deleting && !claimed.contains(c.as_str()))
            .map(|(c, _)| c.clone())
            .collect();
        let errors = self.release(set, releases, now).await;
        self.withdraw(&set.name, leaving).await;
        let status = status_of(set, observed, &views, &errors, now);
        self.audit_outcome(set, &views).await;
        if set.status.as_ref() != Some(&status) {
            self.write_status(set, status).await;
        }
    }

    /// Writes the works of `releases` (cluster, placement); returns the errors that are not
    /// conflicts (those block the cluster and show as its failure).
    async fn release(
        &mut self,
        set: &WorkSet,
        releases: Vec<(String, String)>,
        now: i64,
    ) -> Vec<String> {
        if releases.is_empty() {
            return Vec::new();
        }
        // Owned values only: the stream's futures must be Send for every lifetime.
        let shared = std::sync::Arc::new(set.clone());
        let works = self.service.works.clone();
        let results: Vec<(String, String, Result<Released, crate::error::ApiError>)> =
            futures::stream::iter(releases)
                .map(move |(cluster, placement)| {
                    let (works, set) = (works.clone(), shared.clone());
                    async move {
                        let result = works.release(&cluster, &set, &placement, now).await;
                        (cluster, placement, result)
                    }
                })
                .buffer_unordered(WRITES_IN_FLIGHT)
                .collect()
                .await;
        let mut written: HashMap<String, Vec<String>> = HashMap::new();
        let mut errors = Vec::new();
        for (cluster, placement, result) in results {
            match result {
                Ok(Released::Written) => written.entry(placement).or_default().push(cluster),
                Ok(_) => {}
                Err(e) if e.code == 409 => {
                    self.blocked.insert((set.name.clone(), cluster), e.message);
                }
                Err(e) => {
                    tracing::warn!(set = %set.name, %cluster, error = %e, "could not write a generated work");
                    errors.push(format!("{cluster}: {e}"));
                }
            }
        }
        for (placement, mut clusters) in written {
            clusters.sort();
            self.emit(AuditEvent {
                cluster: single(&clusters),
                kind: "workset".into(),
                action: "rollout".into(),
                object: format!("workset/{}", set.name),
                message: format!(
                    "generation {}: released {} clusters of placement {placement}: {}",
                    set.generation,
                    clusters.len(),
                    named(&clusters)
                ),
                ..Default::default()
            })
            .await;
        }
        errors
    }

    async fn withdraw(&self, set: &str, mut clusters: Vec<String>) {
        if clusters.is_empty() {
            return;
        }
        clusters.sort();
        let works = self.service.works.clone();
        let owner = set.to_owned();
        let failures: Vec<String> = futures::stream::iter(clusters.clone())
            .map(move |c| {
                let (works, owner) = (works.clone(), owner.clone());
                async move {
                    let failed = works.withdraw(&c, &owner).await.err();
                    failed.map(|e| format!("{c}: {e}"))
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .filter_map(std::future::ready)
            .collect()
            .await;
        for f in &failures {
            tracing::warn!(set, error = %f, "could not remove a generated work");
        }
        self.emit(AuditEvent {
            cluster: single(&clusters),
            kind: "workset".into(),
            action: "remove".into(),
            object: format!("workset/{set}"),
            message: format!(
                "removing from {} clusters: {}",
                clusters.len(),
                named(&clusters)
            ),
            ..Default::default()
        })
        .await;
    }

    async fn finish_deletion(&mut self, set: &WorkSet, observed: &HashMap<String, Observed>) {
        let pending: Vec<String> = observed
            .iter()
            .filter(|(_, o)| !o.deleting)
            .map(|(c, _)| c.clone())
            .collect();
        self.withdraw(&set.name, pending).await;
        if !observed.is_empty() {
            return;
        }
        let gone = self
            .service
            .worksets
            .update(&set.name, |current| match current {
                Some(s) if s.deletion_ms > 0 => Ok((Action::Delete, true)),
                _ => Ok::<_, crate::error::ApiError>((Action::Keep, false)),
            })
            .await;
        match gone {
            Ok(true) => {
                let object = set
                    .template
                    .as_ref()
                    .map(|t| t.manifests_object.clone())
                    .unwrap_or_default();
                if !object.is_empty() {
                    self.service.works.manifests.delete(&object).await;
                }
                self.emit(AuditEvent {
                    kind: "workset".into(),
                    action: "delete".into(),
                    object: format!("workset/{}", set.name),
                    message: "every generated work is removed".into(),
                    ..Default::default()
                })
                .await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(set = %set.name, error = %e, "could not delete a work set"),
        }
    }

    async fn write_status(&self, set: &WorkSet, status: WorkSetStatus) {
        let written = self
            .service
            .worksets
            .update(&set.name, |current| match current {
                Some(mut s)
                    if s.generation == set.generation
                        && s.deletion_ms == 0
                        && s.status.as_ref() != Some(&status) =>
                {
                    s.status = Some(status.clone());
                    Ok((Action::Put(Box::new(s)), ()))
                }
                _ => Ok::<_, crate::error::ApiError>((Action::Keep, ())),
            })
            .await;
        if let Err(e) = written {
            tracing::warn!(set = %set.name, error = %e, "could not store rollout status");
        }
    }

    async fn audit_outcome(&mut self, set: &WorkSet, views: &[RefView]) {
        let (label, message) = match overall(views) {
            Outcome::Complete => (
                "complete",
                format!("generation {} rolled out", set.generation),
            ),
            Outcome::Stopped(why) => ("stopped", why),
            Outcome::Progressing => ("progressing", String::new()),
        };
        let now = (set.generation, label);
        if self.outcomes.insert(set.name.clone(), now) == Some(now) || label == "progressing" {
            return;
        }
        let failed = label == "stopped";
        self.emit(AuditEvent {
            kind: "workset".into(),
            action: label.into(),
            object: format!("workset/{}", set.name),
            outcome: if failed { "failure" } else { "success" }.into(),
            code: if failed { 500 } else { 200 },
            message,
            ..Default::default()
        })
        .await;
    }
}

fn overall(views: &[RefView]) -> Outcome {
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
fn status_of(
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

fn single(clusters: &[String]) -> String {
    match clusters {
        [one] => one.clone(),
        _ => String::new(),
    }
}

/// `a, b, c` or `a, b, … (+8 more)`.
fn named(items: &[impl AsRef<str>]) -> String {
    let shown: Vec<&str> = items.iter().take(NAMED).map(AsRef::as_ref).collect();
    let more = items.len().saturating_sub(NAMED);
    if more > 0 {
        format!("{}, … (+{more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}
