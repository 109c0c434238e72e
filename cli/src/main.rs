//! `fleetbus`: one command, one clear line on failure.

use clap::Parser;

// mimalloc, not glibc's malloc: under concurrent tunnel traffic glibc's allocator took about a
// fifth of the proxy's and the spoke's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = fleetbus_cli::cli::Cli::parse();
    fleetbus_nats::process::init("plain", "warn,async_nats=error,kube_client=off");
    match fleetbus_cli::run(cli, &mut std::io::stdout()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
