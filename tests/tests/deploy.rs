//! The manifests in `deploy/`: every document parses, the Deployment passes only flags and
//! environment variables the spoke's own parser accepts, and a real kube-apiserver accepts
//! every object. Then two spoke replicas with one `--identity-secret`, running as the
//! manifests' service account under the least-privilege RBAC, join once, both connect, one
//! rotates and the other adopts the new certificate, and a managed service account with rules
//! gets its token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_nats::pki;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::{Fleet, captured_logs, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::serde::Deserialize as _;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_yaml::Value;

const WAIT: Duration = Duration::from_secs(45);
const NS: &str = "fleetbus-spoke";
const IDENTITY: &str = "fleetbus-spoke-identity";

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("deploy")
}

/// Every YAML document in `deploy/` except the kustomization, in apply order: the files the
/// kustomization lists, then the other RBAC variant.
fn manifests() -> Vec<(String, Value)> {
    let mut files = kustomization_resources();
    files.push("rbac-cluster-admin.yaml".into());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(deploy_dir().join(&file)).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}"));
            if !value.is_null() {
                docs.push((file.clone(), value));
            }
        }
    }
    docs
}

fn kustomization_resources() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let k: Value = serde_yaml::from_str(&text).unwrap();
    k["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn find<'a>(docs: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

#[test]
fn every_manifest_parses_and_the_kustomization_lists_them() {
    let mut on_disk: Vec<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    on_disk.sort();
    let mut listed = kustomization_resources();
    assert!(!listed.contains(&"rbac-cluster-admin.yaml".to_owned()));
    listed.push("rbac-cluster-admin.yaml".into());
    listed.sort();
    assert_eq!(on_disk, listed, "every manifest is applied by one variant");

    let docs = manifests();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (file, doc) in &docs {
        let kind = s(&doc["kind"]);
        *kinds.entry(kind).or_default() += 1;
        assert!(
            doc["apiVersion"].is_string(),
            "{file}: {kind} without apiVersion"
        );
        let cluster_scoped = ["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&kind);
        let ns = doc["metadata"]["namespace"].as_str();
        assert_eq!(
            ns.is_none(),
            cluster_scoped,
            "{file}: {kind} namespace {ns:?}"
        );
        if let Some(ns) = ns {
            assert!(
                [
                    NS,
                    "open-cluster-management-managed-serviceaccount",
                    "fleetbus-agent"
                ]
                .contains(&ns),
                "{file}: {ns}"
            );
        }
        // Every binding is for the spoke's service account and names a role that exists.
        if kind.ends_with("Binding") {
            let subjects = doc["subjects"].as_sequence().unwrap();
            assert_eq!(subjects.len(), 1, "{file}");
            assert_eq!(
                (s(&subjects[0]["kind"]), s(&subjects[0]["name"])),
                ("ServiceAccount", "fleetbus-spoke")
            );
            assert_eq!(s(&subjects[0]["namespace"]), NS);
            let role = s(&doc["roleRef"]["name"]);
            if role != "cluster-admin" {
                find(&docs, s(&doc["roleRef"]["kind"]), role);
            }
        }
    }
    let want = BTreeMap::from([
        ("ClusterRole", 3),
        ("ClusterRoleBinding", 3),
        ("ConfigMap", 1),
        ("Deployment", 1),
        ("Namespace", 3),
        ("Role", 3),
        ("RoleBinding", 3),
        ("ServiceAccount", 1),
    ]);
    assert_eq!(kinds, want);
    let work = find(&docs, "ClusterRole", "fleetbus-spoke-work");
    let selector = &work["aggregationRule"]["clusterRoleSelectors"][0]["matchLabels"];
    let defaults = find(&docs, "ClusterRole", "fleetbus-spoke-work-defaults");
    assert_eq!(
        selector["fleetbus.io/aggregate-to-spoke-work"],
        defaults["metadata"]["labels"]["fleetbus.io/aggregate-to-spoke-work"]
    );
}

/// The spoke's argv as the Deployment starts it: command and args, and each environment
/// variable turned into the flag that declares it (so an unknown variable fails the test).
fn spoke_argv(docs: &[(String, Value)]) -> Vec<String> {
    let deployment = find(docs, "Deployment", "fleetbus-spoke");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let mut argv: Vec<String> = container["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .chain(container["args"].as_sequence().unwrap())
        .map(|w| s(w).to_owned())
        .collect();
    let command = fleetbus_spoke::Args::command();
    for var in container["env"].as_sequence().unwrap() {
        let name = s(&var["name"]);
        let from = &var["valueFrom"];
        let value = if let Some(value) = var["value"].as_str() {
            value.to_owned()
        } else if from["configMapKeyRef"].is_mapping() {
            let map = find(docs, "ConfigMap", s(&from["configMapKeyRef"]["name"]));
            s(&map["data"][s(&from["configMapKeyRef"]["key"])]).to_owned()
        } else {
            assert_eq!(s(&from["fieldRef"]["fieldPath"]), "metadata.namespace");
            s(&deployment["metadata"]["namespace"]).to_owned()
        };
        let arg = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name))
            .unwrap_or_else(|| panic!("fleetbus-spoke has no flag for ${name}"));
        argv.push(format!("--{}={value}", arg.get_long().unwrap()));
    }
    argv
}

#[test]
fn the_deployment_runs_the_spoke_with_flags_it_accepts() {
    let docs = manifests();
    let deployment = find(&docs, "Deployment", "fleetbus-spoke");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(s(&pod["serviceAccountName"]), "fleetbus-spoke");
    let argv = spoke_argv(&docs);
    assert_eq!(argv[0], "fleetbus-spoke");
    let config = fleetbus_spoke::Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
        .resolve()
        .unwrap();
    assert_eq!(config.cluster.as_str(), "cluster1");
    assert_eq!(config.kubeconfig, None, "in-cluster config");
    assert_eq!(config.identity_secret.as_deref(), Some(IDENTITY));
    assert_eq!(config.namespace.as_deref(), Some(NS));

    // The probes reach the operations port the spoke serves.
    let container = &pod["containers"][0];
    let metrics = config.metrics_addr.expect("--metrics-addr");
    let port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "metrics")
        .unwrap();
    assert_eq!(port["containerPort"], u64::from(metrics.port()));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(s(&container[probe]["httpGet"]["path"]), path);
        assert_eq!(s(&container[probe]["httpGet"]["port"]), "metrics");
    }

    // The bootstrap Secret is the bootstrap folder; the state folder is writable.
    let mount = |name: &str| {
        let m = container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"));
        PathBuf::from(s(&m["mountPath"]))
    };
    assert_eq!(config.bootstrap.ca, mount("bootstrap").join("ca.crt"));
    assert_eq!(config.spoke_tls().key, mount("state").join("tls.key"));
    let volumes = pod["volumes"].as_sequence().unwrap();
    let bootstrap = volumes.iter().find(|v| v["name"] == "bootstrap").unwrap();
    assert_eq!(s(&bootstrap["secret"]["secretName"]), "fleetbus-bootstrap");
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).unwrap();
    for file in ["ca.crt", "bootstrap.crt", "bootstrap.key"] {
        assert!(
            readme.contains(&format!("--from-file={file}=pki/{file}")),
            "README must create {file}"
        );
    }
    assert!(readme.contains("create secret generic fleetbus-bootstrap"));

    // Non-root, read-only, no privilege escalation.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");

    // The RBAC names what the spoke uses.
    let identity = find(&docs, "Role", "fleetbus-spoke-identity");
    assert_eq!(s(&identity["metadata"]["namespace"]), NS);
    let named: Vec<&str> = identity["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|r| r["resourceNames"].as_sequence())
        .flatten()
        .map(s)
        .collect();
    assert_eq!(named, [IDENTITY, IDENTITY]);
    let msa = find(&docs, "Role", "fleetbus-spoke-msa");
    assert_eq!(s(&msa["metadata"]["namespace"]), config.msa_namespace);
}

