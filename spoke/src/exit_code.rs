//! The exit code of an exec or attach session, read from the bytes the apiserver sends, for the
//! session's audit event. The channel protocols carry it on their error stream as a `Status`:
//! `Success`, or `NonZeroExitCode` with the code as the `ExitCode` cause. SPDY (v4 channel
//! protocol): the error stream is the first stream the client opens (id 1); WebSocket
//! (`v4`/`v5.channel.k8s.io`): channel 3. Only data frames are looked at, never decompressed
//! headers; what cannot be read leaves the code unknown, it never fails the session.

/// Most bytes of the error stream kept.
const MAX_ERROR: usize = 64 * 1024;

/// Reads the exit code from one direction of a session.
#[derive(Debug)]
pub struct ExitCode {
    framing: Framing,
    header: Vec<u8>,
    remaining: usize,
    collecting: bool,
    error: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Framing {
    /// Nothing to read (port-forward, unknown protocols).
    None,
    Spdy,
    WebSocket,
}

impl ExitCode {
    /// A reader for a session upgraded to `protocol` with the 101's `headers`.
    pub fn for_protocol(protocol: &str, headers: &http::HeaderMap) -> Self {
        let channel = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| matches!(v, "v4.channel.k8s.io" | "v5.channel.k8s.io"))
        };
        let framing = if protocol.eq_ignore_ascii_case("SPDY/3.1")
            && channel("x-stream-protocol-version")
        {
            Framing::Spdy
        } else if protocol.eq_ignore_ascii_case("websocket") && channel("sec-websocket-protocol") {
            Framing::WebSocket
        } else {
            Framing::None
        };
        Self {
            framing,
            header: Vec::new(),
            remaining: 0,
            collecting: false,
            error: Vec::new(),
        }
    }

    /// Takes the next bytes of the apiserver → client direction.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        if self.framing == Framing::None {
            return;
        }
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(bytes.len());
                if self.collecting && self.error.len() + n <= MAX_ERROR {
                    self.error.extend_from_slice(&bytes[..n]);
                }
                self.remaining -= n;
                bytes = &bytes[n..];
                continue;
            }
            self.header.push(bytes[0]);
            bytes = &bytes[1..];
            match self.frame_start() {
                Some(Start::Payload { len, collect }) => {
                    self.header.clear();
                    self.remaining = len;
                    self.collecting = collect;
                }
                Some(Start::Invalid) => {
                    self.framing = Framing::None;
                    return;
                }
                None => {}
            }
        }
    }

    /// The exit code, if the error stream carried one.
    pub fn code(&self) -> Option<i32> {
        let status: serde_json::Value = serde_json::from_slice(&self.error).ok()?;
        if status["status"] == "Success" {
            return Some(0);
        }
        if status["reason"] != "NonZeroExitCode" {
            return None;
        }
        status["details"]["causes"]
            .as_array()?
            .iter()
            .find(|c| c["reason"] == "ExitCode")?["message"]
            .as_str()?
            .parse()
            .ok()
    }

    /// Whether the header read so far is complete, and what follows it.
    fn frame_start(&self) -> Option<Start> {
        let h = &self.header;
        match self.framing {
            Framing::Spdy if h.len() == 8 => {
                let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
                let control = h[0] & 0x80 != 0;
                let stream = u32::from_be_bytes([h[0] & 0x7f, h[1], h[2], h[3]]);
                Some(Start::Payload {
                    len,
                    collect: !control && stream == 1,
                })
            }
            Framing::WebSocket => websocket_start(h),
            _ => None,
        }
    }
}

enum Start {
    Payload { len: usize, collect: bool },
    Invalid,
}

/// A WebSocket frame header from the server (unmasked) and the channel byte after it: binary
/// messages on channel 3 are the error stream.
fn websocket_start(h: &[u8]) -> Option<Start> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let (ext, len7) = match h[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(n as usize)),
    };
    let mask = if masked { 4 } else { 0 };
    let fixed = 2 + ext + mask;
    // The channel byte is part of the payload; read it as part of the header.
    if h.len() < fixed + 1 {
        return None;
    }
    let len = match len7 {
        Some(n) => n,
        None => h[2..2 + ext].iter().fold(0usize, |acc, b| {
            acc.saturating_mul(256).saturating_add(*b as usize)
        }),
    };
    let opcode = h[0] & 0x0f;
    if len == 0 {
        // An empty frame has no channel byte: what was read as one is the next frame's.
        return Some(Start::Invalid);
    }
    let channel = if masked {
        h[fixed] ^ h[2 + ext]
    } else {
        h[fixed]
    };
    Some(Start::Payload {
        len: len - 1,
        collect: opcode == 2 && channel == 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    fn spdy_data(stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = stream.to_be_bytes().to_vec();
        f.push(0);
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(payload);
        f
    }

    const FAILED: &[u8] = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;

    #[test]
    fn spdy_error_stream_gives_the_exit_code_in_any_split() {
        let mut bytes = vec![0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 1, 2, 3, 4];
        bytes.extend(spdy_data(3, b"stdout says {\"status\":\"Success\"}"));
        bytes.extend(spdy_data(1, FAILED));
        for split in [1, 3, 7, 100] {
            let mut exit = ExitCode::for_protocol(
                "SPDY/3.1",
                &headers("x-stream-protocol-version", "v4.channel.k8s.io"),
            );
            for chunk in bytes.chunks(split) {
                exit.observe(chunk);
            }
            assert_eq!(exit.code(), Some(3), "split {split}");
        }
        let mut ok = ExitCode::for_protocol(
            "SPDY/3.1",
            &headers("x-stream-protocol-version", "v4.channel.k8s.io"),
        );
        ok.observe(&spdy_data(1, br#"{"metadata":{},"status":"Success"}"#));
        assert_eq!(ok.code(), Some(0));
    }

    #[test]
    fn websocket_channel_three_gives_the_exit_code() {
        let mut bytes = vec![0x82, 6, 1, b'h', b'e', b'l', b'l', b'o'];
        bytes.extend([0x82, 126]);
        bytes.extend(((FAILED.len() + 1) as u16).to_be_bytes());
        bytes.push(3);
        bytes.extend_from_slice(FAILED);
        let mut exit = ExitCode::for_protocol(
            "websocket",
            &headers("sec-websocket-protocol", "v5.channel.k8s.io"),
        );
        for chunk in bytes.chunks(5) {
            exit.observe(chunk);
        }
        assert_eq!(exit.code(), Some(3));
    }

    #[test]
    fn port_forward_and_garbage_give_no_code_and_never_panic() {
        let mut pf = ExitCode::for_protocol(
            "SPDY/3.1",
            &headers("x-stream-protocol-version", "portforward.k8s.io"),
        );
        pf.observe(&spdy_data(1, FAILED));
        assert_eq!(pf.code(), None);
        let mut junk = ExitCode::for_protocol(
            "websocket",
            &headers("sec-websocket-protocol", "v5.channel.k8s.io"),
        );
        junk.observe(&[0xff; 4096]);
        junk.observe(&[0x82, 0]);
        junk.observe(&[
            0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 1,
        ]);
        assert_eq!(junk.code(), None);
    }
}
