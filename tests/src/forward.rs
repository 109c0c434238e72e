//! A TCP forwarder on loopback, started when a test decides: a server "comes up" for a client
//! that was started before it, without the server knowing.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Forwards `127.0.0.1:port` to `to` until dropped.
pub struct Forward {
    stop: CancellationToken,
}

impl Forward {
    /// Starts listening on `port` now.
    pub async fn start(port: u16, to: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Ok(Self { stop })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
