//! What the hub wants on this cluster: synced on connect, on a change notice and every 30 s
//! (notices are core NATS and may be missed), and handed to the token and work loops.

use std::time::Duration;

use fleetbus_nats::{request_id, rpc};
use fleetbus_schema::HubTopic;
use fleetbus_schema::v1::{DesiredState, SyncRequest};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;

/// Full resync period.
const RESYNC: Duration = Duration::from_secs(30);
/// Retry period after a failure.
const RETRY: Duration = Duration::from_secs(5);

/// The latest desired state (`None` until the first sync).
pub type Desired = watch::Receiver<Option<DesiredState>>;

/// Starts syncing on `tracker`; the receiver sees every answer.
pub fn spawn(
    tracker: &TaskTracker,
    client: async_nats::Client,
    config: Config,
    stop: CancellationToken,
) -> Desired {
    let (tx, rx) = watch::channel(None);
    tracker.spawn(run(client, config, tx, stop));
    rx
}

async fn run(
    client: async_nats::Client,
    config: Config,
    tx: watch::Sender<Option<DesiredState>>,
    stop: CancellationToken,
) {
    let mut notices = match client
        .subscribe(config.subjects.spoke_changed(&config.cluster))
        .await
    {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(error = %e, "cannot subscribe to change notices");
            return;
        }
    };
    let subject = config.subjects.hub(&config.cluster, HubTopic::Sync);
    loop {
        let id = request_id::fresh();
        let span =
            tracing::info_span!("sync", cluster = %config.cluster, %subject, request_id = %id);
        let sync = rpc::call::<_, DesiredState>(&client, subject.clone(), &SyncRequest {});
        let wait = match request_id::scope(id, sync).instrument(span.clone()).await {
            Ok(desired) => {
                tx.send_replace(Some(desired));
                RESYNC
            }
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e, "sync with the hub failed"));
                RETRY
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            _ = notices.next() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
