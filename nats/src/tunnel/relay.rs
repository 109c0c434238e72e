//! The byte relay of an upgraded stream (exec, attach, port-forward): after the 101, bytes flow
//! both ways as data frames, each direction under its own credit window, and each direction
//! ends on its own (an `eof` frame half-closes it), so the last output is never cut off. The
//! same code runs on the spoke (the apiserver's connection) and on the client (the local
//! connection). It does not look inside the bytes: SPDY, WebSocket or anything else.

use std::collections::VecDeque;

use async_nats::Message;
use bytes::Bytes;
use fleetbus_schema::tunnel;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::routes::Route;
use super::sender::{Publisher, Sender};
use super::{Frame, FrameError, SeqCheck};

/// How a relay ended.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Relayed {
    /// Bytes read from the local connection and sent.
    pub sent: u64,
    /// Bytes received and written to the local connection.
    pub received: u64,
    /// Why it failed (code, cause), if it did; the peer has been told.
    pub failure: Option<(u16, String)>,
    /// The failure was the local connection's (it failed or closed early), not the peer's or
    /// the tunnel's.
    pub local: bool,
}

/// What ended the relay from this side.
enum Stop {
    /// Both directions are done.
    Done,
    /// This side failed; tell the peer.
    Fail(u16, String),
    /// The local connection failed or closed early; tell the peer.
    Local(u16, String),
    /// The peer failed or cancelled; it knows.
    Peer(u16, String),
}

