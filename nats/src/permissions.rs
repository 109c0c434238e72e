//! What each identity may publish and subscribe to. nats-server enforces these lists; the auth
//! callout hands them out. Allow lists only, no deny rules, so there is no overlap to get wrong.

use fleetbus_schema::{Identity, Subjects};

use crate::jwt::Permissions;

/// The permissions of `identity` in the fleet that uses `subjects`.
pub fn permissions_for(identity: &Identity, subjects: &Subjects) -> Permissions {
    let own_inbox = subjects.inbox_all(identity);
    match identity {
        Identity::Hub => Permissions {
            publish: vec![">".into()],
            subscribe: vec![">".into()],
        },
        Identity::Bootstrap => Permissions {
            publish: vec![subjects.join()],
            subscribe: vec![own_inbox],
        },
        Identity::Spoke(cluster) => Permissions {
            publish: vec![
                subjects.hub_cluster_all(cluster),
                // Replies to the hub's requests; the hub's inbox tokens are random.
                subjects.inbox_all(&Identity::Hub),
            ],
            subscribe: vec![subjects.spoke_all(cluster), own_inbox],
        },
        Identity::User(user) => Permissions {
            publish: vec![subjects.api_user_all(user)],
            subscribe: vec![own_inbox],
        },
        Identity::Auditor(_) => Permissions {
            publish: vec![],
            subscribe: vec![own_inbox],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::{ClusterName, UserName};

    #[test]
    fn spoke_gets_only_its_own_cluster() {
        let s = Subjects::default();
        let p = permissions_for(&Identity::Spoke(ClusterName::new("c1").unwrap()), &s);
        assert_eq!(p.publish, ["fleet.hub.c1.>", "_INBOX.fleet.hub.>"]);
        assert_eq!(p.subscribe, ["fleet.spoke.c1.>", "_INBOX.fleet.spoke.c1.>"]);
    }

    #[test]
    fn bootstrap_may_only_join() {
        let p = permissions_for(&Identity::Bootstrap, &Subjects::default());
        assert_eq!(p.publish, ["fleet.join"]);
        assert_eq!(p.subscribe, ["_INBOX.fleet.bootstrap.>"]);
    }

    #[test]
    fn user_gets_own_api_subjects() {
        let p = permissions_for(
            &Identity::User(UserName::new("alice").unwrap()),
            &Subjects::default(),
        );
        assert_eq!(p.publish, ["fleet.api.alice.>"]);
        assert_eq!(p.subscribe, ["_INBOX.fleet.user.alice.>"]);
    }

    #[test]
    fn no_wildcard_widening_outside_the_hub() {
        let s = Subjects::default();
        for id in [
            Identity::Bootstrap,
            Identity::Spoke(ClusterName::new("c").unwrap()),
            Identity::User(UserName::new("u").unwrap()),
            Identity::Auditor(UserName::new("a").unwrap()),
        ] {
            let p = permissions_for(&id, &s);
            for subject in p.publish.iter().chain(&p.subscribe) {
                assert!(!subject.contains('*'), "{id}: {subject}");
                assert_ne!(subject, ">");
            }
        }
    }
}
