//! Durable audit subscriptions: an auditor asks the hub for a named subscription and gets a
//! JetStream push consumer on the audit stream with explicit acks that delivers into the
//! auditor's private inbox. Stopped, it keeps its position; restarted, it resumes after the last
//! acknowledged event.
//!
//! JetStream has no owner per consumer: whoever may create consumers on a stream may update or
//! delete any consumer whose name they know. So the name is the lock. The consumer name is an
//! HMAC of the auditor and its name under a key derived from the hub's secrets key: every hub
//! replica computes the same one, only the auditor learns it (in this reply and in the reply
//! subjects of its own deliveries), and no auditor may list the stream's consumers.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{self, consumer};
use async_nats::service;
use bytes::Bytes;
use fleetbus_nats::audit::Auditor;
use fleetbus_schema::v1::{AuditDurable, AuditEvent, DurableRef, Empty, OpenDurableRequest};
use fleetbus_schema::{
    AuditorEndpoint, Identity, Subjects, UserName, decode, names::validate_label,
};
use prost::Message;
use ring::hmac;

use crate::error::ApiError;

/// How long a delivered event may stay unacknowledged before it is delivered again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Events delivered and not yet acknowledged, at most.
pub const MAX_ACK_PENDING: i64 = 1000;
/// The consumer's idle heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// Consumer metadata naming the owner.
pub const OWNER_METADATA: &str = "fleetbus-auditor";
/// Consumer metadata naming the durable subscription.
pub const NAME_METADATA: &str = "fleetbus-durable";

/// The durable subscriptions of every auditor.
#[derive(Clone)]
pub struct Durables {
    js: jetstream::Context,
    subjects: Subjects,
    naming: hmac::Key,
    audit: Auditor,
}

