//! ManifestWork on real kube-apiservers: the seed's works reach cluster1 only, updates, dropped
//! manifests, update strategies, drift, status feedback, delete options, a spoke offline while
//! works change and a hub restart. Bad input and size limits are in `work_limits.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::time::Duration;

use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::works::{condition, config_map, create_work, data_of, one_cluster, work_json};
use fleetbus_tests::{Fleet, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

const FORBIDDEN: &str = r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:open-cluster-management-managed-serviceaccount:dep" cannot list resource "pods" in API group "" at the cluster scope"#;

const DEP_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: dep-role
rules:
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch"]
"#;

const DEP_ROLEBINDING: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: dep-rolebinding
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: dep-role
subjects:
- kind: ServiceAccount
  name: dep
  namespace: open-cluster-management-managed-serviceaccount
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_works_reach_cluster1_only() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let (kube1, kube2) = (fleet.kube("cluster1").await?, fleet.kube("cluster2").await?);
    let _s1 = fleet
        .join(
            fleet.spoke_config("cluster1", Some(&kube1))?,
            ConditionStatus::True,
        )
        .await?;
    let _s2 = fleet
        .join(
            fleet.spoke_config("cluster2", Some(&kube2))?,
            ConditionStatus::True,
        )
        .await?;

    let out = create_work(&fleet, "dep-role", "cluster1", DEP_ROLE, &["--wait"]).await?;
    assert_eq!(
        out,
        "manifestwork dep-role created on cluster cluster1 (generation 1)\nmanifestwork dep-role applied on cluster cluster1 (generation 1)\n"
    );
    create_work(
        &fleet,
        "dep-rolebinding",
        "cluster1",
        DEP_ROLEBINDING,
        &["--wait"],
    )
    .await?;

    let c1 = kube1.admin_client().await?;
    let role = Api::<ClusterRole>::all(c1.clone()).get("dep-role").await?;
    assert_eq!(
        role.rules.unwrap()[0].resources,
        Some(vec!["deployments".to_string()])
    );
    let binding = Api::<ClusterRoleBinding>::all(c1)
        .get("dep-rolebinding")
        .await?;
    assert_eq!(binding.subjects.unwrap()[0].name, "dep");
    let c2 = kube2.admin_client().await?;
    assert!(
        Api::<ClusterRole>::all(c2.clone())
            .get_opt("dep-role")
            .await?
            .is_none()
    );
    assert!(
        Api::<ClusterRoleBinding>::all(c2)
            .get_opt("dep-rolebinding")
            .await?
            .is_none()
    );

    let table = fleet.cli(&["get", "work"]).await?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAME",
            "CLUSTER",
            "GENERATION",
            "APPLIED",
            "AVAILABLE",
            "AGE"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().take(5).collect::<Vec<_>>(),
        ["dep-role", "cluster1", "1", "True", "True"]
    );
    assert_eq!(lines.len(), 3, "{table}");
    let yaml = fleet
        .cli(&[
            "get",
            "work",
            "dep-role",
            "--cluster",
            "cluster1",
            "-o",
            "yaml",
        ])
        .await?;
    for want in [
        "kind: ManifestWork",
        "namespace: cluster1",
        "reason: AppliedManifestWorkComplete",
        "reason: ResourcesAvailable",
        "reason: AppliedManifestComplete",
        "resource: clusterroles",
        "name: dep-role",
    ] {
        assert!(yaml.contains(want), "{want} missing in\n{yaml}");
    }
    // The seed's example: MSA dep has no rules of its own; the two works give it its rights.
    fleet
        .cli(&["create", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    fleet
        .cli(&["grant", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    fleet.reported_token("dep", "cluster1").await?;
    let kubectl = |args: &[&str]| {
        fleet
            .proxy_kubectl("alice", "cluster1", "dep", args)
            .output()
            .unwrap()
    };
    let listed = kubectl(&["get", "deployments", "-A"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let refused = kubectl(&["get", "pods", "-A"]);
    assert!(!refused.status.success());
    assert_eq!(String::from_utf8_lossy(&refused.stderr).trim(), FORBIDDEN);

    // Works of a cluster that never joined are refused; duplicates need --overwrite.
    let err = create_work(&fleet, "x", "cluster9", DEP_ROLE, &[])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "cluster cluster9 has not asked to join");
    let err = create_work(&fleet, "dep-role", "cluster1", DEP_ROLE, &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already exists on cluster cluster1; use --overwrite"),
        "{err}"
    );
    assert!(
        create_work(&fleet, "dep-role", "cluster1", DEP_ROLE, &["--overwrite"])
            .await?
            .contains("unchanged")
    );

    // Audit: the create call and the spoke's apply.
    let events = fleet.audit_events().await?;
    assert!(events.iter().any(|(t, e)| t == "io.fleetbus.work.create"
        && e.object == "work/dep-role"
        && e.outcome == "success"));
    assert!(events.iter().any(|(t, e)| t == "io.fleetbus.work.apply"
        && e.actor == "spoke:cluster1"
        && e.object == "work/dep-rolebinding"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_dropped_manifests_drift_and_strategies() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster("cluster1").await?;
    let two = format!("{}---\n{}", config_map("a", "one"), config_map("b", "one"));
    create_work(&fleet, "app", "cluster1", &two, &["--wait"]).await?;
    assert_eq!(data_of(&kube, "b").await.as_deref(), Some("one"));

    // A new generation changes a and drops b.
    let out = create_work(
        &fleet,
        "app",
        "cluster1",
        &config_map("a", "two"),
        &["--overwrite", "--wait"],
    )
    .await?;
    assert!(
        out.starts_with("manifestwork app configured on cluster cluster1 (generation 2)"),
        "{out}"
    );
    assert_eq!(data_of(&kube, "a").await.as_deref(), Some("two"));
    eventually("b removed", WAIT, || async {
        data_of(&kube, "b").await.is_none().then_some(())
    })
    .await?;

    // Drift: an edit and a deletion on the cluster are undone.
    let cms: Api<ConfigMap> = Api::namespaced(kube.admin_client().await?, "default");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "edited"}})),
    )
    .await?;
    eventually("edit undone", WAIT, || async {
        (data_of(&kube, "a").await.as_deref() == Some("two")).then_some(())
    })
    .await?;
    cms.delete("a", &Default::default()).await?;
    eventually("deletion undone", WAIT, || async {
        (data_of(&kube, "a").await.as_deref() == Some("two")).then_some(())
    })
    .await?;

    // Strategies, with a pre-existing object for ReadOnly and JSONPaths feedback from a
    // field set through the status subresource.
    cms.create(
        &PostParams::default(),
        &serde_yaml::from_str(&config_map("existing", "theirs"))?,
    )
    .await?;
    let work = r#"
apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
spec:
  workload:
    manifests:
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: create-only, namespace: default}, data: {k: mine}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: updated, namespace: default}, data: {k: mine}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: existing, namespace: default}}
    - apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web, namespace: default}
      spec:
        replicas: 1
        selector: {matchLabels: {app: web}}
        template:
          metadata: {labels: {app: web}}
          spec: {containers: [{name: web, image: nginx}]}
  manifestConfigs:
  - resourceIdentifier: {resource: configmaps, name: create-only, namespace: default}
    updateStrategy: {type: CreateOnly}
  - resourceIdentifier: {resource: configmaps, name: updated, namespace: default}
    updateStrategy: {type: Update}
  - resourceIdentifier: {resource: configmaps, name: existing, namespace: default}
    updateStrategy: {type: ReadOnly}
  - resourceIdentifier: {group: apps, resource: deployments, name: web, namespace: default}
    feedbackRules:
    - type: JSONPaths
      jsonPaths: [{name: ready, path: .readyReplicas}, {name: available, path: '.conditions[?(@.type=="Available")].status'}]
