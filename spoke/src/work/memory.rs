//! An in-memory cluster for the fleet benchmark: it keeps the objects it was asked to apply and
//! counts writes, with the kube-apiserver's create/update/delete semantics reduced to a map.
//! Namespaces are assumed to exist; kinds resolve by a fixed rule (`ConfigMap` → `configmaps`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fleetbus_schema::v1::{UpdateStrategy, UpdateStrategyType};
use kube::api::ApiResource;
use serde_json::Value;

use super::apply::{Target, contains, declared_meta};
use super::cluster::Cluster;
use super::record::Record;
use super::status::{Failure, Live};

/// Kinds without a namespace.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "PersistentVolume",
    "PriorityClass",
];

type Key = (String, String, String, String);

/// Objects and records of one simulated cluster.
#[derive(Default)]
pub struct MemoryCluster {
    objects: Mutex<HashMap<Key, Value>>,
    records: Mutex<HashMap<String, Record>>,
    next_uid: AtomicU64,
    /// Writes (creates and updates) so far; may be shared by many clusters.
    pub writes: Arc<AtomicU64>,
}

fn key(t: &Target) -> Key {
    (
        t.resource.group.clone(),
        t.resource.plural.clone(),
        t.namespace.clone(),
        t.name.clone(),
    )
}

impl MemoryCluster {
    /// An empty cluster counting its writes in `writes`.
    pub fn counting(writes: Arc<AtomicU64>) -> Self {
        Self {
            writes,
            ..Default::default()
        }
    }

    /// How many objects exist now.
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no object exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Cluster for MemoryCluster {
    async fn resolve(&self, object: &Value) -> Result<Target, Failure> {
        let meta = declared_meta(object, 0);
        if meta.kind.is_empty() || meta.name.is_empty() {
            return Err(Failure {
                reason: "AppliedManifestFailed".into(),
                message: "kind and metadata.name are required".into(),
            });
        }
        let namespaced = !CLUSTER_SCOPED.contains(&meta.kind.as_str());
        let api_version = if meta.group.is_empty() {
            meta.version.clone()
        } else {
            format!("{}/{}", meta.group, meta.version)
        };
        Ok(Target {
            resource: ApiResource {
                plural: format!("{}s", meta.kind.to_lowercase()),
                group: meta.group,
                version: meta.version,
                api_version,
                kind: meta.kind,
            },
            namespace: match (namespaced, meta.namespace.is_empty()) {
                (true, true) => "default".into(),
                (true, false) => meta.namespace,
                (false, _) => String::new(),
            },
            name: meta.name,
        })
    }

    async fn get(&self, target: &Target) -> Live {
        let objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        objects
            .get(&key(target))
            .cloned()
            .map_or(Live::Absent, Live::Present)
    }

    async fn apply(
        &self,
        target: &Target,
        desired: &Value,
        strategy: &UpdateStrategy,
        live: Live,
        seen_before: bool,
    ) -> Result<(Live, bool), Failure> {
        let current = match live {
            Live::Present(v) => Some(v),
            _ => None,
        };
        match (strategy.r#type(), current) {
            (UpdateStrategyType::ReadOnly, None) => Err(Failure {
                reason: "AppliedManifestFailed".into(),
                message: format!("{} {} not found", target.resource.kind, target.name),
            }),
            (UpdateStrategyType::ReadOnly | UpdateStrategyType::CreateOnly, Some(v)) => {
                Ok((Live::Present(v), false))
            }
            (UpdateStrategyType::CreateOnly, None) if seen_before => Ok((Live::Absent, false)),
            (_, Some(v)) if contains(&v, desired, true) => Ok((Live::Present(v), false)),
            (_, current) => {
                let mut object = desired.clone();
                let uid = match &current {
                    Some(v) => v.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                    None => Value::String(format!(
                        "mem-{}",
                        self.next_uid.fetch_add(1, Ordering::Relaxed)
                    )),
                };
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("uid".into(), uid);
                }
                self.writes.fetch_add(1, Ordering::Relaxed);
                self.objects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key(target), object.clone());
                Ok((Live::Present(object), current.is_none()))
            }
        }
    }

    async fn delete(&self, target: &Target, uid: &str) -> Result<bool, Failure> {
        let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(target);
        let same = objects.get(&k).is_some_and(|v| {
            uid.is_empty() || v.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid)
        });
        if same {
            objects.remove(&k);
        }
        Ok(true)
    }

    fn forget_kinds(&self) {}

    async fn load_records(&self) -> Result<HashMap<String, Record>, String> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn save_record(&self, work: &str, record: &Record) -> Result<(), String> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(work.to_owned(), record.clone());
        Ok(())
    }

    async fn remove_record(&self, work: &str) -> Result<(), String> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(work);
        Ok(())
    }

    fn watch(&self, _work: &str, _targets: &[Target]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn applies_are_recorded_and_unchanged_objects_not_rewritten() {
        let cluster = MemoryCluster::default();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let target = cluster.resolve(&cm).await.unwrap();
        assert_eq!(
            (target.resource.plural.as_str(), target.namespace.as_str()),
            ("configmaps", "default")
        );
        let strategy = UpdateStrategy::default();
        let (live, created) = cluster
            .apply(&target, &cm, &strategy, Live::Absent, false)
            .await
            .unwrap();
        assert!(created);
        let (_, created) = cluster
            .apply(&target, &cm, &strategy, live, true)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(cluster.writes.load(Ordering::Relaxed), 1);
        assert!(cluster.delete(&target, "").await.unwrap());
        assert!(cluster.is_empty());
    }
}
