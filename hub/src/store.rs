//! Hub state in JetStream KV buckets, one protobuf message per key. Every change is a
//! compare-and-set on the entry's revision, retried on conflict, so several hub replicas never
//! overwrite each other.

use std::marker::PhantomData;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use fleetbus_schema::decode;
use fleetbus_schema::v1::ClusterRecord;
use futures::TryStreamExt;
use prost::Message;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// JetStream said no or did not answer.
    #[error("hub state unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not decode.
    #[error(transparent)]
    Corrupt(#[from] fleetbus_schema::DecodeError),
    /// Too many concurrent writers.
    #[error("{0} is being changed concurrently; try again")]
    Contended(String),
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// What an update decides to do with an entry.
pub enum Action<M> {
    /// Write this value.
    Put(Box<M>),
    /// Remove the entry.
    Delete,
    /// Change nothing.
    Keep,
}

const MAX_ATTEMPTS: usize = 16;

/// Opens a KV bucket, creating it if this is the first hub.
pub async fn open_kv(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<kv::Store, StoreError> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(kv);
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        history: 5,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Another replica may have created it a moment ago.
        Err(e) => js.get_key_value(bucket).await.map_err(|_| unavailable(e)),
    }
}

/// A bucket of `M` messages.
pub struct Bucket<M> {
    kv: kv::Store,
    _message: PhantomData<fn() -> M>,
}

impl<M> Clone for Bucket<M> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
            _message: PhantomData,
        }
    }
}

/// Cluster records, by cluster name.
pub type ClusterStore = Bucket<ClusterRecord>;

impl<M: Message + Default> Bucket<M> {
    /// Opens (or creates) `bucket`.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            kv: open_kv(js, bucket, replicas).await?,
            _message: PhantomData,
        })
    }

    /// The value at `key`, if any.
    pub async fn get(&self, key: impl AsRef<str>) -> Result<Option<M>, StoreError> {
        Ok(self.entry(key.as_ref()).await?.map(|(value, _)| value))
    }

    async fn entry(&self, key: &str) -> Result<Option<(M, u64)>, StoreError> {
        match self.kv.entry(key).await.map_err(unavailable)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let value = decode::<M>(&entry.key, &entry.value)?;
                Ok(Some((value, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Every value whose key starts with `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<M>, StoreError> {
        let mut keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(unavailable)?
            .try_filter(|k| std::future::ready(k.starts_with(prefix)))
            .try_collect()
            .await
            .map_err(unavailable)?;
        keys.sort();
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some((value, _)) = self.entry(&key).await? {
                values.push(value);
            }
        }
        Ok(values)
    }

    /// Reads `key`, lets `decide` choose an action, and applies it with compare-and-set on
    /// the revision it read; if another replica wrote in between, reads again and retries.
    pub async fn update<T, E: From<StoreError>>(
        &self,
        key: impl AsRef<str>,
        mut decide: impl FnMut(Option<M>) -> Result<(Action<M>, T), E>,
    ) -> Result<T, E> {
        let key = key.as_ref();
        for _ in 0..MAX_ATTEMPTS {
            let current = self.entry(key).await?;
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let (action, out) = decide(current.map(|(value, _)| value))?;
            let written = match action {
                Action::Keep => return Ok(out),
                Action::Put(value) => self.put(key, &*value, revision).await?,
                Action::Delete => self.delete(key, revision).await?,
            };
            if written {
                return Ok(out);
            }
        }
        Err(StoreError::Contended(key.to_owned()).into())
    }

    /// `Ok(false)` when `revision` is no longer the latest.
    async fn put(&self, key: &str, value: &M, revision: u64) -> Result<bool, StoreError> {
        let value = Bytes::from(value.encode_to_vec());
        if revision == 0 {
            return match self.kv.create(key, value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(unavailable(e)),
            };
        }
        match self.kv.update(key, value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete(&self, key: &str, revision: u64) -> Result<bool, StoreError> {
        if revision == 0 {
            return Ok(true);
        }
        match self.kv.delete_expect_revision(key, Some(revision)).await {
            Ok(()) => Ok(true),
            // The server reports a stale revision as "wrong last sequence".
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
