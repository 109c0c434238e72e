//! `fleetbus audit tail --durable NAME`: read the audit stream through a durable subscription
//! the hub keeps for this auditor (`durable.open`), acknowledging each event once it is
//! written, so a stopped tail misses nothing and a restarted one resumes after its last
//! acknowledged event. `fleetbus audit delete-durable NAME` forgets it.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use fleetbus_nats::audit;
use fleetbus_nats::rpc::{self, RpcError};
use fleetbus_schema::AuditorEndpoint;
use fleetbus_schema::v1::{AuditDurable, DurableRef, Empty, OpenDurableRequest};
use futures::StreamExt;

use crate::audit::{AuditorConnection, TailOptions, filter_of, wanted, write_event};
use crate::cli::HubFlags;

/// Without `--follow`: caught up once nothing arrives for this long, after the events that were
/// waiting when the subscription was opened.
const CAUGHT_UP: Duration = Duration::from_millis(700);
/// How long one of those waiting events may take to arrive.
const BACKLOG: Duration = Duration::from_secs(10);

/// Tails through the durable subscription `name`.
pub(crate) async fn tail(
    conn: &AuditorConnection,
    name: &str,
    options: TailOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (filter, action) = filter_of(&conn.subjects, &options)?;
    let start_ms = options.since.map_or(0, |ago| {
        (time::OffsetDateTime::now_utc() - ago).unix_timestamp_nanos() / 1_000_000
    });
    let request = OpenDurableRequest {
        name: name.to_owned(),
        filter,
        start_ms: start_ms as i64,
    };
    let subject = conn
        .subjects
        .auditor_api(&conn.auditor, AuditorEndpoint::DurableOpen);
    let durable: AuditDurable = conn
        .refusing(async { call(conn, subject, &request).await })
        .await?;
    let js = jetstream::new(conn.client.clone());
    let (mut shown, mut delivered) = (0, 0u64);
    loop {
        let bound: consumer::PushConsumer = conn
            .refusing(async {
                let stream = js
                    .get_stream(&durable.stream)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                stream
                    .get_consumer(&durable.consumer)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind durable subscription {name}: {e}"))?;
        let mut messages = bound
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("durable subscription {name}: {e}"))?;
        loop {
            let next = if options.follow {
                messages.next().await
            } else {
                let wait = if delivered < durable.pending {
                    BACKLOG
                } else {
                    CAUGHT_UP
                };
                match tokio::time::timeout(wait, messages.next()).await {
                    Ok(next) => next,
                    Err(_) => return Ok(()),
                }
            };
            let message = match next {
                None => return Ok(()),
                // A lost link or a missed heartbeat: bind again, the server kept the position.
                Some(Err(e)) if options.follow => {
                    tracing::debug!(error = %e, "durable subscription interrupted; binding again");
                    break;
                }
                Some(Err(e)) => anyhow::bail!("durable subscription {name}: {e}"),
                Some(Ok(message)) => message,
            };
            // Only deliveries of our own consumer count: anyone may point an ephemeral
            // consumer at this inbox, nobody but the hub knows the consumer name.
            let Ok(info) = message.info() else { continue };
            if info.consumer != durable.consumer {
                continue;
            }
            delivered += 1;
            match audit::read(&message.subject, message.headers.as_ref(), &message.payload) {
                Ok(read) if wanted(&read, action.as_deref(), &options) => {
                    write_event(out, &read, options.json)?;
                    shown += 1;
                }
                Ok(_) => {}
                Err(e) => writeln!(
                    out,
                    "event {}: undecodable ({e}), skipped",
                    info.stream_sequence
                )?,
            }
            out.flush()?;
            // Acknowledged only once written; the server confirms, so a restart resumes after it.
            message
                .double_ack()
                .await
                .map_err(|e| anyhow::anyhow!("cannot acknowledge an event: {e}"))?;
            if !options.follow && shown >= options.limit {
                writeln!(
                    out,
                    "… stopped after {shown} events; the next tail --durable {name} goes on from here"
                )?;
                return Ok(());
            }
        }
    }
}

/// `fleetbus audit delete-durable NAME`.
pub async fn delete(hub: &HubFlags, name: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let conn = AuditorConnection::open(hub).await?;
    let subject = conn
        .subjects
        .auditor_api(&conn.auditor, AuditorEndpoint::DurableDelete);
    let request = DurableRef {
        name: name.to_owned(),
    };
    let _: Empty = conn
        .refusing(async { call(&conn, subject, &request).await })
        .await?;
    writeln!(out, "durable subscription {name} deleted")?;
    Ok(())
}

async fn call<Req: prost::Message, Resp: prost::Message + Default>(
    conn: &AuditorConnection,
    subject: String,
    request: &Req,
) -> anyhow::Result<Resp> {
    rpc::call(&conn.client, subject, request)
        .await
        .map_err(|e| match e {
            RpcError::NoResponders(_) => {
                anyhow::anyhow!("no hub is answering (is fleetbus-hub running?)")
            }
            RpcError::Refused { message, .. } => anyhow::anyhow!("{message}"),
            other => anyhow::anyhow!("{other}"),
        })
}
