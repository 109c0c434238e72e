//! Feeds [`Liveness`]: every replica subscribes to all heartbeats (no queue group) and to
//! nats-server's disconnect advisories. The first heartbeat of a connection also records the
//! cluster as joined and refreshes its claims in the store.

use std::sync::Arc;

use fleetbus_nats::system;
use fleetbus_schema::v1::Heartbeat;
use fleetbus_schema::{ClusterName, HubTopic, Subjects, decode};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::liveness::Liveness;
use crate::registration::now_ms;
use crate::store::{Action, ClusterStore, StoreError};

/// Consumes heartbeats until `shutdown`.
pub async fn serve_heartbeats(
    client: async_nats::Client,
    store: ClusterStore,
    liveness: Arc<Liveness>,
    subjects: Subjects,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut beats = client
        .subscribe(subjects.hub_topic_all(HubTopic::Heartbeat))
        .await?;
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            msg = beats.next() => match msg { Some(m) => m, None => break },
        };
        let Some(cluster) = subjects.hub_sender(&msg.subject) else {
            continue;
        };
        let span = tracing::info_span!("heartbeat", %cluster, subject = %msg.subject);
        let beat = match decode::<Heartbeat>(&msg.subject, &msg.payload) {
            Ok(beat) => beat,
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "dropped heartbeat"));
                continue;
            }
        };
        if liveness.heartbeat(&cluster, &beat, now_ms()) {
            span.in_scope(|| tracing::info!("spoke connected"));
            let store = store.clone();
            let record = async move {
                if let Err(e) = record_joined(&store, &cluster, beat).await {
                    tracing::warn!(error = %e, "could not record join");
                }
            };
            tracker.spawn(record.instrument(span));
        }
    }
    Ok(())
}

async fn record_joined(
    store: &ClusterStore,
    cluster: &ClusterName,
    beat: Heartbeat,
) -> Result<(), StoreError> {
    store
        .update(cluster, |current| {
            let Some(mut record) = current else {
                return Ok::<_, StoreError>((Action::Keep, ()));
            };
            if record.joined_ms > 0 && record.claims == beat.claims {
                return Ok((Action::Keep, ()));
            }
            if record.joined_ms == 0 {
                record.joined_ms = now_ms();
            }
            record.claims = beat.claims.clone();
            Ok((Action::Put(Box::new(record)), ()))
        })
        .await
}

/// Marks spokes `Unknown` the moment nats-server reports their connection closed.
pub async fn serve_disconnects(
    sys: async_nats::Client,
    liveness: Arc<Liveness>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut events = sys.subscribe(system::disconnect_events_subject()).await?;
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            msg = events.next() => match msg { Some(m) => m, None => break },
        };
        let user = system::advisory_user(&msg.payload).unwrap_or_default();
        if let Some(cluster) = user
            .strip_prefix("spoke:")
            .and_then(|c| ClusterName::new(c).ok())
        {
            tracing::info!(%cluster, "spoke disconnected");
            liveness.disconnected(&cluster);
        }
    }
    Ok(())
}
