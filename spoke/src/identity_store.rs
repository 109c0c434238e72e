//! Where the spoke keeps its identity (its key and the certificate the hub signed for it).
//!
//! By default both are files in the state folder. With `--identity-secret NAME` they live in
//! the Secret `NAME` in the spoke's namespace, so that several replicas share one identity:
//! each replica mirrors the Secret into its own state folder, where the TLS connector reads
//! them, and adopts a newer certificate another replica stored.
//!
//! Only the holder of the Lease `NAME` ([`LeaseLock`]) joins or rotates; the others wait for
//! what it stores. A lock rather than compare-and-set on the Secret alone, because a join can
//! wait hours for an admin and must not be started twice with two different keys. The holder
//! first stores the key it will join with, so a replica that takes over after a crash joins
//! with the same key and finds the same pending request at the hub (joining and renewing with
//! a key the hub already knows change nothing there). Writes to the Secret are still a
//! compare-and-set on the `resourceVersion` the holder started from, so a holder that lost the
//! Lease while it was paused cannot overwrite what the next one stored.

pub mod lease;
pub mod pair;

use std::collections::BTreeMap;
use std::time::Duration;

use fleetbus_nats::connect::reconnect_delay;
use fleetbus_nats::files::write_atomic;
use fleetbus_nats::{TlsFiles, pki};
use fleetbus_schema::Identity;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::join::{self, JoinError};
use crate::kube::Kube;
use crate::msa::{FIELD_MANAGER, MANAGED_BY};
use lease::LeaseLock;

const KEY: &str = "tls.key";
const CERT: &str = "tls.crt";

/// Makes sure the state folder holds a valid certificate for this cluster, joining if needed.
/// `Ok(false)` if shut down first.
pub async fn ensure(
    config: &Config,
    kube: &Kube,
    shutdown: &CancellationToken,
) -> Result<bool, JoinError> {
    match IdentityStore::new(config, kube) {
        Some(mut store) => store.ensure(config, kube, shutdown).await,
        None if join::has_valid_certificate(config) => Ok(true),
        None => {
            let claims = crate::session::claims(config, kube).await;
            join::join(config, claims, shutdown).await
        }
    }
}

/// The hub no longer admits this identity: forget its certificate (keep the key, so a new join
/// is the same request), here and in the Secret unless another replica stored a newer one.
pub async fn forget(config: &Config, kube: &Kube) {
    let cert = config.spoke_tls().cert;
    let refused = std::fs::read_to_string(&cert).ok();
    let _ = std::fs::remove_file(&cert);
    if let (Some(store), Some(refused)) = (IdentityStore::new(config, kube), refused)
        && let Err(e) = store.drop_certificate(&refused).await
    {
        tracing::warn!(error = %e, secret = %store.name, "cannot remove the refused certificate from the identity secret");
    }
}

/// What a replica does next about its certificate's renewal.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Not due yet; ask again.
    Wait,
    /// Another replica rotated; its certificate is in the state folder now.
    Adopted,
    /// This replica holds the lock: renew, then call [`IdentityStore::renewed`].
    Renew,
}

/// The Secret and Lease that hold a shared identity.
pub struct IdentityStore {
    secrets: Api<Secret>,
    name: String,
    lock: LeaseLock,
    tls: TlsFiles,
    identity: Identity,
    poll: Duration,
    /// The Secret's version the lock holder started from.
    base: Option<String>,
    /// Renewal was due but another replica held the lock: wait a poll period before asking.
    contended: bool,
    /// The problem last logged, so each is logged once.
    problem: Problem,
    /// The Secret version last reported as holding a mismatched pair.
    mismatch_logged: Option<String>,
}

