//! Cluster sets (OCM ManagedClusterSet with exclusive label membership) and cluster labels:
//! `create clusterset`, `clusterset set C… --clusterset S`, `get clustersets`, `label cluster`.

use std::collections::HashMap;

use fleetbus_schema::ClusterName;
use fleetbus_schema::names::validate_label;
use fleetbus_schema::v1::{
    Cluster, ClusterLabelRequest, ClusterNames, ClusterRecord, ClusterSet, ClusterSetAssignment,
    ClusterSetList,
};

use crate::cluster_labels::{self, CLUSTERSET_LABEL, cluster_set};
use crate::error::ApiError;
use crate::placement::{PlacementService, not_found};
use crate::registration::{not_registered, now_ms};
use crate::store::Action;

impl PlacementService {
    /// The hub API's view of a cluster (as `clusters.list` shows it).
    pub fn cluster_view(&self, record: ClusterRecord) -> Cluster {
        Cluster {
            conditions: self.liveness.conditions(&record),
            claims: Some(cluster_labels::shown_claims(&record)),
            name: record.name,
            acceptance: record.acceptance,
            created_ms: record.created_ms,
            certificate_not_after_ms: record.certificate_not_after_ms,
        }
    }

    /// Creates an empty cluster set.
    pub async fn create_set(&self, caller: &str, name: &str) -> Result<ClusterSet, ApiError> {
        validate_label("cluster set name", name)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let set = ClusterSet {
            name: name.to_owned(),
            created_ms: now_ms(),
            created_by: caller.to_owned(),
            cluster_count: 0,
        };
        self.clustersets
            .update(name, |current| match current {
                Some(_) => Err(ApiError::conflict(format!(
                    "clusterset {name} already exists"
                ))),
                None => Ok((Action::Put(Box::new(set.clone())), set.clone())),
            })
            .await
    }

    async fn set_sizes(&self) -> Result<HashMap<String, Vec<String>>, ApiError> {
        let mut members: HashMap<String, Vec<String>> = HashMap::new();
        for record in self.clusters.list("").await? {
            if let Some(set) = cluster_set(&record) {
                members
                    .entry(set.to_owned())
                    .or_default()
                    .push(record.name.clone());
            }
        }
        Ok(members)
    }

    /// Every cluster set with how many clusters it has.
    pub async fn list_sets(&self) -> Result<ClusterSetList, ApiError> {
        let sizes = self.set_sizes().await?;
        let mut items = self.clustersets.list("").await?;
        for set in &mut items {
            set.cluster_count = sizes.get(&set.name).map_or(0, |m| m.len() as i32);
        }
        Ok(ClusterSetList { items })
    }

    /// Deletes a cluster set that has no clusters and that no placement uses.
    pub async fn delete_set(&self, name: &str) -> Result<(), ApiError> {
        if self.clustersets.get(name).await?.is_none() {
            return Err(not_found("clusterset", name));
        }
        let users: Vec<String> = self
            .placements
            .list("")
            .await?
            .into_iter()
            .filter(|p| p.cluster_sets.iter().any(|s| s == name))
            .map(|p| p.name)
            .collect();
        if !users.is_empty() {
            return Err(ApiError::conflict(format!(
                "clusterset {name} is used by placement {}",
                users.join(", ")
            )));
        }
        if let Some(members) = self.set_sizes().await?.get(name) {
            return Err(ApiError::conflict(format!(
                "clusterset {name} still has {} clusters ({}); move them to another set first",
                members.len(),
                members.join(", ")
            )));
        }
        self.clustersets
            .update(name, |current| match current {
                None => Err(not_found("clusterset", name)),
                Some(_) => Ok((Action::Delete, ())),
            })
            .await
    }

    /// Puts every named cluster into `cluster_set` (out of any other set). All names are
    /// checked before any cluster changes.
    pub async fn assign(&self, request: ClusterSetAssignment) -> Result<ClusterNames, ApiError> {
        let set = request.cluster_set.as_str();
        validate_label("cluster set name", set)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if request.clusters.is_empty() {
            return Err(ApiError::bad_request("no cluster names given"));
        }
        if self.clustersets.get(set).await?.is_none() {
            return Err(not_found("clusterset", set));
        }
        let mut names = Vec::new();
        for raw in &request.clusters {
            let name =
                ClusterName::new(raw.as_str()).map_err(|e| ApiError::bad_request(e.to_string()))?;
            if self.clusters.get(&name).await?.is_none() {
                return Err(not_registered(&name));
            }
            names.push(name);
        }
        for name in &names {
            self.clusters
                .update(name, |current| {
                    let mut record = current.ok_or_else(|| not_registered(name))?;
                    if cluster_set(&record) == Some(set) {
                        return Ok::<_, ApiError>((Action::Keep, ()));
                    }
                    record
                        .admin_labels
                        .insert(CLUSTERSET_LABEL.to_owned(), set.to_owned());
                    Ok((Action::Put(Box::new(record)), ()))
                })
                .await?;
        }
        Ok(ClusterNames {
            names: names.iter().map(ToString::to_string).collect(),
        })
    }

    /// `label cluster`: sets and removes labels; the reply is the cluster.
    pub async fn label(&self, request: ClusterLabelRequest) -> Result<Cluster, ApiError> {
        let name = cluster_labels::validate(&request)?;
        let record = cluster_labels::label(&self.clusters, &name, &request).await?;
        Ok(self.cluster_view(record))
    }
}
