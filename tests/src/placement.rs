//! Helpers for Placement and ManifestWorkReplicaSet tests: clusters with labels (real spokes or
//! simulated ones), files in the test folder, and the hub's view of placements, work sets and
//! generated works with millisecond times.

use std::time::Duration;

use fleetbus_cli::hub_client::{CallError, HubClient};
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    Condition, ConditionStatus, ManifestWork, ObjectRef, Placement, WorkRef, WorkSet,
};

use crate::fleet::{Fleet, Running};
use crate::wait::eventually;

/// Starts a spoke `name` with `labels` (on `kube`, or simulated when `None`), accepts it and
/// waits until it is Available.
pub async fn join_labelled(
    fleet: &Fleet,
    name: &str,
    kube: Option<&KubeServer>,
    labels: &[(&str, &str)],
) -> anyhow::Result<Running> {
    let mut config = fleet.spoke_config(name, kube)?;
    config.labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if kube.is_some() {
        return fleet.join(config, ConditionStatus::True).await;
    }
    let spoke = fleet.start_sim(config);
    let wait = Duration::from_secs(30);
    eventually(&format!("{name} registered"), wait, || async {
        fleet.cluster(name).await.ok()?.map(|_| ())
    })
    .await?;
    fleet.cli(&["accept", name]).await?;
    fleet
        .wait_available(name, ConditionStatus::True, wait)
        .await?;
    Ok(spoke)
}

/// Writes `text` to a new file in the test folder and returns its path.
pub fn file(fleet: &Fleet, stem: &str, text: &str) -> anyhow::Result<String> {
    let path = fleet
        .nats
        .dir
        .path()
        .join(format!("{stem}-{}.yaml", rand::random::<u32>()));
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

async fn admin(fleet: &Fleet) -> anyhow::Result<HubClient> {
    Ok(HubClient::connect(&fleet.flags_for("admin")?).await?)
}

/// A placement as the hub stores it.
pub async fn placement(fleet: &Fleet, name: &str) -> anyhow::Result<Placement> {
    let r = ObjectRef { name: name.into() };
    Ok(admin(fleet)
        .await?
        .call(ApiEndpoint::PlacementGet, &r)
        .await?)
}

/// The clusters a placement selects, sorted.
pub async fn decisions(fleet: &Fleet, name: &str) -> anyhow::Result<Vec<String>> {
    let p = placement(fleet, name).await?;
    let mut all: Vec<String> = p
        .status
        .unwrap_or_default()
        .decision_groups
        .into_iter()
        .flat_map(|g| g.clusters)
        .collect();
    all.sort();
    Ok(all)
}

/// A work set with its rollout, if it exists.
pub async fn work_set(fleet: &Fleet, name: &str) -> anyhow::Result<Option<WorkSet>> {
    let r = ObjectRef { name: name.into() };
    match admin(fleet).await?.call(ApiEndpoint::WorkSetGet, &r).await {
        Ok(set) => Ok(Some(set)),
        Err(CallError::Hub { code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The work `name` on `cluster`, if it exists.
pub async fn cluster_work(
    fleet: &Fleet,
    cluster: &str,
    name: &str,
) -> anyhow::Result<Option<ManifestWork>> {
    let r = WorkRef {
        cluster: cluster.into(),
        name: name.into(),
    };
    match admin(fleet).await?.call(ApiEndpoint::WorkGet, &r).await {
        Ok(w) => Ok(Some(w)),
        Err(CallError::Hub { code: 404, .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The condition `kind` of a list.
pub fn find<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.r#type == kind)
}

/// A set's condition `kind`.
pub fn set_condition(set: &WorkSet, kind: &str) -> Option<Condition> {
    find(&set.status.as_ref()?.conditions, kind).cloned()
}

/// When the work's `Applied` became True at its current generation (the spoke's clock,
/// Unix ms), if it has.
pub fn applied_ms(work: &ManifestWork) -> Option<i64> {
    let status = work.status.as_ref()?;
    let c = find(&status.conditions, "Applied")?;
    (c.status() == ConditionStatus::True && status.observed_generation >= work.generation)
        .then_some(c.last_transition_ms)
}
