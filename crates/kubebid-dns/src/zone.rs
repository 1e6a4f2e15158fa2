//! The cluster zone as one tenant-aware index: every name the Kubernetes DNS specification defines for the
//! cluster's Services, EndpointSlices and Pods, each tagged with the namespace (and service) that owns it,
//! plus which client address belongs to which tenant. Built from plain objects, no I/O; rebuilt whole on
//! every change and swapped in atomically by the server.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceSpec};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kubebid_model::config::{KubeBidConfigSpec, Tenant};
use kubebid_model::tenancy::{Party, Tenancy, TenantScope};

/// TTL of every record in the cluster zone, and of negative answers (the SOA minimum): CoreDNS's default.
pub const CLUSTER_TTL: u32 = 5;

/// The schema version of the Kubernetes DNS specification implemented, served at `dns-version.<zone>`.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// What a client whose address is not a known pod may resolve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownClients {
    /// External names only; every cluster name is NXDOMAIN.
    #[default]
    Deny,
    /// Everything, as a platform pod may.
    Allow,
}

/// The objects the zone is built from.
#[derive(Clone, Debug, Default)]
pub struct ClusterObjects {
    pub namespaces: Vec<Namespace>,
    pub services: Vec<Service>,
    pub endpoint_slices: Vec<EndpointSlice>,
    pub pods: Vec<Pod>,
}

/// Who owns a name, which decides who may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Structural names (`svc.<zone>`, the apex): visible to all and revealing nothing.
    Zone,
    /// A namespace-level name (`<ns>.svc.<zone>`, pod records).
    Namespace(Arc<str>),
    /// A service's names (its A/AAAA/CNAME, SRV and endpoint records).
    Service(Arc<str>, Arc<str>),
}

/// One name of the zone.
#[derive(Clone, Debug)]
pub struct Node {
    pub owner: Owner,
    /// Records at this name; empty for an empty non-terminal (NODATA when visible).
    pub records: Vec<Record>,
    /// Additional-section records (A/AAAA of SRV targets).
    pub additionals: Vec<Record>,
}

/// The client a query came from.
#[derive(Clone, Copy, Debug)]
pub enum Client<'a> {
    /// A pod in one of the platform's namespaces (`excludedNamespaces`).
    Platform,
    /// A pod of this tenant.
    Tenant(&'a TenantScope),
    /// A pod in a namespace no tenant claims (one whose Tenant was deleted, say): it resolves its own
    /// namespace and the shared ones, never the platform's view.
    Unclaimed(&'a str),
    /// An address that is no known pod.
    Unknown,
}

impl Client<'_> {
    /// The tenant's name, for metrics and logs.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Client::Tenant(t) => Some(&t.name),
            _ => None,
        }
    }
}

/// Which visibility class a client address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientClass {
    Platform,
    Tenant(usize),
    Unclaimed(usize),
}

/// The index.
#[derive(Debug)]
pub struct Zone {
    /// The cluster domain, lower case, with the trailing dot.
    pub origin: Name,
    names: HashMap<String, Node>,
    reverse: HashMap<IpAddr, (Owner, Name)>,
    /// Client address to whose pod it is.
    clients: HashMap<IpAddr, ClientClass>,
    /// Who owns and may reach what: the model every KubeBid door shares.
    tenancy: Tenancy,
    /// Namespaces of no tenant that have client pods, indexed by [`ClientClass::Unclaimed`].
    unclaimed: Vec<Arc<str>>,
    cluster_cidrs: Vec<IpNet>,
    soa: Record,
    unknown: UnknownClients,
    /// Problems in the input (an unparsable address, a name that is no DNS name); skipped, not fatal.
    pub warnings: Vec<String>,
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(text).ok().map(|n| n.to_lowercase())
}

fn key_of(n: &Name) -> String {
    let mut s = n.to_lowercase().to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// [`key_of`] for names built here, which are lower case already.
fn key_of_lower(n: &Name) -> String {
    let mut s = n.to_ascii();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

fn record(owner: &Name, data: RData) -> Record {
    Record::from_rdata(owner.clone(), CLUSTER_TTL, data)
}

fn address_record(owner: &Name, ip: IpAddr) -> Record {
    match ip {
        IpAddr::V4(v4) => record(owner, RData::A(A(v4))),
        IpAddr::V6(v6) => record(owner, RData::AAAA(AAAA(v6))),
    }
}

/// `10-0-0-1`, `2001-db8--1`: an address as one DNS label.
fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => v6.to_string().replace(':', "-"),
    }
}

