//! What the hub wants on this cluster: synced on connect, on a change notice and every 30 s
//! (notices are core NATS and may be missed), and handed to the token and work loops.

use std::time::Duration;

use fleetbus_nats::rpc;
use fleetbus_schema::HubTopic;
use fleetbus_schema::v1::{DesiredState, SyncRequest};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Full resync period.
const RESYNC: Duration = Duration::from_secs(30);
/// Retry period after a failure.
const RETRY: Duration = Duration::from_secs(5);

/// The latest desired state (`None` until the first sync).
pub type Desired = watch::Receiver<Option<DesiredState>>;

/// Starts syncing; the receiver sees every answer.
pub fn spawn(client: async_nats::Client, config: Config, stop: CancellationToken) -> Desired {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(run(client, config, tx, stop));
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
        let wait =
            match rpc::call::<_, DesiredState>(&client, subject.clone(), &SyncRequest {}).await {
                Ok(desired) => {
                    tx.send_replace(Some(desired));
                    RESYNC
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sync with the hub failed");
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
