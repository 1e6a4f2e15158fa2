//! One admission review, sans I/O: the body of the API server's request in, the body of the answer out.
//!
//! Fails closed: an object that cannot be decoded is denied with the reason, and nothing here answers
//! "allowed" on an internal error. Only a body that is not an `admission.k8s.io/v1` `AdmissionReview` at all
//! gets an error instead of a review (HTTP 400), since there is no request UID to answer.

use std::collections::HashMap;

use jiff::Timestamp;
use kube::core::DynamicObject;
use kube::core::admission::{
    AdmissionRequest, AdmissionResponse, AdmissionReview, Operation as KubeOperation,
};
use kubebid_model::{Action, Object};
use kubebid_policy::{Decision, Operation, PolicySet, Request};
use serde_json::Value;

use kubebid_policy::mutate;

/// Which endpoint the review came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/validate`: allow or deny.
    Validate,
    /// `/mutate`: fill in secure defaults (JSON Patch).
    Mutate,
}

impl Endpoint {
    /// Label value for metrics.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// A body that is not an AdmissionReview.
#[derive(Debug, thiserror::Error)]
pub enum BadReview {
    #[error("the body is not an admission.k8s.io/v1 AdmissionReview: {0}")]
    Malformed(String),
    #[error("the AdmissionReview has apiVersion {0:?}; KubeBid serves admission.k8s.io/v1")]
    Version(String),
    #[error("the AdmissionReview carries no request")]
    NoRequest,
}

/// The outcome of one review, with what metrics and logs need.
#[derive(Debug)]
pub struct Reviewed {
    /// The AdmissionReview to send back.
    pub body: Vec<u8>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: &'static str,
    /// Kind of the reviewed object.
    pub kind: String,
    /// `allowed`, `denied`, `warned` or `patched`.
    pub verdict: &'static str,
    /// Rule IDs of the findings.
    pub rules: Vec<&'static str>,
    /// The request's UID, for logs.
    pub uid: String,
}

fn operation(op: &KubeOperation) -> (Operation, &'static str) {
    match op {
        KubeOperation::Create => (Operation::Create, "CREATE"),
        KubeOperation::Update => (Operation::Update, "UPDATE"),
        KubeOperation::Delete => (Operation::Delete, "DELETE"),
        KubeOperation::Connect => (Operation::Connect, "CONNECT"),
    }
}

/// Reviews one request body.
///
/// # Errors
/// [`BadReview`] when the body is not an AdmissionReview with a request (answer HTTP 400).
pub fn review(
    policy: &PolicySet,
    endpoint: Endpoint,
    body: &[u8],
    now: Timestamp,
) -> Result<Reviewed, BadReview> {
    let Parsed {
        req,
        object,
        old_object,
    } = parse(body)?;
    let (op, op_name) = operation(&req.operation);
    let kind = req.kind.kind.clone();
    let uid = req.uid.clone();
    let response = AdmissionResponse::from(&req);
    let (response, verdict, rules) = decide(
        policy,
        endpoint,
        &req,
        (object, old_object),
        op,
        now,
        response,
    );
    let body = encode(response).map_err(|e| BadReview::Malformed(e.to_string()))?;
    Ok(Reviewed {
        body,
        operation: op_name,
        kind,
        verdict,
        rules,
        uid,
    })
}

/// A parsed request: kube-core's envelope (UID, kind, operation, user...) and the objects as JSON, taken
/// out before the envelope is parsed so that they are decoded once, straight into typed objects.
struct Parsed {
    req: AdmissionRequest<DynamicObject>,
    object: Option<Value>,
    old_object: Option<Value>,
}

/// Reads an `admission.k8s.io/v1` `AdmissionReview` with a request.
fn parse(body: &[u8]) -> Result<Parsed, BadReview> {
    let mut raw: Value =
        serde_json::from_slice(body).map_err(|e| BadReview::Malformed(e.to_string()))?;
    match raw.get("apiVersion").and_then(Value::as_str) {
        Some("admission.k8s.io/v1") => {}
        Some(v) => return Err(BadReview::Version(v.to_owned())),
        None => return Err(BadReview::Malformed("no apiVersion".into())),
    }
    if raw.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err(BadReview::Malformed("kind is not AdmissionReview".into()));
    }
    let Some(Value::Object(request)) = raw.get_mut("request") else {
        return Err(BadReview::NoRequest);
    };
    let object = request.remove("object").filter(|v| !v.is_null());
    let old_object = request.remove("oldObject").filter(|v| !v.is_null());
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(raw).map_err(|e| BadReview::Malformed(e.to_string()))?;
    let req = review.try_into().map_err(|_| BadReview::NoRequest)?;
    Ok(Parsed {
        req,
        object,
        old_object,
    })
}

