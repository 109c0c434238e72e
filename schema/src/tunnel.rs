//! The Kubernetes API tunnel: HTTP requests and responses as sequenced frames on NATS.
//!
//! 1. The client subscribes to a fresh inbox `R` and publishes an **open** frame to
//!    `<prefix>.kapi.<cluster>.open` (a queue group: one spoke replica takes it) with reply `R`.
//!    Every frame's kind and number travel in NATS headers (`Fb-Kind`, `Fb-Seq`, readable with
//!    `nats sub`); the request (method, path, request id, end-to-end headers) is a
//!    [`TunnelOpen`](crate::v1::TunnelOpen) at the start of the payload, length-delimited. A
//!    body that fits in one chunk follows it (`inline_body`); a larger one follows as `data`
//!    frames.
//! 2. The spoke answers on `R`: **ready** (naming its per-stream subject `U` for frames from
//!    the client; sent at once when the request body is streamed, else only if the apiserver
//!    takes longer than [`ACK_AFTER`]), then **head** (a
//!    [`TunnelHead`](crate::v1::TunnelHead): status, headers and `U`), **data** frames, and
//!    **end**, or an **error** frame with a code at any point. A body that fits one chunk rides in the head itself (`complete`) when it is of
//!    known length or complete within [`GATHER`]: a small request is two messages, open and
//!    head.
//! 3. The client sends on `U`: request body **data** frames and **eof**, **credit** frames
//!    (one per data frame passed on, with its bytes; the spoke never has more than [`WINDOW`]
//!    bytes unacknowledged, because core NATS drops messages for slow consumers), **keepalive** while idle, and
//!    **cancel** when its caller goes away. The spoke sends keepalives on idle streams too;
//!    either side ends a stream that has been silent for [`IDLE_TIMEOUT`].
//!    Stream frames after the open carry their sender's own stream subject as reply (`R` from
//!    the client, `U` from the spoke), which nothing answers; a frame that nobody receives
//!    because the other process is gone comes back as nats-server's no-responders status, and
//!    the stream ends at once ("the other end of the stream is gone") instead of after the
//!    idle timeout: at most one [`KEEPALIVE`] after the peer died.
//!
//! 4. **Upgrades** (exec, attach, port-forward): an open frame with `upgrade` (the
//!    request's `Upgrade` header, e.g. `SPDY/3.1` or `websocket`) asks the spoke to send the
//!    request upstream as an HTTP/1.1 upgrade. Any answer but 101 comes back as an ordinary
//!    response, so kubectl's fallback from WebSocket to SPDY works. After a head with status
//!    101 (and `upgrade` naming the protocol upgraded to), both sides relay raw bytes as
//!    **data** frames, each direction under its own credit window; **eof** half-closes one
//!    direction, and the stream ends when both have ended. Either side may send **error**
//!    (or **cancel**) to end it at once.
//!
//! Every frame carries `Fb-Seq`, counting from 0 per direction, so a lost frame is detected
//! instead of corrupting a body. Users publish only under their own name
//! (`<prefix>.kapi.<cluster>.<user>.…`, enforced by nats-server), so the spoke knows who sent
//! a request from the subject it arrived on.

use std::time::Duration;

/// Frame kind.
pub const KIND: &str = "Fb-Kind";
/// Sequence number of the frame in its direction.
pub const SEQ: &str = "Fb-Seq";
/// Subject for frames from the client (ready, head).
pub const UPSTREAM: &str = "Fb-Upstream";
/// Bytes acknowledged (credit).
pub const CREDIT: &str = "Fb-Credit";
/// Error code, HTTP-like (error).
pub const ERROR_CODE: &str = "Fb-Error-Code";
/// Error message (error).
pub const ERROR_MESSAGE: &str = "Fb-Error";

/// Largest data frame payload; below the 1 MiB default `max_payload` with room for headers.
pub const CHUNK: usize = 256 * 1024;
/// Most bytes in flight per stream before the sender waits for credit.
pub const WINDOW: usize = 4 * 1024 * 1024;
/// Most data frames in flight per stream: each credit frame acknowledges one data frame, so
/// small frames cannot overrun a receiver's queue while still inside the byte window.
pub const WINDOW_FRAMES: usize = 128;
/// Frames a receiver queues per stream: the window's data frames plus room for control frames.
/// A sender that overruns it breaks the protocol, and the stream fails with an error.
pub const STREAM_QUEUE: usize = WINDOW_FRAMES + 64;
/// A spoke whose apiserver has not answered by then sends **ready**, so the client knows the
/// stream is alive; a client that has heard nothing for [`FIRST_FRAME_TIMEOUT`] gives up.
pub const ACK_AFTER: Duration = Duration::from_millis(500);
/// How long the spoke waits for a response body of unknown length to end before it streams
/// it: a short body then rides in the head, and a watch's head waits no longer than this.
pub const GATHER: Duration = Duration::from_millis(1);
/// How long a client waits for the first frame of a stream.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Keepalive period on idle streams.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// A stream silent this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(35);
/// Most forwarded headers, and their total size, in one request or response head.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of forwarded headers.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

// A chunk and its headers fit the default 1 MiB max_payload; the window holds several chunks.
const _: () = assert!(CHUNK + MAX_HEADER_BYTES < 1024 * 1024);
const _: () = assert!(WINDOW >= 4 * CHUNK);

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// client → spoke: start a request.
    Open,
    /// spoke → client: stream accepted, here is the upstream subject.
    Ready,
    /// spoke → client: response status and headers.
    Head,
    /// either way: body bytes.
    Data,
    /// client → spoke: request body complete; after an upgrade, either way: this direction
    /// has ended.
    Eof,
    /// spoke → client: response complete.
    End,
    /// spoke → client (after an upgrade, either way): the stream failed.
    Error,
    /// client → spoke (after an upgrade, either way): bytes consumed.
    Credit,
    /// client → spoke: abandon the request.
    Cancel,
    /// either way: still here.
    Keepalive,
}

impl FrameKind {
    const ALL: [FrameKind; 10] = [
        Self::Open,
        Self::Ready,
        Self::Head,
        Self::Data,
        Self::Eof,
        Self::End,
        Self::Error,
        Self::Credit,
        Self::Cancel,
        Self::Keepalive,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Ready => "ready",
            Self::Head => "head",
            Self::Data => "data",
            Self::Eof => "eof",
            Self::End => "end",
            Self::Error => "error",
            Self::Credit => "credit",
            Self::Cancel => "cancel",
            Self::Keepalive => "keepalive",
        }
    }

    /// Parses a header value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// Request headers that must not cross a proxy (RFC 9110 §7.6.1) or that the tunnel sets.
pub fn is_hop_by_hop(name: &str) -> bool {
    const HOP: [&str; 10] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_garbage_is_none() {
        for kind in FrameKind::ALL {
            assert_eq!(FrameKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(FrameKind::parse("DATA"), None);
        assert_eq!(FrameKind::parse(""), None);
    }

    #[test]
    fn hop_by_hop_headers() {
        assert!(is_hop_by_hop("Connection"));
        assert!(is_hop_by_hop("transfer-encoding"));
        assert!(!is_hop_by_hop("Authorization"));
        assert!(!is_hop_by_hop("Accept"));
    }
}
