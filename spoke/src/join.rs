//! Getting a `spoke:<cluster>` certificate: with the bootstrap identity, ask the hub to join
//! (cluster name, claims, a CSR for the spoke's own key) until the admin accepts, then keep
//! the signed certificate in the state folder. The key never leaves the spoke.

use std::time::Duration;

use fleetbus_nats::connect::{self, connect_retrying};
use fleetbus_nats::files::write_atomic;
use fleetbus_nats::pki;
use fleetbus_schema::v1::{ClusterClaims, JoinReply, JoinRequest, JoinStatus};
use fleetbus_schema::{Identity, decode};
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::identity_store::pair::{self, Held, Settled};

/// Why joining cannot succeed without a person changing something.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The hub refused the request for good (name held by another key, bad CSR, …).
    #[error("the hub rejected the join request: {0}")]
    Rejected(String),
    /// The hub returned a certificate that is not for this cluster and key.
    #[error("the hub returned an unusable certificate: {0}")]
    BadCertificate(String),
    /// The state folder cannot be written or read.
    #[error("state folder: {0}")]
    State(String),
}

/// The spoke's private key (PEM), created on first use and kept 0600 in the state folder.
pub fn load_or_create_key(config: &Config) -> Result<String, JoinError> {
    let path = config.spoke_tls().key;
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key);
    }
    let (key, _) = pki::new_key_and_csr(&Identity::Spoke(config.cluster.clone()))
        .map_err(|e| JoinError::State(e.to_string()))?;
    write_atomic(&path, key.as_bytes(), true)
        .map_err(|e| JoinError::State(format!("{}: {e}", path.display())))?;
    Ok(key)
}

/// Asks to join until accepted; `Ok(false)` if shut down first.
pub async fn join(
    config: &Config,
    claims: ClusterClaims,
    shutdown: &CancellationToken,
) -> Result<bool, JoinError> {
    let identity = Identity::Spoke(config.cluster.clone());
    let key = load_or_create_key(config)?;
    let csr = pki::csr_for_key_pem(&key, &identity).map_err(|e| JoinError::State(e.to_string()))?;
    let my_key = pki::csr_key_fingerprint(&csr).map_err(|e| JoinError::State(e.to_string()))?;
    let request = JoinRequest {
        cluster_name: config.cluster.to_string(),
        claims: Some(claims),
        csr_pem: csr,
    }
    .encode_to_vec();

    let bootstrap = &config.bootstrap;
    let options = || {
        connect::options(bootstrap, &config.subjects, &Identity::Bootstrap)
            .request_timeout(Some(Duration::from_secs(5)))
    };
    let Some(client) = connect_retrying(
        &config.nats_url,
        bootstrap,
        &Identity::Bootstrap,
        options,
        shutdown,
    )
    .await
    else {
        return Ok(false);
    };
    let mut last_status = None;
    let outcome = loop {
        let status = match client
            .request(config.subjects.join(), request.clone().into())
            .await
        {
            Ok(msg) => match decode::<JoinReply>(&msg.subject, &msg.payload) {
                Ok(reply) => Some(reply),
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable join reply");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "no hub answered the join request; retrying");
                None
            }
        };
        if let Some(reply) = status {
            let changed = last_status != Some(reply.status);
            last_status = Some(reply.status);
            match reply.status() {
                JoinStatus::Accepted => {
                    break accept(config, &identity, &my_key, &reply.certificate_pem);
                }
                JoinStatus::Rejected => break Err(JoinError::Rejected(reply.message)),
                JoinStatus::Denied if changed => {
                    tracing::warn!(message = %reply.message, "join denied; asking again in case the admin changes their mind")
                }
                _ if changed => tracing::info!(message = %reply.message, "join pending"),
                _ => {}
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break Ok(false),
            () = tokio::time::sleep(config.join_interval) => {}
        }
    };
    let _ = client.drain().await;
    outcome
}

fn accept(
    config: &Config,
    identity: &Identity,
    my_key: &str,
    cert_pem: &str,
) -> Result<bool, JoinError> {
    let info = pki::inspect(cert_pem).map_err(|e| JoinError::BadCertificate(e.to_string()))?;
    if info.identity.as_ref() != Some(identity) || info.key_fingerprint != my_key {
        return Err(JoinError::BadCertificate(format!(
            "expected {identity} for this spoke's key"
        )));
    }
    let path = config.spoke_tls().cert;
    write_atomic(&path, cert_pem.as_bytes(), false)
        .map_err(|e| JoinError::State(format!("{}: {e}", path.display())))?;
    tracing::info!(cluster = %config.cluster, "accepted by the hub; certificate stored");
    Ok(true)
}

/// Whether the state folder holds a certificate for this cluster that is still valid and
/// belongs to the key beside it. Finishes a renewal a crash interrupted first; a pair that does
/// not belong together is reported once here, and the caller joins again with the key.
pub fn has_valid_certificate(config: &Config) -> bool {
    let tls = config.spoke_tls();
    match pair::settle(&tls) {
        Ok(Settled::Clean) => {}
        Ok(Settled::Finished) => {
            tracing::info!(cluster = %config.cluster, "finished a certificate renewal that was interrupted");
        }
        Ok(Settled::Discarded) => {
            tracing::info!(cluster = %config.cluster, "discarded an interrupted certificate renewal; keeping the previous certificate");
        }
        Err(e) => tracing::warn!(error = %e, "cannot finish an interrupted certificate renewal"),
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let held = pair::check(&tls, &Identity::Spoke(config.cluster.clone()), now);
    if held == Held::Mismatch {
        tracing::warn!(
            cluster = %config.cluster,
            "the key and the certificate in the state folder do not belong together (an interrupted renewal?); joining again with the key"
        );
    }
    held == Held::Valid
}