/// Relays between `io` and the peer until both directions have ended, a side fails, the peer
/// goes silent for [`tunnel::IDLE_TIMEOUT`], or `stop` fires. `out` and `seq` continue the
/// stream's numbering in each direction. `observe` sees each chunk read from `io` before it
/// is sent (the spoke reads the exit code from it for the audit event).
pub async fn relay<IO, P>(
    io: IO,
    out: &mut Sender<P>,
    inbound: &mut Route<Message>,
    seq: &mut SeqCheck,
    stop: &CancellationToken,
    observe: &mut (dyn FnMut(&[u8]) + Send),
) -> Relayed
where
    IO: AsyncRead + AsyncWrite,
    P: Publisher,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut relayed = Relayed::default();
    // This side's reading: open until the local connection reports EOF.
    let mut reading = true;
    let (mut in_flight, mut frames_in_flight) = (0usize, 0usize);
    let mut buf = vec![0; tunnel::CHUNK];
    // The peer's data, waiting to be written locally; credit goes back once it is written.
    let mut pending: VecDeque<(Bytes, usize)> = VecDeque::new();
    let mut peer_eof = false;
    let mut shut = false;
    let mut heard = Instant::now();
    let end = loop {
        if peer_eof && pending.is_empty() && !shut {
            // Everything the peer sent is written: half-close the local connection.
            let _ = writer.shutdown().await;
            shut = true;
        }
        if !reading && shut {
            break Stop::Done;
        }
        let can_read =
            reading && in_flight < tunnel::WINDOW && frames_in_flight < tunnel::WINDOW_FRAMES;
        let room = tunnel::CHUNK.min(tunnel::WINDOW.saturating_sub(in_flight));
        tokio::select! {
            () = stop.cancelled() => break Stop::Fail(503, "the tunnel is shutting down".into()),
            read = reader.read(&mut buf[..room]), if can_read => match read {
                Ok(0) => {
                    reading = false;
                    if out.send(Frame::Eof).await.is_err() {
                        break Stop::Peer(499, "cannot publish to the peer".into());
                    }
                }
                Ok(n) => {
                    observe(&buf[..n]);
                    if out.send(Frame::Data(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        break Stop::Peer(499, "cannot publish to the peer".into());
                    }
                    in_flight += n;
                    frames_in_flight += 1;
                    relayed.sent += n as u64;
                }
                Err(e) => break Stop::Local(502, format!("the connection failed: {e}")),
            },
            written = write_front(&mut writer, &mut pending), if !pending.is_empty() => match written {
                Ok(Some(n)) => {
                    relayed.received += n as u64;
                    if out.send(Frame::Credit(n)).await.is_err() {
                        break Stop::Peer(499, "cannot publish to the peer".into());
                    }
                }
                Ok(None) => {}
                // The local side is gone. If it had already ended its own direction, all it
                // sent has been relayed and nothing more can be delivered: a clean end.
                Err(_) if !reading => break Stop::Done,
                Err(e) => break Stop::Local(499, format!("the connection closed: {e}")),
            },
            frame = inbound.frame(seq) => {
                heard = Instant::now();
                match frame {
                    None => break Stop::Fail(400, "the peer overran the stream's queue".into()),
                    Some(Err(FrameError::PeerGone)) => break Stop::Peer(502, FrameError::PeerGone.to_string()),
                    Some(Err(e)) => break Stop::Fail(400, format!("tunnel protocol error: {e}")),
                    Some(Ok(Frame::Data(_))) if peer_eof => break Stop::Fail(400, "data after eof".into()),
                    Some(Ok(Frame::Data(_))) if pending.len() >= tunnel::WINDOW_FRAMES => {
                        break Stop::Fail(400, "the peer sent more than its window".into());
                    }
                    Some(Ok(Frame::Data(data))) => {
                        let n = data.len();
                        pending.push_back((data, n));
                    }
                    Some(Ok(Frame::Eof)) => peer_eof = true,
                    Some(Ok(Frame::Credit(n))) => {
                        if n > in_flight || frames_in_flight == 0 {
                            break Stop::Fail(400, "credit for bytes never sent".into());
                        }
                        in_flight -= n;
                        frames_in_flight -= 1;
                    }
                    Some(Ok(Frame::Keepalive)) => {}
                    Some(Ok(Frame::Error { code, message })) => break Stop::Peer(code, message),
                    Some(Ok(Frame::Cancel)) => break Stop::Peer(499, "cancelled by the peer".into()),
                    Some(Ok(other)) => break Stop::Fail(400, format!("unexpected {} frame", other.kind().as_str())),
                }
            }
            () = sleep_until(heard + tunnel::IDLE_TIMEOUT) => break Stop::Fail(408, "the peer went silent".into()),
            () = sleep_until(out.last_sent() + tunnel::KEEPALIVE) => {
                if out.send(Frame::Keepalive).await.is_err() {
                    break Stop::Peer(499, "cannot publish to the peer".into());
                }
            }
        }
    };
    relayed.local = matches!(end, Stop::Local(..));
    match end {
        Stop::Done => {}
        Stop::Fail(code, message) | Stop::Local(code, message) => {
            let error = Frame::Error {
                code,
                message: message.clone(),
            };
            let _ = out.send(error).await;
            relayed.failure = Some((code, message));
        }
        Stop::Peer(code, message) => {
            // What the peer sent before it failed is good: deliver it before closing.
            let flush = async {
                while !pending.is_empty() {
                    match write_front(&mut writer, &mut pending).await {
                        Ok(Some(n)) => relayed.received += n as u64,
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
            };
            let _ = tokio::time::timeout(FLUSH, flush).await;
            relayed.failure = Some((code, message));
        }
    }
    relayed
}

/// How long a failed stream may take to deliver what it received before the failure.
const FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes some of the first pending chunk; `Some(len)` once the whole chunk is written.
async fn write_front<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pending: &mut VecDeque<(Bytes, usize)>,
) -> std::io::Result<Option<usize>> {
    let Some((front, len)) = pending.front_mut() else {
        return Ok(None);
    };
    let n = writer.write(front).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let _ = front.split_to(n);
    if !front.is_empty() {
        return Ok(None);
    }
    let len = *len;
    pending.pop_front();
    writer.flush().await?;
    Ok(Some(len))
}

#[cfg(test)]
mod tests;
