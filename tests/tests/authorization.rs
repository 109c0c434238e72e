//! nats-server itself enforces who may do what: each refusal below is the server's own
//! permissions violation or a refused connection, not a missing message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_nats::pki::Ca;
use fleetbus_nats::rpc;
use fleetbus_nats::{TlsFiles, pki};
use fleetbus_schema::v1::{
    DesiredState, JoinReply, JoinRequest, JoinStatus, ManifestsChunk, ManifestsChunkRequest,
    SyncRequest,
};
use fleetbus_schema::{ApiEndpoint, ClusterName, HubTopic, Identity, UserName, decode};
use fleetbus_tests::Fleet;
use prost::Message;

fn c(name: &str) -> ClusterName {
    ClusterName::new(name).unwrap()
}

#[tokio::test]
async fn a_spoke_is_confined_to_its_own_cluster() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    fleet.accepted_spoke("cluster1").await?;
    let tls2 = fleet.accepted_spoke("cluster2").await?;
    let s = &fleet.nats.subjects;
    let mut spoke2 = fleet
        .nats
        .observed(&tls2, &Identity::Spoke(c("cluster2")))
        .await?;

    spoke2
        .publish_allowed(s.hub(&c("cluster2"), HubTopic::Heartbeat))
        .await?;
    for subject in [
        s.hub(&c("cluster1"), HubTopic::Heartbeat),
        s.hub(&c("cluster1"), HubTopic::Renew),
        s.hub(&c("cluster1"), HubTopic::Token),
        s.hub(&c("cluster1"), HubTopic::Sync),
        s.hub(&c("cluster1"), HubTopic::Work),
        s.hub(&c("cluster1"), HubTopic::Manifests),
        s.spoke_changed(&c("cluster1")),
        s.kapi_open(&c("cluster1"), &UserName::new("admin")?),
        format!("{}.spoke.cluster1.notice", s.prefix()),
        s.api(&UserName::new("admin")?, ApiEndpoint::ClustersAccept),
        s.join(),
        format!("{}.x", s.inbox(&Identity::Spoke(c("cluster1")))),
        format!("{}.audit.join.cluster1", s.prefix()),
    ] {
        spoke2.publish_refused(subject).await?;
    }
    for subject in [
        s.spoke_all(&c("cluster1")),
        s.hub_cluster_all(&c("cluster1")),
        s.inbox_all(&Identity::Spoke(c("cluster1"))),
        s.kapi_cluster_all(&c("cluster1")),
        s.inbox_all(&Identity::Hub),
        s.api_endpoint_all(ApiEndpoint::ClustersList),
        ">".to_owned(),
    ] {
        spoke2.subscribe_refused(subject).await?;
    }

    // cluster1's work, asked for on cluster2's own subject: the hub answers for the subject's
    // cluster only, so cluster2 learns nothing about it.
    let path = fleet.nats.dir.path().join("secret.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s, namespace: default}\n",
    )?;
    let path = path.display().to_string();
    fleet
        .cli(&[
            "create",
            "work",
            "secret",
            "--cluster",
            "cluster1",
            "-f",
            &path,
        ])
        .await?;
    let ask = ManifestsChunkRequest {
        name: "secret".into(),
        ..Default::default()
    };
    let refused = rpc::call::<_, ManifestsChunk>(
        &spoke2.client,
        s.hub(&c("cluster2"), HubTopic::Manifests),
        &ask,
    )
    .await
    .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "work secret not found on cluster cluster2"
    );
    let desired: DesiredState = rpc::call(
        &spoke2.client,
        s.hub(&c("cluster2"), HubTopic::Sync),
        &SyncRequest {},
    )
    .await?;
    assert!(desired.works.is_empty());
    Ok(())
}

#[tokio::test]
async fn bootstrap_may_only_join() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let s = &fleet.nats.subjects;
    let tls = TlsFiles {
        ca: fleet.nats.pki.ca_cert(),
        cert: fleet.nats.pki.pair("bootstrap").0,
        key: fleet.nats.pki.pair("bootstrap").1,
    };
    let mut boot = fleet.nats.observed(&tls, &Identity::Bootstrap).await?;
    for subject in [
        s.hub(&c("cluster1"), HubTopic::Heartbeat),
        s.hub(&c("cluster1"), HubTopic::Renew),
        s.api(&UserName::new("admin")?, ApiEndpoint::ClustersList),
    ] {
        boot.publish_refused(subject).await?;
    }
    for subject in [
        s.spoke_all(&c("cluster1")),
        s.inbox_all(&Identity::Hub),
        format!("{}.>", s.prefix()),
    ] {
        boot.subscribe_refused(subject).await?;
    }

    // What it may do, with bad input: each answer is a clear rejection.
    let ask = |payload: Vec<u8>| {
        let client = boot.client.clone();
        let subject = s.join();
        async move {
            let msg = client.request(subject, payload.into()).await?;
            anyhow::Ok(decode::<JoinReply>(&msg.subject, &msg.payload)?)
        }
    };
    let reply = ask(vec![0xff, 0xff, 0xff]).await?;
    assert_eq!(reply.status(), JoinStatus::Rejected);
    assert!(
        reply.message.contains("undecodable JoinRequest"),
        "{}",
        reply.message
    );
    let (_key, csr) = pki::new_key_and_csr(&Identity::Spoke(c("x")))?;
    for bad in ["Cluster1", "a.b", "*", ">", &"a".repeat(64)] {
        let request = JoinRequest {
            cluster_name: bad.into(),
            claims: None,
            csr_pem: csr.clone(),
        };
        let reply = ask(request.encode_to_vec()).await?;
        assert_eq!(reply.status(), JoinStatus::Rejected, "{bad}");
        assert!(
            reply.message.contains("invalid cluster name"),
            "{}",
            reply.message
        );
    }
    let request = JoinRequest {
        cluster_name: "good".into(),
        claims: None,
        csr_pem: "not a csr".into(),
    };
    assert_eq!(
        ask(request.encode_to_vec()).await?.status(),
        JoinStatus::Rejected
    );
    Ok(())
}

