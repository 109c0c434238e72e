//! Serving request/reply subjects that spokes call on `<prefix>.hub.*.<topic>`: the cluster is
//! the subject's identity token (nats-server only lets spoke X publish `….hub.X.…`), the
//! payload is decoded as `Req`, and errors travel as NATS micro error headers.

use std::future::Future;

use fleetbus_schema::{ClusterName, HubTopic, Subjects, decode};
use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ApiError, respond};

/// Serves `topic` from every cluster (queue group: one replica answers) until `shutdown`.
pub async fn serve<Req, Resp, F, Fut>(
    client: async_nats::Client,
    subjects: Subjects,
    topic: HubTopic,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    handler: F,
) -> anyhow::Result<()>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + 'static,
    F: Fn(ClusterName, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    let mut requests = client
        .queue_subscribe(subjects.hub_topic_all(topic), "fleetbus-hub".into())
        .await?;
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            msg = requests.next() => match msg { Some(m) => m, None => break },
        };
        let (Some(reply), Some(cluster)) = (msg.reply.clone(), subjects.hub_sender(&msg.subject))
        else {
            continue;
        };
        let (client, handler) = (client.clone(), handler.clone());
        tracker.spawn(async move {
            let result = match decode::<Req>(&msg.subject, &msg.payload) {
                Ok(request) => handler(cluster.clone(), request).await,
                Err(e) => Err(ApiError::bad_request(e.to_string())),
            };
            if let Err(e) = &result {
                tracing::warn!(%cluster, subject = %msg.subject, error = %e, "spoke request refused");
            }
            respond(&client, reply, result.map(|r| r.encode_to_vec().into())).await;
        });
    }
    Ok(())
}
