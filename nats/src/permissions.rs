//! What each identity may publish and subscribe to, and how it may connect. nats-server enforces
//! these lists; the auth callout hands them out. Allow lists only, no deny rules, so there is no
//! overlap to get wrong.
//!
//! Spokes (and the bootstrap identity they join with) may also connect as a leaf node: a
//! nats-server in the cluster's network dials the hub with the spoke's certificate and carries
//! its local clients' traffic. nats-server applies the same lists to that connection (what the
//! leaf may send in, what it may receive), so a spoke behind a leaf node reaches exactly what it
//! would reach directly. Everyone else connects only as a client.

use fleetbus_schema::service::discovery_subjects;
use fleetbus_schema::{ClusterName, Discovery, Identity, Subjects};

use crate::jwt::{LEAFNODE, Permissions, STANDARD};

/// Rights that depend on hub state, decided per connection by the hub.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyAccess {
    /// No cluster's Kubernetes API.
    #[default]
    None,
    /// Every cluster's (admins).
    All,
    /// These clusters' (users with grants there).
    Clusters(Vec<ClusterName>),
}

/// The connection type of a callout request's `client_info.kind`. nats-server 2.14 does not
/// enforce a callout user's `allowed_connection_types` itself, so the callout checks it.
pub fn connection_type(kind: &str) -> &'static str {
    if kind.eq_ignore_ascii_case("leafnode") {
        LEAFNODE
    } else {
        STANDARD
    }
}

impl Permissions {
    /// Whether a connection of `kind` (`client_info.kind`) is admitted.
    pub fn admits(&self, kind: &str) -> bool {
        self.connection_types.contains(&connection_type(kind))
    }
}

/// The permissions of `identity` in the fleet that uses `subjects`.
pub fn permissions_for(
    identity: &Identity,
    subjects: &Subjects,
    proxy: &ProxyAccess,
) -> Permissions {
    let own_inbox = subjects.inbox_all(identity);
    let mut permissions = match identity {
        Identity::Hub => Permissions {
            publish: vec![">".into()],
            subscribe: vec![">".into()],
            connection_types: vec![STANDARD],
        },
        Identity::Bootstrap => Permissions {
            publish: vec![subjects.join()],
            subscribe: vec![own_inbox],
            connection_types: vec![STANDARD, LEAFNODE],
        },
        Identity::Spoke(cluster) => Permissions {
            publish: vec![
                subjects.hub_cluster_all(cluster),
                // Replies to the hub's requests and tunnel frames to users; inbox tokens are
                // random, so a spoke can only write to streams it was asked to serve.
                subjects.inbox_all(&Identity::Hub),
                subjects.user_inboxes_all(),
                // Its own audit events (proxied requests) and no other cluster's.
                subjects.audit_filter(None, Some(cluster)),
            ],
            subscribe: vec![
                subjects.spoke_all(cluster),
                subjects.kapi_cluster_all(cluster),
                own_inbox,
            ],
            connection_types: vec![STANDARD, LEAFNODE],
        },
        Identity::User(user) => {
            let mut publish = vec![subjects.api_user_all(user)];
            match proxy {
                ProxyAccess::None => {}
                // Only under her own name: the spoke takes the sender from the subject.
                ProxyAccess::All => publish.push(subjects.kapi_user_everywhere(user)),
                ProxyAccess::Clusters(clusters) => {
                    publish.extend(clusters.iter().map(|c| subjects.kapi_user_all(c, user)));
                }
            }
            Permissions {
                publish,
                subscribe: vec![own_inbox],
                connection_types: vec![STANDARD],
            }
        }
        Identity::Auditor(auditor) => Permissions {
            publish: crate::audit::reader_permissions(subjects, auditor),
            subscribe: vec![own_inbox],
            connection_types: vec![STANDARD],
        },
    };
    permissions.publish.extend(discovery(identity, proxy));
    permissions
}