/// A service's named ports as (lower-case name, lower-case protocol).
type NamedPorts = Vec<(String, String)>;

/// A service as (namespace, name).
type ServiceKey = (String, String);

/// The named ports of each headless service: what its EndpointSlices may publish SRV records for.
type HeadlessPorts = HashMap<ServiceKey, NamedPorts>;

/// The names and reverse records being collected, and the problems met on the way.
struct Builder {
    origin: Name,
    names: HashMap<String, Node>,
    reverse: HashMap<IpAddr, (Owner, Name)>,
    warnings: Vec<String>,
}

impl Builder {
    /// An empty zone at `origin`.
    fn new(origin: Name) -> Self {
        Self {
            origin,
            names: HashMap::new(),
            reverse: HashMap::new(),
            warnings: Vec::new(),
        }
    }

    /// `<labels>.<origin>`, or `None` when that is no DNS name.
    fn sub(&self, labels: &str) -> Option<Name> {
        name(&format!("{labels}.{}", self.origin))
    }

    /// The node at `n`, created with its ancestors when missing.
    fn node(&mut self, n: &Name, owner: &Owner) -> &mut Node {
        // Every ancestor up to the origin exists too (empty non-terminals), owned by the same or a wider owner.
        let mut parent = n.base_name();
        while parent.num_labels() > self.origin.num_labels() {
            let key = key_of_lower(&parent);
            if self.names.contains_key(&key) {
                // Its ancestors were added with it.
                break;
            }
            self.names.insert(
                key,
                Node {
                    owner: structural_owner(&parent, &self.origin, owner),
                    records: Vec::new(),
                    additionals: Vec::new(),
                },
            );
            parent = parent.base_name();
        }
        self.names.entry(key_of_lower(n)).or_insert_with(|| Node {
            owner: owner.clone(),
            records: Vec::new(),
            additionals: Vec::new(),
        })
    }

    /// Adds `r` at `n` unless it is there already.
    fn add(&mut self, n: &Name, owner: &Owner, r: Record) {
        let node = self.node(n, owner);
        if !node.records.contains(&r) {
            node.records.push(r);
        }
    }

    /// Points the reverse name of `ip` at `target`, unless an earlier object claimed it.
    fn ptr(&mut self, ip: IpAddr, owner: &Owner, target: &Name) {
        // The first writer wins: a service's cluster IP before an endpoint, an endpoint before a bare pod.
        self.reverse
            .entry(ip)
            .or_insert_with(|| (owner.clone(), target.clone()));
    }