/// Answers a review while no policy is loaded (cluster caches not synced): denied, fail closed.
///
/// # Errors
/// [`BadReview`] when the body is not an `AdmissionReview` with a request.
pub fn review_unready(body: &[u8]) -> Result<Reviewed, BadReview> {
    let Parsed { req, .. } = parse(body)?;
    let (_, op_name) = operation(&req.operation);
    let response = deny(
        AdmissionResponse::from(&req),
        "KubeBid is not ready yet (policy not loaded); try again".into(),
    );
    let body = encode(response).map_err(|e| BadReview::Malformed(e.to_string()))?;
    Ok(Reviewed {
        body,
        operation: op_name,
        kind: req.kind.kind.clone(),
        verdict: "denied",
        rules: Vec::new(),
        uid: req.uid,
    })
}

/// Serialises the answer. kube-core writes `response.patch` as a JSON array of bytes, but the API server
/// decodes the field as Go `[]byte`, which JSON carries as base64 (kube-rs/kube#1781); re-encode it.
fn encode(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine as _;
    let patch = response.patch.clone();
    let mut review = serde_json::to_value(response.into_review())?;
    if let Some(bytes) = patch {
        review["response"]["patch"] =
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    serde_json::to_vec(&review)
}

/// A denial with the status an API server expects from a webhook (403 Forbidden).
fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut r = response.deny(message);
    r.result.code = 403;
    r.result.reason = "Forbidden".into();
    r
}

fn decide(
    policy: &PolicySet,
    endpoint: Endpoint,
    req: &AdmissionRequest<DynamicObject>,
    objects: (Option<Value>, Option<Value>),
    op: Operation,
    now: Timestamp,
    response: AdmissionResponse,
) -> (AdmissionResponse, &'static str, Vec<&'static str>) {
    // The JSON is kept only where it is needed again: for the mutation, and to check a Tenant.
    let is_tenant = req.kind.group == "kubebid.io" && req.kind.kind == "Tenant";
    let keep_json = endpoint == Endpoint::Mutate || is_tenant;
    let decode = |v: Option<Value>, what: &str| -> Result<Option<(Object, Value)>, String> {
        let Some(v) = v else { return Ok(None) };
        let json = if keep_json { v.clone() } else { Value::Null };
        let object = Object::from_value(v)
            .map_err(|e| format!("cannot decode {what} {}: {e}", req.kind.kind))?;
        Ok(Some((object, json)))
    };
    let (new, old) = match (
        decode(objects.0, "the object"),
        decode(objects.1, "the old object"),
    ) {
        (Ok(n), Ok(o)) => (n, o),
        (Err(e), _) | (_, Err(e)) => {
            return (
                deny(response, format!("KubeBid: {e}")),
                "denied",
                Vec::new(),
            );
        }
    };
    // DELETE carries only the old object; judge the object being deleted.
    let (subject, previous) = match (new, old) {
        (Some(n), o) => (n, o),
        (None, Some(o)) if op == Operation::Delete => (o, None),
        (None, Some(o)) => (o, None),
        (None, None) => {
            return (
                deny(
                    response,
                    "KubeBid: the request carries no object to judge".into(),
                ),
                "denied",
                Vec::new(),
            );
        }
    };
    // The API server sends the object in the kind and version it names in the request; an object that
    // says otherwise would be judged as something it is not.
    for object in std::iter::once(&subject.0).chain(previous.as_ref().map(|p| &p.0)) {
        if let Some(why) = kind_mismatch(&req.kind, object) {
            return (
                deny(response, format!("KubeBid: {why}")),
                "denied",
                Vec::new(),
            );
        }
    }
    let request = Request {
        object: &subject.0,
        old_object: previous.as_ref().map(|p| &p.0),
        operation: op,
        namespace: req.namespace.as_deref(),
        now: Some(now),
        subresource: req.sub_resource.as_deref(),
        name: Some(req.name.as_str()),
        user: Some(req.user_info.username.as_deref().unwrap_or_default()),
        groups: req.user_info.groups.as_deref().unwrap_or_default(),
    };
    if endpoint == Endpoint::Validate
        && is_tenant
        && matches!(op, Operation::Create | Operation::Update)
    {
        let problems = tenant_problems(policy, &subject.1);
        let verdict = if problems.is_empty() {
            "allowed"
        } else {
            "denied"
        };
        let response = if problems.is_empty() {
            response
        } else {
            deny(
                response,
                format!("KubeBid refused the Tenant:\n{}", problems.join("\n")),
            )
        };
        return (response, verdict, Vec::new());
    }
    let decision = policy.evaluate(&request);
    let rules: Vec<&'static str> = decision.findings.iter().map(|f| f.rule.id).collect();
    match endpoint {
        Endpoint::Validate => {
            // DELETE requests carry the name in the request; a CREATE with generateName only in the object.
            let name = if req.name.is_empty() {
                subject.0.name()
            } else {
                req.name.as_str()
            };
            let (response, verdict) =
                validation_response(response, &decision, &req.kind.kind, name);
            (response, verdict, rules)
        }
        Endpoint::Mutate => mutation_response(policy, req, op, &subject.1, response, rules),
    }
}

