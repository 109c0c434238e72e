//! What an audit event says a hub API call was about, read from its request.

use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{
    ClusterNames, CreateWorkRequest, Grant, ManagedServiceAccount, MsaListRequest, MsaRef,
    WorkListRequest, WorkRef,
};
use prost::Message;

/// `(cluster, object)` of a call; undecodable requests are described as such.
pub fn describe(endpoint: ApiEndpoint, payload: &[u8]) -> (String, String) {
    let undecodable = || (String::new(), "undecodable request".to_owned());
    match endpoint {
        ApiEndpoint::ClustersAccept | ApiEndpoint::ClustersDeny | ApiEndpoint::ClustersDelete => {
            let Ok(names) = ClusterNames::decode(payload) else {
                return undecodable();
            };
            let cluster = if names.names.len() == 1 {
                names.names[0].clone()
            } else {
                String::new()
            };
            (cluster, format!("cluster/{}", names.names.join(",")))
        }
        ApiEndpoint::MsaCreate => {
            let Ok(msa) = ManagedServiceAccount::decode(payload) else {
                return undecodable();
            };
            (msa.cluster, format!("msa/{}", msa.name))
        }
        ApiEndpoint::MsaDelete | ApiEndpoint::TokenGet => {
            let Ok(r) = MsaRef::decode(payload) else {
                return undecodable();
            };
            (r.cluster, format!("msa/{}", r.name))
        }
        ApiEndpoint::GrantCreate | ApiEndpoint::GrantDelete => {
            let Ok(g) = Grant::decode(payload) else {
                return undecodable();
            };
            (g.cluster, format!("grant/{}/{}", g.user, g.msa))
        }
        ApiEndpoint::MsaList => {
            let cluster = MsaListRequest::decode(payload)
                .map(|r| r.cluster)
                .unwrap_or_default();
            (cluster, "msa".into())
        }
        ApiEndpoint::ClustersList => (String::new(), "cluster".into()),
        ApiEndpoint::GrantList => (String::new(), "grant".into()),
        ApiEndpoint::CredentialsList => (String::new(), "credential".into()),
        ApiEndpoint::WhoAmI => (String::new(), "identity".into()),
        ApiEndpoint::WorkCreate => {
            let Ok(r) = CreateWorkRequest::decode(payload) else {
                return undecodable();
            };
            let work = r.work.unwrap_or_default();
            (work.cluster, format!("work/{}", work.name))
        }
        ApiEndpoint::WorkGet | ApiEndpoint::WorkDelete => {
            let Ok(r) = WorkRef::decode(payload) else {
                return undecodable();
            };
            (r.cluster, format!("work/{}", r.name))
        }
        ApiEndpoint::WorkList => {
            let cluster = WorkListRequest::decode(payload)
                .map(|r| r.cluster)
                .unwrap_or_default();
            (cluster, "work".into())
        }
        ApiEndpoint::WorkUpload => (String::new(), "work-upload".into()),
        ApiEndpoint::ClustersLabel
        | ApiEndpoint::ClusterSetCreate
        | ApiEndpoint::ClusterSetList
        | ApiEndpoint::ClusterSetDelete
        | ApiEndpoint::ClusterSetAssign
        | ApiEndpoint::PlacementCreate
        | ApiEndpoint::PlacementGet
        | ApiEndpoint::PlacementList
        | ApiEndpoint::PlacementDelete
        | ApiEndpoint::WorkSetCreate
        | ApiEndpoint::WorkSetGet
        | ApiEndpoint::WorkSetList
        | ApiEndpoint::WorkSetDelete => crate::placement_api::describe(endpoint, payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_name_what_was_touched() {
        let names = ClusterNames {
            names: vec!["c1".into()],
        }
        .encode_to_vec();
        assert_eq!(
            describe(ApiEndpoint::ClustersAccept, &names),
            ("c1".into(), "cluster/c1".into())
        );
        let r = MsaRef {
            cluster: "c1".into(),
            name: "dep".into(),
        }
        .encode_to_vec();
        assert_eq!(
            describe(ApiEndpoint::TokenGet, &r),
            ("c1".into(), "msa/dep".into())
        );
        assert_eq!(
            describe(ApiEndpoint::MsaDelete, &[0xff, 0xff]).1,
            "undecodable request"
        );
    }
}
