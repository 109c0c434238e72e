//! Managed service accounts on the spoke: a ServiceAccount in the MSA namespace, optional RBAC
//! for it, and a token from the TokenRequest API, all applied with server-side apply (field
//! manager `fleetbus`) and labelled so that removal finds exactly what fleetbus made.

use std::collections::BTreeMap;

use fleetbus_schema::v1::{ManagedServiceAccount, PolicyRule};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};

/// Label on everything fleetbus creates.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the MSA an object belongs to.
pub const MSA_LABEL: &str = "fleetbus.io/managed-serviceaccount";
/// Server-side apply field manager.
pub const FIELD_MANAGER: &str = "fleetbus";

/// A token the apiserver issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The bearer token. Never logged.
    pub token: String,
    /// When the apiserver says it expires (Unix ms); may be sooner than asked.
    pub expiration_ms: i64,
    /// When it was issued (Unix ms).
    pub issued_ms: i64,
}

/// Why an MSA could not be made real; reported to the hub as a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Condition reason.
    pub reason: &'static str,
    /// The apiserver's message.
    pub message: String,
}

fn failure(reason: &'static str) -> impl Fn(kube::Error) -> Failure {
    move |e| Failure {
        reason,
        message: match e {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        },
    }
}

/// Creates and removes MSAs in one namespace of the local cluster.
#[derive(Clone)]
pub struct Reconciler {
    client: kube::Client,
    namespace: String,
}

impl Reconciler {
    /// A reconciler for `namespace`.
    pub fn new(client: kube::Client, namespace: String) -> Self {
        Self { client, namespace }
    }

