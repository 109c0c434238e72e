//! The placement controller: keeps every Placement's decisions and every
//! ManifestWorkReplicaSet's rollout current, computed from the hub's in-memory mirror of the
//! fleet (cluster records, availability, works) the moment any of it changes, instead of on a
//! resync period. Decisions are written to the placement's status; releasing a cluster writes
//! its generated work and notifies its spoke at once. Every step is a compare-and-set of a
//! value computed from the same mirror, so replicas running side by side agree.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use fleetbus_schema::Identity;
use fleetbus_schema::v1::{AuditEvent, Placement, WorkSet, WorkSetStatus};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::placement::PlacementService;
use crate::registration::now_ms;
use crate::store::Action;
use crate::work::key;
use crate::workset_rollout::{Member, Observed, Outcome, State, plan, state};
use crate::workset_status::{RefView, named, overall, single, status_of};
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

pub(crate) struct Controller {
    pub(crate) service: PlacementService,
    pub(crate) grace: Duration,
    pub(crate) started: Instant,
    /// Decision inputs last decided on, and when.
    pub(crate) decided: Option<(u64, Instant)>,
    /// Taint per cluster and when this hub first saw it.
    pub(crate) taints: HashMap<String, (&'static str, i64)>,
    /// (set, cluster) → (generation, first seen succeeded), for minSuccessTime.
    soak: HashMap<(String, String), (i64, i64)>,
    /// (set, cluster) → why its work cannot be written (a work of the same name not from the set).
    blocked: HashMap<(String, String), String>,
    /// set → (generation, outcome) last reported, to audit transitions once.
    outcomes: HashMap<String, (i64, &'static str)>,
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

    pub(crate) async fn emit(&self, mut event: AuditEvent) {
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
