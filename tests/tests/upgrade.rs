//! The relay after an upgrade does not care which protocol it carries: a WebSocket upstream (as
//! apiservers from 1.30 answer kubectl's first attempt) gets its 101 headers through unchanged
//! and bytes both ways with per-direction EOF; a 101 without the headers client-go needs, and an
//! upstream that breaks off mid-session, end the one stream with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::local::kube_server::KubeServer;
use fleetbus_cli::proxy::tunnel::{Tunnel, Upgrade};
use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::Fleet;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A TLS "apiserver" on loopback: `/ws` upgrades to WebSocket and answers each byte
/// upper-cased until the client's EOF, then says `bye` and closes; `/bare` answers 101 without
/// any Upgrade header; `/broken` upgrades and then drops the connection; anything else is 200.
async fn fake_apiserver() -> anyhow::Result<(String, String)> {
    let day = Duration::from_secs(86_400);
    let (ca, _) = fleetbus_nats::pki::Ca::generate("fake apiserver", day)?;
    let issued = ca.issue_server(
        &["localhost".into()],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        day,
    )?;
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("https://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|request| async move {
                    Ok::<_, std::convert::Infallible>(answer(request))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((url, ca.cert_pem().to_owned()))
}

fn answer(mut request: http::Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let mut response = http::Response::new(Full::new(Bytes::from_static(b"ok")));
    let upgrades = matches!(path.as_str(), "/ws" | "/bare" | "/broken");
    if !upgrades || !request.headers().contains_key(http::header::UPGRADE) {
        return response;
    }
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    if path == "/bare" {
        return response;
    }
    let h = response.headers_mut();
    h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
    h.insert(http::header::CONNECTION, "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", ACCEPT.parse().unwrap());
    h.insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let upgraded = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(io) = upgraded.await else { return };
        let mut io = TokioIo::new(io);
        if path == "/broken" {
            let _ = io.write_all(b"half a frame").await;
            return;
        }
        let mut buf = [0; 4096];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let upper = buf[..n].to_ascii_uppercase();
                    if io.write_all(&upper).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = io.write_all(b"bye").await;
        let _ = io.shutdown().await;
    });
    response
}

async fn fleet_on_fake_apiserver()
-> anyhow::Result<(Fleet, fleetbus_tests::fleet::Running, Tunnel, HubClient)> {
    let fleet = Fleet::start().await?;
    let (url, ca) = fake_apiserver().await?;
    let path = fleet.nats.dir.path().join("fake.kubeconfig");
    std::fs::write(
        &path,
        KubeServer::kubeconfig_for(&url, &ca, "token", "admin"),
    )?;
    let mut config = fleet.spoke_config("cluster1", None)?;
    config.kubeconfig = Some(path);
    // It answers the spoke's health check, so the cluster is Available.
    let spoke = fleet.join(config, ConditionStatus::True).await?;
    let hub = HubClient::connect(&fleet.flags_for("admin")?).await?;
    let tunnel = Tunnel::new(
        hub.nats().clone(),
        hub.subjects().clone(),
        ClusterName::new("cluster1")?,
        hub.user().clone(),
    );
    Ok((fleet, spoke, tunnel, hub))
}

fn upgrade_request(path: &str) -> http::request::Parts {
    let (parts, ()) = http::Request::get(path)
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-protocol", "v5.channel.k8s.io")
        .body(())
        .unwrap()
        .into_parts();
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_upstream_is_relayed_like_any_other_and_bad_upgrades_fail_clearly()
-> anyhow::Result<()> {
    let (_fleet, _spoke, tunnel, _hub) = fleet_on_fake_apiserver().await?;

    // WebSocket: the 101's headers arrive unchanged, bytes flow both ways, and after the
    // client's EOF the upstream's last words still arrive.
    let Upgrade::Accepted(response, stream) = tunnel
        .upgrade(&upgrade_request("/ws"), "ws", "websocket")
        .await?
    else {
        panic!("the upstream upgraded");
    };
    assert_eq!(response.status(), 101);
    let h = response.headers();
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "Upgrade");
    assert_eq!(h["sec-websocket-accept"], ACCEPT);
    assert_eq!(h["sec-websocket-protocol"], "v5.channel.k8s.io");
    let (mut app, io) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(async move { stream.relay(io, &CancellationToken::new()).await });
    let sent: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    app.write_all(&sent).await?;
    app.shutdown().await?;
    let mut got = Vec::new();
    app.read_to_end(&mut got).await?;
    let mut expected = sent.to_ascii_uppercase();
    expected.extend_from_slice(b"bye");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes intact, the tail after EOF included");
    let relayed = relay.await?;
    assert_eq!(
        (relayed.sent, relayed.received, relayed.failure),
        (300_000, 300_003, None)
    );

    // A 101 without Upgrade/Connection: client-go would reject it; the stream fails clearly.
    let err = tunnel
        .upgrade(&upgrade_request("/bare"), "bare", "websocket")
        .await
        .err()
        .expect("a bare 101 fails");
    assert_eq!(err.status(), 502, "{err}");
    assert!(
        err.to_string().contains("101 without an Upgrade header"),
        "{err}"
    );

    // The upstream breaks off mid-session: what it sent arrives, then the session ends.
    let Upgrade::Accepted(_, stream) = tunnel
        .upgrade(&upgrade_request("/broken"), "broken", "websocket")
        .await?
    else {
        panic!("the upstream upgraded");
    };
    let (mut app, io) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(async move { stream.relay(io, &CancellationToken::new()).await });
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), app.read_to_end(&mut got)).await??;
    assert_eq!(got, b"half a frame");
    drop(app);
    let relayed = tokio::time::timeout(Duration::from_secs(30), relay).await??;
    assert_eq!(relayed.sent, 0);

    // An upgrade the upstream declines is an ordinary response.
    let Upgrade::Refused(response) = tunnel
        .upgrade(&upgrade_request("/healthz"), "declined", "websocket")
        .await?
    else {
        panic!("no upgrade for a plain answer");
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.into_body().collect().await?.to_bytes(), "ok");
    Ok(())
}
