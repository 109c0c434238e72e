//! The fleetbus agent in a managed cluster: it joins the hub (OCM double opt-in), heartbeats,
//! rotates its certificate, re-joins if the hub revokes it, keeps managed service accounts and
//! their tokens, applies ManifestWorks, and serves the Kubernetes API tunnel.
//!
//! Must not depend on the hub.

pub mod config;
pub mod desired;
pub mod exit_code;
pub mod identity_store;
pub mod join;
pub mod kube;
pub mod msa;
pub mod session;
pub mod sim;
pub mod tokens;
pub mod tunnel;
pub mod tunnel_gather;
pub mod tunnel_session;
pub mod tunnel_stream;
pub mod upstream;
pub mod work;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Args, Config};

use crate::session::SessionEnd;

/// How long the ops endpoints may take to close after the agent stopped.
const OPS_GRACE: Duration = Duration::from_secs(2);

/// Runs the spoke until `shutdown` fires, or until joining fails for good. After `shutdown`
/// it is gone within [`session::GRACE`] and a few seconds more.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kube = kube::Kube::connect(config.kubeconfig.as_deref()).await?;
    let tracker = TaskTracker::new();
    if let Some(addr) = config.metrics_addr {
        let serve = fleetbus_nats::ops::serve(addr, config.stats.metrics.clone(), shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(%addr, error = %e, "cannot serve /metrics");
            }
        });
    }
    let result = run_agent(&config, &kube, &shutdown).await;
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(OPS_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("the ops endpoints did not close within {OPS_GRACE:?}");
    }
    result
}

async fn run_agent(
    config: &Config,
    kube: &kube::Kube,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    loop {
        if !identity_store::ensure(config, kube, shutdown).await? {
            return Ok(());
        }
        match session::run(config, kube, shutdown).await? {
            SessionEnd::Shutdown => return Ok(()),
            // Keep the key; a new join with it is pending until an admin accepts again.
            SessionEnd::Revoked => identity_store::forget(config, kube).await,
        }
    }
}
