//! The scale path: hub and spoke on a 3-node NATS cluster with JetStream replicas 3. One node
//! is killed; registrations, tokens and grants survive and new tokens still flow.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_schema::v1::{Acceptance, ConditionStatus};
use fleetbus_tests::{Fleet, NatsEnv, eventually};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_a_node_and_nothing_else() -> anyhow::Result<()> {
    let nats = NatsEnv::start_cluster(3)?;
    let mut fleet = Fleet::start_on(nats, |c| c.replicas = 3).await?;
    let kube = fleet.kube("cluster1").await?;
    let _spoke = fleet
        .join(
            fleet.spoke_config("cluster1", Some(&kube))?,
            ConditionStatus::True,
        )
        .await?;
    fleet
        .cli(&["create", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    let token = fleet.reported_token("dep", "cluster1").await?;
    fleet
        .cli(&["grant", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;

    // The first node goes away; clients fail over to the others. JetStream elects new
    // leaders for the streams it led, so reads may fail for a moment: nothing may be lost.
    fleet.nats.server.kill();
    let cluster = eventually("the hub answering after the node loss", WAIT, || async {
        fleet.cluster("cluster1").await.ok().flatten()
    })
    .await?;
    assert_eq!(cluster.acceptance(), Acceptance::Accepted);
    let after = eventually(
        "alice reading the token after the node loss",
        WAIT,
        || async {
            fleet
                .cli_as("alice", &["get", "token", "dep", "--cluster", "cluster1"])
                .await
                .ok()
        },
    )
    .await?;
    assert_eq!(after.trim(), token);
    let grants = eventually("grants after the node loss", WAIT, || async {
        fleet.cli(&["get", "grants"]).await.ok()
    })
    .await?;
    assert!(grants.contains("alice"), "{grants}");

    // New work still flows: another MSA gets its token from the spoke.
    eventually("creating dep2", WAIT, || async {
        match fleet
            .cli(&["create", "msa", "dep2", "--cluster", "cluster1"])
            .await
        {
            Ok(_) => Some(()),
            // A retry after a reply lost in the failover.
            Err(e) if e.to_string().contains("already exists") => Some(()),
            Err(_) => None,
        }
    })
    .await?;
    // After the node loss.
    fleet.reported_token("dep2", "cluster1").await?;
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;
    fleet.hub.take().unwrap().stop().await?;
    Ok(())
}
