//! The steps the fleet benchmark's scenarios are made of: accepting clusters as they join,
//! waiting for availability, sending one work request per cluster, collecting the hub's audit
//! events for the spokes' reports, refusing impostors, and probing the hub API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbus_cli::hub_client::HubClient;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    Acceptance, ClusterNames, ConditionStatus, CreateWorkRequest, ManifestWork, Manifests,
    WhoAmIReply, WhoAmIRequest, WorkRef,
};
use fleetbus_spoke::sim::Probe;
use fleetbus_spoke::work::memory::MemoryCluster;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::{Agent, now_ms};
use crate::fleet::Fleet;

const AVAILABLE: &str = "ManagedClusterConditionAvailable";

/// Starts a spoke with a new key for each of `taken`'s names; returns how long each took to be
/// refused and the hub's reason.
pub async fn refuse_impostors(
    fleet: &Fleet,
    taken: &[Agent],
    timeout: Duration,
) -> anyhow::Result<(Vec<Duration>, String)> {
    let attempts = taken.iter().map(|agent| {
        let mut config = agent.config.clone();
        config.state_dir = fleet
            .nats
            .dir
            .path()
            .join("impostors")
            .join(config.cluster.as_str());
        let started = Instant::now();
        async move {
            let run = fleetbus_spoke::sim::run(
                config,
                MemoryCluster::default(),
                Arc::new(Probe::default()),
                CancellationToken::new(),
            );
            match tokio::time::timeout(timeout, run).await {
                Ok(Err(refused)) => Ok((started.elapsed(), refused.to_string())),
                Ok(Ok(())) => anyhow::bail!("an impostor was admitted"),
                Err(_) => {
                    anyhow::bail!("an impostor was neither admitted nor refused within {timeout:?}")
                }
            }
        }
    });
    let results = futures::future::try_join_all(attempts).await?;
    let reason = results.first().map(|(_, r)| r.clone()).unwrap_or_default();
    Ok((results.into_iter().map(|(d, _)| d).collect(), reason))
}

