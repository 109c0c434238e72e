//! Tunnel frames on NATS (the protocol is described in `fleetbus_schema::tunnel`): building
//! their headers, reading them back with typed errors, sequence checking, and moving HTTP
//! headers in and out of NATS headers; the one [`Sender`] that numbers a direction's frames,
//! the one demultiplexer ([`Routes`]) and the byte [`relay`] after an upgrade, shared by the
//! spoke and the client. Nothing here panics on input from the network.

mod relay;
mod routes;
mod sender;

pub use relay::{Relayed, relay};
pub use routes::{Delivery, Route, Routes};
pub use sender::{Publisher, Sender};

use async_nats::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use fleetbus_schema::tunnel::{self, FrameKind};

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
    /// Too many or too large headers.
    #[error(
        "headers exceed {} entries or {} bytes",
        tunnel::MAX_HEADERS,
        tunnel::MAX_HEADER_BYTES
    )]
    HeadersTooLarge,
    /// A required header is missing or malformed.
    #[error("frame header {0} missing or malformed")]
    Missing(&'static str),
}

/// A received frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// What it is.
    pub kind: FrameKind,
    /// Its sequence number.
    pub seq: u64,
    /// All its NATS headers.
    pub headers: HeaderMap,
    /// Its payload.
    pub payload: Bytes,
}

