//! Bounded shutdown on real servers: a spoke process with 50 due works gets SIGTERM while it
//! reconciles them, stops between works within its grace period (Kubernetes kills a pod 30 s
//! after SIGTERM), and the hub has every status report the spoke sent; the works it did not
//! reach are reconciled at its next start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use fleetbus_cli::hub_client::HubClient;
use fleetbus_schema::ApiEndpoint;
use fleetbus_schema::v1::{ConditionStatus, CreateWorkRequest, ManifestWork, Manifests};
use fleetbus_tests::works::data_of;
use fleetbus_tests::{Fleet, eventually};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

const WORKS: usize = 50;

fn config_map(name: &str) -> Vec<u8> {
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}},"data":{{"k":"v"}}}}"#).into_bytes()
}

/// Works whose status (of their first generation) the hub holds.
async fn reported(client: &HubClient) -> anyhow::Result<BTreeSet<String>> {
    Ok(client
        .all_works("cluster1")
        .await?
        .into_iter()
        .filter(|w| {
            w.status
                .as_ref()
                .is_some_and(|s| s.observed_generation == 1)
        })
        .map(|w| w.name)
        .collect())
}

/// The works whose status the spoke's log says it delivered.
fn sent(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains("work status reported"))
        .filter_map(|l| {
            let rest = &l[l.find("reconcile{")?..];
            let name = &rest[rest.find(" work=")? + 6..];
            Some(name[..name.find(' ')?].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_busy_spoke_within_its_grace_period_with_every_report_delivered()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    fleet
        .join(config.clone(), ConditionStatus::True)
        .await?
        .stop()
        .await?;

    // Works pile up while the spoke is away.
    let client = HubClient::connect(&fleet.flags_for("admin")?).await?;
    for i in 0..WORKS {
        let name = format!("w-{i:02}");
        let request = CreateWorkRequest {
            work: Some(ManifestWork {
                name: name.clone(),
                cluster: "cluster1".into(),
                ..Default::default()
            }),
            manifests: Some(Manifests {
                objects: vec![config_map(&name)],
            }),
            ..Default::default()
        };
        let _: ManifestWork = client.call(ApiEndpoint::WorkCreate, &request).await?;
    }

    // The spoke as Kubernetes runs it: a process that gets SIGTERM.
    let log_path = fleet.nats.dir.path().join("spoke.log");
    let mut spoke = fleet.spoke_process(&config, &log_path)?;
    eventually("the first reports", Duration::from_secs(60), || async {
        (reported(&client).await.ok()?.len() >= 3).then_some(())
    })
    .await?;
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &spoke.id().to_string()])
            .status()?
            .success()
    );
    let status = loop {
        if let Some(status) = spoke.try_wait()? {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(30) {
            spoke.kill()?;
            panic!("the spoke was still running 30 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    let log = std::fs::read_to_string(&log_path)?;
    assert!(status.success(), "{status}\n{log}");
    assert!(
        took < fleetbus_spoke::session::GRACE,
        "stopped after {took:?}\n{log}"
    );

    // The hub has every report the spoke sent, and every work the spoke applied was reported.
    let sent = sent(&log);
    let on_hub = reported(&client).await?;
    assert!(!sent.is_empty(), "{log}");
    assert_eq!(sent, on_hub, "{log}");
    let cms: Api<ConfigMap> = Api::namespaced(kube.admin_client().await?, "default");
    let applied: BTreeSet<String> = cms
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|n| n.starts_with("w-"))
        .collect();
    assert!(
        applied.is_subset(&on_hub),
        "applied but not reported: {:?}",
        applied.difference(&on_hub).collect::<Vec<_>>()
    );
    println!(
        "stopped {took:?} after SIGTERM with {} of {WORKS} works reported",
        on_hub.len()
    );
    if on_hub.len() < WORKS {
        assert!(log.contains("stopping between works"), "{log}");
    }

    // The next start reconciles the rest.
    let spoke = fleet.start_spoke(config);
    eventually("every work reported", Duration::from_secs(90), || async {
        (reported(&client).await.ok()?.len() == WORKS).then_some(())
    })
    .await?;
    assert_eq!(data_of(&kube, "w-49").await.as_deref(), Some("v"));
    spoke.stop().await?;
    Ok(())
}
