//! Durable audit subscribers: an auditor keeps a named durable subscription (the hub's
//! `durable.open`) with explicit acks; stopped it misses nothing, restarted it resumes after its
//! last ack, and sees every event exactly once. Auditors cannot remove or rewrite events, and
//! cannot reach each other's subscriptions.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fleetbus_cli::hub_client::HubClient;
use fleetbus_nats::rpc;
use fleetbus_schema::v1::{
    AuditDurable, DurableRef, Empty, OpenDurableRequest, WhoAmIReply, WhoAmIRequest,
};
use fleetbus_schema::{ApiEndpoint, AuditorEndpoint, Identity, UserName};
use fleetbus_tests::Fleet;
use serde_json::Value;

const RUN: Duration = Duration::from_secs(120);

/// `n` hub API calls by the admin: `n` events `io.fleetbus.api.whoami`.
async fn produce(fleet: &Fleet, n: usize) -> anyhow::Result<()> {
    let admin = HubClient::connect(&fleet.flags_for("admin")?).await?;
    for _ in 0..n {
        let _: WhoAmIReply = admin.call(ApiEndpoint::WhoAmI, &WhoAmIRequest {}).await?;
    }
    Ok(())
}

/// Runs the Python durable subscriber until it has been idle for a while; its events' ce-ids.
async fn python_durable(
    fleet: &Fleet,
    auditor: &Identity,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let filter = format!("{}.audit.api.*", fleet.nats.subjects.prefix());
    let run = fleet
        .run_example(
            auditor,
            "audit_subscriber.py",
            &["--durable", name, "--filter", &filter, "--idle", "3"],
            RUN,
        )
        .await?;
    anyhow::ensure!(run.ok, "subscriber failed: {}", run.stderr);
    Ok(run
        .json_lines()?
        .iter()
        .map(|l| {
            assert_eq!(l["type"], "io.fleetbus.api.whoami", "{l}");
            assert!(l["seq"].as_u64().unwrap() > 0);
            l["id"].as_str().unwrap().to_owned()
        })
        .collect())
}

fn distinct(ids: &[String]) -> HashSet<String> {
    let set: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(set.len(), ids.len(), "an event came twice");
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_durable_subscriber_misses_nothing_and_sees_each_event_once() -> anyhow::Result<()>
{
    let fleet = Fleet::start().await?;
    let siem = Identity::Auditor(UserName::new("siem")?);

    // The first run creates the subscription and takes what is there (the harness's whoami).
    let first = distinct(&python_durable(&fleet, &siem, "main").await?);
    assert!(!first.is_empty());
    // The CLI's own durable subscription, by another name.
    let tail = |extra: &'static [&'static str]| {
        let fleet = &fleet;
        async move {
            let mut args = vec![
                "audit",
                "tail",
                "--durable",
                "cli",
                "--type",
                "api",
                "-o",
                "json",
                "--limit",
                "100000",
            ];
            args.extend_from_slice(extra);
            fleet.cli_as_auditor("siem", &args).await
        }
    };
    let cli_first = tail(&[]).await?;
    assert_eq!(cli_first.lines().count(), first.len(), "{cli_first}");

    // Stopped, 1,000 events happen.
    produce(&fleet, 1000).await?;

    // Restarted, each of them arrives exactly once, and none of before.
    let second = distinct(&python_durable(&fleet, &siem, "main").await?);
    assert_eq!(second.len(), 1000);
    assert!(first.is_disjoint(&second));
    let cli_second: Vec<String> = tail(&[])
        .await?
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(distinct(&cli_second), second, "the CLI saw the same 1,000");

    // Nothing new: a third run gets nothing.
    assert!(python_durable(&fleet, &siem, "main").await?.is_empty());
    assert_eq!(tail(&[]).await?, "");

    // Forgotten, the name starts over from the oldest event.
    let deleted = fleet
        .cli_as_auditor("siem", &["audit", "delete-durable", "cli"])
        .await?;
    assert_eq!(deleted, "durable subscription cli deleted\n");
    assert_eq!(tail(&[]).await?.lines().count(), first.len() + 1000);
    Ok(())
}

async fn open(
    client: &async_nats::Client,
    fleet: &Fleet,
    auditor: &str,
    name: &str,
) -> anyhow::Result<AuditDurable> {
    let subject = fleet
        .nats
        .subjects
        .auditor_api(&UserName::new(auditor)?, AuditorEndpoint::DurableOpen);
    let request = OpenDurableRequest {
        name: name.into(),
        ..Default::default()
    };
    Ok(rpc::call(client, subject, &request).await?)
}

