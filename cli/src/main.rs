//! `fleetbus`: one command, one clear line on failure.

use clap::Parser;

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
