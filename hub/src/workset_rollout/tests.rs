//! Unit tests of the rollout plan.

use super::*;
use fleetbus_schema::v1::MandatoryDecisionGroup;

fn group(index: i32, name: &str, clusters: &[&str]) -> DecisionGroup {
    DecisionGroup {
        index,
        name: name.into(),
        clusters: clusters.iter().map(|c| (*c).into()).collect(),
        clusters_count: clusters.len() as i32,
    }
}

fn members<'a>(states: &[(&'a str, State)]) -> Vec<Member<'a>> {
    states
        .iter()
        .map(|(c, s)| Member {
            cluster: c,
            state: s.clone(),
            soaking: false,
        })
        .collect()
}

fn progressive(concurrency: &str, failures: &str) -> RolloutStrategy {
    RolloutStrategy {
        r#type: RolloutType::Progressive as i32,
        max_concurrency: concurrency.into(),
        max_failures: failures.into(),
        ..Default::default()
    }
}

use State::*;

#[test]
fn cluster_states_follow_the_reports() {
    let o = |current, applied, available, degraded| Observed {
        set_generation: 2,
        generation: 1,
        released_ms: 100,
        current,
        applied: Some(applied),
        available: Some(available),
        degraded: Some(degraded),
        message: "bad".into(),
        ..Default::default()
    };
    use ConditionStatus::{False as F, True as T, Unknown as U};
    assert_eq!(state(None, 2, 0, 0), ToApply);
    let old = Observed {
        set_generation: 1,
        ..o(true, T, T, F)
    };
    assert_eq!(state(Some(&old), 2, 0, 0), ToApply);
    assert_eq!(state(Some(&o(true, T, T, F)), 2, 0, 0), Succeeded);
    assert_eq!(
        state(Some(&o(true, T, T, T)), 2, 0, 0),
        Failed("bad".into())
    );
    assert_eq!(
        state(Some(&o(true, F, U, F)), 2, 0, 0),
        Failed("bad".into())
    );
    assert_eq!(state(Some(&o(false, T, T, F)), 2, 0, 0), Progressing);
    assert_eq!(state(Some(&o(false, T, T, F)), 2, 50, 149), Progressing);
    assert_eq!(state(Some(&o(false, T, T, F)), 2, 50, 150), TimeOut);
    let deleting = Observed {
        deleting: true,
        ..o(true, T, T, F)
    };
    assert_eq!(state(Some(&deleting), 2, 0, 0), Removing);
}

#[test]
fn all_releases_everyone_and_reports_failures() {
    let groups = [group(0, "", &["a", "b", "c"])];
    let all = RolloutStrategy::default();
    let m = members(&[("a", ToApply), ("b", Succeeded), ("c", ToApply)]);
    let p = plan(&all, &groups, &m, 3);
    assert_eq!(p.release, ["a", "c"]);
    assert_eq!(p.outcome, Outcome::Progressing);
    let m = members(&[
        ("a", Succeeded),
        ("b", Succeeded),
        ("c", Failed("x".into())),
    ]);
    let p = plan(&all, &groups, &m, 3);
    assert!(
        matches!(p.outcome, Outcome::Stopped(ref why) if why.contains("c (x)")),
        "{p:?}"
    );
    let m = members(&[("a", Succeeded), ("b", Succeeded), ("c", Succeeded)]);
    assert_eq!(plan(&all, &groups, &m, 3).outcome, Outcome::Complete);
}

