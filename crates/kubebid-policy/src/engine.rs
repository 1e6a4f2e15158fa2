//! The engine: picks the tenant and profile for an object, runs the rules, applies actions and exceptions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubebid_model::config::{KubeBidConfigSpec, TENANT_LABEL};
use kubebid_model::load::{ConfigSet, SourceError};
use kubebid_model::{Action, Object, Profile, PssVersion};
use serde::Serialize;

use crate::Raw;
use crate::pod::PodView;
use crate::pss::{self, PssLevel};
use crate::rules::{RULES, Rule, rid, rule_index};
use crate::settings::{ClusterSettings, TenantSettings};
use crate::tenant::{self, Scope};

/// The API operation under review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

/// What to decide on.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The object (for DELETE, the object being deleted).
    pub object: &'a Object,
    /// The object before an UPDATE.
    pub old_object: Option<&'a Object>,
    pub operation: Operation,
    /// Namespace of the request, used when the object does not name one.
    pub namespace: Option<&'a str>,
    /// Current time, for exception expiry; exceptions with an expiry never apply without it.
    pub now: Option<Timestamp>,
    /// Subresource of the request (`exec`, `attach`, `portforward`, `ephemeralcontainers`, ...).
    pub subresource: Option<&'a str>,
    /// Name in the request (for CONNECT, the pod's).
    pub name: Option<&'a str>,
    /// The requesting user, for exemptions.
    pub user: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A CREATE of `object`.
    #[must_use]
    pub fn create(object: &'a Object) -> Self {
        Self {
            object,
            old_object: None,
            operation: Operation::Create,
            namespace: None,
            now: None,
            subresource: None,
            name: None,
            user: None,
        }
    }
}

/// One thing a rule found.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// The rule.
    #[serde(serialize_with = "rule_id")]
    pub rule: &'static Rule,
    /// What happens because of it.
    pub action: Action,
    /// Offending field, e.g. `spec.containers[0].securityContext.privileged`.
    pub path: String,
    /// What is wrong, naming the container or value.
    pub message: String,
    /// The `PolicyException` that lifts this finding, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `serialize_with` hands us a reference
fn rule_id<S: serde::Serializer>(r: &&'static Rule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.id)
}

impl Finding {
    /// Whether this finding denies the request.
    #[must_use]
    pub fn denies(&self) -> bool {
        self.action == Action::Enforce && self.exception.is_none()
    }
}

/// The outcome for one object.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Decision {
    pub findings: Vec<Finding>,
    /// Things worth knowing that are not findings (excluded namespace, kind without rules, ...).
    pub notes: Vec<String>,
    /// The tenant the object was judged as, if any.
    pub tenant: Option<String>,
    /// The profile applied, if the object was evaluated.
    pub profile: Option<Profile>,
}

impl Decision {
    /// Whether any finding denies the request.
    #[must_use]
    pub fn denied(&self) -> bool {
        self.findings.iter().any(Finding::denies)
    }
}

#[derive(Clone)]
struct CompiledException {
    name: String,
    rules: Vec<&'static str>,
    namespaces: Vec<String>,
    kinds: Vec<String>,
    names: Vec<String>,
    selector: Option<LabelSelector>,
    expires: Option<Timestamp>,
}

impl CompiledException {
    fn matches(
        &self,
        rule: &str,
        obj: &Object,
        namespace: Option<&str>,
        now: Option<Timestamp>,
    ) -> bool {
        if let Some(exp) = self.expires
            && now.is_none_or(|n| n >= exp)
        {
            return false;
        }
        self.rules.contains(&rule)
            && (self.namespaces.is_empty()
                || namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns)))
            && (self.kinds.is_empty() || self.kinds.contains(&obj.kind))
            && (self.names.is_empty() || self.names.iter().any(|n| name_matches(n, obj.name())))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, obj.meta().labels.as_ref()))
    }
}

fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Label selector semantics of Kubernetes (matchLabels and matchExpressions, all `ANDed`).
#[must_use]
pub fn selector_matches(sel: &LabelSelector, labels: Option<&BTreeMap<String, String>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k));
    sel.match_labels
        .iter()
        .flatten()
        .all(|(k, v)| get(k) == Some(v))
        && sel.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => get(&e.key).is_some_and(|v| values.contains(v)),
                "NotIn" => get(&e.key).is_none_or(|v| !values.contains(v)),
                "Exists" => get(&e.key).is_some(),
                "DoesNotExist" => get(&e.key).is_none(),
                _ => false, // unknown operators match nothing: an exception never widens by accident
            }
        })
}

