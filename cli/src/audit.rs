//! `fleetbus audit tail`: replay the audit stream and follow it live, one line per event.
//! It needs only read access to the stream: an auditor identity (`fleetbus certs auditor`).

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use fleetbus_nats::{TlsFiles, audit, connect};
use fleetbus_schema::{ClusterName, Subjects};
use futures::StreamExt;

use crate::cli::HubFlags;

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Only events about this cluster.
    pub cluster: Option<String>,
    /// Only events by this user.
    pub user: Option<String>,
    /// Only this kind (`proxy`, `cluster`, `token`, …) or type (`proxy.request`).
    pub kind: Option<String>,
    /// Start this long ago (default: the beginning of the stream).
    pub since: Option<Duration>,
    /// Stop after this many events of replay when not following.
    pub limit: usize,
    /// Keep following new events.
    pub follow: bool,
    /// One JSON object per line.
    pub json: bool,
}

/// Runs `audit tail`.
pub async fn tail(
    hub: &HubFlags,
    options: TailOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let tls = TlsFiles {
        ca: hub.ca.clone(),
        cert: hub.cert.clone(),
        key: hub.key.clone(),
    };
    let identity = tls.identity()?;
    let subjects = Subjects::new(&hub.subject_prefix)?;
    let opts = connect::options(&tls, &subjects, &identity).max_reconnects(Some(2));
    let client = connect::connect(&hub.nats_url, &tls, &identity, opts).await?;
    let js = jetstream::new(client);
    let stream = js.get_stream(subjects.audit_stream()).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the audit stream as {identity}: {e} (reading it needs an auditor identity)"
        )
    })?;
    let cluster = options
        .cluster
        .as_deref()
        .map(ClusterName::new)
        .transpose()?;
    let (kind, action) = match options.kind.as_deref() {
        Some(k) => match k.split_once('.') {
            Some((kind, action)) => (Some(kind.to_owned()), Some(action.to_owned())),
            None => (Some(k.to_owned()), None),
        },
        None => (None, None),
    };
    let deliver_policy = match options.since {
        Some(ago) => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc() - ago,
        },
        None => consumer::DeliverPolicy::All,
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects.audit_filter(kind.as_deref(), cluster.as_ref()),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit stream: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit stream: {e}"))?;
    let mut shown = 0;
    loop {
        let next = if options.follow {
            messages.next().await
        } else {
            // Caught up when nothing arrives for a moment.
            match tokio::time::timeout(Duration::from_millis(500), messages.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        };
        let Some(message) = next else { break };
        let message = message.map_err(|e| anyhow::anyhow!("audit stream: {e}"))?;
        let seq = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        match audit::read(&message.subject, message.headers.as_ref(), &message.payload) {
            Ok(read) => {
                let event = &read.event;
                if action.as_deref().is_some_and(|a| a != event.action) {
                    continue;
                }
                if options
                    .user
                    .as_deref()
                    .is_some_and(|u| event.actor != format!("user:{u}"))
                {
                    continue;
                }
                if options.json {
                    writeln!(out, "{}", json_line(&read))?;
                } else {
                    writeln!(out, "{}", text_line(&read))?;
                }
            }
            Err(e) => writeln!(out, "event {seq}: undecodable ({e}), skipped")?,
        }
        out.flush()?;
        shown += 1;
        if !options.follow && shown >= options.limit {
            writeln!(
                out,
                "… stopped after {shown} events; narrow with --since, --cluster, --type or raise --limit"
            )?;
            break;
        }
    }
    Ok(())
}

/// One event as `audit tail` prints it.
pub fn text_line(read: &audit::ReadEvent) -> String {
    let e = &read.event;
    let cluster = if e.cluster.is_empty() {
        "-"
    } else {
        &e.cluster
    };
    let mut line = format!(
        "{}  {}.{}  {}  {}  {}  {} {}  {:.1}ms",
        audit::rfc3339(e.time_ms),
        e.kind,
        e.action,
        e.actor,
        cluster,
        e.object,
        e.code,
        e.outcome,
        e.latency_us as f64 / 1000.0
    );
    if !e.service_account.is_empty() {
        line.push_str(&format!("  sa={}", e.service_account));
    }
    if !e.request_id.is_empty() {
        line.push_str(&format!("  id={}", e.request_id));
    }
    if !e.message.is_empty() {
        line.push_str(&format!("  {}", e.message));
    }
    line
}

/// One event as `audit tail -o json` prints it.
pub fn json_line(read: &audit::ReadEvent) -> serde_json::Value {
    let e = &read.event;
    serde_json::json!({
        "id": read.id, "type": read.ce_type, "source": read.source, "time": audit::rfc3339(e.time_ms),
        "actor": e.actor, "cluster": e.cluster, "kind": e.kind, "action": e.action, "object": e.object,
        "outcome": e.outcome, "code": e.code, "message": e.message, "latencyUs": e.latency_us,
        "requestId": e.request_id, "serviceAccount": e.service_account, "bytes": e.bytes,
    })
}