/// The NATS micro discovery requests (`$SRV.…`) an identity may send. Admins (the users the
/// hub gives [`ProxyAccess::All`]) operate the hub: PING, INFO and STATS. Other users and
/// auditors get PING and INFO, which say only what the published contract says; STATS carries
/// every caller's request counts and last error text. Spokes and bootstrap get none (the hub
/// already has `>`).
fn discovery(identity: &Identity, proxy: &ProxyAccess) -> Vec<String> {
    let verbs: &[Discovery] = match identity {
        Identity::User(_) if *proxy == ProxyAccess::All => &Discovery::ALL,
        Identity::User(_) | Identity::Auditor(_) => &[Discovery::Ping, Discovery::Info],
        Identity::Hub | Identity::Bootstrap | Identity::Spoke(_) => &[],
    };
    verbs.iter().flat_map(|v| discovery_subjects(*v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbus_schema::UserName;

    #[test]
    fn spoke_gets_only_its_own_cluster() {
        let s = Subjects::default();
        let p = permissions_for(
            &Identity::Spoke(ClusterName::new("c1").unwrap()),
            &s,
            &ProxyAccess::All,
        );
        assert_eq!(
            p.publish,
            [
                "fleet.hub.c1.>",
                "_INBOX.fleet.hub.>",
                "_INBOX.fleet.user.>",
                "fleet.audit.*.c1"
            ]
        );
        assert_eq!(
            p.subscribe,
            [
                "fleet.spoke.c1.>",
                "fleet.kapi.c1.>",
                "_INBOX.fleet.spoke.c1.>"
            ]
        );
    }

    #[test]
    fn only_spokes_and_bootstrap_may_be_leaf_nodes() {
        let s = Subjects::default();
        let spoke = Identity::Spoke(ClusterName::new("c1").unwrap());
        let alice = Identity::User(UserName::new("alice").unwrap());
        for (id, types) in [
            (Identity::Bootstrap, vec![STANDARD, LEAFNODE]),
            (spoke, vec![STANDARD, LEAFNODE]),
            (Identity::Hub, vec![STANDARD]),
            (alice, vec![STANDARD]),
        ] {
            let p = permissions_for(&id, &s, &ProxyAccess::All);
            assert_eq!(p.admits("Leafnode"), types.contains(&LEAFNODE), "{id}");
            assert!(p.admits("Client"), "{id}");
            assert_eq!(p.connection_types, types, "{id}");
        }
    }

    #[test]
    fn discovery_is_for_users_and_auditors_and_stats_for_admins() {
        let s = Subjects::default();
        let alice = Identity::User(UserName::new("alice").unwrap());
        let auditor = Identity::Auditor(UserName::new("audit").unwrap());
        let spoke = Identity::Spoke(ClusterName::new("c1").unwrap());
        let srv = |p: &Permissions| -> Vec<String> {
            p.publish
                .iter()
                .filter(|s| s.starts_with("$SRV."))
                .cloned()
                .collect()
        };
        let admin = srv(&permissions_for(&alice, &s, &ProxyAccess::All));
        assert_eq!(admin.len(), 9);
        assert!(admin.contains(&"$SRV.STATS.fleetbus-hub".to_owned()));
        for (id, access) in [
            (&alice, ProxyAccess::None),
            (
                &alice,
                ProxyAccess::Clusters(vec![ClusterName::new("c1").unwrap()]),
            ),
            (&auditor, ProxyAccess::None),
        ] {
            let got = srv(&permissions_for(id, &s, &access));
            assert_eq!(
                got,
                [
                    "$SRV.PING",
                    "$SRV.PING.fleetbus-hub",
                    "$SRV.PING.fleetbus-hub.*",
                    "$SRV.INFO",
                    "$SRV.INFO.fleetbus-hub",
                    "$SRV.INFO.fleetbus-hub.*"
                ],
                "{id}"
            );
        }
        for id in [spoke, Identity::Bootstrap] {
            assert!(
                srv(&permissions_for(&id, &s, &ProxyAccess::All)).is_empty(),
                "{id}"
            );
        }
    }

    #[test]
    fn bootstrap_may_only_join() {
        let p = permissions_for(
            &Identity::Bootstrap,
            &Subjects::default(),
            &ProxyAccess::All,
        );
        assert_eq!(p.publish, ["fleet.join"]);
        assert_eq!(p.subscribe, ["_INBOX.fleet.bootstrap.>"]);
    }

    #[test]
    fn user_gets_own_api_subjects() {
        let alice = Identity::User(UserName::new("alice").unwrap());
        let p = permissions_for(&alice, &Subjects::default(), &ProxyAccess::None);
        assert_eq!(p.publish[0], "fleet.api.alice.>");
        assert_eq!(p.publish[1..], discovery(&alice, &ProxyAccess::None));
        assert_eq!(p.subscribe, ["_INBOX.fleet.user.alice.>"]);
        let granted = ProxyAccess::Clusters(vec![ClusterName::new("c1").unwrap()]);
        let p = permissions_for(&alice, &Subjects::default(), &granted);
        assert_eq!(
            p.publish[..2],
            ["fleet.api.alice.>", "fleet.kapi.c1.alice.>"]
        );
        let p = permissions_for(&alice, &Subjects::default(), &ProxyAccess::All);
        assert_eq!(
            p.publish[..2],
            ["fleet.api.alice.>", "fleet.kapi.*.alice.>"]
        );
    }

    #[test]
    fn no_wildcard_widening_outside_the_hub() {
        let s = Subjects::default();
        for id in [
            Identity::Bootstrap,
            Identity::Spoke(ClusterName::new("c").unwrap()),
            Identity::User(UserName::new("u").unwrap()),
        ] {
            let p = permissions_for(&id, &s, &ProxyAccess::None);
            for subject in p.publish.iter().chain(&p.subscribe) {
                // The wildcards: a spoke may emit any kind of audit event about itself; a
                // discovery request may name any instance of the hub service.
                let own_audit = subject == "fleet.audit.*.c";
                let instance = subject.starts_with("$SRV.") && subject.ends_with(".fleetbus-hub.*");
                assert!(
                    own_audit || instance || !subject.contains('*'),
                    "{id}: {subject}"
                );
                assert_ne!(subject, ">");
            }
        }
    }
}