#[test]
fn progressive_keeps_max_concurrency_in_flight() {
    let groups = [group(0, "", &["a", "b", "c", "d"])];
    let one = progressive("1", "");
    let m = members(&[
        ("a", ToApply),
        ("b", ToApply),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert_eq!(plan(&one, &groups, &m, 4).release, ["a"]);
    let m = members(&[
        ("a", Progressing),
        ("b", ToApply),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert!(plan(&one, &groups, &m, 4).release.is_empty());
    let m = members(&[
        ("a", Succeeded),
        ("b", ToApply),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert_eq!(plan(&one, &groups, &m, 4).release, ["b"]);
    let half = progressive("50%", "");
    let m = members(&[
        ("a", Succeeded),
        ("b", Progressing),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert_eq!(plan(&half, &groups, &m, 4).release, ["c"]);
    // A soaking success still counts as in flight (minSuccessTime).
    let mut m = members(&[
        ("a", Succeeded),
        ("b", ToApply),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    m[0].soaking = true;
    assert!(plan(&one, &groups, &m, 4).release.is_empty());
}

#[test]
fn progressive_stops_beyond_max_failures() {
    let groups = [group(0, "", &["a", "b", "c", "d"])];
    let m = members(&[
        ("a", Succeeded),
        ("b", Failed("degraded".into())),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    let p = plan(&progressive("1", "0"), &groups, &m, 4);
    assert!(p.release.is_empty());
    match p.outcome {
        Outcome::Stopped(why) => assert_eq!(
            why,
            "rollout stopped: 1 clusters failed, more than maxFailures 0: b (degraded)"
        ),
        other => panic!("{other:?}"),
    }
    let p = plan(&progressive("1", "1"), &groups, &m, 4);
    assert_eq!(p.release, ["c"]);
    let m = members(&[
        ("a", Succeeded),
        ("b", Failed("x".into())),
        ("c", Succeeded),
        ("d", Succeeded),
    ]);
    assert_eq!(
        plan(&progressive("1", "25%"), &groups, &m, 4).outcome,
        Outcome::Complete
    );
}

#[test]
fn mandatory_groups_go_first_and_tolerate_no_failure() {
    let groups = [group(0, "", &["a", "b"]), group(1, "canary", &["c"])];
    let mut s = progressive("2", "5");
    s.mandatory_decision_groups = vec![MandatoryDecisionGroup {
        group_name: "canary".into(),
        group_index: None,
    }];
    let m = members(&[("a", ToApply), ("b", ToApply), ("c", ToApply)]);
    assert_eq!(plan(&s, &groups, &m, 2).release, ["c"]);
    let m = members(&[("a", ToApply), ("b", ToApply), ("c", Failed(String::new()))]);
    assert!(matches!(
        plan(&s, &groups, &m, 2).outcome,
        Outcome::Stopped(_)
    ));
    let m = members(&[("a", ToApply), ("b", ToApply), ("c", Succeeded)]);
    assert_eq!(plan(&s, &groups, &m, 2).release, ["a", "b"]);
}

#[test]
fn per_group_waits_for_each_group() {
    let groups = [group(0, "", &["a", "b"]), group(1, "", &["c", "d"])];
    let s = RolloutStrategy {
        r#type: RolloutType::ProgressivePerGroup as i32,
        max_failures: "1".into(),
        ..Default::default()
    };
    let m = members(&[
        ("a", ToApply),
        ("b", ToApply),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert_eq!(plan(&s, &groups, &m, 2).release, ["a", "b"]);
    let m = members(&[
        ("a", Succeeded),
        ("b", Progressing),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert!(plan(&s, &groups, &m, 2).release.is_empty());
    let m = members(&[
        ("a", Succeeded),
        ("b", Failed(String::new())),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert_eq!(plan(&s, &groups, &m, 2).release, ["c", "d"]);
    let m = members(&[
        ("a", Failed(String::new())),
        ("b", Failed(String::new())),
        ("c", ToApply),
        ("d", ToApply),
    ]);
    assert!(matches!(
        plan(&s, &groups, &m, 2).outcome,
        Outcome::Stopped(_)
    ));
}

#[test]
fn summaries_count_the_current_generation() {
    let current = Observed {
        set_generation: 2,
        generation: 2,
        current: true,
        applied: Some(ConditionStatus::True),
        available: Some(ConditionStatus::True),
        degraded: Some(ConditionStatus::False),
        ..Default::default()
    };
    let old = Observed {
        set_generation: 1,
        ..current.clone()
    };
    let pending = Observed {
        current: false,
        ..current.clone()
    };
    let s = summarize([&current, &old, &pending].into_iter(), 2, 4, 0);
    assert_eq!(
        (
            s.total,
            s.updated,
            s.applied,
            s.available,
            s.progressing,
            s.desired_total
        ),
        (3, 2, 1, 1, 1, 4)
    );
    let groups = [group(0, "", &["a", "b"]), group(1, "", &["c"])];
    let ok: HashSet<&str> = ["a", "b"].into_iter().collect();
    assert_eq!(
        available_groups(&groups, &ok, 2),
        "1 (2 / 3 clusters applied)"
    );
}
