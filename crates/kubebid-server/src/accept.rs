//! The accept loop under every TCP server: at most `max` connections open (further clients wait in the
//! kernel's backlog, or are closed at once, as the server chooses), accept errors (out of descriptors, say) backed off instead of spun on, each
//! connection handled on a task the [`Shutdown`] tracks, and no accepting once shutdown is requested.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::metrics::{ServerLabels, ShellMetrics};

/// What the loop needs besides the listener.
#[derive(Clone)]
pub struct AcceptConfig {
    /// The server's name in logs and metrics.
    pub server: &'static str,
    /// Most connections open at once.
    pub max_connections: usize,
    /// What happens to a client while `max_connections` are open.
    pub when_full: WhenFull,
}

/// What happens to a client while every connection slot is taken.
#[derive(Clone)]
pub enum WhenFull {
    /// It waits in the listen backlog until a slot frees (HTTP: a short wait beats an error).
    Wait,
    /// It is accepted and closed at once, and the callback counts it (DNS: a client retries elsewhere).
    Close(std::sync::Arc<dyn Fn() + Send + Sync>),
}

impl std::fmt::Debug for AcceptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptConfig")
            .field("server", &self.server)
            .field("max_connections", &self.max_connections)
            .field(
                "when_full",
                &match self.when_full {
                    WhenFull::Wait => "wait",
                    WhenFull::Close(_) => "close",
                },
            )
            .finish()
    }
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
        let permit = match &config.when_full {
            WhenFull::Wait => tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => break },
                () = &mut stop => break,
            },
            WhenFull::Close(_) => None,
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
        let permit = match (permit, &config.when_full) {
            (Some(p), _) => p,
            (None, WhenFull::Close(refused)) => {
                if let Ok(p) = slots.clone().try_acquire_owned() {
                    p
                } else {
                    refused();
                    drop(tcp);
                    continue;
                }
            }
            (None, WhenFull::Wait) => continue,
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
