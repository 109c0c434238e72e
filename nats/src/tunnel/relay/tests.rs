//! The relay's state machine without servers: two relays joined back to back through their
//! stream queues, under tokio's paused clock, so timeouts and keepalives take no real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use fleetbus_schema::tunnel;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::routes::{Route, Routes};
use super::super::sender::{Publisher, Sender};
use super::super::{Frame, SeqCheck};
use super::{Relayed, relay};

/// Frames published into a stream queue, as NATS would deliver them (a message to a stream
/// nobody serves any more is dropped, as on NATS).
#[derive(Clone)]
struct Link {
    to: Routes<Message>,
    token: String,
    published: Arc<AtomicU64>,
}

impl Publisher for Link {
    async fn publish(
        &self,
        subject: String,
        _reply: Option<String>,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<(), String> {
        self.published.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .to
            .deliver(&self.token, message(subject, headers, payload));
        Ok(())
    }
}

/// `frame` as number `seq`, as it arrives.
fn framed(frame: Frame, seq: u64) -> Message {
    let (headers, payload) = frame.encode(seq).unwrap();
    message("x".into(), headers, payload)
}

fn message(subject: String, headers: HeaderMap, payload: Bytes) -> Message {
    Message {
        subject: subject.into(),
        reply: None,
        length: payload.len(),
        payload,
        headers: Some(headers),
        status: None,
        description: None,
    }
}

/// One end: the application's side of its connection, and what its relay needs.
struct End {
    app: DuplexStream,
    io: DuplexStream,
    out: Sender<Link>,
    inbound: Route<Message>,
    published: Arc<AtomicU64>,
}

fn pair() -> (End, End, Routes<Message>) {
    let routes = Routes::default();
    let end = |me: &str, peer: &str| {
        let (app, io) = tokio::io::duplex(64 * 1024);
        let published = Arc::new(AtomicU64::new(0));
        let link = Link {
            to: routes.clone(),
            token: peer.into(),
            published: published.clone(),
        };
        End {
            app,
            io,
            out: Sender::new(link, peer, 0),
            inbound: routes.register(me.into()),
            published,
        }
    };
    let a = end("a", "b");
    let b = end("b", "a");
    (a, b, routes)
}

fn spawn_relay(
    mut end: End,
    stop: CancellationToken,
) -> (
    DuplexStream,
    Arc<AtomicU64>,
    tokio::task::JoinHandle<Relayed>,
) {
    let published = end.published.clone();
    let task = tokio::spawn(async move {
        let mut seq = SeqCheck::default();
        relay(
            end.io,
            &mut end.out,
            &mut end.inbound,
            &mut seq,
            &stop,
            &mut |_| {},
        )
        .await
    });
    (end.app, published, task)
}

#[tokio::test(start_paused = true)]
async fn each_direction_ends_on_its_own_and_nothing_is_cut_off() {
    let (a, b, _routes) = pair();
    let (mut a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
    let (mut b_app, _, b_task) = spawn_relay(b, CancellationToken::new());
    // a sends and half-closes; b still answers afterwards (like stdin EOF, then the output).
    a_app.write_all(b"hello").await.unwrap();
    a_app.shutdown().await.unwrap();
    let mut got = Vec::new();
    b_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
    // An hour of quiet on an open direction: keepalives hold the stream.
    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    b_app.write_all(b"world").await.unwrap();
    b_app.shutdown().await.unwrap();
    let mut got = Vec::new();
    a_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"world");
    let (a, b) = (a_task.await.unwrap(), b_task.await.unwrap());
    assert_eq!((a.sent, a.received, a.failure), (5, 5, None));
    assert_eq!((b.sent, b.received, b.failure), (5, 5, None));
}

#[tokio::test(start_paused = true)]
async fn a_reader_that_stops_reading_holds_the_sender_to_the_window() {
    let (a, b, _routes) = pair();
    let (a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
    let (mut b_app, _, b_task) = spawn_relay(b, CancellationToken::new());
    let total = 16 * 1024 * 1024;
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let (mut a_read, mut a_write) = tokio::io::split(a_app);
    let writer = tokio::spawn(async move {
        let block: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..total / block.len() {
            a_write.write_all(&block).await.unwrap();
            counter.fetch_add(block.len() as u64, Ordering::Relaxed);
        }
        a_write.shutdown().await.unwrap();
    });
    // b reads nothing for a minute: a's writes stop at the window plus the pipes' buffers.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    let stalled = written.load(Ordering::Relaxed);
    let bound = (tunnel::WINDOW + tunnel::CHUNK + 3 * 64 * 1024) as u64;
    assert!(
        stalled <= bound,
        "{stalled} bytes left a with nobody reading"
    );
    assert!(
        stalled >= tunnel::WINDOW as u64 / 2,
        "the window is used: {stalled}"
    );
    // Then b reads: everything arrives, in order.
    let mut got = Vec::new();
    b_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got.len(), total);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, b)| *b == ((i % (64 * 1024)) % 251) as u8)
    );
    writer.await.unwrap();
    b_app.shutdown().await.unwrap();
    let mut rest = Vec::new();
    a_read.read_to_end(&mut rest).await.unwrap();
    assert!(a_task.await.unwrap().failure.is_none());
    assert!(b_task.await.unwrap().failure.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_ends_the_stream_after_the_idle_timeout() {
    let (a, _b, _routes) = pair();
    let started = Instant::now();
    let (_a_app, published, a_task) = spawn_relay(a, CancellationToken::new());
    let end = a_task.await.unwrap();
    assert_eq!(end.failure, Some((408, "the peer went silent".into())));
    assert!(started.elapsed() >= tunnel::IDLE_TIMEOUT);
    // Keepalives went out while waiting, then the error frame.
    let expected = tunnel::IDLE_TIMEOUT.as_secs() / tunnel::KEEPALIVE.as_secs() + 1;
    assert_eq!(published.load(Ordering::Relaxed), expected);
}

#[tokio::test(start_paused = true)]
async fn a_peer_whose_process_is_gone_ends_the_stream_at_the_next_frame() {
    let (a, _b, routes) = pair();
    let started = Instant::now();
    let (_a_app, published, a_task) = spawn_relay(a, CancellationToken::new());
    // nats-server's answer to a frame whose subject nobody subscribes to any more.
    let bounced = Message {
        status: Some(async_nats::StatusCode::NO_RESPONDERS),
        headers: None,
        ..message("a".into(), HeaderMap::new(), Bytes::new())
    };
    let _ = routes.deliver("a", bounced);
    let end = a_task.await.unwrap();
    assert_eq!(
        end.failure,
        Some((502, "the other end of the stream is gone".into()))
    );
    assert!(started.elapsed() < tunnel::KEEPALIVE);
    // Nobody to tell: no error frame went out.
    assert_eq!(published.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn garbage_or_a_gap_fails_the_one_stream_on_both_sides() {
    for bad in [
        message("x".into(), HeaderMap::new(), Bytes::from_static(b"garbage")),
        framed(Frame::Data(Bytes::new()), 7),
        framed(
            Frame::Head(crate::tunnel::Head {
                upstream: "u".into(),
                ..Default::default()
            }),
            0,
        ),
    ] {
        let (a, b, routes) = pair();
        let (_a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
        let (_b_app, _, b_task) = spawn_relay(b, CancellationToken::new());
        routes.deliver("a", bad);
        let (a, b) = (a_task.await.unwrap(), b_task.await.unwrap());
        let (code, cause) = a.failure.unwrap();
        assert_eq!(code, 400, "{cause}");
        assert_eq!(b.failure, Some((400, cause)), "the peer hears why");
    }
}

#[tokio::test(start_paused = true)]
async fn credit_for_bytes_never_sent_is_a_protocol_error() {
    let (a, _b, routes) = pair();
    let (_a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
    routes.deliver("a", framed(Frame::Credit(4096), 0));
    let end = a_task.await.unwrap();
    assert_eq!(
        end.failure,
        Some((400, "credit for bytes never sent".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn stop_and_cancel_end_the_stream_and_the_peer_learns_it() {
    let (a, b, _routes) = pair();
    let stop = CancellationToken::new();
    let (_a_app, _, a_task) = spawn_relay(a, stop.clone());
    let (_b_app, _, b_task) = spawn_relay(b, CancellationToken::new());
    stop.cancel();
    let expected = Some((503, "the tunnel is shutting down".to_owned()));
    assert_eq!(a_task.await.unwrap().failure, expected);
    assert_eq!(b_task.await.unwrap().failure, expected);

    let (a, _b, routes) = pair();
    let (_a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
    routes.deliver("a", framed(Frame::Cancel, 0));
    assert_eq!(
        a_task.await.unwrap().failure,
        Some((499, "cancelled by the peer".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn what_arrived_before_a_peer_failure_is_still_delivered() {
    let (a, _b, routes) = pair();
    let (mut a_app, _, a_task) = spawn_relay(a, CancellationToken::new());
    routes.deliver(
        "a",
        framed(Frame::Data(Bytes::from_static(b"last words")), 0),
    );
    let error = Frame::Error {
        code: 502,
        message: "upstream broke off".into(),
    };
    routes.deliver("a", framed(error, 1));
    let end = a_task.await.unwrap();
    assert_eq!(end.failure, Some((502, "upstream broke off".into())));
    assert_eq!(end.received, 10);
    let mut got = Vec::new();
    a_app.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"last words");
}
