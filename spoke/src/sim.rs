//! A simulated spoke for the fleet benchmark: the real join (bootstrap identity, CSR, accept),
//! its own NATS connection with the cluster identity, real heartbeats, the real desired-state
//! sync and the real work loop — applied to an in-memory cluster instead of a kube-apiserver.
//! No tokens, no tunnel, no certificate rotation (a benchmark is shorter than a certificate).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fleetbus_nats::connect::{self, connect_retrying};
use fleetbus_schema::v1::{ClusterClaims, Heartbeat};
use fleetbus_schema::{HubTopic, Identity};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::work::memory::MemoryCluster;

/// The apiserver version a simulated cluster claims.
pub const SIMULATED_VERSION: &str = "v1.33.0-fleetbus-sim";

/// What a benchmark can observe of one simulated spoke.
#[derive(Default)]
pub struct Probe {
    /// When it first connected with its cluster identity.
    pub connected: OnceLock<Instant>,
}

/// Runs a simulated spoke until `shutdown`.
pub async fn run(
    config: Config,
    cluster: MemoryCluster,
    probe: Arc<Probe>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !crate::join::has_valid_certificate(&config) {
        let claims = ClusterClaims {
            kube_version: SIMULATED_VERSION.into(),
            labels: config.labels.clone().into_iter().collect(),
        };
        if !crate::join::join(&config, claims.clone(), &shutdown).await? {
            return Ok(());
        }
    }
    let identity = Identity::Spoke(config.cluster.clone());
    let tls = config.spoke_tls();
    let options = || {
        connect::options(&tls, &config.subjects, &identity)
            .request_timeout(Some(Duration::from_secs(10)))
    };
    let Some(client) =
        connect_retrying(&config.nats_url, &tls, &identity, options, &shutdown).await
    else {
        return Ok(());
    };
    let _ = probe.connected.set(Instant::now());
    let tracker = tokio_util::task::TaskTracker::new();
    let desired = crate::desired::spawn(&tracker, client.clone(), config.clone(), shutdown.clone());
    // An in-memory cluster changes only when the work loop changes it: nothing to watch.
    let (_unused, changed) = mpsc::unbounded_channel();
    tracker.spawn(crate::work::run_on(
        client.clone(),
        config.clone(),
        cluster,
        desired,
        changed,
        shutdown.clone(),
    ));
    let subject = config.subjects.hub(&config.cluster, HubTopic::Heartbeat);
    let claims = ClusterClaims {
        kube_version: SIMULATED_VERSION.into(),
        labels: config.labels.clone().into_iter().collect(),
    };
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sequence = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let beat = Heartbeat {
            claims: Some(claims.clone()),
            kube_ready: true,
            kube_message: String::new(),
            sequence,
        };
        sequence += 1;
        if let Err(e) = client
            .publish(subject.clone(), beat.encode_to_vec().into())
            .await
        {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
    tracker.close();
    tracker.wait().await;
    // Close at once: a lost spoke should look lost to the hub.
    drop(client);
    Ok(())
}
