//! Where the manifests of works live: the JetStream Object Store `<prefix>-manifests` (object
//! `<cluster>.<work>.<digest>`), uploads of large works in chunks (KV `<prefix>-uploads`, entries
//! expire after an hour), and chunked reads for spokes through a small in-memory cache.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use fleetbus_schema::chunks;
use tokio::io::AsyncReadExt;

use crate::error::ApiError;
use crate::work_spec::{MAX_MANIFESTS_BYTES, too_large};

/// How long an unfinished upload is kept.
const UPLOAD_TTL: Duration = Duration::from_secs(3600);
/// Bytes of manifests kept in memory for spokes fetching chunks.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError {
        code: 503,
        message: format!("manifest store unavailable: {e}"),
    }
}

/// Manifests of all works.
#[derive(Clone)]
pub struct ManifestStore {
    // Shared, as a bucket's store is (see `store::open_kv`).
    objects: Arc<object_store::ObjectStore>,
    uploads: Arc<kv::Store>,
    cache: Arc<Mutex<VecDeque<(String, Bytes)>>>,
}

/// Object name of a work's manifests.
pub fn object_name(cluster: &str, work: &str, digest: &str) -> String {
    format!("{cluster}.{work}.{digest}")
}

impl ManifestStore {
    /// Opens (or creates) the object store and the uploads bucket.
    pub async fn open(
        js: &jetstream::Context,
        objects: &str,
        uploads: &str,
        replicas: usize,
    ) -> anyhow::Result<Self> {
        let objects = match js.get_object_store(objects).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: objects.to_owned(),
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("object store {objects}: {e}"))?,
        };
        let uploads = match js.get_key_value(uploads).await {
            Ok(kv) => kv,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: uploads.to_owned(),
                    max_age: UPLOAD_TTL,
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| anyhow::anyhow!("bucket {uploads}: {e}"))?,
        };
        Ok(Self {
            objects: Arc::new(objects),
            uploads: Arc::new(uploads),
            cache: Arc::default(),
        })
    }

    /// Stores one uploaded chunk of `user`'s upload `id`.
    pub async fn put_chunk(
        &self,
        user: &str,
        id: &str,
        index: i32,
        data: Bytes,
    ) -> Result<(), ApiError> {
        upload_id(id)?;
        if index < 0 {
            return Err(ApiError::bad_request("chunk index must not be negative"));
        }
        if index as usize >= chunks::count(MAX_MANIFESTS_BYTES) {
            return Err(too_large(0));
        }
        self.uploads
            .put(format!("{user}.{id}.{index}"), data)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Joins `user`'s upload `id` of `count` chunks and forgets it.
    pub async fn take_upload(&self, user: &str, id: &str, count: i32) -> Result<Bytes, ApiError> {
        upload_id(id)?;
        if count <= 0 || count as usize > chunks::count(MAX_MANIFESTS_BYTES) {
            return Err(ApiError::bad_request(format!(
                "an upload has 1 to {} chunks; got {count}",
                chunks::count(MAX_MANIFESTS_BYTES)
            )));
        }
        let mut joined = Vec::new();
        for index in 0..count {
            let key = format!("{user}.{id}.{index}");
            let chunk = self
                .uploads
                .get(&key)
                .await
                .map_err(unavailable)?
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "upload {id} has no chunk {index} (uploads are kept for an hour)"
                    ))
                })?;
            joined.extend_from_slice(&chunk);
        }
        for index in 0..count {
            let _ = self.uploads.purge(format!("{user}.{id}.{index}")).await;
        }
        Ok(joined.into())
    }

    /// Stores manifests under their object name.
    pub async fn put(&self, name: &str, bytes: Bytes) -> Result<(), ApiError> {
        self.objects
            .put(name, &mut bytes.as_ref())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Removes stored manifests (absent is fine).
    pub async fn delete(&self, name: &str) {
        if let Err(e) = self.objects.delete(name).await {
            tracing::debug!(object = name, error = %e, "manifests not deleted");
        }
    }

    /// Reads whole manifests, checking their digest.
    pub async fn get(&self, name: &str, expected_digest: &str) -> Result<Bytes, ApiError> {
        if let Some(bytes) = self.cached(expected_digest) {
            return Ok(bytes);
        }
        let mut object =
            self.objects.get(name).await.map_err(|e| {
                ApiError::not_found(format!("manifests {name} are not stored: {e}"))
            })?;
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(unavailable)?;
        if fleetbus_schema::manifests::digest_bytes(&bytes) != expected_digest {
            return Err(unavailable(format!(
                "manifests {name} do not match their digest"
            )));
        }
        let bytes = Bytes::from(bytes);
        self.remember(expected_digest, bytes.clone());
        Ok(bytes)
    }

    fn cached(&self, digest: &str) -> Option<Bytes> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, b)| b.clone())
    }

    fn remember(&self, digest: &str, bytes: Bytes) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.push_front((digest.to_owned(), bytes));
        while cache.iter().map(|(_, b)| b.len()).sum::<usize>() > CACHE_BYTES && cache.len() > 1 {
            cache.pop_back();
        }
    }
}

/// Upload ids become one key token: 1 to 64 of `[a-z0-9-]`.
fn upload_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "upload id {id:?} must be 1 to 64 of [a-z0-9-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_cannot_widen_keys() {
        assert!(upload_id("0a1b-2c").is_ok());
        for bad in ["", "a.b", "a*", ">", "A"] {
            assert!(upload_id(bad).is_err(), "{bad}");
        }
    }
}
