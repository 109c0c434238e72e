//! `fleetbus-bench proxy`: `fleetbus proxy serve` against direct access to the same
//! kube-apiserver with keep-alive clients (see `fleetbus_tests::proxy_bench`).
//!
//!     cargo run --release -p fleetbus-tests --bin fleetbus-bench -- proxy [--rounds 3]
//!
//! `fleetbus-bench exec`: `exec` round trips and `port-forward` throughput with kubectl, through
//! the tunnel against direct, on a real one-node cluster (run as root).
//!
//! `fleetbus-bench frames`: the tunnel's framing of a 1 KB GET through nats-server against
//! bare messages of the same sizes (see `fleetbus_tests::frames_bench`).
//!
//! `fleetbus-bench fleet --spokes N`: the fleet-scale benchmark (see `fleetbus_tests::scale`);
//! it needs `fleetbus-hub` built next to it (`cargo build --release --bins`).

use std::time::Duration;

use clap::Parser;

// mimalloc, not glibc's malloc: under concurrent tunnel traffic glibc's allocator took about a
// fifth of the proxy's and the spoke's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// fleetbus benchmarks (not part of the test run; each prints its own comparison).
#[derive(Debug, Parser)]
#[command(name = "fleetbus-bench")]
enum Bench {
    /// The Kubernetes API tunnel against direct access to the same apiserver.
    Proxy {
        /// Sequential GETs per path, size and round (up to 20 KB; fewer for larger objects).
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Rounds, alternating the two paths (the table shows their median and spread).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// exec round trips and port-forward throughput with kubectl, tunnel against direct.
    Exec {
        /// Sequential `kubectl exec -- true` runs per path.
        #[arg(long, default_value_t = 20)]
        execs: usize,
        /// MiB uploaded per port-forward round.
        #[arg(long, default_value_t = 64)]
        megabytes: usize,
    },
    /// The tunnel's framing against bare messages of the same sizes, through nats-server.
    Frames {
        /// Requests (an open and a head frame each) per path and round.
        #[arg(long, default_value_t = 100_000)]
        requests: usize,
        /// Rounds.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
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
    // Logs as the fleetbus binaries write them (RUST_LOG, warnings by default). Set first, so
    // the test helpers' capture of every level into memory, which would cost the measured
    // spokes, proxy and hub their time, is never installed.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Bench::parse() {
        Bench::Proxy { requests, rounds } => {
            fleetbus_tests::proxy_bench::run(requests, rounds).await
        }
        Bench::Exec { execs, megabytes } => fleetbus_tests::exec_bench::run(execs, megabytes).await,
        Bench::Frames { requests, rounds } => {
            fleetbus_tests::frames_bench::run(requests, rounds).await
        }
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
