//! The fleet the tunnel tests share: cluster1 on a real apiserver with a spoke, the managed
//! service account `dep` granted to alice, and helpers to reach it through the tunnel.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_cli::proxy::tunnel::Tunnel;
use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::ConditionStatus;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

use crate::{Fleet, eventually};

/// Creates `count` ConfigMaps `<prefix>-N` in `default` of ~`4 * repeat` bytes each, and
/// returns the path of their LIST and its body read directly from the apiserver.
pub async fn big_configmaps(
    kube: &KubeServer,
    prefix: &str,
    count: usize,
    repeat: usize,
) -> anyhow::Result<(&'static str, String)> {
    let admin = kube.admin_client().await?;
    let configmaps = Api::<ConfigMap>::namespaced(admin.clone(), "default");
    for i in 0..count {
        let mut data = std::collections::BTreeMap::new();
        data.insert("blob".to_owned(), format!("{i:04}").repeat(repeat));
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("{prefix}-{i}")),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        configmaps.create(&PostParams::default(), &cm).await?;
    }
    let path = "/api/v1/namespaces/default/configmaps";
    let direct = admin
        .request_text(
            http::Request::get(path)
                .header("accept", "application/json")
                .body(Vec::new())?,
        )
        .await?;
    Ok((path, direct))
}

/// A fleet with cluster1 on a real apiserver, accepted, and MSA `dep` that may list deployments
/// and configmaps, granted to alice.
pub struct Seed {
    /// nats-server and the hub.
    pub fleet: Fleet,
    /// cluster1's apiserver.
    pub kube: KubeServer,
    /// cluster1's spoke.
    pub spoke: crate::fleet::Running,
    /// The spoke's counters.
    pub stats: std::sync::Arc<fleetbus_spoke::config::Stats>,
}

impl Seed {
    /// Tunnel streams the spoke holds open.
    pub fn streams(&self) -> usize {
        self.stats.active_streams.load(Ordering::Relaxed)
    }
}

/// Waits up to `within` until the spoke whose counters are `stats` holds no tunnel stream.
pub async fn no_stream_left(
    stats: &fleetbus_spoke::config::Stats,
    within: Duration,
) -> anyhow::Result<()> {
    eventually("the spoke holds no stream", within, || async {
        (stats.active_streams.load(Ordering::Relaxed) == 0).then_some(())
    })
    .await
}

/// Starts the shared fleet.
pub async fn seed() -> anyhow::Result<Seed> {
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let stats = config.stats.clone();
    let spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet
        .create_msa_with_rules("dep", "- apiGroups: [apps]\n  resources: [deployments]\n  verbs: [get, list, watch]\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch]\n")
        .await?;
    fleet.reported_token("dep", "cluster1").await?;
    fleet
        .cli(&["grant", "alice", "--cluster", "cluster1", "--msa", "dep"])
        .await?;
    Ok(Seed {
        fleet,
        kube,
        spoke,
        stats,
    })
}

/// A tunnel to cluster1 over `user`'s own hub connection.
pub async fn tunnel_as(fleet: &Fleet, user: &str) -> anyhow::Result<(HubClient, Tunnel)> {
    let hub = HubClient::connect(&fleet.flags_for(user)?).await?;
    let tunnel = Tunnel::new(
        hub.nats().clone(),
        hub.subjects().clone(),
        ClusterName::new("cluster1")?,
        hub.user().clone(),
    );
    Ok((hub, tunnel))
}

/// A GET of `path` with `token` as its bearer token.
pub fn get(path: &str, token: &str) -> anyhow::Result<http::request::Parts> {
    let request = http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .body(())?;
    Ok(request.into_parts().0)
}