/// Accepts pending clusters as they ask, until `total` are accepted. A slow answer is retried
/// (the API prober records how slow the hub was).
pub async fn accept_all(
    admin: Arc<HubClient>,
    total: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "clusters not all accepted within {timeout:?}"
        );
        let clusters = match admin.all_clusters().await {
            Ok(clusters) => clusters,
            Err(e) => {
                eprintln!("listing clusters failed ({e}); retrying");
                continue;
            }
        };
        let accepted = clusters
            .iter()
            .filter(|c| c.acceptance() == Acceptance::Accepted)
            .count();
        eprintln!("joined and accepted: {accepted}/{total}");
        if accepted >= total {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {accepted} of {total} clusters accepted within {timeout:?}"
        );
        let pending: Vec<String> = clusters
            .into_iter()
            .filter(|c| c.acceptance() == Acceptance::Pending)
            .map(|c| c.name)
            .collect();
        for batch in pending.chunks(500) {
            let _: ClusterNames = admin
                .call(
                    ApiEndpoint::ClustersAccept,
                    &ClusterNames {
                        names: batch.to_vec(),
                    },
                )
                .await?;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn available(c: &fleetbus_schema::v1::Cluster) -> bool {
    c.conditions
        .iter()
        .any(|k| k.r#type == AVAILABLE && k.status() == ConditionStatus::True)
}

/// Waits until `count` clusters matching `which` are Available.
pub async fn wait_available(
    admin: &HubClient,
    which: impl Fn(&str) -> bool,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let up = admin
            .all_clusters()
            .await?
            .iter()
            .filter(|c| which(&c.name) && available(c))
            .count();
        if up >= count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {up} of {count} clusters Available within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Per cluster of `names`: time from `start` until its availability is first seen as `want`.
pub async fn time_until(
    admin: &HubClient,
    names: &[String],
    want: bool,
    start: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let mut seen: HashMap<String, Duration> = HashMap::new();
    while seen.len() < names.len() {
        anyhow::ensure!(
            start.elapsed() < timeout,
            "{} of {} clusters changed within {timeout:?}",
            seen.len(),
            names.len()
        );
        let clusters = admin.all_clusters().await?;
        let at = start.elapsed();
        for c in clusters
            .iter()
            .filter(|c| names.contains(&c.name) && available(c) == want)
        {
            seen.entry(c.name.clone()).or_insert(at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(seen.into_values().collect())
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// Create one work per cluster.
    Create,
    /// Give each a new generation.
    Update,
    /// Delete them.
    Delete,
}

/// Sends one request per cluster, `concurrency` at a time; returns when each was sent (Unix ms).
pub async fn send_all(
    admin: &Arc<HubClient>,
    names: &[String],
    step: Step,
    concurrency: usize,
) -> anyhow::Result<HashMap<String, i64>> {
    let calls = names.iter().cloned().map(|cluster| {
        let admin = admin.clone();
        async move {
            let sent = now_ms();
            match step {
                Step::Delete => {
                    let r = WorkRef {
                        cluster: cluster.clone(),
                        name: "bench".into(),
                    };
                    let _: ManifestWork = admin.call(ApiEndpoint::WorkDelete, &r).await?;
                }
                Step::Create | Step::Update => {
                    let data = if step == Step::Create { "v1" } else { "v2" };
                    let object = serde_json::json!({
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("bench-{cluster}"), "namespace": "default"},
                        "data": {"generation": data},
                    });
                    let request = CreateWorkRequest {
                        work: Some(ManifestWork {
                            name: "bench".into(),
                            cluster: cluster.clone(),
                            ..Default::default()
                        }),
                        overwrite: step == Step::Update,
                        manifests: Some(Manifests {
                            objects: vec![serde_json::to_vec(&object)?],
                        }),
                        ..Default::default()
                    };
                    let _: ManifestWork = admin.call(ApiEndpoint::WorkCreate, &request).await?;
                }
            }
            anyhow::Ok((cluster, sent))
        }
    });
    let mut sent = HashMap::new();
    let mut results = futures::stream::iter(calls).buffer_unordered(concurrency.max(1));
    while let Some(result) = results.next().await {
        let (cluster, at) = result?;
        sent.insert(cluster, at);
        if sent.len().is_multiple_of(1000) {
            eprintln!("{step:?}: {}/{} requests sent", sent.len(), names.len());
        }
    }
    Ok(sent)
}

/// Latency per cluster from the request to the hub's audit event for the spoke's report, and
/// when the last of them happened (Unix ms).
pub async fn collect(
    events: &mut async_nats::Subscriber,
    sent: &HashMap<String, i64>,
    step: Step,
    timeout: Duration,
) -> anyhow::Result<(Vec<Duration>, i64)> {
    let (action, generation) = match step {
        Step::Create => ("apply", "generation 1"),
        Step::Update => ("apply", "generation 2"),
        Step::Delete => ("delete", ""),
    };
    let mut done: HashMap<String, Duration> = HashMap::new();
    let mut last = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while done.len() < sent.len() {
        let message = match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => anyhow::bail!("the audit subscription ended"),
            Err(_) => anyhow::bail!(
                "{step:?}: only {} of {} clusters reported within {timeout:?}",
                done.len(),
                sent.len()
            ),
        };
        let Ok(read) = fleetbus_nats::audit::read(
            &message.subject,
            message.headers.as_ref(),
            &message.payload,
        ) else {
            continue;
        };
        let e = read.event;
        if !e.actor.starts_with("spoke:")
            || e.action != action
            || !e.message.starts_with(generation)
            || e.outcome != "success"
        {
            continue;
        }
        if let Some(at) = sent.get(&e.cluster) {
            let latency = Duration::from_millis((e.time_ms - at).max(0) as u64);
            last = last.max(e.time_ms);
            done.entry(e.cluster).or_insert(latency);
            if done.len().is_multiple_of(1000) {
                eprintln!("{step:?}: {}/{} clusters reported", done.len(), sent.len());
            }
        }
    }
    Ok((done.into_values().collect(), last))
}

/// Calls `whoami` every 250 ms until `stop`; returns the slowest answer and the failures.
pub async fn probe_api(admin: Arc<HubClient>, stop: CancellationToken) -> (Duration, usize) {
    let (mut max, mut failures) = (Duration::ZERO, 0);
    loop {
        let started = Instant::now();
        let answer: Result<WhoAmIReply, _> =
            admin.call(ApiEndpoint::WhoAmI, &WhoAmIRequest {}).await;
        max = max.max(started.elapsed());
        if answer.is_err() {
            failures += 1;
        }
        tokio::select! {
            () = stop.cancelled() => return (max, failures),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
