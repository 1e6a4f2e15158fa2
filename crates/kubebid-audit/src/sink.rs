//! The sink's HTTPS side, on the server shell.
//!
//! - `POST /events`: the API server's audit webhook backend (batch mode posts an `audit.k8s.io/v1`
//!   `EventList`). With a client CA, only a client certificate it signed may post. A malformed batch is
//!   answered 400 naming what is wrong, an oversized one 413 (by the shell), and nothing of either is
//!   stored; a stored one is answered 200 only once every event of it is durable and signed.
//! - `GET /trails/<tenant>/events?since=&until=&user=&verb=&resource=&namespace=&limit=`: a tenant's own
//!   trail. The caller's bearer token is authenticated with a TokenReview and authorized with a
//!   SubjectAccessReview for `get` on `auditevents.kubebid.io` in one of the tenant's namespaces (the
//!   platform's trail: cluster-wide). The answer is JSON lines, verified on the way out.

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use kubebid_model::tenancy::Tenancy;
use kubebid_server::http;

use crate::event::parse_batch;
use crate::head::PublicKey;
use crate::metrics::AuditMetrics;
use crate::query::{Filter, query};
use crate::store::{Batch, Store, Trail};
use crate::verify::trail_named;

/// Most events one trail query answers.
pub const MAX_QUERY_EVENTS: usize = 10_000;

/// Trail queries served at once, by default.
pub const CONCURRENT_QUERIES: usize = 2;

/// The sink's routes, as metric labels.
pub const ROUTES: &[&str] = &["/events", "/trails"];

/// Who may read a trail: the answer of the cluster's authentication and authorization.
pub trait Access: Send + Sync {
    /// Whether the holder of `token` may read a trail whose namespaces are `namespaces` (empty: the
    /// platform's trail, asked cluster-wide).
    fn may_read<'a>(
        &'a self,
        token: &'a str,
        namespaces: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
}

/// The sink's shared state.
pub struct SinkState {
    pub store: Store,
    pub tenancy: Arc<ArcSwap<Tenancy>>,
    pub metrics: AuditMetrics,
    /// Require a client certificate (the CA's) to post events.
    pub client_auth: bool,
    /// For queries: the data directory and the key its heads are signed with.
    pub root: PathBuf,
    pub key: PublicKey,
    /// Authenticates and authorizes trail readers; `None` turns the query endpoint off.
    pub access: Option<Arc<dyn Access>>,
    /// Runs stored batches through the rules; `None`: no detection.
    pub detection: Option<crate::detect::Detection>,
    /// Trail queries running at once: a query reads a whole trail, so a tenant sending many could starve
    /// ingest; past this they are answered 429.
    pub queries: Arc<tokio::sync::Semaphore>,
    /// Whether the tenancy is loaded (in a cluster: once Tenants have synced). Until then batches are
    /// answered 503, so that no event is attributed on a guess; the API server sends them again.
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// The tower service of the sink.
#[derive(Clone)]
pub struct Sink(pub Arc<SinkState>);

type Answer = Response<Full<Bytes>>;

fn answer(code: StatusCode, body: impl Into<Bytes>, content_type: &str) -> Answer {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn problem(code: StatusCode, message: &str) -> Answer {
    let body = serde_json::json!({"error": message}).to_string();
    let mut r = answer(code, body, "application/json");
    // The API server's webhook backend sends a batch again only on 429, 500, 504 or a Retry-After.
    if code == StatusCode::SERVICE_UNAVAILABLE || code == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    r
}

impl tower::Service<Request<Bytes>> for Sink {
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let state = self.0.clone();
        Box::pin(async move { Ok(state.handle(req).await) })
    }
}

impl SinkState {
    async fn handle(&self, req: Request<Bytes>) -> Answer {
        let path = req.uri().path().to_owned();
        match (req.method(), path.as_str()) {
            (&Method::POST, "/events") => self.ingest(req).await,
            (&Method::GET, p) if p.starts_with("/trails/") => self.read(req).await,
            _ => problem(
                StatusCode::NOT_FOUND,
                "no such endpoint: POST /events, GET /trails/<tenant>/events",
            ),
        }
    }

