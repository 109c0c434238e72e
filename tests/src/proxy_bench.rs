//! `fleetbus-bench proxy`: `fleetbus proxy serve` (the local listener users point kubectl,
//! client-go and Python at) against the same kube-apiserver directly, in one run, with one
//! keep-alive HTTPS client stack on both paths (hyper over rustls, HTTP/1.1, `TCP_NODELAY`,
//! connections kept alive like client-go's and http.client's). The token is the managed
//! service account's on both paths, so the apiserver does the same work. Each measurement is
//! repeated in rounds that alternate the two paths; the table gives the median round and the
//! spread over rounds. The floor rows measure a bare relay with the tunnel's hops and nothing
//! else (`proxy_floor`): how close fleetbus gets to what any relay through NATS costs here. A
//! second table splits the CPU time of the concurrent requests by process, for the tunnel and
//! the floor: where their cost goes when both cores are busy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetbus_cli::proxy::Session;
use fleetbus_schema::v1::ConditionStatus;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::Fleet;
use crate::proxy_floor::Floor;
use crate::scale::procfs;

/// Object sizes of the keep-alive GETs (the ConfigMap's data; the response is a little larger).
const SIZES: [(&str, usize); 4] = [
    ("1 KB", 1_000),
    ("20 KB", 20_000),
    ("256 KB", 256_000),
    ("1 MB", 1_000_000),
];

/// ConfigMaps of 1 MB in the LIST's namespace: a LIST of about 21 MB.
const LIST_OBJECTS: usize = 21;

const CONCURRENCY: usize = 64;

/// Requests of the concurrent measurement, per 1000 sequential ones: enough for CPU times read
/// at /proc's 10 ms resolution.
const CONCURRENT_PER_1000: usize = 5000;

/// The processes whose CPU time the concurrent measurement splits (the first is this one:
/// the clients, and on the tunnel path also the proxy, spoke and hub).
const PROCESSES: [&str; 4] = ["this process", "nats-server", "kube-apiserver", "etcd"];

const RULES: &str = "- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list]\n";