#[tokio::test]
async fn a_second_key_cannot_take_an_accepted_name() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    fleet.accepted_spoke("cluster1").await?;
    let tls = TlsFiles {
        ca: fleet.nats.pki.ca_cert(),
        cert: fleet.nats.pki.pair("bootstrap").0,
        key: fleet.nats.pki.pair("bootstrap").1,
    };
    let boot = fleet.nats.connect_with(&tls, &Identity::Bootstrap).await?;
    let (_key, csr) = pki::new_key_and_csr(&Identity::Spoke(c("cluster1")))?;
    let request = JoinRequest {
        cluster_name: "cluster1".into(),
        claims: None,
        csr_pem: csr,
    };
    let msg = boot
        .request(fleet.nats.subjects.join(), request.encode_to_vec().into())
        .await?;
    let reply = decode::<JoinReply>(&msg.subject, &msg.payload)?;
    assert_eq!(reply.status(), JoinStatus::Rejected);
    assert!(
        reply.message.contains("registered with a different key"),
        "{}",
        reply.message
    );
    assert!(reply.certificate_pem.is_empty());
    Ok(())
}

#[tokio::test]
async fn connections_without_a_valid_fleet_certificate_are_refused() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let url = fleet.nats.url();
    let ca = fleet.nats.pki.ca_cert();

    // No client certificate: the TLS handshake fails.
    let none = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(ca.clone())
        .max_reconnects(Some(1))
        .connect(&url)
        .await;
    assert!(none.is_err(), "connected without a certificate");

    // A certificate from another CA, for a real identity.
    let dir = fleet.nats.dir.path().join("foreign");
    let (other, _) = Ca::generate("another CA", Duration::from_secs(3600))?;
    let admin = Identity::User(UserName::new("admin")?);
    let issued = other.issue_client(&admin, Duration::from_secs(3600))?;
    fleet
        .nats
        .pki
        .write_pair((dir.join("admin.crt"), dir.join("admin.key")), &issued)?;
    let foreign = TlsFiles {
        ca: ca.clone(),
        cert: dir.join("admin.crt"),
        key: dir.join("admin.key"),
    };
    assert!(
        fleet.nats.connect_with(&foreign, &admin).await.is_err(),
        "another CA was accepted"
    );

    // An expired certificate from the fleet CA.
    let fleet_ca = fleet.nats.pki.load_ca()?;
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let issued = fleet_ca.issue_client_window(&admin, past, Duration::from_secs(3600))?;
    fleet
        .nats
        .pki
        .write_pair((dir.join("old.crt"), dir.join("old.key")), &issued)?;
    let expired = TlsFiles {
        ca: ca.clone(),
        cert: dir.join("old.crt"),
        key: dir.join("old.key"),
    };
    assert!(
        fleet.nats.connect_with(&expired, &admin).await.is_err(),
        "an expired certificate was accepted"
    );

    // A CA-signed spoke certificate for a cluster that never joined: the callout refuses it.
    let ghost = Identity::Spoke(c("ghost"));
    let tls = fleet.nats.tls_for(&ghost)?;
    let err = fleet.nats.connect_with(&tls, &ghost).await.unwrap_err();
    assert!(
        err.to_string().contains("refused identity spoke:ghost"),
        "{err}"
    );

    // The valid admin certificate still works.
    fleet.cli(&["whoami"]).await?;
    Ok(())
}

#[tokio::test]
async fn users_need_admin_rights_for_cluster_decisions_and_see_clear_errors() -> anyhow::Result<()>
{
    let mut fleet = Fleet::start().await?;
    assert_eq!(fleet.cli_as("alice", &["whoami"]).await?, "user:alice\n");
    assert_eq!(fleet.cli(&["whoami"]).await?, "user:admin (admin)\n");
    let manifest = fleet.nats.dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
    )?;
    let manifest = manifest.display().to_string();
    for args in [
        &["accept", "c1"][..],
        &["deny", "c1"],
        &["delete", "cluster", "c1"],
        &["create", "work", "w", "--cluster", "c1", "-f", &manifest],
        &["get", "work"],
        &["delete", "work", "w", "--cluster", "c1"],
    ] {
        let err = fleet.cli_as("alice", args).await.unwrap_err();
        assert_eq!(err.to_string(), "user alice is not a hub admin");
    }
    let err = fleet.cli(&["accept", "nobody"]).await.unwrap_err();
    assert_eq!(err.to_string(), "cluster nobody has not asked to join");
    let err = fleet.cli(&["accept", "Bad.Name"]).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid cluster name \"Bad.Name\""),
        "{err}"
    );

    let alice = Identity::User(UserName::new("alice")?);
    let mut user = fleet
        .nats
        .observed(&fleet.nats.tls_for(&alice)?, &alice)
        .await?;
    let s = fleet.nats.subjects.clone();
    user.publish_refused(s.api(&UserName::new("admin")?, ApiEndpoint::ClustersAccept))
        .await?;
    user.subscribe_refused(s.hub_topic_all(HubTopic::Heartbeat))
        .await?;

    // No hub: one clear line, not a hang.
    fleet.hub.take().unwrap().stop().await?;
    let started = std::time::Instant::now();
    let err = fleet.cli(&["get", "clusters"]).await.unwrap_err();
    let line = err.to_string();
    assert!(
        line.contains("no hub is running") || line.contains("is fleetbus-hub running?"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    Ok(())
}
