//! Calling a fleetbus request/reply subject: protobuf in, protobuf out, with the NATS micro
//! error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`) turned into a typed error,
//! and the request id (`Fleetbus-Request-Id`) sent with every call.

use fleetbus_schema::RequestId;
use fleetbus_schema::headers::{SERVICE_ERROR, SERVICE_ERROR_CODE};
use prost::Message;

/// A call that did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Nobody serves the subject.
    #[error("no responder on {0}")]
    NoResponders(String),
    /// No answer in time (or the request was not permitted).
    #[error("no answer on {0} in time")]
    TimedOut(String),
    /// The responder refused or failed.
    #[error("{message}")]
    Refused {
        /// HTTP-like code.
        code: u16,
        /// The responder's message.
        message: String,
    },
    /// The answer is not the expected message.
    #[error(transparent)]
    Decode(#[from] fleetbus_schema::DecodeError),
    /// Anything else on the wire.
    #[error("request on {subject} failed: {reason}")]
    Other {
        /// The subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// Sends `request` to `subject` and decodes the answer. The call carries the current request
/// id ([`crate::request_id::scope`]), or a fresh one.
pub async fn call<Req: Message, Resp: Message + Default>(
    client: &async_nats::Client,
    subject: String,
    request: &Req,
) -> Result<Resp, RpcError> {
    call_with_id(
        client,
        subject,
        request,
        &crate::request_id::current_or_fresh(),
    )
    .await
}

/// [`call`] with the request id `id`.
pub async fn call_with_id<Req: Message, Resp: Message + Default>(
    client: &async_nats::Client,
    subject: String,
    request: &Req,
    id: &RequestId,
) -> Result<Resp, RpcError> {
    use async_nats::client::RequestErrorKind;
    let msg = client
        .request_with_headers(
            subject.clone(),
            crate::request_id::headers(id),
            request.encode_to_vec().into(),
        )
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => RpcError::NoResponders(subject.clone()),
            RequestErrorKind::TimedOut => RpcError::TimedOut(subject.clone()),
            _ => RpcError::Other {
                subject: subject.clone(),
                reason: e.to_string(),
            },
        })?;
    if let Some(h) = msg.headers.as_ref()
        && let Some(message) = h.get(SERVICE_ERROR)
    {
        let code = h
            .get(SERVICE_ERROR_CODE)
            .and_then(|c| c.as_str().parse().ok())
            .unwrap_or(500);
        return Err(RpcError::Refused {
            code,
            message: message.to_string(),
        });
    }
    Ok(fleetbus_schema::decode(&subject, &msg.payload)?)
}