/// The Secret could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The apiserver refused or could not be reached.
    #[error("identity secret: {0}")]
    Kube(#[from] kube::Error),
    /// The state folder could not be written.
    #[error("state folder: {0}")]
    Files(#[from] std::io::Error),
    /// Another replica changed the Secret first.
    #[error("identity secret changed by another replica")]
    Conflict,
}

impl IdentityStore {
    /// The store `config` names, if it names one.
    pub fn new(config: &Config, kube: &Kube) -> Option<Self> {
        let name = config.identity_secret.clone()?;
        let namespace = config
            .namespace
            .clone()
            .unwrap_or_else(|| kube.client.default_namespace().to_owned());
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "spoke".into());
        let holder = format!("{host}-{:08x}", rand::random::<u32>());
        Some(Self {
            secrets: Api::namespaced(kube.client.clone(), &namespace),
            lock: LeaseLock::new(
                kube.client.clone(),
                &namespace,
                &name,
                holder,
                config.identity_lease,
            ),
            name,
            tls: config.spoke_tls(),
            identity: Identity::Spoke(config.cluster.clone()),
            poll: config.identity_poll,
            base: None,
            contended: false,
            problem: Problem::default(),
            mismatch_logged: None,
        })
    }

    async fn ensure(
        &mut self,
        config: &Config,
        kube: &Kube,
        shutdown: &CancellationToken,
    ) -> Result<bool, JoinError> {
        let mut waiting_logged = false;
        loop {
            let wait = match self.try_obtain(config, kube, shutdown).await {
                Ok(Some(done)) => return Ok(done),
                Ok(None) => {
                    self.problem.clear();
                    if !waiting_logged {
                        tracing::info!(secret = %self.name, "another replica holds the identity lease; waiting for the identity it stores");
                        waiting_logged = true;
                    }
                    self.poll
                }
                Err(Obtain::Join(e)) => return Err(e),
                Err(Obtain::Store(e)) => self.problem.report(&e),
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(false),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt: `Some` when done, `None` when another replica holds the lock.
    async fn try_obtain(
        &mut self,
        config: &Config,
        kube: &Kube,
        shutdown: &CancellationToken,
    ) -> Result<Option<bool>, Obtain> {
        self.mirror().await?;
        if join::has_valid_certificate(config) {
            return Ok(Some(true));
        }
        if !self.lock.try_acquire().await.map_err(StoreError::from)? {
            return Ok(None);
        }
        let result = self.join_as_holder(config, kube, shutdown).await;
        self.lock.release().await;
        result
    }

    async fn join_as_holder(
        &mut self,
        config: &Config,
        kube: &Kube,
        shutdown: &CancellationToken,
    ) -> Result<Option<bool>, Obtain> {
        // What the Secret holds now that nobody else may change it.
        self.mirror().await?;
        if join::has_valid_certificate(config) {
            return Ok(Some(true));
        }
        join::load_or_create_key(config)?;
        self.store().await?;
        tracing::info!(secret = %self.name, "holding the identity lease; joining");
        let claims = crate::session::claims(config, kube).await;
        let joined = tokio::select! {
            joined = join::join(config, claims, shutdown) => joined?,
            lost = self.lock.hold() => {
                tracing::warn!(reason = %lost, "stopped joining");
                return Ok(None);
            }
        };
        if joined {
            self.store().await?;
        }
        Ok(Some(joined))
    }

    /// Decides about renewal: waits up to `until_due` (at most the poll period), adopts what
    /// another replica stored, and takes the lock once renewal is due.
    pub async fn next_step(&mut self, until_due: Duration, stop: &CancellationToken) -> Step {
        let pause = if self.contended {
            self.poll
        } else {
            until_due.min(self.poll)
        };
        tokio::select! {
            () = stop.cancelled() => return Step::Wait,
            () = tokio::time::sleep(pause) => {}
        }
        self.contended = false;
        match self.adopt_newer().await {
            Ok(true) => return Step::Adopted,
            Ok(false) => self.problem.clear(),
            Err(e) => {
                self.problem.report(&e);
                self.contended = true;
                return Step::Wait;
            }
        }
        if until_due > self.poll {
            return Step::Wait;
        }
        match self.lock.try_acquire().await {
            Ok(true) => {}
            Ok(false) => {
                self.contended = true;
                return Step::Wait;
            }
            Err(e) => {
                self.problem.report(&StoreError::Kube(e));
                self.contended = true;
                return Step::Wait;
            }
        }
        // Someone may have rotated between the read above and taking the lock.
        match self.adopt_newer().await {
            Ok(false) => Step::Renew,
            adopted => {
                self.lock.release().await;
                if adopted.is_ok() {
                    Step::Adopted
                } else {
                    Step::Wait
                }
            }
        }
    }

    /// After a renewal (`ok`) or a failed one: stores the new identity and lets go of the lock.
    pub async fn renewed(&mut self, ok: bool) {
        if ok && let Err(e) = self.store().await {
            tracing::warn!(error = %e, secret = %self.name, "rotated certificate not stored; other replicas keep the previous one");
        }
        self.lock.release().await;
    }

    /// Makes the state folder hold exactly the Secret's key and certificate.
    async fn mirror(&mut self) -> Result<(), StoreError> {
        let secret = self.secrets.get_opt(&self.name).await?;
        self.base = secret
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone());
        match contents(secret.as_ref()) {
            (Some(key), Some(cert)) => self.write_pair(&key, &cert)?,
            (key, None) => {
                if let Some(key) = key {
                    write_if_changed(&self.tls.key, &key, true)?;
                }
                match std::fs::remove_file(&self.tls.cert) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            // A certificate without its key is of no use; joining makes a key.
            (None, Some(_)) => {}
        }
        Ok(())
    }

    /// Puts the Secret's pair into the state folder unless it is there already.
    fn write_pair(&self, key: &str, cert: &str) -> std::io::Result<()> {
        let same = |path: &std::path::Path, pem: &str| {
            std::fs::read_to_string(path).ok().as_deref() == Some(pem)
        };
        if same(&self.tls.key, key) && same(&self.tls.cert, cert) {
            return Ok(());
        }
        pair::write(&self.tls, key, cert)
    }

    /// Takes the Secret's key and certificate if the certificate is this cluster's and expires
    /// later than the one in use.
    async fn adopt_newer(&mut self) -> Result<bool, StoreError> {
        let secret = self.secrets.get_opt(&self.name).await?;
        self.base = secret
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone());
        let (Some(key), Some(cert)) = contents(secret.as_ref()) else {
            return Ok(false);
        };
        let Ok(stored) = pki::inspect(&cert) else {
            return Ok(false);
        };
        let current = std::fs::read_to_string(&self.tls.cert)
            .ok()
            .and_then(|pem| pki::inspect(&pem).ok());
        let newer = current.is_none_or(|c| stored.not_after_ms > c.not_after_ms);
        if stored.identity.as_ref() != Some(&self.identity) || !newer {
            return Ok(false);
        }
        if !pair::belong_together(&key, &cert) {
            if self.mismatch_logged.as_ref() != self.base.as_ref() {
                tracing::warn!(secret = %self.name, "the identity secret holds a key and a certificate that do not belong together; keeping the current ones");
                self.mismatch_logged = self.base.clone();
            }
            return Ok(false);
        }
        self.write_pair(&key, &cert)?;
        tracing::info!(secret = %self.name, "adopted the certificate another replica stored");
        Ok(true)
    }

    /// Writes the state folder's key and certificate into the Secret, if nobody changed it
    /// since [`Self::mirror`] or [`Self::adopt_newer`] read it.
    async fn store(&mut self) -> Result<(), StoreError> {
        let mut data = BTreeMap::new();
        for (field, path) in [(KEY, &self.tls.key), (CERT, &self.tls.cert)] {
            if let Ok(bytes) = std::fs::read(path) {
                data.insert(field.to_owned(), ByteString(bytes));
            }
        }
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: self.base.clone(),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.to_owned(),
                    FIELD_MANAGER.to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    "fleetbus.io/identity".to_owned(),
                    self.identity.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        let params = PostParams::default();
        let written = match self.base {
            Some(_) => self.secrets.replace(&self.name, &params, &secret).await,
            None => self.secrets.create(&params, &secret).await,
        };
        match written {
            Ok(secret) => {
                self.base = secret.metadata.resource_version;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `refused` from the Secret, unless it holds another certificate by now.
    async fn drop_certificate(&self, refused: &str) -> Result<(), StoreError> {
        let Some(mut secret) = self.secrets.get_opt(&self.name).await? else {
            return Ok(());
        };
        let (_, cert) = contents(Some(&secret));
        if cert.as_deref() != Some(refused) {
            return Ok(());
        }
        if let Some(data) = secret.data.as_mut() {
            data.remove(CERT);
        }
        match self
            .secrets
            .replace(&self.name, &PostParams::default(), &secret)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Err(StoreError::Conflict),
            Err(e) => Err(e.into()),
        }
    }
}

/// Why one attempt to obtain the identity failed.
enum Obtain {
    Join(JoinError),
    Store(StoreError),
}

impl From<StoreError> for Obtain {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<JoinError> for Obtain {
    fn from(e: JoinError) -> Self {
        Self::Join(e)
    }
}

/// One log line per distinct problem, and a growing pause between attempts.
#[derive(Default)]
struct Problem {
    last: Option<String>,
    attempt: usize,
}

impl Problem {
    fn report(&mut self, error: &StoreError) -> Duration {
        let text = error.to_string();
        if self.last.as_deref() == Some(text.as_str()) {
            tracing::debug!(error = %text, "identity secret still unusable");
        } else {
            tracing::warn!(error = %text, "cannot use the identity secret yet; retrying");
            self.last = Some(text);
        }
        self.attempt += 1;
        reconnect_delay(self.attempt)
    }

    fn clear(&mut self) {
        self.last = None;
        self.attempt = 0;
    }
}

/// The key and certificate a Secret holds (PEM).
fn contents(secret: Option<&Secret>) -> (Option<String>, Option<String>) {
    let field = |name: &str| {
        secret
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(name))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .filter(|s| !s.is_empty())
    };
    (field(KEY), field(CERT))
}

fn write_if_changed(path: &std::path::Path, pem: &str, private: bool) -> std::io::Result<()> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(pem) {
        return Ok(());
    }
    write_atomic(path, pem.as_bytes(), private)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_yields_its_key_and_certificate_and_nothing_for_empty_fields() {
        let secret = |fields: &[(&str, &str)]| Secret {
            data: Some(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        let both = secret(&[(KEY, "k"), (CERT, "c")]);
        assert_eq!(contents(Some(&both)), (Some("k".into()), Some("c".into())));
        let key_only = secret(&[(KEY, "k"), (CERT, "")]);
        assert_eq!(contents(Some(&key_only)), (Some("k".into()), None));
        assert_eq!(contents(None), (None, None));
    }

    #[test]
    fn problems_back_off_and_start_over_once_cleared() {
        let mut problem = Problem::default();
        let e = StoreError::Conflict;
        let first = problem.report(&e);
        for _ in 0..10 {
            problem.report(&e);
        }
        assert!(
            problem.report(&e) >= Duration::from_secs(5),
            "backs off to 5 s"
        );
        assert_eq!(problem.last.as_deref(), Some(e.to_string().as_str()));
        problem.clear();
        assert!(problem.report(&e) <= first.max(Duration::from_millis(300)));
    }
}
