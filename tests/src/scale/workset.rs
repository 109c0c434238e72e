//! The fleet benchmark's ManifestWorkReplicaSet scenarios: one placement over every cluster,
//! one set rolled out with `All` (create request → every cluster's report on the hub) and
//! removed again, then one rolled out `Progressive` at `maxConcurrency: 10%`, with the time
//! of each wave taken from the hub's rollout audit events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbus_cli::hub_client::HubClient;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    CreatePlacementRequest, CreateWorkSetRequest, ManifestWork, Manifests, ObjectRef, Placement,
    RolloutStrategy, RolloutType, WorkSet, WorkSetPlacementRef,
};
use futures::StreamExt;

use super::now_ms;
use super::steps::{Step, collect};

/// Creates placement `name` over every accepted cluster; returns how long until it had
/// selected `total`.
pub async fn place_all(
    admin: &Arc<HubClient>,
    name: &str,
    total: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let request = CreatePlacementRequest {
        placement: Some(Placement {
            name: name.into(),
            ..Default::default()
        }),
        overwrite: false,
    };
    let _: Placement = admin.call(ApiEndpoint::PlacementCreate, &request).await?;
    loop {
        let p: Placement = admin
            .call(ApiEndpoint::PlacementGet, &ObjectRef { name: name.into() })
            .await?;
        let selected = p.status.map_or(0, |s| s.number_of_selected_clusters) as usize;
        if selected >= total {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "placement {name} selected {selected} of {total} clusters within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates set `name` over `placement`; returns when the request was sent (Unix ms).
pub async fn create_set(
    admin: &Arc<HubClient>,
    name: &str,
    placement: &str,
    strategy: RolloutStrategy,
) -> anyhow::Result<i64> {
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"set": name},
    });
    let request = CreateWorkSetRequest {
        work_set: Some(WorkSet {
            name: name.into(),
            template: Some(ManifestWork {
                name: name.into(),
                ..Default::default()
            }),
            placement_refs: vec![WorkSetPlacementRef {
                name: placement.into(),
                rollout_strategy: Some(strategy),
            }],
            ..Default::default()
        }),
        manifests: Some(Manifests {
            objects: vec![serde_json::to_vec(&object)?],
        }),
        ..Default::default()
    };
    let sent = now_ms();
    let _: WorkSet = admin.call(ApiEndpoint::WorkSetCreate, &request).await?;
    Ok(sent)
}

/// Deletes set `name`; returns when the request was sent (Unix ms).
pub async fn delete_set(admin: &Arc<HubClient>, name: &str) -> anyhow::Result<i64> {
    let sent = now_ms();
    let _: WorkSet = admin
        .call(ApiEndpoint::WorkSetDelete, &ObjectRef { name: name.into() })
        .await?;
    Ok(sent)
}

/// Every cluster's report after one request at `sent`: per-cluster latencies and the last.
pub async fn reports(
    events: &mut async_nats::Subscriber,
    names: &[String],
    sent: i64,
    step: Step,
    timeout: Duration,
) -> anyhow::Result<(Vec<Duration>, i64)> {
    let all: HashMap<String, i64> = names.iter().map(|n| (n.clone(), sent)).collect();
    collect(events, &all, step, timeout).await
}

/// The release times (Unix ms) of set `name`'s rollout steps received so far, in order.
pub async fn waves(rollouts: &mut async_nats::Subscriber, name: &str) -> Vec<(i64, String)> {
    let object = format!("workset/{name}");
    let mut out = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), rollouts.next()).await
    {
        let Ok(read) = fleetbus_nats::audit::read(
            &message.subject,
            message.headers.as_ref(),
            &message.payload,
        ) else {
            continue;
        };
        let e = read.event;
        if e.action == "rollout" && e.object == object {
            out.push((e.time_ms, e.message));
        }
    }
    out.sort();
    out
}

/// The Progressive strategy of the benchmark.
pub fn progressive(max_concurrency: &str) -> RolloutStrategy {
    RolloutStrategy {
        r#type: RolloutType::Progressive as i32,
        max_concurrency: max_concurrency.into(),
        ..Default::default()
    }
}

/// `10 waves; wave p50 120 ms, max 300 ms`.
pub fn describe_waves(waves: &[(i64, String)], first: i64, last: i64) -> String {
    let mut starts: Vec<i64> = waves.iter().map(|(t, _)| *t).collect();
    starts.push(last);
    let mut lengths: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    lengths.sort();
    let at = |q: f64| {
        lengths
            .get(((q * lengths.len() as f64).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    format!(
        "{} waves; time per wave p50 {} ms, max {} ms; first release {} ms after the request, all done after {} ms",
        waves.len(),
        at(0.5),
        lengths.last().copied().unwrap_or(0),
        starts.first().map_or(0, |s| s - first),
        last - first
    )
}
