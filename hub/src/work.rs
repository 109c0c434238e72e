//! ManifestWork on the hub (OCM work v1): desired works per cluster with their status, status
//! reports from spokes, and deletion that completes when the spoke says the resources are gone
//! (OCM's finalizer). Small manifests (most works) live in the work's own record and travel
//! with the spoke's sync; large ones live in the Object Store and are fetched in chunks by
//! digest. Either way a spoke only ever gets its own cluster's works.

use bytes::Bytes;
use fleetbus_schema::manifests::{canonical, digest_bytes};
use fleetbus_schema::v1::{
    AuditEvent, Condition, ConditionStatus, CreateWorkRequest, ManifestWork, ManifestsChunk,
    ManifestsChunkRequest, WorkList, WorkListRequest, WorkStatus, WorkStatusAck, WorkStatusReport,
};
use fleetbus_schema::{ClusterName, Identity, Subjects, chunks};
use prost::Message;

use crate::error::ApiError;
use crate::manifests::{ManifestStore, object_name};
use crate::registration::{not_registered, now_ms};
use crate::store::{Action, Bucket, ClusterStore};
use crate::work_spec::{names, validate, validate_manifests};

/// The work part of the hub.
#[derive(Clone)]
pub struct WorkService {
    /// Works with status, key `<cluster>.<name>`.
    pub works: Bucket<ManifestWork>,
    /// Their manifests.
    pub manifests: ManifestStore,
    /// Cluster records (a work needs a registered cluster).
    pub clusters: ClusterStore,
    /// To notify spokes.
    pub client: async_nats::Client,
    /// Subjects of this fleet.
    pub subjects: Subjects,
    /// Audit events.
    pub audit: fleetbus_nats::audit::Auditor,
}

/// Manifests up to this size are kept in the work's record and sent with syncs.
const INLINE_BYTES: usize = 16 * 1024;
/// Inline manifests a sync reply carries at most; beyond it the spoke fetches them.
const SYNC_BUDGET: usize = 512 * 1024;

fn key(cluster: &str, name: &str) -> String {
    format!("{cluster}.{name}")
}

fn not_found(cluster: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("work {name} not found on cluster {cluster}"))
}

/// Whether a stored work may be replaced by a new version of it.
fn may_replace(old: &ManifestWork, overwrite: bool) -> Result<(), ApiError> {
    if !overwrite {
        return Err(ApiError::conflict(format!(
            "work {} already exists on cluster {}; use --overwrite to update it",
            old.name, old.cluster
        )));
    }
    if old.deletion_ms > 0 {
        return Err(ApiError::conflict(format!(
            "work {} on cluster {} is being deleted",
            old.name, old.cluster
        )));
    }
    Ok(())
}

/// Whether two works ask for the same thing.
fn same_spec(a: &ManifestWork, b: &ManifestWork) -> bool {
    a.manifests_digest == b.manifests_digest
        && a.delete_option == b.delete_option
        && a.manifest_configs == b.manifest_configs
}

impl WorkService {
    async fn notify(&self, cluster: &ClusterName) {
        let notice = fleetbus_schema::v1::ChangeNotice {}.encode_to_vec();
        if let Err(e) = self
            .client
            .publish(self.subjects.spoke_changed(cluster), notice.into())
            .await
        {
            tracing::warn!(%cluster, error = %e, "could not notify spoke");
        }
    }

