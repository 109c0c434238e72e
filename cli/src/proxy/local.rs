//! The local end users point kubectl at: an HTTPS listener on loopback (a certificate made for
//! this session; kubectl sends bearer tokens only over TLS) that checks a per-session secret,
//! swaps it for the managed service account's token, and sends each request through the
//! tunnel. Errors reach kubectl as Kubernetes `Status` objects, so it prints them like the
//! apiserver's own.

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::tunnel::{Body, Tunnel, Upgrade};

/// Largest request body forwarded.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One local proxy session.
pub struct LocalProxy {
    /// The tunnel to the cluster.
    pub tunnel: Tunnel,
    /// The MSA token (refreshed by the caller), or `None` to forward without one.
    pub token: Arc<RwLock<Option<String>>>,
    /// What local clients must present as their bearer token.
    pub secret: String,
    /// Why the last upgraded session (exec, attach, port-forward) that the tunnel broke ended:
    /// kubectl cannot always tell (a SPDY connection that closes reads as success).
    pub broken: std::sync::Mutex<Option<String>>,
}

/// A TLS acceptor for 127.0.0.1/localhost with a certificate made for this session, and the
/// CA (PEM) that the session's kubeconfig trusts.
pub fn tls() -> anyhow::Result<(tokio_rustls::TlsAcceptor, String)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let day = std::time::Duration::from_secs(86_400);
    let (ca, _) = fleetbus_nats::pki::Ca::generate("fleetbus proxy session", day)?;
    let issued = ca.issue_server(&["localhost".into()], &[[127, 0, 0, 1].into()], day)?;
    let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
        ca.cert_pem().to_owned(),
    ))
}

/// A random secret for the local kubeconfig.
pub fn new_secret() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// A request id, also sent to the apiserver as `Audit-ID` (UUID shaped, as the apiserver's own).
pub fn request_id() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(36);
    for (i, b) in rand::random::<u128>().to_be_bytes().into_iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            id.push('-');
        }
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

/// Serves TLS connections from `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    proxy: Arc<LocalProxy>,
    stop: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        // Responses are written in pieces as frames arrive; Nagle would hold each tail back
        // until the client's delayed ACK (~40 ms on keep-alive connections).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot disable Nagle on a local connection");
        }
        let (proxy, tls, stop) = (proxy.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| {
                let (proxy, stop) = (proxy.clone(), stop.clone());
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(request, stop).await) }
            });
            // With upgrades: exec, attach and port-forward switch the connection to SPDY or
            // WebSocket after the 101.
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl LocalProxy {
    async fn handle(
        self: &Arc<Self>,
        mut request: http::Request<hyper::body::Incoming>,
        stop: CancellationToken,
    ) -> http::Response<Body> {
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(self.secret.as_str()) {
            return status(
                401,
                "Unauthorized",
                "present the bearer token from the proxy's kubeconfig",
            );
        }
        let upgrade = request
            .headers()
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(protocol) = upgrade {
            let local = hyper::upgrade::on(&mut request);
            let (mut parts, _) = request.into_parts();
            self.authorize(&mut parts);
            let id = request_id();
            return match self.tunnel.upgrade(&parts, &id, &protocol).await {
                Ok(Upgrade::Refused(response)) => response,
                Ok(Upgrade::Accepted(response, stream)) => {
                    let proxy = self.clone();
                    tokio::spawn(async move {
                        let relayed = match local.await {
                            Ok(io) => stream.relay(TokioIo::new(io), &stop).await,
                            Err(e) => {
                                tracing::warn!(request_id = %id, error = %e, "the local connection did not upgrade");
                                return;
                            }
                        };
                        if let Some((code, cause)) = relayed.failure {
                            tracing::warn!(request_id = %id, code, %cause, "upgraded session failed");
                            if !relayed.local {
                                *proxy
                                    .broken
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(format!("{cause} (request id {id})"));
                            }
                        }
                    });
                    response
                }
                Err(e) => status(e.status(), reason(e.status()), &format!("fleetbus: {e}")),
            };
        }
        let (mut parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(body) => body.to_bytes(),
            Err(_) => {
                return status(
                    413,
                    "RequestEntityTooLarge",
                    "request body larger than 16 MiB",
                );
            }
        };
        self.authorize(&mut parts);
        match self.tunnel.request(&parts, body, &request_id()).await {
            Ok(response) => response,
            Err(e) => status(e.status(), reason(e.status()), &format!("fleetbus: {e}")),
        }
    }

    /// Swaps the session secret for the managed service account's token.
    fn authorize(&self, parts: &mut http::request::Parts) {
        parts.headers.remove(http::header::AUTHORIZATION);
        let token = self
            .token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(token) = token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            parts.headers.insert(http::header::AUTHORIZATION, value);
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        401 => "Unauthorized",
        403 => "Forbidden",
        413 => "RequestEntityTooLarge",
        431 => "RequestHeaderFieldsTooLarge",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// A Kubernetes `Status` failure response.
pub fn status(code: u16, reason: &str, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    let mut response = http::Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_audit_ids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(id, request_id());
    }

    #[test]
    fn status_is_a_kubernetes_failure() {
        let r = status(503, "ServiceUnavailable", "cluster c1 is not connected");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/json");
    }
}
