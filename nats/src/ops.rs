//! Operations endpoints of hub and spoke: Prometheus `/metrics`, `/healthz` (the process
//! runs) and `/readyz` (it is connected and serving), on an address of the operator's choice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;

type Key = (&'static str, Vec<(&'static str, String)>);

/// Counters and gauges, rendered in the Prometheus text format.
#[derive(Default)]
pub struct Metrics {
    help: Mutex<BTreeMap<&'static str, (&'static str, &'static str)>>,
    values: Mutex<BTreeMap<Key, f64>>,
    ready: AtomicBool,
}

impl Metrics {
    /// Declares a metric (`kind` is `counter` or `gauge`).
    pub fn describe(&self, name: &'static str, kind: &'static str, help: &'static str) {
        lock(&self.help).insert(name, (kind, help));
    }

    /// Adds `by` to a counter.
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], by: f64) {
        *lock(&self.values).entry(key(name, labels)).or_default() += by;
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        lock(&self.values).insert(key(name, labels), value);
    }

    /// Marks the process ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let help = lock(&self.help).clone();
        let values = lock(&self.values).clone();
        let mut out = String::new();
        for (name, (kind, text)) in &help {
            out.push_str(&format!("# HELP {name} {text}\n# TYPE {name} {kind}\n"));
            for ((n, labels), value) in values.iter().filter(|((n, _), _)| n == name) {
                let labels: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let labels = if labels.is_empty() {
                    String::new()
                } else {
                    format!("{{{}}}", labels.join(","))
                };
                out.push_str(&format!("{n}{labels} {value}\n"));
            }
        }
        out
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    )
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `addr` until `stop`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(request.uri().path(), &metrics)) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(path: &str, metrics: &Metrics) -> http::Response<Full<Bytes>> {
    let (status, body, kind) = match path {
        "/metrics" => (200, metrics.render(), "text/plain; version=0.0.4"),
        "/healthz" => (200, "ok\n".to_owned(), "text/plain"),
        "/readyz" if metrics.ready.load(Ordering::Relaxed) => {
            (200, "ok\n".to_owned(), "text/plain")
        }
        "/readyz" => (503, "not ready\n".to_owned(), "text/plain"),
        _ => (404, "not found\n".to_owned(), "text/plain"),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.describe("fleetbus_requests_total", "counter", "Requests handled.");
        m.add("fleetbus_requests_total", &[("code", "200")], 1.0);
        m.add("fleetbus_requests_total", &[("code", "200")], 2.0);
        m.add("fleetbus_requests_total", &[("code", "4\"03")], 1.0);
        let text = m.render();
        assert!(text.contains("# TYPE fleetbus_requests_total counter\n"));
        assert!(text.contains("fleetbus_requests_total{code=\"200\"} 3\n"));
        assert!(text.contains("fleetbus_requests_total{code=\"4\\\"03\"} 1\n"));
    }

    #[test]
    fn readiness_follows_the_flag() {
        let m = Metrics::default();
        assert_eq!(answer("/readyz", &m).status(), 503);
        m.set_ready(true);
        assert_eq!(answer("/readyz", &m).status(), 200);
        assert_eq!(answer("/healthz", &m).status(), 200);
        assert_eq!(answer("/nope", &m).status(), 404);
    }
}
