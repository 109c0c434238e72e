//! The one sender of a stream direction: it owns the sequence numbers, so frames are numbered
//! in the order they are published, and it remembers when it last sent (for keepalives).
//! Frames carry this end's own stream subject as their reply: once nothing at the other end
//! subscribes any more (its process died), nats-server answers the next frame with
//! no-responders on that subject, so this end learns at once instead of after the idle timeout.

use async_nats::HeaderMap;
use bytes::Bytes;
use tokio::time::Instant;

use super::{Frame, FrameError};

/// Where a sender's frames go: NATS, or a channel in tests of the stream state machines.
pub trait Publisher: Clone + Send + Sync + 'static {
    /// Publishes one frame with an optional reply subject; an error means it did not leave.
    fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl Publisher for async_nats::Client {
    async fn publish(
        &self,
        subject: String,
        reply: Option<String>,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), String> {
        match reply {
            Some(reply) => {
                self.publish_with_reply_and_headers(subject, reply, headers, payload)
                    .await
            }
            None => self.publish_with_headers(subject, headers, payload).await,
        }
        .map_err(|e| e.to_string())
    }
}

/// A frame that was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// It cannot be encoded; its number is still free.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// It could not be published.
    #[error("cannot publish a frame: {0}")]
    Publish(String),
}

/// Publishes one direction of a stream's frames in sequence.
#[derive(Debug)]
pub struct Sender<P = async_nats::Client> {
    publisher: P,
    subject: String,
    reply: Option<String>,
    seq: u64,
    last: Instant,
}

impl<P: Publisher> Sender<P> {
    /// A sender to `subject` whose next frame is number `seq`.
    pub fn new(publisher: P, subject: impl Into<String>, seq: u64) -> Self {
        Self {
            publisher,
            subject: subject.into(),
            reply: None,
            seq,
            last: Instant::now(),
        }
    }

    /// Sends each frame with `reply` (the subject this end reads the stream on) as its reply
    /// subject, so a peer that is gone is noticed on the next frame.
    pub fn with_reply(mut self, reply: impl Into<String>) -> Self {
        self.reply = Some(reply.into());
        self
    }

    /// Numbers `frame` and publishes it.
    pub async fn send(&mut self, frame: Frame) -> Result<(), SendError> {
        let (headers, payload) = frame.encode(self.seq)?;
        self.seq += 1;
        self.last = Instant::now();
        self.publisher
            .publish(self.subject.clone(), self.reply.clone(), headers, payload)
            .await
            .map_err(SendError::Publish)
    }

    /// When a frame was last sent.
    pub fn last_sent(&self) -> Instant {
        self.last
    }
}
