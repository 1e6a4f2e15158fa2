//! The one tenancy model. Which namespaces, ingress domains, shared services, peers and priority classes each
//! tenant owns or may reach, which namespaces are the platform's, and who acts for the platform: every door
//! (the policy engine, the DNS server, the renderer, the operator, the webhook) asks these questions here and
//! nowhere else, so that no two doors can answer them differently.
//!
//! Membership comes from `Tenant.spec.namespaces` only, never from labels: a label is something a
//! namespace's editor can change. Conflicting Tenants are resolved the same way everywhere: the older Tenant
//! (then the one first by name) keeps its claim, and a Tenant that takes anything another holds, or a
//! reserved namespace, is [rejected](Tenancy::rejected) whole, so that its namespaces stay isolated under the
//! default settings instead of half-applied.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::address::{ProtectedRanges, parse_host_address};
use crate::config::{
    FieldError, KubeBidConfigSpec, OwnerKind, Tenant, TenantOwner, TenantSpec, is_dns_label,
};

/// The cluster-wide part of the model.
#[derive(Clone, Debug)]
pub struct ClusterScope {
    /// The cluster DNS domain, lower case, no trailing dot.
    pub domain: String,
    /// Platform namespaces: not tenants', not judged (`excludedNamespaces`, and KubeBid's own namespace
    /// whether listed or not: its webhook must never wait on itself).
    pub excluded: BTreeSet<String>,
    /// Namespaces every tenant may reach and resolve.
    pub shared_namespaces: BTreeSet<String>,
    /// Namespaces of the ingress controllers: tenants may admit traffic from them.
    pub ingress_controllers: BTreeSet<String>,
    /// `PriorityClasses` every tenant may name.
    pub shared_priority_classes: BTreeSet<String>,
    /// Addresses no tenant may name.
    pub protected: ProtectedRanges,
    /// KubeBid's own service account, as a user name.
    pub kubebid_user: String,
    /// Namespace of KubeBid's own service account.
    pub kubebid_namespace: String,
    /// Users whose requests are not judged.
    pub exempt_users: BTreeSet<String>,
    /// Domains no tenant may publish under: `reservedDomains` and the cluster domain (normalised).
    pub reserved_domains: Vec<String>,
}

/// One (accepted) tenant.
#[derive(Clone, Debug)]
pub struct TenantScope {
    pub name: String,
    pub namespaces: BTreeSet<String>,
    pub owners: Vec<TenantOwner>,
    /// Normalised (lower case, no trailing dot); `None`: any host no other tenant claims.
    pub ingress_domains: Option<Vec<String>>,
    /// `namespace/*` grants.
    pub shared_namespaces: BTreeSet<String>,
    /// `namespace/service` grants.
    pub shared_services: BTreeSet<(String, String)>,
    pub priority_classes: BTreeSet<String>,
    pub egress_cidrs: Option<Vec<IpNet>>,
    pub intra_tenant: bool,
    pub from_ingress_controllers: bool,
    pub external_dns: bool,
    /// Days the audit sink keeps the tenant's trail (`None`: the sink's default).
    pub audit_retention_days: Option<u32>,
    /// Its share of each node's L3 cache, in percent, when it has a partition.
    pub cache_share: Option<u8>,
    /// Its position in [`Tenancy::tenants`], for tables kept beside the model.
    pub index: usize,
}

/// A Tenant the model left out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub tenant: String,
    pub problems: Vec<FieldError>,
}

/// Who a namespace (or a pod in it) belongs to.
#[derive(Clone, Copy, Debug)]
pub enum Party<'a> {
    /// A platform namespace (`excludedNamespaces`).
    Platform,
    /// A namespace of this tenant.
    Tenant(&'a TenantScope),
    /// A namespace no tenant claims and the platform does not exclude (a new namespace, or one whose Tenant
    /// was deleted): isolated on its own, as a tenant of one namespace under the default settings.
    Unclaimed(&'a str),
}

impl Party<'_> {
    /// The tenant's name, if a tenant.
    #[must_use]
    pub fn tenant_name(&self) -> Option<&str> {
        match self {
            Party::Tenant(t) => Some(&t.name),
            _ => None,
        }
    }
}

/// Which way traffic flows, seen from the tenant's pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Into the tenant's pods, from the peer.
    Ingress,
    /// From the tenant's pods, to the peer.
    Egress,
}

