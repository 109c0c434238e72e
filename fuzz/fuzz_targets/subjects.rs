//! Subjects and names from the network: who called (`api.<user>.…`), which cluster sent
//! (`hub.<cluster>.…`), whose inbox a reply goes to, identity URIs, names and request ids. A
//! subject built from a valid name reads back as that name; a valid request id fits in a NATS
//! header. Input: text (the subject's first or second token is taken as its prefix).

#![no_main]

use fleetbus_schema::{
    ApiEndpoint, ClusterName, HubTopic, Identity, RequestId, Subjects, UserName, tunnel,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Identity::from_uri(text);
    let _ = tunnel::FrameKind::parse(text);
    tunnel::is_hop_by_hop(text);
    if let Ok(id) = RequestId::new(text) {
        assert!(id.as_str().parse::<async_nats::HeaderValue>().is_ok());
    }
    let prefixes = text.split('.').take(2).chain(["fleet"]);
    for subjects in prefixes.filter_map(|p| Subjects::new(p).ok()) {
        subjects.api_caller(text);
        subjects.hub_sender(text);
        subjects.inbox_user(text);
        if let Ok(cluster) = ClusterName::new(text) {
            let sent = subjects.hub(&cluster, HubTopic::Work);
            assert_eq!(subjects.hub_sender(&sent), Some(cluster));
        }
        if let Ok(user) = UserName::new(text) {
            let called = subjects.api(&user, ApiEndpoint::WhoAmI);
            assert_eq!(subjects.api_caller(&called).as_ref(), Some(&user));
            let inbox = format!("{}.x", subjects.inbox(&Identity::User(user.clone())));
            assert_eq!(subjects.inbox_user(&inbox), Some(user));
        }
    }
});
