//! A spoke's life with its own identity: heartbeats, certificate rotation before 23 % of the
//! lifetime is left (new key, CSR to the hub, files swapped, `force_reconnect`), and noticing
//! when the hub revoked it. Its loops run under one `TaskTracker` and end within a grace
//! period.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{ClientError, Event, ServerError};
use fleetbus_nats::connect::{self, connect_retrying};
use fleetbus_nats::pki;
use fleetbus_schema::v1::{ClusterClaims, Heartbeat, RenewReply, RenewRequest};
use fleetbus_schema::{HubTopic, Identity};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::identity_store::{IdentityStore, Step};
use crate::kube::Kube;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Shutdown was requested.
    Shutdown,
    /// nats-server keeps refusing this identity: the cluster was denied or deleted.
    Revoked,
}

/// Consecutive authorization refusals (without a successful connect) taken as revocation.
const REFUSALS_FOR_REVOKED: usize = 3;
/// How long the loops may take to finish after shutdown or revocation. Kubernetes kills a pod
/// 30 s after SIGTERM; the spoke is gone well before.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long the connection may take to flush what it still buffers (audit events, …).
const DRAIN: Duration = Duration::from_secs(3);

/// Runs until shutdown or revocation.
pub async fn run(
    config: &Config,
    kube: &Kube,
    shutdown: &CancellationToken,
) -> anyhow::Result<SessionEnd> {
    let identity = Identity::Spoke(config.cluster.clone());
    let tls = config.spoke_tls();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let options = || {
        let tx = events_tx.clone();
        connect::options(&tls, &config.subjects, &identity)
            .request_timeout(Some(Duration::from_secs(10)))
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    tracing::info!(%event, "nats");
                    let _ = tx.send(event);
                }
            })
    };
    let Some(client) = connect_retrying(&config.nats_url, &tls, &identity, options, shutdown).await
    else {
        return Ok(SessionEnd::Shutdown);
    };
    tracing::info!(cluster = %config.cluster, "connected with the cluster identity");
    config
        .stats
        .metrics
        .set("fleetbus_spoke_connected", &[], 1.0);
    config.stats.metrics.set_ready(true);
    let session = shutdown.child_token();
    let tracker = TaskTracker::new();
    let desired = crate::desired::spawn(&tracker, client.clone(), config.clone(), session.clone());
    tracker.spawn(heartbeats(
        client.clone(),
        config.clone(),
        kube.clone(),
        session.clone(),
    ));
    tracker.spawn(rotate(
        client.clone(),
        config.clone(),
        kube.clone(),
        session.clone(),
    ));
    tracker.spawn(crate::tokens::run(
        client.clone(),
        config.clone(),
        kube.clone(),
        desired.clone(),
        session.clone(),
    ));
    tracker.spawn(crate::work::run(
        client.clone(),
        config.clone(),
        kube.clone(),
        desired,
        tracker.clone(),
        session.clone(),
    ));
    tracker.spawn(crate::tunnel::serve(
        client.clone(),
        config.clone(),
        kube.clone(),
        session.clone(),
    ));
    let mut refusals = 0;
    let end = loop {
        tokio::select! {
            () = shutdown.cancelled() => break SessionEnd::Shutdown,
            event = events.recv() => match event {
                Some(Event::Connected) => {
                    refusals = 0;
                    config.stats.metrics.set("fleetbus_spoke_connected", &[], 1.0);
                    config.stats.metrics.set_ready(true);
                }
                Some(Event::Disconnected) => {
                    config.stats.metrics.set("fleetbus_spoke_connected", &[], 0.0);
                    config.stats.metrics.set_ready(false);
                }
                Some(event) if is_refusal(&event) => {
                    refusals += 1;
                    if refusals >= REFUSALS_FOR_REVOKED {
                        tracing::warn!(cluster = %config.cluster, "the hub no longer admits this cluster's identity; joining again");
                        break SessionEnd::Revoked;
                    }
                }
                Some(_) => {}
                None => break SessionEnd::Shutdown,
            },
        }
    };
    session.cancel();
    config
        .stats
        .metrics
        .set("fleetbus_spoke_connected", &[], 0.0);
    config.stats.metrics.set_ready(false);
    stop(tracker, client).await;
    Ok(end)
}

/// Lets the loops finish what they are doing (a reconcile in progress reports its status),
/// within [`GRACE`], then flushes what the connection still buffers, within [`DRAIN`].
async fn stop(tracker: TaskTracker, client: async_nats::Client) {
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("the spoke's loops did not finish within {GRACE:?}; stopping without them");
    }
    if tokio::time::timeout(DRAIN, client.drain()).await.is_err() {
        tracing::warn!("the connection did not drain within {DRAIN:?}");
    }
}

