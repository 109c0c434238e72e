//! The decision half of the placement controller: what every placement sees of the fleet
//! (labels, claims, cluster set, the taints availability implies) and the decisions, groups and
//! `PlacementSatisfied` it writes, with an audit event when the decisions move.

use std::collections::{HashMap, HashSet};

use fleetbus_schema::conditions::set as set_condition;
use fleetbus_schema::v1::{Acceptance, AuditEvent, ConditionStatus, Placement, PlacementStatus};

use crate::cluster_labels::{claims, cluster_set, effective};
use crate::placement_controller::Controller;
use crate::placement_select::{Facts, Taint, UNAVAILABLE, UNREACHABLE, decide, groups, satisfied};
use crate::store::Action;
use crate::workset_status::named;

impl Controller {
    /// What placements look at in every accepted cluster; `None` until the mirror is ready.
    pub(crate) fn fleet(&mut self, now: i64) -> Option<Vec<Facts>> {
        let availability: HashMap<String, ConditionStatus> = self
            .service
            .liveness
            .availability()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let settling = self.started.elapsed() < self.grace;
        let mut fleet = self.service.clusters.scan("", |records| {
            records
                .filter(|(_, r)| r.acceptance() == Acceptance::Accepted)
                .map(|(_, r)| Facts {
                    name: r.name.clone(),
                    labels: effective(r),
                    claims: claims(r),
                    set: cluster_set(r).map(str::to_owned),
                    taints: Vec::new(),
                    settled: !settling || availability.contains_key(&r.name),
                })
                .collect::<Vec<_>>()
        })?;
        for f in &mut fleet {
            let taint = match availability.get(&f.name) {
                Some(ConditionStatus::True) => None,
                Some(ConditionStatus::False) => Some(UNAVAILABLE),
                _ => Some(UNREACHABLE),
            };
            let Some(key) = taint else {
                self.taints.remove(&f.name);
                continue;
            };
            let seen = self.taints.entry(f.name.clone()).or_insert((key, now));
            if seen.0 != key {
                *seen = (key, now);
            }
            f.taints.push(Taint {
                key,
                effect: "NoSelect",
                added_ms: seen.1,
            });
        }
        let names: HashSet<&str> = fleet.iter().map(|f| f.name.as_str()).collect();
        self.taints.retain(|k, _| names.contains(k.as_str()));
        Some(fleet)
    }

    pub(crate) async fn decide_all(&mut self, fleet: &[Facts], now: i64) {
        let by_name: HashMap<&str, &Facts> = fleet.iter().map(|f| (f.name.as_str(), f)).collect();
        let Some(placements) = self
            .service
            .placements
            .scan("", |all| all.map(|(_, p)| p.clone()).collect::<Vec<_>>())
        else {
            return;
        };
        for p in placements {
            let status = p.status.clone().unwrap_or_default();
            let before: HashSet<&str> = status
                .decision_groups
                .iter()
                .flat_map(|g| g.clusters.iter().map(String::as_str))
                .collect();
            let decision = decide(&p, fleet, &before, now);
            let decided = groups(&p, &decision.clusters, |c| {
                by_name.get(c).map(|f| &f.labels)
            });
            let mut conditions = status.conditions.clone();
            let (ok, reason, message) = satisfied(&p, &decision);
            set_condition(
                &mut conditions,
                "PlacementSatisfied",
                ok,
                reason,
                &message,
                now,
            );
            set_condition(
                &mut conditions,
                "PlacementMisconfigured",
                ConditionStatus::False,
                "Succeedconfigured",
                "Placement configurations check pass",
                now,
            );
            let moved = decided != status.decision_groups;
            let next = PlacementStatus {
                number_of_selected_clusters: decision.clusters.len() as i32,
                decision_groups: decided,
                conditions,
                decided_ms: if moved { now } else { status.decided_ms },
            };
            if next == status {
                continue;
            }
            let added: Vec<&str> = decision
                .clusters
                .iter()
                .map(String::as_str)
                .filter(|c| !before.contains(c))
                .collect();
            let kept: HashSet<&str> = decision.clusters.iter().map(String::as_str).collect();
            let mut removed: Vec<&str> = before.difference(&kept).copied().collect();
            removed.sort();
            match self.write_placement(&p, next).await {
                Ok(true) if moved => {
                    self.audit_decision(&p.name, decision.clusters.len(), &added, &removed)
                        .await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(placement = %p.name, error = %e, "could not store decisions")
                }
            }
        }
    }

    async fn write_placement(
        &self,
        p: &Placement,
        next: PlacementStatus,
    ) -> Result<bool, crate::error::ApiError> {
        self.service
            .placements
            .update(&p.name, |current| {
                let Some(mut current) = current else {
                    return Ok((Action::Keep, false));
                };
                // A newer spec is decided on the next round.
                if current.generation != p.generation || current.status.as_ref() == Some(&next) {
                    return Ok((Action::Keep, false));
                }
                current.status = Some(next.clone());
                Ok::<_, crate::error::ApiError>((Action::Put(Box::new(current)), true))
            })
            .await
    }

    async fn audit_decision(
        &self,
        placement: &str,
        selected: usize,
        added: &[&str],
        removed: &[&str],
    ) {
        let cluster = match (added, removed) {
            ([one], []) | ([], [one]) => (*one).to_owned(),
            _ => String::new(),
        };
        let changes: Vec<String> = added
            .iter()
            .map(|c| format!("+{c}"))
            .chain(removed.iter().map(|c| format!("-{c}")))
            .collect();
        self.emit(AuditEvent {
            cluster,
            kind: "placement".into(),
            action: "decide".into(),
            object: format!("placement/{placement}"),
            message: format!("{selected} clusters selected: {}", named(&changes)),
            ..Default::default()
        })
        .await;
    }
}
