//! KubeBid's isolation proof on a live cluster.
//!
//! For every tenant A, acting as each of A's identities (its owners, impersonated, and the `default`
//! service account of each of its namespaces), probes ask the API server what A may do, in A's namespaces
//! and in every other tenant's, and each answer is judged ([`rbac`]): a pass, or a failure with the rules
//! that make it one. Probes run concurrently with a bound, and are batched by identity: one rules review
//! per identity and namespace covers every resource and verb there, rather than one request per pair and
//! resource.
//!
//! The probe families: control plane (here), admission ([`admission`]: a corpus of hostile and compliant
//! objects created with `dryRun=All`), compute (the `kubebid-secure` RuntimeClass as the mission specifies
//! it; every running tenant pod in a KubeBid class on an attested node), network (KubeBid's default-deny
//! present and unchanged; the reachability matrix over every NetworkPolicy, [`reach`]; Cilium's WireGuard
//! on every node), DNS ([`dns`]: asked as a pod of A for B's names), data ([`data`]: Secrets as etcd holds
//! them) and audit ([`audit`]: the probes' requests in the tenant's trail). A probe that cannot be run
//! where the verifier stands is skipped with the reason, never passed. [`report`] writes the HTML evidence;
//! [`scan`] and [`scanner`] judge the objects already in the cluster and keep PolicyReports of them.

pub mod admission;
pub mod audit;
pub mod data;
pub mod dns;
pub mod rbac;
pub mod reach;
pub mod report;
pub mod scan;
pub mod scanner;

use std::collections::BTreeMap;

use futures::{StreamExt as _, TryStreamExt as _};
use kubebid_model::config::OwnerKind;
use kubebid_model::tenancy::Tenancy;
use serde_json::{Value, json};

use crate::rbac::{CLUSTER_REQUESTS, Rule, beyond_baseline, forbidden_in_own};

/// Someone a probe acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The tenant it belongs to.
    pub tenant: String,
    pub user: String,
    pub groups: Vec<String>,
}

/// The identity every authenticated user's permissions are read with, per namespace.
pub const BASELINE_USER: &str = "kubebid-verify:baseline";

/// The identities of every tenant (or of `only`): owners and each namespace's `default` service account.
#[must_use]
pub fn identities(tenancy: &Tenancy, only: Option<&str>) -> Vec<Identity> {
    let mut out = Vec::new();
    for t in tenancy.tenants() {
        if only.is_some_and(|o| o != t.name) {
            continue;
        }
        let id = |user: String, mut groups: Vec<String>| {
            groups.push("system:authenticated".into());
            Identity {
                tenant: t.name.clone(),
                user,
                groups,
            }
        };
        for o in &t.owners {
            out.push(match o.kind {
                OwnerKind::User => id(o.name.clone(), Vec::new()),
                OwnerKind::Group => id(
                    format!("kubebid-verify:{}:{}", t.name, o.name),
                    vec![o.name.clone()],
                ),
                OwnerKind::ServiceAccount => {
                    let ns = o.namespace.clone().unwrap_or_default();
                    id(
                        format!("system:serviceaccount:{ns}:{}", o.name),
                        vec![
                            "system:serviceaccounts".into(),
                            format!("system:serviceaccounts:{ns}"),
                        ],
                    )
                }
            });
        }
        for ns in &t.namespaces {
            out.push(id(
                format!("system:serviceaccount:{ns}:default"),
                vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ],
            ));
        }
    }
    out
}

/// One probe's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// `control-plane/foreign-namespace`, `control-plane/own-namespace`, `control-plane/cluster-scope`.
    pub probe: &'static str,
    pub tenant: String,
    /// The other tenant, for a probe of one pair.
    pub other: Option<String>,
    pub identity: String,
    /// The namespace asked about, if one.
    pub namespace: Option<String>,
    pub passed: bool,
    /// The probe could not be run here (its evidence says why): neither a pass nor a failure, and it does
    /// not fail the run (`passed` is true).
    pub skipped: bool,
    /// What the API server answered that decided it.
    pub evidence: Vec<String>,
}

/// `v` percent-encoded as a URL query value (RFC 3986's unreserved characters kept).
pub(crate) fn query_value(v: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(v, RESERVED).to_string()
}