impl Frame {
    /// Reads a NATS message as a frame.
    pub fn parse(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Self, FrameError> {
        let headers = headers.cloned().unwrap_or_default();
        let kind = headers
            .get(tunnel::KIND)
            .and_then(|v| FrameKind::parse(v.as_str()))
            .ok_or(FrameError::UnknownKind)?;
        let seq = headers
            .get(tunnel::SEQ)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or(FrameError::NoSeq)?;
        Ok(Self {
            kind,
            seq,
            headers,
            payload,
        })
    }

    /// A header as a string.
    pub fn header(&self, name: &'static str) -> Result<&str, FrameError> {
        self.headers
            .get(name)
            .map(HeaderValue::as_str)
            .ok_or(FrameError::Missing(name))
    }
}

/// The headers of a frame of `kind` with sequence number `seq`.
pub fn headers(kind: FrameKind, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(tunnel::KIND, kind.as_str());
    h.insert(tunnel::SEQ, seq.to_string().as_str());
    h
}

/// Adds a header whose value came from outside; values that NATS cannot carry are refused.
pub fn insert(h: &mut HeaderMap, name: &'static str, value: &str) -> Result<(), FrameError> {
    let value: HeaderValue = value.parse().map_err(|_| FrameError::Missing(name))?;
    h.insert(name, value);
    Ok(())
}

/// An error frame.
pub fn error_headers(seq: u64, code: u16, message: &str) -> HeaderMap {
    let mut h = headers(FrameKind::Error, seq);
    h.insert(tunnel::ERROR_CODE, code.to_string().as_str());
    let clean: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    h.insert(tunnel::ERROR_MESSAGE, clean.as_str());
    h
}

/// Checks that frames arrive in order, without gaps.
#[derive(Debug, Default)]
pub struct SeqCheck {
    next: u64,
}

impl SeqCheck {
    /// Accepts `seq` if it is the next one.
    pub fn check(&mut self, seq: u64) -> Result<(), FrameError> {
        if seq != self.next {
            return Err(FrameError::OutOfOrder {
                expected: self.next,
                got: seq,
            });
        }
        self.next += 1;
        Ok(())
    }
}

/// Copies end-to-end HTTP headers into NATS headers (`Fb-H-<name>`), leaving out hop-by-hop
/// ones and values NATS cannot carry, within the protocol's limits.
pub fn put_http_headers(h: &mut HeaderMap, http: &http::HeaderMap) -> Result<(), FrameError> {
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
        let Ok(nats_name) =
            format!("{}{}", tunnel::HTTP_HEADER_PREFIX, name.as_str()).parse::<HeaderName>()
        else {
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
pub fn take_http_headers(h: &HeaderMap) -> Result<http::HeaderMap, FrameError> {
    let mut out = http::HeaderMap::new();
    let mut bytes = 0;
    for (name, values) in h.iter() {
        let name = name.to_string();
        let Some(http_name) = strip_prefix_ci(&name, tunnel::HTTP_HEADER_PREFIX) else {
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
mod tests {
    use super::*;

    #[test]
    fn frames_parse_and_garbage_is_an_error() {
        let f = Frame::parse(Some(&headers(FrameKind::Data, 7)), Bytes::from_static(b"x")).unwrap();
        assert_eq!((f.kind, f.seq), (FrameKind::Data, 7));
        assert_eq!(
            Frame::parse(None, Bytes::new()).unwrap_err(),
            FrameError::UnknownKind
        );
        let mut h = HeaderMap::new();
        h.insert(tunnel::KIND, "data");
        h.insert(tunnel::SEQ, "-1");
        assert_eq!(
            Frame::parse(Some(&h), Bytes::new()).unwrap_err(),
            FrameError::NoSeq
        );
        h.insert(tunnel::KIND, "bogus");
        assert_eq!(
            Frame::parse(Some(&h), Bytes::new()).unwrap_err(),
            FrameError::UnknownKind
        );
    }

    #[test]
    fn sequence_gaps_are_detected() {
        let mut seq = SeqCheck::default();
        seq.check(0).unwrap();
        seq.check(1).unwrap();
        assert_eq!(
            seq.check(3).unwrap_err(),
            FrameError::OutOfOrder {
                expected: 2,
                got: 3
            }
        );
    }

    #[test]
    fn http_headers_round_trip_without_hop_by_hop() {
        let mut http = http::HeaderMap::new();
        http.insert("accept", "application/json".parse().unwrap());
        http.append("x-multi", "a".parse().unwrap());
        http.append("x-multi", "b".parse().unwrap());
        http.insert("connection", "close".parse().unwrap());
        http.insert("transfer-encoding", "chunked".parse().unwrap());
        let mut h = HeaderMap::new();
        put_http_headers(&mut h, &http).unwrap();
        let back = take_http_headers(&h).unwrap();
        assert_eq!(back.get("accept").unwrap(), "application/json");
        assert_eq!(back.get_all("x-multi").iter().count(), 2);
        assert!(back.get("connection").is_none() && back.get("transfer-encoding").is_none());
    }

    #[test]
    fn utf8_header_values_survive_the_round_trip() {
        let mut h = HeaderMap::new();
        h.insert("Fb-H-X-Name", "caf\u{e9}");
        let http = take_http_headers(&h).unwrap();
        let mut back = HeaderMap::new();
        put_http_headers(&mut back, &http).unwrap();
        assert_eq!(
            back.get("Fb-H-x-name").map(|v| v.as_str()),
            Some("caf\u{e9}")
        );
    }

    #[test]
    fn oversized_headers_are_refused() {
        let mut http = http::HeaderMap::new();
        http.insert(
            "x-big",
            "v".repeat(tunnel::MAX_HEADER_BYTES + 1).parse().unwrap(),
        );
        assert_eq!(
            put_http_headers(&mut HeaderMap::new(), &http).unwrap_err(),
            FrameError::HeadersTooLarge
        );
        let mut h = HeaderMap::new();
        for i in 0..=tunnel::MAX_HEADERS {
            h.insert(format!("Fb-H-X{i}").as_str(), "v");
        }
        assert_eq!(
            take_http_headers(&h).unwrap_err(),
            FrameError::HeadersTooLarge
        );
    }

    #[test]
    fn error_frames_carry_a_clean_message() {
        let h = error_headers(3, 502, "bad\r\nthing");
        assert_eq!(h.get(tunnel::ERROR_MESSAGE).unwrap().as_str(), "bad  thing");
    }
}
