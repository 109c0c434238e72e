//! Permission violations as errors, at once. nats-server refuses a publish or subscription it
//! does not allow with an `-ERR` on the connection, not on the request, so a refused request
//! would otherwise look like a timeout. A connection made with [`Refusals::watch`] hands every
//! refusal to whoever waits for one.

use async_nats::{ConnectOptions, Event, ServerError};
use tokio::sync::broadcast;

/// The permission violations reported on one connection.
#[derive(Clone)]
pub struct Refusals {
    tx: broadcast::Sender<String>,
}

/// What a waiter holds: subscribe before sending, so no refusal is missed.
pub struct Watch {
    rx: broadcast::Receiver<String>,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(64).0,
        }
    }
}

impl Refusals {
    /// `options` with an event callback that reports refusals here (it replaces any other).
    pub fn watch(&self, options: ConnectOptions) -> ConnectOptions {
        let tx = self.tx.clone();
        options.event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(ServerError::Other(text)) = &event
                    && is_violation(text)
                {
                    let _ = tx.send(text.clone());
                } else {
                    tracing::debug!(%event, "nats");
                }
            }
        })
    }

    /// Starts listening for refusals.
    pub fn listen(&self) -> Watch {
        Watch {
            rx: self.tx.subscribe(),
        }
    }
}

impl Watch {
    /// The server's reason once it refuses anything on `subject` (any subject when `None`);
    /// never returns otherwise.
    pub async fn refused(mut self, subject: Option<&str>) -> String {
        loop {
            match self.rx.recv().await {
                Ok(text) if subject.is_none_or(|s| names(&text, s)) => return text,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}

fn is_violation(text: &str) -> bool {
    text.to_ascii_lowercase().contains("permissions violation")
}

/// Whether a violation text (`permissions violation for publish to "x"`) names `subject`.
fn names(text: &str, subject: &str) -> bool {
    text.to_ascii_lowercase()
        .contains(&format!("\"{}\"", subject.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_wording() {
        let text = "permissions violation for publish to \"$JS.API.STREAM.INFO.fleet-audit\"";
        assert!(is_violation(text));
        assert!(is_violation(
            "Permissions Violation for Subscription to \"x\""
        ));
        assert!(!is_violation("authorization violation"));
        assert!(names(text, "$JS.API.STREAM.INFO.fleet-audit"));
        assert!(!names(text, "$JS.API.STREAM.INFO.fleet"));
    }

    #[tokio::test]
    async fn a_waiter_gets_the_refusal_of_its_subject() {
        let refusals = Refusals::default();
        let watch = refusals.listen();
        let _ = refusals
            .tx
            .send("permissions violation for publish to \"other\"".into());
        let _ = refusals
            .tx
            .send("permissions violation for publish to \"mine\"".into());
        let text = watch.refused(Some("mine")).await;
        assert!(text.ends_with("\"mine\""));
    }
}
