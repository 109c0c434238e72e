//! One wildcard inbox subscription per tunnel, shared by all its streams: each stream gets a
//! token under it and its own queue (the shared [`Routes`]), so a request costs no SUB/UNSUB
//! round of its own.

use async_nats::Message;
use fleetbus_nats::tunnel::{Delivery, Route, Routes};
use futures::StreamExt;

/// The shared subscription.
pub struct Mux {
    prefix: String,
    routes: Routes<Message>,
}

/// A stream's share of the subscription; unregisters on drop.
pub type Replies = Route<Message>;

impl Mux {
    /// Subscribes to `<new inbox>.*` and starts routing messages by their last token.
    pub async fn start(client: &async_nats::Client) -> Result<Self, async_nats::SubscribeError> {
        let prefix = client.new_inbox();
        let mut subscription = client.subscribe(format!("{prefix}.*")).await?;
        let routes = Routes::default();
        let table = routes.clone();
        tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                let token = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if table.deliver(&token, msg) == Delivery::Overrun {
                    // The stream's reader sees its queue close and fails the response.
                    tracing::warn!(stream = %token, "the spoke overran a stream's queue");
                }
            }
        });
        Ok(Self { prefix, routes })
    }

    /// A reply subject and the queue of messages sent to it.
    pub fn register(&self) -> (String, Replies) {
        let token = format!("{:032x}", rand::random::<u128>());
        let subject = format!("{}.{token}", self.prefix);
        (subject, self.routes.register(token))
    }
}
