//! One tunneled request on the spoke: forward it to the kube-apiserver and stream the response
//! back in credit-limited chunks, ending cleanly on cancel, on a silent client, or on shutdown.

use async_nats::Message;
use bytes::Bytes;
use fleetbus_nats::tunnel::{Frame, FrameError, Head, Open, Route, SendError, Sender, SeqCheck};
use fleetbus_schema::tunnel;
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::tunnel_gather::{Gathered, gather, small_length};
use crate::tunnel_session::{self, Session};
use crate::upstream::Upstream;

/// Largest request body the tunnel forwards (Kubernetes objects are far smaller).
pub const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// What a stream needs.
pub struct StreamContext {
    /// NATS.
    pub client: async_nats::Client,
    /// The apiserver.
    pub upstream: Upstream,
    /// The client's inbox for this stream.
    pub reply: async_nats::Subject,
    /// Where the client sends this stream's frames.
    pub upstream_subject: String,
    /// Fires on shutdown.
    pub stop: CancellationToken,
    /// Audit events.
    pub audit: fleetbus_nats::audit::Auditor,
    /// Metrics.
    pub stats: std::sync::Arc<crate::config::Stats>,
    /// This cluster.
    pub cluster: String,
    /// Who sent the request, from the subject it arrived on (`user:alice`).
    pub actor: String,
}

/// How a stream ended, for the audit event.
pub(crate) struct Outcome {
    pub code: u16,
    pub bytes: u64,
    pub message: String,
    /// An upgraded session (exec, attach, port-forward), if the request became one.
    pub session: Option<Session>,
}

impl Outcome {
    pub(crate) fn failed(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            bytes: 0,
            message: message.into(),
            session: None,
        }
    }
}

/// Sends an error frame and returns the outcome it stands for.
pub(crate) async fn fail(out: &mut Sender, code: u16, message: String) -> Outcome {
    let error = Frame::Error {
        code,
        message: message.clone(),
    };
    let _ = out.send(error).await;
    Outcome::failed(code, message)
}

/// Sends the response head; a head that cannot be encoded fails the stream.
pub(crate) async fn send_head(out: &mut Sender, head: Head) -> Result<(), Outcome> {
    match out.send(Frame::Head(head)).await {
        Ok(()) => Ok(()),
        Err(SendError::Frame(e)) => Err(fail(out, 502, e.to_string()).await),
        Err(SendError::Publish(_)) => Err(Outcome::failed(499, "the client went away")),
    }
}

/// Serves one stream to its end and records it as an audit event.
pub async fn serve_stream(ctx: StreamContext, open: Message, inbound: Route<Message>) {
    let started = Instant::now();
    let mut out = Sender::new(ctx.client.clone(), ctx.reply.to_string(), 0)
        .with_reply(ctx.upstream_subject.clone());
    let mut seq = SeqCheck::default();
    let open = match seq.decode(open.headers.as_ref(), open.payload) {
        Ok(Frame::Open(open)) => open,
        other => {
            let why = other.map_or_else(
                |e| e.to_string(),
                |f| format!("a {} frame", f.kind().as_str()),
            );
            fail(&mut out, 400, format!("bad open frame: {why}")).await;
            return;
        }
    };
    let request_id = open.request_id.clone();
    let (method, path) = (open.method.clone(), open.path.clone());
    let service_account = open.service_account.clone().unwrap_or_default();
    let outcome = run_stream(&ctx, &mut out, open, inbound, seq, &request_id).await;
    let latency = started.elapsed();
    tracing::info!(%method, %path, status = outcome.code, bytes = outcome.bytes, latency_ms = latency.as_millis() as u64, request_id = %request_id, "proxied request");
    let m = &ctx.stats.metrics;
    let code = outcome.code.to_string();
    m.add(
        "fleetbus_spoke_tunnel_requests_total",
        &[("code", &code)],
        1.0,
    );
    m.add(
        "fleetbus_spoke_tunnel_bytes_total",
        &[],
        outcome.bytes as f64,
    );
    m.add(
        "fleetbus_spoke_tunnel_latency_seconds_sum",
        &[],
        latency.as_secs_f64(),
    );
    m.add("fleetbus_spoke_tunnel_latency_seconds_count", &[], 1.0);
    let result = match outcome.code {
        _ if !outcome.message.is_empty() && outcome.session.is_some() => "failure",
        101..=399 => "success",
        401 | 403 => "denied",
        _ => "failure",
    };
    let action = outcome.session.as_ref().map_or("request", |s| s.action);
    ctx.audit
        .emit(fleetbus_schema::v1::AuditEvent {
            actor: ctx.actor.clone(),
            cluster: ctx.cluster.clone(),
            kind: "proxy".into(),
            action: action.into(),
            object: format!("{method} {path}"),
            outcome: result.into(),
            code: i32::from(outcome.code),
            message: outcome.message,
            latency_us: latency.as_micros() as i64,
            request_id,
            service_account,
            bytes: outcome.bytes as i64,
            session: outcome.session.map(Session::into_audit),
            ..Default::default()
        })
        .await;
}