    async fn ingest(&self, req: Request<Bytes>) -> Answer {
        if self.client_auth && !http::peer(&req).is_some_and(|p| p.client_certificate) {
            self.metrics.batch("unauthenticated");
            return problem(
                StatusCode::UNAUTHORIZED,
                "a client certificate signed by the configured CA is required",
            );
        }
        if !self.ready.load(std::sync::atomic::Ordering::Acquire) {
            self.metrics.batch("not_ready");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the tenancy is not loaded yet; send the batch again",
            );
        }
        let body = req.into_body();
        let Ok(text) = std::str::from_utf8(&body) else {
            self.metrics.batch("malformed");
            return problem(StatusCode::BAD_REQUEST, "the body is not UTF-8");
        };
        let parsed = match parse_batch(text) {
            Ok(p) => p,
            Err(e) => {
                self.metrics.batch("malformed");
                return problem(StatusCode::BAD_REQUEST, &e.to_string());
            }
        };
        let tenancy = self.tenancy.load();
        let events = parsed
            .events
            .iter()
            .map(|(range, head)| (crate::attribute::trail(&tenancy, head), range.clone()))
            .collect();
        drop(parsed);
        let batch = Batch { body, events };
        let for_detection = self.detection.as_ref().map(|_| batch.clone());
        match self.store.commit(batch).await {
            Ok(()) => {
                if let (Some(d), Some(b)) = (&self.detection, for_detection) {
                    d.offer(b);
                }
                self.metrics.batch("stored");
                answer(StatusCode::OK, "{}", "application/json")
            }
            Err(e) => {
                self.metrics.batch("failed");
                tracing::error!(error = %e, "a batch could not be stored");
                problem(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
            }
        }
    }

    async fn read(&self, req: Request<Bytes>) -> Answer {
        let Some(access) = &self.access else {
            return problem(
                StatusCode::NOT_FOUND,
                "queries are not enabled on this sink",
            );
        };
        let path = req.uri().path();
        let Some(name) = path
            .strip_prefix("/trails/")
            .and_then(|r| r.strip_suffix("/events"))
            .filter(|n| !n.is_empty() && !n.contains('/'))
        else {
            return problem(StatusCode::NOT_FOUND, "expected /trails/<tenant>/events");
        };
        let token = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            self.metrics
                .queries
                .get_or_create(&crate::metrics::OutcomeLabels {
                    outcome: "unauthenticated",
                })
                .inc();
            return problem(StatusCode::UNAUTHORIZED, "a bearer token is required");
        };
        let trail = trail_named(name);
        let namespaces: Vec<String> = match &trail {
            Trail::Platform => Vec::new(),
            Trail::Tenant(t) => match self.tenancy.load().tenant(t) {
                Some(scope) => scope.namespaces.iter().cloned().collect(),
                None => return problem(StatusCode::NOT_FOUND, &format!("no tenant {t}")),
            },
        };
        let outcome = |o: &'static str| {
            self.metrics
                .queries
                .get_or_create(&crate::metrics::OutcomeLabels { outcome: o })
                .inc();
        };
        match access.may_read(token, namespaces).await {
            Ok(true) => {}
            Ok(false) => {
                outcome("forbidden");
                return problem(
                    StatusCode::FORBIDDEN,
                    &format!("not allowed to read the audit trail of {name}"),
                );
            }
            Err(e) => {
                outcome("error");
                tracing::warn!(error = %e, "access review failed");
                return problem(StatusCode::SERVICE_UNAVAILABLE, "the access review failed");
            }
        }
        let mut filter = match parse_filter(req.uri().query().unwrap_or("")) {
            Ok(f) => f,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
        };
        // An answer holds at most this many events (the newest that match).
        filter.limit = Some(
            filter
                .limit
                .unwrap_or(MAX_QUERY_EVENTS)
                .min(MAX_QUERY_EVENTS),
        );
        let Ok(_permit) = self.queries.clone().try_acquire_owned() else {
            outcome("busy");
            return problem(
                StatusCode::TOO_MANY_REQUESTS,
                "too many trail queries at once; try again shortly",
            );
        };
        let (root, key) = (self.root.clone(), self.key);
        let result = tokio::task::spawn_blocking(move || query(&root, &trail, &key, &filter)).await;
        match result {
            Ok(Ok((found, report))) => {
                outcome("ok");
                let mut body = String::new();
                for f in found {
                    body.push_str(f.event.get());
                    body.push('\n');
                }
                let mut r = answer(StatusCode::OK, body, "application/jsonl");
                // A trail whose earlier log was moved aside as damaged is not verified, however clean the
                // new one is.
                let damaged = std::fs::read_dir(self.root.join("damaged")).is_ok_and(|d| {
                    d.flatten().any(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.rsplit_once('-'))
                            .is_some_and(|(trail, _)| trail == name)
                    })
                });
                let verified = if report.ok() && !damaged {
                    "true"
                } else {
                    "false"
                };
                r.headers_mut().insert(
                    "x-kubebid-verified",
                    hyper::header::HeaderValue::from_static(verified),
                );
                r
            }
            Ok(Err(e)) => {
                outcome("error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("reading the trail: {e}"),
                )
            }
            Err(_) => {
                outcome("error");
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "reading the trail failed",
                )
            }
        }
    }
}

