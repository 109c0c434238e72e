//! Registration end to end on real servers: join → pending → accept → available, availability
//! when a spoke stops or falls silent, hub restarts, deny, delete, and certificate rotation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::{Duration, Instant};

use fleetbus_nats::pki;
use fleetbus_schema::v1::{Acceptance, ConditionStatus, Heartbeat};
use fleetbus_schema::{ClusterName, HubTopic, Identity};
use fleetbus_tests::{Fleet, eventually};
use prost::Message;

const WAIT: Duration = Duration::from_secs(20);

async fn wait_registered(fleet: &Fleet, name: &str) -> anyhow::Result<()> {
    eventually(&format!("{name} pending"), WAIT, || async {
        fleet
            .cluster(name)
            .await
            .ok()?
            .filter(|c| c.acceptance() == Acceptance::Pending)
            .map(|_| ())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_accept_available_then_unknown_when_the_spoke_stops() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let spoke = fleet.start_spoke(fleet.spoke_config("cluster1", Some(&kube))?);

    wait_registered(&fleet, "cluster1").await?;
    let table = fleet.cli(&["get", "clusters"]).await?;
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.contains("cluster1") && table.contains("pending"),
        "{table}"
    );

    assert_eq!(
        fleet.cli(&["accept", "cluster1"]).await?,
        "cluster cluster1 accepted\n"
    );
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;
    let cluster = fleet.cluster("cluster1").await?.unwrap();
    let claims = cluster.claims.clone().unwrap();
    assert!(claims.kube_version.starts_with("v1."), "{claims:?}");
    assert_eq!(claims.labels["env"], "test");
    let types: Vec<&str> = cluster
        .conditions
        .iter()
        .map(|c| c.r#type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "HubAcceptedManagedCluster",
            "ManagedClusterJoined",
            "ManagedClusterConditionAvailable"
        ]
    );
    let table = fleet.cli(&["get", "clusters"]).await?;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cluster1") && l.contains(" true ") && l.contains(" True ")),
        "{table}"
    );
    let yaml = fleet.cli(&["get", "clusters", "-o", "yaml"]).await?;
    assert!(
        yaml.contains("hubAcceptsClient: true") && yaml.contains("reason: ManagedClusterAvailable"),
        "{yaml}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&fleet.cli(&["get", "clusters", "-o", "json"]).await?)?;
    assert_eq!(json["items"][0]["metadata"]["name"], "cluster1");

    // The spoke's certificate is in its state folder, for its own key only.
    let state = fleet.nats.dir.path().join("spokes/cluster1/state");
    let info = pki::inspect(&std::fs::read_to_string(state.join("tls.crt"))?)?;
    assert_eq!(
        info.identity,
        Some(Identity::Spoke(ClusterName::new("cluster1")?))
    );

    let stopped = Instant::now();
    spoke.stop().await?;
    fleet
        .wait_available("cluster1", ConditionStatus::Unknown, Duration::from_secs(5))
        .await?;
    println!("Unknown {:?} after the spoke stopped", stopped.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_silent_spoke_becomes_unknown_within_five_seconds() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    // With an unreachable apiserver the spoke reports itself, but not ready.
    let spoke = fleet
        .join(fleet.spoke_config("quiet", None)?, ConditionStatus::False)
        .await?;
    spoke.stop().await?;

    // The same identity connects and sends one heartbeat, then stays connected but silent.
    let state = fleet.nats.dir.path().join("spokes/quiet/state");
    let tls = fleetbus_nats::TlsFiles {
        ca: fleet.nats.pki.ca_cert(),
        cert: state.join("tls.crt"),
        key: state.join("tls.key"),
    };
    let id = Identity::Spoke(ClusterName::new("quiet")?);
    let client = fleet.nats.connect_with(&tls, &id).await?;
    let beat = Heartbeat {
        kube_ready: true,
        ..Default::default()
    };
    let subject = fleet
        .nats
        .subjects
        .hub(&ClusterName::new("quiet")?, HubTopic::Heartbeat);
    client.publish(subject, beat.encode_to_vec().into()).await?;
    client.flush().await?;
    fleet
        .wait_available("quiet", ConditionStatus::True, WAIT)
        .await?;
    fleet
        .wait_available("quiet", ConditionStatus::Unknown, Duration::from_secs(5))
        .await?;
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    Ok(())
}

#[tokio::test]
async fn hub_restart_keeps_accepted_clusters_and_two_hubs_share_state() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    let _spoke = fleet
        .join(fleet.spoke_config("c1", None)?, ConditionStatus::False)
        .await?;

    fleet.hub.take().unwrap().stop().await?;
    let first = fleet.start_hub(fleet.hub_config());
    let second = fleet.start_hub(fleet.hub_config());
    fleet.wait_for_hub().await?;
    let cluster = fleet.cluster("c1").await?.unwrap();
    assert_eq!(cluster.acceptance(), Acceptance::Accepted);
    fleet
        .wait_available("c1", ConditionStatus::False, WAIT)
        .await?;

    // Both replicas serve; a second spoke registers and is accepted through whichever answers.
    let _spoke2 = fleet.start_spoke(fleet.spoke_config("c2", None)?);
    wait_registered(&fleet, "c2").await?;
    fleet.cli(&["accept", "c2"]).await?;
    first.stop().await?;
    fleet
        .wait_available("c2", ConditionStatus::False, WAIT)
        .await?;
    let names: Vec<String> = fleet
        .clusters()
        .await?
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["c1", "c2"]);
    second.stop().await?;
    Ok(())
}

