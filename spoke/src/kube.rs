//! What the spoke asks its own kube-apiserver for now: its version (a cluster claim) and
//! whether it is ready (the `Available` condition).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// A client for the local kube-apiserver.
#[derive(Clone)]
pub struct Kube {
    /// The client.
    pub client: kube::Client,
    /// The apiserver URL as this spoke reaches it.
    pub server: String,
    /// The apiserver's CA bundle (PEM), empty when the system roots are used.
    pub ca_pem: String,
}

impl Kube {
    /// From a kubeconfig file, or in-cluster / `$KUBECONFIG` when `None`.
    pub async fn connect(kubeconfig: Option<&Path>) -> anyhow::Result<Self> {
        let config = match kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(
                    file,
                    &kube::config::KubeConfigOptions::default(),
                )
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
            }
            None => kube::Config::infer()
                .await
                .context("no kubeconfig given and no in-cluster config found")?,
        };
        let server = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_owned();
        let ca_pem = config
            .root_cert
            .iter()
            .flatten()
            .map(|der| pem("CERTIFICATE", der))
            .collect();
        let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
        Ok(Self {
            client,
            server,
            ca_pem,
        })
    }

    /// The apiserver's `gitVersion`.
    pub async fn version(&self) -> Result<String, String> {
        tokio::time::timeout(Duration::from_secs(3), self.client.apiserver_version())
            .await
            .map_err(|_| "kube-apiserver did not answer /version in time".to_owned())?
            .map(|info| info.git_version)
            .map_err(|e| e.to_string())
    }

    /// `Ok(())` if `/readyz` answers ok, else why not.
    pub async fn ready(&self) -> Result<(), String> {
        let request = http::Request::get("/readyz")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let answer =
            tokio::time::timeout(Duration::from_secs(2), self.client.request_text(request))
                .await
                .map_err(|_| "kube-apiserver did not answer /readyz in time".to_owned())?;
        match answer {
            Ok(body) if body.trim() == "ok" => Ok(()),
            Ok(body) => Err(format!("/readyz: {}", body.trim())),
            Err(e) => Err(format!("/readyz: {e}")),
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
