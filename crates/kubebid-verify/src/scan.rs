//! Posture scans: the objects already in the cluster judged by the same policy engine as admission.
//!
//! Admission judges a request once. Objects created before the webhook was installed, admitted while it
//! was failing open elsewhere, or admitted under a `PolicyException` that has since expired are never
//! judged again; a scan judges them as they stand, each as a CREATE of itself at the scan's time (so an
//! expired exception no longer lifts anything). The findings become `wgpolicyk8s.io/v1alpha2`
//! PolicyReports, one per namespace, and a ClusterPolicyReport for cluster-scoped objects (Namespaces):
//! the format Kyverno, Kubewarden and the Policy Reporter UI read.

use std::collections::BTreeMap;

use kubebid_model::Object;
use kubebid_model::podspec::POD_BEARING;
use kubebid_policy::{PolicySet, Request};
use serde_json::{Value, json};

use crate::VerifyError;

/// One kind the scan lists: its list path (every namespace), `apiVersion` and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `/api/v1` or `/apis/<group>/<version>`.
    pub base: String,
    pub resource: &'static str,
    pub api_version: &'static str,
    pub kind: &'static str,
}

impl Target {
    /// Whether its objects live in namespaces.
    #[must_use]
    pub fn namespaced(&self) -> bool {
        self.kind != "Namespace"
    }

    /// Where its objects are listed: every namespace's, or `namespace`'s.
    #[must_use]
    pub fn path(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced() => {
                format!("{}/namespaces/{ns}/{}", self.base, self.resource)
            }
            _ => format!("{}/{}", self.base, self.resource),
        }
    }
}

fn target(api_version: &'static str, kind: &'static str, resource: &'static str) -> Target {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    Target {
        base,
        resource,
        api_version,
        kind,
    }
}

