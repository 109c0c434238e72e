//! The one demultiplexer of tunnel streams: messages that arrive on a shared subscription go to
//! their stream's bounded queue by a token taken from the subject. A sender that overruns a
//! queue (it ignored flow control) loses its stream: the queue closes, and the stream's reader
//! fails it loudly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use fleetbus_schema::tunnel::STREAM_QUEUE;

type Table<T> = Arc<Mutex<HashMap<String, mpsc::Sender<T>>>>;

/// Streams by token.
pub struct Routes<T> {
    table: Table<T>,
}

impl<T> Clone for Routes<T> {
    fn clone(&self) -> Self {
        Self {
            table: self.table.clone(),
        }
    }
}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Self {
            table: Arc::default(),
        }
    }
}

/// What became of a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Queued for its stream.
    Queued,
    /// No stream has that token (ended, or never existed).
    Unknown,
    /// The stream's queue was full; the stream is closed.
    Overrun,
}

/// One stream's queue; leaving the table when dropped.
pub struct Route<T> {
    rx: mpsc::Receiver<T>,
    token: String,
    table: Table<T>,
}

impl<T> Routes<T> {
    /// Adds a stream under `token` (a random one: tokens are not guessable).
    pub fn register(&self, token: String) -> Route<T> {
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        lock(&self.table).insert(token.clone(), tx);
        Route {
            rx,
            token,
            table: self.table.clone(),
        }
    }

    /// Queues `item` for the stream `token`.
    pub fn deliver(&self, token: &str, item: T) -> Delivery {
        let mut table = lock(&self.table);
        let Some(tx) = table.get(token) else {
            return Delivery::Unknown;
        };
        match tx.try_send(item) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                table.remove(token);
                Delivery::Unknown
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                table.remove(token);
                Delivery::Overrun
            }
        }
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        lock(&self.table).len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Route<T> {
    /// The next message, or `None` once the stream was closed for overrunning its queue.
    pub async fn next(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// The stream's token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl<T> Drop for Route<T> {
    fn drop(&mut self) {
        lock(&self.table).remove(&self.token);
    }
}

fn lock<T>(table: &Table<T>) -> MutexGuard<'_, HashMap<String, mpsc::Sender<T>>> {
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_reach_their_stream_and_an_overrun_closes_it() {
        let routes = Routes::default();
        let mut a = routes.register("a".into());
        assert_eq!(routes.deliver("a", 1), Delivery::Queued);
        assert_eq!(routes.deliver("b", 1), Delivery::Unknown);
        assert_eq!(a.next().await, Some(1));
        for i in 0..STREAM_QUEUE {
            assert_eq!(routes.deliver("a", i), Delivery::Queued);
        }
        assert_eq!(routes.deliver("a", 0), Delivery::Overrun);
        assert_eq!(routes.deliver("a", 0), Delivery::Unknown);
        for _ in 0..STREAM_QUEUE {
            assert!(a.next().await.is_some());
        }
        assert_eq!(
            a.next().await,
            None,
            "the reader learns its stream was closed"
        );
    }

    #[test]
    fn a_dropped_stream_leaves_the_table() {
        let routes = Routes::<u8>::default();
        let a = routes.register("a".into());
        assert_eq!(routes.len(), 1);
        drop(a);
        assert!(routes.is_empty());
    }
}
