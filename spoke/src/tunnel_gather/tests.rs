use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::*;

type Chunks = mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;

/// A body fed chunk by chunk; it ends when the sender is dropped.
fn body() -> (
    Chunks,
    StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Unpin>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
    .boxed();
    (tx, StreamBody::new(stream))
}

fn chunk(tx: &Chunks, bytes: &'static [u8]) {
    tx.send(Ok(Frame::data(Bytes::from_static(bytes)))).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_short_body_that_ends_at_once_is_whole() {
    let (tx, mut body) = body();
    chunk(&tx, b"{\"kind\":");
    chunk(&tx, b"\"ConfigMap\"}");
    drop(tx);
    assert_eq!(
        gather(&mut body, false).await,
        Ok(Gathered::Whole(Bytes::from_static(
            b"{\"kind\":\"ConfigMap\"}"
        )))
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_still_open_after_the_gather_time_streams_with_what_came() {
    let (tx, mut body) = body();
    chunk(&tx, b"{\"type\":\"ADDED\"}\n");
    let started = Instant::now();
    let gathered = gather(&mut body, false).await;
    assert_eq!(
        gathered,
        Ok(Gathered::Started(Bytes::from_static(
            b"{\"type\":\"ADDED\"}\n"
        )))
    );
    assert!(started.elapsed() <= tunnel::GATHER + Duration::from_millis(1));
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn a_silent_body_of_unknown_length_streams_empty() {
    let (_tx, mut body) = body();
    assert_eq!(
        gather(&mut body, false).await,
        Ok(Gathered::Started(Bytes::new()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_larger_than_a_frame_streams() {
    static BIG: [u8; tunnel::CHUNK + 1] = [b'x'; tunnel::CHUNK + 1];
    let (tx, mut body) = body();
    chunk(&tx, &BIG);
    chunk(&tx, b"never read here");
    match gather(&mut body, false).await {
        Ok(Gathered::Started(start)) => assert_eq!(start.len(), BIG.len()),
        other => panic!("expected the start of a stream, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_known_length_is_waited_for_past_the_gather_time() {
    let (tx, mut body) = body();
    let feed = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        chunk(&tx, b"late but whole");
    });
    assert_eq!(
        gather(&mut body, true).await,
        Ok(Gathered::Whole(Bytes::from_static(b"late but whole")))
    );
    feed.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_known_length_that_never_comes_is_an_error() {
    let (_tx, mut body) = body();
    assert!(gather(&mut body, true).await.is_err());
}

#[test]
fn only_a_content_length_within_a_frame_counts_as_small() {
    let with = |value: &str| {
        http::Response::builder()
            .header(http::header::CONTENT_LENGTH, value)
            .body(())
            .unwrap()
    };
    assert!(small_length(&with("1000")));
    assert!(!small_length(&with(&(tunnel::CHUNK + 1).to_string())));
    assert!(!small_length(&with("many")));
    assert!(!small_length(&http::Response::new(())));
}