/// What the admission webhook judges that is still in the cluster afterwards: every pod-bearing kind,
/// Services, claims, service accounts, NetworkPolicies, Ingresses, Roles, RoleBindings and Namespaces.
#[must_use]
pub fn targets() -> Vec<Target> {
    let mut out: Vec<Target> = POD_BEARING
        .iter()
        .map(|l| target(l.api_version, l.kind, l.resource))
        .collect();
    out.extend([
        target("v1", "Service", "services"),
        target("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
        target("v1", "ServiceAccount", "serviceaccounts"),
        target("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
        target("networking.k8s.io/v1", "Ingress", "ingresses"),
        target("rbac.authorization.k8s.io/v1", "Role", "roles"),
        target(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
        ),
        target("v1", "Namespace", "namespaces"),
    ]);
    out
}

/// Objects listed per page.
pub const PAGE: usize = 500;

/// Every object of `t` (in `namespace`, if given), page by page, with its `apiVersion` and kind set
/// (lists leave them out). For Namespaces with `namespace`, that Namespace alone.
///
/// # Errors
/// The API server refused or did not answer a page.
pub async fn list(
    client: &kube::Client,
    t: &Target,
    namespace: Option<&str>,
) -> Result<Vec<Value>, VerifyError> {
    let mut out = Vec::new();
    let mut next = String::new();
    let base = t.path(namespace);
    let field = match namespace {
        Some(ns) if !t.namespaced() => {
            format!("&fieldSelector=metadata.name%3D{}", crate::query_value(ns))
        }
        _ => String::new(),
    };
    loop {
        let mut path = format!("{base}?limit={PAGE}{field}");
        if !next.is_empty() {
            path.push_str("&continue=");
            path.push_str(&crate::query_value(&next));
        }
        let req = http::Request::get(path.as_str())
            .body(Vec::new())
            .map_err(|e| VerifyError::Answer(format!("GET {path} cannot be made: {e}")))?;
        let mut page: Value = match client.request(req).await {
            Ok(p) => p,
            // A kind this cluster does not serve has nothing to judge.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(out),
            Err(source) => {
                return Err(VerifyError::Api {
                    what: format!("listing {base}"),
                    source,
                });
            }
        };
        match page["items"].take() {
            Value::Array(items) => {
                for mut o in items {
                    // An item that is not an object is no answer: the scan stops rather than skip it.
                    let Some(m) = o.as_object_mut() else {
                        return Err(VerifyError::Answer(format!(
                            "listing {base}: an item is not an object"
                        )));
                    };
                    m.insert("apiVersion".into(), t.api_version.into());
                    m.insert("kind".into(), t.kind.into());
                    out.push(o);
                }
            }
            // Go writes an empty list's nil slice as null.
            Value::Null => {}
            _ => {
                return Err(VerifyError::Answer(format!(
                    "listing {base}: the answer is not a list"
                )));
            }
        }
        next = page["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if next.is_empty() {
            return Ok(out);
        }
    }
}

/// One rule's verdict on one object, as a report result says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `pass`, `fail` (enforced), `warn` (warned or audited) or `skip` (lifted by an exception).
    pub result: &'static str,
    pub rule: String,
    pub severity: &'static str,
    pub message: String,
    /// The offending field.
    pub path: String,
    pub exception: Option<String>,
}

/// One object and what the engine found in it as it stands.
#[derive(Clone, Debug)]
pub struct Judged {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
    pub tenant: Option<String>,
    /// One `pass` when nothing was found; empty when the object is not judged (excluded namespace,
    /// platform object).
    pub verdicts: Vec<Verdict>,
    /// The engine's decision, for `check`'s formats.
    pub decision: kubebid_policy::Decision,
}

/// Rules about who may make a request rather than about what an object is: a scan judges objects as they
/// stand, and a tenant's Namespace (or any object labelled `kubebid.io/managed`) was made by KubeBid.
pub const REQUEST_ONLY_RULES: &[&str] = &["tenant/namespace-object", "tenant/managed-object"];

/// Judges `objects` with `policy` at `now`. Objects that are not Kubernetes objects are left out with
/// the reason, in the second list.
#[must_use]
pub fn judge(
    policy: &PolicySet,
    objects: &[Value],
    now: jiff::Timestamp,
) -> (Vec<Judged>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for v in objects {
        let mut v = v.clone();
        // Bookkeeping the engine never reads.
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        // The scheduler binds every scheduled pod to a node by setting this; a stored pod's node says
        // nothing about who chose it (verify's compute probe judges the node itself: attested or not).
        if v["kind"] == "Pod"
            && let Some(spec) = v["spec"].as_object_mut()
        {
            spec.remove("nodeName");
        }
        let uid = v["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let field = |k: &str| v["metadata"][k].as_str().map(str::to_owned);
        let (api_version, kind) = (
            v["apiVersion"].as_str().unwrap_or_default().to_owned(),
            v["kind"].as_str().unwrap_or_default().to_owned(),
        );
        let (namespace, name) = (field("namespace"), field("name").unwrap_or_default());
        let object = match Object::from_value(v) {
            Ok(o) => o,
            Err(e) => {
                let why = format!("{}: {}", e.path, e.message);
                bad.push(format!(
                    "{kind} {}{name}: {why}",
                    namespace
                        .as_deref()
                        .map_or(String::new(), |n| format!("{n}/"))
                ));
                // In the report too, as an error: an object the engine cannot read is not a pass.
                out.push(Judged {
                    api_version,
                    kind,
                    namespace,
                    name,
                    uid,
                    tenant: None,
                    verdicts: vec![Verdict {
                        result: "error",
                        rule: "admission".into(),
                        severity: "high",
                        message: format!("the object could not be read: {why}"),
                        path: e.path,
                        exception: None,
                    }],
                    decision: kubebid_policy::Decision::default(),
                });
                continue;
            }
        };
        let mut decision = policy.evaluate(&Request {
            now: Some(now),
            ..Request::create(&object)
        });
        decision
            .findings
            .retain(|f| !REQUEST_ONLY_RULES.contains(&f.rule.id));
        let mut verdicts: Vec<Verdict> = decision
            .findings
            .iter()
            .map(|f| Verdict {
                result: if f.exception.is_some() {
                    "skip"
                } else if f.denies() {
                    "fail"
                } else {
                    "warn"
                },
                rule: f.rule.id.to_owned(),
                severity: f.rule.severity.as_str(),
                message: f.message.clone(),
                path: f.path.clone(),
                exception: f.exception.clone(),
            })
            .collect();
        if verdicts.is_empty() && decision.profile.is_some() {
            verdicts.push(Verdict {
                result: "pass",
                rule: "admission".into(),
                severity: "info",
                message: format!(
                    "admitted as it stands under the {} profile",
                    decision.profile.map_or("", |p| p.as_str())
                ),
                path: String::new(),
                exception: None,
            });
        }
        out.push(Judged {
            api_version: object.api_version.clone(),
            kind: object.kind.clone(),
            namespace: object.namespace().map(str::to_owned),
            name: object.name().to_owned(),
            uid,
            tenant: decision.tenant.clone(),
            verdicts,
            decision,
        });
    }
    (out, bad)
}

/// Results one report holds at most, and their size at most in bytes: a PolicyReport is one etcd object
/// (1.5 MiB at most). Failures and errors are written first, so a full report leaves out passes.
pub const MAX_RESULTS: usize = 2000;
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// The name of every report KubeBid keeps.
pub const REPORT_NAME: &str = "kubebid";

/// The reports for `judged`: a PolicyReport for each of `namespaces` (empty when nothing there is
/// judged, so a report whose objects are gone is emptied), and the ClusterPolicyReport.
#[must_use]
pub fn reports(judged: &[Judged], namespaces: &[String], now: jiff::Timestamp) -> Vec<Value> {
    let mut by_ns: BTreeMap<Option<&str>, Vec<&Judged>> = BTreeMap::new();
    by_ns.insert(None, Vec::new());
    for ns in namespaces {
        by_ns.insert(Some(ns.as_str()), Vec::new());
    }
    for j in judged.iter().filter(|j| !j.verdicts.is_empty()) {
        by_ns.entry(j.namespace.as_deref()).or_default().push(j);
    }
    let stamp = json!({"seconds": now.as_second(), "nanos": 0});
    by_ns
        .into_iter()
        .map(|(ns, objects)| {
            let mut summary: BTreeMap<&str, u64> =
                ["pass", "fail", "warn", "error", "skip"].map(|k| (k, 0)).into();
            let mut results = Vec::new();
            let (mut left_out, mut bytes) = (0usize, 0usize);
            let rank = |r: &str| match r {
                "fail" | "error" => 0,
                "warn" => 1,
                "skip" => 2,
                _ => 3,
            };
            let mut ordered: Vec<(&Judged, &Verdict)> = objects
                .iter()
                .flat_map(|j| j.verdicts.iter().map(move |v| (*j, v)))
                .collect();
            ordered.sort_by_key(|(_, v)| rank(v.result));
            for (j, v) in ordered {
                {
                    *summary.entry(v.result).or_default() += 1;
                    if results.len() >= MAX_RESULTS || bytes >= MAX_RESULT_BYTES {
                        left_out += 1;
                        continue;
                    }
                    let mut properties = serde_json::Map::new();
                    if !v.path.is_empty() {
                        properties.insert("path".into(), v.path.clone().into());
                    }
                    if let Some(e) = &v.exception {
                        properties.insert("exception".into(), e.clone().into());
                    }
                    if let Some(t) = &j.tenant {
                        properties.insert("tenant".into(), t.clone().into());
                    }
                    let mut resource = json!({"apiVersion": j.api_version, "kind": j.kind, "name": j.name, "uid": j.uid});
                    if let Some(n) = &j.namespace {
                        resource["namespace"] = n.clone().into();
                    }
                    let result = json!({"source": "kubebid", "policy": "kubebid-admission", "rule": v.rule,
                        "result": v.result, "severity": v.severity, "scored": true, "message": v.message,
                        "timestamp": stamp, "resources": [resource], "properties": properties});
                    bytes += result.to_string().len();
                    results.push(result);
                }
            }
            let mut meta = json!({"name": REPORT_NAME, "labels": {"app.kubernetes.io/managed-by": "kubebid"}});
            if left_out > 0 {
                meta["annotations"] = json!({"kubebid.io/results-left-out": left_out.to_string()});
            }
            let kind = match ns {
                Some(n) => {
                    meta["namespace"] = n.into();
                    "PolicyReport"
                }
                None => "ClusterPolicyReport",
            };
            json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": kind, "metadata": meta,
                "summary": summary, "results": results})
        })
        .collect()
}

