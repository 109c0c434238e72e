//! `fleetbus-fuzz-seeds OUT`: records the seed corpus of the fuzz targets in `fuzz/` from real
//! traffic. It starts a fleet on real servers (nats-server, hub, a spoke on a kube-apiserver,
//! a second spoke that stays pending), uses it as a person would (accept and deny, an MSA with
//! rules, ManifestWorks from YAML, kubectl through the tunnel, every `get`), records every
//! message and every auth-callout request (`fleetbus_tests::fuzz_seeds`), and writes them to
//! `OUT/<target>/`. The YAML files it gives the CLI are the `manifests` target's seeds.
//!
//!     cargo run -p fleetbus-tests --bin fleetbus-fuzz-seeds -- fuzz/seeds

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::fuzz_seeds::{Recorder, Seeds, sort};
use fleetbus_tests::works::create_work;
use fleetbus_tests::{Fleet, eventually};

const RULES: &str =
    "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch]\n";

const DEP_ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dep-role}
rules: [{apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}]
";

const DEP_ROLEBINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: dep-rolebinding}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dep-role}
subjects: [{kind: ServiceAccount, name: dep, namespace: open-cluster-management-managed-serviceaccount}]
";

const MANIFEST_WORK: &str = r#"apiVersion: work.open-cluster-management.io/v1
kind: ManifestWork
metadata: {name: strategies, namespace: cluster1}
spec:
  deleteOption:
    propagationPolicy: SelectivelyOrphan
    selectivelyOrphans:
      orphaningRules: [{resource: configmaps, name: kept, namespace: default}]
  workload:
    manifests:
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: kept, namespace: default}, data: {k: mine}}
    - {apiVersion: v1, kind: ConfigMap, metadata: {name: updated, namespace: default}, data: {k: mine}}
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
  - resourceIdentifier: {resource: configmaps, name: updated, namespace: default}
    updateStrategy: {type: Update}
  - resourceIdentifier: {group: apps, resource: deployments, name: web, namespace: default}
    feedbackRules:
    - type: JSONPaths
      jsonPaths: [{name: ready, path: .readyReplicas}, {name: available, path: '.conditions[?(@.type=="Available")].status'}]
    - {type: WellKnownStatus}
"#;

const LIST: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}},
  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "in-demo", "namespace": "demo"}, "data": {"k": "v"}}
]}"#;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: fleetbus-fuzz-seeds OUT")?,
    );
    fleetbus_nats::install_crypto_provider();
    // Short-lived certificates, so that renewals are recorded too.
    let fleet = Fleet::start_with(|c| c.spoke_cert_validity = Duration::from_secs(120)).await?;
    let recorder = Recorder::start(&fleet.nats).await?;
    let kube = fleet.kube("cluster1").await?;
    let mut seeds = Seeds::default();
    drive(&fleet, &kube, &mut seeds).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let recorded = recorder.finish().await;
    sort(&recorded, &fleet.nats.subjects, &mut seeds);
    for (target, n) in seeds.write(&out)? {
        println!("{target:<16} {n} seeds");
    }
    Ok(())
}

/// Uses the fleet as a person would; the files given to the CLI become `manifests` seeds.
async fn drive(
    fleet: &Fleet,
    kube: &fleetbus_cli::local::kube_server::KubeServer,
    seeds: &mut Seeds,
) -> anyhow::Result<()> {
    let mut config = fleet.spoke_config("cluster1", Some(kube))?;
    config.renew_fraction = 0.1;
    let cert = config.spoke_tls().cert;
    let _spoke = fleet.join(config, ConditionStatus::True).await?;
    let first = std::fs::read_to_string(&cert)?;
    let _pending = fleet.start_spoke(fleet.spoke_config("cluster2", None)?);
    fleet.create_msa_with_rules("dep", RULES).await?;
    fleet.reported_token("dep", "cluster1").await?;
    for (name, text) in [
        ("dep-role", DEP_ROLE),
        ("dep-rolebinding", DEP_ROLEBINDING),
        ("strategies", MANIFEST_WORK),
        ("listed", LIST),
    ] {
        create_work(fleet, name, "cluster1", text, &["--wait"]).await?;
        seeds.add("manifests", name, text.as_bytes().to_vec());
    }
    seeds.add("manifests", "rules", RULES.as_bytes().to_vec());
    // More than the hub keeps inline: the spoke fetches it in chunks.
    let big = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: default}}\ndata: {{k: {}}}\n",
        "x".repeat(20 * 1024)
    );
    create_work(fleet, "big", "cluster1", &big, &["--wait"]).await?;
    for args in [
        &["get", "clusters", "-o", "yaml"][..],
        &["get", "work", "-o", "json"],
        &[
            "get",
            "work",
            "strategies",
            "--cluster",
            "cluster1",
            "-o",
            "yaml",
        ],
        &["get", "msa"],
        &["get", "token", "dep", "--cluster", "cluster1"],
        &["grant", "alice", "--cluster", "cluster1", "--msa", "dep"],
        &["get", "grants"],
        &["get", "credentials"],
        &["deny", "cluster2"],
        &["whoami"],
    ] {
        fleet.cli(args).await?;
    }
    for args in [&["get", "deployments", "-A"][..], &["get", "pods", "-A"]] {
        let _ = fleet
            .proxy_kubectl("alice", "cluster1", "dep", args)
            .output()?;
    }
    fleet
        .cli(&["delete", "work", "big", "--cluster", "cluster1", "--wait"])
        .await?;
    fleet
        .cli(&["revoke", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    eventually("a certificate renewal", Duration::from_secs(60), || async {
        (std::fs::read_to_string(&cert).ok()? != first).then_some(())
    })
    .await?;
    Ok(())
}