/// Server-side applies every manifest, resolving kinds through the apiserver's discovery.
async fn apply(client: &kube::Client, docs: &[(String, Value)]) -> anyhow::Result<()> {
    let discovery = Discovery::new(client.clone()).run().await?;
    for (file, doc) in docs {
        let object: DynamicObject = serde_yaml::from_value(doc.clone())?;
        let types = object.types.clone().context("apiVersion and kind")?;
        let gvk = GroupVersionKind::try_from(&types)?;
        let (resource, caps) = discovery
            .resolve_gvk(&gvk)
            .with_context(|| format!("{file}: the apiserver does not serve {gvk:?}"))?;
        let name = object.metadata.name.clone().context("name")?;
        let api: Api<DynamicObject> = match (&caps.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            &name,
            &PatchParams::apply("fleetbus-test").force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("{file}: {} {name} refused", types.kind))?;
    }
    Ok(())
}

#[tokio::test]
async fn a_kube_apiserver_accepts_every_manifest() -> anyhow::Result<()> {
    fleetbus_nats::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let kube = KubeServer::start(dir.path()).await?;
    let client = kube.admin_client().await?;
    let docs = manifests();
    apply(&client, &docs).await?;
    // No controllers run here: a stored Deployment is what "accepted" means.
    let deployment = Api::<Deployment>::namespaced(client.clone(), NS)
        .get("fleetbus-spoke")
        .await?;
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.containers[0].args.as_ref().unwrap().len(), 5);
    assert_eq!(
        pod.security_context.unwrap().fs_group,
        Some(10001),
        "the group that may read the bootstrap Secret"
    );
    // Applying again changes nothing and is accepted (the manifests are declarative).
    apply(&client, &docs).await?;
    Ok(())
}