/// The path a report is applied at.
#[must_use]
pub fn report_path(report: &Value) -> String {
    match report["metadata"]["namespace"].as_str() {
        Some(ns) => {
            format!("/apis/wgpolicyk8s.io/v1alpha2/namespaces/{ns}/policyreports/{REPORT_NAME}")
        }
        None => format!("/apis/wgpolicyk8s.io/v1alpha2/clusterpolicyreports/{REPORT_NAME}"),
    }
}

/// The field manager KubeBid's reports are applied as.
pub const FIELD_MANAGER: &str = "kubebid-scanner";

/// Writes `report` by server-side apply: created or replaced whole, owned by [`FIELD_MANAGER`].
///
/// # Errors
/// The API server refused it (the PolicyReport CRDs not installed, no permission).
pub async fn apply(client: &kube::Client, report: &Value) -> Result<(), VerifyError> {
    let path = format!(
        "{}?fieldManager={FIELD_MANAGER}&force=true",
        report_path(report)
    );
    let req = http::Request::patch(path.as_str())
        .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
        .body(report.to_string().into_bytes())
        .map_err(|e| VerifyError::Answer(format!("PATCH {path} cannot be made: {e}")))?;
    client
        .request::<Value>(req)
        .await
        .map(drop)
        .map_err(|source| VerifyError::Api {
            what: format!("applying {}", report_path(report)),
            source,
        })
}

