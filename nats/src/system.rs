//! Operations in nats-server's system account: finding and closing the connections of an
//! identity, across every server of a cluster, so revocation takes effect at once.

use std::time::Duration;

use fleetbus_schema::Identity;
use futures::StreamExt;
use serde::Deserialize;

use crate::callout::FLEET_ACCOUNT;

/// A system-account request that failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// Subscribing or publishing failed.
    #[error("system account request failed: {0}")]
    Nats(String),
}

#[derive(Deserialize)]
struct ConnzReply {
    server: ServerRef,
    data: Option<ConnzData>,
}

#[derive(Deserialize)]
struct ServerRef {
    id: String,
}

#[derive(Deserialize, Default)]
struct ConnzData {
    #[serde(default)]
    connections: Vec<Conn>,
}

#[derive(Deserialize)]
struct Conn {
    cid: u64,
}

/// The subject of nats-server's client-disconnect advisories for the fleet account.
pub fn disconnect_events_subject() -> String {
    format!("$SYS.ACCOUNT.{FLEET_ACCOUNT}.DISCONNECT")
}

/// The authenticated user in a connect/disconnect advisory.
pub fn advisory_user(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Advisory {
        client: Client,
    }
    #[derive(Deserialize)]
    struct Client {
        #[serde(default)]
        user: String,
    }
    serde_json::from_slice::<Advisory>(payload)
        .ok()
        .map(|a| a.client.user)
}

/// Closes every connection authenticated as `identity` on every server; returns how many.
pub async fn kick(sys: &async_nats::Client, identity: &Identity) -> Result<usize, SystemError> {
    let err = |e: &dyn std::fmt::Display| SystemError::Nats(e.to_string());
    let inbox = sys.new_inbox();
    let mut replies = sys.subscribe(inbox.clone()).await.map_err(|e| err(&e))?;
    let filter =
        serde_json::json!({ "acc": FLEET_ACCOUNT, "user": identity.to_string(), "limit": 10_000 });
    sys.publish_with_reply(
        "$SYS.REQ.SERVER.PING.CONNZ",
        inbox,
        filter.to_string().into(),
    )
    .await
    .map_err(|e| err(&e))?;
    // Every server answers; we cannot know how many there are, so gather for a short while.
    let mut targets = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if let Ok(reply) = serde_json::from_slice::<ConnzReply>(&msg.payload) {
            for conn in reply.data.unwrap_or_default().connections {
                targets.push((reply.server.id.clone(), conn.cid));
            }
        }
    }
    for (server, cid) in &targets {
        let subject = format!("$SYS.REQ.SERVER.{server}.KICK");
        let body = serde_json::json!({ "cid": cid }).to_string();
        sys.request(subject, body.into())
            .await
            .map_err(|e| err(&e))?;
    }
    Ok(targets.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_user_of_an_advisory() {
        let payload = br#"{"type":"io.nats.server.advisory.v1.client_disconnect","client":{"acc":"FLEET","user":"spoke:c1"}}"#;
        assert_eq!(advisory_user(payload).as_deref(), Some("spoke:c1"));
        assert_eq!(advisory_user(b"garbage"), None);
    }
}