    /// The apex (SOA, NS), `dns-version` and the structural `svc` and `pod` names; returns the SOA.
    fn apex(&mut self) -> Record {
        let origin = self.origin.clone();
        let mname = self.sub("ns.dns").unwrap_or_else(|| origin.clone());
        let rname = self.sub("hostmaster").unwrap_or_else(|| origin.clone());
        let soa = Record::from_rdata(
            origin.clone(),
            CLUSTER_TTL,
            RData::SOA(SOA::new(
                mname.clone(),
                rname,
                1,
                7200,
                1800,
                86400,
                CLUSTER_TTL,
            )),
        );
        self.add(&origin, &Owner::Zone, soa.clone());
        self.add(&origin, &Owner::Zone, record(&origin, RData::NS(NS(mname))));
        if let Some(v) = self.sub("dns-version") {
            self.add(
                &v,
                &Owner::Zone,
                record(&v, RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()]))),
            );
        }
        for structural in ["svc", "pod"] {
            if let Some(n) = self.sub(structural) {
                self.node(&n, &Owner::Zone);
            }
        }
        soa
    }

    /// `<ns>.svc` and `<ns>.pod` for every namespace, which exist even without services or pods.
    fn namespaces(&mut self, namespaces: &[Namespace]) {
        for ns in namespaces {
            let Some(n) = ns.metadata.name.as_deref() else {
                continue;
            };
            let owner = Owner::Namespace(Arc::from(n));
            for structural in ["svc", "pod"] {
                if let Some(x) = self.sub(&format!("{n}.{structural}")) {
                    self.node(&x, &owner);
                }
            }
        }
    }

    /// Every service's names; returns the headless ones, whose addresses come from their EndpointSlices.
    fn services(&mut self, services: &[Service]) -> HeadlessPorts {
        let mut headless = HeadlessPorts::new();
        for svc in services {
            if let Some((key, ports)) = self.service(svc) {
                headless.insert(key, ports);
            }
        }
        headless
    }

    /// One service: `ExternalName` (CNAME), `ClusterIP` (A/AAAA, PTR, SRV per named port) or headless (only
    /// its name here; returned with its named ports).
    fn service(&mut self, svc: &Service) -> Option<(ServiceKey, NamedPorts)> {
        let (Some(svc_name), Some(ns)) = (
            svc.metadata.name.as_deref(),
            svc.metadata.namespace.as_deref(),
        ) else {
            return None;
        };
        let spec = svc.spec.as_ref()?;
        let Some(svc_fqdn) = self.sub(&format!("{svc_name}.{ns}.svc")) else {
            self.warnings
                .push(format!("Service {ns}/{svc_name}: not a DNS name"));
            return None;
        };
        let owner = Owner::Service(Arc::from(ns), Arc::from(svc_name));
        if spec.type_.as_deref() == Some("ExternalName") {
            self.external_name(ns, svc_name, spec, &svc_fqdn, &owner);
            return None;
        }
        let mut cluster_ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
        if cluster_ips.is_empty()
            && let Some(ip) = &spec.cluster_ip
        {
            cluster_ips.push(ip.clone());
        }
        if cluster_ips.iter().any(|ip| ip == "None") {
            self.node(&svc_fqdn, &owner);
            return Some(((ns.to_owned(), svc_name.to_owned()), named_ports(spec)));
        }
        let ips = ips_of(
            &cluster_ips,
            &format!("Service {ns}/{svc_name} clusterIP"),
            &mut self.warnings,
        );
        self.node(&svc_fqdn, &owner);
        for ip in &ips {
            self.add(&svc_fqdn, &owner, address_record(&svc_fqdn, *ip));
            self.ptr(*ip, &owner, &svc_fqdn);
        }
        self.service_srv(ns, svc_name, spec, &svc_fqdn, &owner, &ips);
        None
    }

    /// An `ExternalName` service: a CNAME to its target.
    fn external_name(
        &mut self,
        ns: &str,
        svc_name: &str,
        spec: &ServiceSpec,
        svc_fqdn: &Name,
        owner: &Owner,
    ) {
        let target = spec.external_name.as_deref().and_then(|t| {
            name(&if t.ends_with('.') {
                t.to_owned()
            } else {
                format!("{t}.")
            })
        });
        match target {
            Some(target) => {
                self.add(
                    svc_fqdn,
                    owner,
                    record(svc_fqdn, RData::CNAME(CNAME(target))),
                );
            }
            None => self.warnings.push(format!(
                "Service {ns}/{svc_name}: externalName {:?} is not a DNS name",
                spec.external_name
            )),
        }
    }

    /// A `ClusterIP` service's SRV record per named port, pointing at the service name, with its addresses
    /// as additionals.
    fn service_srv(
        &mut self,
        ns: &str,
        svc_name: &str,
        spec: &ServiceSpec,
        svc_fqdn: &Name,
        owner: &Owner,
        ips: &[IpAddr],
    ) {
        for p in spec.ports.iter().flatten() {
            let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            let Some(srv_name) = self.sub(&format!("_{pname}._{proto}.{svc_name}.{ns}.svc")) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            self.add(
                &srv_name,
                owner,
                record(
                    &srv_name,
                    RData::SRV(SRV::new(0, 100, port, svc_fqdn.clone())),
                ),
            );
            let additionals: Vec<Record> =
                ips.iter().map(|ip| address_record(svc_fqdn, *ip)).collect();
            self.node(&srv_name, owner).additionals = additionals;
        }
    }

    /// The EndpointSlices of headless services: their ready addresses under the service name, one name
    /// per endpoint, SRV per endpoint and port.
    fn endpoint_slices(&mut self, slices: &[EndpointSlice], headless: &HeadlessPorts) {
        for slice in slices {
            self.endpoint_slice(slice, headless);
        }
    }

    /// One EndpointSlice, if it belongs to a headless service.
    fn endpoint_slice(&mut self, slice: &EndpointSlice, headless: &HeadlessPorts) {
        let Some(ns) = slice.metadata.namespace.as_deref() else {
            return;
        };
        let Some(svc_name) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            return;
        };
        let Some(ports) = headless.get(&(ns.to_owned(), svc_name.clone())) else {
            return;
        };
        let Some(svc_fqdn) = self.sub(&format!("{svc_name}.{ns}.svc")) else {
            return;
        };
        let owner = Owner::Service(Arc::from(ns), Arc::from(svc_name.as_str()));
        for ep in slice.endpoints.iter().flatten() {
            // Not-ready endpoints are left out unless the service publishes them (which the API server
            // reflects in `conditions.ready` already for publishNotReadyAddresses).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            let ips = ips_of(
                &ep.addresses,
                &format!("EndpointSlice {ns}/{svc_name}"),
                &mut self.warnings,
            );
            for ip in ips {
                let host = ep.hostname.clone().unwrap_or_else(|| dashed(ip));
                let Some(host_fqdn) = self.sub(&format!("{host}.{svc_name}.{ns}.svc")) else {
                    continue;
                };
                self.add(&svc_fqdn, &owner, address_record(&svc_fqdn, ip));
                self.add(&host_fqdn, &owner, address_record(&host_fqdn, ip));
                if ep.hostname.is_some() {
                    self.ptr(ip, &owner, &host_fqdn);
                }
                let endpoint = Endpoint {
                    ns,
                    svc_name,
                    owner: &owner,
                    host_fqdn: &host_fqdn,
                    ip,
                };
                self.endpoint_srv(&endpoint, slice, ports);
            }
        }
    }

    /// One endpoint address's SRV record per port of its slice that the service names (every port when
    /// the service names none), with the address as an additional.
    fn endpoint_srv(
        &mut self,
        ep: &Endpoint<'_>,
        slice: &EndpointSlice,
        service_ports: &[(String, String)],
    ) {
        let Endpoint {
            ns,
            svc_name,
            owner,
            host_fqdn,
            ip,
        } = *ep;
        for p in slice.ports.iter().flatten() {
            let Some(pname) = p.name.as_deref().filter(|n| !n.is_empty()) else {
                continue;
            };
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
            if !service_ports
                .iter()
                .any(|(n, pr)| n == pname && *pr == proto)
                && !service_ports.is_empty()
            {
                continue;
            }
            let (Some(srv_name), Some(port)) = (
                self.sub(&format!("_{pname}._{proto}.{svc_name}.{ns}.svc")),
                p.port.and_then(|x| u16::try_from(x).ok()),
            ) else {
                continue;
            };
            self.add(
                &srv_name,
                owner,
                record(
                    &srv_name,
                    RData::SRV(SRV::new(0, 100, port, host_fqdn.clone())),
                ),
            );
            let extra = address_record(host_fqdn, ip);
            let node = self.node(&srv_name, owner);
            if !node.additionals.contains(&extra) {
                node.additionals.push(extra);
            }
        }
    }

    /// Pod names (`a-b-c-d.<ns>.pod`, with PTR) for every address of every live pod off the host network;
    /// returns which namespace each address belongs to, and the addresses two namespaces claim.
    fn pods(&mut self, pods: &[Pod]) -> (HashMap<IpAddr, Arc<str>>, HashSet<IpAddr>) {
        let mut clients = HashMap::new();
        let mut shared_ips = HashSet::new();
        for pod in pods {
            let Some((ns, ips)) = pod_addresses(pod) else {
                continue;
            };
            let owner = Owner::Namespace(Arc::from(ns));
            for ip in ips_of(
                &ips,
                &format!("Pod {ns}/{}", pod.metadata.name.as_deref().unwrap_or("?")),
                &mut self.warnings,
            ) {
                if let Some(previous) = clients.insert(ip, Arc::<str>::from(ns))
                    && &*previous != ns
                {
                    shared_ips.insert(ip);
                }
                // `10-244-1-5.<ns>.pod` (A) and `fd00--5.<ns>.pod` (AAAA), as CoreDNS names them, each with
                // its PTR: an IPv6 pod address is as much the tenant's as an IPv4 one.
                if let Some(pod_fqdn) = self.sub(&format!("{}.{ns}.pod", dashed(ip))) {
                    self.add(&pod_fqdn, &owner, address_record(&pod_fqdn, ip));
                    self.ptr(ip, &owner, &pod_fqdn);
                }
            }
        }
        (clients, shared_ips)
    }
}

