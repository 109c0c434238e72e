//! Spoke configuration: flags with `FLEETBUS_*` environment fallbacks, resolved into a plain
//! [`Config`] before anything connects.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fleetbus_nats::TlsFiles;
use fleetbus_schema::{ClusterName, Subjects};

/// `fleetbus-spoke` flags.
#[derive(Debug, Parser)]
#[command(
    name = "fleetbus-spoke",
    version,
    about = "The fleetbus agent in a managed cluster"
)]
pub struct Args {
    /// Name of this managed cluster (a DNS-1123 label).
    #[arg(long, env = "FLEETBUS_CLUSTER_NAME")]
    pub cluster_name: String,
    /// nats-server URL of the hub.
    #[arg(
        long,
        env = "FLEETBUS_NATS_URL",
        default_value = "tls://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Folder with ca.crt, bootstrap.crt and bootstrap.key (used only to ask to join).
    #[arg(long, env = "FLEETBUS_BOOTSTRAP_DIR")]
    pub bootstrap_dir: PathBuf,
    /// Where the spoke keeps its key and the certificate the hub signed.
    #[arg(
        long,
        env = "FLEETBUS_STATE_DIR",
        default_value = "/var/lib/fleetbus-spoke"
    )]
    pub state_dir: PathBuf,
    /// kubeconfig of this cluster; in-cluster config or $KUBECONFIG when absent.
    #[arg(long, env = "FLEETBUS_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Keep key and certificate in this Secret (and take the Lease of the same name to join or
    /// rotate), so that replicas share one identity. The state folder then only mirrors it.
    #[arg(long, env = "FLEETBUS_IDENTITY_SECRET")]
    pub identity_secret: Option<String>,
    /// Namespace of the identity Secret and Lease; the pod's own namespace when absent.
    #[arg(long, env = "FLEETBUS_NAMESPACE")]
    pub namespace: Option<String>,
    /// Subject prefix of the fleet.
    #[arg(long, env = "FLEETBUS_SUBJECT_PREFIX", default_value = "fleet")]
    pub subject_prefix: String,
    /// Labels reported as cluster claims (`k=v,k2=v2`).
    #[arg(long, env = "FLEETBUS_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Heartbeat period.
    #[arg(long, env = "FLEETBUS_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// How often a pending spoke asks again whether it was accepted.
    #[arg(long, env = "FLEETBUS_JOIN_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub join_interval: Duration,
    /// Namespace of managed service accounts.
    #[arg(
        long,
        env = "FLEETBUS_MSA_NAMESPACE",
        default_value = "open-cluster-management-managed-serviceaccount"
    )]
    pub msa_namespace: String,
    /// Namespace where the spoke records what each ManifestWork applied (one ConfigMap per work).
    #[arg(
        long,
        env = "FLEETBUS_WORK_NAMESPACE",
        default_value = "fleetbus-agent"
    )]
    pub work_namespace: String,
    /// Serve /metrics, /healthz and /readyz here (for example 0.0.0.0:9090).
    #[arg(long, env = "FLEETBUS_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, env = "FLEETBUS_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
}

/// Resolved spoke configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// This cluster.
    pub cluster: ClusterName,
    /// nats-server URL.
    pub nats_url: String,
    /// Bootstrap identity files.
    pub bootstrap: TlsFiles,
    /// State folder.
    pub state_dir: PathBuf,
    /// kubeconfig, if not in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The Secret (and Lease) of a shared identity, if replicas share one.
    pub identity_secret: Option<String>,
    /// Their namespace; the Kubernetes client's default namespace when `None`.
    pub namespace: Option<String>,
    /// How long the identity Lease lasts without renewal (15 s; tests shorten it).
    pub identity_lease: Duration,
    /// How often replicas look for an identity another replica stored (5 s).
    pub identity_poll: Duration,
    /// Subject builder.
    pub subjects: Subjects,
    /// Cluster labels.
    pub labels: BTreeMap<String, String>,
    /// Heartbeat period.
    pub heartbeat_interval: Duration,
    /// Join poll period.
    pub join_interval: Duration,
    /// Renew the certificate after this fraction of its lifetime (0.77: 23 % left).
    pub renew_fraction: f64,
    /// Namespace of managed service accounts.
    pub msa_namespace: String,
    /// Namespace of the applied-work records.
    pub work_namespace: String,
    /// Refresh MSA tokens after this fraction of their actual lifetime (0.8; tests shorten it).
    pub token_refresh_fraction: f64,
    /// Live counters of this spoke, for whoever observes it.
    pub stats: std::sync::Arc<Stats>,
    /// Where to serve operations endpoints, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Live counters of a running spoke.
#[derive(Default)]
pub struct Stats {
    /// Tunnel streams open now.
    pub active_streams: std::sync::atomic::AtomicUsize,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<fleetbus_nats::ops::Metrics>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats")
            .field("active_streams", &self.active_streams)
            .finish_non_exhaustive()
    }
}

