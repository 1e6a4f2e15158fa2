//! `KubeBid`'s tenant-isolation rules: what Pod Security Standards do not cover but a hostile tenant needs.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubebid_model::config::{MANAGED_LABEL, OwnerKind, SECURE_RUNTIME_LABEL, TENANT_LABEL};
use kubebid_model::{Object, Profile, Resource};

use crate::Raw;
use crate::pod::PodView;
use crate::rules::rid;
use crate::settings::{ClusterSettings, TenantSettings};

/// Who is asking, and under which settings.
pub(crate) struct Scope<'a> {
    pub cluster: &'a ClusterSettings,
    pub tenant: &'a TenantSettings,
    /// Namespace of the object under review.
    pub namespace: Option<&'a str>,
    pub profile: Profile,
}

impl Scope<'_> {
    /// Whether `ns` is one of the tenant's namespaces. The built-in default tenant owns exactly the
    /// namespace of the object under review.
    fn owns(&self, ns: &str) -> bool {
        self.tenant.namespaces.iter().any(|n| n == ns)
            || (self.tenant.name.is_none() && self.namespace == Some(ns))
    }

    /// Whether the tenant may reach `ns`: its own, a shared namespace, or one its `sharedServices` name.
    fn reaches(&self, ns: &str) -> bool {
        self.owns(ns)
            || self.cluster.shared_namespaces.iter().any(|n| n == ns)
            || self
                .tenant
                .shared_service_namespaces
                .iter()
                .any(|n| n == ns)
    }
}

fn raw(rule: usize, path: String, message: String) -> Raw {
    Raw {
        rule,
        path,
        message,
    }
}

/// Rules on a pod spec.
pub(crate) fn pod_rules(pod: &PodView<'_>, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let spec = pod.spec;
    let t = scope.tenant;
    // Runtime class.
    match spec.runtime_class_name.as_deref() {
        None | Some("") => out.push(raw(
            rid!("tenant/runtime-class"),
            pod.at("runtimeClassName"),
            format!(
                "runtimeClassName is not set; tenant pods must run in {}",
                quote_list(&t.runtime_classes)
            ),
        )),
        Some(rc) if !t.runtime_classes.iter().any(|a| a == rc) => out.push(raw(
            rid!("tenant/runtime-class"),
            pod.at("runtimeClassName"),
            format!(
                "runtimeClassName {rc:?} is not allowed; use {}",
                quote_list(&t.runtime_classes)
            ),
        )),
        Some(_) => {}
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        out.push(raw(
            rid!("tenant/node-name"),
            pod.at("nodeName"),
            format!("nodeName {node:?} bypasses the scheduler and the secure pool"),
        ));
    }
    node_steering(pod, out);
    for (i, tol) in spec.tolerations.iter().flatten().enumerate() {
        let key = tol.key.as_deref().unwrap_or_default();
        let exists = tol.operator.as_deref() == Some("Exists");
        if key.is_empty() && exists {
            out.push(raw(rid!("tenant/tolerations"), pod.at(&format!("tolerations[{i}]")), "a toleration with operator Exists and no key tolerates every taint, control-plane ones included".into()));
        } else if is_control_plane_label(key) {
            out.push(raw(
                rid!("tenant/tolerations"),
                pod.at(&format!("tolerations[{i}].key")),
                format!("toleration of {key:?} lets the pod run on control-plane nodes"),
            ));
        }
    }
    if spec.dns_policy.as_deref() == Some("None") {
        out.push(raw(
            rid!("tenant/dns-bypass"),
            pod.at("dnsPolicy"),
            "dnsPolicy None takes the pod off the tenant-aware cluster DNS".into(),
        ));
    }
    for (i, ns) in spec
        .dns_config
        .as_ref()
        .and_then(|d| d.nameservers.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.push(raw(
            rid!("tenant/dns-bypass"),
            pod.at(&format!("dnsConfig.nameservers[{i}]")),
            format!("nameserver {ns} bypasses the tenant-aware cluster DNS"),
        ));
    }
    for c in pod.containers() {
        if let (Some(regs), Some(image)) = (&t.registries, c.image)
            && !image_allowed(image, regs)
        {
            out.push(raw(
                rid!("tenant/image-registry"),
                c.at(pod, "image"),
                format!(
                    "{} image {image:?} is not from an allowed registry ({})",
                    c.describe(),
                    regs.join(", ")
                ),
            ));
        }
        if c.list == "ephemeralContainers" {
            continue; // ephemeral containers cannot carry resources
        }
        let requests = c.resources.and_then(|r| r.requests.as_ref());
        let limits = c.resources.and_then(|r| r.limits.as_ref());
        let mut missing = Vec::new();
        for res in ["cpu", "memory"] {
            // A limit without a request defaults the request to the limit.
            if !requests.is_some_and(|m| m.contains_key(res))
                && !limits.is_some_and(|m| m.contains_key(res))
            {
                missing.push(format!("requests.{res}"));
            }
        }
        for res in ["cpu", "memory"] {
            if !limits.is_some_and(|m| m.contains_key(res)) {
                missing.push(format!("limits.{res}"));
            }
        }
        if !missing.is_empty() {
            out.push(raw(
                rid!("tenant/resources"),
                c.at(pod, "resources"),
                format!(
                    "{} does not set resources.{}",
                    c.describe(),
                    missing.join(", resources.")
                ),
            ));
        }
    }
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            claim_storage_class(
                tpl.spec.storage_class_name.as_deref(),
                pod.at(&format!(
                    "volumes[{i}].ephemeral.volumeClaimTemplate.spec.storageClassName"
                )),
                t,
                out,
            );
        }
    }
}