    /// Creates a work, or with `overwrite` updates it (a new generation when the spec changed).
    pub async fn create(
        &self,
        caller: &str,
        request: CreateWorkRequest,
    ) -> Result<ManifestWork, ApiError> {
        let requested = request.work.unwrap_or_default();
        let cluster = validate(&requested)?;
        if self.clusters.get(&cluster).await?.is_none() {
            return Err(not_registered(&cluster));
        }
        let uploaded: Bytes = if request.upload_id.is_empty() {
            request.manifests.unwrap_or_default().encode_to_vec().into()
        } else {
            self.manifests
                .take_upload(caller, &request.upload_id, request.upload_chunks)
                .await?
        };
        let manifests = validate_manifests(&uploaded)?;
        // What is stored, sent and hashed is the canonical form, never the client's bytes: a
        // client may send fields this version does not know, which a spoke cannot hash.
        let encoded: Bytes = canonical(&manifests).into();
        drop(uploaded);
        let inline = encoded.len() <= INLINE_BYTES;
        let work = ManifestWork {
            name: requested.name.clone(),
            cluster: requested.cluster.clone(),
            delete_option: requested.delete_option,
            manifest_configs: requested.manifest_configs,
            manifests_digest: digest_bytes(&encoded),
            manifests_size: encoded.len() as i64,
            manifest_count: manifests.objects.len() as i32,
            manifests: inline.then_some(manifests),
            created_by: caller.to_owned(),
            ..Default::default()
        };
        let k = key(&work.cluster, &work.name);
        let previous = self.works.get(&k).await?;
        if let Some(old) = &previous {
            may_replace(old, request.overwrite)?;
            if same_spec(old, &work) {
                return Ok(old.clone());
            }
        }
        if !inline {
            let object = object_name(&work.cluster, &work.name, &work.manifests_digest);
            self.manifests.put(&object, encoded).await?;
        }
        let now = now_ms();
        let stored = self
            .works
            .update(&k, |current| {
                let mut next = work.clone();
                match current {
                    Some(old) => {
                        may_replace(&old, request.overwrite)?;
                        next.generation = old.generation + 1;
                        next.created_ms = old.created_ms;
                        next.created_by = old.created_by;
                        next.status = old.status;
                    }
                    None => {
                        next.generation = 1;
                        next.created_ms = now;
                        next.status = Some(WorkStatus::default());
                    }
                }
                next.updated_ms = now;
                Ok::<_, ApiError>((Action::Put(Box::new(next.clone())), next))
            })
            .await?;
        if let Some(old) = previous.filter(|o| o.manifests_digest != stored.manifests_digest) {
            self.forget_manifests(&old).await;
        }
        self.notify(&cluster).await;
        tracing::info!(%cluster, work = %stored.name, generation = stored.generation, by = caller, "work stored");
        Ok(stored)
    }

    /// One work with status, and its manifests when they fit in one message.
    pub async fn get(&self, cluster: &str, name: &str) -> Result<ManifestWork, ApiError> {
        names(cluster, name)?;
        let mut work = self
            .works
            .get(key(cluster, name))
            .await?
            .ok_or_else(|| not_found(cluster, name))?;
        if work.manifests.is_none() && work.manifests_size as usize <= chunks::CHUNK_BYTES {
            let object = object_name(cluster, name, &work.manifests_digest);
            let bytes = self.manifests.get(&object, &work.manifests_digest).await?;
            work.manifests = Some(
                fleetbus_schema::v1::Manifests::decode(bytes)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            );
        }
        Ok(work)
    }

    /// Works of one cluster, or all, a page at a time.
    pub async fn list(&self, request: &WorkListRequest) -> Result<WorkList, ApiError> {
        let prefix = if request.cluster.is_empty() {
            String::new()
        } else {
            let cluster = ClusterName::new(request.cluster.as_str())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            format!("{cluster}.")
        };
        let (items, next) = self
            .works
            .page(&prefix, &request.after, crate::page::limit(request.limit))
            .await?;
        let items = items
            .into_iter()
            .map(|w| ManifestWork {
                manifests: None,
                ..w
            })
            .collect();
        Ok(WorkList { items, next })
    }

    /// Asks the spoke to remove the work's resources; the work is gone once it has. A work
    /// of a cluster that no longer exists goes at once.
    pub async fn delete(&self, cluster: &str, name: &str) -> Result<ManifestWork, ApiError> {
        let cluster_name = names(cluster, name)?;
        let registered = self.clusters.get(&cluster_name).await?.is_some();
        let now = now_ms();
        let work = self
            .works
            .update(key(cluster, name), |current| match current {
                None => Err(not_found(cluster, name)),
                Some(work) if !registered => Ok((Action::Delete, work)),
                Some(mut work) => {
                    if work.deletion_ms == 0 {
                        work.deletion_ms = now;
                    }
                    Ok((Action::Put(Box::new(work.clone())), work))
                }
            })
            .await?;
        if !registered {
            self.forget_manifests(&work).await;
        }
        self.notify(&cluster_name).await;
        Ok(work)
    }

    async fn forget_manifests(&self, work: &ManifestWork) {
        if work.manifests.is_some() {
            return;
        }
        self.manifests
            .delete(&object_name(
                &work.cluster,
                &work.name,
                &work.manifests_digest,
            ))
            .await;
    }

    /// What `cluster` should have: its works without status or manifests.
    pub async fn desired(&self, cluster: &ClusterName) -> Result<Vec<ManifestWork>, ApiError> {
        let mut works = self.works.list(&format!("{cluster}.")).await?;
        let mut budget = SYNC_BUDGET;
        for work in &mut works {
            work.status = None;
            let size = work.manifests_size as usize;
            if work.manifests.is_some() && size <= budget {
                budget -= size;
            } else {
                work.manifests = None;
            }
        }
        Ok(works)
    }