impl Stats {
    /// Counters with their descriptions.
    pub fn new() -> Self {
        let stats = Self::default();
        let m = &stats.metrics;
        m.describe(
            "fleetbus_spoke_connected",
            "gauge",
            "1 while connected to the hub with the cluster identity.",
        );
        m.describe(
            "fleetbus_spoke_tunnel_streams",
            "gauge",
            "Kubernetes API tunnel streams open now.",
        );
        m.describe(
            "fleetbus_spoke_tunnel_requests_total",
            "counter",
            "Proxied requests by status code.",
        );
        m.describe(
            "fleetbus_spoke_tunnel_bytes_total",
            "counter",
            "Response bytes sent through the tunnel.",
        );
        m.describe(
            "fleetbus_spoke_tunnel_latency_seconds_sum",
            "counter",
            "Total duration of proxied requests.",
        );
        m.describe(
            "fleetbus_spoke_tunnel_latency_seconds_count",
            "counter",
            "Proxied requests timed.",
        );
        stats
    }
}

impl Args {
    /// Checks the flags and resolves them.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let mut labels = BTreeMap::new();
        for label in self.labels.iter().filter(|l| !l.is_empty()) {
            let (k, v) = label
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("label {label:?} is not key=value"))?;
            labels.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            anyhow::bail!("--heartbeat-interval must be at least 100ms");
        }
        let mut config = Config::new(
            ClusterName::new(self.cluster_name)?,
            self.nats_url,
            self.bootstrap_dir,
            self.state_dir,
            Subjects::new(&self.subject_prefix)?,
        );
        config.kubeconfig = self.kubeconfig;
        for name in self.identity_secret.iter().chain(&self.namespace) {
            fleetbus_schema::names::validate_label("name", name)?;
        }
        config.identity_secret = self.identity_secret;
        config.namespace = self.namespace;
        config.labels = labels;
        config.heartbeat_interval = self.heartbeat_interval;
        config.join_interval = self.join_interval;
        fleetbus_schema::names::validate_label("namespace", &self.msa_namespace)?;
        config.msa_namespace = self.msa_namespace;
        fleetbus_schema::names::validate_label("namespace", &self.work_namespace)?;
        config.work_namespace = self.work_namespace;
        config.metrics_addr = self.metrics_addr;
        Ok(config)
    }
}

impl Config {
    /// Defaults for `cluster` (tests and local-up start from here).
    pub fn new(
        cluster: ClusterName,
        nats_url: String,
        bootstrap_dir: PathBuf,
        state_dir: PathBuf,
        subjects: Subjects,
    ) -> Self {
        Self {
            cluster,
            nats_url,
            bootstrap: TlsFiles {
                ca: bootstrap_dir.join("ca.crt"),
                cert: bootstrap_dir.join("bootstrap.crt"),
                key: bootstrap_dir.join("bootstrap.key"),
            },
            state_dir,
            kubeconfig: None,
            identity_secret: None,
            namespace: None,
            identity_lease: Duration::from_secs(15),
            identity_poll: Duration::from_secs(5),
            subjects,
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(1),
            join_interval: Duration::from_secs(2),
            renew_fraction: 0.77,
            msa_namespace: "open-cluster-management-managed-serviceaccount".into(),
            work_namespace: "fleetbus-agent".into(),
            token_refresh_fraction: 0.8,
            stats: std::sync::Arc::new(Stats::new()),
            metrics_addr: None,
        }
    }

    /// The spoke's own TLS files in the state folder.
    pub fn spoke_tls(&self) -> TlsFiles {
        TlsFiles {
            ca: self.bootstrap.ca.clone(),
            cert: self.state_dir.join("tls.crt"),
            key: self.state_dir.join("tls.key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec![
            "fleetbus-spoke",
            "--cluster-name",
            "cluster1",
            "--bootstrap-dir",
            "/b",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)?.resolve()
    }

    #[test]
    fn defaults_and_labels() {
        let c = parse(&["--labels", "env=dev,region=eu"]).unwrap();
        assert_eq!(c.cluster.as_str(), "cluster1");
        assert_eq!(c.labels["region"], "eu");
        assert_eq!(c.bootstrap.cert, PathBuf::from("/b/bootstrap.crt"));
        assert_eq!(
            c.spoke_tls().key,
            PathBuf::from("/var/lib/fleetbus-spoke/tls.key")
        );
        assert_eq!(c.identity_secret, None);
    }

    #[test]
    fn identity_secret_and_namespace() {
        let c = parse(&[
            "--identity-secret",
            "spoke-id",
            "--namespace",
            "fleetbus-spoke",
        ])
        .unwrap();
        assert_eq!(c.identity_secret.as_deref(), Some("spoke-id"));
        assert_eq!(c.namespace.as_deref(), Some("fleetbus-spoke"));
        assert!(parse(&["--identity-secret", "Spoke_ID"]).is_err());
        assert!(parse(&["--namespace", "a.b"]).is_err());
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            vec![
                "fleetbus-spoke",
                "--cluster-name",
                "Cluster.1",
                "--bootstrap-dir",
                "/b",
            ],
            vec![
                "fleetbus-spoke",
                "--cluster-name",
                "c1",
                "--bootstrap-dir",
                "/b",
                "--labels",
                "novalue",
            ],
            vec![
                "fleetbus-spoke",
                "--cluster-name",
                "c1",
                "--bootstrap-dir",
                "/b",
                "--heartbeat-interval",
                "1ms",
            ],
        ] {
            assert!(
                Args::try_parse_from(bad)
                    .map_err(anyhow::Error::from)
                    .and_then(Args::resolve)
                    .is_err()
            );
        }
    }
}
