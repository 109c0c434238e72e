//! Push, not poll: one apiserver watch per resource type and namespace that some work applied
//! to. A change to an object a work owns (someone edited or deleted it, its status moved) names
//! that work on a channel, and the work loop reconciles and reports it at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, WatchEvent, WatchParams};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::apply::Target;

/// `(group, plural, namespace, name)`.
type ObjectKey = (String, String, String, String);
/// `(group, version, plural, namespace)`.
type ScopeKey = (String, String, String, String);

fn object_key(t: &Target) -> ObjectKey {
    (
        t.resource.group.clone(),
        t.resource.plural.clone(),
        t.namespace.clone(),
        t.name.clone(),
    )
}

fn scope_key(t: &Target) -> ScopeKey {
    (
        t.resource.group.clone(),
        t.resource.version.clone(),
        t.resource.plural.clone(),
        t.namespace.clone(),
    )
}

/// The watches of all works.
pub struct Watches {
    client: kube::Client,
    changed: mpsc::UnboundedSender<String>,
    interest: Arc<RwLock<HashMap<ObjectKey, BTreeSet<String>>>>,
    scopes: HashMap<ScopeKey, CancellationToken>,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Watches {
    /// Watches, run on `tracker`, that name changed works on `changed` until `stop`.
    pub fn new(
        client: kube::Client,
        changed: mpsc::UnboundedSender<String>,
        tracker: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        Self {
            client,
            changed,
            interest: Arc::default(),
            scopes: HashMap::new(),
            tracker,
            stop,
        }
    }

    /// `work` now cares about exactly `targets`.
    pub fn set(&mut self, work: &str, targets: &[Target]) {
        let mut needed: HashMap<ScopeKey, ApiResource> = HashMap::new();
        {
            let mut interest = self.interest.write().unwrap_or_else(|p| p.into_inner());
            for works in interest.values_mut() {
                works.remove(work);
            }
            for t in targets {
                interest
                    .entry(object_key(t))
                    .or_default()
                    .insert(work.to_owned());
            }
            interest.retain(|_, works| !works.is_empty());
        }
        for (scope, cancel) in &self.scopes {
            if !self.scope_used(scope) {
                cancel.cancel();
            }
        }
        self.scopes.retain(|_, cancel| !cancel.is_cancelled());
        for t in targets {
            needed.insert(scope_key(t), t.resource.clone());
        }
        for (scope, resource) in needed {
            if self.scopes.contains_key(&scope) {
                continue;
            }
            let cancel = self.stop.child_token();
            self.scopes.insert(scope.clone(), cancel.clone());
            self.tracker.spawn(watch_scope(
                self.client.clone(),
                resource,
                scope.3,
                self.interest.clone(),
                self.changed.clone(),
                cancel,
            ));
        }
    }

    fn scope_used(&self, scope: &ScopeKey) -> bool {
        let interest = self.interest.read().unwrap_or_else(|p| p.into_inner());
        interest
            .keys()
            .any(|(g, p, ns, _)| (g, p, ns) == (&scope.0, &scope.2, &scope.3))
    }
}

fn notify(
    interest: &RwLock<HashMap<ObjectKey, BTreeSet<String>>>,
    changed: &mpsc::UnboundedSender<String>,
    matches: impl Fn(&ObjectKey) -> bool,
) {
    let interest = interest.read().unwrap_or_else(|p| p.into_inner());
    for (key, works) in interest.iter() {
        if matches(key) {
            for work in works {
                let _ = changed.send(work.clone());
            }
        }
    }
}

async fn watch_scope(
    client: kube::Client,
    resource: ApiResource,
    namespace: String,
    interest: Arc<RwLock<HashMap<ObjectKey, BTreeSet<String>>>>,
    changed: mpsc::UnboundedSender<String>,
    stop: CancellationToken,
) {
    let api: Api<DynamicObject> = if namespace.is_empty() {
        Api::all_with(client, &resource)
    } else {
        Api::namespaced_with(client, &namespace, &resource)
    };
    let in_scope =
        |k: &ObjectKey| (&k.0, &k.1, &k.2) == (&resource.group, &resource.plural, &namespace);
    loop {
        let started = async {
            let list = api.list_metadata(&ListParams::default().limit(1)).await?;
            // Whatever happened before this watch began is looked at once.
            notify(&interest, &changed, in_scope);
            let version = list.metadata.resource_version.unwrap_or_default();
            api.watch(&WatchParams::default().timeout(290), &version)
                .await
        };
        let mut events = tokio::select! {
            () = stop.cancelled() => return,
            started = started => match started {
                Ok(events) => events.boxed(),
                Err(e) => {
                    tracing::debug!(kind = %resource.kind, error = %e, "watch not started; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            },
        };
        loop {
            let event = tokio::select! {
                () = stop.cancelled() => return,
                event = events.try_next() => event,
            };
            let object = match event {
                Ok(Some(
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o),
                )) => o,
                Ok(Some(WatchEvent::Bookmark(_))) => continue,
                // Expired resource version, end of the watch or a broken connection: start again.
                Ok(Some(WatchEvent::Error(_)) | None) | Err(_) => break,
            };
            let name = object.metadata.name.unwrap_or_default();
            notify(&interest, &changed, |k| in_scope(k) && k.3 == name);
        }
    }
}
