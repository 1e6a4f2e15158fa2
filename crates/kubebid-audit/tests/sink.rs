//! The sink over HTTP on loopback: batches stored and attributed, bad batches refused whole, the body
//! limit, client certificates, and tenants' queries through the access review; the access review at the
//! kube client's HTTP boundary, request by request.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, StatusCode};
use kubebid_audit::head::{KeyFile, Signer as _};
use kubebid_audit::log::LogConfig;
use kubebid_audit::metrics::AuditMetrics;
use kubebid_audit::sink::{Access, KubeAccess, SinkState, serve_in};
use kubebid_audit::store::Store;
use kubebid_audit::verify::verify_dir;
use kubebid_model::config::Tenant;
use kubebid_model::tenancy::Tenancy;
use kubebid_server::Shutdown;
use kubebid_server::http::{Process, Transport};
use serde_json::{Value, json};

/// Lets `good` read the trail of a tenant that has `acme-prod`.
struct FakeAccess;

impl Access for FakeAccess {
    fn may_read<'a>(
        &'a self,
        token: &'a str,
        namespaces: Vec<String>,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move { Ok(token == "good" && namespaces.iter().any(|n| n == "acme-prod")) })
    }
}

fn tenancy() -> Tenancy {
    let tenant = |name: &str, ns: &[&str], group: &str| -> Tenant {
        serde_json::from_value(json!({
            "apiVersion": "kubebid.io/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
            "spec": {"namespaces": ns, "owners": [{"kind": "Group", "name": group}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    Tenancy::new(
        &Default::default(),
        &[
            tenant("acme", &["acme-prod", "acme-dev"], "acme-admins"),
            tenant("globex", &["globex"], "globex-admins"),
        ],
    )
}

struct Running {
    addr: SocketAddr,
    root: std::path::PathBuf,
    public: kubebid_audit::head::PublicKey,
    process: Process,
    _dir: tempfile::TempDir,
}

async fn start(client_auth: bool) -> Running {
    start_with(client_auth, kubebid_audit::sink::CONCURRENT_QUERIES).await
}

async fn start_with(client_auth: bool, query_permits: usize) -> Running {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let key_path = dir.path().join("key.pem");
    std::fs::write(
        &key_path,
        KeyFile::generate_pem()
            .unwrap_or_else(|e| panic!("{e}"))
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let signer = Arc::new(KeyFile::load(&key_path).unwrap_or_else(|e| panic!("{e}")));
    let root = dir.path().join("data");
    let process = Process::new(Shutdown::new());
    let metrics: AuditMetrics =
        Arc::new(kubebid_server::metrics::Registered::new(&process.registry));
    let public = signer.public_key();
    let (store, _, _) = Store::start(&root, LogConfig::default(), signer, metrics.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    let state = Arc::new(SinkState {
        store,
        tenancy: Arc::new(ArcSwap::from_pointee(tenancy())),
        metrics,
        client_auth,
        root: root.clone(),
        key: public,
        access: Some(Arc::new(FakeAccess)),
        detection: None,
        ready: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        queries: Arc::new(tokio::sync::Semaphore::new(query_permits)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let p = process.clone();
    tokio::spawn(async move { serve_in(&p, listener, Transport::Plain, 64 * 1024, state).await });
    Running {
        addr,
        root,
        public,
        process,
        _dir: dir,
    }
}

async fn call(addr: SocketAddr, req: Request<Full<Bytes>>) -> (StatusCode, String) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(conn);
    let res = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let code = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn post(body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    Request::post("/events")
        .body(Full::new(body.into()))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn event(id: &str, ns: &str, user: &str, group: &str, resource: &str) -> Value {
    json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "verb": "get", "requestURI": format!("/api/v1/namespaces/{ns}/{resource}"),
        "user": {"username": user, "groups": [group]},
        "objectRef": {"resource": resource, "namespace": ns, "apiVersion": "v1"},
        "requestReceivedTimestamp": "2026-11-29T10:00:00.000000Z", "stageTimestamp": "2026-11-29T10:00:00.001000Z"})
}

fn list(items: &[Value]) -> String {
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

fn sizes(r: &Running) -> Vec<(String, u64)> {
    verify_dir(&r.root, &r.public, None, &[])
        .unwrap_or_else(|e| panic!("{e}"))
        .trails
        .into_iter()
        .map(|t| (t.trail, t.events))
        .collect()
}

#[tokio::test]
async fn batches_are_attributed_stored_and_refused_whole_when_bad() {
    let r = start(false).await;
    let batch = list(&[
        event("1", "acme-prod", "alice", "acme-admins", "secrets"),
        event("2", "globex", "bob", "globex-admins", "pods"),
        event("3", "kube-system", "admin", "system:masters", "pods"),
        // No namespace: attributed by the user's group.
        json!({"auditID": "4", "stage": "ResponseComplete", "verb": "list", "user": {"username": "carol", "groups": ["globex-admins"]}, "objectRef": {"resource": "namespaces"}}),
    ]);
    assert_eq!(
        call(r.addr, post(batch)).await,
        (StatusCode::OK, "{}".into())
    );
    let stored = sizes(&r);
    assert_eq!(
        stored,
        vec![
            ("_platform".into(), 1),
            ("acme".into(), 1),
            ("globex".into(), 2)
        ]
    );

    // One bad event: the whole batch is refused, the answer says which and why, nothing is stored.
    let bad = list(&[
        event("5", "acme-prod", "alice", "acme-admins", "pods"),
        json!({"auditID": "6", "stage": "x", "user": {}}),
    ]);
    let (code, body) = call(r.addr, post(bad)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("items[1]: verb is missing or empty"),
        "{body}"
    );
    assert_eq!(
        call(r.addr, post("not json")).await.0,
        StatusCode::BAD_REQUEST
    );
    let too_big = list(
        &(0..200)
            .map(|i| event(&i.to_string(), "acme-prod", "alice", "acme-admins", "pods"))
            .collect::<Vec<_>>(),
    );
    assert!(too_big.len() > 64 * 1024);
    assert_eq!(
        call(r.addr, post(too_big)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(sizes(&r), stored, "nothing of a refused batch is stored");

    let metrics = call(
        r.addr,
        Request::get("/metrics")
            .body(Full::default())
            .unwrap_or_default(),
    )
    .await
    .1;
    assert!(
        metrics.contains("kubebid_audit_events_total{trail=\"globex\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubebid_audit_batches_total{outcome=\"malformed\"} 2"),
        "{metrics}"
    );
    r.process.shutdown.trigger();
}

#[tokio::test]
async fn without_a_client_certificate_nothing_is_stored() {
    let r = start(true).await;
    let (code, _) = call(
        r.addr,
        post(list(&[event(
            "1",
            "acme-prod",
            "alice",
            "acme-admins",
            "pods",
        )])),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(sizes(&r).iter().all(|(_, n)| *n == 0));
    r.process.shutdown.trigger();
}

#[tokio::test]
async fn a_tenant_reads_its_own_trail_only() {
    let r = start(false).await;
    let batch = list(&[
        event("1", "acme-prod", "alice", "acme-admins", "secrets"),
        event("2", "acme-dev", "alice", "acme-admins", "pods"),
        event("3", "globex", "bob", "globex-admins", "secrets"),
    ]);
    assert_eq!(call(r.addr, post(batch)).await.0, StatusCode::OK);
    let get = |path: &str, token: Option<&str>| {
        let mut b = Request::get(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Full::default()).unwrap_or_default()
    };
    let (code, body) = call(
        r.addr,
        get("/trails/acme/events?resource=secrets", Some("good")),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_default())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["auditID"], "1");
    assert_eq!(
        call(r.addr, get("/trails/acme/events", Some("good")))
            .await
            .1
            .lines()
            .count(),
        2
    );
    assert_eq!(
        call(r.addr, get("/trails/globex/events", Some("good")))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(r.addr, get("/trails/acme/events", Some("bad")))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(r.addr, get("/trails/acme/events", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(r.addr, get("/trails/nobody/events", Some("good")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(r.addr, get("/trails/acme/events?colour=red", Some("good")))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    r.process.shutdown.trigger();
}

/// The cluster's answers to the access review: a TokenReview, then SubjectAccessReviews per namespace.
#[tokio::test]
async fn the_access_review_asks_the_cluster_exactly() {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, hyper::Response<kube::client::Body>>(
        );
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        let respond = |v: Value| {
            hyper::Response::builder()
                .header("content-type", "application/json")
                .body(kube::client::Body::from(
                    serde_json::to_vec(&v).unwrap_or_default(),
                ))
                .expect("a response")
        };
        // Token review.
        let Some((req, send)) = handle.next_request().await else {
            return seen;
        };
        let (parts, body) = req.into_parts();
        let body: Value = serde_json::from_slice(&body.collect_bytes().await.unwrap_or_default())
            .unwrap_or_default();
        seen.push(format!("{} {}", parts.method, parts.uri.path()));
        assert_eq!(body["kind"], "TokenReview");
        assert_eq!(body["spec"]["token"], "tok");
        send.send_response(respond(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": "tok"}, "status": {"authenticated": true,
            "user": {"username": "alice", "uid": "u-1", "groups": ["acme-admins", "system:authenticated"]}}})));
        // One SubjectAccessReview per namespace until one allows.
        for allowed in [false, true] {
            let Some((req, send)) = handle.next_request().await else {
                return seen;
            };
            let (parts, body) = req.into_parts();
            let body: Value =
                serde_json::from_slice(&body.collect_bytes().await.unwrap_or_default())
                    .unwrap_or_default();
            seen.push(format!(
                "{} {} {}",
                parts.method,
                parts.uri.path(),
                body["spec"]["resourceAttributes"]["namespace"]
                    .as_str()
                    .unwrap_or("")
            ));
            assert_eq!(body["spec"]["user"], "alice");
            assert_eq!(body["spec"]["uid"], "u-1");
            assert_eq!(
                body["spec"]["groups"],
                json!(["acme-admins", "system:authenticated"])
            );
            assert_eq!(
                body["spec"]["resourceAttributes"],
                json!({"group": "kubebid.io", "resource": "auditevents", "verb": "get", "namespace": body["spec"]["resourceAttributes"]["namespace"]})
            );
            send.send_response(respond(
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": body["spec"], "status": {"allowed": allowed}}),
            ));
        }
        seen
    });
    let access = KubeAccess { client };
    let ok = access
        .may_read("tok", vec!["acme-dev".into(), "acme-prod".into()])
        .await;
    assert_eq!(ok, Ok(true));
    let seen = server.await.unwrap_or_default();
    assert_eq!(
        seen,
        vec![
            "POST /apis/authentication.k8s.io/v1/tokenreviews",
            "POST /apis/authorization.k8s.io/v1/subjectaccessreviews acme-dev",
            "POST /apis/authorization.k8s.io/v1/subjectaccessreviews acme-prod",
        ]
    );
}

#[tokio::test]
async fn an_unauthenticated_token_is_refused_without_asking_for_access() {
    let (service, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, hyper::Response<kube::client::Body>>(
        );
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut n = 0;
        while let Some((_, send)) = handle.next_request().await {
            n += 1;
            send.send_response(
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(kube::client::Body::from(
                        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}, "status": {"authenticated": false}}).to_string().into_bytes(),
                    ))
                    .expect("a response"),
            );
        }
        n
    });
    let access = KubeAccess { client };
    assert_eq!(
        access.may_read("forged", vec!["acme-prod".into()]).await,
        Ok(false)
    );
    drop(access);
    assert_eq!(
        server.await.unwrap_or_default(),
        1,
        "only the TokenReview was asked"
    );
}

#[tokio::test]
async fn queries_beyond_the_concurrency_limit_are_turned_away() {
    // No permit left: as when other queries are reading trails.
    let r = start_with(false, 0).await;
    let req = Request::get("/trails/acme/events")
        .header("authorization", "Bearer good")
        .body(Full::default())
        .unwrap();
    assert_eq!(call(r.addr, req).await.0, StatusCode::TOO_MANY_REQUESTS);
    r.process.shutdown.trigger();
}