/// Who makes an API request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// KubeBid itself and the configured `exemptUsers`: not judged at all.
    Exempt,
    /// Cluster administrators (`system:masters`) and Kubernetes' own control plane (controller manager,
    /// scheduler, API server, the controllers' service accounts in `kube-system`): they may act on what the
    /// platform owns (garbage collection, namespace deletion, repairs), but what they put into a tenant's
    /// namespace is still judged.
    Platform,
    /// Anyone else: tenants, their service accounts, other users.
    Tenant,
}

/// Kubernetes' control-plane users that act on tenants' objects.
const CONTROL_PLANE_USERS: &[&str] = &[
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:apiserver",
];
/// The service accounts of Kubernetes' controllers (`--use-service-account-credentials`).
const CONTROLLER_ACCOUNTS: &str = "system:serviceaccount:kube-system:";
const CLUSTER_ADMINS: &str = "system:masters";

/// Namespaces no tenant may claim, whatever the configuration excludes.
const RESERVED: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Host names that reach the node or its metadata service whatever DNS says.
const LOCAL_NAMES: &[&str] = &[
    "localhost",
    "metadata",
    "metadata.google.internal",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why a host may not be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostDenial {
    /// Under a domain another tenant claims.
    OtherTenant { tenant: String, domain: String },
    /// Outside the tenant's own domains.
    OutsideDomains(Vec<String>),
    /// Under a domain the platform reserves (`reservedDomains`, the cluster domain).
    Reserved(String),
}

/// What a name in the cluster domain belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterName {
    /// Structural names (`svc.<domain>`, the apex, `dns-version`): nobody's.
    Zone,
    /// A namespace-level name (`<ns>.svc`, pod records `<ip>.<ns>.pod`).
    Namespace(String),
    /// A service's names (`<svc>.<ns>.svc`, its endpoints and SRV records).
    Service(String, String),
}

/// Who holds a namespace, in [`Tenancy`]'s index.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Platform,
    Tenant(usize),
}

/// The model.
#[derive(Clone, Debug)]
pub struct Tenancy {
    cluster: ClusterScope,
    tenants: Vec<TenantScope>,
    /// Every namespace with a party: the platform's (`excluded`) and the accepted tenants', which never
    /// overlap. One lookup answers [`party`](Self::party) on every request.
    by_namespace: foldhash::HashMap<String, Slot>,
    by_name: HashMap<String, usize>,
    rejected: Vec<Rejection>,
}