fn is_control_plane_label(key: &str) -> bool {
    matches!(
        key,
        "node-role.kubernetes.io/control-plane" | "node-role.kubernetes.io/master"
    )
}

fn node_steering(pod: &PodView<'_>, out: &mut Vec<Raw>) {
    let spec = pod.spec;
    for (k, v) in spec.node_selector.iter().flatten() {
        if k == SECURE_RUNTIME_LABEL && v != "true" {
            out.push(raw(
                rid!("tenant/node-steering"),
                pod.at(&format!("nodeSelector[\"{k}\"]")),
                format!("nodeSelector {k}={v:?} steers the pod off the secure pool"),
            ));
        } else if is_control_plane_label(k) {
            out.push(raw(
                rid!("tenant/node-steering"),
                pod.at(&format!("nodeSelector[\"{k}\"]")),
                format!("nodeSelector {k} targets control-plane nodes"),
            ));
        }
    }
    let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    else {
        return;
    };
    let mut check = |req: &core::NodeSelectorRequirement, path: String| {
        let values = req.values.as_deref().unwrap_or_default();
        if req.key == SECURE_RUNTIME_LABEL {
            let ok = match req.operator.as_str() {
                "In" => !values.is_empty() && values.iter().all(|v| v == "true"),
                "Exists" => true,
                _ => false,
            };
            if !ok {
                out.push(raw(
                    rid!("tenant/node-steering"),
                    path,
                    format!(
                        "node affinity {} {} {:?} can place the pod off the secure pool",
                        req.key, req.operator, values
                    ),
                ));
            }
        } else if is_control_plane_label(&req.key)
            && matches!(req.operator.as_str(), "In" | "Exists")
        {
            out.push(raw(
                rid!("tenant/node-steering"),
                path,
                format!("node affinity on {} targets control-plane nodes", req.key),
            ));
        }
    };
    let required = na
        .required_during_scheduling_ignored_during_execution
        .as_ref();
    for (i, term) in required
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        for (j, req) in term.match_expressions.iter().flatten().enumerate() {
            check(req, pod.at(&format!("affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}].matchExpressions[{j}]")));
        }
    }
    for (i, pref) in na
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .enumerate()
    {
        for (j, req) in pref
            .preference
            .match_expressions
            .iter()
            .flatten()
            .enumerate()
        {
            check(req, pod.at(&format!("affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference.matchExpressions[{j}]")));
        }
    }
}

