//! The `k8s_audit` source: `ka.*` and `jevt.*` fields over an `audit.k8s.io/v1` Event, plus KubeBid's
//! `kubebid.*` fields supplied by the caller for each event.
//!
//! Semantics follow Falco's k8saudit plugin: events without `auditID` have no `ka.*` fields; non-string
//! JSON values are compared as their JSON text (`true`, `200`, objects); list fields yield one value per
//! element. Deliberate differences, each more useful than the original: `ka.sourceips` reads the event's
//! `sourceIPs`; `ka.req.binding.subject.has_name[n]` really checks the subjects; `add_capabilities` yields
//! one value per capability; `eff_run_as_user`/`eff_run_as_group` fall back to the pod's
//! `securityContext`; `image.repository` keeps a registry port (`reg:5000/app:1` → `reg:5000/app`).

use serde_json::Value;

use crate::source::{FieldError, Source, Val, Values};

/// Who made a request, as KubeBid's tenancy model classifies the requesting identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// A platform (cluster operator or control-plane) identity.
    Platform,
    /// An identity belonging to a tenant.
    Tenant,
    /// An identity exempt from tenancy checks (e.g. break-glass).
    Exempt,
    /// Not classified.
    #[default]
    Unknown,
}

impl ActorKind {
    /// The value of `kubebid.actor.kind`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Platform => "platform",
            ActorKind::Tenant => "tenant",
            ActorKind::Exempt => "exempt",
            ActorKind::Unknown => "unknown",
        }
    }
}

/// KubeBid's attribution of one audit event, computed by the audit sink from the tenancy model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KubeBidContext<'e> {
    /// `kubebid.tenant`: the tenant owning the request's namespace, or empty.
    pub tenant: &'e str,
    /// `kubebid.actor.tenant`: the tenant of the requesting user (from its groups), or empty.
    pub actor_tenant: &'e str,
    /// `kubebid.actor.kind`.
    pub actor_kind: ActorKind,
    /// `kubebid.denied`: whether KubeBid's admission denied the request.
    pub denied: bool,
}

/// One audit event with KubeBid's context: the event type of [`K8sAudit`].
#[derive(Clone, Copy, Debug)]
pub struct AuditEvent<'e> {
    /// The `audit.k8s.io/v1` Event as JSON.
    pub json: &'e Value,
    /// KubeBid's fields.
    pub context: KubeBidContext<'e>,
}

impl<'e> AuditEvent<'e> {
    /// An event with an empty context (no tenant, unknown actor, not denied).
    #[must_use]
    pub fn new(json: &'e Value) -> Self {
        Self {
            json,
            context: KubeBidContext::default(),
        }
    }

    /// The same event with `context`.
    #[must_use]
    pub fn with_context(self, context: KubeBidContext<'e>) -> Self {
        Self { context, ..self }
    }
}

/// Which container list of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CList {
    Containers,
    Init,
    Ephemeral,
}

impl CList {
    fn key(self) -> &'static str {
        match self {
            CList::Containers => "containers",
            CList::Init => "initContainers",
            CList::Ephemeral => "ephemeralContainers",
        }
    }
}

