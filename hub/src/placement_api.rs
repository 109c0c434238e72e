//! The hub API endpoints of cluster sets, cluster labels, Placements and
//! ManifestWorkReplicaSets (all admin-only, like works), and what their audit events name.

use fleetbus_schema::v1::{
    ClusterLabelRequest, ClusterSetAssignment, CreatePlacementRequest, CreateWorkSetRequest, Empty,
    ObjectRef,
};
use fleetbus_schema::{ApiEndpoint, DecodeError, UserName, decode};
use prost::Message;

use crate::error::ApiError;
use crate::placement::PlacementService;

fn bad(e: DecodeError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

impl PlacementService {
    /// Answers one call to an endpoint of this service.
    pub async fn dispatch(
        &self,
        endpoint: ApiEndpoint,
        caller: &UserName,
        subject: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, ApiError> {
        let name = || {
            decode::<ObjectRef>(subject, payload)
                .map(|r| r.name)
                .map_err(bad)
        };
        let who = caller.as_str();
        Ok(match endpoint {
            ApiEndpoint::ClustersLabel => {
                let request = decode::<ClusterLabelRequest>(subject, payload).map_err(bad)?;
                self.label(request).await?.encode_to_vec()
            }
            ApiEndpoint::ClusterSetCreate => self.create_set(who, &name()?).await?.encode_to_vec(),
            ApiEndpoint::ClusterSetList => self.list_sets().await?.encode_to_vec(),
            ApiEndpoint::ClusterSetDelete => {
                self.delete_set(&name()?).await?;
                Empty {}.encode_to_vec()
            }
            ApiEndpoint::ClusterSetAssign => {
                let request = decode::<ClusterSetAssignment>(subject, payload).map_err(bad)?;
                self.assign(request).await?.encode_to_vec()
            }
            ApiEndpoint::PlacementCreate => {
                let request = decode::<CreatePlacementRequest>(subject, payload).map_err(bad)?;
                self.create_placement(who, request).await?.encode_to_vec()
            }
            ApiEndpoint::PlacementGet => self.get_placement(&name()?).await?.encode_to_vec(),
            ApiEndpoint::PlacementList => self.list_placements().await?.encode_to_vec(),
            ApiEndpoint::PlacementDelete => {
                self.delete_placement(&name()?).await?;
                Empty {}.encode_to_vec()
            }
            ApiEndpoint::WorkSetCreate => {
                let request = decode::<CreateWorkSetRequest>(subject, payload).map_err(bad)?;
                self.create_workset(who, request).await?.encode_to_vec()
            }
            ApiEndpoint::WorkSetGet => self.get_workset(&name()?).await?.encode_to_vec(),
            ApiEndpoint::WorkSetList => self.list_worksets().await?.encode_to_vec(),
            ApiEndpoint::WorkSetDelete => self.delete_workset(&name()?).await?.encode_to_vec(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{} is not a placement endpoint",
                    other.name()
                )));
            }
        })
    }
}

/// `(cluster, object)` of a call to one of these endpoints, for its audit event.
pub fn describe(endpoint: ApiEndpoint, payload: &[u8]) -> (String, String) {
    let named = |kind: &str| match ObjectRef::decode(payload) {
        Ok(r) if !r.name.is_empty() => format!("{kind}/{}", r.name),
        _ => kind.to_owned(),
    };
    match endpoint {
        ApiEndpoint::ClustersLabel => match ClusterLabelRequest::decode(payload) {
            Ok(r) => (r.cluster.clone(), format!("cluster/{}", r.cluster)),
            Err(_) => (String::new(), "undecodable request".into()),
        },
        ApiEndpoint::ClusterSetAssign => match ClusterSetAssignment::decode(payload) {
            Ok(r) => {
                let cluster = match r.clusters.as_slice() {
                    [one] => one.clone(),
                    _ => String::new(),
                };
                (cluster, format!("clusterset/{}", r.cluster_set))
            }
            Err(_) => (String::new(), "undecodable request".into()),
        },
        ApiEndpoint::PlacementCreate => match CreatePlacementRequest::decode(payload) {
            Ok(r) => (
                String::new(),
                format!("placement/{}", r.placement.unwrap_or_default().name),
            ),
            Err(_) => (String::new(), "undecodable request".into()),
        },
        ApiEndpoint::WorkSetCreate => match CreateWorkSetRequest::decode(payload) {
            Ok(r) => (
                String::new(),
                format!("workset/{}", r.work_set.unwrap_or_default().name),
            ),
            Err(_) => (String::new(), "undecodable request".into()),
        },
        ApiEndpoint::ClusterSetCreate | ApiEndpoint::ClusterSetDelete => {
            (String::new(), named("clusterset"))
        }
        ApiEndpoint::ClusterSetList => (String::new(), "clusterset".into()),
        ApiEndpoint::PlacementGet | ApiEndpoint::PlacementDelete => {
            (String::new(), named("placement"))
        }
        ApiEndpoint::PlacementList => (String::new(), "placement".into()),
        ApiEndpoint::WorkSetGet | ApiEndpoint::WorkSetDelete => (String::new(), named("workset")),
        ApiEndpoint::WorkSetList => (String::new(), "workset".into()),
        _ => (String::new(), String::new()),
    }
}