/// Splits an image reference into `registry/repository` (Docker Hub names normalised to `docker.io/library/x`).
#[must_use]
pub fn image_repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or_default();
    // A tag follows the last ':' that comes after the last '/'.
    let name = match (name.rfind(':'), name.rfind('/')) {
        (Some(c), Some(s)) if c > s => &name[..c],
        (Some(c), None) => &name[..c],
        _ => name,
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        name.to_owned()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// A registry prefix in the spelling [`image_repository`] produces (`index.docker.io` is `docker.io`).
#[must_use]
pub fn normalize_registry(r: &str) -> String {
    r.strip_prefix("index.docker.io")
        .map_or_else(|| r.to_owned(), |rest| format!("docker.io{rest}"))
}

/// Whether `image` comes from one of `registries`, already normalised by [`normalize_registry`].
fn image_allowed(image: &str, registries: &[String]) -> bool {
    let repo = image_repository(image);
    registries.iter().any(|r| {
        repo == *r
            || repo
                .strip_prefix(r.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

fn claim_storage_class(class: Option<&str>, path: String, t: &TenantSettings, out: &mut Vec<Raw>) {
    match class {
        Some(c) if t.storage_classes.iter().any(|a| a == c) => {}
        Some("") => out.push(raw(
            rid!("tenant/storage-class"),
            path,
            format!(
                "storageClassName \"\" binds to a pre-provisioned volume; use {}",
                quote_list(&t.storage_classes)
            ),
        )),
        Some(c) => out.push(raw(
            rid!("tenant/storage-class"),
            path,
            format!(
                "storage class {c:?} is not allowed; use {}",
                quote_list(&t.storage_classes)
            ),
        )),
        None => out.push(raw(
            rid!("tenant/storage-class"),
            path,
            format!(
                "no storageClassName: the cluster default class may not be encrypted; use {}",
                quote_list(&t.storage_classes)
            ),
        )),
    }
}

fn quote_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    if q.is_empty() {
        "(none allowed)".into()
    } else {
        q.join(" or ")
    }
}

/// Rules on objects other than pod specs.
pub(crate) fn object_rules(
    obj: &Object,
    old: Option<&Object>,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    let labelled_managed = |o: &Object| o.label(MANAGED_LABEL) == Some("true");
    if labelled_managed(obj) || old.is_some_and(labelled_managed) {
        out.push(raw(
            rid!("tenant/managed-object"),
            "metadata.labels[\"kubebid.io/managed\"]".into(),
            format!(
                "{} {:?} is managed by KubeBid; tenants may not create, change or delete it",
                obj.kind,
                obj.name()
            ),
        ));
    }
    match &obj.resource {
        Resource::StatefulSet(s) => {
            for (i, c) in s.spec.volume_claim_templates.iter().flatten().enumerate() {
                let class = c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref());
                claim_storage_class(class, format!("spec.volumeClaimTemplates[{i}].spec.storageClassName"), scope.tenant, out);
            }
        }
        Resource::Service(s) => service(s, scope, out),
        Resource::Ingress(i) => ingress(i, scope, out),
        Resource::NetworkPolicy(p) => network_policy(p, scope, out),
        Resource::Role(r) => rbac_rules(r.rules.as_deref().unwrap_or_default(), out),
        Resource::ClusterRole(r) => {
            out.push(raw(rid!("tenant/rbac-cluster-scope"), "kind".into(), "tenants may not create ClusterRoles".into()));
            rbac_rules(r.rules.as_deref().unwrap_or_default(), out);
        }
        Resource::RoleBinding(b) => {
            if b.role_ref.kind == "ClusterRole" && !scope.cluster.allowed_cluster_roles.contains(&b.role_ref.name) {
                out.push(raw(rid!("tenant/rbac-cluster-role-ref"),
                    "roleRef.name".into(),
                    format!("ClusterRole {:?} is not one tenants may bind (allowed: {})", b.role_ref.name, scope.cluster.allowed_cluster_roles.join(", ")),
                ));
            }
            subjects(b.subjects.as_deref().unwrap_or_default(), scope, out);
        }
        Resource::ClusterRoleBinding(b) => {
            out.push(raw(rid!("tenant/rbac-cluster-scope"), "kind".into(), "tenants may not create ClusterRoleBindings".into()));
            subjects(b.subjects.as_deref().unwrap_or_default(), scope, out);
        }
        Resource::PersistentVolumeClaim(c) => {
            let spec = c.spec.as_ref();
            if let Some(v) = spec.and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()) {
                out.push(raw(rid!("tenant/pvc-volume-name"), "spec.volumeName".into(), format!("binding existing volume {v:?} could expose another tenant's data")));
            }
            claim_storage_class(spec.and_then(|s| s.storage_class_name.as_deref()), "spec.storageClassName".into(), scope.tenant, out);
        }
        Resource::PersistentVolume(v) => {
            let spec = v.spec.as_ref();
            if spec.is_some_and(|s| s.host_path.is_some()) {
                out.push(raw(rid!("tenant/pv-host-storage"), "spec.hostPath".into(), "hostPath PersistentVolumes expose a node's file system".into()));
            }
            if spec.is_some_and(|s| s.local.is_some()) {
                out.push(raw(rid!("tenant/pv-host-storage"), "spec.local".into(), "local PersistentVolumes expose a node's disk".into()));
            }
        }
        Resource::Namespace(_) => namespace_labels(obj, old, scope, out),
        Resource::ResourceQuota(_) | Resource::LimitRange(_) => out.push(raw(rid!("tenant/quota-change"),
            "kind".into(),
            format!("{} objects are set by the platform from the Tenant; tenants may not create, change or delete them", obj.kind),
        )),
        _ => {}
    }
}

fn service(s: &core::Service, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let Some(spec) = s.spec.as_ref() else { return };
    match spec.type_.as_deref() {
        Some("NodePort") => out.push(raw(
            rid!("tenant/service-nodeport"),
            "spec.type".into(),
            "NodePort services open a port on every node".into(),
        )),
        Some("LoadBalancer") => {
            if !scope.tenant.allow_load_balancer {
                out.push(raw(
                    rid!("tenant/service-loadbalancer"),
                    "spec.type".into(),
                    "this tenant may not create LoadBalancer services".into(),
                ));
            }
            if spec.allocate_load_balancer_node_ports != Some(false) {
                out.push(raw(rid!("tenant/service-nodeport"), "spec.allocateLoadBalancerNodePorts".into(), "a LoadBalancer service allocates node ports unless allocateLoadBalancerNodePorts is false".into()));
            }
        }
        Some("ExternalName") => {
            if let Some(name) = spec.external_name.as_deref() {
                external_name(name, scope, out);
            }
        }
        _ => {}
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        out.push(raw(
            rid!("tenant/service-external-ips"),
            format!("spec.externalIPs[{i}]"),
            format!("externalIP {ip} can capture traffic for an address the tenant does not own"),
        ));
    }
}

fn external_name(name: &str, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = n.parse::<IpAddr>() {
        if scope
            .cluster
            .pod_cidrs
            .iter()
            .chain(&scope.cluster.service_cidrs)
            .any(|c| c.contains(&ip))
        {
            out.push(raw(
                rid!("tenant/service-externalname"),
                "spec.externalName".into(),
                format!("externalName {name:?} is a cluster address"),
            ));
        }
        return;
    }
    let domain = &scope.cluster.cluster_domain;
    let local = n
        .strip_suffix(&format!(".{domain}"))
        .or_else(|| (n == *domain).then_some(""));
    let local = match local {
        Some(l) => l,
        // `n` is lower-cased above, so this suffix test is not case-sensitive.
        #[allow(clippy::case_sensitive_file_extension_comparisons)]
        None if n.ends_with(".svc") => n.as_str(),
        None => return,
    };
    let labels: Vec<&str> = local.split('.').collect();
    // <service>.<namespace>.svc, <endpoint>.<service>.<namespace>.svc, <pod-ip>.<namespace>.pod
    let ns = labels
        .iter()
        .rposition(|l| *l == "svc" || *l == "pod")
        .and_then(|i| i.checked_sub(1))
        .map(|i| labels[i]);
    match ns {
        Some(ns) if scope.reaches(ns) => {}
        Some(ns) => out.push(raw(
            rid!("tenant/service-externalname"),
            "spec.externalName".into(),
            format!("externalName {name:?} points into namespace {ns:?}, outside the tenant"),
        )),
        None => out.push(raw(
            rid!("tenant/service-externalname"),
            "spec.externalName".into(),
            format!(
                "externalName {name:?} points into the cluster domain outside any tenant namespace"
            ),
        )),
    }
}

fn ingress(i: &net::Ingress, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let Some(spec) = i.spec.as_ref() else { return };
    if spec.default_backend.is_some() {
        out.push(raw(
            rid!("tenant/ingress-host"),
            "spec.defaultBackend".into(),
            "a default backend catches requests for every host".into(),
        ));
    }
    let mut host = |h: Option<&str>, path: String| match h {
        None | Some("") => out.push(raw(
            rid!("tenant/ingress-host"),
            path,
            "a rule without a host catches requests for every host".into(),
        )),
        Some(h) if h.starts_with('*') => out.push(raw(
            rid!("tenant/ingress-wildcard-host"),
            path,
            format!("wildcard host {h:?} can capture other tenants' names"),
        )),
        Some(h) => {
            if let Some(domains) = &scope.tenant.ingress_domains {
                let h = h.trim_end_matches('.').to_ascii_lowercase();
                if !domains
                    .iter()
                    .any(|d| h == *d || h.ends_with(&format!(".{d}")))
                {
                    let allowed = if domains.is_empty() {
                        "the tenant has no ingress domains".to_owned()
                    } else {
                        format!("allowed: {}", domains.join(", "))
                    };
                    out.push(raw(
                        rid!("tenant/ingress-host"),
                        path,
                        format!("host {h:?} is outside the tenant's domains ({allowed})"),
                    ));
                }
            }
        }
    };
    for (n, rule) in spec.rules.iter().flatten().enumerate() {
        host(rule.host.as_deref(), format!("spec.rules[{n}].host"));
    }
    for (n, tls) in spec.tls.iter().flatten().enumerate() {
        for (m, h) in tls.hosts.iter().flatten().enumerate() {
            host(Some(h), format!("spec.tls[{n}].hosts[{m}]"));
        }
    }
}

fn network_policy(p: &net::NetworkPolicy, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let Some(spec) = p.spec.as_ref() else { return };
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            peer_rules(
                peer,
                &format!("spec.ingress[{i}].from[{j}]"),
                false,
                scope,
                out,
            );
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            peer_rules(peer, &format!("spec.egress[{i}].to[{j}]"), true, scope, out);
        }
    }
}