/// Per-container facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum CWhat {
    Name,
    Image,
    Repository,
    Command,
    Args,
    SecCtx(&'static str),
    Effective(&'static str),
    AddCapabilities,
    HostPort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kb {
    Tenant,
    ActorTenant,
    ActorKind,
    Denied,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum F {
    Path(&'static [&'static str]),
    PathList(&'static [&'static str]),
    UriParam(Box<str>),
    TargetPodName,
    Subjects(&'static str, bool),
    HasName(Box<str>),
    Container(CList, CWhat, Option<usize>),
    FirstContainer(CWhat),
    AnyPrivileged,
    RoleRules(&'static str, Option<usize>),
    ServicePorts(Option<usize>),
    HostPaths(Option<usize>),
    HostPathMatch(Box<str>),
    FlexDrivers(Option<usize>),
    VolumeTypes(Option<usize>),
    SourceIps(Option<usize>),
    Pointer(Box<str>),
    Obj,
    RawTime,
    Time,
    KubeBid(Kb),
}

/// A resolved `k8s_audit` field.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AuditField(F);

/// The `k8s_audit` source.
#[derive(Clone, Copy, Debug, Default)]
pub struct K8sAudit;

impl K8sAudit {
    /// The source.
    #[must_use]
    pub fn new() -> Self {
        K8sAudit
    }
}

fn index_arg(arg: Option<&str>) -> Result<Option<usize>, FieldError> {
    match arg {
        None => Ok(None),
        Some(a) => a
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| FieldError::BadArg(format!("{a:?} is not an index"))),
    }
}

fn no_arg(arg: Option<&str>, f: F) -> Result<F, FieldError> {
    match arg {
        None => Ok(f),
        Some(a) => Err(FieldError::BadArg(format!(
            "the field takes no argument, got {a:?}"
        ))),
    }
}

fn needs_arg(arg: Option<&str>) -> Result<Box<str>, FieldError> {
    match arg {
        Some(a) if !a.is_empty() => Ok(a.into()),
        _ => Err(FieldError::ArgRequired),
    }
}

fn container_what(rest: &str) -> Option<CWhat> {
    Some(match rest {
        "name" => CWhat::Name,
        "image" => CWhat::Image,
        "image.repository" => CWhat::Repository,
        "command" => CWhat::Command,
        "args" => CWhat::Args,
        "privileged" => CWhat::SecCtx("privileged"),
        "allow_privilege_escalation" => CWhat::SecCtx("allowPrivilegeEscalation"),
        "read_only_fs" => CWhat::SecCtx("readOnlyRootFilesystem"),
        "run_as_user" => CWhat::SecCtx("runAsUser"),
        "run_as_group" => CWhat::SecCtx("runAsGroup"),
        "proc_mount" => CWhat::SecCtx("procMount"),
        "eff_run_as_user" => CWhat::Effective("runAsUser"),
        "eff_run_as_group" => CWhat::Effective("runAsGroup"),
        "add_capabilities" => CWhat::AddCapabilities,
        "host_port" => CWhat::HostPort,
        _ => return None,
    })
}

fn resolve(name: &str, arg: Option<&str>) -> Result<F, FieldError> {
    for (list, prefix) in [
        (CList::Containers, "ka.req.pod.containers."),
        (CList::Init, "ka.req.pod.initContainers."),
        (CList::Ephemeral, "ka.req.pod.ephemeralContainers."),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let what = container_what(rest).ok_or(FieldError::Unknown)?;
            if list == CList::Ephemeral && what == CWhat::HostPort {
                return Err(FieldError::Unknown);
            }
            return Ok(F::Container(list, what, index_arg(arg)?));
        }
    }
    let path = |p: &'static [&'static str]| no_arg(arg, F::Path(p));
    match name {
        "ka.auditid" => path(&["auditID"]),
        "ka.stage" => path(&["stage"]),
        "ka.auth.decision" => path(&["annotations", "authorization.k8s.io/decision"]),
        "ka.auth.reason" => path(&["annotations", "authorization.k8s.io/reason"]),
        "ka.validations.admission.policy.failure" => path(&[
            "annotations",
            "validation.policy.admission.k8s.io/validation_failure",
        ]),
        "ka.security.pod.violations" => {
            path(&["annotations", "pod-security.kubernetes.io/audit-violations"])
        }
        "ka.user.name" => path(&["user", "username"]),
        "ka.user.groups" => no_arg(arg, F::PathList(&["user", "groups"])),
        "ka.impuser.name" => path(&["impersonatedUser", "username"]),
        "ka.verb" => path(&["verb"]),
        "ka.uri" => path(&["requestURI"]),
        "ka.uri.param" => Ok(F::UriParam(needs_arg(arg)?)),
        "ka.target.name" | "ka.req.configmap.name" => path(&["objectRef", "name"]),
        "ka.target.namespace" => path(&["objectRef", "namespace"]),
        "ka.target.resource" => path(&["objectRef", "resource"]),
        "ka.target.subresource" => path(&["objectRef", "subresource"]),
        "ka.target.pod.name" => no_arg(arg, F::TargetPodName),
        "ka.req.binding.subjects" => no_arg(arg, F::PathList(&["requestObject", "subjects"])),
        "ka.req.binding.subjects.user_names" => no_arg(arg, F::Subjects("User", false)),
        "ka.req.binding.subjects.serviceaccount_names" => {
            no_arg(arg, F::Subjects("ServiceAccount", false))
        }
        "ka.req.binding.subjects.serviceaccount_ns_names" => {
            no_arg(arg, F::Subjects("ServiceAccount", true))
        }
        "ka.req.binding.subjects.group_names" => no_arg(arg, F::Subjects("Group", false)),
        "ka.req.binding.role" => path(&["requestObject", "roleRef", "name"]),
        "ka.req.binding.subject.has_name" => Ok(F::HasName(needs_arg(arg)?)),
        "ka.req.configmap.obj" => path(&["requestObject", "data"]),
        "ka.req.container.image" => no_arg(arg, F::FirstContainer(CWhat::Image)),
        "ka.req.container.image.repository" => no_arg(arg, F::FirstContainer(CWhat::Repository)),
        "ka.req.container.privileged" => no_arg(arg, F::AnyPrivileged),
        "ka.req.pod.host_ipc" => path(&["requestObject", "spec", "hostIPC"]),
        "ka.req.pod.host_network" | "ka.req.container.host_network" => {
            path(&["requestObject", "spec", "hostNetwork"])
        }
        "ka.req.pod.host_pid" => path(&["requestObject", "spec", "hostPID"]),
        "ka.req.pod.run_as_user" => {
            path(&["requestObject", "spec", "securityContext", "runAsUser"])
        }
        "ka.req.pod.run_as_group" => {
            path(&["requestObject", "spec", "securityContext", "runAsGroup"])
        }
        "ka.req.pod.fs_group" => path(&["requestObject", "spec", "securityContext", "fsGroup"]),
        "ka.req.pod.supplemental_groups" => no_arg(
            arg,
            F::PathList(&[
                "requestObject",
                "spec",
                "securityContext",
                "supplementalGroups",
            ]),
        ),
        "ka.req.sec_ctx.run_as_user"
        | "ka.req.sec_ctx.run_as_group"
        | "ka.req.sec_ctx.fs_group" => Err(FieldError::Unknown),
        "ka.req.role.rules" => no_arg(arg, F::PathList(&["requestObject", "rules"])),
        "ka.req.role.rules.apiGroups" => Ok(F::RoleRules("apiGroups", index_arg(arg)?)),
        "ka.req.role.rules.nonResourceURLs" => Ok(F::RoleRules("nonResourceURLs", index_arg(arg)?)),
        "ka.req.role.rules.verbs" => Ok(F::RoleRules("verbs", index_arg(arg)?)),
        "ka.req.role.rules.resources" => Ok(F::RoleRules("resources", index_arg(arg)?)),
        "ka.req.service.type" => path(&["requestObject", "spec", "type"]),
        "ka.req.service.ports" => Ok(F::ServicePorts(index_arg(arg)?)),
        "ka.req.pod.volumes.hostpath" => Ok(F::HostPaths(index_arg(arg)?)),
        "ka.req.volume.hostpath" => Ok(F::HostPathMatch(needs_arg(arg)?)),
        "ka.req.pod.volumes.flexvolume_driver" | "ka.req.pod.volumes.flexvolume_drivers" => {
            Ok(F::FlexDrivers(index_arg(arg)?))
        }
        "ka.req.pod.volumes.volume_type" => Ok(F::VolumeTypes(index_arg(arg)?)),
        "ka.resp.name" => path(&["responseObject", "metadata", "name"]),
        "ka.response.code" => path(&["responseStatus", "code"]),
        "ka.response.reason" => path(&["responseStatus", "reason"]),
        "ka.useragent" => path(&["userAgent"]),
        "ka.sourceips" => Ok(F::SourceIps(index_arg(arg)?)),
        "ka.cluster.name" => path(&["annotations", "cluster_name"]),
        "jevt.value" | "json.value" => {
            let p = needs_arg(arg)?;
            if !p.starts_with('/') {
                return Err(FieldError::BadArg(format!(
                    "{p:?} is not a JSON pointer (it must start with '/')"
                )));
            }
            Ok(F::Pointer(p))
        }
        "jevt.obj" | "json.obj" => no_arg(arg, F::Obj),
        "jevt.rawtime" | "json.rawtime" => no_arg(arg, F::RawTime),
        "jevt.time" => no_arg(arg, F::Time),
        "kubebid.tenant" => no_arg(arg, F::KubeBid(Kb::Tenant)),
        "kubebid.actor.tenant" => no_arg(arg, F::KubeBid(Kb::ActorTenant)),
        "kubebid.actor.kind" => no_arg(arg, F::KubeBid(Kb::ActorKind)),
        "kubebid.denied" => no_arg(arg, F::KubeBid(Kb::Denied)),
        _ => Err(FieldError::Unknown),
    }
}

