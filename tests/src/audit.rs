//! Reading the audit stream as an auditor, checking each event's CloudEvents headers.

use std::time::Duration;

use anyhow::Context;

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
        let header = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .with_context(|| format!("audit event without {name}"))
        };
        anyhow::ensure!(header("ce-specversion")? == "1.0");
        anyhow::ensure!(!header("ce-id")?.is_empty());
        anyhow::ensure!(header("ce-time")?.ends_with('Z'));
        anyhow::ensure!(header("ce-source")?.starts_with("fleetbus://"));
        let event = AuditEvent::decode(message.payload.as_ref())?;
        let ce_type = header("ce-type")?;
        anyhow::ensure!(ce_type == format!("io.fleetbus.{}.{}", event.kind, event.action));
        all.push((ce_type, event));
    }
    Ok(all)
}