/// The `PolicyReport`s KubeBid wrote earlier in namespaces `current` (a whole-cluster scan's reports) has
/// none for any more (the namespace is no longer judged, or nothing in it is), each as an empty report to
/// apply in its place: a stale finding must not outlive the objects or the tenancy it was about.
///
/// # Errors
/// The API server refused the list.
pub async fn stale(
    client: &kube::Client,
    current: &[Value],
    now: jiff::Timestamp,
) -> Result<Vec<Value>, VerifyError> {
    let kept: std::collections::BTreeSet<&str> = current
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    let path = format!(
        "/apis/wgpolicyk8s.io/v1alpha2/policyreports?labelSelector={}",
        crate::query_value("app.kubernetes.io/managed-by=kubebid")
    );
    let req = http::Request::get(path.as_str())
        .body(Vec::new())
        .map_err(|e| VerifyError::Answer(format!("GET {path} cannot be made: {e}")))?;
    let listed: Value = match client.request(req).await {
        Ok(l) => l,
        // No PolicyReport API: nothing was written before.
        Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Vec::new()),
        Err(source) => {
            return Err(VerifyError::Api {
                what: "listing KubeBid's PolicyReports".into(),
                source,
            });
        }
    };
    let gone: Vec<String> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["metadata"]["name"] == REPORT_NAME)
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .filter(|ns| !kept.contains(ns))
        .map(str::to_owned)
        .collect();
    Ok(reports(&[], &gone, now)
        .into_iter()
        .filter(|r| r["kind"] == "PolicyReport")
        .collect())
}

/// Everything a scan found: the objects judged, what could not be read as an object, and the reports.
pub struct Scan {
    pub judged: Vec<Judged>,
    pub unreadable: Vec<String>,
    pub reports: Vec<Value>,
}

/// Lists every target (`progress` told each kind as it is listed), judges it and builds the reports:
/// the whole cluster, or with `namespace` that namespace alone (its PolicyReport, no ClusterPolicyReport).
///
/// # Errors
/// A list the API server refused.
pub async fn scan(
    client: &kube::Client,
    policy: &PolicySet,
    namespace: Option<&str>,
    now: jiff::Timestamp,
    progress: &(dyn Fn(&Target) + Sync),
) -> Result<Scan, VerifyError> {
    let mut objects = Vec::new();
    for t in targets() {
        progress(&t);
        objects.extend(list(client, &t, namespace).await?);
    }
    let (judged, unreadable) = judge(policy, &objects, now);
    // Each judged Namespace gets a report, empty if nothing in it is judged.
    let mut namespaces: Vec<String> = judged
        .iter()
        .filter(|j| j.kind == "Namespace" && !j.verdicts.is_empty())
        .map(|j| j.name.clone())
        .collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    let mut reports = reports(&judged, &namespaces, now);
    if namespace.is_some() {
        reports.retain(|r| r["metadata"]["namespace"].as_str() == namespace);
    }
    Ok(Scan {
        judged,
        unreadable,
        reports,
    })
}
