//! A lock among spoke replicas on a `coordination.k8s.io/v1` Lease: whoever holds it may change
//! the shared identity (join or rotate); the others wait.
//!
//! A holder renews the Lease every third of its duration. Another replica takes it over only
//! after it has seen the same `resourceVersion` for a whole duration (as client-go's leader
//! election does), so clock skew between nodes does not matter: the holder's `renewTime` is
//! written for people reading the Lease, never compared with this replica's clock. Every write
//! is a compare-and-set on the `resourceVersion` just read, so two replicas cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// The lock, as seen by one replica.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    holder: String,
    duration: Duration,
    /// The Lease's versions as this replica saw them.
    seen: Sighting,
    /// When this replica last wrote the Lease as its holder.
    renewed: Option<Instant>,
}

impl LeaseLock {
    /// A lock on Lease `name` in `namespace`, held as `holder` for `duration` per renewal.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        holder: String,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            holder,
            duration: duration.max(Duration::from_secs(1)),
            seen: Sighting::default(),
            renewed: None,
        }
    }

    /// Takes the lock, or renews it if this replica holds it. `Ok(false)`: another replica's
    /// hold is live, or it won a race for the Lease just now.
    pub async fn try_acquire(&mut self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        if let Some(lease) = &current {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.as_deref().unwrap_or_default();
            let version = lease.metadata.resource_version.clone().unwrap_or_default();
            let mine = holder == self.holder;
            if !mine && !holder.is_empty() && !self.expired(version, &spec) {
                return Ok(false);
            }
        }
        self.write(current, Some(self.holder.clone())).await
    }

    /// Renews the lock until it is lost (taken over, or not renewed for a whole duration
    /// because the apiserver could not be reached). Returns why.
    pub async fn hold(&mut self) -> String {
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(true) => {}
                Ok(false) => return "another replica took the identity lease".into(),
                Err(e) if self.renewed.is_some_and(|at| at.elapsed() < self.duration) => {
                    tracing::debug!(error = %e, "identity lease not renewed; retrying");
                }
                Err(e) => return format!("identity lease not renewed: {e}"),
            }
        }
    }

    /// Lets go of the lock so another replica need not wait for it to expire.
    pub async fn release(&mut self) {
        self.renewed = None;
        let Ok(Some(lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder == Some(self.holder.as_str())
            && let Err(e) = self.write(Some(lease), None).await
        {
            tracing::debug!(error = %e, "identity lease not released; it will expire");
        }
    }

    /// Whether another holder's lease has gone a whole duration without a change.
    fn expired(&mut self, version: String, spec: &LeaseSpec) -> bool {
        let duration = spec
            .lease_duration_seconds
            .map_or(self.duration, |s| Duration::from_secs(s.max(1) as u64));
        self.seen.unchanged_for_longer_than(version, duration)
    }

    /// Writes the Lease with `holder` (compare-and-set on the version read); `Ok(false)` if
    /// another replica wrote it first.
    async fn write(
        &mut self,
        current: Option<Lease>,
        holder: Option<String>,
    ) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let exists = current.is_some();
        let mut lease = current.unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..Default::default()
            },
            spec: None,
        });
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if holder.is_some() && spec.holder_identity != holder {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        let taking = holder.is_some();
        spec.holder_identity = holder;
        spec.lease_duration_seconds = Some(self.duration.as_secs().try_into().unwrap_or(i32::MAX));
        spec.renew_time = Some(now);
        let params = PostParams::default();
        let written = if exists {
            self.api.replace(&self.name, &params, &lease).await
        } else {
            self.api.create(&params, &lease).await
        };
        match written {
            Ok(lease) => {
                // Our own write starts the clock other replicas' expiry is measured against.
                let version = lease.metadata.resource_version.unwrap_or_default();
                self.seen.unchanged_for_longer_than(version, self.duration);
                if taking {
                    self.renewed = Some(Instant::now());
                }
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// When this replica first saw the Lease's current version.
#[derive(Default)]
struct Sighting {
    seen: Option<(String, Instant)>,
}

impl Sighting {
    /// Whether `version` has stood unchanged, as far as this replica saw, for longer than
    /// `duration`. A version not seen before starts the clock.
    fn unchanged_for_longer_than(&mut self, version: String, duration: Duration) -> bool {
        match &self.seen {
            Some((seen, since)) if *seen == version => since.elapsed() > duration,
            _ => {
                self.seen = Some((version, Instant::now()));
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_expires_only_after_a_whole_duration_without_a_change() {
        let mut sighting = Sighting::default();
        let duration = Duration::from_secs(15);
        assert!(
            !sighting.unchanged_for_longer_than("1".into(), duration),
            "first sight"
        );
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!sighting.unchanged_for_longer_than("1".into(), duration));
        // The holder renewed: the clock starts again, whatever its renewTime says.
        assert!(!sighting.unchanged_for_longer_than("2".into(), duration));
        tokio::time::advance(Duration::from_secs(14)).await;
        assert!(!sighting.unchanged_for_longer_than("2".into(), duration));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            sighting.unchanged_for_longer_than("2".into(), duration),
            "holder gone"
        );
    }
}