/// A refused (re)connect: the server says so directly, or the connector reports it.
fn is_refusal(event: &Event) -> bool {
    match event {
        Event::ServerError(ServerError::AuthorizationViolation) => true,
        Event::ClientError(ClientError::Other(text)) => text.contains("authorization violation"),
        _ => false,
    }
}

/// Claims as they are now (the version is empty while the apiserver cannot be asked).
pub async fn claims(config: &Config, kube: &Kube) -> ClusterClaims {
    ClusterClaims {
        kube_version: kube.version().await.unwrap_or_default(),
        labels: config.labels.clone().into_iter().collect(),
    }
}

async fn heartbeats(
    client: async_nats::Client,
    config: Config,
    kube: Kube,
    stop: CancellationToken,
) {
    let subject = config.subjects.hub(&config.cluster, HubTopic::Heartbeat);
    let sequence = Arc::new(AtomicU64::new(0));
    let mut claims = claims(&config, &kube).await;
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ready = kube.ready().await;
        if ready.is_ok() && claims.kube_version.is_empty() {
            claims.kube_version = kube.version().await.unwrap_or_default();
        }
        let beat = Heartbeat {
            claims: Some(claims.clone()),
            kube_ready: ready.is_ok(),
            kube_message: ready.err().unwrap_or_default(),
            sequence: sequence.fetch_add(1, Ordering::Relaxed),
        };
        if let Err(e) = client
            .publish(subject.clone(), beat.encode_to_vec().into())
            .await
        {
            tracing::warn!(error = %e, "heartbeat not sent");
        }
    }
}

async fn rotate(client: async_nats::Client, config: Config, kube: Kube, stop: CancellationToken) {
    // Replicas that share an identity renew it one at a time and adopt each other's.
    let mut shared = IdentityStore::new(&config, &kube);
    loop {
        let wait = match time_until_renewal(&config) {
            Ok(wait) => wait,
            Err(e) => {
                tracing::error!(error = %e, "cannot read own certificate; rotation stopped");
                return;
            }
        };
        match shared.as_mut() {
            Some(store) => match store.next_step(wait, &stop).await {
                _ if stop.is_cancelled() => return,
                Step::Wait => continue,
                Step::Adopted => {
                    client.force_reconnect().await.ok();
                    continue;
                }
                Step::Renew => {}
            },
            None => tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            },
        }
        let renewed = renew(&client, &config).await;
        if let Some(store) = shared.as_mut() {
            store.renewed(renewed.is_ok()).await;
        }
        match renewed {
            Ok(()) => {
                tracing::info!(cluster = %config.cluster, "certificate rotated");
                client.force_reconnect().await.ok();
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate renewal failed; retrying in 5s");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
            }
        }
    }
}

fn time_until_renewal(config: &Config) -> anyhow::Result<Duration> {
    let pem = std::fs::read_to_string(config.spoke_tls().cert)?;
    let info = pki::inspect(&pem)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let at = info.renew_at_ms(config.renew_fraction);
    Ok(Duration::from_millis(at.saturating_sub(now).max(0) as u64))
}

/// One renewal: a new key, a CSR to the hub, the pair replaced so that a crash cannot leave
/// the new key beside the old certificate.
async fn renew(client: &async_nats::Client, config: &Config) -> anyhow::Result<()> {
    let identity = Identity::Spoke(config.cluster.clone());
    let (key, csr) = pki::new_key_and_csr(&identity)?;
    let expected_key = pki::csr_key_fingerprint(&csr)?;
    let subject = config.subjects.hub(&config.cluster, HubTopic::Renew);
    let reply: RenewReply =
        fleetbus_nats::rpc::call(client, subject, &RenewRequest { csr_pem: csr })
            .await
            .map_err(|e| anyhow::anyhow!("hub refused renewal: {e}"))?;
    let info = pki::inspect(&reply.certificate_pem)?;
    if info.identity.as_ref() != Some(&identity) || info.key_fingerprint != expected_key {
        anyhow::bail!("hub returned a certificate for another identity or key");
    }
    crate::identity_store::pair::write(&config.spoke_tls(), &key, &reply.certificate_pem)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_recognised_in_both_shapes() {
        assert!(is_refusal(&Event::ServerError(
            ServerError::AuthorizationViolation
        )));
        assert!(is_refusal(&Event::ClientError(ClientError::Other(
            "nats: authorization violation".into()
        ))));
        assert!(!is_refusal(&Event::ClientError(ClientError::Other(
            "io error".into()
        ))));
        assert!(!is_refusal(&Event::Disconnected));
    }
}
