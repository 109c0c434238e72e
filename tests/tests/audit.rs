//! Audit events on real servers: one CloudEvent per action, readable by an auditor that knows
//! only the subject and the schema, kept across restarts, never deletable, never forgeable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use async_nats::jetstream;
use fleetbus_nats::audit;
use fleetbus_schema::v1::AuditEvent;
use fleetbus_schema::{ClusterName, Identity, UserName};
use fleetbus_tests::audit::events;
use fleetbus_tests::{Fleet, eventually};

/// Every event in the stream, read as an auditor with nothing but async-nats and the schema.
fn count(events: &[(String, AuditEvent)], ce_type: &str) -> usize {
    events.iter().filter(|(t, _)| t == ce_type).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_is_exactly_one_event_and_events_survive_restarts() -> anyhow::Result<()> {
    let mut fleet = Fleet::start().await?;
    fleet.accepted_spoke("c1").await?;
    fleet.cli(&["whoami"]).await?;
    let _ = fleet.cli_as("bob", &["deny", "c1"]).await.unwrap_err();
    fleet.cli(&["deny", "c1"]).await?;
    fleet.cli(&["delete", "cluster", "c1"]).await?;

    let all = eventually("the events", Duration::from_secs(10), || async {
        let all = events(&fleet).await.ok()?;
        (count(&all, "io.fleetbus.cluster.delete") == 1).then_some(all)
    })
    .await?;
    for (ce_type, n) in [
        ("io.fleetbus.join.request", 2), // the first registration, and the re-join after delete
        ("io.fleetbus.cluster.accept", 1),
        ("io.fleetbus.cert.issue", 1),
        ("io.fleetbus.api.whoami", 2), // the harness's readiness check and ours
        ("io.fleetbus.cluster.deny", 2), // bob's refused attempt and the admin's
        ("io.fleetbus.cluster.delete", 1),
    ] {
        let got = count(&all, ce_type);
        // The spoke re-joins after the delete; allow that join to have happened or not yet.
        if ce_type == "io.fleetbus.join.request" {
            assert!((1..=2).contains(&got), "{ce_type}: {got}");
        } else {
            assert_eq!(got, n, "{ce_type}");
        }
    }
    let (_, accept) = all
        .iter()
        .find(|(t, _)| t == "io.fleetbus.cluster.accept")
        .unwrap();
    assert_eq!(
        (
            accept.actor.as_str(),
            accept.cluster.as_str(),
            accept.object.as_str()
        ),
        ("user:admin", "c1", "cluster/c1")
    );
    assert_eq!((accept.outcome.as_str(), accept.code), ("success", 200));
    let denied: Vec<_> = all
        .iter()
        .filter(|(t, e)| t == "io.fleetbus.cluster.deny" && e.outcome == "denied")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].1.actor, "user:bob");

    // Kept across a hub restart and a nats-server restart.
    let before = all.len();
    fleet.hub.take().unwrap().stop().await?;
    fleet.nats.server.restart()?;
    fleet.hub = Some(fleet.start_hub(fleet.hub_config()));
    fleet.wait_for_hub().await?;
    let after = events(&fleet).await?;
    assert!(after.len() >= before, "{} < {before}", after.len());
    assert_eq!(count(&after, "io.fleetbus.cluster.accept"), 1);

    // Deleting or purging events is refused by the stream itself, even for the hub.
    let hub = fleet.nats.connect_as(&Identity::Hub).await?;
    let js = jetstream::new(hub);
    let mut stream = js.get_stream(fleet.nats.subjects.audit_stream()).await?;
    assert!(stream.purge().await.is_err(), "purge allowed");
    assert!(stream.delete_message(1).await.is_err(), "delete allowed");
    let info = stream.info().await?;
    assert!(info.config.deny_delete && info.config.deny_purge);
    Ok(())
}

