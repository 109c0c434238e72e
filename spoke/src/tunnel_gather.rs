//! The start of a tunneled response body: a body that fits one frame and is complete at once
//! travels in the head, one message instead of three. The apiserver sends most objects over
//! 2 KB chunked, without a length, so for those "at once" means within [`tunnel::GATHER`]; a
//! watch's or a log stream's head waits no longer than that.

use bytes::{Bytes, BytesMut};
use fleetbus_schema::tunnel;
use hyper::body::Body;
use tokio::time::Instant;

/// What [`gather`] read.
#[derive(Debug, PartialEq, Eq)]
pub enum Gathered {
    /// The whole body, no larger than one frame.
    Whole(Bytes),
    /// What arrived before the body outgrew a frame or [`tunnel::GATHER`] passed; the rest
    /// streams.
    Started(Bytes),
}

/// Whether the response says its body has a length that fits one frame.
pub fn small_length<B>(response: &http::Response<B>) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .is_some_and(|n| n <= tunnel::CHUNK)
}

/// Reads `body` while it may still fit one frame: to its end if its length is known to fit
/// (within the idle timeout, else an error), otherwise for at most [`tunnel::GATHER`].
pub async fn gather<B>(body: &mut B, known_length: bool) -> Result<Gathered, String>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let wait = if known_length {
        tunnel::IDLE_TIMEOUT
    } else {
        tunnel::GATHER
    };
    let deadline = Instant::now() + wait;
    let mut gathered = BytesMut::new();
    while !body.is_end_stream() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    gathered.extend_from_slice(&data);
                }
                if gathered.len() > tunnel::CHUNK {
                    return Ok(Gathered::Started(gathered.freeze()));
                }
            }
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Err(_) if known_length => return Err("no body within the idle timeout".into()),
            Err(_) => return Ok(Gathered::Started(gathered.freeze())),
        }
    }
    Ok(Gathered::Whole(gathered.freeze()))
}

#[cfg(test)]
mod tests;
