//! The spoke end of the Kubernetes API tunnel (protocol in `fleetbus_schema::tunnel`). Open
//! frames arrive on `<prefix>.kapi.<cluster>.<user>.open` in a queue group, so spoke replicas share
//! the load; each stream's later frames arrive on this replica's own subject and are routed to
//! the stream's task.

use std::sync::atomic::Ordering;

use fleetbus_nats::tunnel::{Delivery, Routes};
use fleetbus_schema::Identity;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::kube::Kube;
use crate::tunnel_stream::{StreamContext, serve_stream};
use crate::upstream::Upstream;

/// Serves the tunnel until `stop`.
pub async fn serve(
    client: async_nats::Client,
    config: Config,
    kube: Kube,
    stop: CancellationToken,
) {
    let upstream = match Upstream::new(&kube) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "kubernetes API tunnel disabled");
            return;
        }
    };
    let replica = format!("{:016x}", rand::random::<u64>());
    let identity = fleetbus_schema::Identity::Spoke(config.cluster.clone());
    let audit =
        fleetbus_nats::audit::Auditor::new(client.clone(), config.subjects.clone(), &identity);
    let subjects = &config.subjects;
    let opens = client
        .queue_subscribe(
            subjects.kapi_opens(&config.cluster),
            "fleetbus-spoke".into(),
        )
        .await;
    let frames = client
        .subscribe(subjects.kapi_replica_all(&config.cluster, &replica))
        .await;
    let (Ok(mut opens), Ok(mut frames)) = (opens, frames) else {
        tracing::error!("cannot subscribe to the tunnel subjects");
        return;
    };
    let routes = Routes::default();
    let tracker = TaskTracker::new();
    tracing::info!(cluster = %config.cluster, %replica, "kubernetes API tunnel serving");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            open = opens.next() => {
                let Some(open) = open else { break };
                // Who sent it is in the subject: nats-server lets each user publish only
                // under her own name. The reply must go to her own inbox, which only she reads.
                let Some(user) = subjects.kapi_open_user(&open.subject) else { continue };
                let Some(reply) = open.reply.clone() else { continue };
                if subjects.inbox_user(&reply).as_ref() != Some(&user) {
                    tracing::warn!(%user, %reply, "tunnel request refused: its reply subject is not the sender's inbox");
                    audit.emit(fleetbus_schema::v1::AuditEvent {
                        actor: Identity::User(user).to_string(),
                        cluster: config.cluster.to_string(),
                        kind: "proxy".into(),
                        action: "request".into(),
                        outcome: "denied".into(),
                        code: 403,
                        message: format!("reply subject {reply} is not the sender's inbox"),
                        ..Default::default()
                    }).await;
                    continue;
                }
                let stream = format!("{:016x}", rand::random::<u64>());
                let inbound = routes.register(route_key(user.as_str(), &stream));
                let ctx = StreamContext {
                    stats: config.stats.clone(),
                    client: client.clone(),
                    upstream: upstream.clone(),
                    audit: audit.clone(),
                    cluster: config.cluster.to_string(),
                    actor: Identity::User(user.clone()).to_string(),
                    reply,
                    upstream_subject: subjects.kapi_stream(&config.cluster, &user, &replica, &stream),
                    stop: stop.child_token(),
                };
                let stats = config.stats.clone();
                let open_now = stats.active_streams.fetch_add(1, Ordering::Relaxed) + 1;
                stats.metrics.set("fleetbus_spoke_tunnel_streams", &[], open_now as f64);
                tracker.spawn(async move {
                    serve_stream(ctx, open, inbound).await;
                    let open_now = stats.active_streams.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
                    stats.metrics.set("fleetbus_spoke_tunnel_streams", &[], open_now as f64);
                });
            }
            frame = frames.next() => {
                let Some(msg) = frame else { break };
                // A frame reaches a stream only from the user who opened it.
                let Some((user, stream)) = subjects.kapi_stream_parts(&msg.subject) else { continue };
                let key = route_key(user, stream);
                match routes.deliver(&key, msg) {
                    Delivery::Queued => {}
                    Delivery::Unknown => tracing::debug!(%key, "frame for an unknown stream dropped"),
                    // The stream's task sees its queue close and fails the stream loudly.
                    Delivery::Overrun => tracing::warn!(%key, "client overran the stream's queue; stream ends"),
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

/// Streams are keyed by their opener and id, so another user's frames never reach them.
fn route_key(user: &str, stream: &str) -> String {
    format!("{user}.{stream}")
}
