//! Hub API messages: each request as the hub decodes it, describes it for its audit event and
//! validates it; each reply as the CLI decodes and shows it. Input: a selector byte
//! (`fleetbus_tests::fuzz_input::api_from`), then the payload.

#![no_main]

use fleetbus_cli::{clusters, msa, work};
use fleetbus_hub::{msa_spec, page, work_spec};
use fleetbus_schema::v1::*;
use fleetbus_schema::{ApiEndpoint as E, ClusterName, UserName, manifests};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match fleetbus_tests::fuzz_input::api_from(selector) {
        (endpoint, false) => request(endpoint, payload),
        (endpoint, true) => reply(endpoint, payload),
    }
});

fn request(endpoint: E, payload: &[u8]) {
    let _ = fleetbus_hub::audit_object::describe(endpoint, payload);
    match endpoint {
        E::WhoAmI => drop(WhoAmIRequest::decode(payload)),
        E::GrantList | E::CredentialsList => drop(Empty::decode(payload)),
        E::ClustersList => {
            if let Ok(r) = ListClustersRequest::decode(payload) {
                page::limit(r.limit);
            }
        }
        E::ClustersAccept | E::ClustersDeny | E::ClustersDelete => {
            for name in ClusterNames::decode(payload)
                .map(|r| r.names)
                .unwrap_or_default()
            {
                let _ = ClusterName::new(name);
            }
        }
        E::MsaCreate => {
            if let Ok(m) = ManagedServiceAccount::decode(payload) {
                let _ = msa_spec::validate(m);
            }
        }
        E::MsaList => drop(MsaListRequest::decode(payload)),
        E::MsaDelete | E::TokenGet => {
            if let Ok(r) = MsaRef::decode(payload) {
                let _ = msa_spec::names(&r.cluster, &r.name);
            }
        }
        E::GrantCreate | E::GrantDelete => {
            if let Ok(g) = Grant::decode(payload) {
                let _ = msa_spec::names(&g.cluster, &g.msa);
                let _ = UserName::new(g.user);
            }
        }
        E::WorkCreate => {
            if let Ok(r) = CreateWorkRequest::decode(payload) {
                let _ = work_spec::validate(&r.work.unwrap_or_default());
                let encoded = r.manifests.unwrap_or_default().encode_to_vec();
                if let Ok(m) = work_spec::validate_manifests(&encoded) {
                    manifests::digest(&m);
                }
            }
        }
        E::WorkUpload => {
            // What the hub joins from uploaded chunks is checked like inline manifests.
            if let Ok(chunk) = UploadChunk::decode(payload)
                && let Ok(m) = work_spec::validate_manifests(&chunk.data)
            {
                assert_eq!(
                    manifests::digest(&m),
                    manifests::digest_bytes(&manifests::canonical(&m))
                );
            }
        }
        E::WorkGet | E::WorkDelete => {
            if let Ok(r) = WorkRef::decode(payload) {
                let _ = work_spec::names(&r.cluster, &r.name);
            }
        }
        E::WorkList => {
            if let Ok(r) = WorkListRequest::decode(payload) {
                let _ = ClusterName::new(r.cluster);
                page::limit(r.limit);
            }
        }
        E::ClustersLabel => drop(ClusterLabelRequest::decode(payload)),
        E::ClusterSetAssign => drop(ClusterSetAssignment::decode(payload)),
        E::PlacementCreate => drop(CreatePlacementRequest::decode(payload)),
        E::WorkSetCreate => drop(CreateWorkSetRequest::decode(payload)),
        E::ClusterSetCreate
        | E::ClusterSetDelete
        | E::PlacementGet
        | E::PlacementDelete
        | E::WorkSetGet
        | E::WorkSetDelete => drop(ObjectRef::decode(payload)),
        E::ClusterSetList | E::PlacementList | E::WorkSetList => drop(Empty::decode(payload)),
    }
}

fn reply(endpoint: E, payload: &[u8]) {
    let now = 1_700_000_000_000;
    match endpoint {
        E::WhoAmI => drop(WhoAmIReply::decode(payload)),
        E::ClustersList => {
            if let Ok(list) = ClusterList::decode(payload) {
                for c in &list.items {
                    clusters::row(c, now);
                }
                let _ = serde_json::to_string(&clusters::as_list(&list));
            }
        }
        E::ClustersAccept | E::ClustersDeny | E::ClustersDelete => {
            drop(ClusterNames::decode(payload))
        }
        E::MsaCreate => drop(ManagedServiceAccount::decode(payload)),
        E::MsaList => {
            if let Ok(list) = MsaList::decode(payload) {
                let items: Vec<&ManagedServiceAccount> = list.items.iter().collect();
                let _ = serde_json::to_string(&msa::as_list(&items));
            }
        }
        E::TokenGet => {
            if let Ok(token) = TokenReply::decode(payload) {
                msa::kubeconfig("cluster1", "user", &token);
            }
        }
        E::GrantCreate => drop(Grant::decode(payload)),
        E::GrantList => drop(GrantList::decode(payload)),
        E::CredentialsList => drop(CredentialList::decode(payload)),
        E::MsaDelete | E::GrantDelete | E::WorkUpload => drop(Empty::decode(payload)),
        E::WorkCreate | E::WorkGet | E::WorkDelete => {
            if let Ok(w) = ManifestWork::decode(payload) {
                let _ = serde_json::to_string(&work::shape::work(&w));
                work::progress(&w);
            }
        }
        E::WorkList => {
            if let Ok(list) = WorkList::decode(payload) {
                let _ = serde_json::to_string(&work::shape::list(&list.items));
            }
        }
        E::ClustersLabel => drop(Cluster::decode(payload)),
        E::ClusterSetCreate => drop(ClusterSet::decode(payload)),
        E::ClusterSetList => drop(ClusterSetList::decode(payload)),
        E::ClusterSetDelete | E::PlacementDelete => drop(Empty::decode(payload)),
        E::ClusterSetAssign => drop(ClusterNames::decode(payload)),
        E::PlacementCreate | E::PlacementGet => drop(Placement::decode(payload)),
        E::PlacementList => drop(PlacementList::decode(payload)),
        E::WorkSetCreate | E::WorkSetGet | E::WorkSetDelete => drop(WorkSet::decode(payload)),
        E::WorkSetList => drop(WorkSetList::decode(payload)),
    }
}
