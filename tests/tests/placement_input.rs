//! Bad Placements, cluster sets, labels and ManifestWorkReplicaSets on real servers: each is a
//! clear one-line error or a visible condition, and nothing is half-created. Only admins may
//! manage any of them (as with works).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::placement::{
    cluster_work, file, find, join_labelled, placement, set_condition, work_set,
};
use fleetbus_tests::{Fleet, eventually};

const WAIT: Duration = Duration::from_secs(30);
const CM: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: default\ndata:\n  k: v\n";

/// The one-line error of a CLI call that must fail.
async fn refused(fleet: &Fleet, args: &[&str]) -> String {
    let err = fleet
        .cli(args)
        .await
        .expect_err(&format!("{args:?} should fail"));
    let text = format!("{err:#}");
    assert!(!text.contains('\n'), "more than one line: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_line_or_a_condition_and_leaves_nothing_half_created() -> anyhow::Result<()>
{
    let fleet = Fleet::start().await?;
    let _c1 = join_labelled(&fleet, "c1", None, &[("env", "dev")]).await?;

    // Placements.
    assert_eq!(
        refused(
            &fleet,
            &["create", "placement", "p", "--selector", "env in prod"]
        )
        .await,
        "invalid selector \"env in prod\": the values of in/notin go in parentheses, e.g. env in (a,b)"
    );
    let near = file(
        &fleet,
        "near",
        "kind: Placement\nspec:\n  predicates:\n  - requiredClusterSelector:\n      labelSelector:\n        matchExpressions: [{key: env, operator: Near, values: [a]}]\n",
    )?;
    assert_eq!(
        refused(&fleet, &["create", "placement", "p", "-f", &near]).await,
        "predicates[0].requiredClusterSelector.labelSelector.matchExpressions[0]: operator \"Near\" is not In, NotIn, Exists or DoesNotExist"
    );
    assert_eq!(
        refused(
            &fleet,
            &["create", "placement", "p", "--clusterset", "nosuch"]
        )
        .await,
        "clusterset nosuch not found; create it with `fleetbus create clusterset nosuch`"
    );
    assert_eq!(
        refused(&fleet, &["get", "placement", "p"]).await,
        "placement p not found; create it with `fleetbus create placement p`"
    );
    fleet
        .cli(&["create", "placement", "none", "--selector", "env=nowhere"])
        .await?;
    let satisfied = eventually("PlacementSatisfied=False", WAIT, || async {
        let p = placement(&fleet, "none").await.ok()?;
        find(&p.status?.conditions, "PlacementSatisfied").cloned()
    })
    .await?;
    assert_eq!(satisfied.status(), ConditionStatus::False);
    assert_eq!(satisfied.reason, "NoManagedClusterMatched");
    assert_eq!(
        satisfied.message,
        "no cluster selected: 1 accepted clusters, 1 in the placement's cluster sets, 0 matching its predicates, 0 without a taint it does not tolerate"
    );
    let shown = fleet.cli(&["get", "placement", "none"]).await?;
    assert!(
        shown.contains("NoManagedClusterMatched") && shown.contains("0 matching"),
        "{shown}"
    );

    // Work sets.
    let cm = file(&fleet, "cm", CM)?;
    assert_eq!(
        refused(
            &fleet,
            &["create", "work", "w", "--placement", "missing", "-f", &cm]
        )
        .await,
        "placement missing not found; create it with `fleetbus create placement missing`"
    );
    for (concurrency, why) in [
        (
            "0",
            "placement none: maxConcurrency must be at least 1 (or 1%–100%); got 0",
        ),
        (
            "150%",
            "placement none: maxConcurrency 150% is more than 100%",
        ),
    ] {
        let args = [
            "create",
            "work",
            "w",
            "--placement",
            "none",
            "-f",
            &cm,
            "--rollout",
            "Progressive",
            "--max-concurrency",
            concurrency,
        ];
        assert_eq!(refused(&fleet, &args).await, why);
    }
    assert_eq!(
        refused(
            &fleet,
            &[
                "create",
                "work",
                "w",
                "--placement",
                "none",
                "-f",
                &cm,
                "--max-failures",
                "ten"
            ]
        )
        .await,
        "placement none: maxFailures \"ten\" is not a number or a percentage"
    );
    let nameless = file(
        &fleet,
        "nameless",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: default}\n",
    )?;
    assert_eq!(
        refused(
            &fleet,
            &[
                "create",
                "work",
                "w",
                "--placement",
                "none",
                "-f",
                &nameless
            ]
        )
        .await,
        "manifests[0]: ConfigMap has no metadata.name"
    );
    let empty_set = file(
        &fleet,
        "empty",
        "apiVersion: work.open-cluster-management.io/v1alpha1\nkind: ManifestWorkReplicaSet\nmetadata: {name: w}\nspec:\n  placementRefs: [{name: none}]\n  manifestWorkTemplate: {workload: {manifests: []}}\n",
    )?;
    assert!(
        refused(&fleet, &["create", "work", "w", "-f", &empty_set])
            .await
            .ends_with("no manifests found")
    );
    assert!(
        work_set(&fleet, "w").await?.is_none(),
        "nothing half-created"
    );

    // A set over a placement that selects nothing says so.
    fleet
        .cli(&["create", "work", "w", "--placement", "none", "-f", &cm])
        .await?;
    let verified = eventually("PlacementVerified=False", WAIT, || async {
        let set = work_set(&fleet, "w").await.ok()??;
        set_condition(&set, "PlacementVerified").filter(|c| c.status() == ConditionStatus::False)
    })
    .await?;
    assert_eq!(
        (verified.reason.as_str(), verified.message.as_str()),
        (
            "PlacementDecisionEmpty",
            "placement none selects no cluster"
        )
    );
    assert_eq!(
        refused(&fleet, &["delete", "placement", "none"]).await,
        "placement none is used by ManifestWorkReplicaSet w; delete that first"
    );

    // A cluster that already has a work of the set's name keeps it; the set reports it.
    fleet
        .cli(&["create", "work", "dup", "--cluster", "c1", "-f", &cm])
        .await?;
    fleet.cli(&["create", "placement", "all"]).await?;
    fleet
        .cli(&["create", "work", "dup", "--placement", "all", "-f", &cm])
        .await?;
    let stopped = eventually("dup stopped on c1", WAIT, || async {
        let set = work_set(&fleet, "dup").await.ok()??;
        set_condition(&set, "PlacementRolledOut").filter(|c| c.reason == "Failed")
    })
    .await?;
    assert!(
        stopped
            .message
            .contains("c1 (cluster c1 already has a work named dup that this ManifestWorkReplicaSet did not create)"),
        "{}",
        stopped.message
    );
    let standalone = cluster_work(&fleet, "c1", "dup").await?.unwrap();
    assert_eq!(
        (standalone.work_set.as_str(), standalone.generation),
        ("", 1)
    );

    // Cluster sets and labels.
    fleet.cli(&["create", "clusterset", "s"]).await?;
    assert_eq!(
        refused(&fleet, &["create", "clusterset", "s"]).await,
        "clusterset s already exists"
    );
    assert_eq!(
        refused(
            &fleet,
            &["clusterset", "set", "c1", "--clusterset", "nosuch"]
        )
        .await,
        "clusterset nosuch not found; create it with `fleetbus create clusterset nosuch`"
    );
    assert_eq!(
        refused(
            &fleet,
            &["clusterset", "set", "c1", "ghost", "--clusterset", "s"]
        )
        .await,
        "cluster ghost has not asked to join"
    );
    let clusters = fleet.cli(&["get", "clusters"]).await?;
    assert!(
        !clusters.contains("clusterset=s"),
        "c1 moved though ghost failed: {clusters}"
    );
    fleet
        .cli(&["clusterset", "set", "c1", "--clusterset", "s"])
        .await?;
    assert_eq!(
        refused(&fleet, &["delete", "clusterset", "s"]).await,
        "clusterset s still has 1 clusters (c1); move them to another set first"
    );
    assert_eq!(
        refused(&fleet, &["label", "cluster", "c1", "bad key=x"]).await,
        "invalid label key \"bad key\": at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    );
    assert_eq!(
        refused(
            &fleet,
            &[
                "label",
                "cluster",
                "c1",
                "cluster.open-cluster-management.io/clusterset=t"
            ]
        )
        .await,
        "set cluster.open-cluster-management.io/clusterset with `fleetbus clusterset set c1 --clusterset SET`"
    );
    assert_eq!(
        refused(&fleet, &["label", "cluster", "c1", "env"]).await,
        "invalid label \"env\": expected key=value or key-"
    );
    fleet.cli(&["label", "cluster", "c1", "env-"]).await?;
    let clusters = fleet.cli(&["get", "clusters"]).await?;
    assert!(!clusters.contains("env=dev"), "{clusters}");
    assert!(
        clusters.contains("cluster.open-cluster-management.io/clusterset=s"),
        "{clusters}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_manage_cluster_sets_labels_placements_and_work_sets() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let cm = file(&fleet, "cm", CM)?;
    fleet.cli(&["create", "clusterset", "s"]).await?;
    fleet.cli(&["create", "placement", "p"]).await?;
    fleet
        .cli(&["create", "work", "w", "--placement", "p", "-f", &cm])
        .await?;
    let calls: [&[&str]; 14] = [
        &["create", "clusterset", "t"],
        &["get", "clustersets"],
        &["delete", "clusterset", "s"],
        &["clusterset", "set", "c1", "--clusterset", "s"],
        &["label", "cluster", "c1", "env=prod"],
        &["create", "placement", "q"],
        &["get", "placement"],
        &["get", "placement", "p"],
        &["delete", "placement", "p"],
        &["create", "work", "v", "--placement", "p", "-f", &cm],
        &["get", "workset"],
        &["get", "work", "w", "--placement", "p"],
        &["delete", "work", "w", "--placement", "p"],
        &["delete", "workset", "w"],
    ];
    for args in calls {
        let err = fleet
            .cli_as("bob", args)
            .await
            .expect_err(&format!("{args:?}"));
        assert_eq!(err.to_string(), "user bob is not a hub admin", "{args:?}");
    }
    // Nothing bob asked for happened.
    assert!(fleet.cli(&["get", "clustersets"]).await?.contains("s "));
    assert!(placement(&fleet, "p").await.is_ok());
    assert!(placement(&fleet, "q").await.is_err());
    let set = work_set(&fleet, "w").await?.unwrap();
    assert_eq!(set.deletion_ms, 0);
    assert!(work_set(&fleet, "v").await?.is_none());
    Ok(())
}
