//! Hub configuration: flags with `FLEETBUS_*` environment fallbacks, resolved into a plain
//! [`Config`] before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use fleetbus_nats::PkiDir;
use fleetbus_schema::{Subjects, UserName};

/// `fleetbus-hub` flags.
#[derive(Debug, Parser)]
#[command(name = "fleetbus-hub", version, about = "The fleetbus hub")]
pub struct Args {
    /// nats-server URL.
    #[arg(
        long,
        env = "FLEETBUS_NATS_URL",
        default_value = "tls://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// PKI folder from `fleetbus certs init` (needs ca.crt, ca.key, hub.crt, hub.key, nkeys/).
    #[arg(long, env = "FLEETBUS_PKI_DIR")]
    pub pki_dir: PathBuf,
    /// Subject prefix of this fleet.
    #[arg(long, env = "FLEETBUS_SUBJECT_PREFIX", default_value = "fleet")]
    pub subject_prefix: String,
    /// Users with admin rights on the hub API (comma-separated).
    #[arg(
        long,
        env = "FLEETBUS_ADMINS",
        default_value = "admin",
        value_delimiter = ','
    )]
    pub admins: Vec<String>,
    /// Lifetime of the certificates the hub signs for spokes.
    #[arg(long, env = "FLEETBUS_SPOKE_CERT_VALIDITY", default_value = "30d", value_parser = humantime::parse_duration)]
    pub spoke_cert_validity: Duration,
    /// A spoke without a heartbeat for this long is `Available=Unknown`.
    #[arg(long, env = "FLEETBUS_LEASE_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration)]
    pub lease_timeout: Duration,
    /// JetStream replicas for hub state (3 on a 3-node NATS cluster).
    #[arg(long, env = "FLEETBUS_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How long the audit stream keeps events.
    #[arg(long, env = "FLEETBUS_AUDIT_MAX_AGE", default_value = "90d", value_parser = humantime::parse_duration)]
    pub audit_max_age: Duration,
    /// Most bytes the audit stream keeps (oldest events go first).
    #[arg(long, env = "FLEETBUS_AUDIT_MAX_BYTES", default_value_t = 1 << 30)]
    pub audit_max_bytes: i64,
    /// Serve /metrics, /healthz and /readyz here (for example 0.0.0.0:9090).
    #[arg(long, env = "FLEETBUS_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log format.
    #[arg(long, env = "FLEETBUS_LOG_FORMAT", default_value = "plain", value_parser = ["plain", "json"])]
    pub log_format: String,
}

/// Resolved hub configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// nats-server URL.
    pub nats_url: String,
    /// The PKI folder.
    pub pki: PkiDir,
    /// Subject builder.
    pub subjects: Subjects,
    /// Admin users.
    pub admins: Vec<UserName>,
    /// Spoke certificate lifetime.
    pub spoke_cert_validity: Duration,
    /// Heartbeat timeout.
    pub lease_timeout: Duration,
    /// JetStream replicas.
    pub replicas: usize,
    /// Audit stream age limit.
    pub audit_max_age: Duration,
    /// Audit stream size limit.
    pub audit_max_bytes: i64,
    /// Where to serve operations endpoints, if anywhere.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl Args {
    /// Checks the flags and resolves them; an error is one line for the operator.
    pub fn resolve(self) -> anyhow::Result<Config> {
        let admins = self
            .admins
            .iter()
            .map(|a| UserName::new(a.trim()))
            .collect::<Result<_, _>>()?;
        if self.spoke_cert_validity < Duration::from_secs(60) {
            anyhow::bail!("--spoke-cert-validity must be at least 1m");
        }
        if !(1..=5).contains(&self.replicas) {
            anyhow::bail!("--replicas must be between 1 and 5");
        }
        Ok(Config {
            nats_url: self.nats_url,
            pki: PkiDir::new(self.pki_dir),
            subjects: Subjects::new(&self.subject_prefix)?,
            admins,
            spoke_cert_validity: self.spoke_cert_validity,
            lease_timeout: self.lease_timeout,
            replicas: self.replicas,
            audit_max_age: self.audit_max_age,
            audit_max_bytes: self.audit_max_bytes,
            metrics_addr: self.metrics_addr,
        })
    }
}

impl Config {
    /// Defaults for a hub of the fleet in `pki` (tests and local-up start from here).
    pub fn new(nats_url: String, pki: PkiDir, subjects: Subjects) -> Self {
        Self {
            nats_url,
            pki,
            subjects,
            admins: vec![UserName::new("admin").unwrap_or_else(|_| unreachable!())],
            spoke_cert_validity: Duration::from_secs(30 * 86_400),
            lease_timeout: Duration::from_secs(3),
            replicas: 1,
            audit_max_age: Duration::from_secs(90 * 86_400),
            audit_max_bytes: 1 << 30,
            metrics_addr: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Config> {
        let mut argv = vec!["fleetbus-hub", "--pki-dir", "/pki"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv)?.resolve()
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.subjects.prefix(), "fleet");
        assert_eq!(c.admins[0].as_str(), "admin");
        assert_eq!(c.lease_timeout, Duration::from_secs(3));
        assert_eq!(c.spoke_cert_validity, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn refuses_bad_values() {
        assert!(parse(&["--subject-prefix", "a.b"]).is_err());
        assert!(parse(&["--admins", "Root"]).is_err());
        assert!(parse(&["--spoke-cert-validity", "1s"]).is_err());
        assert!(parse(&["--lease-timeout", "soon"]).is_err());
    }
}
