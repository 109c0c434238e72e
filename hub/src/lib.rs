//! The fleetbus hub: registration and the auth callout, the cluster inventory in JetStream,
//! availability from heartbeats, and the hub API as a NATS micro service. Several replicas
//! may run at once: requests are served by queue groups and state changes are compare-and-set.
//!
//! Must not depend on the spoke or on Kubernetes.

pub mod api;
pub mod audit_object;
pub mod authz;
pub mod cluster_labels;
pub mod clusterset;
pub mod config;
pub mod durables;
pub mod error;
pub mod heartbeats;
pub mod liveness;
pub mod manifests;
pub mod msa;
pub mod msa_spec;
pub mod page;
pub mod placement;
pub mod placement_api;
pub mod placement_controller;
pub mod placement_decide;
pub mod placement_select;
pub mod placement_spec;
pub mod registration;
pub mod secrets;
pub mod service;
pub mod spoke_requests;
pub mod store;
pub mod work;
pub mod work_spec;
pub mod workset;
pub mod workset_rollout;
pub mod workset_status;
pub mod workset_works;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::ConnectOptions;
use fleetbus_nats::audit::{self as audit_events, Auditor};
use fleetbus_nats::callout::Callout;
use fleetbus_nats::connect::{self, connect_retrying};
use fleetbus_nats::server::AuthKeys;
use fleetbus_schema::v1::{DesiredState, SyncRequest};
use fleetbus_schema::{HubTopic, Identity};
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
    let (authorizer, authz_slot) = authz::HubAuthorizer::new(config.admins.clone());
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
    let audit = Auditor::new(client.clone(), subjects.clone(), &Identity::Hub);
    let secrets_key = secrets::load_key(&config.pki.secrets_key())?;
    let Some((store, msa, works)) =
        open_state(&client, &config, secrets_key, &audit, &shutdown).await
    else {
        return Ok(());
    };
    let _ = authz_slot.set(authz::AuthzState {
        clusters: store.clone(),
        grants: msa.grants.clone(),
    });

    let liveness = Arc::new(Liveness::new(config.lease_timeout));
    let metrics = Arc::new(hub_metrics());
    if let Some(addr) = config.metrics_addr {
        tracker.spawn(log_exit(
            "ops endpoints",
            fleetbus_nats::ops::serve(addr, metrics.clone(), shutdown.clone()),
        ));
    }
    let Some(placements) = open_placements(
        &client, &config, &store, &works, &liveness, &audit, &shutdown,
    )
    .await
    else {
        return Ok(());
    };
    tracker.spawn(placement_controller::run(
        placements.clone(),
        config.lease_timeout,
        shutdown.clone(),
    ));
    let api = Arc::new(api::Api {
        placements,
        store: store.clone(),
        msa: msa.clone(),
        works: works.clone(),
        signer: signer.clone(),
        liveness: liveness.clone(),
        sys: sys.clone(),
        subjects: subjects.clone(),
        admins: config.admins.clone(),
        audit: audit.clone(),
        metrics: metrics.clone(),
        durables: durables::Durables::new(
            client.clone(),
            subjects.clone(),
            &secrets_key,
            audit.clone(),
        ),
    });
    let (t, s) = (tracker.clone(), shutdown.clone());
    tracker.spawn(log_exit(
        "join",
        registration::serve_join(
            client.clone(),
            store.clone(),
            signer.clone(),
            audit.clone(),
            subjects.clone(),
            t.clone(),
            s.clone(),
        ),
    ));
    let spokes = spoke_requests::Server {
        client: client.clone(),
        subjects: subjects.clone(),
        tracker: t.clone(),
        shutdown: s.clone(),
    };
    let renewals = (store.clone(), signer, audit.clone());
    spokes.spawn("renew", HubTopic::Renew, move |cluster, request| {
        let (store, signer, audit) = renewals.clone();
        async move {
            let reply = registration::renew(&store, &signer, &cluster, request).await?;
            let not_after =
                fleetbus_nats::pki::inspect(&reply.certificate_pem).map_or(0, |i| i.not_after_ms);
            audit
                .emit(registration::cert_event(&cluster, "rotate", not_after))
                .await;
            Ok(reply)
        }
    });
    let reports = msa.clone();
    spokes.spawn("token reports", HubTopic::Token, move |cluster, report| {
        let msa = reports.clone();
        async move { msa.report(&cluster, report).await }
    });
    let syncs = (msa.clone(), works.clone());
    spokes.spawn("sync", HubTopic::Sync, move |cluster, _: SyncRequest| {
        let (msa, works) = syncs.clone();
        async move {
            Ok(DesiredState {
                service_accounts: msa.desired(&cluster).await?,
                works: works.desired(&cluster).await?,
            })
        }
    });
    let statuses = works.clone();
    spokes.spawn("work status", HubTopic::Work, move |cluster, report| {
        let works = statuses.clone();
        async move { works.report(&cluster, report).await }
    });
    spokes.spawn("manifests", HubTopic::Manifests, move |cluster, request| {
        let works = works.clone();
        async move { works.chunk(&cluster, request).await }
    });
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
    let liveness_for_metrics = liveness.clone();
    tracker.spawn(log_exit(
        "disconnects",
        heartbeats::serve_disconnects(sys.clone(), liveness, s.clone()),
    ));
    tracker.spawn(sweep_expired(msa, s.clone()));
    tracker.spawn(log_exit("api", api.serve(client.clone(), t, s)));
    tracker.spawn(gauge_spokes(
        liveness_for_metrics,
        metrics.clone(),
        shutdown.clone(),
    ));
    metrics.set_ready(true);
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