fn unknown_rule(id: &str) -> String {
    format!("unknown rule ID {id:?} (see `kubebid rules`)")
}

/// The compiled rule set with its configuration: cheap to share, immutable, thread-safe.
#[derive(Clone)]
pub struct PolicySet {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    cluster: ClusterSettings,
    tenants: Vec<TenantSettings>,
    by_namespace: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
    default_tenant: TenantSettings,
    exceptions: Vec<CompiledException>,
    configured: bool,
    profile_override: Option<Profile>,
}

impl PolicySet {
    /// Built-in defaults: every object is a tenant object under profile `zero-trust`, runtime class
    /// `kubebid-secure`, storage class `encrypted-ssd`, no registry restriction.
    #[must_use]
    pub fn builtin() -> Self {
        Self::compile(&KubeBidConfigSpec::default(), Vec::new(), Vec::new(), false)
    }

    /// Compiles a configuration read from files.
    ///
    /// # Errors
    /// Every problem, with file, line and field: unknown rule IDs, namespaces claimed twice, ...
    pub fn from_config(set: &ConfigSet) -> Result<Self, Vec<SourceError>> {
        let mut errs = set.cross_check();
        let spec = set
            .config
            .as_ref()
            .map(|c| c.object.spec.clone())
            .unwrap_or_default();
        if let Some(c) = &set.config {
            for id in c.object.spec.rules.keys() {
                if rule_index(id).is_none() {
                    errs.push(
                        c.origin
                            .error(&format!("spec.rules[\"{id}\"]"), unknown_rule(id)),
                    );
                }
            }
        }
        for t in &set.tenants {
            for id in t.object.spec.rules.keys() {
                if rule_index(id).is_none() {
                    errs.push(
                        t.origin
                            .error(&format!("spec.rules[\"{id}\"]"), unknown_rule(id)),
                    );
                }
            }
        }
        let mut exceptions = Vec::new();
        for e in &set.exceptions {
            let mut rules = Vec::new();
            for (i, id) in e.object.spec.rules.iter().enumerate() {
                if let Some(r) = crate::rules::rule(id) {
                    rules.push(r.id);
                } else {
                    errs.push(
                        e.origin
                            .error(&format!("spec.rules[{i}]"), unknown_rule(id)),
                    );
                }
            }
            let m = &e.object.spec.matches;
            exceptions.push(CompiledException {
                name: e.object.metadata.name.clone().unwrap_or_default(),
                rules,
                namespaces: m.namespaces.clone(),
                kinds: m.kinds.clone(),
                names: m.names.clone(),
                selector: m.selector.clone(),
                expires: e.object.spec.expires.as_ref().map(|t| t.0),
            });
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        let tenants: Vec<TenantSettings> = set
            .tenants
            .iter()
            .map(|t| TenantSettings::from_spec(t.object.metadata.name.clone(), &t.object.spec))
            .collect();
        Ok(Self::compile(&spec, tenants, exceptions, true))
    }

    fn compile(
        spec: &KubeBidConfigSpec,
        tenants: Vec<TenantSettings>,
        exceptions: Vec<CompiledException>,
        configured: bool,
    ) -> Self {
        let mut by_namespace = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, t) in tenants.iter().enumerate() {
            for ns in &t.namespaces {
                by_namespace.insert(ns.clone(), i);
            }
            if let Some(n) = &t.name {
                by_name.insert(n.clone(), i);
            }
        }
        Self {
            inner: Arc::new(Inner {
                cluster: ClusterSettings::from_spec(spec),
                tenants,
                by_namespace,
                by_name,
                default_tenant: TenantSettings::builtin(),
                exceptions,
                configured,
                profile_override: None,
            }),
        }
    }

    /// Applies one profile to every tenant (the `--profile` flag).
    #[must_use]
    pub fn with_profile(mut self, profile: Profile) -> Self {
        Arc::make_mut(&mut self.inner).profile_override = Some(profile);
        self
    }

