//! What the mock API servers of these tests share: a JSON response helper, and a small in-memory API
//! server at the kube client's HTTP boundary that keeps objects by path and answers GET (objects and
//! label-selected lists), server-side apply (merging like it: maps field by field, lists whole, so a field
//! another manager added survives an apply that does not name it), JSON patch (with `test`), merge patch,
//! POST and DELETE. Every request is logged as `METHOD path?query content-type`.

// Not every test file uses every helper.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use serde_json::{Value, json};

/// A JSON response with `code`, as the API server sends it.
pub fn respond(code: u16, v: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&v).unwrap_or_default(),
        )))
        .unwrap_or_default()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": message})
}

/// Collections the mock lists (the last segment of a list path).
const COLLECTIONS: &[&str] = &[
    "networkpolicies",
    "roles",
    "rolebindings",
    "resourcequotas",
    "limitranges",
    "namespaces",
    "services",
    "runtimeclasses",
    "storageclasses",
    "tenants",
    "kubebidconfigs",
];

/// The stored objects and what was asked.
#[derive(Default)]
pub struct ApiServer {
    pub objects: BTreeMap<String, Value>,
    pub log: Vec<String>,
    /// Every request to this path answers 500.
    pub fail_path: Option<String>,
    /// Writes to this path answer 409 Conflict (another writer changed the object meanwhile).
    pub conflict_path: Option<String>,
    version: u64,
}

impl ApiServer {
    /// Requests that wrote something.
    pub fn writes(&self) -> Vec<&String> {
        self.log.iter().filter(|l| !l.starts_with("GET ")).collect()
    }
}

/// Server-side apply's merge, as far as these tests need it: maps merge key by key, anything else is
/// replaced by what is applied.
fn apply_merge(stored: &mut Value, applied: &Value) {
    match (stored, applied) {
        (Value::Object(s), Value::Object(a)) => {
            for (k, v) in a {
                apply_merge(s.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (s, a) => *s = a.clone(),
    }
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|req| {
        let (k, v) = req.split_once('=').unwrap_or((req, ""));
        object["metadata"]["labels"][k] == v
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
    })
}

/// Whether `path` is an object of the collection `list` (`/apis/g/v/roles` holds
/// `/apis/g/v/namespaces/x/roles/y`).
fn in_collection(path: &str, list: &str) -> bool {
    let resource = list.rsplit('/').next().unwrap_or_default();
    let prefix = list.rsplit_once('/').map_or("", |(p, _)| p);
    path.starts_with(prefix)
        && (path.contains(&format!("/{resource}/")) && path.rsplit('/').nth(1) == Some(resource))
}

/// Answers one request against `s`.
pub fn answer(
    s: &mut ApiServer,
    method: &str,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> Response<Full<Bytes>> {
    s.log
        .push(format!("{method} {path}?{query} {content_type}"));
    if s.fail_path.as_deref() == Some(path) {
        return respond(500, status(500, "InternalError", "etcd unavailable"));
    }
    if method != "GET" && s.conflict_path.as_deref() == Some(path) {
        return respond(
            409,
            status(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified",
            ),
        );
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    match method {
        "GET" if COLLECTIONS.contains(&last) => {
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|(p, o)| in_collection(p, path) && labels_match(o, &selector))
                .map(|(_, o)| o.clone())
                .collect();
            respond(
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        }
        "GET" => match s.objects.get(path) {
            Some(o) => respond(200, o.clone()),
            None => respond(404, status(404, "NotFound", "not found")),
        },
        "PATCH" => {
            s.version += 1;
            let version = s.version.to_string();
            let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if let Some(base) = path.strip_suffix("/status") {
                let Some(mut whole) = s.objects.get(base).cloned() else {
                    return respond(404, status(404, "NotFound", "no such object"));
                };
                whole["status"] = patch["status"].clone();
                s.objects.insert(base.to_owned(), whole.clone());
                s.objects.insert(path.to_owned(), patch);
                return respond(200, whole);
            }
            let mut stored = s.objects.get(path).cloned();
            let result = if content_type.contains("apply-patch") {
                let mut o = stored.take().unwrap_or_else(|| json!({}));
                apply_merge(&mut o, &patch);
                if o["metadata"]["uid"].is_null() {
                    o["metadata"]["uid"] = json!(format!("uid-{version}"));
                }
                // A default the real server adds: a port's protocol.
                if o["kind"] == "NetworkPolicy" {
                    for dir in ["ingress", "egress"] {
                        for rule in o["spec"][dir].as_array_mut().into_iter().flatten() {
                            for port in rule["ports"].as_array_mut().into_iter().flatten() {
                                port.as_object_mut()
                                    .unwrap()
                                    .entry("protocol")
                                    .or_insert(json!("TCP"));
                            }
                        }
                    }
                }
                Ok(o)
            } else if content_type.contains("json-patch") {
                let Some(mut o) = stored.take() else {
                    return respond(404, status(404, "NotFound", "no such object"));
                };
                let p: json_patch::Patch = serde_json::from_value(patch).unwrap();
                json_patch::patch(&mut o, &p)
                    .map(|()| o)
                    .map_err(|e| respond(422, status(422, "Invalid", &e.to_string())))
            } else {
                let Some(mut o) = stored.take() else {
                    return respond(404, status(404, "NotFound", "no such object"));
                };
                json_patch::merge(&mut o, &patch);
                Ok(o)
            };
            match result {
                Ok(mut o) => {
                    o["metadata"]["resourceVersion"] = json!(version);
                    s.objects.insert(path.to_owned(), o.clone());
                    respond(200, o)
                }
                Err(r) => r,
            }
        }
        "POST" => {
            let mut o: Value = serde_json::from_slice(body).unwrap();
            if path.ends_with("/events") {
                s.objects.insert(
                    format!("{path}/{}", o["reason"].as_str().unwrap_or("?")),
                    o.clone(),
                );
                return respond(201, o);
            }
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            o["metadata"]["uid"] = json!("uid-created");
            s.objects.insert(format!("{path}/{name}"), o.clone());
            respond(201, o)
        }
        "DELETE" => match s.objects.remove(path) {
            Some(_) => respond(
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            None => respond(404, status(404, "NotFound", "not found")),
        },
        other => panic!("unexpected {other} {path}"),
    }
}

/// A request as the mock servers read it.
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Bytes,
}

/// Reads what the mock servers look at in a request of the kube client.
pub async fn read(req: Request<kube::client::Body>) -> Seen {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = req.into_body().collect_bytes().await.unwrap();
    Seen {
        method,
        path,
        query,
        content_type,
        body,
    }
}

/// A kube client whose requests `state` answers.
pub fn client(state: Arc<Mutex<ApiServer>>) -> kube::Client {
    let (mock, mut handle) =
        tower_test::mock::pair::<Request<kube::client::Body>, Response<Full<Bytes>>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let Seen {
                method,
                path,
                query,
                content_type,
                body,
            } = read(req).await;
            let r = answer(
                &mut state.lock().unwrap(),
                &method,
                &path,
                &query,
                &content_type,
                &body,
            );
            send.send_response(r);
        }
    });
    kube::Client::new(mock, "default")
}
