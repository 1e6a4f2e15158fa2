//! Cluster mode at the kube client's HTTP boundary. No API server can run here, so a mock service stands in
//! for it (tower-test), answering LIST with the example cluster and holding WATCH requests open. The test
//! checks the exact requests (reads only, the six kinds), that no zone is published before every list has
//! completed, and that the published zone applies the tenants' policy. `real_cluster` runs against a
//! cluster when KUBECONFIG is set.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use kubebid_dns::answer::{Action, decide};
use kubebid_dns::zone::{UnknownClients, Zone};
use kubebid_model::load::manifest_items;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

fn example(path: &str) -> Vec<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(&p).unwrap();
    let (items, errors) = manifest_items(path, &text);
    assert!(errors.is_empty(), "{errors:?}");
    items.into_iter().map(|i| i.value).collect()
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "10"}, "items": items})
}

fn of_kind(objects: &[Value], kind: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .cloned()
        .collect()
}

fn ask(zone: &Zone, from: u8, name: &str) -> ResponseCode {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    match decide(zone, IpAddr::V4(Ipv4Addr::new(127, 0, 0, from)), &m).action {
        Action::Reply(r) => r.metadata.response_code,
        other => panic!("{other:?}"),
    }
}

/// Runs the cluster feed; every published zone arrives on the receiver, and the sender stops it.
fn watch_zones(
    client: kube::Client,
) -> (
    mpsc::UnboundedReceiver<Zone>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::unbounded_channel::<Zone>();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(kubebid_dns::cluster::run(
        client,
        UnknownClients::Deny,
        move |z| {
            let _ = tx.send(z);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (rx, stop, task)
}

#[tokio::test]
async fn reflectors_publish_a_zone_only_after_every_list() {
    let state = example("examples/dns/cluster-state.yaml");
    let config = example("examples/config/kubebid.yaml");
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    let client = kube::Client::new(mock, "default");
    let requests = Arc::new(Mutex::new(Vec::<String>::new()));
    let (release_pods, pods_released) = oneshot::channel::<()>();
    let log = requests.clone();
    tokio::spawn(async move {
        let mut watches = Vec::new();
        let mut held_pods = Some(pods_released);
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or_default().to_owned();
            log.lock().unwrap().push(format!("{} {path}", req.method()));
            assert_eq!(req.method(), "GET", "reads only: {path}");
            if query.contains("watch=true") {
                watches.push(send);
                continue;
            }
            let items = match path.as_str() {
                "/api/v1/namespaces" => of_kind(&state, "Namespace"),
                "/api/v1/services" => of_kind(&state, "Service"),
                "/apis/discovery.k8s.io/v1/endpointslices" => of_kind(&state, "EndpointSlice"),
                "/api/v1/pods" => {
                    // The pod list is held back until the test has seen that nothing was published.
                    if let Some(wait) = held_pods.take() {
                        let _ = wait.await;
                    }
                    of_kind(&state, "Pod")
                }
                "/apis/kubebid.io/v1alpha1/tenants" => of_kind(&config, "Tenant"),
                "/apis/kubebid.io/v1alpha1/kubebidconfigs" => of_kind(&config, "KubeBidConfig"),
                other => panic!("unexpected request {other}"),
            };
            send.send_response(
                Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(
                        serde_json::to_vec(&list(items)).unwrap(),
                    )))
                    .unwrap(),
            );
        }
        drop(watches);
    });

    let (mut rx, stop, task) = watch_zones(client);
    // Five lists done, pods pending: several rebuild periods pass without a zone.
    tokio::time::sleep(kubebid_dns::cluster::REBUILD_EVERY * 3).await;
    assert!(
        rx.try_recv().is_err(),
        "a zone was published before every list completed"
    );
    release_pods.send(()).unwrap();
    let zone = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a zone after every list")
        .unwrap();
    // The tenants' policy holds in the zone built from the cluster.
    assert_eq!(
        ask(&zone, 11, "web.tenant-acme.svc.cluster.local."),
        ResponseCode::NoError
    );
    assert_eq!(
        ask(&zone, 11, "api.tenant-globex.svc.cluster.local."),
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(&zone, 21, "registry.platform.svc.cluster.local."),
        ResponseCode::NoError
    );
    let _ = stop.send(());
    task.await.unwrap();
    let seen: BTreeSet<String> = requests.lock().unwrap().iter().cloned().collect();
    let want: BTreeSet<String> = [
        "GET /api/v1/namespaces",
        "GET /api/v1/services",
        "GET /apis/discovery.k8s.io/v1/endpointslices",
        "GET /api/v1/pods",
        "GET /apis/kubebid.io/v1alpha1/tenants",
        "GET /apis/kubebid.io/v1alpha1/kubebidconfigs",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(seen, want);
}

#[tokio::test]
async fn real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!("SKIPPED real_cluster: KUBECONFIG is not set");
        return;
    }
    let client = kube::Client::try_default().await.expect("kubeconfig loads");
    let (mut rx, stop, task) = watch_zones(client);
    let zone = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .expect("the cluster's zone")
        .unwrap();
    // Every cluster has the API server's Service, visible to platform clients (and to nobody unknown).
    let m = {
        let mut q = Message::query();
        q.add_query(Query::query(
            Name::from_ascii(format!("kubernetes.default.svc.{}", zone.origin)).unwrap(),
            RecordType::A,
        ));
        q
    };
    let unknown = decide(&zone, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 250)), &m);
    let Action::Reply(r) = unknown.action else {
        panic!()
    };
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let _ = stop.send(());
    task.await.unwrap();
}
