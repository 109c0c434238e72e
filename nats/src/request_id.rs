//! Request ids on NATS (the id itself is `fleetbus_schema::RequestId`): making a fresh one,
//! reading the one a message carries, and the scope a handler runs in, so that every call it
//! makes ([`crate::rpc::call`]) and every audit event it emits ([`crate::audit::Auditor`])
//! carries the same id without passing it through every function.

use std::future::Future;

use async_nats::HeaderMap;
use fleetbus_schema::headers::REQUEST_ID;
use fleetbus_schema::request_id::{RequestId, RequestIdError};

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A new random id (128 bits).
pub fn fresh() -> RequestId {
    RequestId::from_bits(rand::random())
}

/// The id a message carries: `Ok(None)` without one, an error for a malformed one.
pub fn read(headers: Option<&HeaderMap>) -> Result<Option<RequestId>, RequestIdError> {
    match headers.and_then(|h| h.get(REQUEST_ID)) {
        None => Ok(None),
        Some(value) => RequestId::new(value.as_str()).map(Some),
    }
}

/// The id a message carries, or a fresh one when it has none or a malformed one (which is
/// never logged as it came: only why it was refused).
pub fn of(headers: Option<&HeaderMap>) -> RequestId {
    match read(headers) {
        Ok(Some(id)) => id,
        Ok(None) => fresh(),
        Err(why) => {
            tracing::debug!(%why, "ignoring a malformed request id");
            fresh()
        }
    }
}

/// Headers carrying `id`.
pub fn headers(id: &RequestId) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(REQUEST_ID, id.as_str());
    h
}

/// Runs `work` with `id` as the current request id.
pub async fn scope<F: Future>(id: RequestId, work: F) -> F::Output {
    CURRENT.scope(id, work).await
}

/// The current request id, inside [`scope`].
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The current request id, or a fresh one outside any [`scope`].
pub fn current_or_fresh() -> RequestId {
    current().unwrap_or_else(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_ids_are_checked() {
        let id = RequestId::new("abc-1").unwrap();
        assert_eq!(read(Some(&headers(&id))), Ok(Some(id.clone())));
        assert_eq!(of(Some(&headers(&id))), id);
        assert_eq!(read(None), Ok(None));
        let mut bad = HeaderMap::new();
        bad.insert(REQUEST_ID, "two words");
        assert_eq!(read(Some(&bad)), Err(RequestIdError::Charset));
        let replaced = of(Some(&bad));
        assert_eq!(replaced.as_str().len(), 32);
        assert_ne!(of(None), of(None));
    }

    #[tokio::test]
    async fn a_scope_gives_its_id_to_what_runs_in_it() {
        assert_eq!(current(), None);
        let id = RequestId::new("scoped").unwrap();
        let inner = scope(id.clone(), async { current() }).await;
        assert_eq!(inner, Some(id));
        assert_eq!(current_or_fresh().as_str().len(), 32);
    }
}