impl Durables {
    /// Durables on the audit stream of `subjects`, named under `secrets_key`.
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        secrets_key: &[u8; 32],
        audit: Auditor,
    ) -> Self {
        Self {
            js: jetstream::new(client),
            subjects,
            naming: naming_key(secrets_key),
            audit,
        }
    }

    /// The consumer name of `auditor`'s subscription `name`.
    pub fn consumer_name(&self, auditor: &UserName, name: &str) -> String {
        secret_name(&self.naming, auditor, name)
    }

    /// Answers one auditor call; the caller is the auditor token of the subject, which
    /// nats-server only lets that auditor publish to.
    pub async fn handle(&self, endpoint: AuditorEndpoint, request: service::Request) {
        let subject = request.message.subject.to_string();
        let payload = &request.message.payload;
        let auditor = self.subjects.auditor_caller(&subject);
        let result = match &auditor {
            None => Err(ApiError::bad_request("no caller in subject")),
            Some(auditor) => self.dispatch(endpoint, auditor, &subject, payload).await,
        };
        let (_, action) = endpoint.tokens();
        if let Err(e) = &result {
            tracing::info!(endpoint = %endpoint.name(), %subject, code = e.code, error = %e, "auditor call refused");
            let name = name_of(endpoint, payload);
            self.emit(auditor.as_ref(), &name, action, Err(e)).await;
        }
        let response = result.map(Bytes::from).map_err(|e| service::error::Error {
            code: e.code.into(),
            status: e.message,
        });
        if let Err(e) = request.respond(response).await {
            tracing::warn!(error = %e, "could not answer auditor call");
        }
    }

    async fn dispatch(
        &self,
        endpoint: AuditorEndpoint,
        auditor: &UserName,
        subject: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let bad = |e: fleetbus_schema::DecodeError| ApiError::bad_request(e.to_string());
        Ok(match endpoint {
            AuditorEndpoint::DurableOpen => {
                let request = decode::<OpenDurableRequest>(subject, payload).map_err(bad)?;
                self.open(auditor, request).await?.encode_to_vec()
            }
            AuditorEndpoint::DurableDelete => {
                let r = decode::<DurableRef>(subject, payload).map_err(bad)?;
                self.delete(auditor, r).await?.encode_to_vec()
            }
        })
    }

    /// `durable.open`: creates the subscription, or returns the existing one.
    pub async fn open(
        &self,
        auditor: &UserName,
        request: OpenDurableRequest,
    ) -> Result<AuditDurable, ApiError> {
        validate_label("durable subscription name", &request.name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let filter = if request.filter.is_empty() {
            self.subjects.audit_all()
        } else if self.subjects.is_audit_filter(&request.filter) {
            request.filter.clone()
        } else {
            return Err(ApiError::bad_request(format!(
                "filter {:?} is not a subject filter under {}",
                request.filter,
                self.subjects.audit_filter(None, None)
            )));
        };
        let consumer = self.consumer_name(auditor, &request.name);
        let stream = self.stream().await?;
        let (info, created) = match stream.consumer_info(&consumer).await {
            Ok(info) => (info, false),
            Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
                let config = self.config(auditor, &request, &consumer, &filter);
                match stream.create_consumer_strict(config).await {
                    Ok(created) => (created.cached_info().clone(), true),
                    // Another replica may have created it a moment ago.
                    Err(e) => match stream.consumer_info(&consumer).await {
                        Ok(info) => (info, false),
                        Err(_) => return Err(unavailable(e)),
                    },
                }
            }
            Err(e) => return Err(unavailable(e)),
        };
        if info.config.filter_subject != filter {
            return Err(ApiError::conflict(format!(
                "durable subscription {} exists with filter {}; delete it to change the filter",
                request.name, info.config.filter_subject
            )));
        }
        let code = if created { 201 } else { 200 };
        self.emit(Some(auditor), &request.name, "open", Ok(code))
            .await;
        Ok(AuditDurable {
            name: request.name,
            stream: self.subjects.audit_stream(),
            deliver_subject: info.config.deliver_subject.clone().unwrap_or_default(),
            filter,
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            created,
            heartbeat_ms: HEARTBEAT.as_millis() as i64,
            consumer,
        })
    }

    /// `durable.delete`: removes the subscription and its position.
    pub async fn delete(&self, auditor: &UserName, r: DurableRef) -> Result<Empty, ApiError> {
        validate_label("durable subscription name", &r.name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let consumer = self.consumer_name(auditor, &r.name);
        let stream = self.stream().await?;
        match stream.delete_consumer(&consumer).await {
            Ok(_) => {}
            Err(e)
                if matches!(e.kind(), ConsumerErrorKind::JetStream(ref j)
                    if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
            {
                return Err(ApiError::not_found(format!(
                    "auditor {auditor} has no durable subscription {}",
                    r.name
                )));
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.emit(Some(auditor), &r.name, "delete", Ok(200)).await;
        Ok(Empty {})
    }

    async fn stream(&self) -> Result<jetstream::stream::Stream, ApiError> {
        self.js
            .get_stream(self.subjects.audit_stream())
            .await
            .map_err(unavailable)
    }

    fn config(
        &self,
        auditor: &UserName,
        request: &OpenDurableRequest,
        consumer: &str,
        filter: &str,
    ) -> consumer::push::Config {
        let deliver_policy = match time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(request.start_ms) * 1_000_000,
        ) {
            Ok(start_time) if request.start_ms > 0 => {
                consumer::DeliverPolicy::ByStartTime { start_time }
            }
            _ => consumer::DeliverPolicy::All,
        };
        consumer::push::Config {
            durable_name: Some(consumer.to_owned()),
            name: Some(consumer.to_owned()),
            description: Some(format!(
                "durable audit subscription {} of {}",
                request.name,
                Identity::Auditor(auditor.clone())
            )),
            deliver_subject: self.subjects.durable_deliver(auditor, consumer),
            deliver_policy,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            filter_subject: filter.to_owned(),
            flow_control: true,
            idle_heartbeat: HEARTBEAT,
            metadata: HashMap::from([
                (OWNER_METADATA.to_owned(), auditor.to_string()),
                (NAME_METADATA.to_owned(), request.name.clone()),
            ]),
            ..Default::default()
        }
    }

    async fn emit(
        &self,
        auditor: Option<&UserName>,
        name: &str,
        action: &str,
        result: Result<i32, &ApiError>,
    ) {
        let (outcome, code, message) = match result {
            Ok(code) => ("success", code, String::new()),
            Err(e) if e.code == 403 => ("denied", 403, e.message.clone()),
            Err(e) => ("failure", i32::from(e.code), e.message.clone()),
        };
        self.audit
            .emit(AuditEvent {
                actor: auditor
                    .map(|a| Identity::Auditor(a.clone()).to_string())
                    .unwrap_or_default(),
                kind: "durable".into(),
                action: action.into(),
                object: format!("durable/{name}"),
                outcome: outcome.into(),
                code,
                message,
                ..Default::default()
            })
            .await;
    }
}

/// The subscription name a request is about, for its audit event.
fn name_of(endpoint: AuditorEndpoint, payload: &[u8]) -> String {
    let name = match endpoint {
        AuditorEndpoint::DurableOpen => OpenDurableRequest::decode(payload).map(|r| r.name),
        AuditorEndpoint::DurableDelete => DurableRef::decode(payload).map(|r| r.name),
    };
    name.unwrap_or_else(|_| "undecodable request".into())
}

/// A key of its own, so consumer names reveal nothing about the token-sealing key.
fn naming_key(secrets_key: &[u8; 32]) -> hmac::Key {
    let root = hmac::Key::new(hmac::HMAC_SHA256, secrets_key);
    let derived = hmac::sign(&root, b"fleetbus audit durable consumer names v1");
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// 32 hex digits (128 bits): too many to guess, one subject token.
fn secret_name(naming: &hmac::Key, auditor: &UserName, name: &str) -> String {
    let tag = hmac::sign(naming, format!("auditor/{auditor}/{name}").as_bytes());
    data_encoding::HEXLOWER.encode(&tag.as_ref()[..16])
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError {
        code: 503,
        message: format!("audit stream: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_names_are_per_auditor_and_stable() {
        let (a, b) = (UserName::new("a").unwrap(), UserName::new("b").unwrap());
        let k = naming_key(&[7u8; 32]);
        let name = secret_name(&k, &a, "siem");
        assert_eq!(name, secret_name(&naming_key(&[7u8; 32]), &a, "siem"));
        assert_ne!(name, secret_name(&k, &b, "siem"));
        assert_ne!(name, secret_name(&k, &a, "siem2"));
        assert_ne!(name, secret_name(&naming_key(&[8u8; 32]), &a, "siem"));
        assert_eq!(name.len(), 32);
        assert!(name.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