/// One address of one endpoint of a headless service, as [`Builder::endpoint_srv`] needs it.
#[derive(Clone, Copy)]
struct Endpoint<'a> {
    ns: &'a str,
    svc_name: &'a str,
    owner: &'a Owner,
    host_fqdn: &'a Name,
    ip: IpAddr,
}

/// A service's named ports.
fn named_ports(spec: &ServiceSpec) -> NamedPorts {
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            p.name.as_ref().filter(|n| !n.is_empty()).map(|n| {
                (
                    n.to_lowercase(),
                    p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                )
            })
        })
        .collect()
}

/// A pod's namespace and every address it claims, or `None` for a pod that identifies no client (on the
/// host network, finished, or without namespace, spec or status).
fn pod_addresses(pod: &Pod) -> Option<(&str, Vec<String>)> {
    let (Some(ns), Some(status), Some(spec)) = (
        pod.metadata.namespace.as_deref(),
        pod.status.as_ref(),
        pod.spec.as_ref(),
    ) else {
        return None;
    };
    if spec.host_network == Some(true) {
        // The node's address, shared by every host-network pod: it identifies no one.
        return None;
    }
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    // The API server keeps `podIP` equal to `podIPs[0]`; a hand-written state file may not, and
    // every address the pod claims is indexed, so none of them is left to the upstream.
    let mut ips: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    if let Some(ip) = &status.pod_ip
        && !ips.contains(ip)
    {
        ips.push(ip.clone());
    }
    Some((ns, ips))
}

