//! One graceful-shutdown coordinator per process.
//!
//! A [`Shutdown`] is cloned into every server. [`Shutdown::requested`] completes once shutdown has been
//! asked for (a signal, or [`Shutdown::trigger`]); listeners stop accepting then. Work spawned through
//! [`Shutdown::spawn`] is tracked, and [`Shutdown::drain`] waits for it, up to a deadline, so that requests
//! in flight finish and nothing new starts.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process's shutdown coordinator. Clones share one state.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A coordinator that nothing has triggered yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A coordinator that is triggered by SIGTERM (what Kubernetes sends before killing a pod) or Ctrl-C.
    /// Must be called inside a tokio runtime.
    #[must_use]
    pub fn on_signals() -> Self {
        let this = Self::new();
        this.watch_signals();
        this
    }

    /// Triggers this coordinator on SIGTERM or Ctrl-C. Must be called inside a tokio runtime; the
    /// handlers are installed before it returns, so a signal that arrives at once is a graceful stop.
    pub fn watch_signals(&self) {
        use tokio::signal::unix::{SignalKind, signal};
        let token = self.token.clone();
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        tokio::spawn(async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch a signal");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
                () = token.cancelled() => return,
            }
            tracing::info!("shutdown requested");
            token.cancel();
        });
    }

    /// A coordinator triggered when `signal` completes (a test's or an embedding program's own signal).
    /// Must be called inside a tokio runtime.
    #[must_use]
    pub fn after(signal: impl Future<Output = ()> + Send + 'static) -> Self {
        let this = Self::new();
        let trigger = this.clone();
        tokio::spawn(async move {
            signal.await;
            trigger.trigger();
        });
        this
    }

    /// Asks every server to stop accepting and drain.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Completes once shutdown has been asked for. Owns what it needs: it can be moved into a task or
    /// handed to a library that takes a shutdown future (tonic, hyper).
    pub fn requested(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// Spawns `work` on the runtime, tracked: [`drain`](Self::drain) waits for it.
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(work)
    }

    /// Waits (after shutdown was asked for) until every tracked task has finished, or `deadline` has
    /// passed. Returns whether everything finished.
    pub async fn drain(&self, deadline: Duration) -> bool {
        self.requested().await;
        self.tracker.close();
        let finished = tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok();
        if !finished {
            tracing::warn!(
                left = self.tracker.len(),
                "drain deadline passed; closing what is left"
            );
        }
        finished
    }
}