impl Finding {
    /// A finding read by the verifier itself (no impersonation) about `tenant` (`*`: the cluster), and
    /// `other` for a probe of one pair.
    #[must_use]
    pub fn by_verifier(
        probe: &'static str,
        tenant: impl Into<String>,
        other: Option<String>,
        passed: bool,
        evidence: Vec<String>,
    ) -> Self {
        Self {
            probe,
            tenant: tenant.into(),
            other,
            identity: "(verifier)".into(),
            namespace: None,
            passed,
            skipped: false,
            evidence,
        }
    }
}

/// What each probe covers: the multi-tenancy benchmark's check and compliance controls.
#[must_use]
pub fn coverage(probe: &str) -> (&'static str, &'static [&'static str]) {
    match probe {
        "control-plane/foreign-namespace" => (
            "Block access to other tenant resources",
            &[
                "SOC 2 CC6.1",
                "SOC 2 CC6.6",
                "HIPAA 164.312(a)(1)",
                "PCI DSS 7.2",
                "GDPR Art. 32",
            ],
        ),
        "control-plane/own-namespace" => (
            "Block privilege escalation; block access to multitenant resources",
            &[
                "SOC 2 CC6.1",
                "SOC 2 CC6.7",
                "HIPAA 164.312(a)(1)",
                "PCI DSS 7.2",
            ],
        ),
        "admission/hostile" => (
            "Block privileged containers; block use of host path volumes, host networking and ports; block NodePort services; block access to other tenant resources",
            &[
                "SOC 2 CC6.1",
                "SOC 2 CC6.6",
                "SOC 2 CC6.7",
                "HIPAA 164.312(a)(1)",
                "PCI DSS 1.3",
                "PCI DSS 7.2",
                "GDPR Art. 32",
            ],
        ),
        "compute/runtime-class" | "compute/pods" => (
            "Tenant workloads isolated in microVMs on attested nodes",
            &["SOC 2 CC6.1", "SOC 2 CC6.6", "PCI DSS 1.3", "GDPR Art. 32"],
        ),
        "network/default-deny" => (
            "Block network traffic across tenants (default deny)",
            &[
                "SOC 2 CC6.6",
                "HIPAA 164.312(e)(1)",
                "PCI DSS 1.3",
                "GDPR Art. 32",
            ],
        ),
        "network/reachability" => (
            "Block network traffic across tenants (no NetworkPolicy path between tenants)",
            &[
                "SOC 2 CC6.6",
                "HIPAA 164.312(e)(1)",
                "PCI DSS 1.3",
                "GDPR Art. 32",
            ],
        ),
        "network/encryption" => (
            "Pod traffic encrypted between nodes (beyond the benchmark)",
            &[
                "SOC 2 CC6.7",
                "HIPAA 164.312(e)(1)",
                "PCI DSS 4.2",
                "GDPR Art. 32",
            ],
        ),
        "dns/foreign-names" => (
            "Block access to other tenant resources (names: another tenant's Services do not resolve)",
            &["SOC 2 CC6.1", "SOC 2 CC6.6", "GDPR Art. 32"],
        ),
        "audit/trail" => (
            "Tenant activity recorded in the tenant's own audit trail",
            &[
                "SOC 2 CC7.2",
                "HIPAA 164.312(b)",
                "PCI DSS 10.2",
                "GDPR Art. 32",
            ],
        ),
        "data/secrets-at-rest" => (
            "Secrets encrypted at rest, per tenant (beyond the benchmark)",
            &[
                "SOC 2 CC6.1",
                "HIPAA 164.312(a)(1)",
                "PCI DSS 3.5",
                "GDPR Art. 32",
            ],
        ),
        "admission/compliant" => (
            "Tenants keep the use of their namespaces (no over-blocking)",
            &["SOC 2 CC7.2"],
        ),
        _ => (
            "Block access to cluster resources",
            &["SOC 2 CC6.1", "SOC 2 CC6.6", "PCI DSS 7.2", "GDPR Art. 32"],
        ),
    }
}

/// Why a probe could not be run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Answer(String),
}

/// Runs probes against one cluster.
pub struct Verifier {
    client: kube::Client,
    concurrency: usize,
    bindable: Vec<String>,
}

/// A POST of `body` to `path` as `user` in `groups`. A user or group that cannot be a header value (a
/// control character in an owner's name) is an error, never a request without impersonation.
fn impersonated(
    path: &str,
    body: Vec<u8>,
    user: &str,
    groups: &[String],
) -> Result<http::Request<Vec<u8>>, VerifyError> {
    let mut req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("Impersonate-User", user);
    for g in groups {
        req = req.header("Impersonate-Group", g);
    }
    req.body(body).map_err(|e| {
        VerifyError::Answer(format!(
            "a request to {path} as {user:?} cannot be made: {e}"
        ))
    })
}

