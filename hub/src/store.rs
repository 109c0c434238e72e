//! Cluster records in a JetStream KV bucket. Every change is a compare-and-set on the entry's
//! revision, retried on conflict, so several hub replicas never overwrite each other.

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use fleetbus_schema::v1::ClusterRecord;
use fleetbus_schema::{ClusterName, decode};
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
    #[error("cluster {0} is being changed concurrently; try again")]
    Contended(String),
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// What an update decides to do with a record.
pub enum Action {
    /// Write this record.
    Put(Box<ClusterRecord>),
    /// Remove the entry.
    Delete,
    /// Change nothing.
    Keep,
}

const MAX_ATTEMPTS: usize = 16;

/// The `<prefix>-clusters` bucket.
#[derive(Clone)]
pub struct ClusterStore {
    kv: kv::Store,
}

impl ClusterStore {
    /// Opens the bucket, creating it if this is the first hub.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<Self, StoreError> {
        if let Ok(kv) = js.get_key_value(bucket).await {
            return Ok(Self { kv });
        }
        let config = kv::Config {
            bucket: bucket.to_owned(),
            history: 5,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv = match js.create_key_value(config).await {
            Ok(kv) => kv,
            // Another replica may have created it a moment ago.
            Err(e) => js.get_key_value(bucket).await.map_err(|_| unavailable(e))?,
        };
        Ok(Self { kv })
    }

    /// The record of `name`, if any.
    pub async fn get(&self, name: &ClusterName) -> Result<Option<ClusterRecord>, StoreError> {
        Ok(self.entry(name).await?.map(|(record, _)| record))
    }

    async fn entry(&self, name: &ClusterName) -> Result<Option<(ClusterRecord, u64)>, StoreError> {
        match self.kv.entry(name.as_str()).await.map_err(unavailable)? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                let record = decode::<ClusterRecord>(&entry.key, &entry.value)?;
                Ok(Some((record, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Every record, sorted by name.
    pub async fn list(&self) -> Result<Vec<ClusterRecord>, StoreError> {
        let mut keys: Vec<String> = self
            .kv
            .keys()
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        keys.sort();
        let mut records = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self.kv.get(&key).await.map_err(unavailable)? {
                records.push(decode::<ClusterRecord>(&key, &value)?);
            }
        }
        Ok(records)
    }

    /// Reads `name`, lets `decide` choose an action, and applies it with compare-and-set on
    /// the revision it read; if another replica wrote in between, reads again and retries.
    pub async fn update<T, E: From<StoreError>>(
        &self,
        name: &ClusterName,
        mut decide: impl FnMut(Option<ClusterRecord>) -> Result<(Action, T), E>,
    ) -> Result<T, E> {
        for _ in 0..MAX_ATTEMPTS {
            let current = self.entry(name).await?;
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let (action, out) = decide(current.map(|(record, _)| record))?;
            let written = match action {
                Action::Keep => return Ok(out),
                Action::Put(record) => self.put(name, &record, revision).await?,
                Action::Delete => self.delete(name, revision).await?,
            };
            if written {
                return Ok(out);
            }
        }
        Err(StoreError::Contended(name.to_string()).into())
    }

    /// `Ok(false)` when `revision` is no longer the latest.
    async fn put(
        &self,
        name: &ClusterName,
        record: &ClusterRecord,
        revision: u64,
    ) -> Result<bool, StoreError> {
        let value = Bytes::from(record.encode_to_vec());
        if revision == 0 {
            return match self.kv.create(name.as_str(), value).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(unavailable(e)),
            };
        }
        match self.kv.update(name.as_str(), value, revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete(&self, name: &ClusterName, revision: u64) -> Result<bool, StoreError> {
        if revision == 0 {
            return Ok(true);
        }
        match self
            .kv
            .delete_expect_revision(name.as_str(), Some(revision))
            .await
        {
            Ok(()) => Ok(true),
            // The server reports a stale revision as "wrong last sequence".
            Err(e) if e.to_string().contains("wrong last sequence") => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