    fn labels(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
            (MSA_LABEL.to_owned(), name.to_owned()),
        ])
    }

    fn meta(&self, name: &str, namespace: Option<&str>, msa: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.labels(msa)),
            ..Default::default()
        }
    }

    /// Makes the service account (and its RBAC) exist and requests a fresh token. If the RBAC
    /// is refused, nothing of this MSA is left behind.
    pub async fn ensure(&self, msa: &ManagedServiceAccount) -> Result<Issued, Failure> {
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
            .await
            .map_err(failure("NamespaceFailed"))?;
        let sa = ServiceAccount {
            metadata: self.meta(&msa.name, Some(&self.namespace), &msa.name),
            ..Default::default()
        };
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.namespace);
        accounts
            .patch(&msa.name, &apply, &Patch::Apply(&sa))
            .await
            .map_err(failure("SecretCreateFailed"))?;
        if let Err(refused) = self.ensure_rbac(msa, &apply).await {
            let _ = self.remove(&msa.name).await;
            return Err(refused);
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(msa.validity_seconds),
                audiences: Vec::new(),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued_ms = now_ms();
        let answer: TokenRequest = accounts
            .create_subresource("token", &msa.name, &PostParams::default(), &request)
            .await
            .map_err(failure("TokenRequestFailed"))?;
        let status = answer.status.ok_or(Failure {
            reason: "TokenRequestFailed",
            message: "no token in the answer".into(),
        })?;
        Ok(Issued {
            token: status.token,
            expiration_ms: status.expiration_timestamp.0.as_millisecond(),
            issued_ms,
        })
    }

    async fn ensure_rbac(
        &self,
        msa: &ManagedServiceAccount,
        apply: &PatchParams,
    ) -> Result<(), Failure> {
        let name = format!("fleetbus-msa-{}", msa.name);
        let rules: Vec<_> = msa.rules.iter().map(to_k8s_rule).collect();
        let subject = Subject {
            kind: "ServiceAccount".into(),
            name: msa.name.clone(),
            namespace: Some(self.namespace.clone()),
            ..Default::default()
        };
        let refused = failure("RulesRefused");
        // Drop what an earlier generation had that this one does not.
        self.remove_rbac(
            &msa.name,
            (!msa.rules.is_empty()).then_some(msa.rules_namespace.as_str()),
        )
        .await
        .map_err(&refused)?;
        if rules.is_empty() {
            return Ok(());
        }
        if msa.rules_namespace.is_empty() {
            let role = ClusterRole {
                metadata: self.meta(&name, None, &msa.name),
                rules: Some(rules),
                ..Default::default()
            };
            Api::<ClusterRole>::all(self.client.clone())
                .patch(&name, apply, &Patch::Apply(&role))
                .await
                .map_err(&refused)?;
            let binding = ClusterRoleBinding {
                metadata: self.meta(&name, None, &msa.name),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: name.clone(),
                },
                subjects: Some(vec![subject]),
            };
            Api::<ClusterRoleBinding>::all(self.client.clone())
                .patch(&name, apply, &Patch::Apply(&binding))
                .await
                .map_err(&refused)?;
        } else {
            let ns = msa.rules_namespace.as_str();
            let role = Role {
                metadata: self.meta(&name, Some(ns), &msa.name),
                rules: Some(rules),
            };
            Api::<Role>::namespaced(self.client.clone(), ns)
                .patch(&name, apply, &Patch::Apply(&role))
                .await
                .map_err(&refused)?;
            let binding = RoleBinding {
                metadata: self.meta(&name, Some(ns), &msa.name),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "Role".into(),
                    name: name.clone(),
                },
                subjects: Some(vec![subject]),
            };
            Api::<RoleBinding>::namespaced(self.client.clone(), ns)
                .patch(&name, apply, &Patch::Apply(&binding))
                .await
                .map_err(&refused)?;
        }
        Ok(())
    }

    /// Deletes RBAC objects of `msa`, except the kind `keep` names (`Some("")`: cluster-wide,
    /// `Some(ns)`: namespaced in `ns`).
    async fn remove_rbac(&self, msa: &str, keep: Option<&str>) -> Result<(), kube::Error> {
        let selector = ListParams::default()
            .labels(&format!("{MSA_LABEL}={msa},{MANAGED_BY}={FIELD_MANAGER}"));
        let dp = DeleteParams::default();
        if keep != Some("") {
            let roles = Api::<ClusterRole>::all(self.client.clone());
            for r in roles.list(&selector).await?.items {
                roles
                    .delete(&r.metadata.name.unwrap_or_default(), &dp)
                    .await?;
            }
            let bindings = Api::<ClusterRoleBinding>::all(self.client.clone());
            for b in bindings.list(&selector).await?.items {
                bindings
                    .delete(&b.metadata.name.unwrap_or_default(), &dp)
                    .await?;
            }
        }
        for r in Api::<Role>::all(self.client.clone())
            .list(&selector)
            .await?
            .items
        {
            let ns = r.metadata.namespace.unwrap_or_default();
            if keep != Some(ns.as_str()) {
                Api::<Role>::namespaced(self.client.clone(), &ns)
                    .delete(&r.metadata.name.unwrap_or_default(), &dp)
                    .await?;
            }
        }
        for b in Api::<RoleBinding>::all(self.client.clone())
            .list(&selector)
            .await?
            .items
        {
            let ns = b.metadata.namespace.unwrap_or_default();
            if keep != Some(ns.as_str()) {
                Api::<RoleBinding>::namespaced(self.client.clone(), &ns)
                    .delete(&b.metadata.name.unwrap_or_default(), &dp)
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes the service account and every RBAC object of `msa`.
    pub async fn remove(&self, msa: &str) -> Result<(), kube::Error> {
        self.remove_rbac(msa, None).await?;
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.namespace);
        match accounts.delete(msa, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Names of the service accounts fleetbus manages in the namespace.
    pub async fn existing(&self) -> Result<Vec<String>, kube::Error> {
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.namespace);
        let selector = ListParams::default().labels(&format!("{MANAGED_BY}={FIELD_MANAGER}"));
        match accounts.list(&selector).await {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .filter_map(|sa| sa.metadata.name)
                .collect()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

fn to_k8s_rule(rule: &PolicyRule) -> k8s_openapi::api::rbac::v1::PolicyRule {
    let opt = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    k8s_openapi::api::rbac::v1::PolicyRule {
        verbs: rule.verbs.clone(),
        api_groups: opt(&rule.api_groups),
        resources: opt(&rule.resources),
        resource_names: opt(&rule.resource_names),
        non_resource_urls: opt(&rule.non_resource_urls),
    }
}

/// Now as Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