fn review_request(
    path: &str,
    body: &Value,
    user: &str,
    groups: &[String],
) -> Result<http::Request<Vec<u8>>, VerifyError> {
    impersonated(path, body.to_string().into_bytes(), user, groups)
}

const RULES_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

impl Verifier {
    #[must_use]
    pub fn new(client: kube::Client, concurrency: usize) -> Self {
        Self {
            client,
            concurrency: concurrency.max(1),
            bindable: Vec::new(),
        }
    }

    /// The ClusterRoles tenants may bind in their own namespaces (`allowedClusterRoles`): `bind` on them is
    /// expected. Without this, any `bind` is a finding.
    #[must_use]
    pub fn with_bindable(mut self, roles: Vec<String>) -> Self {
        self.bindable = roles;
        self
    }

    /// The resource rules `user` with `groups` has in `namespace`.
    ///
    /// # Errors
    /// The API server refused or did not answer, or answered an incomplete review.
    pub async fn rules(
        &self,
        user: &str,
        groups: &[String],
        namespace: &str,
    ) -> Result<Vec<Rule>, VerifyError> {
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace}});
        let answer: Value = self
            .client
            .request(review_request(RULES_REVIEWS, &body, user, groups)?)
            .await
            .map_err(|source| VerifyError::Api {
                what: format!("rules review of {user} in {namespace}"),
                source,
            })?;
        let status = &answer["status"];
        if status["incomplete"] == true {
            return Err(VerifyError::Answer(format!(
                "rules review of {user} in {namespace} is incomplete: {}",
                status["evaluationError"]
                    .as_str()
                    .unwrap_or("no reason given")
            )));
        }
        serde_json::from_value(status["resourceRules"].clone())
            .map_err(|e| VerifyError::Answer(format!("rules review of {user} in {namespace}: {e}")))
    }

    /// Whether `user` may make a cluster-scoped request.
    ///
    /// # Errors
    /// The API server refused or did not answer.
    pub async fn allowed(
        &self,
        user: &str,
        groups: &[String],
        (verb, group, resource, subresource): (&str, &str, &str, &str),
    ) -> Result<bool, VerifyError> {
        let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                "subresource": subresource}}});
        let answer: Value = self
            .client
            .request(review_request(ACCESS_REVIEWS, &body, user, groups)?)
            .await
            .map_err(|source| VerifyError::Api {
                what: format!("access review of {user}: {verb} {resource}"),
                source,
            })?;
        Ok(answer["status"]["allowed"] == true)
    }

    /// The control-plane probes for every tenant (or `only`) against every tenant; `progress` is told
    /// (done, total) as reviews complete.
    ///
    /// # Errors
    /// A review that could not be made: the proof is not given on a partial answer.
    pub async fn control_plane(
        &self,
        tenancy: &Tenancy,
        only: Option<&str>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<Finding>, VerifyError> {
        let owner: BTreeMap<&str, &str> = tenancy
            .tenants()
            .iter()
            .flat_map(|t| t.namespaces.iter().map(|n| (n.as_str(), t.name.as_str())))
            .collect();
        let namespaces: Vec<&str> = owner.keys().copied().collect();
        let ids = identities(tenancy, only);
        let total = namespaces.len() * (1 + ids.len()) + ids.len() * CLUSTER_REQUESTS.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let tick = || {
            progress(
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                total,
            )
        };
        let tick = &tick;
        let baseline_groups = &["system:authenticated".to_owned()][..];
        let baseline: BTreeMap<&str, Vec<Rule>> = futures::stream::iter(namespaces.iter().copied())
            .map(|ns| async move {
                let r = self.rules(BASELINE_USER, baseline_groups, ns).await;
                tick();
                r.map(|rules| (ns, rules))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        // What every authenticated user may do in each namespace beyond what Kubernetes grants everyone
        // (reviews of its own access): a grant to `system:authenticated` reaches every tenant at once.
        let everyone: BTreeMap<&str, Vec<String>> = baseline
            .iter()
            .map(|(ns, rules)| (*ns, rbac::beyond_defaults(rules)))
            .collect();
        let (owner, baseline, everyone) = (&owner, &baseline, &everyone);
        let pairs: Vec<(&Identity, &str)> = ids
            .iter()
            .flat_map(|id| namespaces.iter().map(move |ns| (id, *ns)))
            .collect();
        let mut findings: Vec<Finding> = futures::stream::iter(pairs)
            .map(|(id, ns)| async move {
                let rules = self.rules(&id.user, &id.groups, ns).await;
                tick();
                let rules = rules?;
                let mine = owner.get(ns).is_some_and(|t| *t == id.tenant);
                let (probe, evidence) = if mine {
                    ("control-plane/own-namespace", forbidden_in_own(&rules, &self.bindable))
                } else {
                    let mut e =
                        beyond_baseline(&rules, baseline.get(ns).map_or(&[][..], Vec::as_slice));
                    e.extend(everyone.get(ns).into_iter().flatten().map(|r| {
                        format!("{r}: every authenticated user holds it here, this tenant too")
                    }));
                    ("control-plane/foreign-namespace", e)
                };
                let passed = evidence.is_empty();
                let evidence = if passed {
                    vec![if mine {
                        format!("rules review: {} rules, none a tenant must not hold", rules.len())
                    } else {
                        format!(
                            "rules review: {} rules, none beyond what every authenticated user holds",
                            rules.len()
                        )
                    }]
                } else {
                    evidence
                };
                Ok::<_, VerifyError>(Finding {
                    probe,
                    tenant: id.tenant.clone(),
                    other: (!mine)
                        .then(|| owner.get(ns).map(|t| (*t).to_owned()))
                        .flatten(),
                    identity: id.user.clone(),
                    namespace: Some(ns.to_owned()),
                    passed,
                    skipped: false,
                    evidence,
                })
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let checks: Vec<(&Identity, &rbac::Request)> = ids
            .iter()
            .flat_map(|id| CLUSTER_REQUESTS.iter().map(move |c| (id, c)))
            .collect();
        let allowed: Vec<(&Identity, String)> = futures::stream::iter(checks)
            .map(|(id, c)| async move {
                let a = self.allowed(&id.user, &id.groups, *c).await;
                tick();
                let (verb, group, resource, sub) = *c;
                let what = format!(
                    "{verb} {resource}{}{}",
                    if sub.is_empty() {
                        String::new()
                    } else {
                        format!("/{sub}")
                    },
                    if group.is_empty() {
                        String::new()
                    } else {
                        format!(" ({group})")
                    }
                );
                a.map(|yes| yes.then_some((id, what)))
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        for id in &ids {
            let evidence: Vec<String> = allowed
                .iter()
                .filter(|(i, _)| *i == id)
                .map(|(_, w)| format!("allowed: {w}"))
                .collect();
            let passed = evidence.is_empty();
            findings.push(Finding {
                probe: "control-plane/cluster-scope",
                tenant: id.tenant.clone(),
                other: None,
                identity: id.user.clone(),
                namespace: None,
                passed,
                skipped: false,
                evidence: if passed {
                    vec![format!(
                        "{} access reviews of cluster-scoped requests, every one denied",
                        CLUSTER_REQUESTS.len()
                    )]
                } else {
                    evidence
                },
            });
        }
        findings.sort_by(|a, b| {
            (&a.tenant, &a.identity, a.probe, &a.namespace).cmp(&(
                &b.tenant,
                &b.identity,
                b.probe,
                &b.namespace,
            ))
        });
        Ok(findings)
    }
}

/// Who each tenant's admission probes act as, and where: its first namespace and its first owner (or,
/// with none, that namespace's `default` service account).
#[must_use]
pub fn admission_subjects(tenancy: &Tenancy, only: Option<&str>) -> Vec<audit::Made> {
    let ids = identities(tenancy, only);
    tenancy
        .tenants()
        .iter()
        .filter(|t| only.is_none_or(|o| o == t.name))
        .filter_map(|t| {
            let ns = t.namespaces.iter().next()?;
            let id = ids.iter().find(|id| id.tenant == t.name)?;
            Some((t.name.clone(), id.user.clone(), ns.clone()))
        })
        .collect()
}

impl Verifier {
    /// The admission probes: for every tenant (or `only`), each object of [`admission::CORPUS`] created with
    /// `dryRun=All` in its first namespace, as its first owner (or, with none, that namespace's `default`
    /// service account); cross-tenant objects name the next tenant's first namespace.
    ///
    /// # Errors
    /// An answer that is neither an admission (2xx) nor a refusal (4xx): no verdict can be drawn from it.
    pub async fn admission(
        &self,
        tenancy: &Tenancy,
        only: Option<&str>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<Vec<Finding>, VerifyError> {
        let tenants = tenancy.tenants();
        let ids = identities(tenancy, only);
        let mut work = Vec::new();
        for (i, t) in tenants.iter().enumerate() {
            if only.is_some_and(|o| o != t.name) {
                continue;
            }
            let (Some(ns), Some(id)) = (
                t.namespaces.iter().next(),
                ids.iter().find(|id| id.tenant == t.name),
            ) else {
                continue;
            };
            let other = tenants
                .iter()
                .cycle()
                .skip(i + 1)
                .take(tenants.len().saturating_sub(1))
                .find_map(|o| o.namespaces.iter().next())
                .map_or("kube-system", String::as_str);
            for case in admission::CORPUS {
                work.push((id, ns.as_str(), other, case));
            }
        }
        let total = work.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let done = &done;
        let mut out: Vec<Finding> = futures::stream::iter(work)
            .map(|(id, ns, other, case)| async move {
                let (path, body) = case.render(ns, other);
                let req = impersonated(&path, body.into_bytes(), &id.user, &id.groups)?;
                let answer = self.client.request::<Value>(req).await;
                progress(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    total,
                );
                let (admitted, message) = match answer {
                    Ok(_) => (true, "admitted (dryRun=All)".to_owned()),
                    Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => {
                        (false, format!("refused ({}): {}", e.code, e.message))
                    }
                    Err(source) => {
                        return Err(VerifyError::Api {
                            what: format!("dry-run create of {} in {ns}", case.name),
                            source,
                        });
                    }
                };
                let passed = admitted == (case.must == admission::Must::Admit);
                Ok(Finding {
                    probe: if case.must == admission::Must::Admit {
                        "admission/compliant"
                    } else {
                        "admission/hostile"
                    },
                    tenant: id.tenant.clone(),
                    other: None,
                    identity: id.user.clone(),
                    namespace: Some(ns.to_owned()),
                    passed,
                    skipped: false,
                    evidence: vec![format!("{}: {message}", case.name)],
                })
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        out.sort_by(|a, b| {
            (&a.tenant, a.probe, &a.evidence).cmp(&(&b.tenant, b.probe, &b.evidence))
        });
        Ok(out)
    }
}

/// Whether `evidence` (of failures) is empty, and the evidence a finding carries: the failures, or what was
/// seen to hold (`held`), so that a pass is evidence too.
fn judged(evidence: Vec<String>, held: impl FnOnce() -> String) -> (bool, Vec<String>) {
    if evidence.is_empty() {
        (true, vec![held()])
    } else {
        (false, evidence)
    }
}

/// `pass`, `fail` or `skip`.
#[must_use]
pub fn result(f: &Finding) -> &'static str {
    match (f.skipped, f.passed) {
        (true, _) => "skip",
        (false, true) => "pass",
        (false, false) => "fail",
    }
}

/// A finding as JSON, with what it covers.
#[must_use]
pub fn to_json(f: &Finding) -> Value {
    let (mtb, controls) = coverage(f.probe);
    json!({"probe": f.probe, "tenant": f.tenant, "other": f.other, "identity": f.identity,
        "namespace": f.namespace, "result": result(f),
        "evidence": f.evidence, "mtb": mtb, "controls": controls})
}

/// The RuntimeClass the mission specifies: handler, fixed overhead, and the attested pool.
pub const SECURE_CLASS: (&str, &str, &str, &str) = ("kubebid-secure", "kata-fc", "160Mi", "250m");

/// The RuntimeClasses a tenant pod may run in.
pub const KUBEBID_CLASSES: &[&str] =
    &["kubebid-secure", "kubebid-secure-snp", "kubebid-secure-tdx"];

impl Verifier {
    async fn get(&self, path: &str) -> Result<Option<Value>, VerifyError> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| VerifyError::Answer(format!("GET {path} cannot be made: {e}")))?;
        match self.client.request::<Value>(req).await {
            Ok(v) => Ok(Some(v)),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(source) => Err(VerifyError::Api {
                what: format!("GET {path}"),
                source,
            }),
        }
    }

    /// The compute probes: the `kubebid-secure` RuntimeClass as specified, and for every tenant (or
    /// `only`) every running pod in a KubeBid RuntimeClass on a node labelled by attestation
    /// (`kubebid.io/secure-runtime=true`). Read as the verifier itself.
    ///
    /// # Errors
    /// The API server refused or did not answer a read.
    pub async fn compute(
        &self,
        tenancy: &Tenancy,
        only: Option<&str>,
    ) -> Result<Vec<Finding>, VerifyError> {
        let (name, handler, memory, cpu) = SECURE_CLASS;
        let rc = self
            .get(&format!("/apis/node.k8s.io/v1/runtimeclasses/{name}"))
            .await?;
        let mut evidence = Vec::new();
        match &rc {
            None => evidence.push(format!("RuntimeClass {name} does not exist")),
            Some(rc) => {
                let want = [
                    ("handler", &rc["handler"], handler),
                    (
                        "overhead.podFixed.memory",
                        &rc["overhead"]["podFixed"]["memory"],
                        memory,
                    ),
                    (
                        "overhead.podFixed.cpu",
                        &rc["overhead"]["podFixed"]["cpu"],
                        cpu,
                    ),
                    (
                        "scheduling.nodeSelector[kubebid.io/secure-runtime]",
                        &rc["scheduling"]["nodeSelector"]["kubebid.io/secure-runtime"],
                        "true",
                    ),
                ];
                for (field, have, want) in want {
                    if have.as_str() != Some(want) {
                        evidence.push(format!("{field} is {have}, not {want:?}"));
                    }
                }
            }
        }
        let (passed, evidence) = judged(evidence, || {
            format!(
                "{name}: handler {handler}, overhead {memory}/{cpu}, nodeSelector kubebid.io/secure-runtime=true, as specified"
            )
        });
        let mut out = vec![Finding::by_verifier(
            "compute/runtime-class",
            "*",
            None,
            passed,
            evidence,
        )];
        let nodes = self.list("/api/v1/nodes").await?;
        let attested: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter(|n| n["metadata"]["labels"]["kubebid.io/secure-runtime"] == "true")
            .filter_map(|n| n["metadata"]["name"].as_str())
            .collect();
        for t in tenancy.tenants() {
            if only.is_some_and(|o| o != t.name) {
                continue;
            }
            let mut evidence = Vec::new();
            let mut running = 0usize;
            for ns in &t.namespaces {
                let pods = self.list(&format!("/api/v1/namespaces/{ns}/pods")).await?;
                for p in &pods {
                    // Every pod placed on a node and not finished: a Pending pod whose init container
                    // never ends runs all the same, and so may one whose phase is Unknown.
                    let placed = p["spec"]["nodeName"]
                        .as_str()
                        .is_some_and(|n| !n.is_empty());
                    let finished =
                        matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
                    if !placed || finished {
                        continue;
                    }
                    running += 1;
                    let pod = p["metadata"]["name"].as_str().unwrap_or("?");
                    let class = p["spec"]["runtimeClassName"].as_str().unwrap_or("");
                    if !KUBEBID_CLASSES.contains(&class) {
                        evidence.push(format!(
                            "{ns}/{pod} runs in RuntimeClass {class:?}, not a KubeBid microVM class"
                        ));
                    }
                    let node = p["spec"]["nodeName"].as_str().unwrap_or("");
                    if !attested.contains(node) {
                        evidence.push(format!(
                            "{ns}/{pod} runs on node {node:?}, which is not labelled kubebid.io/secure-runtime=true"
                        ));
                    }
                }
            }
            let (passed, evidence) = judged(evidence, || {
                format!(
                    "{running} pods placed on nodes and not finished, each in a KubeBid microVM class on an attested node"
                )
            });
            out.push(Finding::by_verifier(
                "compute/pods",
                t.name.clone(),
                None,
                passed,
                evidence,
            ));
        }
        Ok(out)
    }
}

/// The NetworkPolicies KubeBid keeps in every tenant namespace, which no tenant may change.
pub const MANAGED_POLICIES: &[&str] = &["default-deny-all", "allow-cluster-dns"];

/// `v` with what the API server writes differently but means the same: empty lists and objects left out
/// (the server omits them), and a port's protocol given (the server defaults it to TCP).
#[must_use]
pub fn normalized(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let mut x = normalized(x);
                if k == "ports"
                    && let Value::Array(ports) = &mut x
                {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert_with(|| "TCP".into());
                    }
                }
                let empty = match &x {
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    Value::Null => true,
                    _ => false,
                };
                if !empty {
                    out.insert(k.clone(), x);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalized).collect()),
        x => x.clone(),
    }
}

/// Whether `have` (as the API server keeps it) says exactly what `want` (as KubeBid renders it) says: the
/// same up to [`normalized`]. A field added to a managed policy (a narrowed `podSelector`, an `endPort`) is
/// a difference, as much as one taken away.
#[must_use]
pub fn holds(want: &Value, have: &Value) -> bool {
    normalized(want) == normalized(have)
}

impl Verifier {
    /// The network probe: in every namespace of every tenant (or `only`), KubeBid's default-deny and DNS
    /// policies are present and hold what the renderer writes for that tenant. Read as the verifier.
    ///
    /// # Errors
    /// A tenant that does not render, or a read the API server refused.
    pub async fn network(
        &self,
        set: &kubebid_model::load::ConfigSet,
        only: Option<&str>,
    ) -> Result<Vec<Finding>, VerifyError> {
        let cluster = set.cluster_spec();
        let mut out = Vec::new();
        for loaded in &set.tenants {
            let t = &loaded.object;
            let name = t.metadata.name.clone().unwrap_or_default();
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let rendered = kubebid_tenancy::render::tenant(t, &cluster).map_err(|e| {
                VerifyError::Answer(format!(
                    "tenant {name} does not render: {}",
                    e.iter()
                        .map(|f| format!("{}: {}", f.path, f.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            let mut evidence = Vec::new();
            let mut read = 0usize;
            for want in rendered.iter().filter(|o| {
                o["kind"] == "NetworkPolicy"
                    && o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| MANAGED_POLICIES.contains(&n))
            }) {
                let ns = want["metadata"]["namespace"].as_str().unwrap_or_default();
                let np = want["metadata"]["name"].as_str().unwrap_or_default();
                read += 1;
                match self
                    .get(&format!(
                        "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{np}"
                    ))
                    .await?
                {
                    None => evidence.push(format!("{ns}/{np} is missing")),
                    Some(have) if !holds(&want["spec"], &have["spec"]) => evidence.push(format!(
                        "{ns}/{np} differs from KubeBid's: {}",
                        have["spec"]
                    )),
                    Some(_) => {}
                }
            }
            let (passed, evidence) = judged(evidence, || {
                format!("{read} managed NetworkPolicies present and as KubeBid renders them")
            });
            out.push(Finding::by_verifier(
                "network/default-deny",
                name,
                None,
                passed,
                evidence,
            ));
        }
        Ok(out)
    }
}

/// Network policy kinds that can allow traffic the reachability matrix does not model: their list paths.
pub const UNMODELLED_POLICIES: &[(&str, &str)] = &[
    (
        "/apis/cilium.io/v2/ciliumnetworkpolicies",
        "CiliumNetworkPolicy",
    ),
    (
        "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies",
        "CiliumClusterwideNetworkPolicy",
    ),
    (
        "/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies",
        "AdminNetworkPolicy",
    ),
];

/// Where Cilium keeps its agent configuration.
pub const CILIUM_CONFIG: &str = "/api/v1/namespaces/kube-system/configmaps/cilium-config";
/// The annotation a Cilium agent publishes its WireGuard key in, on its node's `CiliumNode`.
pub const WG_KEY_ANNOTATION: &str = "network.cilium.io/wg-pub-key";

impl Verifier {
    /// Every item of the list at `path`: none when the kind is not served (404). A list whose items are
    /// not objects is no answer: an error, never an empty list.
    async fn list(&self, path: &str) -> Result<Vec<Value>, VerifyError> {
        let Some(mut answer) = self.get(path).await? else {
            return Ok(Vec::new());
        };
        match answer["items"].take() {
            Value::Array(a) if a.iter().all(Value::is_object) => Ok(a),
            // Go writes an empty list's nil slice as null.
            Value::Null if answer.is_object() => Ok(Vec::new()),
            _ => Err(VerifyError::Answer(format!(
                "GET {path}: the answer is not a list of objects"
            ))),
        }
    }
}

impl Verifier {
    /// The reachability probe: for every ordered pair of tenants (A, B) (A = `only` if given), whether any
    /// pod of A's namespaces may reach any pod of B's, by every NetworkPolicy and Namespace in the cluster
    /// ([`reach`]). Read as the verifier.
    ///
    /// # Errors
    /// A list the API server refused.
    pub async fn reachability(
        &self,
        set: &kubebid_model::load::ConfigSet,
        only: Option<&str>,
    ) -> Result<Vec<Finding>, VerifyError> {
        let namespaces = self.list("/api/v1/namespaces").await?;
        let policies = self
            .list("/apis/networking.k8s.io/v1/networkpolicies")
            .await?;
        let nodes = self.list("/api/v1/nodes").await?;
        let mut pods: Vec<ipnet::IpNet> = set
            .cluster_spec()
            .pod_cidrs
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        pods.extend(nodes.iter().flat_map(|n| {
            n["spec"]["podCIDRs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str()?.parse::<ipnet::IpNet>().ok())
        }));
        pods.sort_unstable();
        pods.dedup();
        let matrix = reach::Matrix::new(&namespaces, &policies, pods);
        let mut unmodelled = Vec::new();
        for (path, kind) in UNMODELLED_POLICIES {
            for mut p in self.list(path).await? {
                p["kind"] = (*kind).into();
                if reach::may_allow(&p) {
                    unmodelled.push(format!(
                        "{kind} {}{}",
                        p["metadata"]["namespace"]
                            .as_str()
                            .map_or(String::new(), |n| format!("{n}/")),
                        p["metadata"]["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
        let undecided = (!unmodelled.is_empty()).then(|| {
            format!(
                "undecided: {} {} can allow traffic and {} not modelled: {}",
                unmodelled.len(),
                if unmodelled.len() == 1 {
                    "policy of a kind the matrix does not read"
                } else {
                    "policies of kinds the matrix does not read"
                },
                if unmodelled.len() == 1 { "is" } else { "are" },
                unmodelled
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let tenancy = set.tenancy();
        let tenants = tenancy.tenants();
        let mut out = Vec::new();
        for a in tenants {
            if only.is_some_and(|o| o != a.name) {
                continue;
            }
            for b in tenants.iter().filter(|b| b.name != a.name) {
                let mut evidence: Vec<String> = a
                    .namespaces
                    .iter()
                    .flat_map(|x| b.namespaces.iter().map(move |y| (x, y)))
                    .filter_map(|(x, y)| matrix.path(x, y))
                    .collect();
                evidence.extend(undecided.clone());
                let (passed, evidence) = judged(evidence, || {
                    format!(
                        "no path from {}'s {} namespaces to {}'s {} under the cluster's {} NetworkPolicies",
                        a.name,
                        a.namespaces.len(),
                        b.name,
                        b.namespaces.len(),
                        policies.len()
                    )
                });
                out.push(Finding::by_verifier(
                    "network/reachability",
                    a.name.clone(),
                    Some(b.name.clone()),
                    passed,
                    evidence,
                ));
            }
        }
        Ok(out)
    }

    /// The encryption probe: where Cilium runs, its transparent encryption is WireGuard and every Node's
    /// agent has published a WireGuard key; where it does not, the finding says encryption could not be
    /// checked.
    ///
    /// # Errors
    /// A read the API server refused.
    pub async fn encryption(&self) -> Result<Finding, VerifyError> {
        let mut finding = Finding::by_verifier("network/encryption", "*", None, true, Vec::new());
        let Some(config) = self.get(CILIUM_CONFIG).await? else {
            finding.skipped = true;
            finding.evidence.push(
                "not checked: Cilium's configuration (kube-system/cilium-config) is not there, so pod traffic encryption could not be checked"
                    .into(),
            );
            return Ok(finding);
        };
        let data = &config["data"];
        if data["enable-ipsec"] == "true" {
            finding
                .evidence
                .push("Cilium encrypts with IPsec, not WireGuard".into());
        }
        if data["enable-wireguard"] != "true" {
            finding.evidence.push(format!(
                "Cilium's enable-wireguard is {}, not \"true\": pod traffic between nodes is not encrypted by WireGuard",
                data["enable-wireguard"]
            ));
        }
        let keyed: BTreeMap<String, bool> = self
            .list("/apis/cilium.io/v2/ciliumnodes")
            .await?
            .iter()
            .filter_map(|n| {
                Some((
                    n["metadata"]["name"].as_str()?.to_owned(),
                    n["metadata"]["annotations"][WG_KEY_ANNOTATION]
                        .as_str()
                        .is_some_and(|k| !k.is_empty()),
                ))
            })
            .collect();
        let nodes = self.list("/api/v1/nodes").await?;
        for n in &nodes {
            let name = n["metadata"]["name"].as_str().unwrap_or("?");
            match keyed.get(name) {
                None => finding
                    .evidence
                    .push(format!("node {name} has no CiliumNode: no Cilium agent runs there")),
                Some(false) => finding.evidence.push(format!(
                    "node {name}'s Cilium agent has published no WireGuard key ({WG_KEY_ANNOTATION})"
                )),
                Some(true) => {}
            }
        }
        finding.passed = finding.evidence.is_empty();
        if finding.passed {
            finding.evidence.push(format!(
                "WireGuard on, a key published by the agent of each of {} nodes",
                nodes.len()
            ));
        }
        Ok(finding)
    }
}
