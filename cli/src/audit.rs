//! `fleetbus audit tail`: replay the audit stream and follow it live, one line per event.
//! It needs only read access to the stream: an auditor identity (`fleetbus certs auditor`);
//! any other identity is refused before connecting.

use std::io::Write;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use fleetbus_nats::refusals::Refusals;
use fleetbus_nats::{TlsFiles, audit, connect};
use fleetbus_schema::{ClusterName, Identity, Subjects, UserName};
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
    /// Read through this durable subscription: resume after its last acknowledged event.
    pub durable: Option<String>,
}

/// An auditor's connection to the fleet.
pub(crate) struct AuditorConnection {
    /// The connection.
    pub client: async_nats::Client,
    /// Who is connected.
    pub auditor: UserName,
    /// The fleet's subjects.
    pub subjects: Subjects,
    /// The server's refusals on this connection.
    pub refusals: Refusals,
}

impl AuditorConnection {
    /// Connects with the auditor certificate in `hub`; any other identity fails at once.
    pub async fn open(hub: &HubFlags) -> anyhow::Result<Self> {
        let tls = TlsFiles {
            ca: hub.ca.clone(),
            cert: hub.cert.clone(),
            key: hub.key.clone(),
        };
        let identity = tls.identity()?;
        let Identity::Auditor(auditor) = &identity else {
            // Admins run the fleet and auditors check what they did: reading the audit
            // stream is a role of its own, so an admin certificate gets no permission on it.
            anyhow::bail!(
                "{identity} may not read the audit stream; that needs an auditor identity \
                 (fleetbus certs auditor NAME, then --cert/--key or FLEETBUS_CERT/FLEETBUS_KEY)"
            );
        };
        let subjects = Subjects::new(&hub.subject_prefix)?;
        let refusals = Refusals::default();
        let opts = refusals.watch(
            connect::options(&tls, &subjects, &identity)
                .max_reconnects(Some(2))
                .request_timeout(Some(hub.timeout)),
        );
        let client = connect::connect(&hub.nats_url, &tls, &identity, opts).await?;
        Ok(Self {
            client,
            auditor: auditor.clone(),
            subjects,
            refusals,
        })
    }

    /// Runs `setup`, failing at once with the server's reason if it refuses anything meanwhile.
    pub async fn refusing<T>(
        &self,
        setup: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let watch = self.refusals.listen();
        tokio::select! {
            result = setup => result,
            reason = watch.refused(None) => Err(anyhow::anyhow!(
                "nats-server refused auditor:{}: {reason}", self.auditor
            )),
        }
    }
}

/// The subject filter and the action (checked per event) of `--type`/`--cluster`.
pub(crate) fn filter_of(
    subjects: &Subjects,
    options: &TailOptions,
) -> anyhow::Result<(String, Option<String>)> {
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
    Ok((
        subjects.audit_filter(kind.as_deref(), cluster.as_ref()),
        action,
    ))
}

/// Runs `audit tail` (with `--durable`, [`crate::audit_durable::tail`]).
pub async fn tail(
    hub: &HubFlags,
    options: TailOptions,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let conn = AuditorConnection::open(hub).await?;
    if let Some(name) = options.durable.clone() {
        return crate::audit_durable::tail(&conn, &name, options, out).await;
    }
    let (filter_subject, action) = filter_of(&conn.subjects, &options)?;
    let deliver_policy = match options.since {
        Some(ago) => consumer::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::now_utc() - ago,
        },
        None => consumer::DeliverPolicy::All,
    };
    let js = jetstream::new(conn.client.clone());
    let stream_name = conn.subjects.audit_stream();
    let mut messages = conn
        .refusing(async {
            let stream = js
                .get_stream(&stream_name)
                .await
                .map_err(|e| anyhow::anyhow!("cannot open the audit stream {stream_name}: {e}"))?;
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    filter_subject,
                    deliver_policy,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the audit stream: {e}"))?;
            consumer
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("cannot read the audit stream: {e}"))
        })
        .await?;
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
                if !wanted(&read, action.as_deref(), &options) {
                    continue;
                }
                write_event(out, &read, options.json)?;
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

/// Whether an event passes the filters that subjects cannot express (action, user).
pub(crate) fn wanted(read: &audit::ReadEvent, action: Option<&str>, options: &TailOptions) -> bool {
    let event = &read.event;
    action.is_none_or(|a| a == event.action)
        && options
            .user
            .as_deref()
            .is_none_or(|u| event.actor == format!("user:{u}"))
}

/// One event, as text or JSON.
pub(crate) fn write_event(
    out: &mut impl Write,
    read: &audit::ReadEvent,
    json: bool,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", json_line(read))
    } else {
        writeln!(out, "{}", text_line(read))
    }
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
