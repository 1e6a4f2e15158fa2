//! `kubebid verify` and `kubebid scan` end to end, from the command line, against a small API server on
//! loopback that holds what KubeBid renders for two tenants and answers as Kubernetes does: lists and gets,
//! rules reviews by impersonated identity (the tenant's own Role in its namespaces, nothing elsewhere), and
//! dry-run creates judged by KubeBid's own policy engine, as the webhook would. One pod of globex's was made
//! before the webhook: privileged, outside the microVM class. Both commands must find it; every other
//! probe must pass or say why it was skipped.

// Test fixtures fail the test loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Request, Response};
use kubebid_model::load::ConfigSet;
use kubebid_policy::PolicySet;
use serde_json::{Value, json};

const TENANTS: &str = "apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme-prod]
  owners: [{kind: Group, name: acme-admins}]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  namespaces: [globex]
  owners: [{kind: User, name: hank@globex.example}]
";

fn config() -> ConfigSet {
    let mut set = ConfigSet::default();
    assert!(set.add_text("tenants.yaml", TENANTS).is_empty());
    set
}

fn running_pod(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}")},
        "spec": spec, "status": {"phase": "Running", "podIP": "10.244.1.7"}})
}

/// Everything the fake cluster holds.
fn objects() -> Vec<Value> {
    let set = config();
    let cluster = set.cluster_spec();
    let mut out = kubebid_tenancy::render::cluster(&cluster);
    for t in &set.tenants {
        out.extend(kubebid_tenancy::render::tenant(&t.object, &cluster).unwrap());
    }
    out.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system", "uid": "5d1e0c7a-0000-4000-8000-00000000c1a5",
        "labels": {"kubernetes.io/metadata.name": "kube-system"}}}));
    out.push(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "labels": {"kubebid.io/secure-runtime": "true"}},
        "spec": {"podCIDRs": ["10.244.1.0/24"]}}));
    // As the mutating webhook leaves a tenant's pod: restricted, in the microVM class, with limits.
    out.push(running_pod("acme-prod", "web", json!({"runtimeClassName": "kubebid-secure", "nodeName": "node-a",
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "web", "image": "registry.example/web:1", "imagePullPolicy": "Always",
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}]})));
    // Made before the webhook was installed.
    out.push(running_pod("globex", "debug", json!({"nodeName": "node-b",
        "containers": [{"name": "debug", "image": "registry.example/tools:1", "securityContext": {"privileged": true}}]})));
    out
}

const KINDS: &[(&str, &str)] = &[
    ("pods", "Pod"),
    ("namespaces", "Namespace"),
    ("nodes", "Node"),
    ("networkpolicies", "NetworkPolicy"),
    ("runtimeclasses", "RuntimeClass"),
    ("roles", "Role"),
    ("rolebindings", "RoleBinding"),
    ("services", "Service"),
    ("serviceaccounts", "ServiceAccount"),
    ("configmaps", "ConfigMap"),
];

struct World {
    objects: Vec<Value>,
    policy: PolicySet,
    /// Impersonated user or group → its tenant.
    owner_of: BTreeMap<String, String>,
    tenant_of_ns: BTreeMap<String, String>,
}