/// Runs the benchmark: `requests` sequential GETs per path, size and round up to 20 KB (a tenth
/// of that at 1 MB), `rounds` rounds.
pub async fn run(requests: usize, rounds: usize) -> anyhow::Result<()> {
    eprintln!("starting nats-server, hub, kube-apiserver and spoke ...");
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("cluster1").await?;
    let config = fleet.spoke_config("cluster1", Some(&kube))?;
    let _spoke = fleet.join(config, ConditionStatus::True).await?;
    fleet.create_msa_with_rules("bench", RULES).await?;
    let token = fleet.reported_token("bench", "cluster1").await?;

    eprintln!("creating ConfigMaps of 1 KB to 1 MB and {LIST_OBJECTS} MB to LIST ...");
    let admin = kube.admin_client().await?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &named(Namespace::default(), "list"))
        .await?;
    for (name, size) in SIZES {
        create(&admin, "default", &slug(name), size).await?;
    }
    for i in 0..LIST_OBJECTS {
        create(&admin, "list", &format!("big-{i}"), 1_000_000).await?;
    }

    let session = Session::start(&fleet.flags_for("admin")?, "cluster1", "bench", 0).await?;
    let direct = Keepalive::new(&kube.url, &kube.ca_pem, &token)?;
    let tunnel = Keepalive::new(
        &format!("https://{}", session.addr),
        session.ca_pem(),
        session.secret(),
    )?;
    let hub = fleetbus_schema::Identity::Hub;
    let (local, remote) = (fleet.nats.connect_as(&hub), fleet.nats.connect_as(&hub));
    let relay = Floor::start(local.await?, remote.await?, &kube.url, &kube.ca_pem).await?;
    let floor = Keepalive::new(&format!("https://{}", relay.addr), &relay.ca_pem, &token)?;
    let paths = [&direct, &tunnel];
    let with_floor = [&direct, &tunnel, &floor];
    for client in with_floor {
        for _ in 0..50 {
            client.get(&object("1 KB")).await?;
        }
    }

    let [apiserver, etcd] = kube.pids();
    let nats = fleet.nats.server.pid().unwrap_or_default();
    let pids = [std::process::id(), nats, apiserver, etcd];
    let mut rows = Vec::new();
    let mut cpu = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds} ...");
        let mut direct_1kb = 0.0;
        for (name, size) in SIZES {
            let n = (requests * 20_000 / size).clamp(requests / 10, requests);
            let path = object(name);
            let mut p50 = [0.0; 2];
            let mut p99 = [0.0; 2];
            for (i, client) in paths.into_iter().enumerate() {
                let l = latencies(n, || client.get(&path)).await?;
                (p50[i], p99[i]) = (millis(l[l.len() / 2]), millis(l[l.len() * 99 / 100]));
            }
            if size == SIZES[0].1 {
                direct_1kb = p50[0];
            }
            rows.push(Row::latency(
                format!("GET {name} p50 ({n} sequential, one connection)"),
                p50,
            ));
            rows.push(Row::latency(format!("GET {name} p99"), p99));
        }
        let mut rate = [0.0; 2];
        for (i, client) in paths.into_iter().enumerate() {
            let started = Instant::now();
            let mut bytes = 0;
            for _ in 0..3 {
                bytes += client.get("/api/v1/namespaces/list/configmaps").await?;
            }
            rate[i] = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
        }
        rows.push(Row::ratio(
            format!("LIST of {LIST_OBJECTS} MB, MB/s (3 sequential)"),
            rate,
        ));
        // The floor runs here too, so its CPU split is beside the tunnel's.
        let mut rps = [0.0; 3];
        let mut split = [[0.0; PROCESSES.len()]; 3];
        // A multiple of the clients, so each sends the same number.
        let total = (requests * CONCURRENT_PER_1000 / 1000).div_ceil(CONCURRENCY) * CONCURRENCY;
        for (i, client) in with_floor.into_iter().enumerate() {
            let before = pids.map(procfs::cpu_seconds);
            rps[i] = concurrent(CONCURRENCY, total, client).await?;
            for (j, pid) in pids.into_iter().enumerate() {
                split[i][j] = (procfs::cpu_seconds(pid) - before[j]) * 1e6 / total as f64;
            }
        }
        cpu.push(split);
        rows.push(Row::ratio(
            format!("{CONCURRENCY} concurrent clients, 1 KB GETs, req/s"),
            [rps[0], rps[1]],
        ));
        let path = object("1 KB");
        let l = latencies(requests, || floor.get(&path)).await?;
        rows.push(Row::latency(
            format!("floor: GET 1 KB p50 ({requests} sequential, one connection)"),
            [direct_1kb, millis(l[l.len() / 2])],
        ));
        rows.push(Row::ratio(
            format!("floor: {CONCURRENCY} concurrent clients, 1 KB GETs, req/s"),
            [rps[0], rps[2]],
        ));
    }
    println!("\n{}", table(&rows));
    println!(
        "\nCPU per request of the {CONCURRENCY} concurrent clients (µs, median round):\n\n{}",
        cpu_table(&cpu)
    );
    Ok(())
}

fn named<K: kube::Resource>(mut object: K, name: &str) -> K {
    *object.meta_mut() = ObjectMeta {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    object
}

async fn create(client: &kube::Client, ns: &str, name: &str, size: usize) -> anyhow::Result<()> {
    let mut cm = named(ConfigMap::default(), name);
    cm.data = Some([("blob".to_owned(), "x".repeat(size))].into());
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await?;
    Ok(())
}

fn slug(size: &str) -> String {
    format!("cm-{}", size.replace(' ', "").to_lowercase())
}

fn object(size: &str) -> String {
    format!("/api/v1/namespaces/default/configmaps/{}", slug(size))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An HTTPS client that keeps its connections alive, trusting one CA, with one bearer token.
pub(crate) struct Keepalive {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    base: String,
    authorization: String,
}

impl Keepalive {
    pub(crate) fn new(base: &str, ca_pem: &str, token: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(https),
            base: base.to_owned(),
            authorization: format!("Bearer {token}"),
        })
    }

    /// GETs `path` and reads the whole body; its length.
    async fn get(&self, path: &str) -> anyhow::Result<usize> {
        let (status, body) = self.fetch(path, &self.authorization).await?;
        anyhow::ensure!(
            status.is_success(),
            "{} {path}: {status} {}",
            self.base,
            String::from_utf8_lossy(&body)
        );
        Ok(body.len())
    }

    /// GETs `path` with `authorization` (not this client's own); the status and whole body.
    pub(crate) async fn fetch(
        &self,
        path: &str,
        authorization: &str,
    ) -> anyhow::Result<(http::StatusCode, Bytes)> {
        let request = http::Request::get(format!("{}{path}", self.base))
            .header(http::header::AUTHORIZATION, authorization)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())?;
        let response = self.client.request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

async fn latencies<F, Fut>(n: usize, f: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await?;
        all.push(started.elapsed());
    }
    all.sort();
    Ok(all)
}

