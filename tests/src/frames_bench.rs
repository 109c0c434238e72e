//! `fleetbus-bench frames`: what the tunnel's framing costs beyond the bytes it carries. The
//! open and head frames of a 1 KB GET (a bearer token of a service account's size, the
//! response headers kube-apiserver sends, a 1 KB body) are encoded, published through a real
//! nats-server (mutual TLS) and decoded by a subscriber on another connection, pipelined. The
//! baseline in the same run publishes two messages of the same payload sizes without headers
//! and reads them without decoding. The table gives this process's CPU µs per request (an open
//! and a head) for both, per round.

use bytes::Bytes;
use fleetbus_nats::tunnel::{Frame, Head, Open};
use fleetbus_schema::Identity;
use futures::StreamExt;

use crate::Fleet;
use crate::scale::procfs;

/// Runs `requests` requests per path and round.
pub async fn run(requests: usize, rounds: usize) -> anyhow::Result<()> {
    eprintln!("starting nats-server and the hub (its auth callout) ...");
    let fleet = Fleet::start().await?;
    let sender = fleet.nats.connect_as(&Identity::Hub).await?;
    let receiver = fleet.nats.connect_as(&Identity::Hub).await?;
    let (open, head) = frames()?;
    // The baseline carries as many bytes per message, in the payload alone.
    let mut bare = Vec::new();
    for frame in [&open, &head] {
        let (headers, payload) = frame.encode(0)?;
        // `NATS/1.0`, a line per value and the blank line, as the header block is written.
        let lines: usize = headers
            .iter()
            .map(|(name, values)| {
                values
                    .iter()
                    .map(|v| name.to_string().len() + v.as_str().len() + 4)
                    .sum::<usize>()
            })
            .sum();
        let size = "NATS/1.0\r\n\r\n".len() + lines + payload.len();
        bare.push(Bytes::from(vec![b'x'; size]));
    }
    println!("| round | bare messages, µs/request | frames, µs/request | added |");
    println!("| --- | --- | --- | --- |");
    for round in 1..=rounds {
        let subject = format!("fleetbus-bench.frames.{round}");
        let mut cost = [0.0; 2];
        for (i, framed) in [false, true].into_iter().enumerate() {
            let mut messages = receiver.subscribe(subject.clone()).await?;
            receiver.flush().await?;
            let before = procfs::cpu_seconds(std::process::id());
            let receive = async {
                for _ in 0..2 * requests {
                    let msg = messages.next().await.ok_or(anyhow::anyhow!("no message"))?;
                    if framed {
                        Frame::decode(msg.headers.as_ref(), msg.payload)?;
                    }
                }
                anyhow::Ok(())
            };
            let send = async {
                for seq in 0..requests as u64 {
                    if framed {
                        for frame in [&open, &head] {
                            let (headers, payload) = frame.encode(seq)?;
                            sender
                                .publish_with_headers(subject.clone(), headers, payload)
                                .await?;
                        }
                    } else {
                        for payload in &bare {
                            sender.publish(subject.clone(), payload.clone()).await?;
                        }
                    }
                }
                sender.flush().await?;
                anyhow::Ok(())
            };
            tokio::try_join!(receive, send)?;
            let cpu = procfs::cpu_seconds(std::process::id()) - before;
            cost[i] = cpu * 1e6 / requests as f64;
        }
        println!(
            "| {round} | {:.1} | {:.1} | {:+.1} |",
            cost[0],
            cost[1],
            cost[1] - cost[0]
        );
    }
    Ok(())
}

/// The open and head frames of a 1 KB GET as `fleetbus proxy serve` and the spoke send them.
fn frames() -> anyhow::Result<(Frame, Frame)> {
    let mut request = http::HeaderMap::new();
    for (name, value) in [
        ("authorization", format!("Bearer {}", "t".repeat(950))),
        ("accept", "application/json".into()),
        (
            "user-agent",
            "kubectl/v1.32.0 (linux/amd64) kubernetes/70d3cc9".into(),
        ),
    ] {
        request.insert(name, http::HeaderValue::from_str(&value)?);
    }
    let open = Frame::Open(Open {
        method: http::Method::GET,
        path: "/api/v1/namespaces/default/configmaps/cm-1kb".into(),
        request_id: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0".into(),
        service_account: Some("bench".into()),
        headers: request,
        body: Some(Bytes::new()),
        ..Open::default()
    });
    let mut response = http::HeaderMap::new();
    for (name, value) in [
        ("audit-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
        ("cache-control", "no-cache, private"),
        ("content-type", "application/json"),
        (
            "x-kubernetes-pf-flowschema-uid",
            "4d1c1f3a-0b8e-4f6a-9a52-3c9d2b1e7f60",
        ),
        (
            "x-kubernetes-pf-prioritylevel-uid",
            "9a0e2c4b-7d6f-4e1a-8b3c-5f2d1e0a9c87",
        ),
        ("date", "Fri, 04 Dec 2026 19:30:00 GMT"),
        ("content-length", "1234"),
    ] {
        response.insert(name, http::HeaderValue::from_static(value));
    }
    let head = Frame::Head(Head {
        status: http::StatusCode::OK,
        headers: response,
        upstream: "fleet.kapi.cluster1.alice.0123456789abcdef.fedcba9876543210".into(),
        body: Some(Bytes::from(vec![b'x'; 1234])),
        ..Head::default()
    });
    Ok((open, head))
}