#[tokio::test]
async fn auditors_only_read_and_spokes_cannot_forge() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    fleet.accepted_spoke("c1").await?;
    let tls2 = fleet.accepted_spoke("c2").await?;
    let s = fleet.nats.subjects.clone();
    let c1 = ClusterName::new("c1")?;

    let auditor = Identity::Auditor(UserName::new("audit")?);
    let mut observed = fleet
        .nats
        .observed(&fleet.nats.tls_for(&auditor)?, &auditor)
        .await?;
    observed
        .publish_refused(s.audit("proxy", Some(&c1)))
        .await?;
    observed
        .publish_refused(s.api(
            &UserName::new("audit")?,
            fleetbus_schema::ApiEndpoint::ClustersList,
        ))
        .await?;
    observed
        .publish_refused(format!("$JS.API.STREAM.PURGE.{}", s.audit_stream()))
        .await?;
    observed
        .publish_refused(format!("$JS.API.STREAM.DELETE.{}", s.audit_stream()))
        .await?;
    observed.subscribe_refused(s.audit_all()).await?;
    observed.subscribe_refused(s.kapi_cluster_all(&c1)).await?;

    let mut spoke2 = fleet
        .nats
        .observed(&tls2, &Identity::Spoke(ClusterName::new("c2")?))
        .await?;
    spoke2.publish_refused(s.audit("proxy", Some(&c1))).await?;
    spoke2.publish_refused(s.audit("cluster", None)).await?;
    spoke2
        .publish_allowed(s.audit("proxy", Some(&ClusterName::new("c2")?)))
        .await?;

    // `audit tail` as the auditor, filtered by type; a garbage event is shown and skipped.
    spoke2.client.flush().await?;
    let flags = fleet.flags_for("admin")?;
    let tail = |extra: &[&str]| {
        let tls = fleet.nats.tls_for(&auditor).unwrap();
        let mut args = vec!["fleetbus".to_owned(), "audit".into(), "tail".into()];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args.extend([
            "--nats-url".into(),
            flags.nats_url.clone(),
            "--ca".into(),
            flags.ca.display().to_string(),
            "--cert".into(),
            tls.cert.display().to_string(),
            "--key".into(),
            tls.key.display().to_string(),
            "--subject-prefix".into(),
            flags.subject_prefix.clone(),
        ]);
        args
    };
    let run = |args: Vec<String>| async move {
        let cli = <fleetbus_cli::cli::Cli as clap::Parser>::try_parse_from(args).unwrap();
        let mut out = Vec::new();
        fleetbus_cli::run(cli, &mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    };
    let accepted = run(tail(&["--type", "cluster.accept"])).await;
    assert_eq!(accepted.lines().count(), 2, "{accepted}");
    assert!(
        accepted
            .lines()
            .all(|l| l.contains("cluster.accept  user:admin")),
        "{accepted}"
    );
    let garbage = run(tail(&["--cluster", "c2", "--type", "proxy"])).await;
    assert!(garbage.contains("undecodable"), "{garbage}");
    let json = run(tail(&["--type", "cluster", "-o", "json", "--limit", "1"])).await;
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap())?;
    assert_eq!(first["type"], "io.fleetbus.cluster.list");
    Ok(())
}

#[tokio::test]
async fn the_hub_api_is_a_discoverable_micro_service() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let hub = fleet.nats.connect_as(&Identity::Hub).await?;
    let info = hub.request("$SRV.INFO.fleetbus-hub", "".into()).await?;
    let info: serde_json::Value = serde_json::from_slice(&info.payload)?;
    assert_eq!(info["name"], "fleetbus-hub");
    let subjects: Vec<String> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        subjects.contains(&format!(
            "{}.api.*.clusters.accept",
            fleet.nats.subjects.prefix()
        )),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&format!("{}.api.*.token.get", fleet.nats.subjects.prefix())),
        "{subjects:?}"
    );
    let stats = hub.request("$SRV.STATS.fleetbus-hub", "".into()).await?;
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload)?;
    assert!(
        stats["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "identity-get" && e["num_requests"].as_u64() >= Some(1))
    );
    let _ = audit::CE_TYPE;
    Ok(())
}
