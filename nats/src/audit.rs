//! Audit events as CloudEvents on NATS: publishing (hub and spoke), the stream that keeps them
//! (file storage, limits retention, deletes and purges denied), and reading them back.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use fleetbus_schema::v1::AuditEvent;
use fleetbus_schema::{ClusterName, DecodeError, Identity, Subjects, decode};
use prost::Message;

/// CloudEvents spec version header.
pub const CE_SPECVERSION: &str = "ce-specversion";
/// CloudEvents id header.
pub const CE_ID: &str = "ce-id";
/// CloudEvents type header (`io.fleetbus.<kind>.<action>`).
pub const CE_TYPE: &str = "ce-type";
/// CloudEvents source header (the emitter's identity URI).
pub const CE_SOURCE: &str = "ce-source";
/// CloudEvents time header (RFC 3339).
pub const CE_TIME: &str = "ce-time";
/// CloudEvents subject header (the object).
pub const CE_SUBJECT: &str = "ce-subject";

/// Emits audit events for one identity.
#[derive(Clone)]
pub struct Auditor {
    client: async_nats::Client,
    subjects: Subjects,
    source: String,
}

impl Auditor {
    /// An emitter publishing as `identity`.
    pub fn new(client: async_nats::Client, subjects: Subjects, identity: &Identity) -> Self {
        Self {
            client,
            subjects,
            source: identity.uri(),
        }
    }

    /// Publishes `event` (its `kind`, `action` and `cluster` pick subject and type). An event
    /// without a request id gets the current one ([`crate::request_id::scope`]). Failures are
    /// logged, never fatal: the action itself already happened.
    pub async fn emit(&self, mut event: AuditEvent) {
        event.time_ms = now_ms();
        if event.request_id.is_empty()
            && let Some(id) = crate::request_id::current()
        {
            event.request_id = id.into();
        }
        let cluster = ClusterName::new(event.cluster.as_str()).ok();
        let subject = self.subjects.audit(&event.kind, cluster.as_ref());
        let headers = ce_headers(&event, &self.source);
        if let Err(e) = self
            .client
            .publish_with_headers(subject, headers, event.encode_to_vec().into())
            .await
        {
            tracing::warn!(error = %e, kind = %event.kind, action = %event.action, "audit event not published");
        }
    }
}

/// The CloudEvents headers of an event. Values come partly from the event, so control
/// characters are left out (a NATS header value cannot hold CR or LF) and nothing panics.
pub fn ce_headers(event: &AuditEvent, source: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let ce_type = format!("io.fleetbus.{}.{}", event.kind, event.action);
    for (name, value) in [
        (CE_SPECVERSION, "1.0"),
        (CE_ID, &format!("{:032x}", rand::random::<u128>())),
        (CE_TYPE, &ce_type),
        (CE_SOURCE, source),
        (CE_TIME, &rfc3339(event.time_ms)),
        (CE_SUBJECT, &event.object),
    ] {
        let clean: String = value.chars().filter(|c| !c.is_control()).collect();
        if let Ok(value) = clean.parse::<async_nats::HeaderValue>() {
            h.insert(name, value);
        }
    }
    h
}

/// An event read back from the stream.
#[derive(Debug, Clone)]
pub struct ReadEvent {
    /// `ce-type`.
    pub ce_type: String,
    /// `ce-source`.
    pub source: String,
    /// `ce-id`.
    pub id: String,
    /// The body.
    pub event: AuditEvent,
}

/// Decodes a stored event; garbage is an error, never a panic.
pub fn read(
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<ReadEvent, DecodeError> {
    let get = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    Ok(ReadEvent {
        ce_type: get(CE_TYPE),
        source: get(CE_SOURCE),
        id: get(CE_ID),
        event: decode::<AuditEvent>(subject, payload)?,
    })
}

/// Creates (or updates) the audit stream.
pub async fn ensure_stream(
    js: &jetstream::Context,
    subjects: &Subjects,
    max_age: Duration,
    max_bytes: i64,
    replicas: usize,
) -> Result<(), String> {
    let config = stream::Config {
        name: subjects.audit_stream(),
        subjects: vec![subjects.audit_all()],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_age,
        max_bytes,
        deny_delete: true,
        deny_purge: true,
        duplicate_window: Duration::from_secs(120),
        num_replicas: replicas,
        ..Default::default()
    };
    js.get_or_create_stream(config.clone())
        .await
        .map_err(|e| e.to_string())?;
    js.update_stream(config)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// What an auditor identity may publish: read-only use of the audit stream.
pub fn reader_permissions(subjects: &Subjects) -> Vec<String> {
    let s = subjects.audit_stream();
    vec![
        "$JS.API.INFO".into(),
        format!("$JS.API.STREAM.INFO.{s}"),
        format!("$JS.API.CONSUMER.CREATE.{s}"),
        format!("$JS.API.CONSUMER.CREATE.{s}.>"),
        format!("$JS.API.CONSUMER.INFO.{s}.>"),
        format!("$JS.API.CONSUMER.DELETE.{s}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{s}.>"),
        format!("$JS.ACK.{s}.>"),
        format!("$JS.FC.{s}.>"),
    ]
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 for Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudevents_headers_and_round_trip() {
        let event = AuditEvent {
            kind: "proxy".into(),
            action: "request".into(),
            object: "GET /api\n".into(),
            time_ms: 1_700_000_000_123,
            ..Default::default()
        };
        let h = ce_headers(&event, "fleetbus://spoke/c1");
        assert_eq!(
            h.get(CE_TYPE).unwrap().as_str(),
            "io.fleetbus.proxy.request"
        );
        assert_eq!(h.get(CE_SPECVERSION).unwrap().as_str(), "1.0");
        assert_eq!(h.get(CE_TIME).unwrap().as_str(), "2023-11-14T22:13:20.123Z");
        assert_eq!(h.get(CE_SUBJECT).unwrap().as_str(), "GET /api");
        let back = read("s", Some(&h), &event.encode_to_vec()).unwrap();
        assert_eq!(back.event.object, "GET /api\n");
        assert!(read("s", None, &[0xff, 0xff]).is_err());
    }

    #[test]
    fn headers_from_event_fields_never_panic() {
        // Found by the audit_event fuzz target (fuzz/regressions/audit_event): an event read
        // back with CR/LF in its kind used to panic when its headers were built again.
        let event = AuditEvent {
            kind: "proxy\r\n".into(),
            action: "re\nquest".into(),
            object: "\r".into(),
            ..Default::default()
        };
        let h = ce_headers(&event, "fleetbus://hub\r\nX: y");
        assert_eq!(
            h.get(CE_TYPE).unwrap().as_str(),
            "io.fleetbus.proxy.request"
        );
        assert_eq!(h.get(CE_SOURCE).unwrap().as_str(), "fleetbus://hubX: y");
        assert_eq!(h.get(CE_SUBJECT).unwrap().as_str(), "");
    }

    #[test]
    fn readers_cannot_delete_or_purge() {
        for p in reader_permissions(&Subjects::default()) {
            assert!(
                !p.contains("DELETE.fleet-audit.") || p.starts_with("$JS.API.CONSUMER.DELETE"),
                "{p}"
            );
            assert!(
                !p.contains("PURGE") && !p.contains("STREAM.DELETE") && !p.contains("MSG.DELETE"),
                "{p}"
            );
        }
    }
}
