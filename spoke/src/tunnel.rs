//! The spoke end of the Kubernetes API tunnel (protocol in `fleetbus_schema::tunnel`). Open
//! frames arrive on `<prefix>.kapi.<cluster>.open` in a queue group, so spoke replicas share
//! the load; each stream's later frames arrive on this replica's own subject and are routed to
//! the stream's task.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use fleetbus_nats::tunnel::Frame;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::kube::Kube;
use crate::tunnel_stream::{StreamContext, serve_stream};
use crate::upstream::Upstream;

use fleetbus_schema::tunnel::STREAM_QUEUE;

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<Frame>>>>;

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
        .queue_subscribe(subjects.kapi_open(&config.cluster), "fleetbus-spoke".into())
        .await;
    let frames = client
        .subscribe(subjects.kapi_replica_all(&config.cluster, &replica))
        .await;
    let (Ok(mut opens), Ok(mut frames)) = (opens, frames) else {
        tracing::error!("cannot subscribe to the tunnel subjects");
        return;
    };
    let routes: Routes = Arc::default();
    let tracker = TaskTracker::new();
    tracing::info!(cluster = %config.cluster, %replica, "kubernetes API tunnel serving");
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            open = opens.next() => {
                let Some(open) = open else { break };
                let Some(reply) = open.reply.clone() else { continue };
                let frame = match Frame::parse(open.headers.as_ref(), open.payload.clone()) {
                    Ok(frame) => frame,
                    Err(e) => {
                        let headers = fleetbus_nats::tunnel::error_headers(0, 400, &e.to_string());
                        let _ = client.publish_with_headers(reply, headers, bytes::Bytes::new()).await;
                        continue;
                    }
                };
                let stream = format!("{:016x}", rand::random::<u64>());
                let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                lock(&routes).insert(stream.clone(), tx);
                let actor = subjects.inbox_user(&reply).map_or_else(|| "unknown".to_owned(), |u| fleetbus_schema::Identity::User(u).to_string());
                let ctx = StreamContext {
                    stats: config.stats.clone(),
                    client: client.clone(),
                    upstream: upstream.clone(),
                    audit: audit.clone(),
                    cluster: config.cluster.to_string(),
                    actor,
                    request_id: frame.header(fleetbus_schema::tunnel::REQUEST_ID).unwrap_or("-").to_owned(),
                    reply,
                    upstream_subject: subjects.kapi_stream(&config.cluster, &replica, &stream),
                    stop: stop.child_token(),
                };
                let routes = routes.clone();
                let stats = config.stats.clone();
                let open_now = stats.active_streams.fetch_add(1, Ordering::Relaxed) + 1;
                stats.metrics.set("fleetbus_spoke_tunnel_streams", &[], open_now as f64);
                tracker.spawn(async move {
                    serve_stream(ctx, frame, rx).await;
                    lock(&routes).remove(&stream);
                    let open_now = stats.active_streams.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
                    stats.metrics.set("fleetbus_spoke_tunnel_streams", &[], open_now as f64);
                });
            }
            frame = frames.next() => {
                let Some(msg) = frame else { break };
                let stream = msg.subject.rsplit('.').next().unwrap_or_default().to_owned();
                let Some(tx) = lock(&routes).get(&stream).cloned() else {
                    tracing::debug!(%stream, "frame for an unknown stream dropped");
                    continue;
                };
                match Frame::parse(msg.headers.as_ref(), msg.payload) {
                    // A full queue means the client ignores flow control: the stream ends.
                    Ok(frame) => if tx.try_send(frame).is_err() {
                        // The stream's task sees its queue close and fails the stream loudly.
                        tracing::warn!(%stream, "client overran the stream's queue; stream ends");
                        lock(&routes).remove(&stream);
                    },
                    Err(e) => tracing::debug!(%stream, error = %e, "garbage frame dropped"),
                }
            }
        }
    }
    tracker.close();
    tracker.wait().await;
}

fn lock(routes: &Routes) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Frame>>> {
    routes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
