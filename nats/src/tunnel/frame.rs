//! A tunnel frame as a value: each kind with what it carries, encoded into a NATS message
//! (headers and payload) and decoded from one. Decoding checks every field a kind needs, once,
//! so no caller reads a raw header or head; what decodes encodes again to the same frame.

use async_nats::header::{HeaderMap, HeaderValue};
use bytes::Bytes;
use fleetbus_schema::tunnel::{self, FrameKind};
use fleetbus_schema::v1;
use prost::Message;

/// One frame of a stream (the kinds are described in `fleetbus_schema::tunnel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// client → spoke: start a request.
    Open(Open),
    /// spoke → client: stream accepted.
    Ready {
        /// Where the client sends this stream's frames.
        upstream: String,
    },
    /// spoke → client: the response head.
    Head(Head),
    /// Body bytes.
    Data(Bytes),
    /// This direction's body has ended.
    Eof,
    /// spoke → client: response complete.
    End,
    /// The stream failed.
    Error {
        /// HTTP-like code.
        code: u16,
        /// Why, on one line.
        message: String,
    },
    /// Bytes of one data frame consumed.
    Credit(usize),
    /// client → spoke: abandon the request.
    Cancel,
    /// Still here.
    Keepalive,
}

/// A request, as an open frame carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Open {
    /// HTTP method.
    pub method: http::Method,
    /// Path and query.
    pub path: String,
    /// Correlates the request with audit events and the apiserver's `Audit-ID`.
    pub request_id: String,
    /// The managed service account whose token the request carries (for audit).
    pub service_account: Option<String>,
    /// The protocol an upgrade request asks for.
    pub upgrade: Option<String>,
    /// End-to-end request headers.
    pub headers: http::HeaderMap,
    /// The body if it rides in the open frame; `None` when data frames follow.
    pub body: Option<Bytes>,
}

/// A response head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// HTTP status.
    pub status: http::StatusCode,
    /// End-to-end response headers.
    pub headers: http::HeaderMap,
    /// Where the client sends this stream's frames.
    pub upstream: String,
    /// The protocol upgraded to (status 101).
    pub upgrade: Option<String>,
    /// The whole body if it rides in the head; `None` when data frames and end follow.
    pub body: Option<Bytes>,
}