    /// A chunk of one of `cluster`'s works' manifests.
    pub async fn chunk(
        &self,
        cluster: &ClusterName,
        request: ManifestsChunkRequest,
    ) -> Result<ManifestsChunk, ApiError> {
        names(cluster.as_str(), &request.name)?;
        let work = self
            .works
            .get(key(cluster.as_str(), &request.name))
            .await?
            .ok_or_else(|| not_found(cluster.as_str(), &request.name))?;
        if work.manifests_digest != request.digest {
            return Err(ApiError::conflict(format!(
                "work {} has changed; sync again",
                request.name
            )));
        }
        let bytes = match &work.manifests {
            Some(inline) => inline.encode_to_vec().into(),
            None => {
                let object = object_name(cluster.as_str(), &work.name, &work.manifests_digest);
                self.manifests.get(&object, &work.manifests_digest).await?
            }
        };
        let offset = usize::try_from(request.offset).unwrap_or(usize::MAX);
        Ok(ManifestsChunk {
            data: chunks::at(&bytes, offset).to_vec(),
            total_size: bytes.len() as i64,
        })
    }

    /// A status report (or the end of a deletion) from `cluster`.
    pub async fn report(
        &self,
        cluster: &ClusterName,
        report: WorkStatusReport,
    ) -> Result<WorkStatusAck, ApiError> {
        names(cluster.as_str(), &report.name)?;
        let k = key(cluster.as_str(), &report.name);
        let now = now_ms();
        let mut status = report.status.unwrap_or_default();
        status.reported_ms = now;
        let (before, after) = self
            .works
            .update(&k, |current| {
                let Some(mut work) = current else {
                    // Already forgotten: nothing to record.
                    return Ok::<_, ApiError>((Action::Keep, (None, None)));
                };
                let before = work.clone();
                if report.deleted && work.deletion_ms > 0 {
                    return Ok((Action::Delete, (Some(before), None)));
                }
                if is_stale(work.status.as_ref(), &status) {
                    // A slower spoke replica still on an older generation.
                    return Ok((Action::Keep, (None, None)));
                }
                work.status = Some(status.clone());
                Ok((
                    Action::Put(Box::new(work.clone())),
                    (Some(before), Some(work)),
                ))
            })
            .await?;
        match (before, after) {
            (Some(work), None) => {
                self.forget_manifests(&work).await;
                tracing::info!(%cluster, work = %work.name, "work deleted");
                self.emit(
                    cluster,
                    &work.name,
                    "delete",
                    ConditionStatus::True,
                    "resources removed",
                )
                .await;
            }
            (Some(before), Some(after)) => {
                let (old, new) = (applied(&before), applied(&after));
                let observed =
                    |w: &ManifestWork| w.status.as_ref().map_or(0, |s| s.observed_generation);
                if new.is_some()
                    && (old.map(|c| c.status) != new.map(|c| c.status)
                        || observed(&before) != observed(&after))
                {
                    let c = new.cloned().unwrap_or_default();
                    let message = format!("generation {}: {}", observed(&after), c.message);
                    self.emit(cluster, &after.name, "apply", c.status(), &message)
                        .await;
                }
            }
            _ => {}
        }
        Ok(WorkStatusAck {})
    }

    async fn emit(
        &self,
        cluster: &ClusterName,
        name: &str,
        action: &str,
        status: ConditionStatus,
        message: &str,
    ) {
        let ok = status == ConditionStatus::True;
        self.audit
            .emit(AuditEvent {
                actor: Identity::Spoke(cluster.clone()).to_string(),
                cluster: cluster.to_string(),
                kind: "work".into(),
                action: action.into(),
                object: format!("work/{name}"),
                outcome: if ok { "success" } else { "failure" }.into(),
                code: if ok { 200 } else { 500 },
                message: message.to_owned(),
                ..Default::default()
            })
            .await;
    }
}

/// Whether `incoming` describes an older generation than the status already stored.
fn is_stale(stored: Option<&WorkStatus>, incoming: &WorkStatus) -> bool {
    stored.is_some_and(|s| incoming.observed_generation < s.observed_generation)
}

/// The work-level `Applied` condition, if reported.
fn applied(work: &ManifestWork) -> Option<&Condition> {
    work.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == "Applied")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_older_generations_are_stale() {
        let at = |observed_generation| WorkStatus {
            observed_generation,
            ..Default::default()
        };
        assert!(!is_stale(None, &at(1)));
        assert!(
            !is_stale(Some(&at(1)), &at(1)),
            "same generation: status changes"
        );
        assert!(!is_stale(Some(&at(1)), &at(2)));
        assert!(is_stale(Some(&at(2)), &at(1)));
    }
}