#[tokio::test]
async fn deny_and_delete_revoke_access() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let _spoke = fleet
        .join(fleet.spoke_config("c1", None)?, ConditionStatus::False)
        .await?;
    let state = fleet.nats.dir.path().join("spokes/c1/state");
    let tls = fleetbus_nats::TlsFiles {
        ca: fleet.nats.pki.ca_cert(),
        cert: state.join("tls.crt"),
        key: state.join("tls.key"),
    };
    let id = Identity::Spoke(ClusterName::new("c1")?);
    let old_cert = std::fs::read(&tls.cert)?;
    assert!(fleet.nats.connect_with(&tls, &id).await.is_ok());

    // Delete: the identity stops working at once, and the spoke asks to join again.
    assert_eq!(
        fleet.cli(&["delete", "cluster", "c1"]).await?,
        "cluster c1 deleted\n"
    );
    std::fs::write(state.join("old.crt"), &old_cert)?;
    let old = fleetbus_nats::TlsFiles {
        cert: state.join("old.crt"),
        ..tls.clone()
    };
    let refused = fleet.nats.connect_with(&old, &id).await.unwrap_err();
    assert!(
        refused.to_string().contains("refused identity spoke:c1"),
        "{refused}"
    );
    wait_registered(&fleet, "c1").await?;

    // Deny: an accepted cluster loses access; the table says so.
    fleet.cli(&["accept", "c1"]).await?;
    fleet
        .wait_available("c1", ConditionStatus::False, WAIT)
        .await?;
    assert_eq!(fleet.cli(&["deny", "c1"]).await?, "cluster c1 denied\n");
    let cluster = fleet.cluster("c1").await?.unwrap();
    assert_eq!(cluster.acceptance(), Acceptance::Denied);
    let table = fleet.cli(&["get", "clusters"]).await?;
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("c1") && l.contains(" false ")),
        "{table}"
    );
    eventually("spoke c1 cut off", WAIT, || async {
        let c = fleet.cluster("c1").await.ok()??;
        c.conditions
            .iter()
            .all(|x| x.r#type != "ManagedClusterConditionAvailable")
            .then_some(())
    })
    .await?;
    let refused = fleet.nats.connect_with(&old, &id).await.unwrap_err();
    assert!(refused.to_string().contains("refused"), "{refused}");
    Ok(())
}

