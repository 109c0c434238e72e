//! The hub's state buckets when replicas write the same key: an update may start from its own
//! mirror, but a mirror that lags never decides anything the server does not check. Each
//! replica is a `Bucket::frozen` here, whose mirror only its own writes feed, so the lag is
//! certain instead of a race with the watch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::sync::Mutex;

use async_nats::jetstream;
use fleetbus_hub::store::{Action, Bucket, StoreError};
use fleetbus_schema::Identity;
use fleetbus_schema::v1::ClusterRecord;
use fleetbus_tests::Fleet;

/// The test counts versions of the record in one of its numeric fields.
fn record(version: i64) -> ClusterRecord {
    ClusterRecord {
        name: "c1".into(),
        created_ms: version,
        ..Default::default()
    }
}

/// Runs one update of `bucket`'s `c1` and returns the versions `decide` was shown.
async fn update(
    bucket: &Bucket<ClusterRecord>,
    decide: impl Fn(Option<i64>) -> Result<Action<ClusterRecord>, StoreError>,
) -> anyhow::Result<Vec<Option<i64>>> {
    let seen = Mutex::new(Vec::new());
    bucket
        .update("c1", |current: Option<ClusterRecord>| {
            let version = current.map(|r| r.created_ms);
            seen.lock().unwrap().push(version);
            decide(version).map(|action| (action, ()))
        })
        .await?;
    Ok(seen.into_inner().unwrap())
}

fn next(version: Option<i64>) -> Result<Action<ClusterRecord>, StoreError> {
    Ok(Action::Put(Box::new(record(version.map_or(1, |v| v + 1)))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_mirror_never_decides_what_the_server_does_not_check() -> anyhow::Result<()> {
    let fleet = Fleet::start().await?;
    let js = jetstream::new(fleet.nats.connect_as(&Identity::Hub).await?);
    let name = format!("{}-store-test", fleet.nats.subjects.prefix());
    let (a, b) = (
        Bucket::<ClusterRecord>::frozen(&js, &name).await?,
        Bucket::<ClusterRecord>::frozen(&js, &name).await?,
    );

    // a creates the key (its mirror now holds version 1); b, which has never seen it, reads
    // it from the server and writes version 2.
    assert_eq!(update(&a, next).await?, [None]);
    assert_eq!(update(&b, next).await?, [Some(1)]);

    // a's mirror still says 1. Its write decided on that fails the compare-and-set and is
    // decided again on the server's 2, so b's write is not lost.
    assert_eq!(update(&a, next).await?, [Some(1), Some(2)]);
    assert_eq!(b.get("c1").await?.map(|r| r.created_ms), Some(3));

    // Now b's mirror lags (it holds 2). Keeping the entry, decided on the mirror, is decided
    // again on the server's value: a stale "nothing to do" could hide a's change.
    assert_eq!(update(&b, |_| Ok(Action::Keep)).await?, [Some(2), Some(3)]);

    // So is a refusal: what is wrong with a stale copy may be right with the current one.
    let refuse_stale = |version| match version {
        Some(3) => Ok(Action::Keep),
        _ => Err(StoreError::Contended("refused on a stale copy".into())),
    };
    assert_eq!(update(&b, refuse_stale).await?, [Some(2), Some(3)]);

    // A deletion decided on the lagging mirror is checked by the server like a write.
    assert_eq!(
        update(&b, |_| Ok(Action::Delete)).await?,
        [Some(2), Some(3)]
    );
    assert!(a.get("c1").await?.is_none(), "the key is gone");
    Ok(())
}