/// Opens the hub's buckets, retrying while JetStream is not ready yet.
async fn open_state(
    client: &async_nats::Client,
    config: &Config,
    secrets_key: [u8; 32],
    audit: &Auditor,
    shutdown: &CancellationToken,
) -> Option<(ClusterStore, msa::MsaService, work::WorkService)> {
    let js = async_nats::jetstream::new(client.clone());
    let (s, replicas) = (&config.subjects, config.replicas);
    let open = || async {
        let clusters = ClusterStore::open(&js, &s.clusters_bucket(), replicas, shutdown).await?;
        let service = msa::MsaService {
            msas: store::Bucket::open(&js, &s.msa_bucket(), replicas, shutdown).await?,
            grants: store::Bucket::open(&js, &s.grants_bucket(), replicas, shutdown).await?,
            secrets: secrets::Secrets::open(&js, &s.tokens_bucket(), replicas, secrets_key)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            clusters: clusters.clone(),
            client: client.clone(),
            subjects: s.clone(),
            audit: audit.clone(),
        };
        audit_events::ensure_stream(
            &js,
            s,
            config.audit_max_age,
            config.audit_max_bytes,
            replicas,
        )
        .await
        .map_err(|e| anyhow::anyhow!("audit stream: {e}"))?;
        let works = work::WorkService {
            works: store::Bucket::open(&js, &s.works_bucket(), replicas, shutdown).await?,
            manifests: manifests::ManifestStore::open(
                &js,
                &s.manifests_store(),
                &s.uploads_bucket(),
                replicas,
            )
            .await?,
            clusters: clusters.clone(),
            client: client.clone(),
            subjects: s.clone(),
            audit: audit.clone(),
        };
        anyhow::Ok((clusters, service, works))
    };
    let mut attempt = 0;
    loop {
        match open().await {
            Ok(state) => return Some(state),
            Err(e) => tracing::warn!(error = %e, attempt, "cannot open hub state; retrying"),
        }
        attempt += 1;
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(connect::reconnect_delay(attempt)) => {}
        }
    }
}

/// Opens the placement buckets, retrying while JetStream is not ready yet.
async fn open_placements(
    client: &async_nats::Client,
    config: &Config,
    clusters: &ClusterStore,
    works: &work::WorkService,
    liveness: &Arc<Liveness>,
    audit: &Auditor,
    shutdown: &CancellationToken,
) -> Option<placement::PlacementService> {
    let js = async_nats::jetstream::new(client.clone());
    let mut attempt = 0;
    loop {
        let parts = placement::Parts {
            clusters: clusters.clone(),
            works: works.clone(),
            liveness: liveness.clone(),
            audit: audit.clone(),
        };
        match placement::PlacementService::open(
            &js,
            &config.subjects,
            config.replicas,
            shutdown,
            parts,
        )
        .await
        {
            Ok(service) => return Some(service),
            Err(e) => tracing::warn!(error = %e, attempt, "cannot open placement state; retrying"),
        }
        attempt += 1;
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(connect::reconnect_delay(attempt)) => {}
        }
    }
}

/// The hub's metrics.
fn hub_metrics() -> fleetbus_nats::ops::Metrics {
    let m = fleetbus_nats::ops::Metrics::default();
    m.describe(
        "fleetbus_hub_api_requests_total",
        "counter",
        "Hub API calls by endpoint and status code.",
    );
    m.describe(
        "fleetbus_hub_api_latency_seconds_sum",
        "counter",
        "Total time spent answering hub API calls.",
    );
    m.describe(
        "fleetbus_hub_api_latency_seconds_count",
        "counter",
        "Hub API calls timed.",
    );
    m.describe(
        "fleetbus_hub_connected_spokes",
        "gauge",
        "Spokes whose heartbeats arrive.",
    );
    m
}

/// Keeps the connected-spokes gauge current.
async fn gauge_spokes(
    liveness: Arc<Liveness>,
    metrics: Arc<fleetbus_nats::ops::Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        metrics.set(
            "fleetbus_hub_connected_spokes",
            &[],
            liveness.connected() as f64,
        );
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Applies `ttlSecondsAfterCreation` every few seconds (idempotent across replicas).
async fn sweep_expired(msa: msa::MsaService, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if let Err(e) = msa.sweep().await {
            tracing::warn!(error = %e, "msa ttl sweep failed");
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
