//! The fleetbus hub: registration and the auth callout, the cluster inventory in JetStream,
//! availability from heartbeats, and the hub API as a NATS micro service. Several replicas
//! may run at once: requests are served by queue groups and state changes are compare-and-set.
//!
//! Must not depend on the spoke or on Kubernetes.

pub mod api;
pub mod authz;
pub mod config;
pub mod error;
pub mod heartbeats;
pub mod liveness;
pub mod registration;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::ConnectOptions;
use fleetbus_nats::callout::Callout;
use fleetbus_nats::connect::{self, connect_retrying};
use fleetbus_nats::server::AuthKeys;
use fleetbus_schema::Identity;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Args, Config};

use crate::liveness::Liveness;
use crate::registration::Signer;
use crate::store::ClusterStore;

/// How long in-flight requests may take to finish after shutdown is requested.
const GRACE: Duration = Duration::from_secs(5);

/// Runs the hub until `shutdown` fires.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keys = AuthKeys::load(&config.pki)?;
    let ca = config
        .pki
        .load_ca()
        .context("the hub needs the fleet CA (ca.crt, ca.key)")?;
    let signer = Arc::new(Signer::new(ca, config.spoke_cert_validity));
    let tls = config.pki.tls("hub");
    let url = config.nats_url.as_str();
    let tracker = TaskTracker::new();

    // The callout connection comes first: every other fleet connection, the hub's own
    // included, is admitted by it.
    let nkey_options = |seed: String, name: &'static str| {
        let tls = tls.clone();
        move || {
            ConnectOptions::with_nkey(seed.clone())
                .name(name)
                .require_tls(true)
                .add_root_certificates(tls.ca.clone())
                .add_client_certificate(tls.cert.clone(), tls.key.clone())
                .reconnect_delay_callback(connect::reconnect_delay)
        }
    };
    let callout_seed = keys
        .callout
        .seed()
        .map_err(|_| anyhow::anyhow!("invalid callout nkey"))?;
    let Some(callout_client) = connect_retrying(
        url,
        &tls,
        &Identity::Hub,
        nkey_options(callout_seed, "fleetbus hub callout"),
        &shutdown,
    )
    .await
    else {
        return Ok(());
    };
    let (authorizer, store_slot) = authz::HubAuthorizer::new();
    let callout = Arc::new(Callout::new(
        keys.issuer,
        config.subjects.clone(),
        authorizer,
    ));
    tracker.spawn(log_exit(
        "auth callout",
        callout.serve(callout_client.clone(), tracker.clone(), shutdown.clone()),
    ));

    let system_seed = keys
        .system
        .seed()
        .map_err(|_| anyhow::anyhow!("invalid system nkey"))?;
    let Some(sys) = connect_retrying(
        url,
        &tls,
        &Identity::Hub,
        nkey_options(system_seed, "fleetbus hub system"),
        &shutdown,
    )
    .await
    else {
        return Ok(());
    };
    let subjects = config.subjects.clone();
    let hub_options = || {
        connect::options(&tls, &subjects, &Identity::Hub)
            .event_callback(|event| async move { tracing::info!(%event, "nats") })
    };
    let Some(client) = connect_retrying(url, &tls, &Identity::Hub, hub_options, &shutdown).await
    else {
        return Ok(());
    };
    let Some(store) = open_store(&client, &config, &shutdown).await else {
        return Ok(());
    };
    let _ = store_slot.set(store.clone());

    let liveness = Arc::new(Liveness::new(config.lease_timeout));
    let api = Arc::new(api::Api {
        store: store.clone(),
        signer: signer.clone(),
        liveness: liveness.clone(),
        sys: sys.clone(),
        subjects: subjects.clone(),
        admins: config.admins.clone(),
    });
    let (t, s) = (tracker.clone(), shutdown.clone());
    tracker.spawn(log_exit(
        "join",
        registration::serve_join(
            client.clone(),
            store.clone(),
            signer.clone(),
            subjects.clone(),
            t.clone(),
            s.clone(),
        ),
    ));
    tracker.spawn(log_exit(
        "renew",
        registration::serve_renew(
            client.clone(),
            store.clone(),
            signer,
            subjects.clone(),
            t.clone(),
            s.clone(),
        ),
    ));
    tracker.spawn(log_exit(
        "heartbeats",
        heartbeats::serve_heartbeats(
            client.clone(),
            store,
            liveness.clone(),
            subjects.clone(),
            t.clone(),
            s.clone(),
        ),
    ));
    tracker.spawn(log_exit(
        "disconnects",
        heartbeats::serve_disconnects(sys.clone(), liveness, s.clone()),
    ));
    tracker.spawn(log_exit("api", api.serve(client.clone(), t, s)));
    tracing::info!(url, prefix = subjects.prefix(), "hub running");

    shutdown.cancelled().await;
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("in-flight work did not finish within {GRACE:?}");
    }
    for c in [client, sys, callout_client] {
        let _ = c.drain().await;
    }
    Ok(())
}

/// Opens the cluster bucket, retrying while JetStream is not ready yet.
async fn open_store(
    client: &async_nats::Client,
    config: &Config,
    shutdown: &CancellationToken,
) -> Option<ClusterStore> {
    let js = async_nats::jetstream::new(client.clone());
    let bucket = config.subjects.clusters_bucket();
    let mut attempt = 0;
    loop {
        match ClusterStore::open(&js, &bucket, config.replicas).await {
            Ok(store) => return Some(store),
            Err(e) => tracing::warn!(error = %e, attempt, "cannot open hub state; retrying"),
        }
        attempt += 1;
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(connect::reconnect_delay(attempt)) => {}
        }
    }
}

async fn log_exit<E: std::fmt::Display>(
    task: &'static str,
    fut: impl std::future::Future<Output = Result<(), E>>,
) {
    if let Err(e) = fut.await {
        tracing::error!(task, error = %e, "hub task failed");
    }
}
