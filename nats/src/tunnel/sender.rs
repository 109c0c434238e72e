//! The one sender of a stream direction: it owns the sequence numbers, so frames are numbered
//! in the order they are published, and it remembers when it last sent (for keepalives).

use async_nats::HeaderMap;
use bytes::Bytes;
use fleetbus_schema::tunnel::{self, FrameKind};
use tokio::time::Instant;

use super::{error_headers, headers};

/// Where a sender's frames go: NATS, or a channel in tests of the stream state machines.
pub trait Publisher: Clone + Send + Sync + 'static {
    /// Publishes one frame; an error means the frame did not leave.
    fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl Publisher for async_nats::Client {
    async fn publish(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), String> {
        self.publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Publishes one direction of a stream's frames in sequence.
#[derive(Debug)]
pub struct Sender<P = async_nats::Client> {
    publisher: P,
    subject: String,
    seq: u64,
    last: Instant,
}

impl<P: Publisher> Sender<P> {
    /// A sender to `subject` whose next frame is number `seq`.
    pub fn new(publisher: P, subject: impl Into<String>, seq: u64) -> Self {
        Self {
            publisher,
            subject: subject.into(),
            seq,
            last: Instant::now(),
        }
    }

    /// Sends a frame of `kind` with extra `headers`; `false` if it could not be published.
    pub async fn send(&mut self, kind: FrameKind, mut extra: HeaderMap, payload: Bytes) -> bool {
        for (name, values) in headers(kind, self.seq).iter() {
            for value in values {
                extra.insert(name.clone(), value.clone());
            }
        }
        self.publish(extra, payload).await
    }

    /// Sends a frame of `kind` without payload.
    pub async fn frame(&mut self, kind: FrameKind) -> bool {
        self.send(kind, HeaderMap::new(), Bytes::new()).await
    }

    /// Sends a data frame.
    pub async fn data(&mut self, payload: Bytes) -> bool {
        self.send(FrameKind::Data, HeaderMap::new(), payload).await
    }

    /// Acknowledges one data frame of `bytes` bytes.
    pub async fn credit(&mut self, bytes: usize) -> bool {
        let mut h = HeaderMap::new();
        h.insert(tunnel::CREDIT, bytes.to_string().as_str());
        self.send(FrameKind::Credit, h, Bytes::new()).await
    }

    /// Sends an error frame: the stream failed with `code` because of `message`.
    pub async fn error(&mut self, code: u16, message: &str) -> bool {
        let h = error_headers(self.seq, code, message);
        self.publish(h, Bytes::new()).await
    }

    /// When a frame was last sent.
    pub fn last_sent(&self) -> Instant {
        self.last
    }

    async fn publish(&mut self, headers: HeaderMap, payload: Bytes) -> bool {
        self.seq += 1;
        self.last = Instant::now();
        self.publisher
            .publish(self.subject.clone(), headers, payload)
            .await
            .is_ok()
    }
}
