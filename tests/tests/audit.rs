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
use prost::Message;

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

/// The hub's log lines for the API call with request id `id`.
fn hub_lines_with(id: &str) -> Vec<String> {
    fleetbus_tests::captured_logs()
        .lines()
        .filter(|l| l.contains(&format!("request_id={id}")))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_request_id_is_in_the_hubs_log_lines_and_the_audit_event() -> anyhow::Result<()> {
    use fleetbus_schema::headers::REQUEST_ID;
    use fleetbus_schema::v1::{WhoAmIReply, WhoAmIRequest};

    let fleet = Fleet::start().await?;
    fleet.accepted_spoke("c1").await?;

    // Given on the command line.
    fleet
        .cli(&["deny", "c1", "--request-id", "cli-req-0001"])
        .await?;
    // Made by the CLI and printed by -v.
    let out = fleet.command_as("admin", &["whoami", "-v"]).output()?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "{stderr}");
    let printed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("identity-get: request id "))
        .unwrap_or_else(|| panic!("no request id in {stderr:?}"))
        .to_owned();
    assert_eq!(printed.len(), 32, "{printed}");

    let all = eventually("both events", Duration::from_secs(10), || async {
        let all = events(&fleet).await.ok()?;
        let has = |id: &str| all.iter().any(|(_, e)| e.request_id == id);
        (has("cli-req-0001") && has(&printed)).then_some(all)
    })
    .await?;
    for (id, ce_type, line) in [
        (
            "cli-req-0001",
            "io.fleetbus.cluster.deny",
            "cluster decision",
        ),
        (printed.as_str(), "io.fleetbus.api.whoami", "api call"),
    ] {
        let types: Vec<&str> = all
            .iter()
            .filter(|(_, e)| e.request_id == id)
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(types, [ce_type], "{id}");
        let lines = hub_lines_with(id);
        assert!(
            lines.iter().any(|l| l.contains(line) && l.contains("api{")),
            "no {line:?} line with {id} in {lines:#?}"
        );
    }
    let deny = hub_lines_with("cli-req-0001");
    assert!(deny.iter().all(|l| l.contains("cluster=c1")), "{deny:#?}");

    // A malformed id is never logged nor audited: the hub uses a fresh one.
    let client = fleetbus_cli::hub_client::HubClient::connect(&fleet.flags_for("admin")?).await?;
    let subject = fleet.nats.subjects.api(
        &UserName::new("admin")?,
        fleetbus_schema::ApiEndpoint::WhoAmI,
    );
    for bad in ["two words", "quote\"d", &"x".repeat(65)] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(REQUEST_ID, bad);
        let reply = client
            .nats()
            .request_with_headers(
                subject.clone(),
                headers,
                WhoAmIRequest {}.encode_to_vec().into(),
            )
            .await?;
        let me = WhoAmIReply::decode(reply.payload.as_ref())?;
        assert!(me.admin);
        assert!(
            !fleetbus_tests::captured_logs().contains(bad),
            "{bad} logged"
        );
    }
    let whoamis = eventually(
        "three more whoami events",
        Duration::from_secs(10),
        || async {
            let all = events(&fleet).await.ok()?;
            let ids: Vec<String> = all
                .into_iter()
                .filter(|(t, _)| t == "io.fleetbus.api.whoami")
                .map(|(_, e)| e.request_id)
                .collect();
            (ids.len() >= 5).then_some(ids)
        },
    )
    .await?;
    for id in &whoamis {
        assert!(fleetbus_schema::RequestId::new(id).is_ok(), "{id:?}");
    }
    Ok(())
}