fn normalize_domain(d: &str) -> String {
    d.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` is `domain` or under it.
fn under(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

fn parse_cidrs(v: &[String]) -> Vec<IpNet> {
    v.iter().filter_map(|c| c.parse().ok()).collect()
}

impl TenantScope {
    fn from_spec(name: &str, spec: &TenantSpec) -> Self {
        let mut shared_namespaces = BTreeSet::new();
        let mut shared_services = BTreeSet::new();
        for s in &spec.network.shared_services {
            if let Some((ns, svc)) = s.split_once('/') {
                if svc == "*" {
                    shared_namespaces.insert(ns.to_owned());
                } else {
                    shared_services.insert((ns.to_owned(), svc.to_owned()));
                }
            }
        }
        Self {
            name: name.to_owned(),
            namespaces: spec.namespaces.iter().cloned().collect(),
            owners: spec.owners.clone(),
            ingress_domains: spec
                .ingress_domains
                .as_ref()
                .map(|d| d.iter().map(|x| normalize_domain(x)).collect()),
            shared_namespaces,
            shared_services,
            priority_classes: spec.priority_classes.iter().cloned().collect(),
            egress_cidrs: spec.egress_cidrs.as_deref().map(parse_cidrs),
            intra_tenant: spec.network.intra_tenant,
            from_ingress_controllers: spec.network.from_ingress_controllers,
            external_dns: spec.network.external_dns,
            audit_retention_days: spec.audit_retention_days,
            cache_share: spec.isolation.cache_partition.map(|c| c.share),
            index: 0,
        }
    }

    /// Whether some owner of `kind` is named `name`.
    #[must_use]
    pub fn has_owner(&self, kind: OwnerKind, name: &str) -> bool {
        self.owners.iter().any(|o| o.kind == kind && o.name == name)
    }
}

impl ClusterScope {
    fn from_spec(spec: &KubeBidConfigSpec) -> Self {
        let (sa_ns, sa_name) = spec
            .service_account
            .split_once('/')
            .unwrap_or(("kubebid-system", "kubebid"));
        let mut excluded: BTreeSet<String> = spec.excluded_namespaces.iter().cloned().collect();
        excluded.insert(sa_ns.to_owned());
        Self {
            domain: normalize_domain(&spec.cluster_domain),
            excluded,
            shared_namespaces: spec.shared_namespaces.iter().cloned().collect(),
            ingress_controllers: spec.ingress_controller_namespaces.iter().cloned().collect(),
            shared_priority_classes: spec.shared_priority_classes.iter().cloned().collect(),
            protected: ProtectedRanges::new(
                &parse_cidrs(&spec.pod_cidrs),
                &parse_cidrs(&spec.service_cidrs),
                &parse_cidrs(&spec.node_cidrs),
            ),
            kubebid_user: format!("system:serviceaccount:{sa_ns}:{sa_name}"),
            kubebid_namespace: sa_ns.to_owned(),
            exempt_users: spec.exempt_users.iter().cloned().collect(),
            reserved_domains: spec
                .reserved_domains
                .iter()
                .chain(std::iter::once(&spec.cluster_domain))
                .map(|d| normalize_domain(d))
                .filter(|d| !d.is_empty())
                .collect(),
        }
    }

    /// Whether `ns` is one no tenant may claim: platform, reserved, shared, ingress controllers', KubeBid's.
    #[must_use]
    pub fn reserved(&self, ns: &str) -> Option<&'static str> {
        if RESERVED.contains(&ns) || ns.starts_with("kube-") {
            Some("a Kubernetes system namespace")
        } else if self.excluded.contains(ns) {
            Some("a platform namespace (excludedNamespaces)")
        } else if ns == self.kubebid_namespace {
            Some("KubeBid's own namespace")
        } else if self.shared_namespaces.contains(ns) {
            Some("shared with every tenant (sharedNamespaces)")
        } else if self.ingress_controllers.contains(ns) {
            Some("an ingress controller's (ingressControllerNamespaces)")
        } else {
            None
        }
    }
}

impl Tenancy {
    /// The model without configuration: the built-in cluster settings and no tenants, so every namespace but
    /// the platform's is [`Party::Unclaimed`].
    #[must_use]
    pub fn builtin() -> Self {
        Self::new(&KubeBidConfigSpec::default(), &[])
    }

    /// Builds the model. Tenants are taken oldest first (then by name); one that is invalid or takes what an
    /// earlier one holds is rejected whole and listed in [`rejected`](Self::rejected).
    #[must_use]
    pub fn new(cluster: &KubeBidConfigSpec, tenants: &[Tenant]) -> Self {
        let mut order: Vec<&Tenant> = tenants.iter().collect();
        order.sort_by(|a, b| {
            let ts = |t: &Tenant| t.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ts(a)
                .cmp(&ts(b))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        let cluster = ClusterScope::from_spec(cluster);
        let by_namespace = cluster
            .excluded
            .iter()
            .map(|ns| (ns.clone(), Slot::Platform))
            .collect();
        let mut model = Tenancy {
            cluster,
            tenants: Vec::new(),
            by_namespace,
            by_name: HashMap::new(),
            rejected: Vec::new(),
        };
        for t in order {
            let name = t.metadata.name.as_deref().unwrap_or_default();
            let problems = model.problems_of(name, &t.spec);
            if problems.is_empty() {
                model.accept(TenantScope::from_spec(name, &t.spec));
            } else {
                model.rejected.push(Rejection {
                    tenant: name.to_owned(),
                    problems,
                });
            }
        }
        model
    }

    fn accept(&mut self, t: TenantScope) {
        let i = self.tenants.len();
        let mut t = t;
        t.index = i;
        for ns in &t.namespaces {
            self.by_namespace.insert(ns.clone(), Slot::Tenant(i));
        }
        self.by_name.insert(t.name.clone(), i);
        self.tenants.push(t);
    }

    /// Everything that keeps Tenant `name` with `spec` out of the model as it stands: invalid fields,
    /// reserved namespaces, and anything another accepted tenant already holds (namespaces, overlapping
    /// ingress domains, owners). The webhook refuses such a Tenant and the operator does not act on it,
    /// both through this one function.
    #[must_use]
    // One check per claim a Tenant makes, in the order its spec lists them; each is a few lines.
    #[allow(clippy::too_many_lines)]
    pub fn problems_of(&self, name: &str, spec: &TenantSpec) -> Vec<FieldError> {
        let mut out = spec.validate();
        let field = |path: String, message: String| FieldError { path, message };
        if !is_dns_label(name) {
            out.push(field(
                "metadata.name".into(),
                format!("{name:?} is not a valid tenant name"),
            ));
        }
        let others = || self.tenants.iter().filter(|t| t.name != name);
        for (i, ns) in spec.namespaces.iter().enumerate() {
            if let Some(why) = self.cluster.reserved(ns) {
                out.push(field(
                    format!("spec.namespaces[{i}]"),
                    format!("namespace {ns:?} is {why}; no tenant may claim it"),
                ));
            }
            if let Some(other) = others().find(|t| t.namespaces.contains(ns)) {
                out.push(field(
                    format!("spec.namespaces[{i}]"),
                    format!(
                        "namespace {ns:?} already belongs to tenant {:?}",
                        other.name
                    ),
                ));
            }
            if let Some(other) = others().find(|t| {
                t.shared_namespaces.contains(ns) || t.shared_services.iter().any(|(n, _)| n == ns)
            }) {
                out.push(field(
                    format!("spec.namespaces[{i}]"),
                    format!(
                        "namespace {ns:?} is shared with tenant {:?} (its sharedServices); a tenant's namespace cannot be shared",
                        other.name
                    ),
                ));
            }
        }
        if let Some(c) = spec.isolation.cache_partition {
            let others_share: u32 = others().filter_map(|t| t.cache_share).map(u32::from).sum();
            if others_share + u32::from(c.share) > crate::config::MAX_CACHE_SHARE {
                out.push(field(
                    "spec.isolation.cachePartition.share".into(),
                    format!(
                        "{}% with the other tenants' {others_share}% passes {}% of the cache; the rest stays with the node",
                        c.share,
                        crate::config::MAX_CACHE_SHARE
                    ),
                ));
            }
        }
        for (i, s) in spec.network.shared_services.iter().enumerate() {
            if let Some((ns, _)) = s.split_once('/')
                && let Some(other) = others().find(|t| t.namespaces.contains(ns))
            {
                out.push(field(
                    format!("spec.network.sharedServices[{i}]"),
                    format!(
                        "namespace {ns:?} belongs to tenant {:?}; only platform namespaces can be shared",
                        other.name
                    ),
                ));
            }
        }
        for (i, d) in spec.ingress_domains.iter().flatten().enumerate() {
            let d = normalize_domain(d);
            if let Some(r) = self
                .cluster
                .reserved_domains
                .iter()
                .find(|r| under(&d, r) || under(r, &d))
            {
                out.push(field(
                    format!("spec.ingressDomains[{i}]"),
                    format!("ingress domain {d:?} overlaps {r:?}, which the platform reserves"),
                ));
            }
            for other in others() {
                if let Some(theirs) = other
                    .ingress_domains
                    .iter()
                    .flatten()
                    .find(|x| under(&d, x) || under(x, &d))
                {
                    let message = if *theirs == d {
                        format!(
                            "ingress domain {d:?} already belongs to tenant {:?}",
                            other.name
                        )
                    } else {
                        format!(
                            "ingress domain {d:?} overlaps {theirs:?}, which belongs to tenant {:?}",
                            other.name
                        )
                    };
                    out.push(field(format!("spec.ingressDomains[{i}]"), message));
                }
            }
        }
        for (i, o) in spec.owners.iter().enumerate() {
            if let Some(other) = others().find(|t| {
                t.owners
                    .iter()
                    .any(|x| x.kind == o.kind && x.name == o.name && x.namespace == o.namespace)
            }) {
                out.push(field(
                    format!("spec.owners[{i}]"),
                    format!("owner {:?} already owns tenant {:?}", o.name, other.name),
                ));
            }
            if let (OwnerKind::ServiceAccount, Some(ns)) = (o.kind, &o.namespace)
                && let Some(other) = others().find(|t| t.namespaces.contains(ns))
            {
                out.push(field(
                    format!("spec.owners[{i}].namespace"),
                    format!(
                        "service account {ns}/{} belongs to tenant {:?}",
                        o.name, other.name
                    ),
                ));
            }
        }
        for (i, c) in spec.egress_cidrs.iter().flatten().enumerate() {
            let Ok(cidr) = c.parse::<IpNet>() else {
                continue; // reported by validate()
            };
            if let Some((_, range, why)) = self
                .cluster
                .protected
                .overlaps(cidr)
                .find(|(overlap, _, _)| *overlap == crate::address::canonical_net(cidr))
            {
                out.push(field(
                    format!("spec.egressCidrs[{i}]"),
                    format!(
                        "{cidr} lies inside {range}, {}; tenants may never reach it",
                        why.describe()
                    ),
                ));
            }
        }
        out
    }

    /// The cluster-wide settings.
    #[must_use]
    pub fn cluster(&self) -> &ClusterScope {
        &self.cluster
    }

    /// Accepted tenants.
    #[must_use]
    pub fn tenants(&self) -> &[TenantScope] {
        &self.tenants
    }

    /// An accepted tenant by name.
    #[must_use]
    pub fn tenant(&self, name: &str) -> Option<&TenantScope> {
        self.by_name.get(name).map(|&i| &self.tenants[i])
    }

    /// Tenants left out, with why.
    #[must_use]
    pub fn rejected(&self) -> &[Rejection] {
        &self.rejected
    }

    /// Who namespace `ns` belongs to.
    #[must_use]
    pub fn party<'a>(&'a self, ns: &'a str) -> Party<'a> {
        match self.by_namespace.get(ns) {
            Some(Slot::Platform) => Party::Platform,
            Some(&Slot::Tenant(i)) => Party::Tenant(&self.tenants[i]),
            None => Party::Unclaimed(ns),
        }
    }

    /// The tenant that claims `ns`.
    #[must_use]
    pub fn tenant_of(&self, ns: &str) -> Option<&TenantScope> {
        match self.by_namespace.get(ns) {
            Some(&Slot::Tenant(i)) => self.tenants.get(i),
            _ => None,
        }
    }

    /// The tenant a user acts for: one that names the user, one of its groups or (for a service account)
    /// the account as an owner; else the tenant that owns a service account's namespace. Tenants are tried
    /// in the model's order (oldest first), so a user owning two tenants is attributed to the older.
    #[must_use]
    pub fn tenant_of_user(&self, user: &str, groups: &[String]) -> Option<&TenantScope> {
        let account = user
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'));
        self.tenants
            .iter()
            .find(|t| {
                t.owners.iter().any(|o| match o.kind {
                    OwnerKind::User => o.name == user,
                    OwnerKind::Group => groups.contains(&o.name),
                    OwnerKind::ServiceAccount => account.is_some_and(|(ns, name)| {
                        o.name == name && o.namespace.as_deref() == Some(ns)
                    }),
                })
            })
            .or_else(|| account.and_then(|(ns, _)| self.tenant_of(ns)))
    }

    /// Whether `party` owns namespace `ns`.
    #[must_use]
    pub fn owns(&self, party: Party<'_>, ns: &str) -> bool {
        match party {
            Party::Platform => true,
            Party::Tenant(t) => t.namespaces.contains(ns),
            Party::Unclaimed(own) => own == ns,
        }
    }

    /// Whether `party` may reach (and resolve) every pod and name of namespace `ns`: its own namespaces, the
    /// cluster's shared namespaces, and `ns/*` grants.
    #[must_use]
    pub fn reaches_namespace(&self, party: Party<'_>, ns: &str) -> bool {
        self.owns(party, ns)
            || self.cluster.shared_namespaces.contains(ns)
            || matches!(party, Party::Tenant(t) if t.shared_namespaces.contains(ns))
    }

    /// Whether `party` may reach (and resolve) Service `svc` of namespace `ns`.
    #[must_use]
    pub fn reaches_service(&self, party: Party<'_>, ns: &str, svc: &str) -> bool {
        self.reaches_namespace(party, ns)
            || matches!(party, Party::Tenant(t)
                if t.shared_services.iter().any(|(n, s)| n == ns && s == svc))
    }

    /// Whether `party` may reach a name of the cluster zone.
    #[must_use]
    pub fn reaches_name(&self, party: Party<'_>, name: &ClusterName) -> bool {
        match name {
            ClusterName::Zone => true,
            ClusterName::Namespace(ns) => self.reaches_namespace(party, ns),
            ClusterName::Service(ns, svc) => self.reaches_service(party, ns, svc),
        }
    }

    /// Whether a `NetworkPolicy` of `party` may name namespace `ns` as a peer: namespaces it reaches whole,
    /// and for ingress also the ingress controllers' namespaces.
    #[must_use]
    pub fn may_peer(&self, party: Party<'_>, ns: &str, direction: Direction) -> bool {
        self.reaches_namespace(party, ns)
            || (direction == Direction::Ingress && self.cluster.ingress_controllers.contains(ns))
    }

    /// Whether `party` may resolve names outside the cluster.
    #[must_use]
    pub fn resolves_external(&self, party: Party<'_>) -> bool {
        match party {
            Party::Tenant(t) => t.external_dns,
            Party::Platform | Party::Unclaimed(_) => true,
        }
    }

    /// The tenant that claims `host` (it is one of the tenant's domains or under one), with the domain.
    #[must_use]
    pub fn domain_owner(&self, host: &str) -> Option<(&TenantScope, &str)> {
        let host = normalize_domain(host);
        self.tenants
            .iter()
            .flat_map(|t| {
                t.ingress_domains
                    .iter()
                    .flatten()
                    .map(move |d| (t, d.as_str()))
            })
            .filter(|(_, d)| under(&host, d))
            .max_by_key(|(_, d)| d.len())
    }

    /// Whether `party` may publish `host` (an Ingress rule or TLS host): never under another tenant's
    /// domain, and for a tenant with domains, only under its own.
    ///
    /// # Errors
    /// Why the host is not the party's to publish.
    pub fn may_publish_host(&self, party: Party<'_>, host: &str) -> Result<(), HostDenial> {
        let host = normalize_domain(host);
        if !matches!(party, Party::Platform)
            && let Some(r) = self
                .cluster
                .reserved_domains
                .iter()
                .find(|r| under(&host, r))
        {
            return Err(HostDenial::Reserved(r.clone()));
        }
        if let Some((owner, domain)) = self.domain_owner(&host)
            && !matches!(party, Party::Tenant(t) if t.name == owner.name)
            && !matches!(party, Party::Platform)
        {
            return Err(HostDenial::OtherTenant {
                tenant: owner.name.clone(),
                domain: domain.to_owned(),
            });
        }
        if let Party::Tenant(t) = party
            && let Some(domains) = &t.ingress_domains
            && !domains.iter().any(|d| under(&host, d))
        {
            return Err(HostDenial::OutsideDomains(domains.clone()));
        }
        Ok(())
    }

    /// The `PriorityClasses` `party`'s pods may name.
    #[must_use]
    pub fn priority_classes(&self, party: Party<'_>) -> BTreeSet<String> {
        let mut all = self.cluster.shared_priority_classes.clone();
        if let Party::Tenant(t) = party {
            all.extend(t.priority_classes.iter().cloned());
        }
        all
    }

    /// Whether `party`'s pods may name `class` (no class at all is always allowed).
    #[must_use]
    pub fn may_use_priority_class(&self, party: Party<'_>, class: &str) -> bool {
        class.is_empty()
            || matches!(party, Party::Platform)
            || self.cluster.shared_priority_classes.contains(class)
            || matches!(party, Party::Tenant(t) if t.priority_classes.contains(class))
    }

    /// Who a request comes from.
    #[must_use]
    pub fn actor(&self, user: &str, groups: &[String]) -> Actor {
        if user == self.cluster.kubebid_user || self.cluster.exempt_users.contains(user) {
            Actor::Exempt
        } else if groups.iter().any(|g| g == CLUSTER_ADMINS)
            || user.starts_with(CONTROLLER_ACCOUNTS)
            || CONTROL_PLANE_USERS.contains(&user)
        {
            Actor::Platform
        } else {
            Actor::Tenant
        }
    }

    /// The same question as [`actor`](Self::actor) `== Platform`, as a CEL expression over an admission
    /// request, for webhook match conditions.
    #[must_use]
    pub fn platform_actor_cel() -> String {
        let users = CONTROL_PLANE_USERS
            .iter()
            .map(|u| format!("'{u}'"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "(has(request.userInfo.groups) && '{CLUSTER_ADMINS}' in request.userInfo.groups) || request.userInfo.username.startsWith('{CONTROLLER_ACCOUNTS}') || request.userInfo.username in [{users}]"
        )
    }

    /// What a name of the cluster zone (absolute, any case, with or without the trailing dot) belongs to;
    /// `None` if it is outside the zone.
    #[must_use]
    pub fn cluster_name(&self, name: &str) -> Option<ClusterName> {
        let n = normalize_domain(name);
        let domain = &self.cluster.domain;
        let local = if n == *domain {
            ""
        } else {
            n.strip_suffix(domain.as_str())?.strip_suffix('.')?
        };
        Some(local_name(local))
    }

    /// Where an `ExternalName` target, as the pods and ingress controllers that follow it resolve it, lands
    /// in the cluster. `Err` names why the target may never be used (a local or metadata address).
    ///
    /// # Errors
    /// The target is an address in a protected range, or a name that always means the local host.
    pub fn external_name_targets(&self, target: &str) -> Result<Vec<ClusterName>, UnusableTarget> {
        if let Some(ip) = parse_host_address(target) {
            if let Some((range, why)) = self.cluster.protected.of_address(ip) {
                return Err(UnusableTarget::ProtectedAddress {
                    target: target.to_owned(),
                    address: crate::address::canonical(ip).to_string(),
                    range: range.to_string(),
                    why: why.describe().to_string(),
                });
            }
            return Ok(Vec::new());
        }
        let absolute = target.ends_with('.');
        let n = normalize_domain(target);
        if LOCAL_NAMES.contains(&n.as_str()) || n.ends_with(".localhost") {
            return Err(UnusableTarget::LocalHost(target.to_owned()));
        }
        let mut out = Vec::new();
        if let Some(name) = self.cluster_name(&n) {
            out.push(name);
        }
        if absolute {
            return Ok(out);
        }
        // Resolvers try a relative name with the pod's search domains first (or after, with many dots).
        if !n.contains('.') {
            return Err(UnusableTarget::SingleLabel(target.to_owned()));
        }
        // `n` is lower-cased above, so these suffix tests are not case-sensitive.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        let qualified = n.ends_with(".svc") || n.ends_with(".pod");
        if qualified {
            out.push(local_name(&n));
        } else if let Some(last) = n.rsplit('.').next()
            && self.is_known_namespace(last)
        {
            out.push(local_name(&format!("{n}.svc")));
        }
        Ok(out)
    }

    /// Whether a namespace of that name is known to exist or be claimed: tenants', the platform's,
    /// Kubernetes' own, the ingress controllers'.
    fn is_known_namespace(&self, ns: &str) -> bool {
        self.by_namespace.contains_key(ns)
            || self.cluster.reserved(ns).is_some()
            || self.cluster.excluded.contains(ns)
    }
}

/// A name relative to the cluster domain (`web.tenant-acme.svc`, `10-0-0-1.tenant-acme.pod`, or empty for
/// the apex).
fn local_name(local: &str) -> ClusterName {
    let labels: Vec<&str> = if local.is_empty() {
        Vec::new()
    } else {
        local.split('.').collect()
    };
    match labels.iter().rposition(|l| *l == "svc" || *l == "pod") {
        // `svc` or `pod` alone (or nothing before it): structural.
        Some(0) | None if labels.len() <= 1 => ClusterName::Zone,
        Some(i) if i + 1 == labels.len() && i >= 1 => {
            let ns = labels[i - 1].to_owned();
            if labels[i] == "svc" && i >= 2 {
                ClusterName::Service(ns, labels[i - 2].to_owned())
            } else {
                ClusterName::Namespace(ns)
            }
        }
        // Anything else in the zone (`dns-version`, a name with labels after `svc`) belongs to no namespace;
        // claim the whole zone for it so that only the platform reaches it.
        _ => ClusterName::Namespace(String::new()),
    }
}

/// An address as the model reads it, for callers that hold text.
#[must_use]
pub fn host_address(name: &str) -> Option<IpAddr> {
    parse_host_address(name)
}

/// Why a name or address may never be the target of an `ExternalName` (or anything followed like one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnusableTarget {
    /// An address in a protected range.
    #[error("{target:?} is the address {address}, in {range} ({why})")]
    ProtectedAddress {
        target: String,
        address: String,
        range: String,
        why: String,
    },
    /// A name that always means the local host or its metadata service.
    #[error("{0:?} always names the local host or its metadata service")]
    LocalHost(String),
    /// A single label, which resolves in whoever follows it.
    #[error(
        "{0:?} is a single label: it resolves in the namespace of whoever follows it (an ingress controller, the platform)"
    )]
    SingleLabel(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TenantSpec;

    fn tenant(name: &str, ns: &[&str], domains: Option<&[&str]>) -> Tenant {
        let mut spec = TenantSpec::builtin_default();
        spec.namespaces = ns.iter().map(|s| (*s).to_owned()).collect();
        spec.ingress_domains = domains.map(|d| d.iter().map(|s| (*s).to_owned()).collect());
        let mut t = Tenant::new(name, spec);
        t.metadata.name = Some(name.to_owned());
        t
    }

    #[test]
    fn the_older_tenant_keeps_a_contested_claim_and_the_other_is_rejected_whole() {
        let a = tenant("acme", &["a1"], Some(&["acme.example"]));
        let b = tenant("beta", &["b1", "a1"], None);
        let m = Tenancy::new(&KubeBidConfigSpec::default(), &[b, a]);
        assert!(m.tenant("acme").is_some());
        assert!(m.tenant("beta").is_none());
        // beta's uncontested namespace is not half-applied: it is nobody's.
        assert!(matches!(m.party("b1"), Party::Unclaimed("b1")));
        assert!(
            m.rejected()[0].problems[0]
                .message
                .contains("already belongs")
        );
    }

    #[test]
    fn domains_are_reserved_cluster_wide_and_overlaps_conflict() {
        let acme = tenant("acme", &["a1"], Some(&["acme.example"]));
        let globex = tenant("globex", &["g1"], None);
        let m = Tenancy::new(&KubeBidConfigSpec::default(), &[acme, globex]);
        let g = m.party("g1");
        assert_eq!(
            m.may_publish_host(g, "shop.ACME.example."),
            Err(HostDenial::OtherTenant {
                tenant: "acme".into(),
                domain: "acme.example".into()
            })
        );
        assert!(m.may_publish_host(g, "globex.example").is_ok());
        assert!(m.may_publish_host(g, "notacme.example").is_ok());
        assert!(m.may_publish_host(m.party("a1"), "x.acme.example").is_ok());
        let mut spec = TenantSpec::builtin_default();
        spec.namespaces = vec!["x".into()];
        spec.ingress_domains = Some(vec!["shop.acme.example".into()]);
        assert!(m.problems_of("x", &spec)[0].message.contains("overlaps"));
    }

    #[test]
    fn reserved_namespaces_and_identities() {
        let m = Tenancy::builtin();
        let mut spec = TenantSpec::builtin_default();
        spec.namespaces = vec![
            "kube-system".into(),
            "default".into(),
            "kube-flannel".into(),
        ];
        assert_eq!(m.problems_of("t", &spec).len(), 3);
        assert_eq!(
            m.actor(
                "system:serviceaccount:kube-system:generic-garbage-collector",
                &[]
            ),
            Actor::Platform
        );
        assert_eq!(
            m.actor("system:serviceaccount:kubebid-system:kubebid", &[]),
            Actor::Exempt
        );
        assert_eq!(m.actor("root", &["system:masters".into()]), Actor::Platform);
        assert_eq!(
            m.actor("system:serviceaccount:tenant-acme:default", &[]),
            Actor::Tenant
        );
    }

    #[test]
    fn external_names_as_resolvers_follow_them() {
        let m = Tenancy::new(
            &KubeBidConfigSpec::default(),
            &[
                tenant("acme", &["a1"], None),
                tenant("globex", &["g1"], None),
            ],
        );
        let svc = |ns: &str, s: &str| ClusterName::Service(ns.into(), s.into());
        assert_eq!(
            m.external_name_targets("web.g1.svc.cluster.local"),
            Ok(vec![svc("g1", "web")])
        );
        assert_eq!(
            m.external_name_targets("web.g1.svc"),
            Ok(vec![svc("g1", "web")])
        );
        assert_eq!(
            m.external_name_targets("web.g1"),
            Ok(vec![svc("g1", "web")])
        );
        assert_eq!(m.external_name_targets("db.example.com"), Ok(vec![]));
        assert!(m.external_name_targets("web").is_err());
        assert!(m.external_name_targets("2852039166").is_err());
        assert!(
            m.external_name_targets("metadata.google.internal.")
                .is_err()
        );
        assert_eq!(
            m.external_name_targets("10-0-0-1.g1.pod.cluster.local."),
            Ok(vec![ClusterName::Namespace("g1".into())])
        );
    }
}
