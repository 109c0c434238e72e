//! Unit tests of the subject scheme.

use super::*;

fn c(name: &str) -> ClusterName {
    ClusterName::new(name).unwrap()
}

#[test]
fn golden_subjects() {
    let s = Subjects::default();
    let alice = UserName::new("alice").unwrap();
    let golden = [
        (s.join(), "fleet.join"),
        (
            s.hub(&c("cluster1"), HubTopic::Heartbeat),
            "fleet.hub.cluster1.heartbeat",
        ),
        (
            s.hub(&c("cluster1"), HubTopic::Renew),
            "fleet.hub.cluster1.renew",
        ),
        (
            s.hub_topic_all(HubTopic::Heartbeat),
            "fleet.hub.*.heartbeat",
        ),
        (s.hub_cluster_all(&c("cluster1")), "fleet.hub.cluster1.>"),
        (s.spoke_all(&c("cluster1")), "fleet.spoke.cluster1.>"),
        (
            s.api(&alice, ApiEndpoint::ClustersList),
            "fleet.api.alice.clusters.list",
        ),
        (
            s.api(&alice, ApiEndpoint::ClustersAccept),
            "fleet.api.alice.clusters.accept",
        ),
        (
            s.api(&alice, ApiEndpoint::ClustersDeny),
            "fleet.api.alice.clusters.deny",
        ),
        (
            s.api(&alice, ApiEndpoint::ClustersDelete),
            "fleet.api.alice.clusters.delete",
        ),
        (
            s.api(&alice, ApiEndpoint::WhoAmI),
            "fleet.api.alice.identity.get",
        ),
        (
            s.api_endpoint_all(ApiEndpoint::ClustersList),
            "fleet.api.*.clusters.list",
        ),
        (s.api_user_all(&alice), "fleet.api.alice.>"),
        (s.inbox(&Identity::Hub), "_INBOX.fleet.hub"),
        (
            s.inbox(&Identity::Spoke(c("cluster1"))),
            "_INBOX.fleet.spoke.cluster1",
        ),
        (
            s.inbox_all(&Identity::User(alice.clone())),
            "_INBOX.fleet.user.alice.>",
        ),
        (
            s.inbox_all(&Identity::Bootstrap),
            "_INBOX.fleet.bootstrap.>",
        ),
        (s.clusters_bucket(), "fleet-clusters"),
        (s.works_bucket(), "fleet-works"),
        (s.manifests_store(), "fleet-manifests"),
        (s.uploads_bucket(), "fleet-uploads"),
        (
            s.hub(&c("cluster1"), HubTopic::Work),
            "fleet.hub.cluster1.work",
        ),
        (
            s.hub(&c("cluster1"), HubTopic::Manifests),
            "fleet.hub.cluster1.manifests",
        ),
        (
            s.api(&alice, ApiEndpoint::WorkCreate),
            "fleet.api.alice.work.create",
        ),
        (s.msa_bucket(), "fleet-msa"),
        (s.tokens_bucket(), "fleet-tokens"),
        (s.grants_bucket(), "fleet-grants"),
        (s.hub(&c("c1"), HubTopic::Token), "fleet.hub.c1.token"),
        (s.hub(&c("c1"), HubTopic::Sync), "fleet.hub.c1.sync"),
        (s.spoke_changed(&c("c1")), "fleet.spoke.c1.changed"),
        (s.kapi_open(&c("c1"), &alice), "fleet.kapi.c1.alice.open"),
        (s.kapi_opens(&c("c1")), "fleet.kapi.c1.*.open"),
        (s.audit("proxy", Some(&c("c1"))), "fleet.audit.proxy.c1"),
        (s.audit("api", None), "fleet.audit.api._"),
        (s.audit_all(), "fleet.audit.>"),
        (s.audit_filter(None, Some(&c("c1"))), "fleet.audit.*.c1"),
        (s.audit_filter(Some("proxy"), None), "fleet.audit.proxy.*"),
        (s.audit_stream(), "fleet-audit"),
        (
            s.kapi_stream(&c("c1"), &alice, "r1", "s1"),
            "fleet.kapi.c1.alice.s.r1.s1",
        ),
        (s.kapi_replica_all(&c("c1"), "r1"), "fleet.kapi.c1.*.s.r1.>"),
        (s.kapi_cluster_all(&c("c1")), "fleet.kapi.c1.>"),
        (s.kapi_user_all(&c("c1"), &alice), "fleet.kapi.c1.alice.>"),
        (s.kapi_user_everywhere(&alice), "fleet.kapi.*.alice.>"),
        (s.user_inboxes_all(), "_INBOX.fleet.user.>"),
        (
            s.api(&alice, ApiEndpoint::MsaCreate),
            "fleet.api.alice.msa.create",
        ),
        (
            s.api(&alice, ApiEndpoint::MsaList),
            "fleet.api.alice.msa.list",
        ),
        (
            s.api(&alice, ApiEndpoint::MsaDelete),
            "fleet.api.alice.msa.delete",
        ),
        (
            s.api(&alice, ApiEndpoint::TokenGet),
            "fleet.api.alice.token.get",
        ),
        (
            s.api(&alice, ApiEndpoint::GrantCreate),
            "fleet.api.alice.grants.create",
        ),
        (
            s.api(&alice, ApiEndpoint::GrantDelete),
            "fleet.api.alice.grants.delete",
        ),
        (
            s.api(&alice, ApiEndpoint::GrantList),
            "fleet.api.alice.grants.list",
        ),
    ];
    for (built, want) in golden {
        assert_eq!(built, want);
    }
}

