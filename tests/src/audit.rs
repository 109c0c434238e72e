//! Reading the audit stream as an auditor, checking each event's CloudEvents headers.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use fleetbus_schema::v1::AuditEvent;
use fleetbus_schema::{Identity, UserName};
use futures::StreamExt;
use prost::Message;

use crate::Fleet;

/// Every audit event so far, with its `ce-type`.
pub async fn events(fleet: &Fleet) -> anyhow::Result<Vec<(String, AuditEvent)>> {
    let auditor = Identity::Auditor(UserName::new("audit")?);
    let client = fleet.nats.connect_as(&auditor).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(fleet.nats.subjects.audit_stream()).await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig::default())
        .await?;
    let mut messages = consumer.messages().await?;
    let mut all = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), messages.next()).await
    {
        let message = message?;
        let headers = message.headers.clone().unwrap_or_default();
        assert_eq!(headers.get("ce-specversion").unwrap().as_str(), "1.0");
        assert!(!headers.get("ce-id").unwrap().as_str().is_empty());
        assert!(headers.get("ce-time").unwrap().as_str().ends_with('Z'));
        assert!(
            headers
                .get("ce-source")
                .unwrap()
                .as_str()
                .starts_with("fleetbus://")
        );
        let event = AuditEvent::decode(message.payload.as_ref())?;
        let ce_type = headers.get("ce-type").unwrap().as_str().to_owned();
        assert_eq!(
            ce_type,
            format!("io.fleetbus.{}.{}", event.kind, event.action)
        );
        all.push((ce_type, event));
    }
    Ok(all)
}
