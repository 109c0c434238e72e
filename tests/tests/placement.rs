//! Placements and ManifestWorkReplicaSets on real servers: a placement selecting by label and
//! cluster set across real and simulated spokes, relabelling clusters in and out, a cluster
//! joining later, a new generation, deletion cleaning every cluster; Progressive rollout one
//! cluster at a time that stops on a failing cluster; a cluster going Unknown dropped only by
//! a placement without a toleration. Bad input and permissions are in `placement_input.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::placement::{
    applied_ms, cluster_work, decisions, file, join_labelled, set_condition, work_set,
};
use fleetbus_tests::works::data_of;
use fleetbus_tests::{Fleet, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn config_map(namespace: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: {namespace}\ndata:\n  k: {data}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placement_follows_labels_sets_and_late_joiners() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let (kube1, kube2) = (fleet.kube("c1").await?, fleet.kube("c2").await?);
    let _c1 = join_labelled(&fleet, "c1", Some(&kube1), &[("env", "prod")]).await?;
    let _c2 = join_labelled(&fleet, "c2", Some(&kube2), &[("env", "dev")]).await?;
    let _c3 = join_labelled(&fleet, "c3", None, &[("env", "prod")]).await?;

    assert_eq!(
        fleet.cli(&["create", "clusterset", "prod"]).await?,
        "clusterset prod created\n"
    );
    fleet
        .cli(&[
            "clusterset",
            "set",
            "c1",
            "c2",
            "c3",
            "--clusterset",
            "prod",
        ])
        .await?;
    let sets = fleet.cli(&["get", "clustersets"]).await?;
    let row: Vec<&str> = sets.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..2], ["prod", "3"], "{sets}");

    fleet
        .cli(&[
            "create",
            "placement",
            "web",
            "--clusterset",
            "prod",
            "--selector",
            "env=prod",
        ])
        .await?;
    eventually("c1 and c3 selected", WAIT, || async {
        (decisions(&fleet, "web").await.ok()? == ["c1", "c3"]).then_some(())
    })
    .await?;
    let table = fleet.cli(&["get", "placement", "web"]).await?;
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..4],
        ["web", "True", "AllDecisionsScheduled", "2"],
        "{table}"
    );
    let yaml = fleet
        .cli(&["get", "placement", "web", "-o", "yaml"])
        .await?;
    for want in [
        "kind: Placement",
        "numberOfSelectedClusters: 2",
        "type: PlacementSatisfied",
        "decisionGroupIndex: 0",
        "- c3",
    ] {
        assert!(yaml.contains(want), "{want} missing from\n{yaml}");
    }

    // Claims: simulated clusters claim the simulator's Kubernetes version.
    fleet
        .cli(&[
            "create",
            "placement",
            "real",
            "--claim-selector",
            "kubeversion.open-cluster-management.io notin (v1.33.0-fleetbus-sim)",
        ])
        .await?;
    eventually("the real clusters selected by claim", WAIT, || async {
        (decisions(&fleet, "real").await.ok()? == ["c1", "c2"]).then_some(())
    })
    .await?;

    let v1 = file(&fleet, "web", &config_map("default", "v1"))?;
    let out = fleet
        .cli(&[
            "create",
            "work",
            "web",
            "--placement",
            "web",
            "-f",
            &v1,
            "--wait",
        ])
        .await?;
    assert_eq!(
        out,
        "manifestworkreplicaset web created for placement web (generation 1)\nmanifestworkreplicaset web rolled out to 2 of 2 clusters (generation 1)\n"
    );
    assert_eq!(data_of(&kube1, "web").await.as_deref(), Some("v1"));
    assert_eq!(data_of(&kube2, "web").await, None);
    let generated = cluster_work(&fleet, "c3", "web").await?.unwrap();
    assert!(applied_ms(&generated).is_some());
    assert_eq!(
        (generated.work_set.as_str(), generated.placement.as_str()),
        ("web", "web")
    );
    let yaml = fleet
        .cli(&["get", "work", "web", "--cluster", "c3", "-o", "yaml"])
        .await?;
    assert!(
        yaml.contains("work.open-cluster-management.io/manifestworkreplicaset: web")
            && yaml.contains("work.open-cluster-management.io/placementname: web"),
        "{yaml}"
    );
    let refused = fleet
        .cli(&["delete", "work", "web", "--cluster", "c1"])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "work web on cluster c1 belongs to ManifestWorkReplicaSet web; change or delete the set instead"
    );

    // Relabelled in: c2 gets the work; relabelled out: c1 loses it.
    let clash = fleet
        .cli(&["label", "cluster", "c2", "env=prod"])
        .await
        .unwrap_err();
    assert_eq!(
        clash.to_string(),
        "cluster c2 already has label env=dev; use --overwrite to change it"
    );
    fleet
        .cli(&["label", "cluster", "c2", "env=prod", "--overwrite"])
        .await?;
    eventually("web on c2", WAIT, || async {
        (data_of(&kube2, "web").await.as_deref() == Some("v1")).then_some(())
    })
    .await?;
    fleet
        .cli(&["label", "cluster", "c1", "env=dev", "--overwrite"])
        .await?;
    eventually("web gone from c1", WAIT, || async {
        let gone = data_of(&kube1, "web").await.is_none();
        (gone && cluster_work(&fleet, "c1", "web").await.ok()?.is_none()).then_some(())
    })
    .await?;
    let clusters = fleet.cli(&["get", "clusters"]).await?;
    let c1 = clusters.lines().find(|l| l.starts_with("c1 ")).unwrap();
    assert!(c1.contains("env=dev"), "{clusters}");

    // A cluster that joins later, and then the set, gets the work.
    let _c4 = join_labelled(&fleet, "c4", None, &[("env", "prod")]).await?;
    assert_eq!(decisions(&fleet, "web").await?, ["c2", "c3"]);
    fleet
        .cli(&["clusterset", "set", "c4", "--clusterset", "prod"])
        .await?;
    eventually("web applied on c4", WAIT, || async {
        applied_ms(&cluster_work(&fleet, "c4", "web").await.ok()??)
    })
    .await?;

    // A new generation rolls out to every selected cluster.
    let v2 = file(&fleet, "web", &config_map("default", "v2"))?;
    let out = fleet
        .cli(&[
            "create",
            "work",
            "web",
            "--placement",
            "web",
            "-f",
            &v2,
            "--overwrite",
            "--wait",
        ])
        .await?;
    assert_eq!(
        out,
        "manifestworkreplicaset web configured for placement web (generation 2)\nmanifestworkreplicaset web rolled out to 3 of 3 clusters (generation 2)\n"
    );
    assert_eq!(data_of(&kube2, "web").await.as_deref(), Some("v2"));
    let rollout = fleet
        .cli(&["get", "work", "web", "--placement", "web"])
        .await?;
    for cluster in ["c2", "c3", "c4"] {
        let line = rollout
            .lines()
            .find(|l| l.starts_with(&format!("{cluster} ")))
            .unwrap_or_else(|| panic!("{cluster} missing from\n{rollout}"));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &cells[..5],
            [cluster, "web", "0", "Succeeded", "2"],
            "{rollout}"
        );
    }
    let yaml = fleet.cli(&["get", "workset", "web", "-o", "yaml"]).await?;
    for want in [
        "kind: ManifestWorkReplicaSet",
        "type: PlacementVerified",
        "reason: Complete",
        "desiredTotal: 3",
        "availableDecisionGroups: 1 (3 / 3 clusters applied)",
    ] {
        assert!(yaml.contains(want), "{want} missing from\n{yaml}");
    }

    // Decisions and rollout steps are audit events.
    let events = fleet.audit_events().await?;
    let has = |t: &str| events.iter().any(|(ce, _)| ce == t);
    assert!(has("io.fleetbus.placement.decide"));
    assert!(has("io.fleetbus.workset.rollout"));
    assert!(has("io.fleetbus.workset.complete"));

    // Deleting the set cleans every cluster.
    let out = fleet
        .cli(&["delete", "work", "web", "--placement", "web", "--wait"])
        .await?;
    assert_eq!(
        out,
        "manifestworkreplicaset web deletion requested\nmanifestworkreplicaset web deleted from every cluster\n"
    );
    assert_eq!(data_of(&kube2, "web").await, None);
    for cluster in ["c1", "c2", "c3", "c4"] {
        assert!(cluster_work(&fleet, cluster, "web").await?.is_none());
    }
    assert_eq!(
        fleet.cli(&["get", "workset"]).await?,
        "No manifestworkreplicasets found.\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_applies_one_cluster_at_a_time_and_stops_on_failures() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("b2").await?;
    let web = [("tier", "web")];
    let _a1 = join_labelled(&fleet, "a1", None, &web).await?;
    let _b2 = join_labelled(&fleet, "b2", Some(&kube), &web).await?;
    let _c3 = join_labelled(&fleet, "c3", None, &web).await?;
    let _d4 = join_labelled(&fleet, "d4", None, &web).await?;
    fleet
        .cli(&["create", "placement", "web", "--selector", "tier=web"])
        .await?;
    eventually("four clusters selected", WAIT, || async {
        (decisions(&fleet, "web").await.ok()?.len() == 4).then_some(())
    })
    .await?;

    // Namespace `rollout` exists on the simulated clusters (in memory every namespace does)
    // but not on b2's apiserver: b2 reports Applied=False, Degraded=True.
    let path = file(&fleet, "web", &config_map("rollout", "v1"))?;
    let args = [
        "create",
        "work",
        "web",
        "--placement",
        "web",
        "-f",
        &path,
        "--rollout",
        "Progressive",
        "--max-concurrency",
        "1",
        "--wait",
        "--wait-timeout",
        "60s",
    ];
    let output = fleet.command_as("admin", &args).output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("[##--------] 1/4 clusters applied"),
        "{stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(
            "error: manifestworkreplicaset web: rollout stopped: 1 clusters failed, more than maxFailures 0: b2 ("
        ) && last.contains("not found"),
        "{stderr}"
    );
    let set = work_set(&fleet, "web").await?.unwrap();
    let rolled = set_condition(&set, "PlacementRolledOut").unwrap();
    assert_eq!(
        (rolled.status(), rolled.reason.as_str()),
        (ConditionStatus::False, "Failed")
    );
    let a1 = cluster_work(&fleet, "a1", "web").await?.unwrap();
    let b2 = cluster_work(&fleet, "b2", "web").await?.unwrap();
    // b2 was released only after a1 had applied.
    assert!(b2.created_ms >= applied_ms(&a1).unwrap(), "{a1:?}\n{b2:?}");
    for never in ["c3", "d4"] {
        assert!(
            cluster_work(&fleet, never, "web").await?.is_none(),
            "{never} got the work"
        );
    }
    let rows = fleet
        .cli(&["get", "work", "web", "--placement", "web"])
        .await?;
    let b2_row = rows.lines().find(|l| l.starts_with("b2 ")).unwrap();
    assert!(
        b2_row.contains("Failed") && b2_row.contains("not found"),
        "{rows}"
    );

    // With one failure allowed the rollout goes on, still one cluster at a time.
    let out = fleet
        .cli(&[
            "create",
            "work",
            "web",
            "--placement",
            "web",
            "-f",
            &path,
            "--overwrite",
            "--rollout",
            "Progressive",
            "--max-concurrency",
            "1",
            "--max-failures",
            "1",
            "--wait",
        ])
        .await?;
    assert!(
        out.ends_with(
            "rolled out to 3 of 4 clusters (generation 1; 1 failed within maxFailures)\n"
        ),
        "{out}"
    );
    let c3 = cluster_work(&fleet, "c3", "web").await?.unwrap();
    let d4 = cluster_work(&fleet, "d4", "web").await?.unwrap();
    let (c3_applied, d4_applied) = (applied_ms(&c3).unwrap(), applied_ms(&d4).unwrap());
    assert!(c3.created_ms >= b2.created_ms);
    assert!(
        d4.created_ms >= c3_applied,
        "d4 released before c3 applied: {c3:?}\n{d4:?}"
    );
    assert!(d4_applied >= d4.created_ms);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_going_unknown_is_dropped_only_by_a_placement_without_a_toleration()
-> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let labels = [("app", "a")];
    let x1 = join_labelled(&fleet, "x1", None, &labels).await?;
    let _x2 = join_labelled(&fleet, "x2", None, &labels).await?;
    fleet
        .cli(&["create", "placement", "strict", "--selector", "app=a"])
        .await?;
    fleet
        .cli(&[
            "create",
            "placement",
            "tolerant",
            "--selector",
            "app=a",
            "--toleration",
            "cluster.open-cluster-management.io/unreachable",
        ])
        .await?;
    let path = file(&fleet, "cm", &config_map("default", "v1"))?;
    for (set, placement) in [("ws", "strict"), ("wt", "tolerant")] {
        fleet
            .cli(&[
                "create",
                "work",
                set,
                "--placement",
                placement,
                "-f",
                &path,
                "--wait",
            ])
            .await?;
    }

    x1.stop().await?;
    fleet
        .wait_available("x1", ConditionStatus::Unknown, WAIT)
        .await?;
    eventually("strict drops x1", WAIT, || async {
        (decisions(&fleet, "strict").await.ok()? == ["x2"]).then_some(())
    })
    .await?;
    assert_eq!(decisions(&fleet, "tolerant").await?, ["x1", "x2"]);
    let dropped = cluster_work(&fleet, "x1", "ws").await?.unwrap();
    assert!(dropped.deletion_ms > 0, "being removed once x1 is back");
    let kept = cluster_work(&fleet, "x1", "wt").await?.unwrap();
    assert_eq!(kept.deletion_ms, 0);

    // Back: x1 removes the old work, is selected again and gets a new one.
    let mut config = fleet.spoke_config("x1", None)?;
    config.labels = [("app".to_owned(), "a".to_owned())].into_iter().collect();
    let _x1 = fleet.start_sim(config);
    fleet
        .wait_available("x1", ConditionStatus::True, WAIT)
        .await?;
    eventually("x1 has ws again", WAIT, || async {
        let w = cluster_work(&fleet, "x1", "ws").await.ok()??;
        (w.deletion_ms == 0 && applied_ms(&w).is_some()).then_some(())
    })
    .await?;
    assert_eq!(decisions(&fleet, "strict").await?, ["x1", "x2"]);
    eventually("ws complete", WAIT, || async {
        let set = work_set(&fleet, "ws").await.ok()??;
        (set_condition(&set, "PlacementRolledOut")?.reason == "Complete").then_some(())
    })
    .await?;
    Ok(())
}
