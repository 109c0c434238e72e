//! What every fleetbus binary does at start: the TLS provider, logging, and a shutdown token
//! that fires on Ctrl-C or SIGTERM.

use tokio_util::sync::CancellationToken;

/// Installs the crypto provider and a tracing subscriber (`plain` or `json`, level from
/// `RUST_LOG`, else `default_filter`). Only binaries call this.
pub fn init(log_format: &str, default_filter: &str) {
    crate::install_crypto_provider();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A token cancelled on the first Ctrl-C or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        fire.cancel();
    });
    token
}
