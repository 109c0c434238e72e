//! `fleetbus-hub`: parse flags, set up logging, run until SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = fleetbus_hub::Args::parse();
    fleetbus_nats::process::init(&args.log_format, "info,async_nats=warn");
    let config = match args.resolve() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fleetbus-hub: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    match fleetbus_hub::run(config, fleetbus_nats::process::shutdown_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
