//! The accept loop under every TCP server: at most `max` connections open (further clients wait in the
//! kernel's backlog), accept errors (out of descriptors, say) backed off instead of spun on, each
//! connection handled on a task the [`Shutdown`] tracks, and no accepting once shutdown is requested.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::metrics::{ServerLabels, ShellMetrics};

/// What the loop needs besides the listener.
#[derive(Clone, Debug)]
pub struct AcceptConfig {
    /// The server's name in logs and metrics.
    pub server: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// Accepts on `listener` until shutdown is requested, and hands each connection to `handle`. Returns once
/// it has stopped accepting (connections still open finish on their own tasks; [`Shutdown::drain`] waits
/// for them).
pub async fn serve_tcp<F, Fut>(
    listener: TcpListener,
    config: &AcceptConfig,
    metrics: &ShellMetrics,
    shutdown: &Shutdown,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let open = metrics
        .connections
        .get_or_create(&ServerLabels {
            server: config.server,
        })
        .clone();
    let stop = shutdown.requested();
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(server = config.server, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Small request-response exchanges: send each answer at once.
        let _ = tcp.set_nodelay(true);
        let work = handle(tcp, peer);
        let open = open.clone();
        open.inc();
        shutdown.spawn(async move {
            work.await;
            open.dec();
            drop(permit);
        });
    }
    tracing::debug!(server = config.server, "stopped accepting");
}
