//! The client end of the Kubernetes API tunnel (protocol in `fleetbus_schema::tunnel`): one
//! HTTP request in, one streaming HTTP response out. Credit is returned only as the caller
//! takes the body, so a slow reader slows the spoke instead of losing data or growing memory.

use std::time::Duration;

use bytes::Bytes;
use fleetbus_nats::tunnel::{
    self as frames, Frame, FrameError, Head, Open, Relayed, Sender, SeqCheck,
};
use fleetbus_schema::tunnel;
use fleetbus_schema::{ClusterName, Subjects, UserName};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;

use super::mux::{Mux, Replies};

/// A tunneled request that failed before a response could start.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// No spoke serves the cluster (NATS no-responders).
    #[error("cluster {0} is not connected to the hub")]
    Offline(ClusterName),
    /// The spoke answered with an error frame.
    #[error("{message}")]
    Remote {
        /// HTTP-like code.
        code: u16,
        /// The spoke's message.
        message: String,
    },
    /// Frames were malformed, lost or out of order.
    #[error("tunnel protocol error: {0}")]
    Protocol(String),
    /// The spoke went silent.
    #[error("cluster {0} did not answer within {1:?}")]
    Timeout(ClusterName, Duration),
    /// NATS refused (permissions) or failed.
    #[error("nats: {0}")]
    Nats(String),
}

impl TunnelError {
    /// The HTTP status a local client should see.
    pub fn status(&self) -> u16 {
        match self {
            Self::Offline(_) => 503,
            Self::Remote { code, .. } => *code,
            Self::Timeout(..) => 504,
            Self::Protocol(_) | Self::Nats(_) => 502,
        }
    }
}

/// The response body: chunks as they arrive, or an error if the stream breaks off.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Tunnels requests to one cluster over a user's NATS connection.
#[derive(Clone)]
pub struct Tunnel {
    client: async_nats::Client,
    subjects: Subjects,
    cluster: ClusterName,
    user: UserName,
    service_account: Option<String>,
    mux: std::sync::Arc<tokio::sync::OnceCell<Mux>>,
}

/// What an upgrade request (exec, attach, port-forward) came back as.
pub enum Upgrade {
    /// The apiserver answered without upgrading: pass the response on as it is (kubectl
    /// falls back from WebSocket to SPDY on it).
    Refused(http::Response<Body>),
    /// 101: send the response, then relay the upgraded connection through `stream`.
    Accepted(http::Response<Body>, Box<UpgradedStream>),
}

/// The tunnel's side of an upgraded connection.
pub struct UpgradedStream {
    out: Sender,
    inbound: Replies,
    seq: SeqCheck,
}

impl UpgradedStream {
    /// Relays between the local connection `io` and the apiserver's until both directions end.
    pub async fn relay<IO>(mut self, io: IO, stop: &tokio_util::sync::CancellationToken) -> Relayed
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite,
    {
        frames::relay(
            io,
            &mut self.out,
            &mut self.inbound,
            &mut self.seq,
            stop,
            &mut |_| {},
        )
        .await
    }
}

/// A stream whose response head has arrived.
struct Opened {
    head: Head,
    replies: Replies,
    seq: SeqCheck,
    /// Frames to the spoke, numbered on from the request body's.
    out: Sender,
}

