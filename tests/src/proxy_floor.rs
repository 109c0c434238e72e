//! The floor under `fleetbus-bench proxy`'s tunnel: the least any relay through NATS costs on
//! this machine. It has the tunnel's hops and nothing else: a local HTTPS listener (the same
//! session certificate), one NATS request per HTTP request to a responder on another
//! connection, and the responder's keep-alive HTTPS client to the apiserver. No frames,
//! streaming, credit, checks, request ids or audit; the bearer token rides in a NATS header.
//! What the tunnel adds beyond the floor is fleetbus's own cost; what the floor adds to direct
//! access is the price of the hops.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::proxy_bench::Keepalive;

const SUBJECT: &str = "fleetbus-bench.floor";

/// The reply's header with the apiserver's status.
const STATUS: &str = "status";

/// A running floor relay; stops on drop.
pub(crate) struct Floor {
    /// Where its HTTPS listener is.
    pub addr: std::net::SocketAddr,
    /// The CA its listener's certificate is issued by.
    pub ca_pem: String,
    _tasks: JoinSet<()>,
}

impl Floor {
    /// Starts the listener on `local` and the responder on `remote`, which reaches the
    /// apiserver at `url` (trusting `ca_pem`).
    pub async fn start(
        local: async_nats::Client,
        remote: async_nats::Client,
        url: &str,
        ca_pem: &str,
    ) -> anyhow::Result<Self> {
        let upstream = std::sync::Arc::new(Keepalive::new(url, ca_pem, "")?);
        let mut requests = remote.subscribe(SUBJECT).await?;
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            while let Some(msg) = requests.next().await {
                let (nats, upstream) = (remote.clone(), upstream.clone());
                tokio::spawn(async move {
                    let path = String::from_utf8_lossy(&msg.payload);
                    let authorization = msg
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("authorization"))
                        .map_or("", |v| v.as_str());
                    let (status, body) = match upstream.fetch(&path, authorization).await {
                        Ok(response) => response,
                        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string().into()),
                    };
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(STATUS, status.as_str());
                    if let Some(reply) = msg.reply {
                        let _ = nats.publish_with_headers(reply, headers, body).await;
                    }
                });
            }
        });
        let (tls, ca_pem) = fleetbus_cli::proxy::local::tls()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tasks.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (tls, nats) = (tls.clone(), local.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request| relay(nats.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            ca_pem,
            _tasks: tasks,
        })
    }
}

/// One request there and back, with the apiserver's status and body (not its headers).
async fn relay(
    nats: async_nats::Client,
    request: http::Request<hyper::body::Incoming>,
) -> anyhow::Result<http::Response<Full<Bytes>>> {
    let mut headers = async_nats::HeaderMap::new();
    if let Some(token) = request.headers().get(http::header::AUTHORIZATION) {
        headers.insert("authorization", token.to_str()?);
    }
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let reply = nats
        .request_with_headers(SUBJECT, headers, path.to_owned().into())
        .await?;
    let status = reply
        .headers
        .as_ref()
        .and_then(|h| h.get(STATUS)?.as_str().parse().ok())
        .unwrap_or(http::StatusCode::BAD_GATEWAY);
    let mut response = http::Response::new(Full::new(reply.payload));
    *response.status_mut() = status;
    Ok(response)
}