/// A kubeconfig for the manifests' service account, whose only rights are the manifests' RBAC.
async fn service_account_kubeconfig(
    kube: &KubeServer,
    dir: &std::path::Path,
) -> anyhow::Result<PathBuf> {
    let client = kube.admin_client().await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer: TokenRequest = Api::<ServiceAccount>::namespaced(client, NS)
        .create_subresource("token", "fleetbus-spoke", &PostParams::default(), &request)
        .await?;
    let token = answer.status.context("no token")?.token;
    let path = dir.join("fleetbus-spoke.kubeconfig");
    fleetbus_nats::files::write_atomic(
        &path,
        kube.kubeconfig_yaml(&token, "fleetbus-spoke").as_bytes(),
        true,
    )?;
    Ok(path)
}

fn serial(path: &std::path::Path) -> Option<String> {
    let pem = std::fs::read_to_string(path).ok()?;
    Some(pki::inspect(&pem).ok()?.serial)
}

async fn stored_serial(secrets: &Api<Secret>) -> Option<String> {
    let secret = secrets.get_opt(IDENTITY).await.ok()??;
    let cert = secret.data?.get("tls.crt")?.0.clone();
    Some(pki::inspect(&String::from_utf8(cert).ok()?).ok()?.serial)
}

fn connected(config: &fleetbus_spoke::Config) -> bool {
    config
        .stats
        .metrics
        .render()
        .contains("fleetbus_spoke_connected 1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_identity_under_the_least_privilege_rbac() -> anyhow::Result<()> {
    let fleet = Fleet::start_with(|c| c.spoke_cert_validity = Duration::from_secs(12)).await?;
    let kube = fleet.kube("cluster1").await?;
    let admin = kube.admin_client().await?;
    let least_privilege: Vec<_> = manifests()
        .into_iter()
        .filter(|(file, _)| file != "rbac-cluster-admin.yaml")
        .collect();
    apply(&admin, &least_privilege).await?;
    let kubeconfig = service_account_kubeconfig(&kube, fleet.nats.dir.path()).await?;

    let replica = |name: &str| -> anyhow::Result<fleetbus_spoke::Config> {
        let mut config = fleet.spoke_config("cluster1", Some(&kube))?;
        config.kubeconfig = Some(kubeconfig.clone());
        config.state_dir = fleet.nats.dir.path().join("replicas").join(name);
        config.identity_secret = Some(IDENTITY.into());
        config.namespace = Some(NS.into());
        config.identity_lease = Duration::from_secs(2);
        config.identity_poll = Duration::from_millis(200);
        Ok(config)
    };
    let (a, b) = (replica("a")?, replica("b")?);
    let spoke_a = fleet.start_spoke(a.clone());
    let spoke_b = fleet.start_spoke(b.clone());

    // One pending join, asked for by the replica that holds the lease.
    eventually("cluster1 pending", WAIT, || async {
        fleet.cluster("cluster1").await.ok()?.map(|_| ())
    })
    .await?;
    assert_eq!(fleet.clusters().await?.len(), 1);
    fleet.cli(&["accept", "cluster1"]).await?;
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;
    let logs = captured_logs();
    assert_eq!(
        logs.matches("holding the identity lease; joining").count(),
        1,
        "exactly one replica joins"
    );
    assert!(logs.contains("another replica holds the identity lease"));

    // One identity: both replicas hold the certificate the Secret holds, and both connect.
    let secrets = Api::<Secret>::namespaced(admin.clone(), NS);
    let (cert_a, cert_b) = (a.spoke_tls().cert, b.spoke_tls().cert);
    let first = eventually("both replicas on the stored certificate", WAIT, || async {
        let stored = stored_serial(&secrets).await?;
        (serial(&cert_a)? == stored && serial(&cert_b)? == stored && connected(&a) && connected(&b))
            .then_some(stored)
    })
    .await?;
    let key_a = std::fs::read(a.spoke_tls().key)?;
    assert_eq!(key_a, std::fs::read(b.spoke_tls().key)?, "one key");

    // A rotation (due at 77 % of 12 s) by one replica is adopted by the other.
    eventually("a rotation adopted by both replicas", WAIT, || async {
        let stored = stored_serial(&secrets).await?;
        (stored != first && serial(&cert_a)? == stored && serial(&cert_b)? == stored).then_some(())
    })
    .await?;
    assert_ne!(
        std::fs::read(a.spoke_tls().key)?,
        key_a,
        "rotation changes the key"
    );
    assert!(captured_logs().contains("adopted the certificate another replica stored"));
    eventually(
        "both replicas connected after the rotation",
        WAIT,
        || async { (connected(&a) && connected(&b)).then_some(()) },
    )
    .await?;
    assert!(!spoke_a.is_finished() && !spoke_b.is_finished());

    // The least-privilege RBAC suffices for a managed service account with rules.
    fleet
        .create_msa_with_rules(
            "dep",
            "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [list]\n",
        )
        .await?;
    fleet.reported_token("dep", "cluster1").await?;
    fleet
        .wait_available("cluster1", ConditionStatus::True, WAIT)
        .await?;
    spoke_a.stop().await?;
    spoke_b.stop().await?;
    Ok(())
}
