//! The spoke's HTTP client for its own kube-apiserver: TLS that trusts only the apiserver's CA
//! (never the system roots, never "insecure"), and no credentials of its own: the caller's
//! bearer token passes through, so the apiserver's RBAC decides.

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::kube::Kube;

/// A pooled HTTPS client bound to one apiserver.
#[derive(Clone)]
pub struct Upstream {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
}

impl Upstream {
    /// A client for the apiserver `kube` points at, trusting exactly its CA bundle.
    pub fn new(kube: &Kube) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(kube.ca_pem.as_bytes()) {
            // A bundle may hold the serving certificate too; only usable CAs are added.
            let _ = roots.add(cert?);
        }
        if roots.is_empty() {
            anyhow::bail!(
                "the kubeconfig names no CA for the apiserver; the tunnel will not trust the system roots"
            );
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Without TCP_NODELAY a small request write waits for the previous segment's ACK,
        // which the apiserver delays: a fixed ~40 ms per keep-alive request.
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: kube.server.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends one request; the response body streams.
    pub async fn send(
        &self,
        mut request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        if let Ok(uri) = format!("{}{path}", self.base).parse() {
            *request.uri_mut() = uri;
        }
        self.client.request(request).await
    }
}
