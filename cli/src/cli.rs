//! The command line, clusteradm-like. Every flag has a `FLEETBUS_*` environment fallback, so
//! `source .fleetbus/local/env.sh` points the CLI at a local hub.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fleetbus_schema::RequestId;

/// fleetbus: manage Kubernetes clusters in private networks over NATS.
#[derive(Debug, Parser)]
#[command(name = "fleetbus", version)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the fleet PKI and issue identities.
    Certs {
        /// What to create.
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Show objects (`clusters`).
    Get {
        /// What to show.
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Create objects (`msa`).
    Create {
        /// What to create.
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// Let a user read a managed service account's token (and use it through the proxy).
    Grant {
        /// User name.
        user: String,
        /// Cluster of the managed service account.
        #[arg(long)]
        cluster: String,
        /// Managed service account name.
        #[arg(long)]
        msa: String,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Take a grant away.
    Revoke {
        /// User name.
        user: String,
        /// Cluster of the managed service account.
        #[arg(long)]
        cluster: String,
        /// Managed service account name.
        #[arg(long)]
        msa: String,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Accept clusters that asked to join (they get their certificate).
    Accept {
        /// Cluster names.
        #[arg(required = true)]
        clusters: Vec<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Deny clusters (an accepted cluster loses its access at once).
    Deny {
        /// Cluster names.
        #[arg(required = true)]
        clusters: Vec<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Delete objects (`cluster`).
    Delete {
        /// What to delete.
        #[command(subcommand)]
        what: DeleteCommand,
    },
    /// Show who the hub thinks you are.
    Whoami {
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// kubectl against a cluster through the NATS tunnel, as a managed service account.
    Proxy {
        /// What to run.
        #[command(subcommand)]
        command: ProxyCommand,
    },
    /// Read the audit stream.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Run a hub with two spokes and two kube-apiservers on this machine.
    LocalUp(crate::local::up::LocalUpArgs),
    /// Cluster sets (`clusterset set C… --clusterset S`).
    Clusterset {
        /// What to do.
        #[command(subcommand)]
        command: crate::placement::ClustersetCommand,
    },
    /// Set or remove labels (`label cluster C k=v k2-`).
    Label {
        /// What to label.
        #[command(subcommand)]
        what: crate::placement::LabelCommand,
    },
}

/// `fleetbus proxy …`
#[derive(Debug, Subcommand)]
pub enum ProxyCommand {
    /// Run one kubectl command (`-- get pods -A`) or an interactive prompt (`-i`).
    Kubectl {
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Managed service account whose token to use.
        #[arg(long)]
        sa: String,
        /// Interactive mode: a `kubectl>` prompt, one command per line, `exit` to quit.
        #[arg(short, long)]
        interactive: bool,
        /// The kubectl arguments, after `--`.
        #[arg(last = true)]
        args: Vec<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Keep a loopback endpoint open and write a kubeconfig any client can use.
    Serve {
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Managed service account whose token to use.
        #[arg(long)]
        sa: String,
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the kubeconfig (0600); default `<cluster>-<sa>.kubeconfig`.
        #[arg(long)]
        kubeconfig_out: Option<PathBuf>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Check each cluster's tunnel with a /healthz round trip.
    Health {
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// `fleetbus audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Replay events and follow new ones, one line each.
    Tail {
        /// Only events about this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Only events by this user.
        #[arg(long)]
        user: Option<String>,
        /// Only this kind (`proxy`) or type (`proxy.request`, `cluster.accept`, `token.read`).
        #[arg(long = "type")]
        kind: Option<String>,
        /// Start this long ago (`1h`); default: everything kept.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Without --follow: stop after this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Keep following new events.
        #[arg(short, long)]
        follow: bool,
        /// `text` or `json` (one object per line).
        #[arg(short, long, default_value = "text", value_parser = ["text", "json"])]
        output: String,
        /// Read through this durable subscription: each event is acknowledged once shown, and
        /// the next tail with the same name resumes after it. `--type`, `--cluster` and
        /// `--since` apply when it is created.
        #[arg(long, env = "FLEETBUS_AUDIT_DURABLE")]
        durable: Option<String>,
        /// NATS connection (an auditor certificate).
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Forget a durable subscription (`tail --durable NAME`) and its position.
    DeleteDurable {
        /// The subscription's name.
        name: String,
        /// NATS connection (an auditor certificate).
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// `fleetbus certs …`
#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a new fleet CA, the nats-server, hub, bootstrap and admin certificates.
    Init {
        /// Folder to write (must not hold a CA yet).
        #[arg(long, env = "FLEETBUS_PKI_DIR")]
        dir: PathBuf,
        /// Extra DNS names of nats-server.
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// Extra IP addresses of nats-server.
        #[arg(long = "server-ip")]
        server_ips: Vec<IpAddr>,
        /// Name of the first admin user.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Lifetime of the bootstrap certificate.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        bootstrap_validity: Duration,
    },
    /// Issue a user certificate (users/NAME.crt, users/NAME.key).
    User {
        /// User name.
        name: String,
        /// PKI folder holding the CA.
        #[arg(long, env = "FLEETBUS_PKI_DIR")]
        dir: PathBuf,
        /// Lifetime.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        validity: Duration,
    },
    /// Issue an auditor certificate (auditors/NAME.crt, auditors/NAME.key).
    Auditor {
        /// Auditor name.
        name: String,
        /// PKI folder holding the CA.
        #[arg(long, env = "FLEETBUS_PKI_DIR")]
        dir: PathBuf,
        /// Lifetime.
        #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
        validity: Duration,
    },
    /// Issue a certificate for another nats-server, such as a leaf node in a spoke's network
    /// (servers/NAME.crt, servers/NAME.key).
    Server {
        /// The DNS name clients dial.
        name: String,
        /// PKI folder holding the CA.
        #[arg(long, env = "FLEETBUS_PKI_DIR")]
        dir: PathBuf,
        /// IP addresses clients may dial too.
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// Lifetime.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        validity: Duration,
    },
}

/// `fleetbus get …`
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// ManifestWorks with their status.
    #[command(alias = "manifestwork", alias = "works")]
    Work {
        /// One work (needs --cluster or --placement).
        name: Option<String>,
        /// Only this cluster's works.
        #[arg(long, default_value = "")]
        cluster: String,
        /// The ManifestWorkReplicaSet NAME of this placement, with its rollout.
        #[arg(long, conflicts_with = "cluster", requires = "name")]
        placement: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Managed service accounts with their token status.
    #[command(alias = "managedserviceaccount")]
    Msa {
        /// Only this one.
        name: Option<String>,
        /// Only this cluster.
        #[arg(long, default_value = "")]
        cluster: String,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// A managed service account's token (admin, or a granted user).
    Token {
        /// Managed service account name.
        name: String,
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Print the token or a kubeconfig.
        #[arg(short, long, value_enum, default_value = "token")]
        output: TokenOutput,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Every certificate and token with its expiry; flags those with < 20 % of life left.
    Credentials {
        /// Also list the certificates in this PKI folder (CA, nats-server, hub, users, …).
        #[arg(long, env = "FLEETBUS_PKI_DIR")]
        dir: Option<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Who may read which token.
    Grants {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Placements with their decisions.
    #[command(alias = "placements")]
    Placement(crate::placement::GetPlacementArgs),
    /// Cluster sets with their sizes.
    #[command(alias = "clusterset", alias = "managedclustersets")]
    Clustersets(crate::placement::GetClustersetsArgs),
    /// ManifestWorkReplicaSets with their rollout.
    #[command(alias = "worksets", alias = "manifestworkreplicaset", alias = "mwrs")]
    Workset(crate::workset::GetWorkSetArgs),
    /// Managed clusters with their acceptance and availability.
    #[command(alias = "cluster")]
    Clusters {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// `fleetbus create …`
#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// A ManifestWork: Kubernetes objects (or one OCM ManifestWork) the cluster must have;
    /// with --placement (or an OCM ManifestWorkReplicaSet file) one for every cluster the
    /// placement selects, rolled out as --rollout says.
    #[command(alias = "manifestwork")]
    Work {
        /// Work name (a DNS-1123 label).
        name: String,
        /// Cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// A ManifestWorkReplicaSet over the clusters this placement selects.
        #[arg(long, conflicts_with = "cluster")]
        placement: Option<String>,
        /// How the ManifestWorkReplicaSet rolls out.
        #[command(flatten)]
        rollout: crate::workset::RolloutFlags,
        /// YAML or JSON file of objects or a ManifestWork; `-` reads stdin.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        /// Update the work if it exists (a new generation when anything changed).
        #[arg(long)]
        overwrite: bool,
        /// Waiting for the cluster's report.
        #[command(flatten)]
        wait: WaitFlags,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// A managed service account: a ServiceAccount on the cluster whose rotated token the hub
    /// keeps (OCM managed-serviceaccount), optionally with its RBAC rules.
    #[command(alias = "managedserviceaccount")]
    Msa {
        /// Name (DNS-1123 label).
        name: String,
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Token lifetime asked of the TokenRequest API (10m … 730d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        validity: Duration,
        /// Delete the MSA this long after creation.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl_after_creation: Option<Duration>,
        /// RBAC rules for the service account (a list of rules, or a ClusterRole/Role YAML).
        #[arg(long)]
        rules_file: Option<PathBuf>,
        /// Grant the rules in this namespace only (Role + RoleBinding) instead of cluster-wide.
        #[arg(long, requires = "rules_file")]
        rules_namespace: Option<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// A cluster set (OCM ManagedClusterSet); `clusterset set` puts clusters in it.
    #[command(alias = "managedclusterset")]
    Clusterset(crate::placement::NamedArgs),
    /// A Placement (OCM cluster v1beta1): which clusters a ManifestWorkReplicaSet reaches.
    Placement(crate::placement::CreatePlacementArgs),
}

/// What `get token` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenOutput {
    /// The bearer token.
    Token,
    /// A kubeconfig with the token and the cluster's CA.
    Kubeconfig,
}

/// `fleetbus delete …`
#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// A ManifestWork; the cluster removes its resources as its deleteOption says.
    #[command(alias = "manifestwork")]
    Work {
        /// Work name.
        name: String,
        /// Cluster.
        #[arg(long, required_unless_present = "placement")]
        cluster: Option<String>,
        /// The ManifestWorkReplicaSet of this placement: every cluster's work goes.
        #[arg(long, conflicts_with = "cluster")]
        placement: Option<String>,
        /// Waiting until the cluster has removed the resources.
        #[command(flatten)]
        wait: WaitFlags,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Remove a managed service account: its ServiceAccount, RBAC and hub token.
    #[command(alias = "managedserviceaccount")]
    Msa {
        /// Name.
        name: String,
        /// Cluster.
        #[arg(long)]
        cluster: String,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// Remove clusters from the hub; their identity stops working at once.
    #[command(alias = "clusters")]
    Cluster {
        /// Cluster names.
        #[arg(required = true)]
        clusters: Vec<String>,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
    /// A Placement no ManifestWorkReplicaSet uses.
    #[command(alias = "placements")]
    Placement(crate::placement::NamedArgs),
    /// An empty cluster set no placement uses.
    #[command(alias = "managedclusterset")]
    Clusterset(crate::placement::NamedArgs),
    /// A ManifestWorkReplicaSet: every work it generated is removed, then the set.
    #[command(alias = "manifestworkreplicaset", alias = "mwrs")]
    Workset {
        /// Name.
        name: String,
        /// Waiting until every cluster has removed the resources.
        #[command(flatten)]
        wait: WaitFlags,
        /// Hub connection.
        #[command(flatten)]
        hub: HubFlags,
    },
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable table.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `--wait` for commands whose result a cluster reports.
#[derive(Debug, Clone, Args)]
pub struct WaitFlags {
    /// Wait until the cluster reports the result (non-zero exit on failure or timeout).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
}

impl WaitFlags {
    /// How long to wait, if at all.
    pub fn timeout(&self) -> Option<Duration> {
        self.wait.then_some(self.wait_timeout)
    }
}

/// How to reach the hub API.
#[derive(Debug, Clone, Args)]
pub struct HubFlags {
    /// nats-server URL.
    #[arg(
        long,
        env = "FLEETBUS_NATS_URL",
        default_value = "tls://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Fleet CA certificate.
    #[arg(long, env = "FLEETBUS_CA")]
    pub ca: PathBuf,
    /// Your user certificate.
    #[arg(long, env = "FLEETBUS_CERT")]
    pub cert: PathBuf,
    /// Your private key.
    #[arg(long, env = "FLEETBUS_KEY")]
    pub key: PathBuf,
    /// Subject prefix of the fleet.
    #[arg(long, env = "FLEETBUS_SUBJECT_PREFIX", default_value = "fleet")]
    pub subject_prefix: String,
    /// How long to wait for the hub.
    #[arg(long, env = "FLEETBUS_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The request id sent with every hub call of this command (1 to 64 of [A-Za-z0-9._-]);
    /// a fresh one when absent. The hub logs it and writes it into the audit events.
    #[arg(long, env = "FLEETBUS_REQUEST_ID")]
    pub request_id: Option<RequestId>,
    /// Print each hub call with its request id on stderr.
    #[arg(short, long, env = "FLEETBUS_VERBOSE")]
    pub verbose: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn flags_do_not_clash() {
        super::Cli::command().debug_assert();
    }
}
