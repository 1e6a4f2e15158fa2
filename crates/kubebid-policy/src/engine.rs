//! The engine: picks the tenant and profile for an object, runs the rules, applies actions and exceptions.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubebid_model::config::{KubeBidConfigSpec, TENANT_LABEL, Tenant};
use kubebid_model::load::{ConfigSet, SourceError};
use kubebid_model::{Action, Actor, Object, Party, Profile, PssVersion, Resource, Tenancy};
use serde::Serialize;

use crate::Raw;
use crate::pod::PodView;
use crate::pss::{self, PssLevel};
use crate::rules::{Level, RULES, Rule, rid, rule_index};
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
    /// The requesting user: who acts decides which rules bind (KubeBid itself is not judged, Kubernetes'
    /// controllers may act on the platform's objects). `None` (offline checks) judges as a tenant.
    pub user: Option<&'a str>,
    /// The requesting user's groups.
    pub groups: &'a [String],
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
            groups: &[],
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

/// The kind whose controller names the objects of a kind `<its name>-<generated suffix>`: a `CronJob` names
/// its Jobs `<cronjob>-<minutes>`, a `Deployment` its `ReplicaSets` `<deployment>-<template hash>`.
fn generating_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "Job" => Some("CronJob"),
        "ReplicaSet" => Some("Deployment"),
        _ => None,
    }
}

impl CompiledException {
    fn live(&self, now: Option<Timestamp>) -> bool {
        self.expires.is_none_or(|exp| now.is_some_and(|n| n < exp))
    }

    fn names_object(&self, kind: &str, name: &str) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| k == kind))
            && (self.names.is_empty() || self.names.iter().any(|n| name_matches(n, name)))
    }

    /// Whether the exception names `obj`, or the controller that made it: an exception for `CronJob` `backup`
    /// also covers the Jobs it creates and their Pods, since what they run is the `CronJob`'s template. A
    /// tenant that forges such an owner reference gains nothing it could not put into that `CronJob` itself.
    fn covers(&self, obj: &Object) -> bool {
        let direct = self.names_object(&obj.kind, obj.name())
            && self
                .selector
                .as_ref()
                .is_none_or(|s| selector_matches(s, obj.meta().labels.as_ref()));
        if direct {
            return true;
        }
        if self.selector.is_some() {
            return false; // an owner's labels are not visible here
        }
        let Some(owner) = obj
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        else {
            return false;
        };
        if self.names_object(&owner.kind, &owner.name) {
            return true;
        }
        let Some(grand_kind) = generating_kind(&owner.kind) else {
            return false;
        };
        owner
            .name
            .rsplit_once('-')
            .is_some_and(|(base, suffix)| !suffix.is_empty() && self.names_object(grand_kind, base))
    }

    fn matches(
        &self,
        rule: &str,
        obj: &Object,
        namespace: Option<&str>,
        now: Option<Timestamp>,
    ) -> bool {
        self.live(now)
            && self.rules.contains(&rule)
            && (self.namespaces.is_empty()
                || namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns)))
            && self.covers(obj)
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
    tenancy: Tenancy,
    /// Rule settings of each accepted tenant, indexed like `tenancy.tenants()`.
    settings: Vec<TenantSettings>,
    /// Settings of namespaces no tenant claims.
    default_tenant: TenantSettings,
    exceptions: Vec<CompiledException>,
    configured: bool,
    profile_override: Option<Profile>,
}

/// Compiles the exceptions of `set`; unknown rule IDs are reported through `problem`.
fn compile_exceptions(
    set: &ConfigSet,
    mut problem: impl FnMut(&kubebid_model::load::Loaded<kubebid_model::PolicyException>, usize, &str),
) -> Vec<CompiledException> {
    let mut out = Vec::new();
    for e in &set.exceptions {
        let mut rules = Vec::new();
        for (i, id) in e.object.spec.rules.iter().enumerate() {
            match crate::rules::rule(id) {
                Some(r) => rules.push(r.id),
                None => problem(e, i, id),
            }
        }
        let m = &e.object.spec.matches;
        out.push(CompiledException {
            name: e.object.metadata.name.clone().unwrap_or_default(),
            rules,
            namespaces: m.namespaces.clone(),
            kinds: m.kinds.clone(),
            names: m.names.clone(),
            selector: m.selector.clone(),
            expires: e.object.spec.expires.as_ref().map(|t| t.0),
        });
    }
    out
}

impl PolicySet {
    /// Built-in defaults: every namespace but the platform's is judged under profile `zero-trust`, runtime
    /// class `kubebid-secure`, storage class `encrypted-ssd`, no registry restriction.
    #[must_use]
    pub fn builtin() -> Self {
        Self::compile(&KubeBidConfigSpec::default(), &[], Vec::new(), false)
    }

