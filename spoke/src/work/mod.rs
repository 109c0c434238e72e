//! The spoke's work loop (OCM's work agent): for every ManifestWork the hub wants here, fetch
//! its manifests, apply them in kind order with their update strategy, record what was applied,
//! delete what a new generation dropped, and push status to the hub whenever it changes —
//! after an apply, and when a watch sees an owned object change (drift is corrected then).
//! A deleted work's resources are removed as its `deleteOption` says before the hub forgets it.

pub mod apply;
pub mod cluster;
pub mod fetch;
pub mod jsonpath;
pub mod memory;
pub mod order;
pub mod record;
pub mod status;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use fleetbus_nats::{request_id, rpc};
use fleetbus_schema::HubTopic;
use fleetbus_schema::v1::{
    ConditionStatus, ManifestCondition, ManifestConfig, ManifestWork, PropagationPolicy,
    WorkStatus, WorkStatusAck, WorkStatusReport,
};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::desired::Desired;
use crate::kube::Kube;
use crate::msa::now_ms;
use apply::{Target, declared_meta};
use cluster::{Cluster, KubeCluster};
use record::{Record, Resource};
use status::{Failure, Live};

/// Look at every work this often even without events.
const RESYNC: Duration = Duration::from_secs(60);
/// First retry after a failure; doubles up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Events arriving within this window are handled together.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// One work as the loop knows it.
struct Known {
    spec: ManifestWork,
    status: WorkStatus,
    reported: Option<WorkStatus>,
    failures: u32,
}

struct Loop<C> {
    client: async_nats::Client,
    config: Config,
    cluster: C,
    saved: HashMap<String, Record>,
    fetcher: fetch::Fetcher,
    works: HashMap<String, Known>,
    retry: HashMap<String, Instant>,
}

/// Runs against the real cluster until `stop`; its watches run on `tracker`.
pub async fn run(
    client: async_nats::Client,
    config: Config,
    kube: Kube,
    desired: Desired,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let (changed_tx, changed) = mpsc::unbounded_channel();
    let cluster = KubeCluster::new(
        kube.client.clone(),
        config.work_namespace.clone(),
        changed_tx,
        tracker,
        stop.clone(),
    );
    run_on(client, config, cluster, desired, changed, stop).await;
}