async fn run_stream(
    ctx: &StreamContext,
    out: &mut Sender,
    mut open: Open,
    mut inbound: Route<Message>,
    mut seq: SeqCheck,
    request_id: &str,
) -> Outcome {
    let ready = || Frame::Ready {
        upstream: ctx.upstream_subject.clone(),
    };
    // Only a streamed request body needs the upstream subject before the response head.
    let streamed = open.body.is_none();
    if streamed {
        if out.send(ready()).await.is_err() {
            return Outcome::failed(499, "the client went away");
        }
        match receive_body(&mut inbound, &mut seq, &ctx.stop).await {
            Ok(body) => open.body = Some(body),
            Err((code, message)) => return fail(out, code, message).await,
        }
    }
    let (path, upgrade) = (open.path.clone(), open.upgrade.is_some());
    let request = match build_request(open) {
        Ok(request) => request,
        Err(message) => return fail(out, 400, message).await,
    };
    // Wait for the apiserver, but not past a cancel or a silent client.
    let send = ctx.upstream.send(request, upgrade);
    tokio::pin!(send);
    let mut last_client = Instant::now();
    // A slow apiserver: tell the client this stream is alive (ready), then keep it alive.
    let mut acked = streamed;
    let ack_at = Instant::now() + tunnel::ACK_AFTER;
    let response = loop {
        let alive_at = if acked {
            out.last_sent() + tunnel::KEEPALIVE
        } else {
            ack_at
        };
        tokio::select! {
            () = ctx.stop.cancelled() => return fail(out, 503, "the spoke is shutting down".into()).await,
            result = &mut send => break result,
            () = sleep_until(alive_at) => {
                let frame = if acked { Frame::Keepalive } else { ready() };
                acked = true;
                if out.send(frame).await.is_err() {
                    return Outcome::failed(499, "the client went away");
                }
            }
            frame = inbound.frame(&mut seq) => match control(frame) {
                Ok(None) => last_client = Instant::now(),
                Ok(Some(_)) | Err(_) => return Outcome::failed(499, "cancelled by the client"),
            },
            () = sleep_until(last_client + tunnel::IDLE_TIMEOUT) => return Outcome::failed(408, "the client went silent"),
        }
    };
    let response = match response {
        Ok(response) => response,
        Err(e) => {
            let message = format!("cannot reach the kube-apiserver: {}", error_chain(&e));
            return fail(out, 502, message).await;
        }
    };
    let status = response.status();
    let known_length = small_length(&response);
    let mut head = Head {
        status,
        headers: response.headers().clone(),
        upstream: ctx.upstream_subject.clone(),
        ..Head::default()
    };
    if status == http::StatusCode::SWITCHING_PROTOCOLS {
        let session = Session::new(&path);
        return tunnel_session::relay(ctx, out, head, response, inbound, seq, session).await;
    }
    // A body that fits one frame and is complete at once travels with the head.
    let mut body = response.into_body();
    let first = match gather(&mut body, known_length).await {
        Ok(Gathered::Whole(bytes)) => {
            head.body = Some(bytes);
            None
        }
        Ok(Gathered::Started(bytes)) => Some(bytes),
        Err(e) => {
            let message = format!("the kube-apiserver response broke off: {e}");
            return fail(out, 502, message).await;
        }
    };
    let inline = head.body.as_ref().map_or(0, |body| body.len() as u64);
    if let Err(outcome) = send_head(out, head).await {
        return outcome;
    }
    let bytes = match first {
        None => inline,
        Some(first) => {
            let (inbound, seq) = (&mut inbound, &mut seq);
            let body = (first, body);
            stream_body(ctx, out, inbound, seq, body, last_client, request_id).await
        }
    };
    Outcome {
        code: status.as_u16(),
        bytes,
        message: String::new(),
        session: None,
    }
}

/// Handles a control frame while no body is expected: `Ok(None)` to go on, `Ok(Some(n))` for
/// credit of `n` bytes, `Err` to end the stream (cancel, protocol error, or the client gone).
fn control(frame: Option<Result<Frame, FrameError>>) -> Result<Option<usize>, ()> {
    match frame {
        Some(Ok(Frame::Keepalive)) => Ok(None),
        Some(Ok(Frame::Credit(n))) => Ok(Some(n)),
        _ => Err(()),
    }
}

