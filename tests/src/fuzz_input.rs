//! The inputs of fleetbus's fuzz targets (`fuzz/`), written by the seed recorder
//! (`fleetbus-fuzz-seeds`) and read by the targets, so both agree on one format:
//!
//! - a NATS message (tunnel frames, audit events): its header block as NATS carries it
//!   (`NATS/1.0\r\n`, one `Name: value\r\n` line per value, a blank line), then the payload;
//!   without a blank line the whole input is the payload;
//! - a protobuf message of a request/reply subject: one selector byte naming the message (see
//!   each target), then the payload.

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use fleetbus_schema::{ApiEndpoint, HubTopic};

const STATUS_LINE: &[u8] = b"NATS/1.0\r\n";
const END: &[u8] = b"\r\n\r\n";

/// A NATS message as one input.
pub fn encode_message(headers: Option<&HeaderMap>, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(headers) = headers {
        out.extend_from_slice(STATUS_LINE);
        for (name, values) in headers.iter() {
            for value in values {
                out.extend_from_slice(name.to_string().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_str().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(payload);
    out
}

/// Reads an input back as a NATS message. Header lines NATS could not carry are left out, as
/// the client library would never hand them over.
pub fn decode_message(data: &[u8]) -> (Option<HeaderMap>, Bytes) {
    let Some(end) = data.windows(END.len()).position(|w| w == END) else {
        return (None, Bytes::copy_from_slice(data));
    };
    let block = &data[..end + 2];
    let payload = Bytes::copy_from_slice(&data[end + END.len()..]);
    let mut headers = HeaderMap::new();
    for line in block.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            name.parse::<HeaderName>(),
            value.trim_start().parse::<HeaderValue>(),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    (Some(headers), payload)
}

/// A protobuf message with its selector byte.
pub fn encode_selected(selector: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(selector);
    out.extend_from_slice(payload);
    out
}

/// The selector of a hub API request (even) or its reply (odd).
pub fn api_selector(endpoint: ApiEndpoint, reply: bool) -> u8 {
    let index = ApiEndpoint::ALL
        .iter()
        .position(|e| *e == endpoint)
        .unwrap_or(0);
    (index * 2) as u8 + u8::from(reply)
}

/// The endpoint a selector names, and whether it is the reply.
pub fn api_from(selector: u8) -> (ApiEndpoint, bool) {
    let all = ApiEndpoint::ALL;
    (
        all[usize::from(selector / 2) % all.len()],
        selector % 2 == 1,
    )
}

/// The messages between spoke and hub outside the hub API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpokeMessage {
    /// `join` request.
    JoinRequest,
    /// `join` reply.
    JoinReply,
    /// `hub.<cluster>.heartbeat`.
    Heartbeat,
    /// `hub.<cluster>.renew` request.
    RenewRequest,
    /// `hub.<cluster>.renew` reply.
    RenewReply,
    /// `hub.<cluster>.token` request.
    TokenReport,
    /// `hub.<cluster>.sync` request.
    SyncRequest,
    /// `hub.<cluster>.sync` reply.
    DesiredState,
    /// `hub.<cluster>.work` request.
    WorkStatusReport,
    /// `hub.<cluster>.manifests` request.
    ManifestsChunkRequest,
    /// `hub.<cluster>.manifests` reply.
    ManifestsChunk,
    /// `spoke.<cluster>.changed`.
    ChangeNotice,
    /// The empty acknowledgements (`token`, `work` replies).
    Ack,
}

impl SpokeMessage {
    /// Every message, in selector order.
    pub const ALL: [SpokeMessage; 13] = [
        Self::JoinRequest,
        Self::JoinReply,
        Self::Heartbeat,
        Self::RenewRequest,
        Self::RenewReply,
        Self::TokenReport,
        Self::SyncRequest,
        Self::DesiredState,
        Self::WorkStatusReport,
        Self::ManifestsChunkRequest,
        Self::ManifestsChunk,
        Self::ChangeNotice,
        Self::Ack,
    ];

    /// Its selector byte.
    pub fn selector(self) -> u8 {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    /// The message a selector names.
    pub fn from_selector(selector: u8) -> Self {
        Self::ALL[usize::from(selector) % Self::ALL.len()]
    }

    /// What travels on `topic`, as request or reply.
    pub fn on(topic: HubTopic, reply: bool) -> Self {
        match (topic, reply) {
            (HubTopic::Heartbeat, _) => Self::Heartbeat,
            (HubTopic::Renew, false) => Self::RenewRequest,
            (HubTopic::Renew, true) => Self::RenewReply,
            (HubTopic::Token, false) => Self::TokenReport,
            (HubTopic::Sync, false) => Self::SyncRequest,
            (HubTopic::Sync, true) => Self::DesiredState,
            (HubTopic::Work, false) => Self::WorkStatusReport,
            (HubTopic::Manifests, false) => Self::ManifestsChunkRequest,
            (HubTopic::Manifests, true) => Self::ManifestsChunk,
            (HubTopic::Token | HubTopic::Work, true) => Self::Ack,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut h = HeaderMap::new();
        h.insert("Fb-Kind", "data");
        h.append("Fb-H-Accept", "a");
        h.append("Fb-H-Accept", "b");
        let data = encode_message(Some(&h), b"payload\r\n\r\nmore");
        let (back, payload) = decode_message(&data);
        let back = back.unwrap();
        assert_eq!(back.get("Fb-Kind").unwrap().as_str(), "data");
        assert_eq!(back.get_all("Fb-H-Accept").count(), 2);
        assert_eq!(payload.as_ref(), b"payload\r\n\r\nmore");
        let (none, payload) = decode_message(b"just bytes");
        assert!(none.is_none());
        assert_eq!(payload.as_ref(), b"just bytes");
        assert_eq!(encode_selected(3, b"x"), [3, b'x']);
    }

    #[test]
    fn selectors_name_one_message_each() {
        for endpoint in ApiEndpoint::ALL {
            for reply in [false, true] {
                assert_eq!(api_from(api_selector(endpoint, reply)), (endpoint, reply));
            }
        }
        for m in SpokeMessage::ALL {
            assert_eq!(SpokeMessage::from_selector(m.selector()), m);
        }
    }
}