impl Tunnel {
    /// A tunnel to `cluster` for `user` (the name her certificate carries: nats-server lets her
    /// publish only under it).
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        cluster: ClusterName,
        user: UserName,
    ) -> Self {
        Self {
            client,
            subjects,
            cluster,
            user,
            service_account: None,
            mux: std::sync::Arc::default(),
        }
    }

    /// Names the managed service account whose token the requests carry (for audit events).
    pub fn with_service_account(mut self, name: &str) -> Self {
        self.service_account = Some(name.to_owned());
        self
    }

    /// Sends `request` (whose body is `body`) and returns the streaming response.
    pub async fn request(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        request_id: &str,
    ) -> Result<http::Response<Body>, TunnelError> {
        let opened = self.open(parts, body, request_id, None).await?;
        Ok(opened.into_response(request_id))
    }

    /// Sends an upgrade request asking for `protocol` (its `Upgrade` header).
    pub async fn upgrade(
        &self,
        parts: &http::request::Parts,
        request_id: &str,
        protocol: &str,
    ) -> Result<Upgrade, TunnelError> {
        let opened = self
            .open(parts, Bytes::new(), request_id, Some(protocol))
            .await?;
        if opened.head.status != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Upgrade::Refused(opened.into_response(request_id)));
        }
        let Opened {
            head,
            replies,
            seq,
            out,
        } = opened;
        let protocol = head
            .upgrade
            .as_deref()
            .and_then(|p| http::HeaderValue::from_str(p).ok())
            .ok_or_else(|| TunnelError::Protocol("101 without the protocol upgraded to".into()))?;
        let mut response = http::Response::new(empty());
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        let headers = response.headers_mut();
        headers.insert(http::header::UPGRADE, protocol);
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        let stream = Box::new(UpgradedStream {
            out,
            inbound: replies,
            seq,
        });
        Ok(Upgrade::Accepted(response, stream))
    }

    /// Publishes the open frame (and a streamed body) and waits for the response head.
    async fn open(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        request_id: &str,
        upgrade: Option<&str>,
    ) -> Result<Opened, TunnelError> {
        let nats = |e: &dyn std::fmt::Display| TunnelError::Nats(e.to_string());
        let mux = self
            .mux
            .get_or_try_init(|| Mux::start(&self.client))
            .await
            .map_err(|e| nats(&e))?;
        let (inbox, mut replies) = mux.register();
        let inline = body.len() <= tunnel::CHUNK;
        let open = Frame::Open(Open {
            method: parts.method.clone(),
            path: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            request_id: request_id.to_owned(),
            service_account: self.service_account.clone(),
            upgrade: upgrade.map(str::to_owned),
            headers: parts.headers.clone(),
            body: inline.then(|| body.clone()),
        });
        let (open, payload) = open.encode(0).map_err(|e| match e {
            FrameError::HeadersTooLarge => TunnelError::Remote {
                code: 431,
                message: e.to_string(),
            },
            e => TunnelError::Protocol(e.to_string()),
        })?;
        self.client
            .publish_with_reply_and_headers(
                self.subjects.kapi_open(&self.cluster, &self.user),
                inbox.clone(),
                open,
                payload,
            )
            .await
            .map_err(|e| nats(&e))?;

        let protocol = |e: FrameError| TunnelError::Protocol(e.to_string());
        let mut seq = SeqCheck::default();
        let mut out = None;
        let head = loop {
            // Silence before the first frame means the spoke died; after it, keepalives arrive.
            let wait = if out.is_none() {
                tunnel::FIRST_FRAME_TIMEOUT
            } else {
                tunnel::IDLE_TIMEOUT
            };
            let msg = tokio::time::timeout(wait, replies.next())
                .await
                .map_err(|_| TunnelError::Timeout(self.cluster.clone(), wait))?
                .ok_or_else(|| {
                    TunnelError::Protocol("too many frames queued for this stream".into())
                })?;
            if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(TunnelError::Offline(self.cluster.clone()));
            }
            match seq
                .decode(msg.headers.as_ref(), msg.payload)
                .map_err(protocol)?
            {
                Frame::Ready { upstream } => {
                    // Frames to the spoke: the open was number 0.
                    let mut sender =
                        Sender::new(self.client.clone(), upstream, 1).with_reply(&inbox);
                    if !inline {
                        send_body(&mut sender, &body).await?;
                    }
                    out = Some(sender);
                }
                Frame::Head(head) => break head,
                Frame::Error { code, message } => {
                    return Err(TunnelError::Remote { code, message });
                }
                Frame::Keepalive => {}
                other => {
                    return Err(TunnelError::Protocol(format!(
                        "unexpected {} frame before the response head",
                        other.kind().as_str()
                    )));
                }
            }
        };
        let out = out.unwrap_or_else(|| {
            Sender::new(self.client.clone(), head.upstream.clone(), 1).with_reply(&inbox)
        });
        Ok(Opened {
            head,
            replies,
            seq,
            out,
        })
    }
}

