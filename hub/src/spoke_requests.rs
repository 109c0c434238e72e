//! Serving request/reply subjects that spokes call on `<prefix>.hub.*.<topic>`: the cluster is
//! the subject's identity token (nats-server only lets spoke X publish `….hub.X.…`), the
//! payload is decoded as `Req`, and errors travel as NATS micro error headers. Each request is
//! handled in a span with its cluster, subject and request id.

use std::future::Future;

use fleetbus_nats::request_id;
use fleetbus_schema::{ClusterName, HubTopic, Subjects, decode};
use futures::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::{ApiError, respond};

/// What every spoke-facing request loop shares.
#[derive(Clone)]
pub struct Server {
    /// The hub's connection.
    pub client: async_nats::Client,
    /// Subjects of this fleet.
    pub subjects: Subjects,
    /// Tracks the loop and its handlers.
    pub tracker: TaskTracker,
    /// Ends the loop.
    pub shutdown: CancellationToken,
}

impl Server {
    /// Starts serving `topic` with `handler`; a loop that fails is logged as `name`.
    pub fn spawn<Req, Resp, F, Fut>(&self, name: &'static str, topic: HubTopic, handler: F)
    where
        Req: Message + Default + Send + 'static,
        Resp: Message + 'static,
        F: Fn(ClusterName, Req) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
    {
        let this = self.clone();
        self.tracker.spawn(async move {
            let served = serve(
                this.client,
                this.subjects,
                topic,
                this.tracker,
                this.shutdown,
                handler,
            );
            if let Err(e) = served.await {
                tracing::error!(task = name, error = %e, "hub task failed");
            }
        });
    }
}

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
        let id = request_id::of(msg.headers.as_ref());
        let span = tracing::info_span!("spoke_request", %cluster, subject = %msg.subject, request_id = %id);
        let handled = async move {
            let result = match decode::<Req>(&msg.subject, &msg.payload) {
                Ok(request) => handler(cluster, request).await,
                Err(e) => Err(ApiError::bad_request(e.to_string())),
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, "spoke request refused");
            }
            respond(&client, reply, result.map(|r| r.encode_to_vec().into())).await;
        };
        tracker.spawn(request_id::scope(id, handled).instrument(span));
    }
    Ok(())
}