/// A frame that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No or an unknown `Fb-Kind`.
    #[error("frame without a known kind")]
    UnknownKind,
    /// `Fb-Seq` missing or not a number.
    #[error("frame without a sequence number")]
    NoSeq,
    /// A frame was lost or reordered.
    #[error("frame {got} arrived where {expected} was expected")]
    OutOfOrder {
        /// The next expected sequence number.
        expected: u64,
        /// What arrived.
        got: u64,
    },
    /// Too many or too large HTTP headers.
    #[error(
        "headers exceed {} entries or {} bytes",
        tunnel::MAX_HEADERS,
        tunnel::MAX_HEADER_BYTES
    )]
    HeadersTooLarge,
    /// A header the kind needs is missing or malformed, or a value NATS cannot carry.
    #[error("frame header {0} missing or malformed")]
    BadHeader(&'static str),
    /// The head of an open or head frame cannot be read, or holds what HTTP does not allow.
    #[error("frame head malformed: {0}")]
    BadHead(&'static str),
    /// NATS answered a frame with no-responders: nothing subscribes to the stream's subject
    /// any more, so the process at the other end is gone.
    #[error("the other end of the stream is gone")]
    PeerGone,
}

impl Frame {
    /// What the frame is.
    pub fn kind(&self) -> FrameKind {
        match self {
            Self::Open(_) => FrameKind::Open,
            Self::Ready { .. } => FrameKind::Ready,
            Self::Head(_) => FrameKind::Head,
            Self::Data(_) => FrameKind::Data,
            Self::Eof => FrameKind::Eof,
            Self::End => FrameKind::End,
            Self::Error { .. } => FrameKind::Error,
            Self::Credit(_) => FrameKind::Credit,
            Self::Cancel => FrameKind::Cancel,
            Self::Keepalive => FrameKind::Keepalive,
        }
    }

    /// The NATS headers and payload of this frame as number `seq` of its direction. Hop-by-hop
    /// HTTP headers are left out; an error message is put on one line.
    pub fn encode(&self, seq: u64) -> Result<(HeaderMap, Bytes), FrameError> {
        let mut h = HeaderMap::new();
        h.insert(tunnel::KIND, self.kind().as_str());
        h.insert(tunnel::SEQ, seq.to_string().as_str());
        let payload = match self {
            Self::Open(open) => {
                check_open(
                    &open.path,
                    &open.request_id,
                    open.service_account.as_deref(),
                )?;
                check_upgrade(open.upgrade.as_deref())?;
                let head = v1::TunnelOpen {
                    method: open.method.as_str().to_owned(),
                    path: open.path.clone(),
                    request_id: open.request_id.clone(),
                    service_account: open.service_account.clone().unwrap_or_default(),
                    upgrade: open.upgrade.clone().unwrap_or_default(),
                    headers: http_headers(&open.headers)?,
                    inline_body: open.body.is_some(),
                };
                with_body(&head, open.body.as_ref())
            }
            Self::Ready { upstream } => {
                check_subject(upstream)?;
                put(&mut h, tunnel::UPSTREAM, upstream)?;
                Bytes::new()
            }
            Self::Head(head) => {
                check_subject(&head.upstream)?;
                check_upgrade(head.upgrade.as_deref())?;
                let message = v1::TunnelHead {
                    status: u32::from(head.status.as_u16()),
                    upstream: head.upstream.clone(),
                    upgrade: head.upgrade.clone().unwrap_or_default(),
                    headers: http_headers(&head.headers)?,
                    complete: head.body.is_some(),
                };
                with_body(&message, head.body.as_ref())
            }
            Self::Data(data) => data.clone(),
            Self::Error { code, message } => {
                h.insert(tunnel::ERROR_CODE, code.to_string().as_str());
                put(&mut h, tunnel::ERROR_MESSAGE, &one_line(message))?;
                Bytes::new()
            }
            Self::Credit(bytes) => {
                h.insert(tunnel::CREDIT, bytes.to_string().as_str());
                Bytes::new()
            }
            Self::Eof | Self::End | Self::Cancel | Self::Keepalive => Bytes::new(),
        };
        Ok((h, payload))
    }

    /// Reads a NATS message as a frame and its sequence number.
    pub fn decode(headers: Option<&HeaderMap>, payload: Bytes) -> Result<(u64, Self), FrameError> {
        let empty = HeaderMap::new();
        let h = headers.unwrap_or(&empty);
        let kind = value(h, tunnel::KIND)
            .and_then(FrameKind::parse)
            .ok_or(FrameError::UnknownKind)?;
        let seq = required(h, tunnel::SEQ).map_err(|_| FrameError::NoSeq)?;
        let frame = match kind {
            FrameKind::Open => {
                let (head, body) = split_head(payload, |h: &v1::TunnelOpen| h.inline_body)?;
                let service_account = non_empty(head.service_account);
                check_open(&head.path, &head.request_id, service_account.as_deref())?;
                let upgrade = non_empty(head.upgrade);
                check_upgrade(upgrade.as_deref())?;
                Self::Open(Open {
                    method: head
                        .method
                        .parse()
                        .map_err(|_| FrameError::BadHead("method"))?,
                    path: head.path,
                    request_id: head.request_id,
                    service_account,
                    upgrade,
                    headers: take_http_headers(head.headers)?,
                    body,
                })
            }
            FrameKind::Ready => {
                let upstream: String = required(h, tunnel::UPSTREAM)?;
                check_subject(&upstream)?;
                Self::Ready { upstream }
            }
            FrameKind::Head => {
                let (head, body) = split_head(payload, |h: &v1::TunnelHead| h.complete)?;
                check_subject(&head.upstream)?;
                let upgrade = non_empty(head.upgrade);
                check_upgrade(upgrade.as_deref())?;
                Self::Head(Head {
                    status: u16::try_from(head.status)
                        .ok()
                        .and_then(|s| http::StatusCode::from_u16(s).ok())
                        .ok_or(FrameError::BadHead("status"))?,
                    headers: take_http_headers(head.headers)?,
                    upstream: head.upstream,
                    upgrade,
                    body,
                })
            }
            FrameKind::Data => Self::Data(payload),
            FrameKind::Eof => Self::Eof,
            FrameKind::End => Self::End,
            FrameKind::Error => Self::Error {
                code: required(h, tunnel::ERROR_CODE)?,
                message: one_line(&required::<String>(h, tunnel::ERROR_MESSAGE)?),
            },
            FrameKind::Credit => Self::Credit(required(h, tunnel::CREDIT)?),
            FrameKind::Cancel => Self::Cancel,
            FrameKind::Keepalive => Self::Keepalive,
        };
        Ok((seq, frame))
    }
}

fn value<'a>(h: &'a HeaderMap, name: &'static str) -> Option<&'a str> {
    h.get(name).map(HeaderValue::as_str)
}

fn required<T: std::str::FromStr>(h: &HeaderMap, name: &'static str) -> Result<T, FrameError> {
    value(h, name)
        .and_then(|v| v.parse().ok())
        .ok_or(FrameError::BadHeader(name))
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), FrameError> {
    let value: HeaderValue = value.parse().map_err(|_| FrameError::BadHeader(name))?;
    h.insert(name, value);
    Ok(())
}

/// What an open frame carries that reaches log lines, headers and audit events: a path
/// without control characters or spaces, a valid request id, a service account name without
/// them. Both ends check, so what one end refuses to send the other refuses to read.
fn check_open(
    path: &str,
    request_id: &str,
    service_account: Option<&str>,
) -> Result<(), FrameError> {
    if !is_word(path) {
        return Err(FrameError::BadHead("path"));
    }
    if fleetbus_schema::RequestId::new(request_id).is_err() {
        return Err(FrameError::BadHead("request id"));
    }
    if service_account.is_some_and(|sa| !is_word(sa)) {
        return Err(FrameError::BadHead("service account"));
    }
    Ok(())
}

/// The protocol asked for or upgraded to, as an `Upgrade` header can carry it.
fn check_upgrade(upgrade: Option<&str>) -> Result<(), FrameError> {
    match upgrade {
        Some(u) if u.is_empty() || http::HeaderValue::from_str(u).is_err() => {
            Err(FrameError::BadHead("upgrade"))
        }
        _ => Ok(()),
    }
}

/// A stream subject the other end publishes to: one NATS subject, nothing that could end it.
fn check_subject(subject: &str) -> Result<(), FrameError> {
    if is_word(subject) {
        Ok(())
    } else {
        Err(FrameError::BadHead("upstream subject"))
    }
}

/// Non-empty, without whitespace or control characters.
fn is_word(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Error messages travel in a header and reach a terminal: no control characters, either way.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A head, length-delimited, and the body after it.
fn with_body(head: &impl Message, body: Option<&Bytes>) -> Bytes {
    let body = body.map_or(&[][..], |b| &b[..]);
    // The length is a varint of at most 10 bytes; writing into a Vec cannot fail.
    let mut out = Vec::with_capacity(10 + head.encoded_len() + body.len());
    let _ = head.encode_length_delimited(&mut out);
    out.extend_from_slice(body);
    out.into()
}

/// The head at the start of `payload`, and the body after it (a slice, not a copy) if the
/// head says one follows; bytes after a head that says none follows are an error.
fn split_head<M: Message + Default>(
    mut payload: Bytes,
    has_body: impl Fn(&M) -> bool,
) -> Result<(M, Option<Bytes>), FrameError> {
    let head = M::decode_length_delimited(&mut payload).map_err(|_| FrameError::BadHead("head"))?;
    match has_body(&head) {
        true => Ok((head, Some(payload))),
        false if payload.is_empty() => Ok((head, None)),
        false => Err(FrameError::BadHead("bytes after a head without a body")),
    }
}

/// End-to-end HTTP headers as a head carries them, within the protocol's limits.
fn http_headers(http: &http::HeaderMap) -> Result<Vec<v1::HttpHeader>, FrameError> {
    let headers: Vec<_> = http
        .iter()
        .filter(|(name, _)| !tunnel::is_hop_by_hop(name.as_str()))
        .map(|(name, value)| v1::HttpHeader {
            name: name.as_str().to_owned(),
            value: Bytes::copy_from_slice(value.as_bytes()),
        })
        .collect();
    within_limits(&headers)?;
    Ok(headers)
}

/// The protocol's limits on the headers of one head, the same for both ends.
fn within_limits(headers: &[v1::HttpHeader]) -> Result<(), FrameError> {
    let bytes: usize = headers.iter().map(|h| h.name.len() + h.value.len()).sum();
    if headers.len() > tunnel::MAX_HEADERS || bytes > tunnel::MAX_HEADER_BYTES {
        return Err(FrameError::HeadersTooLarge);
    }
    Ok(())
}

/// The HTTP headers a head carries; within the limits, else an error. A name or value HTTP
/// does not allow, or a hop-by-hop header, fails the frame: the sender never writes one.
fn take_http_headers(headers: Vec<v1::HttpHeader>) -> Result<http::HeaderMap, FrameError> {
    within_limits(&headers)?;
    let mut out = http::HeaderMap::with_capacity(headers.len());
    for header in headers {
        let name = http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| FrameError::BadHead("header name"))?;
        if tunnel::is_hop_by_hop(name.as_str()) {
            return Err(FrameError::BadHead("hop-by-hop header"));
        }
        let value = http::HeaderValue::from_maybe_shared(header.value)
            .map_err(|_| FrameError::BadHead("header value"))?;
        out.append(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