fn answer(code: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Response<Full<Bytes>> {
    answer(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
    )
}

impl World {
    fn new() -> Self {
        let set = config();
        let tenancy = set.tenancy();
        let mut owner_of = BTreeMap::new();
        let mut tenant_of_ns = BTreeMap::new();
        for t in tenancy.tenants() {
            for o in &t.owners {
                owner_of.insert(o.name.clone(), t.name.clone());
            }
            for ns in &t.namespaces {
                owner_of.insert(format!("system:serviceaccounts:{ns}"), t.name.clone());
                tenant_of_ns.insert(ns.clone(), t.name.clone());
            }
        }
        Self {
            objects: objects(),
            policy: PolicySet::from_config(&set).unwrap(),
            owner_of,
            tenant_of_ns,
        }
    }

    /// The tenant the request's impersonated identity belongs to.
    fn caller(
        &self,
        req: &Request<hyper::body::Incoming>,
    ) -> (Option<String>, String, Vec<String>) {
        let h = |name: &str| -> Vec<String> {
            req.headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect()
        };
        let user = h("impersonate-user").into_iter().next().unwrap_or_default();
        let groups = h("impersonate-group");
        let tenant = std::iter::once(&user)
            .chain(&groups)
            .find_map(|n| self.owner_of.get(n).cloned());
        (tenant, user, groups)
    }

    fn list(&self, kind: &str, ns: Option<&str>) -> Value {
        let items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind && ns.is_none_or(|n| o["metadata"]["namespace"] == n))
            .collect();
        json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})
    }

    fn get(&self, path: &str) -> Response<Full<Bytes>> {
        if path == "/version" {
            return answer(
                200,
                &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0", "gitCommit": "0", "gitTreeState": "clean",
                    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let rest = match parts.as_slice() {
            ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
            _ => return status(404, "NotFound", "no such path"),
        };
        let (ns, resource, name) = match rest {
            ["namespaces", ns, resource] => (Some(*ns), *resource, None),
            ["namespaces", ns, resource, name] => (Some(*ns), *resource, Some(*name)),
            ["namespaces", name] => (None, "namespaces", Some(*name)),
            [resource] => (None, *resource, None),
            [resource, name] => (None, *resource, Some(*name)),
            _ => return status(404, "NotFound", "no such path"),
        };
        let Some((_, kind)) = KINDS.iter().find(|(r, _)| *r == resource) else {
            // A kind this cluster does not serve (CRDs that are not installed).
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        match name {
            None => answer(200, &self.list(kind, ns)),
            Some(name) => self
                .objects
                .iter()
                .find(|o| {
                    o["kind"] == *kind
                        && o["metadata"]["name"] == name
                        && ns.is_none_or(|n| o["metadata"]["namespace"] == n)
                })
                .map_or_else(
                    || status(404, "NotFound", &format!("{resource} \"{name}\" not found")),
                    |o| answer(200, o),
                ),
        }
    }

    fn review(&self, path: &str, body: &Value, tenant: Option<&str>) -> Response<Full<Bytes>> {
        if path.ends_with("selfsubjectaccessreviews") {
            return answer(201, &json!({"status": {"allowed": false}}));
        }
        let ns = body["spec"]["namespace"].as_str().unwrap_or_default();
        let mine = tenant.is_some() && self.tenant_of_ns.get(ns).map(String::as_str) == tenant;
        let mut rules = vec![
            json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
        ];
        if mine {
            let role = self
                .objects
                .iter()
                .find(|o| {
                    o["kind"] == "Role"
                        && o["metadata"]["namespace"] == ns
                        && o["metadata"]["name"] == "tenant-admin"
                })
                .unwrap();
            rules.extend(role["rules"].as_array().unwrap().iter().cloned());
        }
        answer(
            201,
            &json!({"status": {"resourceRules": rules, "nonResourceRules": [], "incomplete": false}}),
        )
    }

    /// A dry-run create: RBAC (only in the caller's own namespaces), then KubeBid's admission.
    fn create(
        &self,
        path: &str,
        body: Value,
        caller: &(Option<String>, String, Vec<String>),
    ) -> Response<Full<Bytes>> {
        let ns = path
            .split('/')
            .skip_while(|p| *p != "namespaces")
            .nth(1)
            .unwrap_or_default();
        if caller.0.is_none() || self.tenant_of_ns.get(ns) != caller.0.as_ref() {
            return status(
                403,
                "Forbidden",
                &format!(
                    "User \"{}\" cannot create in the namespace \"{ns}\"",
                    caller.1
                ),
            );
        }
        let object = kubebid_model::Object::from_value(body.clone()).unwrap();
        let decision = self.policy.evaluate(&kubebid_policy::Request {
            namespace: Some(ns),
            now: Some(jiff::Timestamp::now()),
            user: Some(&caller.1),
            groups: &caller.2,
            ..kubebid_policy::Request::create(&object)
        });
        if decision.denied() {
            let why: Vec<String> = decision
                .findings
                .iter()
                .filter(|f| f.denies())
                .map(|f| f.message.clone())
                .collect();
            return status(
                403,
                "Forbidden",
                &format!(
                    "admission webhook \"tenants.validate.kubebid.io\" denied the request: {}",
                    why.join("; ")
                ),
            );
        }
        answer(201, &body)
    }

    async fn handle(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let caller = self.caller(&req);
        let method = req.method().clone();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        match method.as_str() {
            "GET" => self.get(&path),
            "POST" if path.starts_with("/apis/authorization.k8s.io/") => self.review(
                &path,
                &serde_json::from_slice(&body).unwrap(),
                caller.0.as_deref(),
            ),
            "POST" if query.contains("dryRun=All") => {
                self.create(&path, serde_json::from_slice(&body).unwrap(), &caller)
            }
            _ => status(
                405,
                "MethodNotAllowed",
                "this fake API server stores nothing",
            ),
        }
    }
}

/// Serves the fake cluster on loopback; its kubeconfig.
fn serve(dir: &std::path::Path) -> std::path::PathBuf {
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let world = Arc::new(World::new());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let world = world.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let world = world.clone();
                        async move { Ok::<_, std::convert::Infallible>(world.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    let addr = rx.recv().unwrap();
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"http://{addr}\"}}\nusers:\n- name: verifier\n  user: {{token: verifier-token}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: verifier}}\ncurrent-context: fake\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("tenants.yaml"), TENANTS).unwrap();
    kubeconfig
}

fn kubebid(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubebid"))
        .args(args)
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("-c")
        .arg(dir.join("tenants.yaml"))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("kubebid-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn verify_finds_the_pod_made_before_the_webhook_and_proves_the_rest() {
    let dir = temp_dir("verify-cli");
    serve(&dir);
    let (code, out, err) = kubebid(&dir, &["verify", "-o", "json"]);
    assert_eq!(code, Some(1), "{err}\n{out}");
    let findings: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let failed: Vec<&Value> = findings.iter().filter(|f| f["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["probe"], "compute/pods");
    assert_eq!(failed[0]["tenant"], "globex");
    let evidence = failed[0]["evidence"].to_string();
    assert!(
        evidence.contains("globex/debug runs in RuntimeClass \\\"\\\""),
        "{evidence}"
    );
    assert!(evidence.contains("node \\\"node-b\\\""), "{evidence}");
    let probes = |p: &str, r: &str| {
        findings
            .iter()
            .filter(|f| f["probe"] == p && f["result"] == r)
            .count()
    };
    // Every hostile object refused, every compliant one admitted, by the policy engine behind the fake.
    assert_eq!(probes("admission/hostile", "fail"), 0);
    assert!(
        probes("admission/hostile", "pass") >= 20,
        "{}",
        probes("admission/hostile", "pass")
    );
    assert_eq!(probes("admission/compliant", "pass"), 6);
    // Two owners and two service accounts, each in two namespaces.
    assert_eq!(
        probes("control-plane/foreign-namespace", "pass")
            + probes("control-plane/own-namespace", "pass"),
        8
    );
    assert_eq!(probes("network/reachability", "pass"), 2);
    assert_eq!(probes("network/default-deny", "pass"), 2);
    for skipped in [
        "network/encryption",
        "dns/foreign-names",
        "data/secrets-at-rest",
        "audit/trail",
    ] {
        assert!(
            probes(skipped, "skip") >= 1,
            "{skipped} is skipped with a reason"
        );
    }

    let (code, html, _) = kubebid(&dir, &["verify", "-o", "html"]);
    assert_eq!(code, Some(1));
    for must in [
        "isolation FAILS",
        "v1.35.0",
        "5d1e0c7a-0000-4000-8000-00000000c1a5",
        "http://127.0.0.1:",
    ] {
        assert!(html.contains(must), "{must}");
    }
    if let Some(keep) = std::env::var_os("KUBEBID_VERIFY_HTML") {
        std::fs::write(keep, &html).unwrap();
    }
    let (code, text, _) = kubebid(&dir, &["verify", "--tenant", "acme"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(" 0 failed, "), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scan_judges_the_objects_already_there() {
    let dir = temp_dir("scan-cli");
    serve(&dir);
    let (code, out, err) = kubebid(&dir, &["scan"]);
    assert_eq!(code, Some(1), "{err}\n{out}");
    assert!(out.contains("cluster:globex/Pod/debug"), "{out}");
    assert!(out.contains("pss/privileged"), "{out}");
    assert!(
        !out.contains("(line "),
        "objects from a cluster have no lines: {out}"
    );
    let (code, sarif, _) = kubebid(&dir, &["scan", "-o", "sarif"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&sarif).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["ruleId"] == "pss/privileged"));
    // acme's pod alone: nothing at enforce level.
    let (code, out, _) = kubebid(&dir, &["scan", "-n", "acme-prod"]);
    assert_eq!(code, Some(0), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
