//! One admission review, sans I/O: the body of the API server's request in, the body of the answer out.
//!
//! The body is decoded once, straight from its bytes: the envelope (UID, kind, operation, user) into a
//! small borrowed struct, the objects into the typed objects the engine reads. A JSON value of the
//! object is built only where it is needed again (a mutation to diff, a Tenant to check), and the answer
//! is written directly, without an intermediate document.
//!
//! Fails closed: an object that cannot be decoded is denied with the reason, and nothing here answers
//! "allowed" on an internal error. Only a body that is not an `admission.k8s.io/v1` `AdmissionReview` at all
//! gets an error instead of a review (HTTP 400), since there is no request UID to answer.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use kubebid_model::{Action, Object};
use kubebid_policy::{Decision, Operation, PolicySet, Request};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

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

/// What a review decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Admitted as it is.
    Allowed,
    /// Refused.
    Denied,
    /// Admitted, with warnings to the client.
    Warned,
    /// Admitted with a mutation.
    Patched,
}

impl Verdict {
    /// Label value for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Warned => "warned",
            Verdict::Patched => "patched",
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
    /// The request's operation.
    pub operation: Operation,
    /// Kind of the reviewed object.
    pub kind: String,
    /// What was decided.
    pub verdict: Verdict,
    /// Rule IDs of the findings.
    pub rules: Vec<&'static str>,
    /// The request's UID, for logs.
    pub uid: String,
}

/// The operation's name as the API server spells it.
#[must_use]
pub fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The envelope, as the API server sends it; the objects stay raw JSON text, borrowed from the body.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<AdmissionRequest<'a>>,
}

/// Only the parts of an envelope that say what it is, to name the error of one that does not decode.
#[derive(Deserialize)]
struct EnvelopeType<'a> {
    #[serde(rename = "apiVersion", borrow, default)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    request: Option<serde::de::IgnoredAny>,
}

/// The request's kind.
#[derive(Deserialize, Debug)]
pub struct GroupVersionKind {
    #[serde(default)]
    group: String,
    version: String,
    kind: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum OperationIn {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Deserialize, Default)]
struct UserInfo {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    groups: Option<Vec<String>>,
}

/// The fields of an `AdmissionRequest` KubeBid reads. `resource` is required, as the API server always
/// sends it; the rest of the request (options, dryRun, requestKind...) is not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdmissionRequest<'a> {
    uid: String,
    kind: GroupVersionKind,
    #[allow(dead_code)] // required for the shape, not read
    resource: serde::de::IgnoredAny,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: OperationIn,
    #[serde(default)]
    user_info: UserInfo,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    old_object: Option<&'a RawValue>,
}

impl AdmissionRequest<'_> {
    fn operation(&self) -> Operation {
        match self.operation {
            OperationIn::Create => Operation::Create,
            OperationIn::Update => Operation::Update,
            OperationIn::Delete => Operation::Delete,
            OperationIn::Connect => Operation::Connect,
        }
    }
}

/// A raw object, unless it is JSON `null`.
fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// Reads an `admission.k8s.io/v1` `AdmissionReview` with a request.
fn parse(body: &[u8]) -> Result<AdmissionRequest<'_>, BadReview> {
    let check = |api_version: Option<&str>, kind: Option<&str>| -> Result<(), BadReview> {
        match api_version {
            Some("admission.k8s.io/v1") => {}
            Some(v) => return Err(BadReview::Version(v.to_owned())),
            None => return Err(BadReview::Malformed("no apiVersion".into())),
        }
        if kind != Some("AdmissionReview") {
            return Err(BadReview::Malformed("kind is not AdmissionReview".into()));
        }
        Ok(())
    };
    match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(envelope) => {
            check(envelope.api_version.as_deref(), envelope.kind.as_deref())?;
            envelope.request.ok_or(BadReview::NoRequest)
        }
        Err(e) => {
            // Name what the body is, if it says, before how its request is broken.
            if let Ok(t) = serde_json::from_slice::<EnvelopeType<'_>>(body) {
                check(t.api_version.as_deref(), t.kind.as_deref())?;
                if t.request.is_none() {
                    return Err(BadReview::NoRequest);
                }
            }
            Err(BadReview::Malformed(e.to_string()))
        }
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
    let req = parse(body)?;
    let answer = decide(policy, endpoint, &req, now);
    Ok(finish(&req, &answer))
}

