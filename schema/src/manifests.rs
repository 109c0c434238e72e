//! The digest that names a work's manifests, one definition for hub and spoke.
//!
//! It is the SHA-256 of their canonical form: a `Manifests` holding only `objects`, encoded as
//! prost encodes it (fields in order, shortest varints, no unknown fields). The hub stores and
//! sends that form; a spoke computes the digest from the objects it decoded, whether they came
//! inline with its sync or in chunks, so fields a newer client or hub adds, or an encoder of
//! another language, cannot make a work that never applies.

use prost::Message;
use sha2::{Digest, Sha256};

use crate::v1::Manifests;

/// The largest encoded manifests a work may carry (OCM: 500 KiB). Works travel in chunks, so
/// this bounds memory on hub and spoke, not the NATS payload size.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

/// The canonical encoding of `manifests`.
pub fn canonical(manifests: &Manifests) -> Vec<u8> {
    // Built field by field, so a field added to `Manifests` later stays out of the digest.
    Manifests {
        objects: manifests.objects.clone(),
    }
    .encode_to_vec()
}

/// The digest of `manifests` (lowercase hex).
pub fn digest(manifests: &Manifests) -> String {
    digest_bytes(&canonical(manifests))
}

/// SHA-256 of `bytes` (lowercase hex): the digest when `bytes` are in canonical form.
pub fn digest_bytes(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in hash {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Manifests {
        Manifests {
            objects: vec![b"{\"a\":1}".to_vec(), b"{}".to_vec()],
        }
    }

    #[test]
    fn the_digest_is_sha256_of_the_encoding() {
        let m = two();
        assert_eq!(canonical(&m), m.encode_to_vec());
        assert_eq!(
            digest_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest(&m), digest_bytes(&m.encode_to_vec()));
    }

    #[test]
    fn unknown_fields_and_long_varints_do_not_change_the_digest() {
        let m = two();
        // The same two objects, their lengths as two-byte varints, then field 7 (varint 1) and
        // field 8 (length-delimited "x"), which this version does not know.
        let mut sent = vec![0x0a, 0x87, 0x00];
        sent.extend_from_slice(b"{\"a\":1}");
        sent.extend_from_slice(&[0x0a, 0x82, 0x00, b'{', b'}']);
        sent.extend_from_slice(&[0x38, 0x01, 0x42, 0x01, b'x']);
        let decoded = Manifests::decode(sent.as_slice()).unwrap();
        assert_eq!(decoded, m);
        assert_ne!(digest_bytes(&sent), digest(&m));
        assert_eq!(digest(&decoded), digest(&m));
    }
}
