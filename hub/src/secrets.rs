//! Service-account tokens at rest: each value in the `<prefix>-tokens` bucket is sealed with
//! AES-256-GCM under the hub's own key (JetStream's encryption is server-wide, this is per
//! value), with the entry's key as associated data so a sealed value cannot be moved to another
//! entry. Nothing here logs a token.

use std::path::Path;

use async_nats::jetstream::{self, kv};
use fleetbus_schema::v1::TokenSecret;
use prost::Message;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::store::{StoreError, open_kv};

/// Reading or writing a secret failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file is missing or malformed.
    #[error("secrets key {0}: {1}")]
    Key(String, &'static str),
    /// JetStream failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The value does not open with this key (tampered, or another hub key).
    #[error("stored token {0} cannot be decrypted with this hub's key")]
    Sealed(String),
}

/// The sealed-token bucket.
#[derive(Clone)]
pub struct Secrets {
    kv: std::sync::Arc<kv::Store>,
    key: std::sync::Arc<LessSafeKey>,
}

/// Reads the 32-byte hex key written by `fleetbus certs init`.
pub fn load_key(path: &Path) -> Result<[u8; 32], SecretError> {
    let err = |why| SecretError::Key(path.display().to_string(), why);
    let text = std::fs::read_to_string(path)
        .map_err(|_| err("cannot be read (run fleetbus certs init)"))?;
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.trim().as_bytes())
        .map_err(|_| err("is not hex"))?;
    bytes.try_into().map_err(|_| err("must hold 32 bytes"))
}

impl Secrets {
    /// Opens the bucket with the hub's key.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        key: [u8; 32],
    ) -> Result<Self, SecretError> {
        let unbound = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| SecretError::Key(bucket.into(), "rejected"))?;
        Ok(Self {
            kv: open_kv(js, bucket, replicas).await?,
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        })
    }

    /// Seals and stores `secret` at `key`.
    pub async fn put(&self, key: &str, secret: &TokenSecret) -> Result<(), SecretError> {
        let sealed = seal(&self.key, key, secret.encode_to_vec())?;
        self.kv
            .put(key, sealed.into())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Opens the secret at `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<TokenSecret>, SecretError> {
        let Some(sealed) = self
            .kv
            .get(key)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        let plain = open(&self.key, key, &sealed).ok_or_else(|| SecretError::Sealed(key.into()))?;
        let secret =
            TokenSecret::decode(plain.as_slice()).map_err(|_| SecretError::Sealed(key.into()))?;
        Ok(Some(secret))
    }

    /// Removes the secret at `key` (and its history).
    pub async fn delete(&self, key: &str) -> Result<(), SecretError> {
        self.kv
            .purge(key)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(())
    }
}

fn seal(key: &LessSafeKey, aad: &str, mut data: Vec<u8>) -> Result<Vec<u8>, SecretError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SecretError::Key("random".into(), "no randomness"))?;
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad.as_bytes()),
        &mut data,
    )
    .map_err(|_| SecretError::Key("seal".into(), "failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut body = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut body)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[byte; 32]).unwrap())
    }

    #[test]
    fn sealed_values_open_only_with_the_key_and_entry() {
        let sealed = seal(&key(1), "c1.dep", b"token-value".to_vec()).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"token-value"));
        assert_eq!(open(&key(1), "c1.dep", &sealed).unwrap(), b"token-value");
        assert!(open(&key(2), "c1.dep", &sealed).is_none());
        assert!(open(&key(1), "c2.dep", &sealed).is_none());
        assert!(open(&key(1), "c1.dep", &sealed[..5]).is_none());
        let mut tampered = sealed.clone();
        tampered[15] ^= 1;
        assert!(open(&key(1), "c1.dep", &tampered).is_none());
    }
}
