//! `fleetbus-spoke`: parse flags, set up logging, run until SIGTERM.

use clap::Parser;

// mimalloc, not glibc's malloc: under concurrent tunnel traffic glibc's allocator took about a
// fifth of the proxy's and the spoke's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = fleetbus_spoke::Args::parse();
    fleetbus_nats::process::init(&args.log_format, "info,async_nats=warn,kube_client=off");
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fleetbus-spoke: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    match fleetbus_spoke::run(config, fleetbus_nats::process::shutdown_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
