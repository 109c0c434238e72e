//! Mutual-TLS connections to nats-server. Certificate files are re-read on every (re)connect,
//! so rotating them and calling `force_reconnect` changes identity without a restart.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions};
use fleetbus_schema::{Identity, Subjects};

use crate::pki;

/// The CA bundle and the client certificate of one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that sign nats-server's certificate.
    pub ca: PathBuf,
    /// Client certificate.
    pub cert: PathBuf,
    /// Client private key.
    pub key: PathBuf,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A certificate file is missing or unreadable.
    #[error("cannot read {path}")]
    Files {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificate carries no fleetbus identity.
    #[error("certificate {path} has no fleetbus identity")]
    Identity {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: pki::PkiError,
    },
    /// nats-server refused the identity (not accepted, revoked, expired, or no hub answering).
    #[error(
        "nats-server at {url} refused identity {identity} (not accepted, revoked or expired, or no hub is running)"
    )]
    Refused {
        /// The server.
        url: String,
        /// Who we tried to be.
        identity: String,
    },
    /// TCP, TLS or protocol failure.
    #[error("cannot connect to nats-server at {url}: {kind}")]
    Unreachable {
        /// The server.
        url: String,
        /// async-nats's classification.
        kind: ConnectErrorKind,
        /// Its full error.
        #[source]
        source: async_nats::ConnectError,
    },
}

impl TlsFiles {
    /// The identity in the client certificate.
    pub fn identity(&self) -> Result<Identity, ConnectError> {
        let pem = std::fs::read_to_string(&self.cert).map_err(|source| ConnectError::Files {
            path: self.cert.clone(),
            source,
        })?;
        let id_err = |source| ConnectError::Identity {
            path: self.cert.clone(),
            source,
        };
        let info = pki::inspect(&pem).map_err(id_err)?;
        info.require_identity().cloned().map_err(id_err)
    }

    fn check_readable(&self) -> Result<(), ConnectError> {
        for path in [&self.ca, &self.cert, &self.key] {
            std::fs::metadata(path).map_err(|source| ConnectError::Files {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }
}

/// Options for a fleet connection: TLS required, the fleet CA as the only root, the client
/// certificate, the identity's private inbox, quick dead-link detection and jittered
/// reconnects.
pub fn options(tls: &TlsFiles, subjects: &Subjects, identity: &Identity) -> ConnectOptions {
    ConnectOptions::new()
        .name(format!("fleetbus {identity}"))
        .require_tls(true)
        .add_root_certificates(tls.ca.clone())
        .add_client_certificate(tls.cert.clone(), tls.key.clone())
        .custom_inbox_prefix(subjects.inbox(identity))
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        .reconnect_delay_callback(reconnect_delay)
}

/// Connects `identity`'s options to `url`, turning failures into one clear error.
pub async fn connect(
    url: &str,
    tls: &TlsFiles,
    identity: &Identity,
    options: ConnectOptions,
) -> Result<async_nats::Client, ConnectError> {
    tls.check_readable()?;
    // A comma-separated list names the servers of a NATS cluster.
    let servers: Vec<&str> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    options
        .connect(servers)
        .await
        .map_err(|source| match source.kind() {
            ConnectErrorKind::AuthorizationViolation => ConnectError::Refused {
                url: url.to_owned(),
                identity: identity.to_string(),
            },
            kind => ConnectError::Unreachable {
                url: url.to_owned(),
                kind,
                source,
            },
        })
}

/// Exponential backoff from 100 ms to 5 s with up to 50 % jitter, so a fleet that lost its
/// server does not reconnect in lockstep.
pub fn reconnect_delay(attempt: usize) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let jitter = rand::random::<u64>() % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

/// Connects, retrying with backoff until it succeeds or `shutdown` fires. For long-running
/// services whose server may start after them, or whose certificate files may appear later:
/// each distinct problem is logged once (as a warning, with its cause), repeats only at debug
/// level, so a service waiting for a day leaves one clear line, not thousands.
pub async fn connect_retrying<F>(
    url: &str,
    tls: &TlsFiles,
    identity: &Identity,
    make_options: F,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<async_nats::Client>
where
    F: Fn() -> ConnectOptions,
{
    let mut attempt = 0;
    let mut last_problem: Option<String> = None;
    loop {
        match connect(url, tls, identity, make_options()).await {
            Ok(client) => {
                if attempt > 0 {
                    tracing::info!(%url, %identity, attempt, "nats connection established");
                }
                return Some(client);
            }
            Err(e) => {
                let problem = with_causes(&e);
                if last_problem.as_deref() == Some(problem.as_str()) {
                    tracing::debug!(error = %problem, attempt, "nats connection failed again");
                } else {
                    tracing::warn!(error = %problem, attempt, "nats connection failed; retrying with backoff");
                    last_problem = Some(problem);
                }
            }
        }
        attempt += 1;
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(reconnect_delay(attempt)) => {}
        }
    }
}

/// An error and its causes on one line, each cause once.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        assert!(reconnect_delay(0) >= Duration::from_millis(100));
        assert!(reconnect_delay(0) <= Duration::from_millis(150));
        for n in 0..100 {
            assert!(reconnect_delay(n) <= Duration::from_millis(7_500));
        }
        assert!(reconnect_delay(10) >= Duration::from_secs(5));
    }

    #[test]
    fn a_missing_file_names_the_file_and_the_reason() {
        let tls = TlsFiles {
            ca: "/nonexistent/ca.crt".into(),
            cert: "/nonexistent/tls.crt".into(),
            key: "/nonexistent/tls.key".into(),
        };
        let e = tls.check_readable().unwrap_err();
        let text = with_causes(&e);
        assert!(
            text.starts_with("cannot read /nonexistent/ca.crt: "),
            "{text}"
        );
        assert!(text.contains("No such file"), "{text}");
    }
}
