//! Leader election at the kube client's HTTP boundary (a mock API server, since none runs here): a missing
//! lease is created, a live lease of another replica is left alone, an expired one is taken over with the
//! resourceVersion it was read at, and a lost race (409) means "not the leader".

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use kube::api::Api;
use kubebid_tenancy::lease::LeaseLock;
use serde_json::{Value, json};

#[derive(Default)]
struct Server {
    lease: Option<Value>,
    log: Vec<String>,
    conflict_next_write: bool,
}

fn start(state: Arc<Mutex<Server>>) -> kube::Client {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().to_string();
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect_bytes().await.unwrap();
            let mut s = state.lock().unwrap();
            s.log.push(format!("{method} {path}"));
            let respond = common::respond;
            let status = |code: u16, reason: &str| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
            let r = match method.as_str() {
                "GET" => match &s.lease {
                    Some(l) => respond(200, l.clone()),
                    None => respond(404, status(404, "NotFound")),
                },
                "POST" | "PUT" => {
                    if s.conflict_next_write {
                        s.conflict_next_write = false;
                        respond(409, status(409, "Conflict"))
                    } else {
                        let mut v: Value = serde_json::from_slice(&body).unwrap();
                        v["metadata"]["resourceVersion"] = json!("8");
                        s.lease = Some(v.clone());
                        respond(if method == "POST" { 201 } else { 200 }, v)
                    }
                }
                _ => panic!("unexpected {method}"),
            };
            send.send_response(r);
        }
    });
    kube::Client::new(mock, "default")
}

fn lease(holder: &str, renewed_secs_ago: i64) -> Value {
    let renewed = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(renewed_secs_ago))
        .unwrap();
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kubebid-operator", "namespace": "kubebid-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "leaseTransitions": 2}})
}

#[tokio::test]
async fn create_wait_take_over_and_lose_a_race() {
    let state = Arc::new(Mutex::new(Server::default()));
    let client = start(state.clone());
    let lock = LeaseLock {
        api: Api::namespaced(client, "kubebid-system"),
        name: "kubebid-operator".into(),
        identity: "replica-a".into(),
        duration: Duration::from_secs(15),
    };
    let path = "/apis/coordination.k8s.io/v1/namespaces/kubebid-system/leases";

    assert!(lock.try_lead().await.unwrap(), "no lease: created and held");
    {
        let s = state.lock().unwrap();
        assert_eq!(
            s.log,
            [
                format!("GET {path}/kubebid-operator"),
                format!("POST {path}")
            ]
        );
        assert_eq!(
            s.lease.as_ref().unwrap()["spec"]["holderIdentity"],
            "replica-a"
        );
    }

    state.lock().unwrap().lease = Some(lease("replica-b", 3));
    state.lock().unwrap().log.clear();
    assert!(
        !lock.try_lead().await.unwrap(),
        "another replica's live lease"
    );
    assert_eq!(
        state.lock().unwrap().log,
        [format!("GET {path}/kubebid-operator")],
        "no write while waiting"
    );

    state.lock().unwrap().lease = Some(lease("replica-b", 60));
    state.lock().unwrap().log.clear();
    assert!(lock.try_lead().await.unwrap(), "expired: taken over");
    {
        let s = state.lock().unwrap();
        assert_eq!(s.log[1], format!("PUT {path}/kubebid-operator"));
        let l = s.lease.as_ref().unwrap();
        assert_eq!(l["spec"]["holderIdentity"], "replica-a");
        assert_eq!(l["spec"]["leaseTransitions"], 3);
    }

    state.lock().unwrap().lease = Some(lease("replica-b", 60));
    state.lock().unwrap().conflict_next_write = true;
    assert!(
        !lock.try_lead().await.unwrap(),
        "a lost race is not an error, just not leading"
    );
}

/// An API server restart (every request failing for longer than the lease) makes the leader stop
/// reconciling and campaign again, not exit; when the API server is back it leads again, and it stops only
/// when asked. `/healthz` says why while the API server cannot be reached.
#[tokio::test(start_paused = true)]
async fn a_leader_that_loses_the_api_server_campaigns_again_instead_of_exiting() {
    use kubebid_tenancy::metrics::OperatorMetrics;
    #[derive(Default)]
    struct Cluster {
        lease: Server,
        api: common::ApiServer,
        down: bool,
    }
    let state = Arc::new(Mutex::new(Cluster::default()));
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(mock, "default");
    let server_state = state.clone();
    tokio::spawn(async move {
        let mut watches = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let common::Seen {
                method,
                path,
                query,
                content_type,
                body,
            } = common::read(req).await;
            let mut s = server_state.lock().unwrap();
            if s.down {
                send.send_response(common::respond(503, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "the API server is restarting"})));
                continue;
            }
            if query.contains("watch=true") {
                watches.push(send);
                continue;
            }
            let r = if path.contains("/leases") {
                s.lease.log.push(format!("{method} {path}"));
                match method.as_str() {
                    "GET" => match &s.lease.lease {
                        Some(l) => common::respond(200, l.clone()),
                        None => common::respond(
                            404,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                        ),
                    },
                    _ => {
                        let mut v: Value = serde_json::from_slice(&body).unwrap();
                        v["metadata"]["resourceVersion"] = json!("8");
                        s.lease.lease = Some(v.clone());
                        common::respond(200, v)
                    }
                }
            } else {
                common::answer(&mut s.api, &method, &path, &query, &content_type, &body)
            };
            send.send_response(r);
        }
    });
    let metrics = Arc::new(OperatorMetrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let elected = tokio::spawn(kubebid_tenancy::operator::run_elected(
        client,
        "kubebid-system",
        "replica-a".into(),
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    let wait_for = |want: i64| {
        let metrics = metrics.clone();
        async move {
            for _ in 0..600 {
                if metrics.leading.get() == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("leading never became {want}");
        }
    };
    wait_for(1).await;
    // The API server goes away for longer than the lease.
    state.lock().unwrap().down = true;
    wait_for(0).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !elected.is_finished(),
        "the operator exited on a lost lease"
    );
    let health = metrics.health().unwrap_err();
    assert!(health.contains("503"), "{health}");
    // Back: it leads again, and its health recovers.
    state.lock().unwrap().down = false;
    wait_for(1).await;
    assert!(metrics.health().is_ok());
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(60), elected)
        .await
        .expect("stops when asked")
        .unwrap()
        .unwrap();
}
