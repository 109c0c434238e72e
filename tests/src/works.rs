//! Helpers for ManifestWork tests: writing a work file and creating it through the CLI, reading
//! a work as JSON, one cluster on a real apiserver, and ConfigMaps to apply and look at.

use kube::Api;
use serde_json::Value;

use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_schema::v1::ConditionStatus;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::fleet::{Fleet, Running};

/// Writes `text` to a file in the test folder and runs `create work NAME --cluster C -f F ...`.
pub async fn create_work(
    fleet: &Fleet,
    name: &str,
    cluster: &str,
    text: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let path = fleet
        .nats
        .dir
        .path()
        .join(format!("{name}-{}.yaml", rand::random::<u32>()));
    std::fs::write(&path, text)?;
    let path = path.display().to_string();
    let mut args = vec!["create", "work", name, "--cluster", cluster, "-f", &path];
    args.extend_from_slice(extra);
    fleet.cli(&args).await
}

/// `get work NAME -o json`.
pub async fn work_json(fleet: &Fleet, name: &str, cluster: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(
        &fleet
            .cli(&["get", "work", name, "--cluster", cluster, "-o", "json"])
            .await?,
    )?)
}

/// The condition `kind` in a JSON conditions list.
pub fn condition<'a>(conditions: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == kind)
}

/// A fleet with one accepted spoke `name` on its own kube-apiserver.
pub async fn one_cluster(name: &str) -> anyhow::Result<(Fleet, KubeServer, Running)> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube(name).await?;
    joined(fleet, kube, name).await
}

/// [`one_cluster`] with a real node: pods run.
pub async fn one_cluster_with_node(name: &str) -> anyhow::Result<(Fleet, KubeServer, Running)> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube_with_node(name).await?;
    joined(fleet, kube, name).await
}

async fn joined(
    fleet: Fleet,
    kube: KubeServer,
    name: &str,
) -> anyhow::Result<(Fleet, KubeServer, Running)> {
    let spoke = fleet
        .join(
            fleet.spoke_config(name, Some(&kube))?,
            ConditionStatus::True,
        )
        .await?;
    Ok((fleet, kube, spoke))
}

/// A ConfigMap `name` in `default` with `k: data`, as YAML.
pub fn config_map(name: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\ndata:\n  k: {data}\n"
    )
}

/// `data.k` of ConfigMap `name` in `default`, if it exists.
pub async fn data_of(kube: &KubeServer, name: &str) -> Option<String> {
    let cms: Api<ConfigMap> = Api::namespaced(kube.admin_client().await.ok()?, "default");
    cms.get_opt(name).await.ok()?.map(|cm| {
        cm.data
            .unwrap_or_default()
            .get("k")
            .cloned()
            .unwrap_or_default()
    })
}
