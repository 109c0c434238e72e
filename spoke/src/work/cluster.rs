//! What the work loop needs from a cluster, so the same loop drives a real kube-apiserver or,
//! for the fleet benchmark, an in-memory cluster that only records what it was asked to apply.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use fleetbus_schema::v1::UpdateStrategy;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::apply::{Applier, Target};
use super::record::{Record, Records};
use super::status::{Failure, Live};
use super::watch::Watches;

/// A cluster works are applied to.
pub trait Cluster: Send + Sync + 'static {
    /// Where a manifest lives (API discovery).
    fn resolve(&self, object: &Value) -> impl Future<Output = Result<Target, Failure>> + Send;
    /// The object as it is now.
    fn get(&self, target: &Target) -> impl Future<Output = Live> + Send;
    /// Makes the object match `desired` (see [`Applier::apply`]).
    fn apply(
        &self,
        target: &Target,
        desired: &Value,
        strategy: &UpdateStrategy,
        live: Live,
        seen_before: bool,
    ) -> impl Future<Output = Result<(Live, bool), Failure>> + Send;
    /// Deletes the object if it is still `uid`; true once gone.
    fn delete(
        &self,
        target: &Target,
        uid: &str,
    ) -> impl Future<Output = Result<bool, Failure>> + Send;
    /// Forgets API discovery (a CRD was applied).
    fn forget_kinds(&self);
    /// Every applied-work record.
    fn load_records(&self) -> impl Future<Output = Result<HashMap<String, Record>, String>> + Send;
    /// Stores a record.
    fn save_record(
        &self,
        work: &str,
        record: &Record,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Removes a record.
    fn remove_record(&self, work: &str) -> impl Future<Output = Result<(), String>> + Send;
    /// `work` now owns exactly `targets`: changes to them are to be reported on the channel the
    /// cluster was built with.
    fn watch(&self, work: &str, targets: &[Target]);
}

/// A real cluster through its kube-apiserver.
pub struct KubeCluster {
    applier: Applier,
    records: Records,
    watches: Mutex<Watches>,
}

impl KubeCluster {
    /// Applies with `client`, records in `namespace`, names changed works on `changed`; its
    /// watches run on `tracker` until `stop`.
    pub fn new(
        client: kube::Client,
        namespace: String,
        changed: mpsc::UnboundedSender<String>,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            applier: Applier::new(client.clone()),
            records: Records::new(client.clone(), namespace),
            watches: Mutex::new(Watches::new(client, changed, tracker, stop)),
        }
    }
}

impl Cluster for KubeCluster {
    async fn resolve(&self, object: &Value) -> Result<Target, Failure> {
        self.applier.resolve(object).await
    }

    async fn get(&self, target: &Target) -> Live {
        self.applier.get(target).await
    }

    async fn apply(
        &self,
        target: &Target,
        desired: &Value,
        strategy: &UpdateStrategy,
        live: Live,
        seen_before: bool,
    ) -> Result<(Live, bool), Failure> {
        self.applier
            .apply(target, desired, strategy, live, seen_before)
            .await
    }

    async fn delete(&self, target: &Target, uid: &str) -> Result<bool, Failure> {
        self.applier.delete(target, uid).await
    }

    fn forget_kinds(&self) {
        self.applier.forget_kinds();
    }

    async fn load_records(&self) -> Result<HashMap<String, Record>, String> {
        self.records.load().await.map_err(|e| e.to_string())
    }

    async fn save_record(&self, work: &str, record: &Record) -> Result<(), String> {
        self.records
            .save(work, record)
            .await
            .map_err(|e| e.to_string())
    }

    async fn remove_record(&self, work: &str) -> Result<(), String> {
        self.records.remove(work).await.map_err(|e| e.to_string())
    }

    fn watch(&self, work: &str, targets: &[Target]) {
        self.watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(work, targets);
    }
}