#[test]
fn golden_placement_subjects() {
    let s = Subjects::default();
    let alice = UserName::new("alice").unwrap();
    let golden = [
        (s.clustersets_bucket(), "fleet-clustersets"),
        (s.placements_bucket(), "fleet-placements"),
        (s.worksets_bucket(), "fleet-worksets"),
        (
            s.api(&alice, ApiEndpoint::ClustersLabel),
            "fleet.api.alice.clusters.label",
        ),
        (
            s.api(&alice, ApiEndpoint::ClusterSetCreate),
            "fleet.api.alice.clustersets.create",
        ),
        (
            s.api(&alice, ApiEndpoint::ClusterSetList),
            "fleet.api.alice.clustersets.list",
        ),
        (
            s.api(&alice, ApiEndpoint::ClusterSetDelete),
            "fleet.api.alice.clustersets.delete",
        ),
        (
            s.api(&alice, ApiEndpoint::ClusterSetAssign),
            "fleet.api.alice.clustersets.set",
        ),
        (
            s.api(&alice, ApiEndpoint::PlacementCreate),
            "fleet.api.alice.placements.create",
        ),
        (
            s.api(&alice, ApiEndpoint::PlacementGet),
            "fleet.api.alice.placements.get",
        ),
        (
            s.api(&alice, ApiEndpoint::PlacementList),
            "fleet.api.alice.placements.list",
        ),
        (
            s.api(&alice, ApiEndpoint::PlacementDelete),
            "fleet.api.alice.placements.delete",
        ),
        (
            s.api(&alice, ApiEndpoint::WorkSetCreate),
            "fleet.api.alice.worksets.create",
        ),
        (
            s.api(&alice, ApiEndpoint::WorkSetGet),
            "fleet.api.alice.worksets.get",
        ),
        (
            s.api(&alice, ApiEndpoint::WorkSetList),
            "fleet.api.alice.worksets.list",
        ),
        (
            s.api(&alice, ApiEndpoint::WorkSetDelete),
            "fleet.api.alice.worksets.delete",
        ),
    ];
    for (built, want) in golden {
        assert_eq!(built, want);
    }
    for endpoint in ApiEndpoint::ALL {
        let (resource, _) = endpoint.tokens();
        if ["clustersets", "placements", "worksets"].contains(&resource) {
            assert!(endpoint.admin_only(), "{endpoint:?}");
        }
    }
    assert!(ApiEndpoint::ClustersLabel.admin_only());
}

#[test]
fn reads_identity_tokens() {
    let s = Subjects::new("t1").unwrap();
    assert_eq!(
        s.api_caller("t1.api.bob.clusters.list").unwrap().as_str(),
        "bob"
    );
    assert_eq!(s.hub_sender("t1.hub.c2.heartbeat").unwrap().as_str(), "c2");
    assert!(s.api_caller("fleet.api.bob.clusters.list").is_none());
    assert!(s.hub_sender("t1.hub.*.heartbeat").is_none());
    assert_eq!(
        s.inbox_user("_INBOX.t1.user.alice.abc.1").unwrap().as_str(),
        "alice"
    );
    assert!(s.inbox_user("_INBOX.t1.spoke.c1.abc").is_none());
    assert!(s.inbox_user("_INBOX.other.user.alice.x").is_none());
}

#[test]
fn tunnel_subjects_name_their_sender() {
    let s = Subjects::default();
    let alice = UserName::new("alice").unwrap();
    let open = s.kapi_open(&c("c1"), &alice);
    assert_eq!(s.kapi_open_user(&open), Some(alice.clone()));
    assert_eq!(s.kapi_open_user("fleet.kapi.c1.alice.open.x"), None);
    assert_eq!(s.kapi_open_user("fleet.kapi.c1.open"), None);
    assert_eq!(s.kapi_open_user("other.kapi.c1.alice.open"), None);
    let stream = s.kapi_stream(&c("c1"), &alice, "r1", "s1");
    assert_eq!(s.kapi_stream_parts(&stream), Some(("alice", "s1")));
    assert_eq!(s.kapi_stream_parts("fleet.kapi.c1.alice.s.r1"), None);
    assert_eq!(s.kapi_stream_parts("fleet.kapi.c1.alice.x.r1.s1"), None);
}

#[test]
fn prefix_is_one_token() {
    assert!(Subjects::new("a.b").is_err());
    assert!(Subjects::new(">").is_err());
}