    /// Compiles a configuration read from files. Files are fixed by their author, so every problem is an
    /// error.
    ///
    /// # Errors
    /// Every problem, with file, line and field: unknown rule IDs, namespaces claimed twice, ...
    pub fn from_config(set: &ConfigSet) -> Result<Self, Vec<SourceError>> {
        let mut errs = set.cross_check();
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
        let exceptions = compile_exceptions(set, |e, i, id| {
            errs.push(
                e.origin
                    .error(&format!("spec.rules[{i}]"), unknown_rule(id)),
            );
        });
        if !errs.is_empty() {
            return Err(errs);
        }
        let tenants: Vec<Tenant> = set.tenants.iter().map(|t| t.object.clone()).collect();
        Ok(Self::compile(
            &set.cluster_spec(),
            &tenants,
            exceptions,
            true,
        ))
    }

    /// Compiles what a cluster holds. A cluster cannot be refused, so problems are returned beside the policy
    /// and resolved towards isolation: a Tenant that conflicts with an older one is left out (its namespaces
    /// are judged under the default settings), unknown rule IDs are ignored, and an exception naming an
    /// unknown rule lifts only the rules it names correctly.
    #[must_use]
    pub fn from_cluster(set: &ConfigSet) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let exceptions = compile_exceptions(set, |e, _, id| {
            warnings.push(format!(
                "PolicyException {}: {}",
                e.object.metadata.name.as_deref().unwrap_or_default(),
                unknown_rule(id)
            ));
        });
        let tenants: Vec<Tenant> = set.tenants.iter().map(|t| t.object.clone()).collect();
        let policy = Self::compile(&set.cluster_spec(), &tenants, exceptions, true);
        for r in policy.inner.tenancy.rejected() {
            for p in &r.problems {
                warnings.push(format!(
                    "Tenant {} is not in force: {}: {}",
                    r.tenant, p.path, p.message
                ));
            }
        }
        (policy, warnings)
    }

    fn compile(
        spec: &KubeBidConfigSpec,
        tenants: &[Tenant],
        exceptions: Vec<CompiledException>,
        configured: bool,
    ) -> Self {
        let tenancy = Tenancy::new(spec, tenants);
        let by_name: std::collections::HashMap<&str, &Tenant> = tenants
            .iter()
            .filter_map(|t| t.metadata.name.as_deref().map(|n| (n, t)))
            .collect();
        // Registries of what the platform puts into tenants' pods (a mesh's proxy, cert-manager's solver).
        let shared: Vec<String> = spec
            .shared_registries
            .iter()
            .map(|r| crate::tenant::normalize_registry(r))
            .collect();
        let settings = tenancy
            .tenants()
            .iter()
            .map(|scope| {
                let tenant_spec = by_name
                    .get(scope.name.as_str())
                    .map_or_else(kubebid_model::TenantSpec::builtin_default, |t| {
                        t.spec.clone()
                    });
                let mut s = TenantSettings::from_spec(Some(scope.name.clone()), &tenant_spec);
                if let Some(regs) = &mut s.registries {
                    regs.extend(shared.iter().cloned());
                }
                s
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                cluster: ClusterSettings::from_spec(spec),
                tenancy,
                settings,
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

    /// The tenancy model the policy decides with.
    #[must_use]
    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    /// Every accepted tenant with its rule settings.
    pub fn tenants(&self) -> impl Iterator<Item = (&kubebid_model::TenantScope, &TenantSettings)> {
        self.inner
            .tenancy
            .tenants()
            .iter()
            .zip(self.inner.settings.iter())
    }

    /// Whether `rule` denies under `settings` (its profile includes the rule and its action is enforce),
    /// before exceptions.
    #[must_use]
    pub fn enforces(&self, settings: &TenantSettings, rule: &str) -> bool {
        let inner = &*self.inner;
        let Some(i) = rule_index(rule) else {
            return false;
        };
        let (pss, rules) = self.profiles(settings);
        let in_force = match RULES[i].level {
            crate::rules::Level::ZeroTrust => rules == Profile::ZeroTrust,
            level => level.in_profile(pss),
        };
        in_force && settings.actions[i].unwrap_or(inner.cluster.actions[i]) == Action::Enforce
    }

    /// The profiles a request is judged under: the Pod Security profile (the tenant's, else the cluster
    /// default), and which rule set runs. The tenant rules protect the other tenants and the platform, so a
    /// tenant's own profile never turns them off: only `--profile baseline|restricted` on the command line
    /// (a pure Pod Security check) does.
    fn profiles(&self, settings: &TenantSettings) -> (Profile, Profile) {
        let inner = &*self.inner;
        let pss = inner
            .profile_override
            .or(settings.profile)
            .unwrap_or(inner.cluster.default_profile);
        (pss, inner.profile_override.unwrap_or(Profile::ZeroTrust))
    }

    /// Where some `PolicyException` may lift `rule`: `None` when one may anywhere (it names no
    /// namespaces), else the namespaces they name. Expiry is not considered.
    #[must_use]
    pub fn exception_namespaces(&self, rule: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for e in self
            .inner
            .exceptions
            .iter()
            .filter(|e| e.rules.contains(&rule))
        {
            if e.namespaces.is_empty() {
                return None;
            }
            out.extend(e.namespaces.iter().cloned());
        }
        Some(out)
    }

    /// The settings of namespaces no tenant claims.
    #[must_use]
    pub fn default_settings(&self) -> &TenantSettings {
        &self.inner.default_tenant
    }

    fn settings_of(&self, party: Party<'_>) -> &TenantSettings {
        let inner = &*self.inner;
        match party {
            Party::Tenant(t) => inner.settings.get(t.index).unwrap_or(&inner.default_tenant),
            Party::Platform | Party::Unclaimed(_) => &inner.default_tenant,
        }
    }

    /// The tenant settings that apply in `namespace` (the defaults where no tenant claims it), or `None`
    /// for a platform namespace. The mutating webhook reads its defaults from here.
    #[must_use]
    pub fn tenant_for(&self, namespace: Option<&str>) -> Option<&TenantSettings> {
        let party = namespace.map_or(Party::Unclaimed(""), |ns| self.inner.tenancy.party(ns));
        match party {
            Party::Platform => None,
            p => Some(self.settings_of(p)),
        }
    }

    /// What keeps a new or changed Tenant `name` out: invalid fields, reserved namespaces, and namespaces,
    /// ingress domains or owners other tenants hold, as `(field, message)` pairs. Empty when it is valid.
    #[must_use]
    pub fn tenant_conflicts(
        &self,
        name: &str,
        spec: &kubebid_model::TenantSpec,
    ) -> Vec<(String, String)> {
        self.inner
            .tenancy
            .problems_of(name, spec)
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    /// The cluster settings in force.
    #[must_use]
    pub fn cluster(&self) -> &ClusterSettings {
        &self.inner.cluster
    }

    /// Decides on one request.
    #[must_use]
    // The order of the decision (who is exempt, whose scope, which rules, which exceptions) is the
    // security argument; it reads in one place, top to bottom.
    #[allow(clippy::too_many_lines)]
    pub fn evaluate(&self, req: &Request<'_>) -> Decision {
        let inner = &*self.inner;
        let obj = req.object;
        let mut decision = Decision::default();
        let actor = req
            .user
            .map_or(Actor::Tenant, |u| inner.tenancy.actor(u, req.groups));
        if actor == Actor::Exempt {
            decision.notes.push(format!(
                "requests of {:?} are exempt",
                req.user.unwrap_or_default()
            ));
            return decision;
        }
        let is_namespace = matches!(obj.resource, Resource::Namespace(_));
        let request_name = req.name.filter(|n| !n.is_empty());
        // The request decides which namespace an object is judged in; an object that names another is
        // refused, never judged as someone else's.
        let mut mismatch: Vec<Raw> = Vec::new();
        let namespace: Option<&str> = if is_namespace {
            Some(request_name.unwrap_or(obj.name()))
        } else if obj.is_cluster_scoped() {
            None
        } else {
            if let (Some(r), Some(o)) = (req.namespace, obj.namespace())
                && r != o
            {
                mismatch.push(Raw {
                    rule: rid!("tenant/request-mismatch"),
                    path: "metadata.namespace".into(),
                    message: format!(
                        "the object names namespace {o:?} but the request is for namespace {r:?}"
                    ),
                });
            }
            req.namespace.or(obj.namespace())
        };
        if req.operation != Operation::Connect
            && let (Some(r), Some(o)) = (request_name, obj.meta().name.as_deref())
            && !o.is_empty()
            && r != o
        {
            mismatch.push(Raw {
                rule: rid!("tenant/request-mismatch"),
                path: "metadata.name".into(),
                message: format!("the object is named {o:?} but the request is for {r:?}"),
            });
        }
        let party = match namespace {
            Some(ns) => inner.tenancy.party(ns),
            // Cluster-scoped objects are attributed by label; the webhook only sends labelled ones.
            None => obj
                .label(TENANT_LABEL)
                .and_then(|t| inner.tenancy.tenant(t))
                .map_or(Party::Unclaimed(""), Party::Tenant),
        };
        let tenant = self.settings_of(party);
        let (profile, rules_profile) = self.profiles(tenant);
        let action_of = |i: usize| tenant.actions[i].unwrap_or(inner.cluster.actions[i]);
        // A rule runs when the rule set includes it; the Pod Security checks run at the tenant's level.
        let in_force = |i: usize| match RULES[i].level {
            Level::ZeroTrust => rules_profile == Profile::ZeroTrust,
            level => level.in_profile(profile),
        };
        if let (Party::Platform, Some(ns)) = (party, namespace) {
            decision
                .notes
                .push(format!("namespace {ns:?} is excluded from tenant policy"));
            self.finish(
                &mut decision,
                mismatch,
                &action_of,
                &in_force,
                req,
                namespace,
            );
            return decision;
        }
        if inner.configured {
            match party {
                Party::Unclaimed("") => decision.notes.push(
                    "cluster-scoped object of no tenant; checked under the default tenant settings"
                        .into(),
                ),
                Party::Unclaimed(ns) => decision.notes.push(format!(
                    "namespace {ns:?} belongs to no tenant; checked under the default tenant settings"
                )),
                _ => {}
            }
        }
        decision.tenant.clone_from(&tenant.name);
        decision.profile = Some(profile);
        let enabled = |i: usize| in_force(i) && action_of(i) != Action::Off;
        let mut raw: Vec<Raw> = mismatch;
        raw.reserve(16);
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
            self.finish(&mut decision, raw, &action_of, &in_force, req, namespace);
            return decision;
        }
        if let Some((kind, served)) = obj.unsupported_version_of_known_kind() {
            raw.push(Raw {
                rule: rid!("tenant/unknown-version"),
                path: if kind == obj.kind {
                    "apiVersion"
                } else {
                    "kind"
                }
                .into(),
                message: format!(
                    "{} {} cannot be judged; KubeBid decodes {kind} as {served}",
                    obj.api_version, obj.kind
                ),
            });
            self.finish(&mut decision, raw, &action_of, &in_force, req, namespace);
            return decision;
        }
        if !obj.is_known_kind() {
            decision.notes.push(format!(
                "{} {} has no rules; passed",
                obj.api_version, obj.kind
            ));
            self.finish(&mut decision, raw, &action_of, &in_force, req, namespace);
            return decision;
        }
        let enabled = |i: usize| in_force(i) && action_of(i) != Action::Off;
        let scope = Scope {
            cluster: &inner.cluster,
            tenancy: &inner.tenancy,
            party,
            tenant,
            namespace,
            profile,
            actor,
        };
        // A pod spec is judged when it is written: not on DELETE, and not on an UPDATE that leaves it (and
        // the annotations Pod Security reads) as it was, so that metadata changes (a finalizer removed by
        // the garbage collector, a label) and scaling never fail on a spec admitted under an older policy.
        let unchanged = |t: &kubebid_model::PodTemplateRef<'_>| {
            req.old_object
                .and_then(Object::pod_template)
                .is_some_and(|o| o.spec == t.spec && o.meta.annotations == t.meta.annotations)
        };
        if let Some(t) = obj.pod_template()
            && req.operation != Operation::Delete
            && !(req.operation == Operation::Update && unchanged(&t))
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
            // A restricted check stands in for the baseline one it tightens only while it holds at least as
            // firmly: not lifted by an exception for this object, and with an action as strong.
            let supersedes = |restricted: usize, baseline: usize| {
                enabled(restricted)
                    && action_of(restricted) <= action_of(baseline)
                    && !inner
                        .exceptions
                        .iter()
                        .any(|e| e.matches(RULES[restricted].id, obj, namespace, req.now))
            };
            pss::evaluate(
                &view,
                level,
                inner.cluster.pss_version.minor,
                enabled,
                &supersedes,
                &mut raw,
            );
            if rules_profile == Profile::ZeroTrust {
                tenant::pod_rules(&view, &scope, &mut raw);
            }
        }
        if rules_profile == Profile::ZeroTrust {
            let before = raw.len();
            tenant::object_rules(obj, req.old_object, &scope, &mut raw);
            if req.operation == Operation::Delete {
                // Deleting is only guarded for what the platform owns.
                let guarded = [
                    rid!("tenant/managed-object"),
                    rid!("tenant/quota-change"),
                    rid!("tenant/namespace-object"),
                ];
                let keep: Vec<Raw> = raw
                    .drain(before..)
                    .filter(|r| guarded.contains(&r.rule))
                    .collect();
                raw.extend(keep);
            }
        }
        self.finish(&mut decision, raw, &action_of, &in_force, req, namespace);
        decision
    }

    /// Turns raw findings into findings with their actions and exceptions.
    fn finish(
        &self,
        decision: &mut Decision,
        raw: Vec<Raw>,
        action_of: &dyn Fn(usize) -> Action,
        in_force: &dyn Fn(usize) -> bool,
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
            if !in_force(i) || action == Action::Off {
                continue;
            }
            // The request's own integrity is never lifted by an exception.
            let exception = if i == rid!("tenant/request-mismatch") {
                None
            } else {
                inner
                    .exceptions
                    .iter()
                    .find(|e| e.matches(rule.id, obj, namespace, req.now))
                    .map(|e| e.name.clone())
            };
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
