//! ManifestWorkReplicaSets (OCM work v1alpha1) on the hub: create or update one (its template
//! checked like a work, every placement ref existing, every rollout strategy valid), read one
//! with its rollout per cluster, list them, and delete one (the controller removes every work
//! it generated, then the set).

use std::collections::HashSet;

use bytes::Bytes;
use fleetbus_schema::names::validate_label;
use fleetbus_schema::v1::{
    CreateWorkSetRequest, ManifestWork, WorkSet, WorkSetList, WorkSetStatus,
};
use prost::Message;

use crate::error::ApiError;
use crate::placement::{PlacementService, not_found};
use crate::placement_spec::validate_strategy;
use crate::registration::now_ms;
use crate::store::Action;
use crate::work::{INLINE_BYTES, same_spec};
use crate::work_spec::{validate_configs, validate_manifests};
use fleetbus_schema::manifests::{canonical, digest_bytes};

/// Rows of `ClusterRollout` a `workset.get` reply carries at most.
const MAX_ROWS: usize = 1000;

/// The Object Store object holding a set's large manifests, shared by its works. Cluster
/// names cannot start with `_`, so it never meets a work's own object.
pub(crate) fn set_object(name: &str, digest: &str) -> String {
    format!("_set.{name}.{digest}")
}

impl PlacementService {
    /// Creates a ManifestWorkReplicaSet, or with `overwrite` updates it: a changed template is
    /// a new generation, rolled out with each placement ref's strategy.
    pub async fn create_workset(
        &self,
        caller: &str,
        request: CreateWorkSetRequest,
    ) -> Result<WorkSet, ApiError> {
        let requested = request.work_set.unwrap_or_default();
        let name = requested.name.clone();
        validate_label("work name", &name).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if requested.placement_refs.is_empty() {
            return Err(ApiError::bad_request(
                "a ManifestWorkReplicaSet needs at least one placementRef (--placement NAME)",
            ));
        }
        let mut seen = HashSet::new();
        for (i, r) in requested.placement_refs.iter().enumerate() {
            validate_label("placement name", &r.name)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if !seen.insert(r.name.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "placementRefs[{i}]: placement {} is listed twice",
                    r.name
                )));
            }
            let strategy = r.rollout_strategy.clone().unwrap_or_default();
            validate_strategy(&format!("placement {}", r.name), &strategy)?;
            if self.placements.get(&r.name).await?.is_none() {
                return Err(not_found("placement", &r.name));
            }
        }
        let template = requested.template.clone().unwrap_or_default();
        validate_configs(&template.manifest_configs)?;
        let uploaded: Bytes = if request.upload_id.is_empty() {
            request.manifests.unwrap_or_default().encode_to_vec().into()
        } else {
            self.works
                .manifests
                .take_upload(caller, &request.upload_id, request.upload_chunks)
                .await?
        };
        let manifests = validate_manifests(&uploaded)?;
        // Stored, sent and hashed in canonical form, as single works are (`work.rs`).
        let encoded: Bytes = canonical(&manifests).into();
        drop(uploaded);
        let inline = encoded.len() <= INLINE_BYTES;
        let sum = digest_bytes(&encoded);
        let template = ManifestWork {
            name: name.clone(),
            delete_option: template.delete_option,
            manifest_configs: template.manifest_configs,
            manifests_size: encoded.len() as i64,
            manifest_count: manifests.objects.len() as i32,
            manifests: inline.then_some(manifests),
            manifests_object: if inline {
                String::new()
            } else {
                set_object(&name, &sum)
            },
            manifests_digest: sum,
            ..Default::default()
        };
        if let Some(old) = self.worksets.get(&name).await? {
            may_replace(&old, request.overwrite)?;
        }
        if !inline {
            self.works
                .manifests
                .put(&template.manifests_object, encoded)
                .await?;
        }
        let now = now_ms();
        let refs = requested.placement_refs;
        self.worksets
            .update(&name, |current| {
                let mut next = WorkSet {
                    name: name.clone(),
                    template: Some(template.clone()),
                    placement_refs: refs.clone(),
                    updated_ms: now,
                    ..Default::default()
                };
                match current {
                    Some(old) => {
                        may_replace(&old, request.overwrite)?;
                        let same = old
                            .template
                            .as_ref()
                            .is_some_and(|t| same_spec(t, &template));
                        if same && old.placement_refs == refs {
                            return Ok((Action::Keep, old));
                        }
                        next.generation = old.generation + i64::from(!same);
                        next.created_ms = old.created_ms;
                        next.created_by = old.created_by;
                        next.status = old.status;
                        if same {
                            next.template = old.template;
                        }
                    }
                    None => {
                        next.generation = 1;
                        next.created_ms = now;
                        next.created_by = caller.to_owned();
                        next.status = Some(WorkSetStatus::default());
                    }
                }
                Ok::<_, ApiError>((Action::Put(Box::new(next.clone())), next))
            })
            .await
    }

    /// One set with its rollout per cluster (unfinished clusters first).
    pub async fn get_workset(&self, name: &str) -> Result<WorkSet, ApiError> {
        let mut set = self
            .worksets
            .get(name)
            .await?
            .ok_or_else(|| not_found("ManifestWorkReplicaSet", name))?;
        let mut rows = crate::workset_status::rollout_rows(self, &set, now_ms());
        rows.sort_by_key(|r| {
            let rank = match r.status.as_str() {
                "Failed" | "TimeOut" => 0,
                "Progressing" | "Removing" => 1,
                "ToApply" => 2,
                _ => 3,
            };
            (rank, r.group_index, r.cluster.clone())
        });
        set.clusters_omitted = rows.len().saturating_sub(MAX_ROWS) as i32;
        rows.truncate(MAX_ROWS);
        set.clusters = rows;
        Ok(set)
    }

    /// Every set, without manifests or per-cluster rows.
    pub async fn list_worksets(&self) -> Result<WorkSetList, ApiError> {
        let mut items = self.worksets.list("").await?;
        for set in &mut items {
            if let Some(t) = &mut set.template {
                t.manifests = None;
            }
        }
        Ok(WorkSetList { items })
    }

    /// Marks a set deleted; the controller removes every work it generated, then the set.
    pub async fn delete_workset(&self, name: &str) -> Result<WorkSet, ApiError> {
        let now = now_ms();
        self.worksets
            .update(name, |current| match current {
                None => Err(not_found("ManifestWorkReplicaSet", name)),
                Some(mut set) => {
                    if set.deletion_ms == 0 {
                        set.deletion_ms = now;
                    }
                    let stored = Box::new(set.clone());
                    if let Some(t) = &mut set.template {
                        t.manifests = None;
                    }
                    Ok((Action::Put(stored), set))
                }
            })
            .await
    }
}

fn may_replace(old: &WorkSet, overwrite: bool) -> Result<(), ApiError> {
    if old.deletion_ms > 0 {
        return Err(ApiError::conflict(format!(
            "ManifestWorkReplicaSet {} is being deleted",
            old.name
        )));
    }
    if !overwrite {
        return Err(ApiError::conflict(format!(
            "ManifestWorkReplicaSet {} already exists; use --overwrite to update it",
            old.name
        )));
    }
    Ok(())
}