fn peer_rules(
    peer: &net::NetworkPolicyPeer,
    path: &str,
    egress: bool,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    if let Some(sel) = &peer.namespace_selector
        && !(egress && is_cluster_dns(sel, peer.pod_selector.as_ref()))
        && let Err(why) = namespace_selector_confined(sel, scope)
    {
        out.push(raw(
            rid!("tenant/netpol-namespace-selector"),
            format!("{path}.namespaceSelector"),
            why,
        ));
    }
    let Some(block) = &peer.ip_block else { return };
    let Ok(cidr) = block.cidr.parse::<IpNet>() else {
        out.push(raw(
            rid!("tenant/netpol-ipblock"),
            format!("{path}.ipBlock.cidr"),
            format!("{:?} is not a CIDR", block.cidr),
        ));
        return;
    };
    let excepts: Vec<IpNet> = block
        .except
        .iter()
        .flatten()
        .filter_map(|e| e.parse().ok())
        .collect();
    for internal in scope
        .cluster
        .pod_cidrs
        .iter()
        .chain(&scope.cluster.service_cidrs)
    {
        let overlap = if cidr.contains(internal) {
            Some(*internal)
        } else if internal.contains(&cidr) {
            Some(cidr)
        } else {
            None
        };
        if let Some(o) = overlap
            && !excepts.iter().any(|e| e.contains(&o))
        {
            out.push(raw(rid!("tenant/netpol-ipblock"), format!("{path}.ipBlock.cidr"), format!("ipBlock {cidr} covers cluster network {internal}; other tenants' pods are reachable by address")));
        }
    }
    if egress
        && let Some(allowed) = &scope.tenant.egress_cidrs
        && !allowed.iter().any(|a| a.contains(&cidr))
    {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        out.push(raw(
            rid!("tenant/netpol-egress-cidr"),
            format!("{path}.ipBlock.cidr"),
            format!(
                "egress to {cidr} is outside the tenant's egress CIDRs ({})",
                list.join(", ")
            ),
        ));
    }
}

