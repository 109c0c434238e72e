//! `fleetbus-bench proxy`: the Kubernetes API tunnel against a direct connection to the same
//! kube-apiserver, in one run on this machine, with the same HTTP client stack on both paths
//! (the spoke's upstream client), so the ratio is the cost of the NATS tunnel itself.
//!
//!     cargo run --release -p fleetbus-tests --bin fleetbus-bench -- proxy [--requests 2000]
//!
//! `fleetbus-bench fleet --spokes N`: the fleet-scale benchmark (see `fleetbus_tests::scale`);
//! it needs `fleetbus-hub` built next to it (`cargo build --release --bins`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use fleetbus_cli::hub_client::HubClient;
use fleetbus_cli::proxy::tunnel::Tunnel;
use fleetbus_schema::ClusterName;
use fleetbus_schema::v1::ConditionStatus;
use fleetbus_tests::Fleet;
use http_body_util::{BodyExt, Full};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};

/// fleetbus benchmarks (not part of the test run; each prints its own comparison).
#[derive(Debug, Parser)]
#[command(name = "fleetbus-bench")]
enum Bench {
    /// The Kubernetes API tunnel against direct access to the same apiserver.
    Proxy {
        /// Sequential small requests per path.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
    /// Thousands of spokes on one hub: join, steady state, works, losing spokes.
    Fleet {
        /// Simulated spokes.
        #[arg(long, default_value_t = 1000)]
        spokes: usize,
        /// Spokes on a real kube-apiserver as well.
        #[arg(long, default_value_t = 2)]
        real_spokes: usize,
        /// How long to measure the steady state.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        steady: Duration,
        /// Hub API calls in flight when creating, updating and deleting works.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Spokes started per second (0: all at once).
        #[arg(long, default_value_t = 500)]
        ramp: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fleetbus_nats::install_crypto_provider();
    match Bench::parse() {
        Bench::Proxy { requests } => proxy(requests).await,
        Bench::Fleet {
            spokes,
            real_spokes,
            steady,
            concurrency,
            ramp,
        } => {
            let options = fleetbus_tests::scale::Options {
                spokes,
                real_spokes,
                steady,
                concurrency,
                ramp_per_second: ramp,
                ..Default::default()
            };
            let mut out = std::io::stdout();
            let report = fleetbus_tests::scale::run(&options, &mut out).await?;
            println!("\n{}", fleetbus_tests::scale::stats::table(&report.rows));
            println!(
                "hub API (whoami every 250 ms) slowest answer during the run: {:.0} ms, {} failed calls; simulated clusters recorded {} writes",
                report.api_max.as_secs_f64() * 1000.0,
                report.api_failures,
                report.simulated_writes
            );
            Ok(())
        }
    }
}

async fn proxy(requests: usize) -> anyhow::Result<()> {
    eprintln!("starting nats-server, hub, kube-apiserver and spoke ...");
    let fleet = Fleet::start().await?;
    let kube = fleet.kube("bench").await?;
    let config = fleet.spoke_config("bench", Some(&kube))?;
    let _spoke = fleet.join(config, ConditionStatus::True).await?;

    eprintln!("creating ~20 MB of ConfigMaps ...");
    let admin = kube.admin_client().await?;
    let configmaps = Api::<ConfigMap>::namespaced(admin, "default");
    for i in 0..21 {
        let data = std::collections::BTreeMap::from([(
            "blob".to_owned(),
            format!("{i:04}").repeat(250_000),
        )]);
        let cm = ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(format!("big-{i}")),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        configmaps.create(&PostParams::default(), &cm).await?;
    }

    let spoke_kube = fleetbus_spoke::kube::Kube::connect(Some(&kube.kubeconfig)).await?;
    let direct = Direct {
        upstream: fleetbus_spoke::upstream::Upstream::new(&spoke_kube)?,
        token: kube.admin_token.clone(),
    };
    let hub = HubClient::connect(&fleet.flags_for("admin")?).await?;
    let tunnel = Via {
        tunnel: Tunnel::new(
            hub.nats().clone(),
            hub.subjects().clone(),
            ClusterName::new("bench")?,
            hub.user().clone(),
        ),
        token: kube.admin_token.clone(),
    };

    let small = "/api/v1/namespaces/default/serviceaccounts";
    let large = "/api/v1/namespaces/default/configmaps";
    // Warm both paths (TLS sessions, connection pools, subscriptions).
    for _ in 0..50 {
        direct.get(small).await?;
        tunnel.get(small).await?;
    }
    let d = latencies(requests, || direct.get(small)).await?;
    let t = latencies(requests, || tunnel.get(small)).await?;
    println!("\nsmall GET {small}, {requests} sequential requests");
    println!("{:<10} {:>10} {:>10} {:>10}", "path", "p50", "p99", "max");
    for (name, l) in [("direct", &d), ("tunnel", &t)] {
        println!(
            "{name:<10} {:>10} {:>10} {:>10}",
            ms(l[l.len() / 2]),
            ms(l[l.len() * 99 / 100]),
            ms(l[l.len() - 1])
        );
    }
    let added = t[t.len() / 2].saturating_sub(d[d.len() / 2]);
    println!("added p50: {} (target <= 0.300 ms)", ms(added));

    let rounds = 5;
    let (dbytes, dtime) = throughput(rounds, || direct.get(large)).await?;
    let (tbytes, ttime) = throughput(rounds, || tunnel.get(large)).await?;
    let (dmbps, tmbps) = (
        dbytes as f64 / dtime.as_secs_f64() / 1e6,
        tbytes as f64 / ttime.as_secs_f64() / 1e6,
    );
    println!(
        "\nLIST {large} ({:.1} MB), {rounds} rounds",
        dbytes as f64 / rounds as f64 / 1e6
    );
    println!(
        "direct {dmbps:>8.1} MB/s\ntunnel {tmbps:>8.1} MB/s\nratio  {:>8.2}x (target >= 0.90x; OCM's tunnel ~0.5x)",
        tmbps / dmbps
    );

    let concurrency = 64;
    let drps = concurrent(concurrency, requests, &|| direct.get(small)).await?;
    let trps = concurrent(concurrency, requests, &|| tunnel.get(small)).await?;
    println!("\n{concurrency} concurrent clients, {requests} small GETs");
    println!(
        "direct {drps:>8.0} req/s\ntunnel {trps:>8.0} req/s\nratio  {:>8.2}x",
        trps / drps
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

struct Direct {
    upstream: fleetbus_spoke::upstream::Upstream,
    token: String,
}

impl Direct {
    async fn get(&self, path: &str) -> anyhow::Result<usize> {
        let request = http::Request::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))?;
        let response = self.upstream.send(request, false).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "direct: {}",
            response.status()
        );
        Ok(response.into_body().collect().await?.to_bytes().len())
    }
}

struct Via {
    tunnel: Tunnel,
    token: String,
}

impl Via {
    async fn get(&self, path: &str) -> anyhow::Result<usize> {
        let (parts, ()) = http::Request::get(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .body(())?
            .into_parts();
        let id = fleetbus_cli::proxy::local::request_id();
        let response = self.tunnel.request(&parts, Bytes::new(), &id).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "tunnel: {}",
            response.status()
        );
        Ok(response.into_body().collect().await?.to_bytes().len())
    }
}

async fn latencies<F, Fut>(n: usize, f: F) -> anyhow::Result<Vec<Duration>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
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

async fn throughput<F, Fut>(rounds: usize, f: F) -> anyhow::Result<(usize, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes += f().await?;
    }
    Ok((bytes, started.elapsed()))
}

async fn concurrent<F, Fut>(clients: usize, total: usize, f: &F) -> anyhow::Result<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    let per_client = total / clients;
    let jobs = (0..clients).map(|_| async move {
        for _ in 0..per_client {
            f().await?;
        }
        anyhow::Ok(())
    });
    for result in futures::future::join_all(jobs).await {
        result?;
    }
    Ok((per_client * clients) as f64 / started.elapsed().as_secs_f64())
}