/// Answers a review while no policy is loaded (cluster caches not synced): denied, fail closed.
///
/// # Errors
/// [`BadReview`] when the body is not an `AdmissionReview` with a request.
pub fn review_unready(body: &[u8]) -> Result<Reviewed, BadReview> {
    let req = parse(body)?;
    let answer = Answer::deny(
        "KubeBid is not ready yet (policy not loaded); try again".into(),
        Vec::new(),
    );
    Ok(finish(&req, &answer))
}

/// What a review answers, before it is written.
struct Answer {
    verdict: Verdict,
    /// Why, for a denial.
    message: Option<String>,
    /// The JSON Patch, for a mutation.
    patch: Option<json_patch::Patch>,
    warnings: Vec<String>,
    audit: BTreeMap<String, String>,
    rules: Vec<&'static str>,
}

impl Answer {
    fn allow(rules: Vec<&'static str>) -> Self {
        Self {
            verdict: Verdict::Allowed,
            message: None,
            patch: None,
            warnings: Vec::new(),
            audit: BTreeMap::new(),
            rules,
        }
    }

    fn deny(message: String, rules: Vec<&'static str>) -> Self {
        Self {
            verdict: Verdict::Denied,
            message: Some(message),
            ..Self::allow(rules)
        }
    }
}

/// The answer as the API server reads it: `admission.k8s.io/v1` `AdmissionReview` with a response.
#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: StatusOut<'a>,
    /// The JSON Patch, base64: the API server decodes the field as Go `[]byte`.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// A denial carries the status an API server expects from a webhook (403 Forbidden); an admission an
/// empty one.
#[derive(Serialize, Default)]
struct StatusOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

fn finish(req: &AdmissionRequest<'_>, answer: &Answer) -> Reviewed {
    use base64::Engine as _;
    let patch = answer.patch.as_ref().map(|p| {
        // Serialising a patch of JSON values into memory cannot fail.
        let bytes = serde_json::to_vec(p).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    });
    let out = ReviewOut {
        api_version: "admission.k8s.io/v1",
        kind: "AdmissionReview",
        response: ResponseOut {
            uid: &req.uid,
            allowed: answer.verdict != Verdict::Denied,
            status: match &answer.message {
                Some(m) => StatusOut {
                    code: Some(403),
                    message: Some(m),
                    reason: Some("Forbidden"),
                },
                None => StatusOut::default(),
            },
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            audit_annotations: &answer.audit,
            warnings: &answer.warnings,
        },
    };
    // Writing plain structs of strings into memory cannot fail; if it ever did, the empty body is
    // refused by the API server, which then applies the webhook's failure policy (Fail).
    let mut body = Vec::with_capacity(256 + answer.message.as_ref().map_or(0, String::len));
    if serde_json::to_writer(&mut body, &out).is_err() {
        body.clear();
    }
    Reviewed {
        body,
        operation: req.operation(),
        kind: req.kind.kind.clone(),
        verdict: answer.verdict,
        rules: answer.rules.clone(),
        uid: req.uid.clone(),
    }
}

fn decode(raw: Option<&RawValue>, what: &str, kind: &str) -> Result<Option<Object>, String> {
    present(raw)
        .map(|r| {
            Object::from_json(r.get()).map_err(|e| format!("cannot decode {what} {kind}: {e}"))
        })
        .transpose()
}

