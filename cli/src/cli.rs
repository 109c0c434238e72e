//! The command line, clusteradm-like. Every flag has a `FLEETBUS_*` environment fallback, so
//! `source .fleetbus/local/env.sh` points the CLI at a local hub.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Run a hub with two spokes and two kube-apiservers on this machine.
    LocalUp(crate::local::up::LocalUpArgs),
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
}

/// `fleetbus get …`
#[derive(Debug, Subcommand)]
pub enum GetCommand {
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

/// `fleetbus delete …`
#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
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
}