/// The owner of an ancestor name: `svc.<zone>`/`pod.<zone>` belong to nobody, `<ns>.svc.<zone>` to the
/// namespace, anything deeper to the service.
fn structural_owner(n: &Name, origin: &Name, leaf: &Owner) -> Owner {
    let depth = n.num_labels() - origin.num_labels();
    match (depth, leaf) {
        (0 | 1, _) => Owner::Zone,
        (2, Owner::Service(ns, _) | Owner::Namespace(ns)) => Owner::Namespace(ns.clone()),
        (_, o) => o.clone(),
    }
}

/// The addresses among `strings`; each one that is no address becomes a warning about `what`.
fn ips_of(strings: &[String], what: &str, warnings: &mut Vec<String>) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for s in strings {
        match s.parse::<IpAddr>() {
            Ok(ip) => out.push(ip),
            Err(_) => warnings.push(format!("{what}: {s:?} is not an IP address")),
        }
    }
    out
}

/// The zone's origin: the cluster domain with its trailing dot, or `cluster.local.` when that is no name.
fn origin_of(cluster: &KubeBidConfigSpec, warnings: &mut Vec<String>) -> Name {
    name(&format!(
        "{}.",
        cluster.cluster_domain.trim_end_matches('.')
    ))
    .unwrap_or_else(|| {
        warnings.push(format!(
            "clusterDomain {:?} is not a DNS name; using cluster.local",
            cluster.cluster_domain
        ));
        Name::from_ascii("cluster.local.").unwrap_or_default()
    })
}

/// Forgets the client addresses two namespaces claim (a stale object): neither is trusted.
fn drop_shared_addresses(
    clients: &mut HashMap<IpAddr, Arc<str>>,
    shared_ips: HashSet<IpAddr>,
    warnings: &mut Vec<String>,
) {
    for ip in shared_ips {
        clients.remove(&ip);
        warnings.push(format!(
            "pod address {ip} is claimed by two namespaces; treated as unknown"
        ));
    }
}