/// Requests per second of `clients` concurrent clients sharing `total` 1 KB GETs.
async fn concurrent(clients: usize, total: usize, client: &Keepalive) -> anyhow::Result<f64> {
    let per_client = (total / clients).max(1);
    let path = object("1 KB");
    let started = Instant::now();
    let jobs = (0..clients).map(|_| async {
        for _ in 0..per_client {
            client.get(&path).await?;
        }
        anyhow::Ok(())
    });
    for result in futures::future::join_all(jobs).await {
        result?;
    }
    Ok((per_client * clients) as f64 / started.elapsed().as_secs_f64())
}

/// Per process and in all, the median round's CPU µs per request on each path (direct,
/// tunnel, floor), and what the tunnel and the floor add to direct access.
fn cpu_table(rounds: &[[[f64; PROCESSES.len()]; 3]]) -> String {
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let mut out = String::from(
        "| process | direct | tunnel | added | floor | added |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    let line = |name: &str, [direct, tunnel, floor]: [f64; 3]| {
        format!(
            "| {name} | {direct:.0} | {tunnel:.0} | {:+.0} | {floor:.0} | {:+.0} |\n",
            tunnel - direct,
            floor - direct
        )
    };
    let mut sums = [0.0; 3];
    for (j, name) in PROCESSES.iter().enumerate() {
        let values = [0, 1, 2].map(|i| median(&mut rounds.iter().map(|r| r[i][j]).collect()));
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value;
        }
        out.push_str(&line(name, values));
    }
    out.push_str(&line("all (the rows' sum)", sums));
    out
}

/// One measurement of one round on both paths.
struct Row {
    what: String,
    direct: f64,
    tunnel: f64,
    /// Latencies compare by the time added, rates by their ratio.
    latency: bool,
}

impl Row {
    fn latency(what: String, [direct, tunnel]: [f64; 2]) -> Self {
        Self {
            what,
            direct,
            tunnel,
            latency: true,
        }
    }

    fn ratio(what: String, [direct, tunnel]: [f64; 2]) -> Self {
        Self {
            what,
            direct,
            tunnel,
            latency: false,
        }
    }

    fn compared(&self) -> f64 {
        if self.latency {
            self.tunnel - self.direct
        } else {
            self.tunnel / self.direct
        }
    }
}

/// A Markdown table: per measurement, the median round and the spread of the comparison.
fn table(rows: &[Row]) -> String {
    let mut order: Vec<&str> = Vec::new();
    for row in rows {
        if !order.contains(&row.what.as_str()) {
            order.push(&row.what);
        }
    }
    let mut out = String::from(
        "| measurement | direct | tunnel | tunnel vs direct (median round) | spread over rounds |\n| --- | --- | --- | --- | --- |\n",
    );
    for what in order {
        let mut of: Vec<&Row> = rows.iter().filter(|r| r.what == what).collect();
        of.sort_by(|a, b| a.compared().total_cmp(&b.compared()));
        let median = of[of.len() / 2];
        let (low, high) = (of[0].compared(), of[of.len() - 1].compared());
        let line = if median.latency {
            format!(
                "| {what} | {:.3} ms | {:.3} ms | {:+.3} ms | {low:+.3} … {high:+.3} ms |\n",
                median.direct,
                median.tunnel,
                median.compared()
            )
        } else {
            format!(
                "| {what} | {:.1} | {:.1} | {:.2}× | {low:.2}× … {high:.2}× |\n",
                median.direct,
                median.tunnel,
                median.compared()
            )
        };
        out.push_str(&line);
    }
    out
}
