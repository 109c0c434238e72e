//! Whether each cluster is available, from heartbeats and nats-server's disconnect advisories.
//! Every hub replica sees every heartbeat, so each computes the same view in memory; nothing
//! per heartbeat is written to JetStream. A spoke whose connection closes is `Unknown` at once;
//! one that falls silent is `Unknown` after the lease timeout.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::{Acceptance, ClusterRecord, Condition, ConditionStatus, Heartbeat};

/// OCM's condition types.
pub const ACCEPTED: &str = "HubAcceptedManagedCluster";
/// Set once the spoke has connected with its own identity.
pub const JOINED: &str = "ManagedClusterJoined";
/// Heartbeats arrive and the cluster's kube-apiserver is ready.
pub const AVAILABLE: &str = "ManagedClusterConditionAvailable";

struct Seen {
    at: Instant,
    at_ms: i64,
    since_ms: i64,
    kube_ready: bool,
    kube_message: String,
}

/// Last heartbeat per cluster.
pub struct Liveness {
    seen: Mutex<HashMap<ClusterName, Seen>>,
    timeout: Duration,
    /// Counts connects, disconnects and readiness changes (placements follow them).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Liveness {
    /// A tracker that calls a cluster `Unknown` after `timeout` without a heartbeat.
    pub fn new(timeout: Duration) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            timeout,
            changes: tokio::sync::watch::channel(0).0,
        }
    }

    /// Follows connects, disconnects and changes of a cluster's apiserver readiness; silence
    /// past the timeout is not signalled (followers also look again on a timer).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// `ManagedClusterConditionAvailable` of every cluster heard from since it last connected;
    /// clusters missing from the map are `Unknown`.
    pub fn availability(&self) -> HashMap<ClusterName, ConditionStatus> {
        self.lock()
            .iter()
            .map(|(name, s)| {
                let status = match (s.at.elapsed() <= self.timeout, s.kube_ready) {
                    (true, true) => ConditionStatus::True,
                    (true, false) => ConditionStatus::False,
                    (false, _) => ConditionStatus::Unknown,
                };
                (name.clone(), status)
            })
            .collect()
    }

    /// Records a heartbeat; returns true if it is the first since the hub started or the
    /// spoke last disconnected.
    pub fn heartbeat(&self, cluster: &ClusterName, beat: &Heartbeat, now_ms: i64) -> bool {
        let mut seen = self.lock();
        let fresh = seen
            .get(cluster)
            .is_none_or(|s| s.at.elapsed() > self.timeout);
        let since_ms = match seen.get(cluster) {
            Some(s) if !fresh && s.kube_ready == beat.kube_ready => s.since_ms,
            _ => {
                self.changes.send_modify(|n| *n += 1);
                now_ms
            }
        };
        seen.insert(
            cluster.clone(),
            Seen {
                at: Instant::now(),
                at_ms: now_ms,
                since_ms,
                kube_ready: beat.kube_ready,
                kube_message: beat.kube_message.clone(),
            },
        );
        fresh
    }

    /// The spoke's connection closed.
    pub fn disconnected(&self, cluster: &ClusterName) {
        if self.lock().remove(cluster).is_some() {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// How many clusters are heartbeating now.
    pub fn connected(&self) -> usize {
        self.lock()
            .values()
            .filter(|s| s.at.elapsed() <= self.timeout)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClusterName, Seen>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The conditions of a cluster, OCM style.
    pub fn conditions(&self, record: &ClusterRecord) -> Vec<Condition> {
        let mut out = Vec::new();
        match record.acceptance() {
            Acceptance::Accepted => out.push(condition(
                ACCEPTED,
                ConditionStatus::True,
                "HubClusterAdminAccepted",
                &format!("accepted by {}", record.decided_by),
                record.decided_ms,
            )),
            Acceptance::Denied => {
                out.push(condition(
                    ACCEPTED,
                    ConditionStatus::False,
                    "HubClusterAdminDenied",
                    &format!("denied by {}", record.decided_by),
                    record.decided_ms,
                ));
                return out;
            }
            _ => return out,
        }
        if record.joined_ms > 0 {
            out.push(condition(
                JOINED,
                ConditionStatus::True,
                "ManagedClusterJoined",
                "the spoke connected with its cluster identity",
                record.joined_ms,
            ));
        }
        let name = ClusterName::new(record.name.as_str()).ok();
        let seen = self.lock();
        let live = name.as_ref().and_then(|n| seen.get(n));
        out.push(match live {
            Some(s) if s.at.elapsed() <= self.timeout && s.kube_ready => condition(
                AVAILABLE,
                ConditionStatus::True,
                "ManagedClusterAvailable",
                "heartbeats arrive and the kube-apiserver is ready",
                s.since_ms,
            ),
            Some(s) if s.at.elapsed() <= self.timeout => condition(
                AVAILABLE,
                ConditionStatus::False,
                "ManagedClusterKubeAPIServerUnavailable",
                &s.kube_message,
                s.since_ms,
            ),
            Some(s) => condition(
                AVAILABLE,
                ConditionStatus::Unknown,
                "ManagedClusterLeaseUpdateStopped",
                &format!("no heartbeat for more than {:?}", self.timeout),
                s.at_ms + self.timeout.as_millis() as i64,
            ),
            None => condition(
                AVAILABLE,
                ConditionStatus::Unknown,
                "ManagedClusterNotConnected",
                "the spoke is not connected",
                0,
            ),
        });
        out
    }
}

fn condition(
    kind: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    at_ms: i64,
) -> Condition {
    Condition {
        r#type: kind.into(),
        status: status as i32,
        reason: reason.into(),
        message: message.into(),
        last_transition_ms: at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(name: &str) -> ClusterRecord {
        ClusterRecord {
            name: name.into(),
            acceptance: Acceptance::Accepted as i32,
            joined_ms: 1,
            ..Default::default()
        }
    }

    fn available(l: &Liveness, r: &ClusterRecord) -> (ConditionStatus, String) {
        let c = l
            .conditions(r)
            .into_iter()
            .find(|c| c.r#type == AVAILABLE)
            .unwrap();
        (c.status(), c.reason)
    }

    #[test]
    fn heartbeat_then_silence_then_disconnect() {
        let l = Liveness::new(Duration::from_millis(50));
        let c1 = ClusterName::new("c1").unwrap();
        let r = accepted("c1");
        assert_eq!(available(&l, &r).0, ConditionStatus::Unknown);
        let beat = Heartbeat {
            kube_ready: true,
            ..Default::default()
        };
        assert!(l.heartbeat(&c1, &beat, 10));
        assert!(!l.heartbeat(&c1, &beat, 11));
        assert_eq!(available(&l, &r).0, ConditionStatus::True);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            available(&l, &r),
            (
                ConditionStatus::Unknown,
                "ManagedClusterLeaseUpdateStopped".into()
            )
        );
        assert!(l.heartbeat(&c1, &beat, 12));
        l.disconnected(&c1);
        assert_eq!(available(&l, &r).1, "ManagedClusterNotConnected");
    }

    #[test]
    fn unready_apiserver_is_false() {
        let l = Liveness::new(Duration::from_secs(5));
        let c1 = ClusterName::new("c1").unwrap();
        let beat = Heartbeat {
            kube_ready: false,
            kube_message: "readyz: 500".into(),
            ..Default::default()
        };
        l.heartbeat(&c1, &beat, 1);
        assert_eq!(available(&l, &accepted("c1")).0, ConditionStatus::False);
    }

    #[test]
    fn pending_and_denied_have_no_availability() {
        let l = Liveness::new(Duration::from_secs(5));
        let mut r = accepted("c1");
        r.acceptance = Acceptance::Pending as i32;
        assert!(l.conditions(&r).is_empty());
        r.acceptance = Acceptance::Denied as i32;
        let c = l.conditions(&r);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status(), ConditionStatus::False);
    }
}
