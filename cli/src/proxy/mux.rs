//! One wildcard inbox subscription per tunnel, shared by all its streams: each stream gets a
//! token under it and its own queue, so a request costs no SUB/UNSUB round of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;

// The spoke never has more than a window of data frames in flight, so only a misbehaving
// sender fills a stream's queue, and then its stream fails.
use fleetbus_schema::tunnel::STREAM_QUEUE;

type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<async_nats::Message>>>>;

/// The shared subscription.
pub struct Mux {
    prefix: String,
    routes: Routes,
}

/// A stream's share of the subscription; unregisters on drop.
pub struct Replies {
    rx: mpsc::Receiver<async_nats::Message>,
    token: String,
    routes: Routes,
}

impl Mux {
    /// Subscribes to `<new inbox>.*` and starts routing messages by their last token.
    pub async fn start(client: &async_nats::Client) -> Result<Self, async_nats::SubscribeError> {
        let prefix = client.new_inbox();
        let mut subscription = client.subscribe(format!("{prefix}.*")).await?;
        let routes: Routes = Arc::default();
        let table = routes.clone();
        tokio::spawn(async move {
            while let Some(msg) = subscription.next().await {
                let token = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let mut table = lock(&table);
                if let Some(tx) = table.get(&token)
                    && tx.try_send(msg).is_err()
                {
                    // The stream's reader sees its queue close and fails the response.
                    tracing::warn!(stream = %token, "the spoke overran a stream's queue");
                    table.remove(&token);
                }
            }
        });
        Ok(Self { prefix, routes })
    }

    /// A reply subject and the queue of messages sent to it.
    pub fn register(&self) -> (String, Replies) {
        let token = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        lock(&self.routes).insert(token.clone(), tx);
        let subject = format!("{}.{token}", self.prefix);
        (
            subject,
            Replies {
                rx,
                token,
                routes: self.routes.clone(),
            },
        )
    }
}

impl Replies {
    /// The next message, or `None` when the stream was dropped for flooding.
    pub async fn next(&mut self) -> Option<async_nats::Message> {
        self.rx.recv().await
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        lock(&self.routes).remove(&self.token);
    }
}

fn lock(
    routes: &Routes,
) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<async_nats::Message>>> {
    routes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