    /// Evaluates Pod Security Standards at `version` (the `--pss-version` flag).
    #[must_use]
    pub fn with_pss_version(mut self, version: PssVersion) -> Self {
        Arc::make_mut(&mut self.inner).cluster.pss_version = version;
        self
    }

    /// Sets the action of one rule.
    #[must_use]
    pub fn with_action(mut self, rule_id: &str, action: Action) -> Self {
        if let Some(i) = rule_index(rule_id) {
            Arc::make_mut(&mut self.inner).cluster.actions[i] = action;
        }
        self
    }

    /// The tenant settings that apply in `namespace` (the defaults where no tenant claims it), or `None`
    /// for an excluded platform namespace. The mutating webhook reads its defaults from here.
    #[must_use]
    pub fn tenant_for(&self, namespace: Option<&str>) -> Option<&TenantSettings> {
        let inner = &*self.inner;
        if namespace.is_some_and(|ns| inner.cluster.is_excluded(ns)) {
            return None;
        }
        Some(
            namespace
                .and_then(|ns| inner.by_namespace.get(ns))
                .map_or(&inner.default_tenant, |&i| &inner.tenants[i]),
        )
    }

    /// What a new or changed Tenant `name` would take from other tenants: namespaces, ingress domains or
    /// owners they already hold, as `(field, message)` pairs. Empty when it takes nothing.
    #[must_use]
    pub fn tenant_conflicts(
        &self,
        name: &str,
        spec: &kubebid_model::TenantSpec,
    ) -> Vec<(String, String)> {
        let inner = &*self.inner;
        let others = || {
            inner
                .tenants
                .iter()
                .filter(|t| t.name.as_deref() != Some(name))
        };
        let mut out = Vec::new();
        for (i, ns) in spec.namespaces.iter().enumerate() {
            if let Some(other) = others().find(|t| t.namespaces.contains(ns)) {
                out.push((
                    format!("spec.namespaces[{i}]"),
                    format!(
                        "namespace {ns:?} already belongs to tenant {:?}",
                        other.name.as_deref().unwrap_or_default()
                    ),
                ));
            }
            if inner.cluster.is_excluded(ns) {
                out.push((
                    format!("spec.namespaces[{i}]"),
                    format!("namespace {ns:?} is an excluded system namespace"),
                ));
            }
        }
        for (i, d) in spec.ingress_domains.iter().flatten().enumerate() {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if let Some(other) =
                others().find(|t| t.ingress_domains.iter().flatten().any(|x| *x == d))
            {
                out.push((
                    format!("spec.ingressDomains[{i}]"),
                    format!(
                        "ingress domain {d:?} already belongs to tenant {:?}",
                        other.name.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        for (i, o) in spec.owners.iter().enumerate() {
            if let Some(other) = others().find(|t| {
                t.owners
                    .iter()
                    .any(|x| x.kind == o.kind && x.name == o.name && x.namespace == o.namespace)
            }) {
                out.push((
                    format!("spec.owners[{i}]"),
                    format!(
                        "owner {:?} already owns tenant {:?}",
                        o.name,
                        other.name.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        out
    }

    /// The cluster settings in force.
    #[must_use]
    pub fn cluster(&self) -> &ClusterSettings {
        &self.inner.cluster
    }

    /// Decides on one request.
    #[must_use]
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let inner = &*self.inner;
        let obj = req.object;
        let mut decision = Decision::default();
        if let Some(user) = req.user
            && inner.cluster.exempt_users.iter().any(|u| u == user)
        {
            decision
                .notes
                .push(format!("requests of {user:?} are exempt"));
            return decision;
        }
        let namespace: Option<&str> = match &obj.resource {
            kubebid_model::Resource::Namespace(_) => Some(obj.name()),
            _ if obj.is_cluster_scoped() => None,
            _ => obj.namespace().or(req.namespace),
        };
        if let Some(ns) = namespace
            && inner.cluster.is_excluded(ns)
        {
            decision
                .notes
                .push(format!("namespace {ns:?} is excluded from tenant policy"));
            return decision;
        }
        let tenant_idx = match namespace {
            Some(ns) => inner.by_namespace.get(ns).copied(),
            None => obj
                .label(TENANT_LABEL)
                .and_then(|t| inner.by_name.get(t).copied()),
        };
        let tenant = if let Some(i) = tenant_idx {
            &inner.tenants[i]
        } else {
            if inner.configured {
                match namespace {
                    Some(ns) => decision.notes.push(format!("namespace {ns:?} belongs to no tenant; checked under the default tenant settings")),
                    None => decision.notes.push("cluster-scoped object of no tenant; checked under the default tenant settings".into()),
                }
            }
            &inner.default_tenant
        };
        let profile = inner
            .profile_override
            .or(tenant.profile)
            .unwrap_or(inner.cluster.default_profile);
        decision.tenant.clone_from(&tenant.name);
        decision.profile = Some(profile);
        let action_of = |i: usize| tenant.actions[i].unwrap_or(inner.cluster.actions[i]);
        let enabled = |i: usize| RULES[i].level.in_profile(profile) && action_of(i) != Action::Off;
        let mut raw: Vec<Raw> = Vec::with_capacity(16);
        if req.operation == Operation::Connect {
            // exec, attach, portforward: the object is only the options of the connection.
            if enabled(rid!("tenant/pod-connect")) {
                let sub = req.subresource.unwrap_or("connect");
                let pod = req.name.unwrap_or_default();
                raw.push(Raw {
                    rule: rid!("tenant/pod-connect"),
                    path: String::new(),
                    message: format!("{sub} into pod {}/{pod}", namespace.unwrap_or_default()),
                });
            }
            self.finish(&mut decision, raw, &action_of, profile, req, namespace);
            return decision;
        }
        if !obj.is_known_kind() {
            decision.notes.push(format!(
                "{} {} has no rules; passed",
                obj.api_version, obj.kind
            ));
            return decision;
        }
        let enabled = |i: usize| {
            RULES[i].level.in_profile(profile) && inner.cluster.actions[i] != Action::Off
        };
        let mut raw: Vec<Raw> = Vec::with_capacity(16);
        let scope = Scope {
            cluster: &inner.cluster,
            tenant,
            namespace,
            profile,
        };
        let skip_pod_rules = req.operation == Operation::Delete;
        if let Some(t) = obj.pod_template()
            && !skip_pod_rules
        {
            let view = PodView {
                meta: t.meta,
                spec: t.spec,
                spec_path: t.spec_path,
                meta_path: t.meta_path,
            };
            let level = if profile == Profile::Baseline {
                PssLevel::Baseline
            } else {
                PssLevel::Restricted
            };
            pss::evaluate(
                &view,
                level,
                inner.cluster.pss_version.minor,
                enabled,
                &mut raw,
            );
            if profile == Profile::ZeroTrust {
                tenant::pod_rules(&view, &scope, &mut raw);
            }
        }
        if profile == Profile::ZeroTrust {
            let before = raw.len();
            tenant::object_rules(obj, req.old_object, &scope, &mut raw);
            if req.operation == Operation::Delete {
                // Deleting is only guarded for objects the platform owns.
                let guarded = [rid!("tenant/managed-object"), rid!("tenant/quota-change")];
                let keep: Vec<Raw> = raw
                    .drain(before..)
                    .filter(|r| guarded.contains(&r.rule))
                    .collect();
                raw.extend(keep);
            }
        }
        self.finish(&mut decision, raw, &action_of, profile, req, namespace);
        decision
    }

    /// Turns raw findings into findings with their actions and exceptions.
    fn finish(
        &self,
        decision: &mut Decision,
        raw: Vec<Raw>,
        action_of: &dyn Fn(usize) -> Action,
        profile: Profile,
        req: &Request<'_>,
        namespace: Option<&str>,
    ) {
        let inner = &*self.inner;
        let obj = req.object;
        decision.findings.reserve(raw.len());
        for r in raw {
            let i = r.rule;
            let Some(rule) = RULES.get(i) else {
                continue;
            };
            let action = action_of(i);
            if !rule.level.in_profile(profile) || action == Action::Off {
                continue;
            }
            let exception = inner
                .exceptions
                .iter()
                .find(|e| e.matches(rule.id, obj, namespace, req.now))
                .map(|e| e.name.clone());
            decision.findings.push(Finding {
                rule,
                action,
                path: r.path,
                message: r.message,
                exception,
            });
        }
    }
}