#[tokio::test]
async fn spoke_rotates_its_certificate_without_restart() -> anyhow::Result<()> {
    let fleet = Fleet::start_with(|c| c.spoke_cert_validity = Duration::from_secs(8)).await?;
    let spoke = fleet
        .join(fleet.spoke_config("c1", None)?, ConditionStatus::False)
        .await?;
    let cert = fleet.nats.dir.path().join("spokes/c1/state/tls.crt");
    let first = pki::inspect(&std::fs::read_to_string(&cert)?)?;
    // Renewal is due at 77 % of 8 s; wait for two generations to be sure it keeps going.
    let mut seen = vec![first.serial.clone()];
    eventually("two certificate rotations", Duration::from_secs(20), || {
        let latest = std::fs::read_to_string(&cert)
            .ok()
            .and_then(|p| pki::inspect(&p).ok());
        if let Some(info) = latest
            && !seen.contains(&info.serial)
        {
            assert_ne!(
                info.key_fingerprint, first.key_fingerprint,
                "rotation must change the key"
            );
            seen.push(info.serial);
        }
        let done = seen.len() >= 3;
        async move { done.then_some(()) }
    })
    .await?;
    // Still the same running spoke, still connected: the first certificate has long expired.
    assert!(!spoke.is_finished());
    fleet
        .wait_available("c1", ConditionStatus::False, Duration::from_secs(5))
        .await?;
    Ok(())
}

/// A renewal a crash interrupted leaves the new key beside the old, still valid certificate.
/// The files are made from a real renewal (the hub signed the new key and keeps it), then set
/// back to what a crash between the two writes leaves; the spoke starts again and recovers on
/// its own: a staged certificate is moved into place, and without one it joins again with the
/// key and collects the renewed certificate.
#[tokio::test]
async fn a_spoke_recovers_from_an_interrupted_renewal() -> anyhow::Result<()> {
    let fleet = Fleet::start_with(|c| c.spoke_cert_validity = Duration::from_secs(120)).await?;
    let mut config = fleet.spoke_config("c1", None)?;
    let state = config.state_dir.clone();
    let (key, cert) = (state.join("tls.key"), state.join("tls.crt"));
    let id = Identity::Spoke(ClusterName::new("c1")?);
    for staged in [true, false] {
        // Renew after 10 % of the lifetime: the old certificate stays valid for long after.
        config.renew_fraction = 0.1;
        let spoke = if std::fs::metadata(&cert).is_ok() {
            fleet.start_spoke(config.clone())
        } else {
            fleet.join(config.clone(), ConditionStatus::False).await?
        };
        let old_cert = std::fs::read_to_string(&cert)?;
        let old = pki::inspect(&old_cert)?;
        let new_cert = eventually("a renewal", Duration::from_secs(40), || async {
            let pem = std::fs::read_to_string(&cert).ok()?;
            (pki::inspect(&pem).ok()?.serial != old.serial).then_some(pem)
        })
        .await?;
        spoke.stop().await?;
        // The crash: the new key is in place, the old certificate still beside it.
        std::fs::write(&cert, &old_cert)?;
        if staged {
            std::fs::write(state.join("tls.crt.next"), &new_cert)?;
        }
        let tls = fleetbus_nats::TlsFiles {
            ca: fleet.nats.pki.ca_cert(),
            cert: cert.clone(),
            key: key.clone(),
        };
        assert!(
            fleet.nats.connect_with(&tls, &id).await.is_err(),
            "a mismatched pair cannot connect"
        );

        // Rotate no more, so that the certificate the spoke ends up with is the renewed one.
        config.renew_fraction = 0.99;
        let connected = fleetbus_tests::captured_logs()
            .matches("connected with the cluster identity")
            .count();
        let spoke = fleet.start_spoke(config.clone());
        eventually("the spoke connected again", WAIT, || async {
            let now = fleetbus_tests::captured_logs()
                .matches("connected with the cluster identity")
                .count();
            (now > connected).then_some(())
        })
        .await?;
        assert_eq!(std::fs::read_to_string(&cert)?, new_cert);
        assert!(!state.join("tls.crt.next").exists());
        assert!(fleet.nats.connect_with(&tls, &id).await.is_ok());
        let logs = fleetbus_tests::captured_logs();
        let line = if staged {
            "finished a certificate renewal that was interrupted"
        } else {
            "do not belong together (an interrupted renewal?); joining again with the key"
        };
        assert!(logs.contains(line), "{logs}");
        assert_eq!(
            fleet.cluster("c1").await?.unwrap().acceptance(),
            Acceptance::Accepted,
            "no admin was needed"
        );
        spoke.stop().await?;
    }
    Ok(())
}