/// The tenancy model from the Tenants' specs only (a namespace's labels are its editor's to change),
/// resolved as the webhook and the operator resolve them; Tenants not in force become warnings.
fn tenancy_of(
    cluster: &KubeBidConfigSpec,
    tenants: &[Tenant],
    warnings: &mut Vec<String>,
) -> Tenancy {
    let tenancy = Tenancy::new(cluster, tenants);
    for r in tenancy.rejected() {
        warnings.push(format!(
            "Tenant {} is not in force: {}",
            r.tenant,
            r.problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    tenancy
}

/// Each client address's visibility class, and the namespaces of no tenant that have client pods (what
/// [`ClientClass::Unclaimed`] indexes).
fn classify_clients(
    clients: HashMap<IpAddr, Arc<str>>,
    tenancy: &Tenancy,
) -> (HashMap<IpAddr, ClientClass>, Vec<Arc<str>>) {
    let mut unclaimed: Vec<Arc<str>> = Vec::new();
    let mut unclaimed_index: HashMap<Arc<str>, usize> = HashMap::new();
    let classes = clients
        .into_iter()
        .map(|(ip, ns)| {
            let class = match tenancy.party(&ns) {
                Party::Platform => ClientClass::Platform,
                Party::Tenant(t) => ClientClass::Tenant(t.index),
                Party::Unclaimed(_) => {
                    let i = *unclaimed_index.entry(ns.clone()).or_insert_with(|| {
                        unclaimed.push(ns.clone());
                        unclaimed.len() - 1
                    });
                    ClientClass::Unclaimed(i)
                }
            };
            (ip, class)
        })
        .collect();
    (classes, unclaimed)
}

/// The cluster's pod and service ranges; entries that are no CIDR become warnings.
fn cluster_ranges(cluster: &KubeBidConfigSpec, warnings: &mut Vec<String>) -> Vec<IpNet> {
    let mut cluster_cidrs = Vec::new();
    for c in cluster.pod_cidrs.iter().chain(&cluster.service_cidrs) {
        match c.parse::<IpNet>() {
            Ok(n) => cluster_cidrs.push(n),
            Err(_) => warnings.push(format!("{c:?} is not a CIDR")),
        }
    }
    cluster_cidrs
}

impl Zone {
    /// Builds the zone for `cluster.cluster_domain` from the objects and the tenancy configuration: one
    /// step per kind of object, in the specification's order, then who each client address is.
    #[must_use]
    pub fn build(
        objects: &ClusterObjects,
        cluster: &KubeBidConfigSpec,
        tenants: &[Tenant],
        unknown: UnknownClients,
    ) -> Zone {
        let mut warnings = Vec::new();
        let origin = origin_of(cluster, &mut warnings);
        let mut b = Builder::new(origin.clone());
        let soa = b.apex();
        b.namespaces(&objects.namespaces);
        let headless = b.services(&objects.services);
        b.endpoint_slices(&objects.endpoint_slices, &headless);
        let (mut clients, shared_ips) = b.pods(&objects.pods);
        drop_shared_addresses(&mut clients, shared_ips, &mut warnings);
        let tenancy = tenancy_of(cluster, tenants, &mut warnings);
        let (clients, unclaimed) = classify_clients(clients, &tenancy);
        let cluster_cidrs = cluster_ranges(cluster, &mut warnings);
        warnings.append(&mut b.warnings);
        Zone {
            origin,
            names: b.names,
            reverse: b.reverse,
            clients,
            tenancy,
            unclaimed,
            cluster_cidrs,
            soa,
            unknown,
            warnings,
        }
    }

    /// Who is asking, from the source address.
    #[must_use]
    pub fn client(&self, ip: IpAddr) -> Client<'_> {
        match self.clients.get(&canonical(ip)) {
            None => Client::Unknown,
            Some(ClientClass::Platform) => Client::Platform,
            Some(ClientClass::Tenant(i)) => self
                .tenancy
                .tenants()
                .get(*i)
                .map_or(Client::Unknown, Client::Tenant),
            Some(ClientClass::Unclaimed(i)) => self
                .unclaimed
                .get(*i)
                .map_or(Client::Unknown, |ns| Client::Unclaimed(ns)),
        }
    }

    /// The client's visibility class as the fast path keys it: (0, 0) platform, (1, 0) unknown, (2, i)
    /// tenant i, (3, i) the i-th namespace of no tenant. Clients of one class get identical answers.
    #[must_use]
    pub fn class_of(&self, ip: IpAddr) -> (u8, u32) {
        // More than 4 billion tenants cannot be built; treat the impossible as unknown.
        match self.clients.get(&canonical(ip)) {
            None => (1, 0),
            Some(ClientClass::Platform) => (0, 0),
            Some(ClientClass::Tenant(i)) => u32::try_from(*i).map_or((1, 0), |i| (2, i)),
            Some(ClientClass::Unclaimed(i)) => u32::try_from(*i).map_or((1, 0), |i| (3, i)),
        }
    }

    /// The tenancy model the zone answers with.
    #[must_use]
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    /// Whether `client` may see a name owned by `owner`: the tenancy model's `reaches_name`.
    #[must_use]
    pub fn may_see(&self, client: Client<'_>, owner: &Owner) -> bool {
        if *owner == Owner::Zone {
            return true;
        }
        let party = match client {
            Client::Platform => return true,
            Client::Unknown => return self.unknown == UnknownClients::Allow,
            Client::Tenant(t) => Party::Tenant(t),
            Client::Unclaimed(ns) => Party::Unclaimed(ns),
        };
        match owner {
            Owner::Zone => true,
            Owner::Namespace(ns) => self.tenancy.reaches_namespace(party, ns),
            Owner::Service(ns, svc) => self.tenancy.reaches_service(party, ns, svc),
        }
    }

    /// Whether `client` may resolve names outside the cluster.
    #[must_use]
    pub fn may_resolve_external(&self, client: Client<'_>) -> bool {
        match client {
            Client::Tenant(t) => self.tenancy.resolves_external(Party::Tenant(t)),
            Client::Unclaimed(ns) => self.tenancy.resolves_external(Party::Unclaimed(ns)),
            Client::Platform | Client::Unknown => true,
        }
    }

    /// Whether `n` is in the cluster zone.
    #[must_use]
    pub fn contains(&self, n: &Name) -> bool {
        self.origin.zone_of(n)
    }

    /// The node at `n` (any case).
    #[must_use]
    pub fn lookup(&self, n: &Name) -> Option<&Node> {
        self.names.get(&key_of(n))
    }

    /// The PTR target of a cluster address and its owner.
    #[must_use]
    pub fn reverse(&self, ip: IpAddr) -> Option<&(Owner, Name)> {
        self.reverse.get(&canonical(ip))
    }

    /// Whether an address belongs to the cluster's pod or service ranges.
    #[must_use]
    pub fn in_cluster_range(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.cluster_cidrs.iter().any(|n| n.contains(&ip))
    }

    /// The zone's SOA, for negative answers.
    #[must_use]
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Number of names, for metrics and logs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the zone has no names (never: the apex always exists).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as IPv4.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa.`, nibbles under `ip6.arpa.`) stands for.
#[must_use]
pub fn reverse_address(n: &Name) -> Option<IpAddr> {
    let text = n.to_lowercase().to_ascii();
    let text = text.trim_end_matches('.');
    if let Some(rest) = text.strip_suffix(".in-addr.arpa") {
        let parts: Vec<&str> = rest.split('.').collect();
        if parts.len() != 4 {
            return None;
        }
        let mut octets = [0u8; 4];
        for (i, p) in parts.iter().rev().enumerate() {
            if p.is_empty() || p.len() > 3 || (p.len() > 1 && p.starts_with('0')) {
                return None;
            }
            octets[i] = p.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Some(rest) = text.strip_suffix(".ip6.arpa") {
        let nibbles: Vec<&str> = rest.split('.').collect();
        if nibbles.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (i, nib) in nibbles.iter().rev().enumerate() {
            if nib.len() != 1 {
                return None;
            }
            let v = u8::from_str_radix(nib, 16).ok()?;
            bytes[i / 2] |= if i % 2 == 0 { v << 4 } else { v };
        }
        return Some(IpAddr::V6(Ipv6Addr::from(bytes)));
    }
    None
}

/// The PTR record for `ip` at `owner_name`.
#[must_use]
pub fn ptr_record(owner_name: &Name, target: &Name) -> Record {
    record(owner_name, RData::PTR(PTR(target.clone())))
}
