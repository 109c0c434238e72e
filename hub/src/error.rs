//! Errors the hub API returns: an HTTP-like code and one line for the caller. They travel as
//! NATS micro service errors.

use crate::store::StoreError;

/// A refused or failed hub API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// 400, 403, 404, 409, 503, …
    pub code: u16,
    /// What the caller sees.
    pub message: String,
}

impl ApiError {
    /// 400: the request itself is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            message: message.into(),
        }
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: 403,
            message: message.into(),
        }
    }

    /// 404: no such object.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 404,
            message: message.into(),
        }
    }

    /// 409: the object is in a state that does not allow it.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            code: 409,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self {
            code: 503,
            message: e.to_string(),
        }
    }
}

/// Answers a plain request/reply message: the payload, or an empty body with the NATS micro
/// error headers.
pub async fn respond(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    result: Result<bytes::Bytes, ApiError>,
) {
    use fleetbus_schema::headers::{SERVICE_ERROR, SERVICE_ERROR_CODE};
    let sent = match result {
        Ok(body) => client.publish(reply, body).await,
        Err(e) => {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(SERVICE_ERROR, e.message.as_str());
            headers.insert(SERVICE_ERROR_CODE, e.code.to_string().as_str());
            client
                .publish_with_headers(reply, headers, bytes::Bytes::new())
                .await
        }
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "could not send reply");
    }
}