/// Reads the query string of a trail request.
pub fn parse_filter(query: &str) -> Result<Filter, String> {
    let mut f = Filter::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        let time = |v: &str| {
            v.parse::<jiff::Timestamp>()
                .map_err(|e| format!("{k}: expected an RFC 3339 time: {e}"))
        };
        match &*k {
            "since" => f.since = Some(time(&v)?),
            "until" => f.until = Some(time(&v)?),
            "user" => f.user = Some(v),
            "verb" => f.verb = Some(v),
            "resource" => f.resource = Some(v),
            "namespace" => f.namespace = Some(v),
            "limit" => {
                f.limit = Some(
                    v.parse()
                        .map_err(|_| format!("limit: expected a number, got {v:?}"))?,
                );
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(f)
}

/// Serves the sink on `listener` as one server of `process` until its shutdown, then drains; ticks the
/// store every second for rotation, retention and the witness heads.
pub async fn serve_in(
    process: &http::Process,
    listener: tokio::net::TcpListener,
    transport: http::Transport,
    max_body: usize,
    state: Arc<SinkState>,
) {
    let ready = state.ready.clone();
    process.health.add_readiness("tenancy", move || {
        if ready.load(std::sync::atomic::Ordering::Acquire) {
            Ok(())
        } else {
            Err("the tenancy has not been loaded yet".into())
        }
    });
    let store = state.store.clone();
    let stop = process.shutdown.requested();
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => store.tick().await,
                () = &mut stop => return,
            }
        }
    });
    let mut config = http::HttpConfig::new("audit", ROUTES);
    config.max_body = max_body;
    http::serve(process, &config, listener, transport, Sink(state)).await;
}

/// [`Access`] through the cluster: a TokenReview, then SubjectAccessReviews for `get` on
/// `auditevents.kubebid.io` in each of the trail's namespaces until one is allowed.
pub struct KubeAccess {
    pub client: kube::Client,
}

impl Access for KubeAccess {
    fn may_read<'a>(
        &'a self,
        token: &'a str,
        namespaces: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
            use k8s_openapi::api::authorization::v1::{
                ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
            };
            use kube::api::{Api, PostParams};
            let reviews: Api<TokenReview> = Api::all(self.client.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: token.to_owned(),
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let done = reviews
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview: {e}"))?;
            let Some(status) = done.status.filter(|s| s.authenticated == Some(true)) else {
                return Ok(false);
            };
            let Some(user) = status.user else {
                return Ok(false);
            };
            let sars: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let scopes: Vec<Option<String>> = if namespaces.is_empty() {
                vec![None]
            } else {
                namespaces.into_iter().map(Some).collect()
            };
            for namespace in scopes {
                let sar = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: user.username.clone(),
                        groups: user.groups.clone(),
                        uid: user.uid.clone(),
                        extra: user.extra.clone(),
                        resource_attributes: Some(ResourceAttributes {
                            group: Some("kubebid.io".into()),
                            resource: Some("auditevents".into()),
                            verb: Some("get".into()),
                            namespace,
                            ..ResourceAttributes::default()
                        }),
                        ..SubjectAccessReviewSpec::default()
                    },
                    ..SubjectAccessReview::default()
                };
                let answer = sars
                    .create(&PostParams::default(), &sar)
                    .await
                    .map_err(|e| format!("SubjectAccessReview: {e}"))?;
                if answer.status.is_some_and(|s| s.allowed) {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_is_read_and_bad_parts_are_named() {
        let f = parse_filter("verb=get&resource=pods%2Fexec&since=2026-11-29T10:00:00Z&limit=5")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.verb.as_deref(), Some("get"));
        assert_eq!(f.resource.as_deref(), Some("pods/exec"));
        assert_eq!(f.limit, Some(5));
        assert!(f.since.is_some());
        assert_eq!(
            parse_filter("limit=x").err(),
            Some("limit: expected a number, got \"x\"".into())
        );
        assert!(parse_filter("since=yesterday").is_err());
        assert_eq!(
            parse_filter("color=red").err(),
            Some("unknown parameter \"color\"".into())
        );
    }
}