impl Opened {
    /// The response the stream carries: whole in its head, or streamed by a pump.
    fn into_response(self, request_id: &str) -> http::Response<Body> {
        let body = match self.head.body {
            Some(body) => http_body_util::Full::new(body)
                .map_err(|never| match never {})
                .boxed(),
            None => {
                let (tx, rx) =
                    mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::io::Error>>(1);
                let pump = Pump {
                    request_id: request_id.to_owned(),
                    out: self.out,
                    seq: self.seq,
                };
                tokio::spawn(pump.run(self.replies, tx));
                BodyExt::boxed(StreamBody::new(tokio_stream_from(rx)))
            }
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = self.head.status;
        *response.headers_mut() = self.head.headers;
        response
    }
}

async fn send_body(out: &mut Sender, body: &Bytes) -> Result<(), TunnelError> {
    let lost = |_| TunnelError::Nats("cannot publish the request body".into());
    for chunk in body.chunks(tunnel::CHUNK) {
        let chunk = Bytes::copy_from_slice(chunk);
        out.send(Frame::Data(chunk)).await.map_err(lost)?;
    }
    out.send(Frame::Eof).await.map_err(lost)
}

fn empty() -> Body {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Moves response frames into the body and credit, keepalives and cancel back to the spoke.
struct Pump {
    request_id: String,
    out: Sender,
    seq: SeqCheck,
}

impl Pump {
    /// Relays until the response ends. Frames are read even while the caller is not taking
    /// the body (they are bounded by the window), so keepalives flow both ways and a slow
    /// reader never overruns the queue. Any failure reaches the caller as a body error and
    /// is logged with the request id: a response is never cut short silently.
    async fn run(
        mut self,
        mut replies: Replies,
        tx: mpsc::Sender<Result<hyper::body::Frame<Bytes>, std::io::Error>>,
    ) {
        // Not `interval` and its first tick: that tick waits for the timer wheel's next turn,
        // up to a millisecond added to every streamed response.
        let start = tokio::time::Instant::now() + tunnel::KEEPALIVE;
        let mut keepalive = tokio::time::interval_at(start, tunnel::KEEPALIVE);
        let mut buffered: std::collections::VecDeque<Bytes> = std::collections::VecDeque::new();
        let mut ended = false;
        let mut heard = tokio::time::Instant::now();
        let failure = loop {
            if ended && buffered.is_empty() {
                return;
            }
            let frame = tokio::select! {
                () = tx.closed() => return self.cancel().await,
                _ = keepalive.tick() => { let _ = self.out.send(Frame::Keepalive).await; continue; }
                permit = tx.reserve(), if !buffered.is_empty() => {
                    let Ok(permit) = permit else { return self.cancel().await };
                    let Some(data) = buffered.pop_front() else { continue };
                    let n = data.len();
                    permit.send(Ok(hyper::body::Frame::data(data)));
                    if !ended {
                        let _ = self.out.send(Frame::Credit(n)).await;
                    }
                    continue;
                }
                () = tokio::time::sleep_until(heard + tunnel::IDLE_TIMEOUT), if !ended => {
                    break "the spoke went silent".to_owned();
                }
                frame = replies.frame(&mut self.seq), if !ended => frame,
            };
            heard = tokio::time::Instant::now();
            let frame = match frame {
                None => break "the spoke overran the stream's queue".to_owned(),
                Some(Ok(frame)) => frame,
                Some(Err(FrameError::PeerGone)) => break "the spoke is gone".to_owned(),
                Some(Err(e)) => break format!("tunnel protocol error: {e}"),
            };
            match frame {
                Frame::Data(data) if buffered.len() < tunnel::WINDOW_FRAMES => {
                    buffered.push_back(data);
                }
                Frame::Data(_) => break "the spoke sent more than its window".to_owned(),
                Frame::End => ended = true,
                Frame::Keepalive => {}
                Frame::Error { message, .. } => {
                    tracing::warn!(request_id = %self.request_id, cause = %message, "response stream failed on the spoke");
                    let _ = tx.send(Err(std::io::Error::other(message))).await;
                    return;
                }
                other => break format!("unexpected {} frame", other.kind().as_str()),
            }
        };
        tracing::warn!(request_id = %self.request_id, cause = %failure, "response stream failed");
        let _ = tx.send(Err(std::io::Error::other(failure))).await;
        self.cancel().await;
    }

    async fn cancel(&mut self) {
        let _ = self.out.send(Frame::Cancel).await;
    }
}