async fn receive_body(
    inbound: &mut Route<Message>,
    seq: &mut SeqCheck,
    stop: &CancellationToken,
) -> Result<Bytes, (u16, String)> {
    let mut body = Vec::new();
    loop {
        let frame = tokio::select! {
            () = stop.cancelled() => return Err((503, "the spoke is shutting down".into())),
            frame = tokio::time::timeout(tunnel::IDLE_TIMEOUT, inbound.frame(seq)) => frame,
        };
        let frame = frame
            .ok()
            .flatten()
            .ok_or((408, "request body not received in time".to_owned()))?
            .map_err(|e| match e {
                FrameError::PeerGone => (499, e.to_string()),
                e => (400, e.to_string()),
            })?;
        match frame {
            Frame::Data(data) if body.len() + data.len() <= MAX_REQUEST_BODY => {
                body.extend_from_slice(&data)
            }
            Frame::Data(_) => {
                return Err((
                    413,
                    format!("request body larger than {MAX_REQUEST_BODY} bytes"),
                ));
            }
            Frame::Eof => return Ok(body.into()),
            Frame::Keepalive => {}
            _ => {
                return Err((
                    400,
                    "unexpected frame while receiving the request body".into(),
                ));
            }
        }
    }
}

fn build_request(open: Open) -> Result<http::Request<Full<Bytes>>, String> {
    if !open.path.starts_with('/') {
        return Err(format!("invalid request path {:?}", open.path));
    }
    let mut request = http::Request::builder()
        .method(open.method)
        .uri(open.path)
        .body(Full::new(open.body.unwrap_or_default()))
        .map_err(|e| format!("invalid request: {e}"))?;
    *request.headers_mut() = open.headers;
    // The same id in fleetbus's logs and in the member cluster's audit log.
    if let Ok(id) = http::HeaderValue::from_str(&open.request_id) {
        request.headers_mut().insert("audit-id", id);
    }
    // An upgrade asks for exactly this: the apiserver reads only the first Connection value.
    if let Some(upgrade) = open.upgrade {
        let value = http::HeaderValue::from_str(&upgrade)
            .map_err(|_| format!("invalid upgrade protocol {upgrade:?}"))?;
        let headers = request.headers_mut();
        headers.insert(http::header::UPGRADE, value);
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
    }
    Ok(request)
}

/// Streams the response body (its start already read) in chunks, never more than the window
/// (bytes and frames) ahead of the client's credit; returns the bytes sent. A stream that
/// cannot be completed ends with an error frame and a warning, never with a clean end.
async fn stream_body(
    ctx: &StreamContext,
    out: &mut Sender,
    inbound: &mut Route<Message>,
    seq: &mut SeqCheck,
    (mut pending, mut body): (Bytes, hyper::body::Incoming),
    mut last_client: Instant,
    request_id: &str,
) -> u64 {
    let (mut in_flight, mut frames_in_flight, mut sent) = (0usize, 0usize, 0u64);
    let mut done = false;
    loop {
        while !pending.is_empty()
            && in_flight < tunnel::WINDOW
            && frames_in_flight < tunnel::WINDOW_FRAMES
        {
            let n = pending
                .len()
                .min(tunnel::CHUNK)
                .min(tunnel::WINDOW - in_flight);
            let chunk = pending.split_to(n);
            if out.send(Frame::Data(chunk)).await.is_err() {
                tracing::warn!(%request_id, sent, "cannot publish a response frame; stream ends");
                return sent;
            }
            in_flight += n;
            frames_in_flight += 1;
            sent += n as u64;
        }
        if done && pending.is_empty() {
            let _ = out.send(Frame::End).await;
            return sent;
        }
        let want_more = pending.is_empty()
            && !done
            && in_flight < tunnel::WINDOW
            && frames_in_flight < tunnel::WINDOW_FRAMES;
        let failure = tokio::select! {
            () = ctx.stop.cancelled() => (503, "the spoke is shutting down".to_owned()),
            frame = inbound.frame(seq) => match frame {
                Some(Ok(Frame::Cancel)) => return sent,
                Some(Err(FrameError::PeerGone)) => (499, "the client is gone".to_owned()),
                frame => match control(frame) {
                    Ok(credit) => {
                        if let Some(n) = credit {
                            in_flight = in_flight.saturating_sub(n);
                            frames_in_flight = frames_in_flight.saturating_sub(1);
                        }
                        last_client = Instant::now();
                        continue;
                    }
                    Err(()) => (400, "the client broke the protocol or overran its queue".to_owned()),
                },
            },
            next = body.frame(), if want_more => match next {
                None => { done = true; continue; }
                Some(Ok(frame)) => { if let Ok(data) = frame.into_data() { pending = data } continue; }
                Some(Err(e)) => (502, format!("the kube-apiserver response broke off: {e}")),
            },
            () = sleep_until(last_client + tunnel::IDLE_TIMEOUT) => (408, "the client went silent".to_owned()),
            () = sleep_until(out.last_sent() + tunnel::KEEPALIVE) => {
                if out.send(Frame::Keepalive).await.is_err() {
                    (499, "cannot publish a keepalive".to_owned())
                } else {
                    continue;
                }
            }
        };
        let (code, message) = failure;
        tracing::warn!(%request_id, sent, code, cause = %message, "response stream failed");
        let _ = out.send(Frame::Error { code, message }).await;
        return sent;
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