/// How an object's `apiVersion` and `kind` differ from the kind the request names, if they do.
fn kind_mismatch(requested: &kube::core::GroupVersionKind, object: &Object) -> Option<String> {
    let (group, version) = object
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", object.api_version.as_str()));
    (object.kind != requested.kind || group != requested.group || version != requested.version)
        .then(|| {
            let named = if requested.group.is_empty() {
                requested.version.clone()
            } else {
                format!("{}/{}", requested.group, requested.version)
            };
            format!(
                "the request is for {named} {} but the object is {} {}",
                requested.kind, object.api_version, object.kind
            )
        })
}

/// Why a Tenant cannot be admitted: schema and value errors, reserved namespaces, and claims on other
/// tenants' namespaces, domains or owners, as the tenancy model (and so the operator) sees them.
fn tenant_problems(policy: &PolicySet, object: &Value) -> Vec<String> {
    let tenant: kubebid_model::Tenant = match serde_path_to_error::deserialize(object.clone()) {
        Ok(t) => t,
        Err(e) => {
            return vec![format!(
                "{}: {}",
                kubebid_model::load::path_of(e.path()),
                e.into_inner()
            )];
        }
    };
    let name = tenant.metadata.name.clone().unwrap_or_default();
    policy
        .tenant_conflicts(&name, &tenant.spec)
        .into_iter()
        .map(|(f, m)| format!("{f}: {m}"))
        .collect()
}

fn validation_response(
    mut response: AdmissionResponse,
    decision: &Decision,
    kind: &str,
    name: &str,
) -> (AdmissionResponse, &'static str) {
    let mut warnings = Vec::new();
    let mut audit: HashMap<String, String> = HashMap::new();
    let mut denials = Vec::new();
    for f in &decision.findings {
        let line = if f.path.is_empty() {
            format!("[{}] {}", f.rule.id, f.message)
        } else {
            format!("[{}] {}: {}", f.rule.id, f.path, f.message)
        };
        if let Some(e) = &f.exception {
            append(
                &mut audit,
                &format!("excepted-{}", annotation_key(f.rule.id)),
                &format!("{line} (lifted by PolicyException {e})"),
            );
            continue;
        }
        match f.action {
            Action::Enforce => denials.push(format!("{line} (fix: {})", f.rule.remediation)),
            Action::Warn => warnings.push(line),
            Action::Audit => append(&mut audit, &annotation_key(f.rule.id), &line),
            Action::Off => {}
        }
    }
    response.audit_annotations = audit;
    let verdict = if !denials.is_empty() {
        let count = denials.len();
        response = deny(
            response,
            format!(
                "KubeBid denied {kind} {name:?}: {count} {}:\n{}",
                if count == 1 {
                    "violation"
                } else {
                    "violations"
                },
                denials.join("\n")
            ),
        );
        "denied"
    } else if warnings.is_empty() {
        "allowed"
    } else {
        "warned"
    };
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    (response, verdict)
}

/// Audit annotation keys must be qualified names: `pss/privileged` becomes `pss-privileged`.
fn annotation_key(rule: &str) -> String {
    rule.replace('/', "-")
}

fn append(map: &mut HashMap<String, String>, key: &str, value: &str) {
    map.entry(key.to_owned())
        .and_modify(|v| {
            v.push_str("; ");
            v.push_str(value);
        })
        .or_insert_with(|| value.to_owned());
}

fn mutation_response(
    policy: &PolicySet,
    req: &AdmissionRequest<DynamicObject>,
    op: Operation,
    original: &Value,
    response: AdmissionResponse,
    rules: Vec<&'static str>,
) -> (AdmissionResponse, &'static str, Vec<&'static str>) {
    // A pod's spec is immutable after creation, but for the ephemeral containers added through their
    // subresource; controllers' templates are not.
    let ephemeral =
        req.kind.kind == "Pod" && req.sub_resource.as_deref() == Some("ephemeralcontainers");
    let mutable = match op {
        Operation::Create => true,
        Operation::Update => req.kind.kind != "Pod" || ephemeral,
        Operation::Delete | Operation::Connect => false,
    };
    let reach = if ephemeral {
        mutate::Reach::EphemeralContainers
    } else {
        mutate::Reach::Whole
    };
    let Some(tenant) = policy
        .tenant_for(req.namespace.as_deref())
        .filter(|_| mutable)
    else {
        return (response, "allowed", rules);
    };
    let mut mutated = original.clone();
    if !mutate::apply_within(
        &mut mutated,
        &tenant.mutate,
        tenant.default_runtime_class.as_deref(),
        reach,
    ) {
        return (response, "allowed", rules);
    }
    let patch = json_patch::diff(original, &mutated);
    match response.clone().with_patch(patch) {
        Ok(r) => (r, "patched", rules),
        // Serialising a patch of JSON values cannot fail; if it ever does, deny rather than admit unmutated.
        Err(e) => (
            deny(
                response,
                format!("KubeBid: cannot encode the mutation: {e}"),
            ),
            "denied",
            rules,
        ),
    }
}
