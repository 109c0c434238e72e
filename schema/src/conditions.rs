//! Kubernetes-style conditions on fleetbus objects (clusters, managed service accounts, works):
//! one entry per type, whose transition time changes only when its status does.

use crate::v1::{Condition, ConditionStatus};

/// Sets condition `kind`, keeping its transition time while its status stays the same.
pub fn set(
    conditions: &mut Vec<Condition>,
    kind: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    now_ms: i64,
) {
    let new = Condition {
        r#type: kind.into(),
        status: status as i32,
        reason: reason.into(),
        message: message.into(),
        last_transition_ms: now_ms,
    };
    match conditions.iter_mut().find(|c| c.r#type == kind) {
        Some(c) if c.status == new.status => {
            c.reason = new.reason;
            c.message = new.message;
        }
        Some(c) => *c = new,
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let mut c = Vec::new();
        set(&mut c, "Ready", ConditionStatus::True, "Ok", "", 1);
        set(&mut c, "Ready", ConditionStatus::True, "Ok", "again", 2);
        assert_eq!(
            (c[0].last_transition_ms, c[0].message.as_str()),
            (1, "again")
        );
        set(&mut c, "Ready", ConditionStatus::False, "Failed", "x", 3);
        assert_eq!((c.len(), c[0].last_transition_ms), (1, 3));
    }
}
