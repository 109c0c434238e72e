//! Applying one manifest to the local kube-apiserver with the dynamic client, by update
//! strategy: server-side apply (field manager `fleetbus`, forced unless asked not to), update,
//! create-only or read-only. A write happens only when the live object differs from the
//! manifest, so drift is corrected and an unchanged object is left alone.

use std::collections::HashMap;
use std::sync::Mutex;

use fleetbus_schema::v1::{ResourceMeta, UpdateStrategy, UpdateStrategyType};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
    PostParams, Preconditions, PropagationPolicy,
};
use kube::discovery::Scope;
use serde_json::Value;

use super::status::{Failure, Live};

/// Default server-side apply field manager.
pub const FIELD_MANAGER: &str = "fleetbus";

/// Where a manifest lives on the cluster.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its API resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Target {
    /// `resourceMeta` of the manifest at `ordinal`.
    pub fn meta(&self, ordinal: usize) -> ResourceMeta {
        ResourceMeta {
            ordinal: ordinal as i32,
            group: self.resource.group.clone(),
            version: self.resource.version.clone(),
            kind: self.resource.kind.clone(),
            resource: self.resource.plural.clone(),
            name: self.name.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// What a manifest says it is, before discovery: for status when discovery fails.
pub fn declared_meta(object: &Value, ordinal: usize) -> ResourceMeta {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let api_version = text("/apiVersion");
    let (group, version) = api_version
        .rsplit_once('/')
        .map_or((String::new(), api_version.clone()), |(g, v)| {
            (g.to_owned(), v.to_owned())
        });
    ResourceMeta {
        ordinal: ordinal as i32,
        group,
        version,
        kind: text("/kind"),
        resource: String::new(),
        name: text("/metadata/name"),
        namespace: text("/metadata/namespace"),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        reason: "AppliedManifestFailed".into(),
        message: message.into(),
    }
}

fn api_failure(e: kube::Error) -> Failure {
    match e {
        kube::Error::Api(status) => failed(status.message.clone()),
        other => failed(other.to_string()),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Applies manifests to one cluster; remembers API discovery per group/version/kind.
pub struct Applier {
    client: kube::Client,
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

impl Applier {
    /// An applier using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            kinds: Mutex::default(),
        }
    }

    /// Finds the API resource of a manifest (asking the apiserver the first time).
    pub async fn resolve(&self, object: &Value) -> Result<Target, Failure> {
        let meta = declared_meta(object, 0);
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = (api_version.to_owned(), meta.kind.clone());
        let known = self
            .kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let (resource, namespaced) = match known {
            Some(found) => found,
            None => {
                let gvk = GroupVersionKind::gvk(&meta.group, &meta.version, &meta.kind);
                let no_match = || {
                    failed(format!(
                        "no matches for kind \"{}\" in version \"{api_version}\"",
                        meta.kind
                    ))
                };
                let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
                    .await
                    .map_err(|e| match e {
                        kube::Error::Discovery(_) => no_match(),
                        e if is_not_found(&e) => no_match(),
                        other => api_failure(other),
                    })?;
                let found = (resource, caps.scope == Scope::Namespaced);
                self.kinds
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, found.clone());
                found
            }
        };
        let namespace = match (namespaced, meta.namespace.is_empty()) {
            (true, true) => "default".to_owned(),
            (true, false) => meta.namespace,
            (false, _) => String::new(),
        };
        Ok(Target {
            resource,
            namespace,
            name: meta.name,
        })
    }

    /// Forgets discovery (a CRD may have been added or removed).
    pub fn forget_kinds(&self) {
        self.kinds.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn api(&self, target: &Target) -> Api<DynamicObject> {
        if target.namespace.is_empty() {
            Api::all_with(self.client.clone(), &target.resource)
        } else {
            Api::namespaced_with(self.client.clone(), &target.namespace, &target.resource)
        }
    }

    /// The object as it is now.
    pub async fn get(&self, target: &Target) -> Live {
        match self.api(target).get_opt(&target.name).await {
            Ok(Some(object)) => match serde_json::to_value(object) {
                Ok(value) => Live::Present(value),
                Err(e) => Live::Unknown(e.to_string()),
            },
            Ok(None) => Live::Absent,
            Err(e) => Live::Unknown(api_failure(e).message),
        }
    }

    /// Makes the object match `desired` as `strategy` says. `seen_before`: this work applied
    /// it earlier (a create-only object deleted since is left alone). Returns the object as
    /// it is afterwards and whether this call created it.
    pub async fn apply(
        &self,
        target: &Target,
        desired: &Value,
        strategy: &UpdateStrategy,
        live: Live,
        seen_before: bool,
    ) -> Result<(Live, bool), Failure> {
        let api = self.api(target);
        let current = match live {
            Live::Unknown(why) => return Err(failed(why)),
            Live::Present(v) => Some(v),
            Live::Absent => None,
        };
        let written = |o: DynamicObject| {
            serde_json::to_value(o)
                .map(Live::Present)
                .map_err(|e| failed(e.to_string()))
        };
        match (strategy.r#type(), current) {
            (UpdateStrategyType::ReadOnly, Some(v)) => Ok((Live::Present(v), false)),
            (UpdateStrategyType::ReadOnly, None) => Err(failed(format!(
                "{} {} not found (ReadOnly manifests are only read)",
                target.resource.kind, target.name
            ))),
            (UpdateStrategyType::CreateOnly, Some(v)) => Ok((Live::Present(v), false)),
            (UpdateStrategyType::CreateOnly, None) if seen_before => Ok((Live::Absent, false)),
            (_, Some(v)) if contains(&v, desired, true) => Ok((Live::Present(v), false)),
            (UpdateStrategyType::ServerSideApply, current) => {
                let manager = if strategy.field_manager.is_empty() {
                    FIELD_MANAGER
                } else {
                    &strategy.field_manager
                };
                let mut params = PatchParams::apply(manager);
                params.force = !strategy.no_force;
                let object = api
                    .patch(&target.name, &params, &Patch::Apply(desired))
                    .await
                    .map_err(api_failure)?;
                Ok((written(object)?, current.is_none()))
            }
            (UpdateStrategyType::Update, Some(v)) => {
                let merged = merge_for_update(desired, &v);
                let object: DynamicObject =
                    serde_json::from_value(merged).map_err(|e| failed(e.to_string()))?;
                let object = api
                    .replace(&target.name, &PostParams::default(), &object)
                    .await
                    .map_err(api_failure)?;
                Ok((written(object)?, false))
            }
            (_, None) => {
                let object: DynamicObject =
                    serde_json::from_value(desired.clone()).map_err(|e| failed(e.to_string()))?;
                let object = api
                    .create(&PostParams::default(), &object)
                    .await
                    .map_err(api_failure)?;
                Ok((written(object)?, true))
            }
        }
    }

    /// Deletes the object if it still is the one with `uid`; `Ok(true)` once it is gone.
    pub async fn delete(&self, target: &Target, uid: &str) -> Result<bool, Failure> {
        let api = self.api(target);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: (!uid.is_empty()).then(|| Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&target.name, &params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(true),
            // Another object took the name: not ours to delete.
            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(true),
            Err(e) => return Err(api_failure(e)),
        }
        match self.get(target).await {
            Live::Absent => Ok(true),
            Live::Present(v) => {
                Ok(uid.is_empty()
                    || v.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid))
            }
            Live::Unknown(why) => Err(failed(why)),
        }
    }
}

/// Whether `live` already holds everything `desired` says (metadata: labels and annotations
/// only; `status` is never compared at the top level).
pub fn contains(live: &Value, desired: &Value, top: bool) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| {
            if top && k == "status" {
                return true;
            }
            if top && k == "metadata" {
                let lm = l.get("metadata").cloned().unwrap_or(Value::Null);
                return ["labels", "annotations", "name", "namespace"]
                    .iter()
                    .all(|f| match dv.get(f) {
                        None => true,
                        Some(want) => lm.get(f).is_some_and(|have| contains(have, want, false)),
                    });
            }
            l.get(k).is_some_and(|lv| contains(lv, dv, false))
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv, false))
        }
        (Value::Number(l), Value::Number(d)) => l.as_f64() == d.as_f64(),
        (l, d) => l == d,
    }
}

