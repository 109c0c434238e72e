//! A tunnel frame as a value: each kind with what it carries, encoded into a NATS message
//! (headers and payload) and decoded from one. Decoding checks every header a kind needs, once,
//! so no caller reads a raw header; what decodes encodes again to the same frame.

use async_nats::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use fleetbus_schema::tunnel::{self, FrameKind};

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
    /// HTTP headers and values NATS cannot carry are left out; an error message is put on one
    /// line.
    pub fn encode(&self, seq: u64) -> Result<(HeaderMap, Bytes), FrameError> {
        let mut h = HeaderMap::new();
        h.insert(tunnel::KIND, self.kind().as_str());
        h.insert(tunnel::SEQ, seq.to_string().as_str());
        let payload = match self {
            Self::Open(open) => {
                put(&mut h, tunnel::METHOD, open.method.as_str())?;
                put(&mut h, tunnel::PATH, &open.path)?;
                put(&mut h, tunnel::REQUEST_ID, &open.request_id)?;
                let body = if open.body.is_some() {
                    "inline"
                } else {
                    "stream"
                };
                h.insert(tunnel::BODY, body);
                put_optional(
                    &mut h,
                    tunnel::SERVICE_ACCOUNT,
                    open.service_account.as_deref(),
                )?;
                put_optional(&mut h, tunnel::UPGRADE, open.upgrade.as_deref())?;
                put_http_headers(&mut h, &open.headers)?;
                open.body.clone().unwrap_or_default()
            }
            Self::Ready { upstream } => {
                put(&mut h, tunnel::UPSTREAM, upstream)?;
                Bytes::new()
            }
            Self::Head(head) => {
                h.insert(tunnel::STATUS, head.status.as_str());
                put(&mut h, tunnel::UPSTREAM, &head.upstream)?;
                put_optional(&mut h, tunnel::UPGRADE, head.upgrade.as_deref())?;
                if head.body.is_some() {
                    h.insert(tunnel::COMPLETE, "true");
                }
                put_http_headers(&mut h, &head.headers)?;
                head.body.clone().unwrap_or_default()
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
            FrameKind::Open => Self::Open(Open {
                method: required(h, tunnel::METHOD)?,
                path: required(h, tunnel::PATH)?,
                request_id: required(h, tunnel::REQUEST_ID)?,
                service_account: value(h, tunnel::SERVICE_ACCOUNT).map(str::to_owned),
                upgrade: value(h, tunnel::UPGRADE).map(str::to_owned),
                headers: take_http_headers(h)?,
                body: match value(h, tunnel::BODY) {
                    Some("inline") => Some(payload),
                    Some("stream") => None,
                    _ => return Err(FrameError::BadHeader(tunnel::BODY)),
                },
            }),
            FrameKind::Ready => Self::Ready {
                upstream: required(h, tunnel::UPSTREAM)?,
            },
            FrameKind::Head => Self::Head(Head {
                status: required(h, tunnel::STATUS)?,
                headers: take_http_headers(h)?,
                upstream: required(h, tunnel::UPSTREAM)?,
                upgrade: value(h, tunnel::UPGRADE).map(str::to_owned),
                body: (value(h, tunnel::COMPLETE) == Some("true")).then_some(payload),
            }),
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

fn put_optional(
    h: &mut HeaderMap,
    name: &'static str,
    value: Option<&str>,
) -> Result<(), FrameError> {
    value.map_or(Ok(()), |v| put(h, name, v))
}

/// Error messages travel in a header and reach a terminal: no control characters, either way.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Copies end-to-end HTTP headers into NATS headers (`Fb-H-<name>`), leaving out hop-by-hop
/// ones and values NATS cannot carry, within the protocol's limits.
fn put_http_headers(h: &mut HeaderMap, http: &http::HeaderMap) -> Result<(), FrameError> {
    let (mut count, mut bytes) = (0, 0);
    for (name, value) in http {
        if tunnel::is_hop_by_hop(name.as_str()) {
            continue;
        }
        // UTF-8, as NATS headers carry it (and as `take_http_headers` accepts it).
        let Ok(value) = std::str::from_utf8(value.as_bytes()) else {
            continue;
        };
        let Ok(nats_value) = value.parse::<HeaderValue>() else {
            continue;
        };
        let mut prefixed =
            String::with_capacity(tunnel::HTTP_HEADER_PREFIX.len() + name.as_str().len());
        prefixed.push_str(tunnel::HTTP_HEADER_PREFIX);
        prefixed.push_str(name.as_str());
        let Ok(nats_name) = HeaderName::try_from(prefixed) else {
            continue;
        };
        count += 1;
        bytes += name.as_str().len() + value.len();
        if count > tunnel::MAX_HEADERS || bytes > tunnel::MAX_HEADER_BYTES {
            return Err(FrameError::HeadersTooLarge);
        }
        h.append(nats_name, nats_value);
    }
    Ok(())
}

/// The HTTP headers carried in a frame; malformed ones are dropped, limits enforced.
fn take_http_headers(h: &HeaderMap) -> Result<http::HeaderMap, FrameError> {
    let mut out = http::HeaderMap::new();
    let mut bytes = 0;
    for (name, values) in h.iter() {
        let Some(http_name) = strip_prefix_ci(name.as_ref(), tunnel::HTTP_HEADER_PREFIX) else {
            continue;
        };
        let Ok(http_name) = http::HeaderName::from_bytes(http_name.as_bytes()) else {
            continue;
        };
        if tunnel::is_hop_by_hop(http_name.as_str()) {
            continue;
        }
        for value in values {
            bytes += http_name.as_str().len() + value.as_str().len();
            if out.len() >= tunnel::MAX_HEADERS || bytes > tunnel::MAX_HEADER_BYTES {
                return Err(FrameError::HeadersTooLarge);
            }
            if let Ok(v) = http::HeaderValue::from_str(value.as_str()) {
                out.append(http_name.clone(), v);
            }
        }
    }
    Ok(out)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests;