/// A JSON value as Falco compares it: strings as themselves, everything else as its JSON text.
fn render(v: &Value) -> Val<'_> {
    match v {
        Value::String(s) => Val::Str(s),
        Value::Bool(b) => Val::bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Val::int(i),
            None => Val::Owned(n.to_string().into()),
        },
        Value::Null => Val::Str("null"),
        other => Val::Owned(other.to_string().into()),
    }
}

fn get<'e>(v: &'e Value, path: &[&str]) -> Option<&'e Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The elements of the array at `path`, or one element by index.
fn elements<'e>(v: &'e Value, path: &[&str], index: Option<usize>) -> Option<&'e [Value]> {
    let arr = get(v, path)?.as_array()?;
    match index {
        None => Some(arr.as_slice()),
        Some(i) => arr.get(i..=i),
    }
}

fn list<'e>(it: impl Iterator<Item = Val<'e>>) -> Values<'e> {
    Values::List(it.collect())
}

/// `image` without its tag or digest.
fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest.get(slash..).and_then(|last| last.find(':')) {
        Some(colon) => no_digest.get(..slash + colon).unwrap_or(no_digest),
        None => no_digest,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn stage_time(json: &Value) -> Option<jiff::Timestamp> {
    ["stageTimestamp", "requestReceivedTimestamp"]
        .iter()
        .find_map(|k| {
            json.get(k)
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        })
}

fn container<'e>(json: &'e Value, l: CList, what: CWhat, index: Option<usize>) -> Values<'e> {
    let Some(cs) = elements(json, &["requestObject", "spec", l.key()], index) else {
        return Values::NotAvailable;
    };
    let sec = |c: &'e Value, k: &str| c.get("securityContext").and_then(|s| s.get(k));
    match what {
        CWhat::Name | CWhat::Image | CWhat::Repository => {
            let key = if what == CWhat::Name { "name" } else { "image" };
            let mut out = Vec::with_capacity(cs.len());
            for c in cs {
                // Like the plugin: one container without the value makes the whole field unavailable.
                let Some(v) = c.get(key) else {
                    return Values::NotAvailable;
                };
                out.push(match (what, v.as_str()) {
                    (CWhat::Repository, Some(s)) => Val::Str(repository(s)),
                    _ => render(v),
                });
            }
            Values::List(out)
        }
        CWhat::Command | CWhat::Args => {
            let key = if what == CWhat::Command {
                "command"
            } else {
                "args"
            };
            let joined: Vec<Val<'e>> = cs
                .iter()
                .filter_map(|c| c.get(key)?.as_array())
                .map(|a| {
                    Val::Owned(
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                            .into(),
                    )
                })
                .collect();
            if joined.is_empty() {
                Values::NotAvailable
            } else {
                Values::List(joined)
            }
        }
        CWhat::SecCtx(k) => list(cs.iter().filter_map(|c| sec(c, k)).map(render)),
        CWhat::Effective(k) => {
            let pod = get(json, &["requestObject", "spec", "securityContext", k])
                .map_or(Val::Str("0"), render);
            list(
                cs.iter()
                    .map(|c| sec(c, k).map_or_else(|| pod.clone(), render)),
            )
        }
        CWhat::AddCapabilities => list(
            cs.iter()
                .filter_map(|c| sec(c, "capabilities")?.get("add")?.as_array())
                .flatten()
                .map(render),
        ),
        CWhat::HostPort => list(
            cs.iter()
                .filter_map(|c| c.get("ports")?.as_array())
                .flatten()
                .filter_map(|p| p.get("hostPort").or_else(|| p.get("containerPort")))
                .map(render),
        ),
    }
}

