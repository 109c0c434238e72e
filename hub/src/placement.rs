//! Placements, cluster sets and ManifestWorkReplicaSets on the hub: their records in JetStream
//! KV (mirrored in memory like every hub bucket), the API operations on them, and the state the
//! controller (`placement_controller`) reads. Placement CRUD is here; cluster sets and labels
//! are in `clusterset`, work sets in `workset`.

use std::sync::Arc;

use async_nats::jetstream;
use fleetbus_nats::audit::Auditor;
use fleetbus_schema::Subjects;
use fleetbus_schema::v1::{
    ClusterSet, CreatePlacementRequest, Placement, PlacementList, PlacementStatus, WorkSet,
};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::liveness::Liveness;
use crate::placement_spec::validate_placement;
use crate::registration::now_ms;
use crate::store::{Action, Bucket, ClusterStore, StoreError};
use crate::work::WorkService;

/// Placements, cluster sets and work sets.
#[derive(Clone)]
pub struct PlacementService {
    /// Cluster sets by name.
    pub clustersets: Bucket<ClusterSet>,
    /// Placements with their decisions, by name.
    pub placements: Bucket<Placement>,
    /// ManifestWorkReplicaSets with their rollout status, by name.
    pub worksets: Bucket<WorkSet>,
    /// Cluster records.
    pub clusters: ClusterStore,
    /// The works a set generates.
    pub works: WorkService,
    /// Availability (cluster taints).
    pub liveness: Arc<Liveness>,
    /// Audit events.
    pub audit: Auditor,
}

/// Parts of the hub the service works with.
pub struct Parts {
    /// Cluster records.
    pub clusters: ClusterStore,
    /// Works.
    pub works: WorkService,
    /// Availability.
    pub liveness: Arc<Liveness>,
    /// Audit events.
    pub audit: Auditor,
}

pub(crate) fn not_found(kind: &str, name: &str) -> ApiError {
    let hint = match kind {
        "clusterset" => format!("; create it with `fleetbus create clusterset {name}`"),
        "placement" => format!("; create it with `fleetbus create placement {name}`"),
        _ => String::new(),
    };
    ApiError::not_found(format!("{kind} {name} not found{hint}"))
}

/// A Placement's spec alone, to compare versions.
fn spec(p: &Placement) -> Placement {
    Placement {
        name: p.name.clone(),
        cluster_sets: p.cluster_sets.clone(),
        predicates: p.predicates.clone(),
        number_of_clusters: p.number_of_clusters,
        tolerations: p.tolerations.clone(),
        group_strategy: p.group_strategy.clone(),
        ..Default::default()
    }
}

/// A placement for lists: group sizes without the cluster names.
pub(crate) fn without_clusters(mut p: Placement) -> Placement {
    if let Some(status) = &mut p.status {
        for g in &mut status.decision_groups {
            g.clusters.clear();
        }
    }
    p
}

impl PlacementService {
    /// Opens (or creates) the three buckets and starts mirroring them until `shutdown`.
    pub async fn open(
        js: &jetstream::Context,
        subjects: &Subjects,
        replicas: usize,
        shutdown: &CancellationToken,
        parts: Parts,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            clustersets: Bucket::open(js, &subjects.clustersets_bucket(), replicas, shutdown)
                .await?,
            placements: Bucket::open(js, &subjects.placements_bucket(), replicas, shutdown).await?,
            worksets: Bucket::open(js, &subjects.worksets_bucket(), replicas, shutdown).await?,
            clusters: parts.clusters,
            works: parts.works,
            liveness: parts.liveness,
            audit: parts.audit,
        })
    }

    /// Creates a Placement, or with `overwrite` updates it; decisions follow at once.
    pub async fn create_placement(
        &self,
        caller: &str,
        request: CreatePlacementRequest,
    ) -> Result<Placement, ApiError> {
        let wanted = spec(&request.placement.unwrap_or_default());
        validate_placement(&wanted)?;
        for set in &wanted.cluster_sets {
            if self.clustersets.get(set).await?.is_none() {
                return Err(not_found("clusterset", set));
            }
        }
        let now = now_ms();
        let name = wanted.name.clone();
        self.placements
            .update(&name, |current| match current {
                Some(_) if !request.overwrite => Err(ApiError::conflict(format!(
                    "placement {name} already exists; use --overwrite to update it"
                ))),
                Some(old) if spec(&old) == wanted => Ok((Action::Keep, old)),
                Some(old) => {
                    let next = Placement {
                        generation: old.generation + 1,
                        created_ms: old.created_ms,
                        created_by: old.created_by.clone(),
                        updated_ms: now,
                        status: old.status,
                        ..wanted.clone()
                    };
                    Ok((Action::Put(Box::new(next.clone())), next))
                }
                None => {
                    let next = Placement {
                        generation: 1,
                        created_ms: now,
                        created_by: caller.to_owned(),
                        updated_ms: now,
                        status: Some(PlacementStatus::default()),
                        ..wanted.clone()
                    };
                    Ok((Action::Put(Box::new(next.clone())), next))
                }
            })
            .await
    }

    /// One Placement with its decisions.
    pub async fn get_placement(&self, name: &str) -> Result<Placement, ApiError> {
        self.placements
            .get(name)
            .await?
            .ok_or_else(|| not_found("placement", name))
    }

    /// Every Placement, with group sizes but not the clusters.
    pub async fn list_placements(&self) -> Result<PlacementList, ApiError> {
        let items = self.placements.list("").await?;
        Ok(PlacementList {
            items: items.into_iter().map(without_clusters).collect(),
        })
    }

    /// Deletes a Placement that no work set uses.
    pub async fn delete_placement(&self, name: &str) -> Result<(), ApiError> {
        if self.placements.get(name).await?.is_none() {
            return Err(not_found("placement", name));
        }
        let users: Vec<String> = self
            .worksets
            .list("")
            .await?
            .into_iter()
            .filter(|s| s.placement_refs.iter().any(|r| r.name == name))
            .map(|s| s.name)
            .collect();
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "placement {name} is used by ManifestWorkReplicaSet {}; delete that first",
                users.join(", ")
            )));
        }
        self.placements
            .update(name, |current| match current {
                None => Err(not_found("placement", name)),
                Some(_) => Ok((Action::Delete, ())),
            })
            .await
    }
}
