//! What each work applied, kept on the cluster itself (OCM's AppliedManifestWork): one
//! ConfigMap `work-<name>` per work in the work namespace, so a restarted spoke (or another
//! replica) knows what to delete when a manifest is dropped or the work goes away.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DeleteParams, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::apply::{FIELD_MANAGER, Target};

/// Label naming the work a record belongs to.
pub const WORK_LABEL: &str = "fleetbus.io/work";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const DATA_KEY: &str = "record.json";

/// One object a work applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// API group (empty: core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural resource name.
    pub resource: String,
    /// Namespace (empty: cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID of the object when it was applied.
    pub uid: String,
    /// Whether this work created it (only then does it ever delete it).
    pub created: bool,
}

impl Resource {
    /// From where a manifest was applied.
    pub fn new(target: &Target, uid: String, created: bool) -> Self {
        Self {
            group: target.resource.group.clone(),
            version: target.resource.version.clone(),
            kind: target.resource.kind.clone(),
            resource: target.resource.plural.clone(),
            namespace: target.namespace.clone(),
            name: target.name.clone(),
            uid,
            created,
        }
    }

    /// Where it lives.
    pub fn target(&self) -> Target {
        let api_version = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        Target {
            resource: ApiResource {
                group: self.group.clone(),
                version: self.version.clone(),
                api_version,
                kind: self.kind.clone(),
                plural: self.resource.clone(),
            },
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// Whether two entries name the same object.
    pub fn same_object(&self, other: &Self) -> bool {
        (&self.group, &self.resource, &self.namespace, &self.name)
            == (&other.group, &other.resource, &other.namespace, &other.name)
    }
}

/// An orphaning rule (`group`, `resource`, `namespace`, `name`).
pub type Rule = (String, String, String, String);

/// What a work has applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The generation applied last.
    pub generation: i64,
    /// `Foreground`, `Orphan` or `SelectivelyOrphan`.
    pub policy: String,
    /// Objects `SelectivelyOrphan` keeps.
    pub orphans: Vec<Rule>,
    /// The objects.
    pub resources: Vec<Resource>,
}

impl Record {
    /// Whether deleting the work (or dropping the manifest) leaves `r` in place.
    pub fn keeps(&self, r: &Resource) -> bool {
        match self.policy.as_str() {
            "Orphan" => true,
            "SelectivelyOrphan" => self.orphans.iter().any(|(g, res, ns, n)| {
                (g, res, ns, n) == (&r.group, &r.resource, &r.namespace, &r.name)
            }),
            _ => false,
        }
    }
}

/// Records in one namespace.
#[derive(Clone)]
pub struct Records {
    client: kube::Client,
    namespace: String,
}

fn config_map_name(work: &str) -> String {
    format!("work-{work}")
}

impl Records {
    /// Records kept in `namespace`.
    pub fn new(client: kube::Client, namespace: String) -> Self {
        Self { client, namespace }
    }

    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Every record, by work name.
    pub async fn load(&self) -> Result<HashMap<String, Record>, kube::Error> {
        let list = match self
            .api()
            .list(&ListParams::default().labels(WORK_LABEL))
            .await
        {
            Ok(list) => list.items,
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut records = HashMap::new();
        for cm in list {
            let work = cm
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(WORK_LABEL))
                .cloned();
            let data = cm.data.as_ref().and_then(|d| d.get(DATA_KEY));
            match (work, data.map(|d| serde_json::from_str::<Record>(d))) {
                (Some(work), Some(Ok(record))) => {
                    records.insert(work, record);
                }
                (work, _) => tracing::warn!(?work, "ignoring an unreadable applied-work record"),
            }
        }
        Ok(records)
    }

    /// Stores the record of `work`.
    pub async fn save(&self, work: &str, record: &Record) -> Result<(), kube::Error> {
        let apply = PatchParams::apply(FIELD_MANAGER).force();
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(self.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(self.client.clone())
            .patch(&self.namespace, &apply, &Patch::Apply(&ns))
            .await?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(config_map_name(work)),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([
                    (WORK_LABEL.to_owned(), work.to_owned()),
                    (MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                DATA_KEY.to_owned(),
                serde_json::to_string(record).unwrap_or_default(),
            )])),
            ..Default::default()
        };
        self.api()
            .patch(&config_map_name(work), &apply, &Patch::Apply(&cm))
            .await?;
        Ok(())
    }

    /// Forgets `work`.
    pub async fn remove(&self, work: &str) -> Result<(), kube::Error> {
        match self
            .api()
            .delete(&config_map_name(work), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Resource {
        Resource {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            resource: "configmaps".into(),
            namespace: "default".into(),
            name: name.into(),
            uid: "u".into(),
            created: true,
        }
    }

    #[test]
    fn delete_options_decide_what_stays() {
        let mut record = Record::default();
        assert!(!record.keeps(&cm("a")), "Foreground deletes");
        record.policy = "Orphan".into();
        assert!(record.keeps(&cm("a")));
        record.policy = "SelectivelyOrphan".into();
        record.orphans = vec![(
            String::new(),
            "configmaps".into(),
            "default".into(),
            "a".into(),
        )];
        assert!(record.keeps(&cm("a")));
        assert!(!record.keeps(&cm("b")));
    }

    #[test]
    fn records_round_trip_and_targets_rebuild_api_versions() {
        let record = Record {
            generation: 2,
            resources: vec![cm("a")],
            ..Default::default()
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), record);
        assert_eq!(cm("a").target().resource.api_version, "v1");
    }
}