/// The object to PUT for `Update`: the manifest, with the live object's resourceVersion,
/// finalizers and owner references, and labels and annotations merged.
fn merge_for_update(desired: &Value, live: &Value) -> Value {
    let mut merged = desired.clone();
    let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut) else {
        return merged;
    };
    let live_meta = live.get("metadata").cloned().unwrap_or(Value::Null);
    for field in ["resourceVersion", "finalizers", "ownerReferences"] {
        if let Some(v) = live_meta.get(field) {
            meta.insert(field.to_owned(), v.clone());
        }
    }
    for field in ["labels", "annotations"] {
        let mut map = live_meta
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(want) = meta.get(field).and_then(Value::as_object) {
            map.extend(want.clone());
        }
        if !map.is_empty() {
            meta.insert(field.to_owned(), Value::Object(map));
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_objects_with_defaults_contain_their_manifest() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}});
        assert!(contains(&live, &desired, true));
        let drifted = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "changed"}});
        assert!(!contains(&drifted, &desired, true));
        let relabelled = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        assert!(!contains(&relabelled, &desired, true));
        assert!(
            !contains(&json!({"l": [1, 2]}), &json!({"l": [1]}), true),
            "lists must match in length"
        );
        assert!(contains(&json!({"n": 1.0}), &json!({"n": 1}), true));
    }

    #[test]
    fn updates_keep_what_the_cluster_added() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let live = json!({"metadata": {"name": "a", "resourceVersion": "7", "finalizers": ["f"], "labels": {"x": "0", "y": "2"}}});
        let merged = merge_for_update(&desired, &live);
        assert_eq!(merged["metadata"]["resourceVersion"], "7");
        assert_eq!(merged["metadata"]["finalizers"], json!(["f"]));
        assert_eq!(merged["metadata"]["labels"], json!({"x": "1", "y": "2"}));
    }

    #[test]
    fn declared_meta_splits_api_version() {
        let m = declared_meta(
            &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}),
            3,
        );
        assert_eq!(
            (m.group.as_str(), m.version.as_str(), m.ordinal),
            ("rbac.authorization.k8s.io", "v1", 3)
        );
        assert_eq!(declared_meta(&json!({"apiVersion": "v1"}), 0).version, "v1");
    }
}
