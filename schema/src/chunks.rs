//! Payloads larger than one NATS message (the server's `max_payload`, 1 MiB by default) travel
//! as chunks of at most [`CHUNK_BYTES`]: works uploaded to the hub and fetched by spokes.

/// Bytes per chunk: room below 1 MiB for the message envelope and headers.
pub const CHUNK_BYTES: usize = 768 * 1024;

/// Number of chunks `len` bytes take (at least one, so that empty payloads still travel).
pub fn count(len: usize) -> usize {
    len.div_ceil(CHUNK_BYTES).max(1)
}

/// The chunk starting at `offset`, empty past the end.
pub fn at(bytes: &[u8], offset: usize) -> &[u8] {
    let start = offset.min(bytes.len());
    &bytes[start..(start + CHUNK_BYTES).min(bytes.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_payload_exactly() {
        assert_eq!(count(0), 1);
        assert_eq!(count(CHUNK_BYTES), 1);
        assert_eq!(count(CHUNK_BYTES + 1), 2);
        let bytes: Vec<u8> = (0..(2 * CHUNK_BYTES + 5)).map(|i| i as u8).collect();
        let mut joined = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let chunk = at(&bytes, offset);
            joined.extend_from_slice(chunk);
            offset += chunk.len();
        }
        assert_eq!(joined, bytes);
        assert!(at(&bytes, bytes.len() + 10).is_empty());
    }
}
