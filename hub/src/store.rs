//! Hub state in JetStream KV buckets, one protobuf message per key. Every change is a
//! compare-and-set on the entry's revision, retried on conflict, so several hub replicas never
//! overwrite each other.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use fleetbus_schema::decode;
use fleetbus_schema::v1::ClusterRecord;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use tokio_util::sync::CancellationToken;

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

/// Opens a KV bucket, creating it if this is the first hub. Shared: an async-nats store
/// carries the stream's whole info, too heavy to copy into every request's handler.
pub async fn open_kv(
    js: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<Arc<kv::Store>, StoreError> {
    if let Ok(kv) = js.get_key_value(bucket).await {
        return Ok(Arc::new(kv));
    }
    let config = kv::Config {
        bucket: bucket.to_owned(),
        history: 5,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(kv) => Ok(Arc::new(kv)),
        // Another replica may have created it a moment ago.
        Err(e) => js
            .get_key_value(bucket)
            .await
            .map(Arc::new)
            .map_err(|_| unavailable(e)),
    }
}

/// A bucket of `M` messages, mirrored in memory by a KV watch so that listing (spoke syncs,
/// the auth callout, the API) never creates a JetStream consumer per call.
pub struct Bucket<M> {
    kv: Arc<kv::Store>,
    cache: Arc<RwLock<Mirror<M>>>,
    /// Counts mirror changes, for loops that follow the bucket (placement decisions, rollout).
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    _message: PhantomData<fn() -> M>,
}

/// The in-memory copy: latest revision per key (`None` once deleted), and whether it has
/// caught up with the bucket.
struct Mirror<M> {
    entries: BTreeMap<String, (u64, Option<M>)>,
    ready: bool,
}

impl<M: Clone> Mirror<M> {
    /// Up to `count` live entries whose key starts with `prefix` and sorts after `after`.
    fn page(&self, prefix: &str, after: &str, count: usize) -> Vec<(String, M)> {
        let start = if after.is_empty() { prefix } else { after };
        self.entries
            .range(start.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_empty() || k.as_str() > after)
            .filter_map(|(k, (_, v))| v.as_ref().map(|v| (k.clone(), v.clone())))
            .take(count)
            .collect()
    }
}

impl<M> Mirror<M> {
    /// Applies a change unless the mirror already has a newer one.
    fn apply(&mut self, key: &str, revision: u64, value: Option<M>) {
        match self.entries.get(key) {
            Some((have, _)) if *have >= revision => {}
            _ => {
                self.entries.insert(key.to_owned(), (revision, value));
            }
        }
    }
}

impl<M> Clone for Bucket<M> {
    fn clone(&self) -> Self {
        Self {
            kv: self.kv.clone(),
            cache: self.cache.clone(),
            changes: self.changes.clone(),
            _message: PhantomData,
        }
    }
}

/// Cluster records, by cluster name.
pub type ClusterStore = Bucket<ClusterRecord>;

impl<M: Message + Default + Clone + Send + Sync + 'static> Bucket<M> {
    /// Opens (or creates) `bucket` and starts mirroring it until `shutdown`.
    pub async fn open(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        shutdown: &CancellationToken,
    ) -> Result<Self, StoreError> {
        let this = Self::unfollowed(js, bucket, replicas, false).await?;
        tokio::spawn(this.clone().mirror(shutdown.clone()));
        Ok(this)
    }

    /// Opens (or creates) `bucket` with a mirror that no watch feeds but that counts as caught
    /// up: it holds only this handle's own writes, so it is stale as soon as anyone else
    /// writes. For tests of what [`Bucket::update`] does with a mirror that lags; the hub
    /// always uses [`Bucket::open`].
    #[doc(hidden)]
    pub async fn frozen(js: &jetstream::Context, bucket: &str) -> Result<Self, StoreError> {
        Self::unfollowed(js, bucket, 1, true).await
    }

    async fn unfollowed(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
        ready: bool,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            kv: open_kv(js, bucket, replicas).await?,
            cache: Arc::new(RwLock::new(Mirror {
                entries: BTreeMap::new(),
                ready,
            })),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
            _message: PhantomData,
        })
    }

    /// Follows every change of the bucket; restarts the watch if it breaks.
    async fn mirror(self, shutdown: CancellationToken) {
        let mut attempt = 0;
        loop {
            if let Err(e) = self.watch(&shutdown).await {
                tracing::warn!(error = %e, "hub state watch broke; listing directly until it resumes");
            }
            write(&self.cache).ready = false;
            if shutdown.is_cancelled() {
                return;
            }
            attempt += 1;
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(fleetbus_nats::connect::reconnect_delay(attempt)) => {}
            }
        }
    }

    async fn watch(&self, shutdown: &CancellationToken) -> Result<(), StoreError> {
        let mut changes = self.kv.watch_with_history(">").await.map_err(unavailable)?;
        if self.kv.status().await.map_err(unavailable)?.values() == 0 {
            write(&self.cache).ready = true;
        }
        loop {
            let entry = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                entry = changes.next() => match entry {
                    Some(entry) => entry.map_err(unavailable)?,
                    None => return Err(unavailable("watch ended")),
                },
            };
            let value = match entry.operation {
                kv::Operation::Put => match decode::<M>(&entry.key, &entry.value) {
                    Ok(value) => Some(value),
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping an undecodable hub state entry");
                        continue;
                    }
                },
                kv::Operation::Delete | kv::Operation::Purge => None,
            };
            {
                let mut cache = write(&self.cache);
                cache.apply(&entry.key, entry.revision, value);
                if entry.delta == 0 {
                    cache.ready = true;
                }
            }
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Follows changes of the in-memory mirror (the value only counts them).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Runs `f` over the mirrored live entries whose key starts with `prefix`, in key order,
    /// without copying them; `None` while the mirror has not caught up with the bucket.
    pub fn scan<T>(
        &self,
        prefix: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = (&str, &M)>) -> T,
    ) -> Option<T> {
        let cache = read(&self.cache);
        if !cache.ready {
            return None;
        }
        let mut entries = cache
            .entries
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, (_, v))| v.as_ref().map(|v| (k.as_str(), v)));
        Some(f(&mut entries))
    }

    /// Runs `f` on the mirrored value at `key`; `None` while the mirror is not ready.
    pub fn peek<T>(&self, key: &str, f: impl FnOnce(Option<&M>) -> T) -> Option<T> {
        let cache = read(&self.cache);
        if !cache.ready {
            return None;
        }
        Some(f(cache.entries.get(key).and_then(|(_, v)| v.as_ref())))
    }

    /// The mirror's live value at `key` and its revision, if the mirror is ready and has one.
    fn mirrored(&self, key: &str) -> Option<(M, u64)> {
        let cache = read(&self.cache);
        if !cache.ready {
            return None;
        }
        match cache.entries.get(key) {
            Some((revision, Some(value))) => Some((value.clone(), *revision)),
            _ => None,
        }
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
        {
            let cache = read(&self.cache);
            if cache.ready {
                return Ok(cache
                    .entries
                    .range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter_map(|(_, (_, v))| v.as_ref().cloned())
                    .collect());
            }
        }
        self.list_direct(prefix).await
    }

    /// One page of the values whose key starts with `prefix`: at most `limit` after the key
    /// `after`, and the key to continue from (empty when nothing follows). Walks only the page
    /// in the mirror, so paging through a large bucket stays linear.
    pub async fn page(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<M>, String), StoreError> {
        let mirrored = {
            let cache = read(&self.cache);
            cache.ready.then(|| cache.page(prefix, after, limit + 1))
        };
        let mut page = match mirrored {
            Some(page) => page,
            None => self
                .list_direct_keyed(prefix)
                .await?
                .into_iter()
                .filter(|(k, _)| after.is_empty() || k.as_str() > after)
                .take(limit + 1)
                .collect(),
        };
        let more = page.len() > limit;
        page.truncate(limit);
        let next = if more {
            page.last().map(|(k, _)| k.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((page.into_iter().map(|(_, v)| v).collect(), next))
    }

    async fn list_direct(&self, prefix: &str) -> Result<Vec<M>, StoreError> {
        Ok(self
            .list_direct_keyed(prefix)
            .await?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    async fn list_direct_keyed(&self, prefix: &str) -> Result<Vec<(String, M)>, StoreError> {
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
                values.push((key, value));
            }
        }
        Ok(values)
    }

    /// Reads `key`, lets `decide` choose an action, and applies it with compare-and-set on
    /// the revision it read; if another replica wrote in between, reads again and retries.
    ///
    /// The first read is the mirror's when it holds the key (it has this hub's own writes, so
    /// a busy key costs one round trip, not two). A write decided on it is still checked by the
    /// compare-and-set; any other decision (keep, or an error) is taken again on the bucket's
    /// own value, since a replica's newer write may not have reached the mirror yet.
    pub async fn update<T, E: From<StoreError>>(
        &self,
        key: impl AsRef<str>,
        mut decide: impl FnMut(Option<M>) -> Result<(Action<M>, T), E>,
    ) -> Result<T, E> {
        let key = key.as_ref();
        let mut mirrored = self.mirrored(key);
        for _ in 0..MAX_ATTEMPTS {
            let from_mirror = mirrored.is_some();
            let current = match mirrored.take() {
                Some(entry) => Some(entry),
                None => self.entry(key).await?,
            };
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let decided = decide(current.map(|(value, _)| value));
            if from_mirror && !matches!(decided, Ok((Action::Put(_) | Action::Delete, _))) {
                continue;
            }
            let (action, out) = decided?;
            let written = match action {
                Action::Keep => return Ok(out),
                Action::Put(value) => {
                    let written = self.put(key, &value, revision).await?;
                    // Read your own writes, before the watch delivers them.
                    if let Some(rev) = written {
                        write(&self.cache).apply(key, rev, Some(*value));
                        self.changes.send_modify(|n| *n += 1);
                    }
                    written.is_some()
                }
                Action::Delete => {
                    let deleted = self.delete(key, revision).await?;
                    if deleted {
                        write(&self.cache).apply(key, revision + 1, None);
                        self.changes.send_modify(|n| *n += 1);
                    }
                    deleted
                }
            };
            if written {
                return Ok(out);
            }
        }
        Err(StoreError::Contended(key.to_owned()).into())
    }

    /// Writes `value` at `key` unless the key exists: one round trip where [`Bucket::update`]
    /// needs two, for writers that expect the key to be new. Returns whether it wrote.
    pub async fn create(&self, key: &str, value: &M) -> Result<bool, StoreError> {
        let Some(rev) = self.put(key, value, 0).await? else {
            return Ok(false);
        };
        write(&self.cache).apply(key, rev, Some(value.clone()));
        self.changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    /// The new revision, or `None` when `revision` is no longer the latest.
    async fn put(&self, key: &str, value: &M, revision: u64) -> Result<Option<u64>, StoreError> {
        let value = Bytes::from(value.encode_to_vec());
        if revision == 0 {
            return match self.kv.create(key, value).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(unavailable(e)),
            };
        }
        match self.kv.update(key, value, revision).await {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
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

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_keeps_the_newest_revision() {
        let mut m: Mirror<String> = Mirror {
            entries: BTreeMap::new(),
            ready: true,
        };
        m.apply("a", 2, Some("two".into()));
        m.apply("a", 1, Some("one".into()));
        assert_eq!(m.entries["a"], (2, Some("two".into())));
        m.apply("a", 3, None);
        assert_eq!(m.entries["a"], (3, None));
    }

    #[test]
    fn pages_walk_a_prefix_once_and_skip_deleted_entries() {
        let mut m: Mirror<String> = Mirror {
            entries: BTreeMap::new(),
            ready: true,
        };
        for i in 0..1234 {
            m.apply(&format!("c1.w{i:04}"), 1, Some(format!("{i}")));
        }
        m.apply("c0.other", 1, Some("x".into()));
        m.apply("c2.other", 1, Some("y".into()));
        m.apply("c1.w0005", 2, None);
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = m.page("c1.", &after, 501);
            let more = page.len() > 500;
            seen.extend(page.iter().take(500).map(|(_, v)| v.clone()));
            if !more {
                break;
            }
            after = page[499].0.clone();
        }
        assert_eq!(seen.len(), 1233);
        assert!(!seen.contains(&"5".to_owned()) && !seen.contains(&"x".to_owned()));
        assert_eq!(seen.first().map(String::as_str), Some("0"));
        assert_eq!(seen.last().map(String::as_str), Some("1233"));
    }
}
