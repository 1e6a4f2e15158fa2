//! The webhook as a service of the server shell ([`kubebid_server::http`]): the shell does TLS, HTTP/1.1
//! and HTTP/2, the body limit, timeouts, the concurrency limit, `/healthz`, `/readyz`, `/metrics` and the
//! drain; this module routes `/validate` and `/mutate` to [`review`](crate::review) and counts the
//! outcomes.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use kubebid_policy::PolicySet;
use kubebid_server::Shutdown;
use kubebid_server::http::{self, HttpConfig, Process, Transport, text};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::{Metrics, ReviewLabels, RuleLabels};
use crate::review::{self, Endpoint, Verdict};
use crate::tls::ReloadingCert;

/// Largest request body accepted: the API server's own limit for objects is 3 MiB.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The paths the webhook serves besides the shell's.
const ROUTES: &[&str] = &["/validate", "/mutate"];

/// What the server needs.
pub struct WebhookServer {
    /// TLS configuration (with its certificate resolver).
    pub tls: Arc<rustls::ServerConfig>,
    /// The certificate to watch for changes, if any.
    pub reloading_cert: Option<Arc<ReloadingCert>>,
    /// The current policy; `None` until the configuration (or the cluster caches) are ready.
    pub policy: watch::Receiver<Option<PolicySet>>,
    /// Metrics, registered in the process's registry.
    pub metrics: Arc<Metrics>,
    /// How often to look at the certificate files.
    pub reload_interval: Duration,
    /// Most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// How long shutdown waits for reviews in flight.
    pub drain_timeout: Duration,
    /// Whether `/validate` and `/mutate` need a verified client certificate (`--client-ca`).
    pub client_auth: bool,
}

/// The webhook's own service: `/validate` and `/mutate`. Cloned per request (tower's contract): one
/// reference count.
#[derive(Clone)]
struct Reviews(Arc<ReviewsState>);

struct ReviewsState {
    policy: watch::Receiver<Option<PolicySet>>,
    metrics: Arc<Metrics>,
    /// Whether reviews need a client certificate (the TLS layer asks for one but lets health probes in
    /// without).
    client_auth: bool,
}

impl tower::Service<Request<Bytes>> for Reviews {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        // A review is pure CPU work of microseconds: answered on the spot, no task, no allocation for a
        // future.
        std::future::ready(Ok(self.0.handle(&req)))
    }
}

impl ReviewsState {
    fn handle(&self, req: &Request<Bytes>) -> Response<Full<Bytes>> {
        let endpoint = match (req.method(), req.uri().path()) {
            (&Method::POST, "/validate") => Endpoint::Validate,
            (&Method::POST, "/mutate") => Endpoint::Mutate,
            (_, "/validate" | "/mutate") => {
                return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            }
            _ => return text(StatusCode::NOT_FOUND, "not found\n"),
        };
        let authenticated = http::peer(req).is_some_and(|p| p.client_certificate);
        if self.client_auth && !authenticated {
            return text(
                StatusCode::FORBIDDEN,
                "reviews need a client certificate signed by the configured client CA\n",
            );
        }
        let started = Instant::now();
        let outcome = {
            let policy = self.policy.borrow();
            match policy.as_ref() {
                Some(p) => review::review(p, endpoint, req.body(), jiff::Timestamp::now()),
                None => review::review_unready(req.body()),
            }
        };
        let done = match outcome {
            Ok(done) => done,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
        };
        let labels = ReviewLabels {
            endpoint: endpoint.as_str(),
            operation: review::operation_name(done.operation),
            kind: done.kind,
            verdict: done.verdict.as_str(),
        };
        self.metrics
            .latency
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.metrics.reviews.get_or_create(&labels).inc();
        for rule in &done.rules {
            self.metrics
                .findings
                .get_or_create(&RuleLabels { rule })
                .inc();
        }
        if done.verdict == Verdict::Denied {
            tracing::info!(uid = %done.uid, endpoint = endpoint.as_str(), operation = labels.operation, kind = %labels.kind, rules = ?done.rules, "denied");
        }
        http::json(done.body)
    }
}

impl WebhookServer {
    /// Serves on `listener` until `shutdown` completes, then drains. The process context (registry,
    /// health, shutdown) is the webhook's own: for a process that runs only the webhook.
    ///
    /// # Errors
    /// None today; the signature leaves room for listener errors.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let process =
            Process::with_registry(self.metrics.registry().clone(), Shutdown::after(shutdown));
        self.serve_in(&process, listener).await
    }

    /// Serves on `listener` as one server of `process` until its shutdown, then drains.
    ///
    /// # Errors
    /// None today; the signature leaves room for listener errors.
    pub async fn serve_in(self, process: &Process, listener: TcpListener) -> std::io::Result<()> {
        let policy = self.policy.clone();
        process.health.add_readiness("policy", move || {
            if policy.borrow().is_some() {
                Ok(())
            } else {
                Err("not loaded, or the cluster caches have not synced".into())
            }
        });
        if let Some(cert) = self.reloading_cert.clone() {
            kubebid_server::tls::spawn_reloader(
                cert,
                self.reload_interval,
                "webhook",
                process.metrics.clone(),
                &process.shutdown,
            );
        }
        let mut config = HttpConfig::new("webhook", ROUTES);
        config.max_body = MAX_BODY_BYTES;
        config.max_connections = self.max_connections;
        config.drain_timeout = self.drain_timeout;
        // A review is decided inline on the worker that read it: at most one per worker at a time.
        config.max_concurrent_requests = None;
        let reviews = Reviews(Arc::new(ReviewsState {
            policy: self.policy,
            metrics: self.metrics,
            client_auth: self.client_auth,
        }));
        http::serve(
            process,
            &config,
            listener,
            Transport::Tls(self.tls),
            reviews,
        )
        .await;
        Ok(())
    }
}