fn decide(
    policy: &PolicySet,
    endpoint: Endpoint,
    req: &AdmissionRequest<'_>,
    now: Timestamp,
) -> Answer {
    let op = req.operation();
    let kind = &req.kind.kind;
    let is_tenant = req.kind.group == "kubebid.io" && kind == "Tenant";
    let (new, old) = match (
        decode(req.object, "the object", kind),
        decode(req.old_object, "the old object", kind),
    ) {
        (Ok(n), Ok(o)) => (n, o),
        (Err(e), _) | (_, Err(e)) => return Answer::deny(format!("KubeBid: {e}"), Vec::new()),
    };
    // DELETE carries only the old object; judge the object being deleted. The raw text goes with the
    // object it is the text of.
    let (subject, subject_raw, previous) = match (new, old) {
        (Some(n), o) => (n, present(req.object), o),
        (None, Some(o)) => (o, present(req.old_object), None),
        (None, None) => {
            return Answer::deny(
                "KubeBid: the request carries no object to judge".into(),
                Vec::new(),
            );
        }
    };
    // The API server sends the object in the kind and version it names in the request; an object that
    // says otherwise would be judged as something it is not.
    for object in std::iter::once(&subject).chain(previous.as_ref()) {
        if let Some(why) = kind_mismatch(&req.kind, object) {
            return Answer::deny(format!("KubeBid: {why}"), Vec::new());
        }
    }
    let request = Request {
        object: &subject,
        old_object: previous.as_ref(),
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
        let problems = subject_raw
            .map(|raw| tenant_problems(policy, raw.get()))
            .unwrap_or_default();
        return if problems.is_empty() {
            Answer::allow(Vec::new())
        } else {
            Answer::deny(
                format!("KubeBid refused the Tenant:\n{}", problems.join("\n")),
                Vec::new(),
            )
        };
    }
    let decision = policy.evaluate(&request);
    let rules: Vec<&'static str> = decision.findings.iter().map(|f| f.rule.id).collect();
    match endpoint {
        Endpoint::Validate => {
            // DELETE requests carry the name in the request; a CREATE with generateName only in the object.
            let name = if req.name.is_empty() {
                subject.name()
            } else {
                req.name.as_str()
            };
            validation_answer(&decision, kind, name, rules)
        }
        Endpoint::Mutate => mutation_answer(policy, req, op, subject_raw, rules),
    }
}

/// How an object's `apiVersion` and `kind` differ from the kind the request names, if they do.
fn kind_mismatch(requested: &GroupVersionKind, object: &Object) -> Option<String> {
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
fn tenant_problems(policy: &PolicySet, object: &str) -> Vec<String> {
    let mut de = serde_json::Deserializer::from_str(object);
    let tenant: kubebid_model::Tenant = match serde_path_to_error::deserialize(&mut de) {
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

fn validation_answer(
    decision: &Decision,
    kind: &str,
    name: &str,
    rules: Vec<&'static str>,
) -> Answer {
    let mut warnings = Vec::new();
    let mut audit: BTreeMap<String, String> = BTreeMap::new();
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
    let mut answer = if denials.is_empty() {
        Answer::allow(rules)
    } else {
        let count = denials.len();
        Answer::deny(
            format!(
                "KubeBid denied {kind} {name:?}: {count} {}:\n{}",
                if count == 1 {
                    "violation"
                } else {
                    "violations"
                },
                denials.join("\n")
            ),
            rules,
        )
    };
    if answer.verdict == Verdict::Allowed && !warnings.is_empty() {
        answer.verdict = Verdict::Warned;
    }
    answer.warnings = warnings;
    answer.audit = audit;
    answer
}

/// Audit annotation keys must be qualified names: `pss/privileged` becomes `pss-privileged`.
fn annotation_key(rule: &str) -> String {
    rule.replace('/', "-")
}

fn append(map: &mut BTreeMap<String, String>, key: &str, value: &str) {
    map.entry(key.to_owned())
        .and_modify(|v| {
            v.push_str("; ");
            v.push_str(value);
        })
        .or_insert_with(|| value.to_owned());
}

fn mutation_answer(
    policy: &PolicySet,
    req: &AdmissionRequest<'_>,
    op: Operation,
    raw: Option<&RawValue>,
    rules: Vec<&'static str>,
) -> Answer {
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
        return Answer::allow(rules);
    };
    // Only now, with a tenant whose defaults may apply, is the object needed as a JSON value.
    let Some(original) = raw.and_then(|r| serde_json::from_str::<Value>(r.get()).ok()) else {
        return Answer::allow(rules);
    };
    let mut mutated = original.clone();
    if !mutate::apply_within(
        &mut mutated,
        &tenant.mutate,
        tenant.default_runtime_class.as_deref(),
        reach,
    ) {
        return Answer::allow(rules);
    }
    let mut answer = Answer::allow(rules);
    answer.verdict = Verdict::Patched;
    answer.patch = Some(json_patch::diff(&original, &mutated));
    answer
}
