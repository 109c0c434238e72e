//! The ManifestWorks a ManifestWorkReplicaSet generates: one per selected cluster, named like
//! the set, marked with the set and placement (OCM's labels), carrying the set's template at a
//! set generation. They are ordinary works to the spoke; only the set changes or removes them.

use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::{ManifestWork, WorkSet, WorkStatus};

use crate::error::ApiError;
use crate::store::Action;
use crate::work::{WorkService, key, same_spec};

/// What releasing a cluster did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// The work now carries the set's generation.
    Written,
    /// It already did.
    Unchanged,
    /// Its previous work is still being removed; try again later.
    Waiting,
}

impl WorkService {
    /// Gives `cluster` the set's current generation, creating or updating its work. A work of
    /// the same name that the set did not generate is left alone (a conflict).
    pub(crate) async fn release(
        &self,
        cluster: &str,
        set: &WorkSet,
        placement: &str,
        now_ms: i64,
    ) -> Result<Released, ApiError> {
        let cluster_name =
            ClusterName::new(cluster).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let template = set.template.clone().unwrap_or_default();
        let wanted = ManifestWork {
            name: set.name.clone(),
            cluster: cluster.to_owned(),
            delete_option: template.delete_option,
            manifest_configs: template.manifest_configs,
            manifests_digest: template.manifests_digest,
            manifests_size: template.manifests_size,
            manifest_count: template.manifest_count,
            manifests: template.manifests,
            manifests_object: template.manifests_object,
            created_by: set.created_by.clone(),
            work_set: set.name.clone(),
            placement: placement.to_owned(),
            work_set_generation: set.generation,
            updated_ms: now_ms,
            ..Default::default()
        };
        let k = key(cluster, &set.name);
        // Most releases are of clusters the mirror says have no such work: create directly.
        if self.works.peek(&k, |w| w.is_none()) == Some(true) {
            let fresh = ManifestWork {
                generation: 1,
                created_ms: now_ms,
                status: Some(WorkStatus::default()),
                ..wanted.clone()
            };
            if self.works.create(&k, &fresh).await? {
                self.notify(&cluster_name).await;
                return Ok(Released::Written);
            }
        }
        let released = self
            .works
            .update(&k, |current| {
                let mut next = wanted.clone();
                match current {
                    None => {
                        next.generation = 1;
                        next.created_ms = now_ms;
                        next.status = Some(WorkStatus::default());
                    }
                    Some(old) if old.work_set != set.name => {
                        return Err(ApiError::conflict(format!(
                            "cluster {cluster} already has a work named {} that this ManifestWorkReplicaSet did not create",
                            set.name
                        )));
                    }
                    Some(old) if old.deletion_ms > 0 => {
                        return Ok((Action::Keep, Released::Waiting));
                    }
                    Some(old) if old.work_set_generation >= set.generation => {
                        return Ok((Action::Keep, Released::Unchanged));
                    }
                    Some(old) => {
                        next.generation = old.generation + i64::from(!same_spec(&old, &next));
                        next.created_ms = old.created_ms;
                        next.status = old.status;
                    }
                }
                Ok((Action::Put(Box::new(next)), Released::Written))
            })
            .await?;
        if released == Released::Written {
            self.notify(&cluster_name).await;
        }
        Ok(released)
    }

    /// Removes the set's work from `cluster` as its deleteOption says.
    pub(crate) async fn withdraw(&self, cluster: &str, set: &str) -> Result<(), ApiError> {
        match self.remove(cluster, set, set).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