#[tokio::test]
async fn auditors_cannot_remove_events_nor_reach_each_others_subscriptions() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let s = fleet.nats.subjects.clone();
    let stream = s.audit_stream();
    let (a, b) = (
        Identity::Auditor(UserName::new("a")?),
        Identity::Auditor(UserName::new("b")?),
    );
    let a_client = fleet.nats.connect_as(&a).await?;
    let mine = open(&a_client, &fleet, "a", "siem").await?;
    assert!(mine.created);
    assert_eq!(mine.consumer.len(), 32);
    assert!(
        mine.deliver_subject.starts_with(&s.inbox(&a)),
        "{}",
        mine.deliver_subject
    );
    assert!(
        !open(&a_client, &fleet, "a", "siem").await?.created,
        "opened again, not created"
    );

    let mut other = fleet.nats.observed(&fleet.nats.tls_for(&b)?, &b).await?;
    // The same name is another auditor's own subscription.
    let theirs = open(&other.client, &fleet, "b", "siem").await?;
    assert!(theirs.created);
    assert_ne!(theirs.consumer, mine.consumer);
    // Nothing that removes or rewrites events, lists consumers or calls as another auditor.
    for subject in [
        format!("$JS.API.STREAM.PURGE.{stream}"),
        format!("$JS.API.STREAM.DELETE.{stream}"),
        format!("$JS.API.STREAM.MSG.DELETE.{stream}"),
        format!("$JS.API.STREAM.UPDATE.{stream}"),
        format!("$JS.API.STREAM.CREATE.{stream}"),
        format!("$JS.API.CONSUMER.LIST.{stream}"),
        format!("$JS.API.CONSUMER.NAMES.{stream}"),
        "$JS.API.STREAM.NAMES".to_owned(),
        s.auditor_api(&UserName::new("a")?, AuditorEndpoint::DurableOpen),
        s.auditor_api(&UserName::new("a")?, AuditorEndpoint::DurableDelete),
        s.audit("api", None),
    ] {
        other.publish_refused(subject).await?;
    }
    other
        .subscribe_refused(mine.deliver_subject.clone())
        .await?;
    // Deleting its own "siem" leaves a's alone.
    let subject = s.auditor_api(&UserName::new("b")?, AuditorEndpoint::DurableDelete);
    let _: Empty = rpc::call(
        &other.client,
        subject.clone(),
        &DurableRef {
            name: "siem".into(),
        },
    )
    .await?;
    let again: Result<Empty, _> = rpc::call(
        &other.client,
        subject,
        &DurableRef {
            name: "siem".into(),
        },
    )
    .await;
    assert!(
        matches!(again, Err(rpc::RpcError::Refused { code: 404, .. })),
        "{again:?}"
    );
    let still = open(&a_client, &fleet, "a", "siem").await?;
    assert!(!still.created);
    assert_eq!(still.consumer, mine.consumer);

    // Bad requests: a name that is not a label, a filter outside the audit stream.
    let subject = s.auditor_api(&UserName::new("a")?, AuditorEndpoint::DurableOpen);
    for request in [
        OpenDurableRequest {
            name: "Not A Label".into(),
            ..Default::default()
        },
        OpenDurableRequest {
            name: "x".into(),
            filter: format!("{}.api.>", s.prefix()),
            ..Default::default()
        },
    ] {
        let refused: Result<AuditDurable, _> =
            rpc::call(&a_client, subject.clone(), &request).await;
        assert!(
            matches!(refused, Err(rpc::RpcError::Refused { code: 400, .. })),
            "{refused:?}"
        );
    }
    // The same name with another filter is a conflict, not a silent change.
    let changed = OpenDurableRequest {
        name: "siem".into(),
        filter: s.audit_filter(Some("proxy"), None),
        ..Default::default()
    };
    let refused: Result<AuditDurable, _> = rpc::call(&a_client, subject, &changed).await;
    assert!(
        matches!(refused, Err(rpc::RpcError::Refused { code: 409, .. })),
        "{refused:?}"
    );

    // Users, spokes and bootstrap cannot call auditor endpoints; bootstrap cannot discover.
    let bob = Identity::User(UserName::new("bob")?);
    let mut bob = fleet
        .nats
        .observed(&fleet.nats.tls_for(&bob)?, &bob)
        .await?;
    bob.publish_refused(s.auditor_api(&UserName::new("a")?, AuditorEndpoint::DurableOpen))
        .await?;
    let mut boot = fleet
        .nats
        .observed(&fleet.nats.pki.tls("bootstrap"), &Identity::Bootstrap)
        .await?;
    boot.publish_refused("$SRV.PING".into()).await?;
    boot.publish_refused(s.auditor_api(&UserName::new("a")?, AuditorEndpoint::DurableOpen))
        .await?;
    Ok(())
}

#[tokio::test]
async fn reading_the_audit_stream_as_a_user_fails_at_once_with_a_clear_message()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    for args in [
        &["audit", "tail"][..],
        &["audit", "tail", "--durable", "x", "-f"],
        &["audit", "delete-durable", "x"],
    ] {
        let started = Instant::now();
        let err = fleet.cli(args).await.unwrap_err().to_string();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{args:?} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            err,
            "user:admin may not read the audit stream; that needs an auditor identity (fleetbus certs auditor NAME, then --cert/--key or FLEETBUS_CERT/FLEETBUS_KEY)"
        );
    }
    // A user calling an admin endpoint: the hub's 403, at once.
    let started = Instant::now();
    let err = fleet
        .cli_as("bob", &["get", "grants"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("user bob is not a hub admin"), "{err}");
    Ok(())
}
