//! `fleetbus proxy kubectl|serve|health`: kubectl against any cluster through the NATS tunnel,
//! with the managed service account's token the hub hands out to granted users.

pub mod commands;
pub mod local;
pub mod mux;
pub mod tunnel;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use fleetbus_schema::v1::{MsaRef, TokenReply};
use fleetbus_schema::{ApiEndpoint, ClusterName};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::cli::HubFlags;
use crate::hub_client::HubClient;
use local::LocalProxy;
use tunnel::Tunnel;

/// The prompt text of interactive mode (as clusteradm's).
pub const INTERACTIVE_BANNER: &str =
    "Please enter the kubectl command and use \"exit\" to quit the interactive mode";

/// How often a running proxy fetches the (rotating) token again.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A running local proxy to one cluster as one managed service account.
pub struct Session {
    /// `127.0.0.1:<port>`.
    pub addr: std::net::SocketAddr,
    ca_pem: String,
    proxy: Arc<LocalProxy>,
    stop: CancellationToken,
    _hub: Arc<HubClient>,
}

impl Session {
    /// Gets the token (only for granted users), opens the loopback listener and starts serving.
    pub async fn start(hub: &HubFlags, cluster: &str, sa: &str, port: u16) -> anyhow::Result<Self> {
        let cluster = ClusterName::new(cluster)?;
        let hub = Arc::new(HubClient::connect(hub).await?);
        let token = fetch_token(&hub, &cluster, sa).await?;
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let proxy = Arc::new(LocalProxy {
            tunnel: Tunnel::new(
                hub.nats().clone(),
                hub.subjects().clone(),
                cluster.clone(),
                hub.user().clone(),
            )
            .with_service_account(sa),
            token: Arc::new(RwLock::new(Some(token))),
            secret: local::new_secret(),
            broken: std::sync::Mutex::default(),
        });
        let stop = CancellationToken::new();
        let addr = listener.local_addr()?;
        let (tls, ca_pem) = local::tls()?;
        tokio::spawn(local::serve(listener, tls, proxy.clone(), stop.clone()));
        tokio::spawn(refresh_token(
            hub.clone(),
            cluster,
            sa.to_owned(),
            proxy.token.clone(),
            stop.clone(),
        ));
        Ok(Self {
            addr,
            ca_pem,
            proxy,
            stop,
            _hub: hub,
        })
    }

    /// The CA (PEM) that the session's certificate is issued by.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token local clients present (not the managed service account's).
    pub fn secret(&self) -> &str {
        &self.proxy.secret
    }

    /// Why the last upgraded session the tunnel broke ended, if one did since the last call.
    pub fn take_broken(&self) -> Option<String> {
        self.proxy
            .broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// A kubeconfig for this session (it holds the session secret, not the real token).
    pub fn kubeconfig(&self, cluster: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: fleetbus-proxy\n  user:\n    token: {}\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: fleetbus-proxy\ncurrent-context: {cluster}\n",
            self.addr, self.proxy.secret
        )
    }

    /// Writes the kubeconfig 0600.
    pub fn write_kubeconfig(&self, cluster: &str, path: &Path) -> anyhow::Result<()> {
        fleetbus_nats::files::write_atomic(path, self.kubeconfig(cluster).as_bytes(), true)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fetch_token(hub: &HubClient, cluster: &ClusterName, sa: &str) -> anyhow::Result<String> {
    let reply: TokenReply = hub
        .call(
            ApiEndpoint::TokenGet,
            &MsaRef {
                cluster: cluster.to_string(),
                name: sa.to_owned(),
            },
        )
        .await?;
    Ok(reply.token)
}

async fn refresh_token(
    hub: Arc<HubClient>,
    cluster: ClusterName,
    sa: String,
    slot: Arc<RwLock<Option<String>>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TOKEN_REFRESH) => {}
        }
        match fetch_token(&hub, &cluster, &sa).await {
            Ok(token) => {
                *slot
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the token; keeping the current one")
            }
        }
    }
}