fn extract<'e>(f: &F, ev: &AuditEvent<'e>) -> Values<'e> {
    let json = ev.json;
    let one = |v: Option<&'e Value>| v.map_or(Values::NotAvailable, |v| Values::One(render(v)));
    if let F::KubeBid(k) = f {
        let c = &ev.context;
        return Values::One(match k {
            Kb::Tenant => Val::Str(c.tenant),
            Kb::ActorTenant => Val::Str(c.actor_tenant),
            Kb::ActorKind => Val::Str(c.actor_kind.as_str()),
            Kb::Denied => Val::bool(c.denied),
        });
    }
    match f {
        F::Pointer(p) => return one(json.pointer(p)),
        F::Obj => return Values::One(Val::Owned(json.to_string().into())),
        F::RawTime => {
            return stage_time(json)
                .and_then(|t| i64::try_from(t.as_nanosecond()).ok())
                .map_or(Values::NotAvailable, |n| Values::One(Val::int(n)));
        }
        F::Time => {
            return stage_time(json).map_or(Values::NotAvailable, |t| {
                Values::One(Val::Owned(crate::output::clock(t).into()))
            });
        }
        _ => {}
    }
    // The plugin's rule: a JSON document without `auditID` is not an audit event.
    if json.get("auditID").is_none() {
        return Values::NotAvailable;
    }
    match f {
        F::Path(p) => one(get(json, p)),
        F::PathList(p) => match get(json, p).and_then(Value::as_array) {
            Some(a) => list(a.iter().map(render)),
            None => Values::NotAvailable,
        },
        F::UriParam(name) => {
            let Some(uri) = json.get("requestURI").and_then(Value::as_str) else {
                return Values::NotAvailable;
            };
            let query = uri.split_once('?').map_or("", |(_, q)| q);
            query
                .split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (percent_decode(k) == **name).then(|| percent_decode(v))
                })
                .next()
                .map_or(Values::NotAvailable, |v| Values::One(Val::Owned(v.into())))
        }
        F::TargetPodName => {
            let r = json.get("objectRef");
            let is_pod = r.and_then(|r| r.get("resource")).and_then(Value::as_str) == Some("pods");
            let sub = r
                .and_then(|r| r.get("subresource"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if is_pod && sub.is_empty() {
                one(get(json, &["responseObject", "metadata", "name"]))
            } else {
                Values::NotAvailable
            }
        }
        F::Subjects(kind, with_ns) => {
            let Some(subjects) =
                get(json, &["requestObject", "subjects"]).and_then(Value::as_array)
            else {
                return Values::List(Vec::new());
            };
            list(subjects.iter().filter_map(|s| {
                if s.get("kind")?.as_str()? != *kind {
                    return None;
                }
                let name = s.get("name")?.as_str()?;
                if *with_ns {
                    let ns = s.get("namespace")?.as_str()?;
                    Some(Val::Owned(format!("{ns}:{name}").into()))
                } else {
                    Some(Val::Str(name))
                }
            }))
        }
        F::HasName(n) => {
            match get(json, &["requestObject", "subjects"]).and_then(Value::as_array) {
                Some(a) => Values::One(Val::bool(
                    a.iter()
                        .any(|s| s.get("name").and_then(Value::as_str) == Some(&**n)),
                )),
                None => Values::NotAvailable,
            }
        }
        F::Container(l, what, i) => container(json, *l, *what, *i),
        F::FirstContainer(what) => match container(json, CList::Containers, *what, Some(0)) {
            Values::List(mut v) if !v.is_empty() => Values::One(v.swap_remove(0)),
            _ => Values::NotAvailable,
        },
        F::AnyPrivileged => match elements(json, &["requestObject", "spec", "containers"], None) {
            Some(cs) => Values::One(Val::bool(cs.iter().any(|c| {
                c.get("securityContext")
                    .and_then(|s| s.get("privileged"))
                    .and_then(Value::as_bool)
                    == Some(true)
            }))),
            None => Values::NotAvailable,
        },
        F::RoleRules(key, i) => match elements(json, &["requestObject", "rules"], *i) {
            Some(rules) => list(
                rules
                    .iter()
                    .filter_map(|r| r.get(*key)?.as_array())
                    .flatten()
                    .map(render),
            ),
            None => Values::NotAvailable,
        },
        F::ServicePorts(i) => match elements(json, &["requestObject", "spec", "ports"], *i) {
            Some(ps) => list(ps.iter().map(render)),
            None => Values::NotAvailable,
        },
        F::HostPaths(i) => match elements(json, &["requestObject", "spec", "volumes"], *i) {
            Some(vs) => list(
                vs.iter()
                    .filter_map(|v| v.get("hostPath")?.get("path"))
                    .map(render),
            ),
            None => Values::NotAvailable,
        },
        F::HostPathMatch(pat) => {
            match elements(json, &["requestObject", "spec", "volumes"], None) {
                Some(vs) => {
                    let prefix = pat.strip_suffix('*');
                    let hit = vs
                        .iter()
                        .filter_map(|v| v.get("hostPath")?.get("path")?.as_str())
                        .any(|p| match prefix {
                            Some(pre) => p.starts_with(pre),
                            None => p == &**pat,
                        });
                    Values::One(Val::bool(hit))
                }
                None => Values::NotAvailable,
            }
        }
        F::FlexDrivers(i) => match elements(json, &["requestObject", "spec", "volumes"], *i) {
            Some(vs) => list(
                vs.iter()
                    .filter_map(|v| v.get("flexVolume")?.get("driver"))
                    .map(render),
            ),
            None => Values::NotAvailable,
        },
        F::VolumeTypes(i) => match elements(json, &["requestObject", "spec", "volumes"], *i) {
            Some(vs) => list(vs.iter().filter_map(Value::as_object).flat_map(|o| {
                o.keys()
                    .filter(|k| *k != "name")
                    .map(|k| Val::Str(k.as_str()))
            })),
            None => Values::NotAvailable,
        },
        F::SourceIps(i) => match elements(json, &["sourceIPs"], *i) {
            Some(ips) => list(ips.iter().map(render)),
            None => Values::NotAvailable,
        },
        F::Pointer(_) | F::Obj | F::RawTime | F::Time | F::KubeBid(_) => Values::NotAvailable,
    }
}

