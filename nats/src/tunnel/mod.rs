//! Tunnel frames on NATS (the protocol is described in `fleetbus_schema::tunnel`): the typed
//! [`Frame`] both ends encode and decode, the one [`Sender`] that numbers a direction's frames
//! and the [`SeqCheck`] that reads them back in order, the one demultiplexer ([`Routes`]) and
//! the byte [`relay`] after an upgrade, shared by the spoke and the client. Nothing here panics
//! on input from the network.

mod frame;
mod relay;
mod routes;
mod sender;

pub use frame::{Frame, FrameError, Head, Open};
pub use relay::{Relayed, relay};
pub use routes::{Delivery, Route, Routes};
pub use sender::{Publisher, SendError, Sender};

use async_nats::{HeaderMap, Message};
use bytes::Bytes;

/// Reads one direction of a stream: frames must arrive in order, without gaps.
#[derive(Debug, Default)]
pub struct SeqCheck {
    next: u64,
}

impl SeqCheck {
    /// Decodes a NATS message as the next frame of the direction.
    pub fn decode(
        &mut self,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<Frame, FrameError> {
        let (seq, frame) = Frame::decode(headers, payload)?;
        if seq != self.next {
            return Err(FrameError::OutOfOrder {
                expected: self.next,
                got: seq,
            });
        }
        self.next += 1;
        Ok(frame)
    }
}

impl Route<Message> {
    /// The next frame of the stream, checked by `seq`: `None` once the stream was closed for
    /// overrunning its queue, an error for a frame that cannot be read or is out of order, and
    /// [`FrameError::PeerGone`] when NATS bounced a frame of ours (see [`Sender::with_reply`]).
    pub async fn frame(&mut self, seq: &mut SeqCheck) -> Option<Result<Frame, FrameError>> {
        let msg = self.next().await?;
        if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
            return Some(Err(FrameError::PeerGone));
        }
        Some(seq.decode(msg.headers.as_ref(), msg.payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_are_detected() {
        let mut seq = SeqCheck::default();
        for n in 0..2 {
            let (h, payload) = Frame::Keepalive.encode(n).unwrap();
            assert_eq!(seq.decode(Some(&h), payload), Ok(Frame::Keepalive));
        }
        let (h, payload) = Frame::Keepalive.encode(3).unwrap();
        assert_eq!(
            seq.decode(Some(&h), payload),
            Err(FrameError::OutOfOrder {
                expected: 2,
                got: 3
            })
        );
    }
}