const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Egress to the cluster DNS pods (`kube-system` pods labelled `k8s-app: kube-dns`, as both `CoreDNS` and
/// kube-dns are deployed) is a path every tenant needs; it reaches no other tenant.
fn is_cluster_dns(ns: &LabelSelector, pods: Option<&LabelSelector>) -> bool {
    let pinned = |sel: &LabelSelector, key: &str, value: &str| {
        sel.match_labels
            .as_ref()
            .and_then(|l| l.get(key))
            .is_some_and(|v| v == value)
    };
    pinned(ns, NAME_LABEL, "kube-system") && pods.is_some_and(|p| pinned(p, "k8s-app", "kube-dns"))
}

/// Proves a namespace selector selects only namespaces the tenant may reach, by a label tenants cannot set.
fn namespace_selector_confined(sel: &LabelSelector, scope: &Scope<'_>) -> Result<(), String> {
    let labels = sel.match_labels.as_ref();
    let exprs = sel.match_expressions.as_deref().unwrap_or_default();
    if labels.is_none_or(std::collections::BTreeMap::is_empty) && exprs.is_empty() {
        return Err(
            "an empty namespaceSelector selects every namespace, other tenants' included".into(),
        );
    }
    let (ing_key, ing_value) = &scope.cluster.ingress_label;
    let mut outside = Vec::new();
    if let Some(labels) = labels {
        for (k, v) in labels {
            if k == NAME_LABEL {
                if scope.reaches(v) {
                    return Ok(());
                }
                outside.push(v.clone());
            } else if (k == TENANT_LABEL && scope.tenant.name.as_deref() == Some(v.as_str()))
                || (k == ing_key && v == ing_value)
            {
                return Ok(());
            }
        }
    }
    for e in exprs {
        if e.key == NAME_LABEL && e.operator == "In" {
            let values = e.values.as_deref().unwrap_or_default();
            let bad: Vec<&String> = values.iter().filter(|v| !scope.reaches(v)).collect();
            if bad.is_empty() && !values.is_empty() {
                return Ok(());
            }
            outside.extend(bad.into_iter().cloned());
        } else if e.key == TENANT_LABEL && e.operator == "In" {
            let values = e.values.as_deref().unwrap_or_default();
            if !values.is_empty()
                && values
                    .iter()
                    .all(|v| scope.tenant.name.as_deref() == Some(v.as_str()))
            {
                return Ok(());
            }
        }
    }
    if outside.is_empty() {
        Err(format!(
            "the namespaceSelector does not pin namespaces by {NAME_LABEL} or {TENANT_LABEL}, so it may select other tenants' namespaces"
        ))
    } else {
        Err(format!(
            "the namespaceSelector selects namespace(s) outside the tenant: {}",
            outside.join(", ")
        ))
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rbac_rules(rules: &[rbac::PolicyRule], out: &mut Vec<Raw>) {
    for (i, r) in rules.iter().enumerate() {
        for (j, verb) in r.verbs.iter().enumerate() {
            if matches!(verb.as_str(), "escalate" | "bind" | "impersonate") {
                out.push(raw(
                    rid!("tenant/rbac-escalation-verbs"),
                    format!("rules[{i}].verbs[{j}]"),
                    format!("verb {verb:?} lets a subject grant itself more than it holds"),
                ));
            }
        }
        let groups = r.api_groups.as_deref().unwrap_or_default();
        let resources = r.resources.as_deref().unwrap_or_default();
        let covers_rbac = groups.iter().any(|g| g == "*" || g == RBAC_GROUP);
        let star_verb = r.verbs.iter().any(|v| v == "*");
        let star_resource = resources.iter().any(|x| x == "*");
        if covers_rbac && (star_verb || star_resource) {
            out.push(raw(
                rid!("tenant/rbac-wildcard"),
                format!("rules[{i}]"),
                "wildcard verbs or resources over RBAC include escalate and bind".into(),
            ));
        }
    }
}

fn subjects(subjects: &[rbac::Subject], scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let t = scope.tenant;
    for (i, s) in subjects.iter().enumerate() {
        let path = format!("subjects[{i}]");
        let problem = match s.kind.as_str() {
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_deref()
                    .or(scope.namespace)
                    .unwrap_or_default();
                (!scope.owns(ns))
                    .then(|| format!("service account {ns}/{} is outside the tenant", s.name))
            }
            "User" => {
                if let Some(rest) = s.name.strip_prefix("system:serviceaccount:") {
                    let ns = rest.split(':').next().unwrap_or_default();
                    (!scope.owns(ns)).then(|| {
                        format!("user {:?} is a service account outside the tenant", s.name)
                    })
                } else if s.name.starts_with("system:") {
                    Some(format!("user {:?} is a Kubernetes system identity", s.name))
                } else if t.restricts_identities() && !t.has_owner(OwnerKind::User, &s.name) {
                    Some(format!("user {:?} is not an owner of this tenant", s.name))
                } else {
                    None
                }
            }
            "Group" => {
                if let Some(ns) = s.name.strip_prefix("system:serviceaccounts:") {
                    (!scope.owns(ns)).then(|| {
                        format!(
                            "group {:?} is the service accounts of a namespace outside the tenant",
                            s.name
                        )
                    })
                } else if s.name.starts_with("system:") {
                    Some(format!("group {:?} spans the whole cluster", s.name))
                } else if t.restricts_identities() && !t.has_owner(OwnerKind::Group, &s.name) {
                    Some(format!("group {:?} is not an owner of this tenant", s.name))
                } else {
                    None
                }
            }
            other => Some(format!("unknown subject kind {other:?}")),
        };
        if let Some(p) = problem {
            out.push(raw(rid!("tenant/rbac-subject"), path, p));
        }
    }
}

const PSA_PREFIX: &str = "pod-security.kubernetes.io/";

static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

fn namespace_labels(obj: &Object, old: Option<&Object>, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let labels = obj.meta().labels.as_ref().unwrap_or(&NO_LABELS);
    if let Some(name) = &scope.tenant.name {
        match labels.get(TENANT_LABEL) {
            Some(v) if v == name => {}
            Some(v) => out.push(raw(
                rid!("tenant/namespace-labels"),
                format!("metadata.labels[\"{TENANT_LABEL}\"]"),
                format!("namespace belongs to tenant {name:?} but is labelled {v:?}"),
            )),
            None => out.push(raw(
                rid!("tenant/namespace-labels"),
                "metadata.labels".into(),
                format!("namespace of tenant {name:?} lacks the {TENANT_LABEL} label"),
            )),
        }
    }
    let (ing_key, ing_value) = &scope.cluster.ingress_label;
    if labels.get(ing_key).is_some_and(|v| v == ing_value) {
        out.push(raw(rid!("tenant/namespace-labels"), format!("metadata.labels[\"{ing_key}\"]"), "a tenant namespace may not carry the ingress-controller label: other tenants' policies admit traffic from it".into()));
    }
    let needed = if scope.profile == Profile::Baseline {
        1
    } else {
        2
    };
    if let Some(level) = labels.get("pod-security.kubernetes.io/enforce") {
        let rank = match level.as_str() {
            "privileged" => 0,
            "baseline" => 1,
            "restricted" => 2,
            _ => -1,
        };
        if rank < needed {
            out.push(raw(
                rid!("tenant/namespace-labels"),
                "metadata.labels[\"pod-security.kubernetes.io/enforce\"]".into(),
                format!(
                    "pod-security enforce level {level:?} is weaker than the tenant's profile {}",
                    scope.profile
                ),
            ));
        }
    }
    if let Some(old) = old {
        let old_labels = old.meta().labels.as_ref().unwrap_or(&NO_LABELS);
        let guarded = |k: &str| k.starts_with("kubebid.io/") || k.starts_with(PSA_PREFIX);
        let keys: std::collections::BTreeSet<&String> = labels
            .keys()
            .chain(old_labels.keys())
            .filter(|k| guarded(k))
            .collect();
        for k in keys {
            if labels.get(k) != old_labels.get(k) {
                out.push(raw(
                    rid!("tenant/namespace-labels"),
                    format!("metadata.labels[\"{k}\"]"),
                    format!("tenants may not change the {k} label of their namespaces"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_normalise_like_the_container_runtime() {
        assert_eq!(image_repository("nginx"), "docker.io/library/nginx");
        assert_eq!(image_repository("nginx:1.27"), "docker.io/library/nginx");
        assert_eq!(
            image_repository("acme/app@sha256:abc"),
            "docker.io/acme/app"
        );
        assert_eq!(image_repository("ghcr.io/acme/app:v1"), "ghcr.io/acme/app");
        assert_eq!(image_repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            image_repository("registry.example.com:5000/team/app:v2"),
            "registry.example.com:5000/team/app"
        );
    }

    #[test]
    fn registry_prefixes_match_at_path_boundaries() {
        let regs: Vec<String> = ["ghcr.io/acme", "index.docker.io/library"]
            .iter()
            .map(|r| normalize_registry(r))
            .collect();
        assert!(image_allowed("ghcr.io/acme/app:v1", &regs));
        assert!(image_allowed("nginx", &regs));
        assert!(!image_allowed("ghcr.io/acme-evil/app", &regs));
        assert!(!image_allowed("evil.io/ghcr.io/acme/app", &regs));
    }
}