/// Runs against `cluster` until `stop`; `changed` names works whose objects changed.
pub async fn run_on<C: Cluster>(
    client: async_nats::Client,
    config: Config,
    cluster: C,
    mut desired: Desired,
    mut changed: mpsc::UnboundedReceiver<String>,
    stop: CancellationToken,
) {
    let saved = loop {
        match cluster.load_records().await {
            Ok(saved) => break saved,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read applied-work records; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(MAX_RETRY) => {}
                }
            }
        }
    };
    let mut this = Loop {
        fetcher: fetch::Fetcher::new(client.clone(), &config),
        client,
        cluster,
        saved,
        config,
        works: HashMap::new(),
        retry: HashMap::new(),
    };
    let mut resync = tokio::time::interval(RESYNC);
    resync.reset();
    loop {
        let next_retry = this.retry.values().min().copied();
        let due: Vec<String> = tokio::select! {
            () = stop.cancelled() => return,
            result = desired.changed() => {
                if result.is_err() {
                    return;
                }
                let current = desired.borrow_and_update().clone();
                match current {
                    Some(d) => this.update_desired(d.works).await,
                    None => Vec::new(),
                }
            }
            Some(first) = changed.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                let mut names = HashSet::from([first]);
                while let Ok(more) = changed.try_recv() {
                    names.insert(more);
                }
                names.into_iter().collect()
            }
            () = sleep_until(next_retry) => {
                let now = Instant::now();
                this.retry.iter().filter(|(_, at)| **at <= now).map(|(n, _)| n.clone()).collect()
            }
            _ = resync.tick() => this.works.keys().cloned().collect(),
        };
        // A reconcile that started finishes (its status reaches the hub); the stop signal is
        // looked at between works, so shutdown does not wait for every due work.
        for (done, name) in due.iter().enumerate() {
            if stop.is_cancelled() {
                tracing::info!(
                    reconciled = done,
                    left = due.len() - done,
                    "stopping between works; the others are reconciled at the next start"
                );
                return;
            }
            this.retry.remove(name);
            this.reconcile(name).await;
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl<C: Cluster> Loop<C> {
    /// Takes a new desired list; returns the works to reconcile now.
    async fn update_desired(&mut self, works: Vec<ManifestWork>) -> Vec<String> {
        let mut due = Vec::new();
        let wanted: HashSet<String> = works.iter().map(|w| w.name.clone()).collect();
        for spec in works {
            let name = spec.name.clone();
            match self.works.get_mut(&name) {
                // Whether manifests came inline depends on the sync's size budget, not the spec.
                Some(known) if same_spec(&known.spec, &spec) => {}
                Some(known) => {
                    known.spec = spec;
                    known.failures = 0;
                    due.push(name);
                }
                None => {
                    self.works.insert(
                        name.clone(),
                        Known {
                            spec,
                            status: WorkStatus::default(),
                            reported: None,
                            failures: 0,
                        },
                    );
                    due.push(name);
                }
            }
        }
        self.works.retain(|name, _| wanted.contains(name));
        let digests: Vec<&str> = self
            .works
            .values()
            .map(|k| k.spec.manifests_digest.as_str())
            .collect();
        self.fetcher.retain(&digests);
        // Records of works the hub no longer has: remove what they created, as they said.
        let orphaned: Vec<String> = self
            .saved
            .keys()
            .filter(|n| !wanted.contains(*n))
            .cloned()
            .collect();
        for name in orphaned {
            tracing::info!(work = %name, "the hub no longer has this work; removing what it applied");
            if self.remove_resources(&name).await {
                self.forget(&name).await;
            }
        }
        due
    }

    /// One reconcile of `name`, in its span, under a request id that its status report carries
    /// to the hub (so the hub's log lines for that report carry it too).
    async fn reconcile(&mut self, name: &str) {
        let Some(spec) = self.works.get(name).map(|k| k.spec.clone()) else {
            return;
        };
        let id = request_id::fresh();
        let span = tracing::info_span!(
            "reconcile",
            cluster = %self.config.cluster,
            work = %name,
            generation = spec.generation,
            request_id = %id,
        );
        let ok = request_id::scope(id, async {
            if spec.deletion_ms > 0 {
                self.finalize(&spec).await
            } else {
                self.apply_work(&spec).await
            }
        })
        .instrument(span)
        .await;
        let Some(known) = self.works.get_mut(name) else {
            return;
        };
        if ok {
            known.failures = 0;
        } else {
            let delay = RETRY
                .saturating_mul(1 << known.failures.min(5))
                .min(MAX_RETRY);
            known.failures += 1;
            self.retry.insert(name.to_owned(), Instant::now() + delay);
        }
    }

    /// Applies every manifest; returns false when something should be retried.
    async fn apply_work(&mut self, work: &ManifestWork) -> bool {
        let now = now_ms();
        let manifests = match self.fetcher.get(work).await {
            Ok(m) => m,
            Err(why) => {
                tracing::warn!(work = %work.name, error = %why, "manifests not fetched");
                return false;
            }
        };
        let previous = self.saved.get(&work.name).cloned().unwrap_or_default();
        let known_status = self
            .works
            .get(&work.name)
            .map(|k| k.status.clone())
            .unwrap_or_default();
        let kinds: Vec<&str> = manifests
            .iter()
            .map(|m| {
                m.as_ref()
                    .ok()
                    .and_then(|v| v.get("kind"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
            })
            .collect();
        let mut conditions: Vec<Option<ManifestCondition>> = vec![None; manifests.len()];
        let mut resources = Vec::new();
        let mut targets = Vec::new();
        let mut all_applied = true;
        for i in order::apply_order(&kinds) {
            let before = known_status
                .manifests
                .iter()
                .find(|m| m.resource_meta.as_ref().map(|r| r.ordinal) == Some(i as i32));
            let object = match &manifests[i] {
                Ok(object) => object,
                Err(why) => {
                    let failure = Failure {
                        reason: "AppliedManifestFailed".into(),
                        message: why.clone(),
                    };
                    conditions[i] = Some(status::manifest(
                        declared_meta(&Value::Null, i),
                        &Err(failure),
                        &Live::Absent,
                        &[],
                        before,
                        now,
                    ));
                    all_applied = false;
                    continue;
                }
            };
            let target = match self.cluster.resolve(object).await {
                Ok(t) => t,
                Err(failure) => {
                    conditions[i] = Some(status::manifest(
                        declared_meta(object, i),
                        &Err(failure),
                        &Live::Absent,
                        &[],
                        before,
                        now,
                    ));
                    all_applied = false;
                    continue;
                }
            };
            let config = config_for(work, &target);
            let strategy = config
                .and_then(|c| c.update_strategy.clone())
                .unwrap_or_default();
            let rules = config.map(|c| c.feedback_rules.clone()).unwrap_or_default();
            let earlier = previous
                .resources
                .iter()
                .find(|r| r.same_object(&Resource::new(&target, String::new(), false)));
            let live = self.cluster.get(&target).await;
            let (result, live) = match self
                .cluster
                .apply(&target, object, &strategy, live, earlier.is_some())
                .await
            {
                Ok((live, created)) => {
                    let uid = uid(&live);
                    let created = created
                        || earlier.is_some_and(|e| e.created && (e.uid == uid || uid.is_empty()));
                    resources.push(Resource::new(&target, uid, created));
                    (Ok(()), live)
                }
                Err(failure) => {
                    all_applied = false;
                    if let Some(e) = earlier {
                        resources.push(e.clone());
                    }
                    let live = self.cluster.get(&target).await;
                    (Err(failure), live)
                }
            };
            if target.resource.kind == "CustomResourceDefinition" {
                self.cluster.forget_kinds();
            }
            conditions[i] = Some(status::manifest(
                target.meta(i),
                &result,
                &live,
                &rules,
                before,
                now,
            ));
            targets.push(target);
        }
        let record = Record {
            generation: work.generation,
            policy: policy_name(work),
            orphans: orphaning_rules(work),
            resources,
        };
        // Drop what this generation no longer has (unless the delete option keeps it).
        for gone in previous
            .resources
            .iter()
            .filter(|r| !record.resources.iter().any(|n| n.same_object(r)))
        {
            if gone.created && !record.keeps(gone) {
                match self.cluster.delete(&gone.target(), &gone.uid).await {
                    Ok(_) => {
                        tracing::info!(work = %work.name, kind = %gone.kind, name = %gone.name, "removed a dropped manifest")
                    }
                    Err(f) => {
                        tracing::warn!(work = %work.name, kind = %gone.kind, name = %gone.name, error = %f.message, "cannot remove a dropped manifest")
                    }
                }
            }
        }
        let mut saved_ok = true;
        if self.saved.get(&work.name) != Some(&record) {
            match self.cluster.save_record(&work.name, &record).await {
                Ok(()) => {
                    self.saved.insert(work.name.clone(), record);
                }
                Err(e) => {
                    tracing::warn!(work = %work.name, error = %e, "cannot record what the work applied");
                    saved_ok = false;
                }
            }
        }
        self.cluster.watch(&work.name, &targets);
        let mut status = WorkStatus {
            conditions: known_status.conditions.clone(),
            manifests: conditions.into_iter().flatten().collect(),
            observed_generation: work.generation,
            reported_ms: 0,
        };
        status.conditions.retain(|c| c.r#type != "Deleting");
        status::work(&mut status.conditions, &status.manifests, now);
        let reported = self.report(&work.name, status, false).await;
        all_applied && saved_ok && reported
    }

    /// Removes a deleted work's resources; reports `deleted` once they are gone.
    async fn finalize(&mut self, work: &ManifestWork) -> bool {
        if self.remove_resources(&work.name).await {
            let done = self.report(&work.name, WorkStatus::default(), true).await;
            if done {
                self.forget(&work.name).await;
                self.works.remove(&work.name);
            }
            return done;
        }
        let mut status = self
            .works
            .get(&work.name)
            .map(|k| k.status.clone())
            .unwrap_or_default();
        fleetbus_schema::conditions::set(
            &mut status.conditions,
            "Deleting",
            ConditionStatus::True,
            "WorkDeleting",
            "removing the applied resources",
            now_ms(),
        );
        self.report(&work.name, status, false).await;
        false
    }

    /// Deletes what the record of `name` created and does not keep; true once all is gone.
    async fn remove_resources(&mut self, name: &str) -> bool {
        let Some(record) = self.saved.get(name).cloned() else {
            return true;
        };
        let mut all_gone = true;
        let mut doomed: Vec<&Resource> = record
            .resources
            .iter()
            .filter(|r| r.created && !record.keeps(r))
            .collect();
        doomed.sort_by_key(|r| std::cmp::Reverse(order::rank(&r.kind)));
        for r in doomed {
            match self.cluster.delete(&r.target(), &r.uid).await {
                Ok(gone) => all_gone &= gone,
                Err(f) => {
                    tracing::warn!(work = name, kind = %r.kind, name = %r.name, error = %f.message, "cannot delete");
                    all_gone = false;
                }
            }
        }
        all_gone
    }

    async fn forget(&mut self, name: &str) {
        match self.cluster.remove_record(name).await {
            Ok(()) => {
                self.saved.remove(name);
                self.cluster.watch(name, &[]);
            }
            Err(e) => {
                tracing::warn!(work = name, error = %e, "cannot remove the applied-work record")
            }
        }
    }

    /// Sends status when it changed; true when the hub has it.
    async fn report(&mut self, name: &str, status: WorkStatus, deleted: bool) -> bool {
        if let Some(known) = self.works.get_mut(name) {
            known.status = status.clone();
            if !deleted && known.reported.as_ref() == Some(&status) {
                return true;
            }
        }
        let report = WorkStatusReport {
            name: name.to_owned(),
            status: Some(status.clone()),
            deleted,
        };
        let subject = self
            .config
            .subjects
            .hub(&self.config.cluster, HubTopic::Work);
        match rpc::call::<_, WorkStatusAck>(&self.client, subject, &report).await {
            Ok(_) => {
                tracing::debug!(
                    observed_generation = status.observed_generation,
                    deleted,
                    "work status reported"
                );
                if let Some(known) = self.works.get_mut(name) {
                    known.reported = Some(status);
                }
                true
            }
            Err(e) => {
                tracing::warn!(work = name, error = %e, "work status not delivered; retrying");
                false
            }
        }
    }
}

fn same_spec(a: &ManifestWork, b: &ManifestWork) -> bool {
    let strip = |w: &ManifestWork| ManifestWork {
        manifests: None,
        ..w.clone()
    };
    strip(a) == strip(b)
}

fn uid(live: &Live) -> String {
    match live {
        Live::Present(v) => v
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        _ => String::new(),
    }
}

/// The manifest config whose resource identifier names `target`.
fn config_for<'a>(work: &'a ManifestWork, target: &Target) -> Option<&'a ManifestConfig> {
    work.manifest_configs.iter().find(|c| {
        c.resource_identifier.as_ref().is_some_and(|id| {
            id.group == target.resource.group
                && id.resource == target.resource.plural
                && id.name == target.name
                && id.namespace == target.namespace
        })
    })
}

fn policy_name(work: &ManifestWork) -> String {
    let policy = work
        .delete_option
        .as_ref()
        .map(|d| d.propagation_policy())
        .unwrap_or_default();
    match policy {
        PropagationPolicy::Foreground => "Foreground",
        PropagationPolicy::Orphan => "Orphan",
        PropagationPolicy::SelectivelyOrphan => "SelectivelyOrphan",
    }
    .into()
}

fn orphaning_rules(work: &ManifestWork) -> Vec<record::Rule> {
    work.delete_option
        .iter()
        .flat_map(|d| &d.orphaning_rules)
        .map(|r| {
            (
                r.group.clone(),
                r.resource.clone(),
                r.namespace.clone(),
                r.name.clone(),
            )
        })
        .collect()
}
