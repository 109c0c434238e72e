//! Managed service accounts on a real kube-apiserver: the token is created on the spoke,
//! synced to the hub encrypted, readable only by the admin and granted users, authenticates as
//! the service account, carries its RBAC, rotates, and disappears with the MSA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::{Fleet, captured_logs, eventually};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "open-cluster-management-managed-serviceaccount";
const FORBIDDEN: &str = r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:open-cluster-management-managed-serviceaccount:dep" cannot list resource "pods" in API group "" at the cluster scope"#;

fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

async fn token_ready(fleet: &Fleet, name: &str) -> anyhow::Result<()> {
    eventually(&format!("{name} TOKEN READY True"), WAIT, || async {
        let table = fleet
            .cli(&["get", "msa", name, "--cluster", "cluster1"])
            .await
            .ok()?;
        table
            .lines()
            .nth(1)?
            .split_whitespace()
            .nth(2)
            .filter(|s| *s == "True")
            .map(|_| ())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn msa_with_rules_lists_deployments_and_is_refused_pods() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let _spoke = fleet
        .join(
            fleet.spoke_config("cluster1", Some(&kube))?,
            ConditionStatus::True,
        )
        .await?;

    let created = fleet
        .create_msa_with_rules(
            "dep",
            "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch]\n",
        )
        .await?;
    assert_eq!(
        created,
        "managedserviceaccount dep created on cluster cluster1\n"
    );
    token_ready(&fleet, "dep").await?;
    let yaml = fleet
        .cli(&["get", "msa", "dep", "--cluster", "cluster1", "-o", "yaml"])
        .await?;
    for want in [
        "kind: ManagedServiceAccount",
        "type: SecretCreated",
        "type: TokenReported",
        "expirationTimestamp: 20",
        "lastRefreshTimestamp: 20",
        "validity: 1day",
    ] {
        assert!(yaml.contains(want), "{want} missing in\n{yaml}");
    }

    // The admin's kubeconfig for the token: the seed's example, with the apiserver's own words.
    let kubeconfig = fleet.nats.dir.path().join("dep.kubeconfig");
    std::fs::write(
        &kubeconfig,
        fleet
            .cli(&[
                "get",
                "token",
                "dep",
                "--cluster",
                "cluster1",
                "-o",
                "kubeconfig",
            ])
            .await?,
    )?;
    let (ok, stdout, stderr) = kubectl(&kubeconfig, &["get", "deployments", "-A"]);
    assert!(ok, "kubectl failed: {stdout} {stderr}");
    // kubectl says "No resources found" on stderr when the list is empty.
    assert!(
        stderr.contains("No resources found") || stdout.contains("NAME"),
        "{stdout} {stderr}"
    );
    let (ok, _, stderr) = kubectl(&kubeconfig, &["get", "pods", "-A"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), FORBIDDEN);

    // Only granted users may read the token.
    let denied = fleet
        .cli_as("alice", &["get", "token", "dep", "--cluster", "cluster1"])
        .await
        .unwrap_err();
    assert_eq!(
        denied.to_string(),
        "user alice is not granted managed service account dep on cluster cluster1"
    );
    fleet
        .cli(&["grant", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    let token = fleet
        .cli_as("alice", &["get", "token", "dep", "--cluster", "cluster1"])
        .await?;
    assert!(token.trim().len() > 100);
    assert!(fleet.cli(&["get", "grants"]).await?.contains("alice"));
    fleet
        .cli(&["revoke", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    assert!(
        fleet
            .cli_as("alice", &["get", "token", "dep", "--cluster", "cluster1"])
            .await
            .is_err()
    );

    // The token is in no log line and not in JetStream's files in plain text.
    let token = token.trim();
    assert!(!captured_logs().contains(token), "token in a log line");
    assert!(!captured_logs().is_empty());
    for entry in walk(&fleet.nats.dir.path().join("jetstream")) {
        let bytes = std::fs::read(&entry)?;
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "token in {}",
            entry.display()
        );
    }

    // Delete: the ServiceAccount, its RBAC and the hub's token go.
    fleet
        .cli(&["delete", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    let admin = kube.admin_client().await?;
    eventually("service account and RBAC removed", WAIT, || async {
        let sa = Api::<ServiceAccount>::namespaced(admin.clone(), NS)
            .get_opt("dep")
            .await;
        let role = Api::<ClusterRole>::all(admin.clone())
            .get_opt("fleetbus-msa-dep")
            .await;
        let binding = Api::<ClusterRoleBinding>::all(admin.clone())
            .get_opt("fleetbus-msa-dep")
            .await;
        let (sa, role, binding) = (sa.ok()?, role.ok()?, binding.ok()?);
        (sa.is_none() && role.is_none() && binding.is_none()).then_some(())
    })
    .await?;
    let gone = fleet
        .cli(&["get", "token", "dep", "--cluster", "cluster1"])
        .await
        .unwrap_err();
    assert!(
        gone.to_string().contains("no token has been reported"),
        "{gone}"
    );
    Ok(())
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotate_and_an_offline_spoke_converges() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let mut config = fleet.spoke_config("cluster1", Some(&kube))?;
    // Test-only: refresh at 0.5 % of a 10-minute token, i.e. as often as the floor allows (10 s).
    config.token_refresh_fraction = 0.005;
    let spoke = fleet.join(config.clone(), ConditionStatus::True).await?;
    spoke.stop().await?;

    // Created while the spoke is offline: not ready, and it converges when the spoke returns.
    fleet
        .cli(&[
            "create",
            "msa",
            "dep",
            "--cluster",
            "cluster1",
            "--validity",
            "10m",
        ])
        .await?;
    let table = fleet.cli(&["get", "msa", "--cluster", "cluster1"]).await?;
    assert!(
        table.lines().nth(1).unwrap().contains(" Unknown "),
        "{table}"
    );
    let _spoke = fleet.start_spoke(config);
    token_ready(&fleet, "dep").await?;

    let first = fleet
        .cli(&["get", "token", "dep", "--cluster", "cluster1"])
        .await?;
    let second = eventually("a rotated token", Duration::from_secs(40), || async {
        let now = fleet
            .cli(&["get", "token", "dep", "--cluster", "cluster1"])
            .await
            .ok()?;
        (now != first).then_some(now)
    })
    .await?;
    // The new token authenticates as the service account (which has no RBAC: Forbidden, not Unauthorized).
    let kubeconfig = fleet.nats.dir.path().join("rotated.kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig_yaml(second.trim(), "dep"))?;
    let (_, _, stderr) = kubectl(&kubeconfig, &["get", "pods", "-A"]);
    assert_eq!(stderr.trim(), FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn bad_msa_requests_are_clear_errors() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let err = |args: &'static [&'static str]| {
        let fleet = &fleet;
        async move { fleet.cli(args).await.unwrap_err().to_string() }
    };
    assert_eq!(
        err(&["create", "msa", "dep", "--cluster", "nowhere"]).await,
        "cluster nowhere has not asked to join"
    );
    fleet.accepted_spoke("cluster1").await?;
    assert!(
        err(&[
            "create",
            "msa",
            "dep",
            "--cluster",
            "cluster1",
            "--validity",
            "5m"
        ])
        .await
        .contains("between 10m and 730d")
    );
    assert!(
        err(&[
            "create",
            "msa",
            "dep",
            "--cluster",
            "cluster1",
            "--validity",
            "100000d"
        ])
        .await
        .contains("between 10m and 730d")
    );
    assert!(
        err(&["create", "msa", "Dep.1", "--cluster", "cluster1"])
            .await
            .contains("invalid service account name")
    );
    let e = fleet
        .create_msa_with_rules("dep", "- verbs: [get]\n  resorces: [pods]\n")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("resorces"), "{e}");
    fleet
        .cli(&["create", "msa", "dep", "--cluster", "cluster1"])
        .await?;
    assert!(
        err(&["create", "msa", "dep", "--cluster", "cluster1"])
            .await
            .contains("already exists")
    );
    let denied = fleet
        .cli_as("bob", &["create", "msa", "x", "--cluster", "cluster1"])
        .await
        .unwrap_err();
    assert_eq!(denied.to_string(), "user bob is not a hub admin");
    assert!(
        err(&["delete", "msa", "nope", "--cluster", "cluster1"])
            .await
            .contains("not found")
    );
    Ok(())
}