"#;
    create_work(&fleet, "strategies", "cluster1", work, &["--wait"]).await?;
    for name in ["create-only", "updated"] {
        cms.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "edited"}})),
        )
        .await?;
    }
    eventually("Update restored", WAIT, || async {
        (data_of(&kube, "updated").await.as_deref() == Some("mine")).then_some(())
    })
    .await?;
    assert_eq!(
        data_of(&kube, "create-only").await.as_deref(),
        Some("edited"),
        "CreateOnly is left alone"
    );
    assert_eq!(
        data_of(&kube, "existing").await.as_deref(),
        Some("theirs"),
        "ReadOnly never writes"
    );
    let deployments: Api<Deployment> = Api::namespaced(kube.admin_client().await?, "default");
    let status = json!({"status": {"replicas": 1, "readyReplicas": 1, "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok", "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    deployments
        .patch_status("web", &PatchParams::default(), &Patch::Merge(status))
        .await?;
    let feedback = eventually("feedback on the hub", WAIT, || async {
        let w = work_json(&fleet, "strategies", "cluster1").await.ok()?;
        let manifests = w["status"]["resourceStatus"]["manifests"]
            .as_array()?
            .clone();
        let web = manifests
            .into_iter()
            .find(|m| m["resourceMeta"]["name"] == "web")?;
        let values = web["statusFeedback"]["values"].clone();
        (values.as_array()?.len() == 2).then_some(values)
    })
    .await?;
    assert_eq!(
        feedback,
        json!([{"name": "ready", "fieldValue": {"type": "Integer", "integer": 1}}, {"name": "available", "fieldValue": {"type": "String", "string": "True"}}])
    );

    // Deleting the work removes what it created, never the ReadOnly object it only read.
    let out = fleet
        .cli(&[
            "delete",
            "work",
            "strategies",
            "--cluster",
            "cluster1",
            "--wait",
        ])
        .await?;
    assert!(
        out.ends_with("manifestwork strategies deleted from cluster cluster1\n"),
        "{out}"
    );
    assert!(data_of(&kube, "updated").await.is_none());
    assert!(deployments.get_opt("web").await?.is_none());
    assert_eq!(data_of(&kube, "existing").await.as_deref(), Some("theirs"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_options() -> anyhow::Result<()> {
    let (fleet, kube, _spoke) = one_cluster("cluster1").await?;
    let with_policy = |policy: &str, rules: &str| {
        let name = policy.to_lowercase();
        format!(
            "apiVersion: work.open-cluster-management.io/v1\nkind: ManifestWork\nspec:\n  workload:\n    manifests:\n    - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}-1, namespace: default}}}}\n    - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: {name}-2, namespace: default}}}}\n  deleteOption:\n    propagationPolicy: {policy}\n{rules}"
        )
    };
    let selective = "    selectivelyOrphans:\n      orphaningRules: [{resource: configmaps, name: selectivelyorphan-1, namespace: default}]\n";
    for (policy, rules) in [
        ("Foreground", ""),
        ("Orphan", ""),
        ("SelectivelyOrphan", selective),
    ] {
        let name = policy.to_lowercase();
        create_work(
            &fleet,
            &name,
            "cluster1",
            &with_policy(policy, rules),
            &["--wait"],
        )
        .await?;
        fleet
            .cli(&["delete", "work", &name, "--cluster", "cluster1", "--wait"])
            .await?;
    }
    let mut left = Vec::new();
    for name in [
        "foreground-1",
        "foreground-2",
        "orphan-1",
        "orphan-2",
        "selectivelyorphan-1",
        "selectivelyorphan-2",
    ] {
        if data_of(&kube, name).await.is_some() {
            left.push(name);
        }
    }
    assert_eq!(left, ["orphan-1", "orphan-2", "selectivelyorphan-1"]);
    let err = fleet
        .cli(&["get", "work", "orphan", "--cluster", "cluster1"])
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(err, "work orphan not found on cluster cluster1");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_spoke_converges_and_a_hub_restart_loses_nothing() -> anyhow::Result<()> {
    let (mut fleet, kube, spoke) = one_cluster("cluster1").await?;
    create_work(
        &fleet,
        "app",
        "cluster1",
        &config_map("a", "v1"),
        &["--wait"],
    )
    .await?;
    spoke.stop().await?;
    create_work(
        &fleet,
        "app",
        "cluster1",
        &config_map("a", "v2"),
        &["--overwrite"],
    )
    .await?;
    // The hub restarts in the middle.
    fleet.hub.take().unwrap().stop().await?;
    fleet.hub = Some(fleet.start_hub(fleet.hub_config()));
    fleet.wait_for_hub().await?;
    let v3 = format!("{}---\n{}", config_map("a", "v3"), config_map("c", "v3"));
    create_work(&fleet, "app", "cluster1", &v3, &["--overwrite"]).await?;
    let table = fleet.cli(&["get", "work", "--cluster", "cluster1"]).await?;
    assert!(
        table.contains("Pending (has 1)"),
        "not yet delivered must show:\n{table}"
    );
    assert_eq!(data_of(&kube, "a").await.as_deref(), Some("v1"));

    let _spoke = fleet.start_spoke(fleet.spoke_config("cluster1", Some(&kube))?);
    eventually("generation 3 applied", WAIT, || async {
        let w = work_json(&fleet, "app", "cluster1").await.ok()?;
        let applied = condition(&w["status"]["conditions"], "Applied")?;
        (applied["status"] == "True" && applied["observedGeneration"] == 3).then_some(())
    })
    .await?;
    assert_eq!(data_of(&kube, "a").await.as_deref(), Some("v3"));
    assert_eq!(data_of(&kube, "c").await.as_deref(), Some("v3"));
    Ok(())
}