impl Source for K8sAudit {
    type Event<'e> = AuditEvent<'e>;
    type Field = AuditField;

    fn name(&self) -> &str {
        "k8s_audit"
    }

    fn field(&self, name: &str, arg: Option<&str>) -> Result<AuditField, FieldError> {
        resolve(name, arg).map(AuditField)
    }

    fn extract<'e>(&self, field: &AuditField, event: &Self::Event<'e>) -> Values<'e> {
        extract(&field.0, event)
    }

    fn timestamp(&self, event: &AuditEvent<'_>) -> Option<jiff::Timestamp> {
        stage_time(event.json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn x(name: &str, arg: Option<&str>, ev: &Value) -> Option<String> {
        let f = K8sAudit.field(name, arg).ok()?;
        K8sAudit.extract(&f, &AuditEvent::new(ev)).render()
    }

    #[test]
    fn repositories() {
        assert_eq!(repository("nginx:1.25"), "nginx");
        assert_eq!(repository("reg:5000/app:1"), "reg:5000/app");
        assert_eq!(
            repository("docker.io/falcosecurity/falco@sha256:abc"),
            "docker.io/falcosecurity/falco"
        );
        assert_eq!(repository("busybox"), "busybox");
    }

    #[test]
    fn pod_fields() {
        let ev = json!({"auditID": "a", "requestURI": "/api/v1/namespaces/n/pods/p/exec?command=sh&command=-c&container=c",
            "requestObject": {"spec": {"securityContext": {"runAsUser": 1000},
            "containers": [
                {"name": "a", "image": "nginx:1", "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN", "SYS_ADMIN"]}},
                 "ports": [{"containerPort": 80}, {"containerPort": 22, "hostPort": 2222}]},
                {"name": "b", "image": "busybox", "securityContext": {"runAsUser": 0}}],
            "volumes": [{"name": "r", "hostPath": {"path": "/etc"}}, {"name": "e", "emptyDir": {}}]}}});
        assert_eq!(
            x("ka.req.pod.containers.privileged", None, &ev).as_deref(),
            Some("(true)")
        );
        assert_eq!(
            x("ka.req.pod.containers.image.repository", None, &ev).as_deref(),
            Some("(nginx,busybox)")
        );
        assert_eq!(
            x("ka.req.pod.containers.image", Some("1"), &ev).as_deref(),
            Some("(busybox)")
        );
        assert_eq!(
            x("ka.req.pod.containers.add_capabilities", None, &ev).as_deref(),
            Some("(NET_ADMIN,SYS_ADMIN)")
        );
        assert_eq!(
            x("ka.req.pod.containers.host_port", None, &ev).as_deref(),
            Some("(80,2222)")
        );
        assert_eq!(
            x("ka.req.pod.containers.eff_run_as_user", None, &ev).as_deref(),
            Some("(1000,0)")
        );
        assert_eq!(
            x("ka.req.pod.volumes.hostpath", None, &ev).as_deref(),
            Some("(/etc)")
        );
        assert_eq!(
            x("ka.req.pod.volumes.volume_type", None, &ev).as_deref(),
            Some("(hostPath,emptyDir)")
        );
        assert_eq!(
            x("ka.req.volume.hostpath", Some("/e*"), &ev).as_deref(),
            Some("true")
        );
        assert_eq!(
            x("ka.req.volume.hostpath", Some("/var"), &ev).as_deref(),
            Some("false")
        );
        assert_eq!(
            x("ka.req.container.privileged", None, &ev).as_deref(),
            Some("true")
        );
        assert_eq!(
            x("ka.uri.param", Some("command"), &ev).as_deref(),
            Some("sh")
        );
        assert_eq!(x("ka.req.pod.initContainers.image", None, &ev), None);
        assert_eq!(
            x(
                "jevt.value",
                Some("/requestObject/spec/containers/0/name"),
                &ev
            )
            .as_deref(),
            Some("a")
        );
        assert!(K8sAudit.field("jevt.value", None).is_err());
        assert!(
            K8sAudit
                .field("ka.req.pod.containers.image", Some("x"))
                .is_err()
        );
        assert!(K8sAudit.field("proc.name", None).is_err());
    }

    #[test]
    fn not_an_audit_event() {
        let ev = json!({"verb": "get"});
        assert_eq!(x("ka.verb", None, &ev), None);
        assert_eq!(x("jevt.value", Some("/verb"), &ev).as_deref(), Some("get"));
    }
}
