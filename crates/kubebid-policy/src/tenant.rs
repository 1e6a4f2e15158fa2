//! `KubeBid`'s tenant-isolation rules: what Pod Security Standards do not cover but a hostile tenant needs.

use ipnet::IpNet;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::api::rbac::v1 as rbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubebid_model::config::{
    MANAGED_LABEL, NAMESPACE_NAME_LABEL, OwnerKind, SECURE_RUNTIME_LABEL, TENANT_LABEL,
};
use kubebid_model::tenancy::{ClusterName, Direction, HostDenial};
use kubebid_model::{Actor, Object, Party, Profile, Resource, Tenancy};

use crate::Raw;
use crate::pod::PodView;
use crate::rules::rid;
use crate::settings::{ClusterSettings, TenantSettings};

/// Who is asking, about what, under which settings.
pub(crate) struct Scope<'a> {
    pub cluster: &'a ClusterSettings,
    pub tenancy: &'a Tenancy,
    /// Who the object's namespace belongs to.
    pub party: Party<'a>,
    pub tenant: &'a TenantSettings,
    /// Namespace of the object under review.
    pub namespace: Option<&'a str>,
    pub profile: Profile,
    /// Who makes the request.
    pub actor: Actor,
}

impl Scope<'_> {
    /// Whether `ns` is one of the party's namespaces.
    fn owns(&self, ns: &str) -> bool {
        self.tenancy.owns(self.party, ns)
    }

    /// The party's name for messages: `tenant "acme"`, or `namespace "x"` for a namespace of no tenant.
    fn who(&self) -> String {
        match self.party {
            Party::Tenant(t) => format!("tenant {:?}", t.name),
            Party::Unclaimed(ns) => format!("namespace {ns:?} (of no tenant)"),
            Party::Platform => "the platform".into(),
        }
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
// One short block per pod-spec field a tenant could abuse, in the order of the PodSpec.
#[allow(clippy::too_many_lines)]
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
    // The sandbox's own configuration (hypervisor, kernel, guest paths, devices) is the platform's: Kata and
    // the container runtimes read these pod annotations where their configuration lets them.
    for key in pod.meta.annotations.iter().flatten().map(|(k, _)| k) {
        let lower = key.to_ascii_lowercase();
        if POD_NETWORK_ANNOTATIONS.contains(&lower.as_str()) {
            out.push(raw(
                rid!("tenant/pod-network"),
                pod.annotation_path(key),
                format!(
                    "annotation {key} gives the pod network interfaces or addresses outside what KubeBid's network policies cover"
                ),
            ));
        }
        if is_sandbox_annotation(&lower) {
            out.push(raw(
                rid!("tenant/runtime-class"),
                pod.annotation_path(key),
                format!("annotation {key} configures the runtime sandbox, which is the platform's"),
            ));
        }
    }
    // Pod-level resources (on by default since Kubernetes 1.34) take hugepages too.
    extended_resources(
        spec.resources.as_ref(),
        &|tail| pod.at(tail),
        "the pod",
        scope,
        out,
    );
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        out.push(raw(
            rid!("tenant/node-name"),
            pod.at("nodeName"),
            format!("nodeName {node:?} bypasses the scheduler and the secure pool"),
        ));
    }
    node_steering(pod, out);
    pod_affinity(pod, scope, out);
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
        } else if let Some(why) = platform_taint(key, scope.actor) {
            out.push(raw(
                rid!("tenant/tolerations"),
                pod.at(&format!("tolerations[{i}].key")),
                format!("toleration of {key:?} {why}"),
            ));
        } else if key.starts_with("kubebid.io/") {
            // Nodes reserved for one tenant carry `kubebid.io/tenant=<name>`; only that tenant tolerates it.
            let own = key == TENANT_LABEL
                && !exists
                && scope
                    .party
                    .tenant_name()
                    .is_some_and(|n| tol.value.as_deref() == Some(n));
            if !own {
                out.push(raw(
                    rid!("tenant/tolerations"),
                    pod.at(&format!("tolerations[{i}]")),
                    format!(
                        "toleration of the KubeBid taint {key:?} ({}) lets the pod onto nodes reserved for others",
                        tol.value.as_deref().map_or("any value".to_owned(), |v| format!("value {v:?}"))
                    ),
                ));
            }
        }
    }
    if let Some(p @ ("None" | "Default")) = spec.dns_policy.as_deref() {
        out.push(raw(
            rid!("tenant/dns-bypass"),
            pod.at("dnsPolicy"),
            format!(
                "dnsPolicy {p} takes the pod off the tenant-aware cluster DNS{}",
                if p == "Default" {
                    " (it uses the node's resolver)"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(class) = spec.priority_class_name.as_deref()
        && !scope.tenancy.may_use_priority_class(scope.party, class)
    {
        let allowed: Vec<String> = scope
            .tenancy
            .priority_classes(scope.party)
            .into_iter()
            .collect();
        out.push(raw(
            rid!("tenant/priority-class"),
            pod.at("priorityClassName"),
            format!(
                "PriorityClass {class:?} is not one {} may use ({})",
                scope.who(),
                if allowed.is_empty() {
                    "none is allowed: leave priorityClassName unset".to_owned()
                } else {
                    format!("allowed: {}", allowed.join(", "))
                }
            ),
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
        // Without the mutation that sets it, the pod must ask for a pull itself.
        if !t.mutate.image_pull_policy && c.image_pull_policy != Some("Always") {
            out.push(raw(
                rid!("tenant/image-pull-policy"),
                c.at(pod, "imagePullPolicy"),
                format!(
                    "{} may start from an image a node already holds, perhaps another tenant's private one; set imagePullPolicy: Always",
                    c.describe()
                ),
            ));
        }
        if c.list == "ephemeralContainers" {
            continue; // ephemeral containers cannot carry resources
        }
        let requests = c.resources.and_then(|r| r.requests.as_ref());
        let limits = c.resources.and_then(|r| r.limits.as_ref());
        if t.dedicated_cores {
            dedicated_cores(
                requests,
                limits,
                &|tail| c.at(pod, tail),
                &c.describe(),
                out,
            );
        }
        extended_resources(
            c.resources,
            &|tail| c.at(pod, tail),
            &c.describe(),
            scope,
            out,
        );
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
        volume_servers(
            v,
            &|tail| pod.at(&format!("volumes[{i}].{tail}")),
            scope,
            out,
        );
        if let Some(kind) = remote_volume_kind(v) {
            out.push(raw(
                rid!("tenant/inline-volumes"),
                pod.at(&format!("volumes[{i}].{kind}")),
                format!(
                    "volume {:?} mounts {kind} storage by address, past the encrypted StorageClass, its quota and the network policies",
                    v.name
                ),
            ));
        } else if let Some(csi) = &v.csi
            && !scope.cluster.inline_csi_drivers.contains(&csi.driver)
        {
            out.push(raw(
                rid!("tenant/inline-volumes"),
                pod.at(&format!("volumes[{i}].csi.driver")),
                format!(
                    "inline CSI volume {:?} of driver {:?}, which is not one tenants may use inline (inlineCsiDrivers): its attributes reach storage past the StorageClass",
                    v.name, csi.driver
                ),
            ));
        }
        if let Some(im) = &v.image
            && !t.mutate.image_pull_policy
            && im.pull_policy.as_deref() != Some("Always")
        {
            out.push(raw(
                rid!("tenant/image-pull-policy"),
                pod.at(&format!("volumes[{i}].image.pullPolicy")),
                format!(
                    "image volume {:?} may come from a node's cache, perhaps another tenant's private image; set pullPolicy: Always",
                    v.name
                ),
            ));
        }
        if let (Some(regs), Some(image)) = (
            &t.registries,
            v.image.as_ref().and_then(|im| im.reference.as_deref()),
        ) && !image_allowed(image, regs)
        {
            out.push(raw(
                rid!("tenant/image-registry"),
                pod.at(&format!("volumes[{i}].image.reference")),
                format!(
                    "image volume {:?} {image:?} is not from an allowed registry ({})",
                    v.name,
                    regs.join(", ")
                ),
            ));
        }
        if let Some(tpl) = v
            .ephemeral
            .as_ref()
            .and_then(|e| e.volume_claim_template.as_ref())
        {
            claim(
                Some(&tpl.spec),
                &pod.at(&format!("volumes[{i}].ephemeral.volumeClaimTemplate.spec")),
                scope,
                out,
            );
        }
    }
}

/// Hugepages, GPUs and device plugins' resources in `resources` (a container's or the pod's): only those the
/// Tenant is given; nothing else bounds how much of them one tenant takes.
fn extended_resources(
    resources: Option<&core::ResourceRequirements>,
    at: &dyn Fn(&str) -> String,
    who: &str,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    let Some(r) = resources else { return };
    let mut seen = std::collections::BTreeSet::new();
    for (kind, map) in [
        ("requests", r.requests.as_ref()),
        ("limits", r.limits.as_ref()),
    ] {
        for name in map.into_iter().flatten().map(|(k, _)| k) {
            if !matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                && !scope.tenant.extended_resources.iter().any(|a| a == name)
                && seen.insert(name.as_str())
            {
                out.push(raw(
                    rid!("tenant/extended-resources"),
                    at(&format!("resources.{kind}[\"{name}\"]")),
                    format!(
                        "{who} asks for {name:?}, which {} is not given; nothing else bounds how much of it one tenant takes",
                        scope.who()
                    ),
                ));
            }
        }
    }
}

/// A dedicated-cores tenant's container: Guaranteed, with whole CPUs.
fn dedicated_cores(
    requests: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    limits: Option<
        &std::collections::BTreeMap<
            String,
            k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        >,
    >,
    at: &dyn Fn(&str) -> String,
    who: &str,
    out: &mut Vec<Raw>,
) {
    use kubebid_model::quantity::Quantity;
    const ONE_CPU: i128 = 1_000_000_000;
    for res in ["cpu", "memory"] {
        let limit = limits.and_then(|m| m.get(res));
        let Some(limit) = limit else {
            out.push(raw(
                rid!("tenant/dedicated-cores"),
                at(&format!("resources.limits.{res}")),
                format!("{who} has no {res} limit, so it is not Guaranteed and shares cores with other pods"),
            ));
            continue;
        };
        let Some(lim) = Quantity::parse(&limit.0) else {
            continue; // the API server refuses a malformed quantity itself
        };
        if let Some(request) = requests.and_then(|m| m.get(res))
            && Quantity::parse(&request.0).is_some_and(|r| r.nanos() != lim.nanos())
        {
            out.push(raw(
                rid!("tenant/dedicated-cores"),
                at(&format!("resources.requests.{res}")),
                format!(
                    "{who} requests {res} {} below its limit {}: not Guaranteed, so its cores are shared",
                    request.0, limit.0
                ),
            ));
        }
        if res == "cpu" && (lim.nanos() <= 0 || lim.nanos() % ONE_CPU != 0) {
            out.push(raw(
                rid!("tenant/dedicated-cores"),
                at("resources.limits.cpu"),
                format!(
                    "{who} asks for {} CPU, not a whole number: the CPU manager pins only whole CPUs, so a fraction runs on the shared pool",
                    limit.0
                ),
            ));
        }
    }
}

/// The servers an inline volume names, which the node (not the pod, so no network policy) connects to: none
/// may be a protected address or a cluster name the tenant may not reach, whatever exception lifts
/// `tenant/inline-volumes`. A `gitRepo` volume runs git on the node against the tenant's URL
/// (CVE-2024-10220) and is refused outright.
fn volume_servers(
    v: &core::Volume,
    at: &dyn Fn(&str) -> String,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    let mut servers: Vec<(String, &str)> = Vec::new();
    if let Some(nfs) = &v.nfs {
        servers.push(("nfs.server".into(), &nfs.server));
    }
    if let Some(iscsi) = &v.iscsi {
        servers.push(("iscsi.targetPortal".into(), &iscsi.target_portal));
        for (j, p) in iscsi.portals.iter().flatten().enumerate() {
            servers.push((format!("iscsi.portals[{j}]"), p));
        }
    }
    if let Some(rbd) = &v.rbd {
        for (j, m) in rbd.monitors.iter().enumerate() {
            servers.push((format!("rbd.monitors[{j}]"), m));
        }
    }
    if let Some(cephfs) = &v.cephfs {
        for (j, m) in cephfs.monitors.iter().enumerate() {
            servers.push((format!("cephfs.monitors[{j}]"), m));
        }
    }
    if let Some(csi) = &v.csi {
        // Drivers name their server in attributes of their own: any attribute that reads as a host.
        for (k, value) in csi.volume_attributes.iter().flatten() {
            let key = k.to_ascii_lowercase();
            if [
                "server", "host", "address", "source", "share", "endpoint", "portal", "monitor",
            ]
            .iter()
            .any(|w| key.contains(w))
            {
                servers.push((kubebid_model::path::join("csi.volumeAttributes", k), value));
            }
        }
    }
    for (path, server) in servers {
        // `host`, `host:port`, `//host/share`, `scheme://host/...`
        if let Some(why) = url_target_problem(server.trim().trim_start_matches('/'), scope) {
            out.push(raw(
                rid!("tenant/volume-servers"),
                at(&path),
                format!(
                    "volume {:?}: the node would connect to {server:?}: {why}",
                    v.name
                ),
            ));
        }
    }
    if let Some(git) = &v.git_repo {
        out.push(raw(
            rid!("tenant/volume-servers"),
            at("gitRepo"),
            format!(
                "gitRepo volume {:?} runs git on the node against {:?}, as the node (CVE-2024-10220)",
                v.name, git.repository
            ),
        ));
    }
}

/// The remote or cloud storage a volume mounts by address, inline in the pod, if it does.
fn remote_volume_kind(v: &core::Volume) -> Option<&'static str> {
    [
        ("nfs", v.nfs.is_some()),
        ("iscsi", v.iscsi.is_some()),
        ("rbd", v.rbd.is_some()),
        ("cephfs", v.cephfs.is_some()),
        ("glusterfs", v.glusterfs.is_some()),
        ("fc", v.fc.is_some()),
        ("flexVolume", v.flex_volume.is_some()),
        ("flocker", v.flocker.is_some()),
        ("quobyte", v.quobyte.is_some()),
        ("storageos", v.storageos.is_some()),
        ("portworxVolume", v.portworx_volume.is_some()),
        ("scaleIO", v.scale_io.is_some()),
        ("azureFile", v.azure_file.is_some()),
        ("azureDisk", v.azure_disk.is_some()),
        ("awsElasticBlockStore", v.aws_elastic_block_store.is_some()),
        ("gcePersistentDisk", v.gce_persistent_disk.is_some()),
        ("cinder", v.cinder.is_some()),
        ("photonPersistentDisk", v.photon_persistent_disk.is_some()),
        ("vsphereVolume", v.vsphere_volume.is_some()),
    ]
    .into_iter()
    .find_map(|(kind, set)| set.then_some(kind))
}

/// Pod annotations container runtimes and Kata read as sandbox configuration: Kata's, CRI-O's (its own
/// and the `*.crio.io` ones: CPU quota, IRQ balancing, user namespaces...), containerd's, the OCI runtime
/// handler's, and Container Device Interface device requests.
const SANDBOX_ANNOTATION_PREFIXES: &[&str] = &[
    "io.katacontainers.",
    "io.kubernetes.cri-o.",
    "io.kubernetes.cri.",
    "io.containerd.",
    "io.containers.",
    "run.oci.",
    "cdi.k8s.io/",
];

/// Pod annotations by which network plugins attach more interfaces (Multus) or let a pod pick its
/// addresses or address pools (Calico, Cilium).
const POD_NETWORK_ANNOTATIONS: &[&str] = &[
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
    "cni.projectcalico.org/ipaddrs",
    "cni.projectcalico.org/ipaddrsnoipam",
    "cni.projectcalico.org/ipv4pools",
    "cni.projectcalico.org/ipv6pools",
    "cni.projectcalico.org/floatingips",
    "ipam.cilium.io/ip-pool",
    "ipam.cilium.io/ipv4-pool",
    "ipam.cilium.io/ipv6-pool",
];

/// Whether an annotation key, lower-cased, is one of [`SANDBOX_ANNOTATION_PREFIXES`] or CRI-O's own: keys of
/// their own (`cpu-quota.crio.io`) or prefixes (`x.crio.io/y`, `seccomp-profile.kubernetes.cri-o.io/ctr`).
fn is_sandbox_annotation(lower_key: &str) -> bool {
    let domain = lower_key
        .split_once('/')
        .map_or(lower_key, |(prefix, _)| prefix);
    SANDBOX_ANNOTATION_PREFIXES
        .iter()
        .any(|p| lower_key.starts_with(p))
        || matches!(domain, "crio.io" | "cri-o.io")
        || domain.ends_with(".crio.io")
        || domain.ends_with(".cri-o.io")
}

/// Taints that keep pods off nodes for the platform's reasons: tolerating them puts a tenant where the
/// platform does not want anyone. The `DaemonSet` controller adds the node-condition ones to the pods it makes
/// itself, so those bind tenants only.
fn platform_taint(key: &str, actor: Actor) -> Option<&'static str> {
    match key {
        "CriticalAddonsOnly" => {
            Some("lets the pod onto nodes kept for the cluster's critical add-ons")
        }
        "node.cloudprovider.kubernetes.io/uninitialized" => {
            Some("lets the pod onto nodes the cloud provider has not set up")
        }
        "node.kubernetes.io/unschedulable" if actor == Actor::Tenant => {
            Some("lets the pod onto cordoned and draining nodes")
        }
        _ => None,
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

/// Pod affinity and anti-affinity terms may look only at the tenant's own pods: a required anti-affinity to
/// another tenant's pods keeps them off nodes (it is symmetric), and an affinity to them tells whether they
/// exist and where.
fn pod_affinity(pod: &PodView<'_>, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let Some(aff) = pod.spec.affinity.as_ref() else {
        return;
    };
    let mut check = |term: &core::PodAffinityTerm, path: String| {
        for (k, ns) in term.namespaces.iter().flatten().enumerate() {
            if !scope.owns(ns) {
                out.push(raw(
                    rid!("tenant/node-steering"),
                    format!("{path}.namespaces[{k}]"),
                    format!(
                        "pod affinity to pods of namespace {ns:?}, outside {}",
                        scope.who()
                    ),
                ));
            }
        }
        if let Some(sel) = &term.namespace_selector {
            let pinned_to_own =
                name_pins(sel).any(|p| !p.is_empty() && p.iter().all(|n| scope.owns(n)));
            if !pinned_to_own {
                out.push(raw(
                    rid!("tenant/node-steering"),
                    format!("{path}.namespaceSelector"),
                    format!(
                        "pod affinity over namespaces selected by labels may look at other tenants' pods; pin {NAMESPACE_NAME_LABEL} to {}'s namespaces",
                        scope.who()
                    ),
                ));
            }
        }
    };
    for (kind, terms) in [
        (
            "podAffinity",
            aff.pod_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            aff.pod_anti_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required, preferred)) = terms else {
            continue;
        };
        for (j, t) in required.iter().flatten().enumerate() {
            check(
                t,
                pod.at(&format!(
                    "affinity.{kind}.requiredDuringSchedulingIgnoredDuringExecution[{j}]"
                )),
            );
        }
        for (j, w) in preferred.iter().flatten().enumerate() {
            check(&w.pod_affinity_term, pod.at(&format!("affinity.{kind}.preferredDuringSchedulingIgnoredDuringExecution[{j}].podAffinityTerm")));
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
        // Registry hosts are DNS names: any case is the same host. The path stays as written.
        format!("{}{}", first.to_ascii_lowercase(), &name[first.len()..])
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    }
}

/// A registry prefix in the spelling [`image_repository`] produces (`index.docker.io` is `docker.io`).
#[must_use]
pub fn normalize_registry(r: &str) -> String {
    let host = r.split('/').next().unwrap_or_default();
    let r = format!("{}{}", host.to_ascii_lowercase(), &r[host.len()..]);
    r.strip_prefix("index.docker.io")
        .map_or_else(|| r.clone(), |rest| format!("docker.io{rest}"))
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

/// Rules on objects other than pod specs. `old` is the object before an UPDATE.
pub(crate) fn object_rules(
    obj: &Object,
    old: Option<&Object>,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    // Rules on who may touch the platform's objects bind tenants only: Kubernetes' controllers (garbage
    // collection, namespace deletion) and cluster admins act on them by design.
    let tenant_actor = scope.actor == Actor::Tenant;
    let labelled_managed = |o: &Object| o.label(MANAGED_LABEL) == Some("true");
    if tenant_actor && (labelled_managed(obj) || old.is_some_and(labelled_managed)) {
        out.push(raw(
            rid!("tenant/managed-object"),
            format!("metadata.labels[\"{MANAGED_LABEL}\"]"),
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
                claim(c.spec.as_ref(), &format!("spec.volumeClaimTemplates[{i}].spec"), scope, out);
            }
        }
        Resource::Service(s) => service(s, scope, out),
        Resource::Ingress(i) => ingress(i, scope, out),
        Resource::NetworkPolicy(p) => network_policy(p, scope, out),
        Resource::Role(r) => rbac_rules(r.rules.as_deref().unwrap_or_default(), scope, out),
        Resource::ClusterRole(r) => {
            out.push(raw(rid!("tenant/rbac-cluster-scope"), "kind".into(), "tenants may not create ClusterRoles".into()));
            rbac_rules(r.rules.as_deref().unwrap_or_default(), scope, out);
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
        Resource::PersistentVolumeClaim(c) => claim(c.spec.as_ref(), "spec", scope, out),
        Resource::PersistentVolume(v) => {
            let spec = v.spec.as_ref();
            if spec.is_some_and(|s| s.host_path.is_some()) {
                out.push(raw(rid!("tenant/pv-host-storage"), "spec.hostPath".into(), "hostPath PersistentVolumes expose a node's file system".into()));
            }
            if spec.is_some_and(|s| s.local.is_some()) {
                out.push(raw(rid!("tenant/pv-host-storage"), "spec.local".into(), "local PersistentVolumes expose a node's disk".into()));
            }
        }
        Resource::Namespace(_) if tenant_actor => namespace(obj, old, scope, out),
        Resource::ResourceQuota(_) | Resource::LimitRange(_) if tenant_actor => out.push(raw(rid!("tenant/quota-change"),
            "kind".into(),
            format!("{} objects are set by the platform from the Tenant; tenants may not create, change or delete them", obj.kind),
        )),
        Resource::Endpoints(e) if tenant_actor => endpoints(e, scope, out),
        Resource::EndpointSlice(e) if tenant_actor => endpoint_slice(e, scope, out),
        Resource::Binding(b) if tenant_actor => out.push(raw(
            rid!("tenant/node-name"),
            "target".into(),
            format!(
                "binding a pod to {} {:?} bypasses the scheduler and the secure pool",
                b.target.kind.as_deref().unwrap_or("Node"),
                b.target.name.as_deref().unwrap_or_default()
            ),
        )),
        _ => {}
    }
}

/// A claim's spec, wherever it stands (a PVC's `spec`, a `StatefulSet`'s or an ephemeral volume's template):
/// it may not bind a pre-existing volume, be filled from another tenant's namespace, or use a class the
/// tenant is not given.
fn claim(
    spec: Option<&core::PersistentVolumeClaimSpec>,
    at: &str,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    if let Some(v) = spec
        .and_then(|s| s.volume_name.as_deref())
        .filter(|v| !v.is_empty())
    {
        out.push(raw(
            rid!("tenant/pvc-volume-name"),
            format!("{at}.volumeName"),
            format!("binding existing volume {v:?} could expose another tenant's data"),
        ));
    }
    if spec.and_then(|s| s.selector.as_ref()).is_some() {
        out.push(raw(
            rid!("tenant/pvc-volume-name"),
            format!("{at}.selector"),
            "a claim with a selector binds an existing volume whose labels match, possibly another tenant's".into(),
        ));
    }
    if let Some(ns) = spec
        .and_then(|s| s.data_source_ref.as_ref())
        .and_then(|r| r.namespace.as_deref())
        .filter(|ns| Some(*ns) != scope.namespace && !scope.owns(ns))
    {
        out.push(raw(
            rid!("tenant/pvc-data-source"),
            format!("{at}.dataSourceRef.namespace"),
            format!(
                "the claim would be filled from namespace {ns:?}, outside {}",
                scope.who()
            ),
        ));
    }
    claim_storage_class(
        spec.and_then(|s| s.storage_class_name.as_deref()),
        format!("{at}.storageClassName"),
        scope.tenant,
        out,
    );
}

/// Annotations by which load-balancer implementations let a Service pick its address, its address pool,
/// a shared address or an existing load balancer, by the annotation's name (after the prefix):
/// `MetalLB` (`loadBalancerIPs`, `address-pool`, `allow-shared-ip`), kube-vip, Cilium LB IPAM (`ips`,
/// `lb-ipam-ips`, `sharing-key`), `PureLB` (`addresses`, `service-group`), AWS (`eip-allocations`,
/// `private-ipv4-addresses`, `ipv6-addresses`), Azure (`load-balancer-ipv4`, `pip-name`, `pip-prefix-id`),
/// GKE (`load-balancer-ip-addresses`), Oracle (`reserved-ips`), Civo, Linode, Scaleway, Outscale,
/// Alibaba, Tencent, Huawei, `OpenStack`, `DigitalOcean` and Hetzner (an existing load balancer by id or
/// name, reserved addresses and pools).
const LB_ADDRESS_NAMES: &[&str] = &[
    "loadbalancerips",
    "address-pool",
    "allow-shared-ip",
    "ips",
    "lb-ipam-ips",
    "lb-ipam-sharing-key",
    "sharing-key",
    "addresses",
    "service-group",
    "aws-load-balancer-eip-allocations",
    "aws-load-balancer-private-ipv4-addresses",
    "aws-load-balancer-ipv6-addresses",
    "aws-load-balancer-name",
    "azure-load-balancer-ipv4",
    "azure-load-balancer-ipv6",
    "azure-pip-name",
    "azure-pip-name-ipv6",
    "azure-pip-prefix-id",
    "azure-pip-prefix-id-ipv6",
    "load-balancer-ip-addresses",
    "load-balancer-address",
    "reserved-ips",
    "load-balancer-id",
    "loadbalancer-id",
    "alibaba-cloud-loadbalancer-id",
    "tke-existed-lbid",
    "elb.id",
    "elb.eip-id",
    "port-id",
    "do-loadbalancer-name",
    "vpc-lb-name",
    "scw-loadbalancer-ip-ids",
    "scw-loadbalancer-id",
    "ipv4-address",
    "linode-loadbalancer-reserved-ipv4",
    "linode-loadbalancer-nodebalancer-id",
    "osc-load-balancer-ip-pool",
    "osc-load-balancer-ip-id",
    "ipv4",
    "ipv6",
];

/// Whether an annotation on a `LoadBalancer` Service chooses its address or an existing load balancer (see
/// [`LB_ADDRESS_NAMES`]). Names no list knows count when they say so: ending in `-ip`, `-ips`,
/// `-ip-address(es)`, `reserved-ip(s)`, `-ip-pool`, an EIP, or a load balancer's own id or name.
fn chooses_lb_address(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let prefix = key
        .rsplit_once('/')
        .map_or("", |(p, _)| p)
        .to_ascii_lowercase();
    let balancer = |s: &str| {
        s.contains("loadbalancer")
            || s.contains("load-balancer")
            || s.contains("lb-")
            || s.ends_with("lb")
    };
    LB_ADDRESS_NAMES.contains(&name.as_str())
        || name.ends_with("-ip")
        || name.ends_with("-ips")
        || name.ends_with("-ip-address")
        || name.ends_with("-ip-addresses")
        || name.contains("reserved-ip")
        || name.ends_with("-ip-pool")
        || name.contains("-ip-id")
        || name.contains("eip-")
        || name.ends_with("-eip")
        || name.ends_with("lbid")
        // The load balancer itself, by id or name: `<...>-loadbalancer-id`, `<...>-lb-name`.
        || ((name.ends_with("-id") || name.ends_with("-name")) && {
            let stem = name.trim_end_matches("-id").trim_end_matches("-name");
            stem.ends_with("loadbalancer") || stem.ends_with("load-balancer") || stem.ends_with("-lb") || stem == "lb"
        })
        // Hetzner, and others: `<load-balancer prefix>/name` or `/id`.
        || (matches!(name.as_str(), "name" | "id") && balancer(&prefix))
}

/// Host names other controllers publish for an object: `ExternalDNS`'s DNS records, cert-manager's
/// certificate common name. Each must be one the tenant may publish, like an Ingress host.
fn published_names(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    for (key, value) in annotations.into_iter().flatten() {
        let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
        let names: Vec<&str> = if prefix.contains("external-dns")
            && matches!(name, "hostname" | "internal-hostname")
        {
            value
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .collect()
        } else if prefix == "cert-manager.io" && name == "common-name" {
            vec![value.trim()]
        } else {
            continue;
        };
        for host in names {
            // A wildcard record is published for everything under it.
            let under = host.strip_prefix("*.").unwrap_or(host);
            if let Err(d) = scope.tenancy.may_publish_host(scope.party, under) {
                out.push(raw(
                    rid!("tenant/ingress-host"),
                    kubebid_model::path::join("metadata.annotations", key),
                    format!("{key}: {}", host_denial(host, &d)),
                ));
            }
        }
    }
}

fn service(s: &core::Service, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    published_names(s.metadata.annotations.as_ref(), scope, out);
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
                    format!("{} may not create LoadBalancer services", scope.who()),
                ));
            }
            if spec.allocate_load_balancer_node_ports != Some(false) {
                out.push(raw(rid!("tenant/service-nodeport"), "spec.allocateLoadBalancerNodePorts".into(), "a LoadBalancer service allocates node ports unless allocateLoadBalancerNodePorts is false".into()));
            }
            // Which address a load balancer gets is the platform's: a chosen one could be another tenant's.
            if spec
                .load_balancer_ip
                .as_deref()
                .is_some_and(|ip| !ip.is_empty())
            {
                out.push(raw(
                    rid!("tenant/service-loadbalancer"),
                    "spec.loadBalancerIP".into(),
                    "a tenant may not choose its load balancer's address".into(),
                ));
            }
            for key in s.metadata.annotations.iter().flatten().map(|(k, _)| k) {
                if chooses_lb_address(key) {
                    out.push(raw(
                        rid!("tenant/service-loadbalancer"),
                        kubebid_model::path::join("metadata.annotations", key),
                        format!(
                            "{key} chooses the load balancer's address, which is the platform's"
                        ),
                    ));
                }
            }
            if spec.external_traffic_policy.as_deref() == Some("Local") {
                out.push(raw(
                    rid!("tenant/service-nodeport"),
                    "spec.externalTrafficPolicy".into(),
                    "externalTrafficPolicy Local allocates a health-check node port on every node"
                        .into(),
                ));
            }
        }
        Some("ExternalName") => {
            if let Some(name) = spec.external_name.as_deref() {
                external_name(name, scope, out);
            }
        }
        _ => {}
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if port.node_port.is_some_and(|p| p != 0) {
            out.push(raw(
                rid!("tenant/service-nodeport"),
                format!("spec.ports[{i}].nodePort"),
                "a node port opens a port on every node".into(),
            ));
        }
    }
    if spec.health_check_node_port.is_some_and(|p| p != 0) {
        out.push(raw(
            rid!("tenant/service-nodeport"),
            "spec.healthCheckNodePort".into(),
            "a health-check node port opens a port on every node".into(),
        ));
    }
    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        out.push(raw(
            rid!("tenant/service-external-ips"),
            format!("spec.externalIPs[{i}]"),
            format!("externalIP {ip} can capture traffic for an address the tenant does not own"),
        ));
    }
}

/// Where a name of the cluster zone belongs, for messages.
fn describe_name(n: &ClusterName) -> String {
    match n {
        ClusterName::Zone => "the cluster zone".into(),
        ClusterName::Namespace(ns) if ns.is_empty() => {
            "the cluster zone outside any namespace".into()
        }
        ClusterName::Namespace(ns) => format!("namespace {ns:?}"),
        ClusterName::Service(ns, svc) => format!("service {ns}/{svc}"),
    }
}

fn external_name(name: &str, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    name_target(
        name,
        "spec.externalName",
        rid!("tenant/service-externalname"),
        scope,
        out,
    );
}

/// A DNS name something follows on the tenant's behalf (an `ExternalName`, an FQDN endpoint): it may not
/// name a protected address or land in the cluster outside what the tenant reaches.
fn name_target(name: &str, path: &str, rule: usize, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    match scope.tenancy.external_name_targets(name) {
        Err(why) => out.push(raw(rule, path.into(), format!("{name:?}: {why}"))),
        Ok(targets) => {
            // The zone's own names (its apex, `svc`) hold nothing a service needs to point at.
            let outside = |t: &ClusterName| {
                matches!(t, ClusterName::Zone) || !scope.tenancy.reaches_name(scope.party, t)
            };
            if let Some(t) = targets.iter().find(|t| outside(t)) {
                out.push(raw(
                    rule,
                    path.into(),
                    format!(
                        "{name:?} resolves to {}, which {} may not reach",
                        describe_name(t),
                        scope.who()
                    ),
                ));
            }
        }
    }
}

/// The lists below name annotations by their name part, whatever the prefix: ingress-nginx's is
/// `nginx.ingress.kubernetes.io` unless the platform runs it with `--annotations-prefix`.
///
/// Annotations whose value is a URL or host the controller itself fetches or sends to.
const CONTROLLER_FETCHED_URLS: &[&str] = &[
    "auth-url",
    "global-auth-url",
    "mirror-target",
    "mirror-host",
];
/// Annotations naming a `Secret` or `ConfigMap` as `namespace/name`: the controller reads it with its own rights.
const CONTROLLER_READ_OBJECTS: &[&str] = &[
    "auth-secret",
    "auth-tls-secret",
    "proxy-ssl-secret",
    "auth-proxy-set-headers",
    "custom-headers",
    "fastcgi-params-configmap",
];

/// ingress-nginx annotations whose values it writes into nginx's configuration as they are (the ones behind
/// CVE-2025-1097, -1098 and -24514, and their kin), matched by name whatever the prefix.
const NGINX_VERBATIM: &[&str] = &[
    "auth-url",
    "auth-signin",
    "auth-method",
    "auth-realm",
    "auth-tls-match-cn",
    "auth-cache-key",
    "mirror-target",
    "mirror-host",
    "permanent-redirect",
    "temporal-redirect",
    "rewrite-target",
    "app-root",
    "upstream-vhost",
    "x-forwarded-prefix",
    "proxy-redirect-from",
    "proxy-redirect-to",
    "cors-allow-origin",
];

/// The first character of `value` that can end an nginx directive or string and start another: a control
/// character but the tab (a line break ends a directive), `;`, a brace, a double quote, a backslash, a
/// backtick, or `#` where a comment can begin (at the start or after whitespace; `/docs#install` is a URL's
/// fragment).
fn breaks_out_of_a_value(value: &str) -> Option<char> {
    let mut after_space = true;
    for c in value.chars() {
        if (c.is_control() && c != '\t')
            || matches!(c, ';' | '{' | '}' | '"' | '\\' | '`')
            || (c == '#' && after_space)
        {
            return Some(c);
        }
        after_space = c.is_whitespace();
    }
    None
}

/// Whether an annotation value has the form `namespace/name`, the way ingress-nginx names an object of
/// another namespace in any annotation that takes one.
fn names_namespaced_object(value: &str) -> Option<&str> {
    let (ns, name) = value.trim().split_once('/')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    (label(ns) && !name.is_empty() && name.split('.').all(label)).then_some(ns)
}
/// A host name as DNS writes it (letters, digits, `-`, `.`), or an IPv4 address: no pattern, variable,
/// whitespace or escape that a controller could read otherwise.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with('.')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
}

/// Annotations that add host names the controller serves besides the rules' hosts.
const EXTRA_HOSTS: &[&str] = &["server-alias"];

fn ingress(i: &net::Ingress, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    published_names(i.metadata.annotations.as_ref(), scope, out);
    for (key, value) in i.metadata.annotations.iter().flatten() {
        let path = kubebid_model::path::join("metadata.annotations", key);
        let mut deny =
            |why: String| out.push(raw(rid!("tenant/ingress-annotations"), path.clone(), why));
        // Raw controller configuration, in any controller's spelling (ingress-nginx `*-snippet`, NGINX Inc.'s
        // `nginx.org/*-snippets`, HAProxy's `*-snippet`).
        let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key.as_str()));
        // nginx controllers, whatever prefix they run with: theirs, or a name they write out verbatim.
        let nginx_annotation = prefix.contains("nginx") || NGINX_VERBATIM.contains(&name);
        if key.ends_with("-snippet") || key.ends_with("-snippets") {
            deny(format!(
                "{key} injects configuration into the ingress controller every tenant shares"
            ));
        } else if nginx_annotation && let Some(c) = breaks_out_of_a_value(value) {
            // The controller writes annotation values into its configuration: a line break, `;`, a brace or
            // a quote ends the directive and starts the tenant's own (CVE-2025-1097, -1098, -24514).
            deny(format!(
                "{key}: the value holds {c:?}, which can end the controller's directive and start another"
            ));
        } else if CONTROLLER_FETCHED_URLS.contains(&name) {
            if let Some(why) = url_target_problem(value, scope) {
                deny(format!("{key}: {why}"));
            }
        } else if EXTRA_HOSTS.contains(&name) {
            // As the controller reads it: comma-separated, whitespace of any kind trimmed.
            for alias in value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                if !is_plain_host(alias) {
                    deny(format!(
                        "{key}: {alias:?} is a pattern (regular expression or wildcard), which matches host names other tenants may serve"
                    ));
                } else if let Err(d) = scope.tenancy.may_publish_host(scope.party, alias) {
                    deny(format!("{key}: {}", host_denial(alias, &d)));
                }
            }
        } else if CONTROLLER_READ_OBJECTS.contains(&name)
            || prefix.contains("ingress")
            || prefix.contains("nginx")
        {
            // Any ingress controller annotation whose value reads `namespace/name` names an object the
            // controller would fetch with its own rights.
            let ns = if CONTROLLER_READ_OBJECTS.contains(&name) {
                value.split_once('/').map(|(ns, _)| ns.trim())
            } else {
                names_namespaced_object(value)
            };
            if let Some(ns) = ns
                && !scope.owns(ns)
            {
                deny(format!(
                    "{key} names an object of namespace {ns:?}, which the controller would read for {}",
                    scope.who()
                ));
            }
        }
    }
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
            if let Err(d) = scope.tenancy.may_publish_host(scope.party, h) {
                out.push(raw(rid!("tenant/ingress-host"), path, host_denial(h, &d)));
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

fn host_denial(h: &str, d: &HostDenial) -> String {
    match d {
        HostDenial::OtherTenant { tenant, domain } => {
            format!("host {h:?} is under {domain:?}, which tenant {tenant:?} claims")
        }
        HostDenial::Reserved(domain) => {
            format!("host {h:?} is under {domain:?}, which the platform reserves")
        }
        HostDenial::OutsideDomains(domains) => format!(
            "host {h:?} is outside the tenant's domains ({})",
            if domains.is_empty() {
                "the tenant has no ingress domains".to_owned()
            } else {
                format!("allowed: {}", domains.join(", "))
            }
        ),
    }
}

/// Why the controller must not fetch `url` for this party: its host is a protected address or a name in the
/// cluster the party may not reach.
fn url_target_problem(url: &str, scope: &Scope<'_>) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    // `$host` and `$server_name` are the request's own host, which is one of the Ingress's, checked as such
    // (oauth2-proxy's `https://$host/oauth2/auth`).
    for own in ["$host", "$server_name"] {
        if let Some(after) = rest.strip_prefix(own)
            && after
                .chars()
                .next()
                .is_none_or(|c| matches!(c, '/' | '?' | '#' | ':'))
        {
            return None;
        }
    }
    // nginx reads `$name` as a variable wherever it stands: the host ends where one begins
    // (`https://mirror.example$request_uri`), and a host that is a variable is chosen per request.
    let authority = rest.split(['/', '?', '#', '$']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, bracketed) = if host_port.starts_with('[') {
        let h = host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[');
        (h, true)
    } else {
        (
            host_port.rsplit_once(':').map_or(host_port, |(h, _)| h),
            false,
        )
    };
    if host.is_empty() {
        return Some(format!(
            "{url:?} names no fixed host (a variable or nothing), so it may reach anything"
        ));
    }
    let plain = if bracketed {
        host.chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.'))
    } else {
        is_plain_host(host)
    };
    if !plain {
        return Some(format!(
            "the host {host:?} of {url:?} is not a plain host name or address"
        ));
    }
    match scope.tenancy.external_name_targets(host) {
        Err(why) => Some(why.to_string()),
        Ok(targets) => targets
            .iter()
            .find(|t| !scope.tenancy.reaches_name(scope.party, t))
            .map(|t| {
                format!(
                    "{url:?} reaches {}, which {} may not",
                    describe_name(t),
                    scope.who()
                )
            }),
    }
}

fn network_policy(p: &net::NetworkPolicy, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let Some(spec) = p.spec.as_ref() else { return };
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        if rule.from.as_ref().is_none_or(Vec::is_empty) {
            out.push(raw(
                rid!("tenant/netpol-namespace-selector"),
                format!("spec.ingress[{i}]"),
                "an ingress rule without peers admits every source: other tenants' pods, namespaces of no tenant, the nodes".into(),
            ));
        }
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            peer_rules(
                peer,
                &PeerPath("ingress", i, "from", j),
                Direction::Ingress,
                None,
                scope,
                out,
            );
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        if rule.to.as_ref().is_none_or(Vec::is_empty) {
            out.push(raw(
                rid!("tenant/netpol-namespace-selector"),
                format!("spec.egress[{i}]"),
                "an egress rule without peers allows every destination: other tenants' pods, the nodes and the metadata service".into(),
            ));
        }
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            peer_rules(
                peer,
                &PeerPath("egress", i, "to", j),
                Direction::Egress,
                rule.ports.as_deref(),
                scope,
                out,
            );
        }
    }
}

/// Where a peer stands (`spec.egress[1].to[0]`), written out only when a finding needs it.
struct PeerPath(&'static str, usize, &'static str, usize);

impl std::fmt::Display for PeerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spec.{}[{}].{}[{}]", self.0, self.1, self.2, self.3)
    }
}

fn peer_rules(
    peer: &net::NetworkPolicyPeer,
    path: &PeerPath,
    direction: Direction,
    ports: Option<&[net::NetworkPolicyPort]>,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    if let Some(sel) = &peer.namespace_selector
        && !(direction == Direction::Egress && is_cluster_dns(sel, ports))
        && let Err(why) = namespace_selector_confined(sel, direction, scope)
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
    // Loopback and "this host" never leave the pod: a policy that covers them grants nothing there.
    let leaves_the_pod = |why: &kubebid_model::address::Protected| {
        !matches!(
            why,
            kubebid_model::address::Protected::Loopback
                | kubebid_model::address::Protected::Unspecified
        )
    };
    for (overlap, range, why) in scope
        .tenancy
        .cluster()
        .protected
        .uncovered(cidr, &excepts)
        .into_iter()
        .filter(|(_, _, why)| leaves_the_pod(why))
    {
        let fix = if overlap == range {
            format!("; add {range} to except")
        } else {
            String::new()
        };
        out.push(raw(
            rid!("tenant/netpol-ipblock"),
            format!("{path}.ipBlock.cidr"),
            format!(
                "ipBlock {cidr} covers {overlap}, in {range} ({}){fix}",
                why.describe()
            ),
        ));
    }
    if direction == Direction::Egress
        && let Party::Tenant(t) = scope.party
        && let Some(allowed) = &t.egress_cidrs
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

/// Egress to the cluster DNS (`kube-system`, on the DNS port only, whichever of its pods: `CoreDNS`, kube-dns,
/// node-local DNS) is a path every tenant needs and charts ship; it reaches no other tenant. Either
/// spelling of the namespace selector counts (`matchLabels`, or `In` with that one value).
fn is_cluster_dns(ns: &LabelSelector, ports: Option<&[net::NetworkPolicyPort]>) -> bool {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let pinned = |sel: &LabelSelector, key: &str, value: &str| {
        sel.match_labels
            .as_ref()
            .and_then(|l| l.get(key))
            .is_some_and(|v| v == value)
            || sel.match_expressions.iter().flatten().any(|e| {
                e.key == key
                    && e.operator == "In"
                    && e.values.as_deref() == Some(&[value.to_owned()])
            })
    };
    let dns_port = |p: &net::NetworkPolicyPort| {
        p.end_port.is_none()
            && match &p.port {
                Some(IntOrString::Int(53)) => true,
                Some(IntOrString::String(n)) => matches!(n.as_str(), "dns" | "dns-tcp"),
                _ => false,
            }
    };
    pinned(ns, NAMESPACE_NAME_LABEL, "kube-system")
        && ports.is_some_and(|ps| !ps.is_empty() && ps.iter().all(dns_port))
}

/// The requirements of a namespace selector that pin `kubernetes.io/metadata.name` (in `matchLabels`, or
/// `In`), each with the names it admits. Requirements are `ANDed`, so a selector selects only namespaces
/// inside any one of them.
fn name_pins(sel: &LabelSelector) -> impl Iterator<Item = Vec<&str>> {
    let labels = sel
        .match_labels
        .iter()
        .flatten()
        .filter(|(k, _)| *k == NAMESPACE_NAME_LABEL)
        .map(|(_, v)| vec![v.as_str()]);
    let exprs = sel
        .match_expressions
        .iter()
        .flatten()
        .filter(|e| e.key == NAMESPACE_NAME_LABEL && e.operator == "In")
        .map(|e| e.values.iter().flatten().map(String::as_str).collect());
    labels.chain(exprs)
}

/// Proves a namespace selector selects only namespaces the party may peer with, by the namespace name label
/// (the only one nobody can change). Requirements are `ANDed`, so one requirement that pins the name to
/// allowed namespaces bounds the whole selector.
fn namespace_selector_confined(
    sel: &LabelSelector,
    direction: Direction,
    scope: &Scope<'_>,
) -> Result<(), String> {
    let labels = sel.match_labels.as_ref();
    let exprs = sel.match_expressions.as_deref().unwrap_or_default();
    if labels.is_none_or(std::collections::BTreeMap::is_empty) && exprs.is_empty() {
        return Err(
            "an empty namespaceSelector selects every namespace, other tenants' included".into(),
        );
    }
    let allowed = |ns: &str| scope.tenancy.may_peer(scope.party, ns, direction);
    let mut outside: Vec<String> = Vec::new();
    for pin in name_pins(sel) {
        if !pin.is_empty() && pin.iter().all(|n| allowed(n)) {
            return Ok(());
        }
        outside.extend(pin.iter().filter(|n| !allowed(n)).map(|n| (*n).to_owned()));
    }
    if !outside.is_empty() {
        outside.sort();
        outside.dedup();
        let owners: Vec<String> = outside
            .iter()
            .map(|ns| match scope.tenancy.party(ns) {
                Party::Tenant(t) => format!("{ns} (tenant {:?})", t.name),
                Party::Platform => format!("{ns} (the platform's)"),
                Party::Unclaimed(_) => ns.clone(),
            })
            .collect();
        return Err(format!(
            "the namespaceSelector selects namespace(s) {} may not reach: {}",
            scope.who(),
            owners.join(", ")
        ));
    }
    // Not pinned by name: say what it does pin, if anything, and why that is not enough.
    let tenant_label = labels
        .and_then(|l| l.get(TENANT_LABEL))
        .cloned()
        .or_else(|| {
            exprs
                .iter()
                .find(|e| e.key == TENANT_LABEL && e.operator == "In")
                .and_then(|e| e.values.as_ref()?.first().cloned())
        });
    Err(match tenant_label {
        Some(t) if scope.party.tenant_name() != Some(t.as_str()) => format!(
            "the namespaceSelector selects the namespaces labelled {TENANT_LABEL}={t}, tenant {t:?}'s, not {}'s",
            scope.who()
        ),
        Some(_) => format!(
            "{TENANT_LABEL} is a label, which can be put on namespaces that are not the tenant's; select them by {NAMESPACE_NAME_LABEL}"
        ),
        None => format!(
            "the namespaceSelector does not pin namespaces by {NAMESPACE_NAME_LABEL}, so it may select other tenants' namespaces"
        ),
    })
}

fn endpoint_address(ip: &str, path: String, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    match kubebid_model::tenancy::host_address(ip) {
        None => out.push(raw(
            rid!("tenant/endpoints"),
            path,
            format!("{ip:?} is not an IP address"),
        )),
        Some(addr) => {
            if let Some((range, why)) = scope.tenancy.cluster().protected.of_address(addr) {
                out.push(raw(
                    rid!("tenant/endpoints"),
                    path,
                    format!(
                        "endpoint {ip} is in {range} ({}); only Kubernetes writes endpoints there",
                        why.describe()
                    ),
                ));
            }
        }
    }
}

fn endpoint_target(
    target: Option<&core::ObjectReference>,
    path: String,
    scope: &Scope<'_>,
    out: &mut Vec<Raw>,
) {
    if let Some(ns) = target.and_then(|t| t.namespace.as_deref())
        && !scope.owns(ns)
    {
        out.push(raw(
            rid!("tenant/endpoints"),
            path,
            format!(
                "the endpoint refers to an object in namespace {ns:?}, outside {}",
                scope.who()
            ),
        ));
    }
}

fn endpoints(e: &core::Endpoints, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    for (i, subset) in e.subsets.iter().flatten().enumerate() {
        for (list, addrs) in [
            ("addresses", &subset.addresses),
            ("notReadyAddresses", &subset.not_ready_addresses),
        ] {
            for (j, a) in addrs.iter().flatten().enumerate() {
                let at = format!("subsets[{i}].{list}[{j}]");
                endpoint_address(&a.ip, format!("{at}.ip"), scope, out);
                endpoint_target(
                    a.target_ref.as_ref(),
                    format!("{at}.targetRef.namespace"),
                    scope,
                    out,
                );
            }
        }
    }
}

fn endpoint_slice(e: &discovery::EndpointSlice, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    for (i, ep) in e.endpoints.iter().flatten().enumerate() {
        for (j, a) in ep.addresses.iter().enumerate() {
            if e.address_type == "FQDN" {
                name_target(
                    a,
                    &format!("endpoints[{i}].addresses[{j}]"),
                    rid!("tenant/endpoints"),
                    scope,
                    out,
                );
            } else {
                endpoint_address(a, format!("endpoints[{i}].addresses[{j}]"), scope, out);
            }
        }
        endpoint_target(
            ep.target_ref.as_ref(),
            format!("endpoints[{i}].targetRef.namespace"),
            scope,
            out,
        );
    }
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// `bind` on named `ClusterRole`s tenants may bind anyway: it only lets a `RoleBinding` name them, which the
/// binding rules allow regardless. An empty `resourceNames` would mean every `ClusterRole`.
fn binds_allowed_roles_only(r: &rbac::PolicyRule, scope: &Scope<'_>) -> bool {
    let names = r.resource_names.as_deref().unwrap_or_default();
    r.api_groups.as_deref() == Some(&[RBAC_GROUP.to_owned()][..])
        && r.resources.as_deref() == Some(&["clusterroles".to_owned()][..])
        && !names.is_empty()
        && names
            .iter()
            .all(|n| scope.cluster.allowed_cluster_roles.contains(n))
}

fn rbac_rules(rules: &[rbac::PolicyRule], scope: &Scope<'_>, out: &mut Vec<Raw>) {
    for (i, r) in rules.iter().enumerate() {
        for (j, verb) in r.verbs.iter().enumerate() {
            let escalates = match verb.as_str() {
                "escalate" | "impersonate" => true,
                "bind" => !binds_allowed_roles_only(r, scope),
                _ => false,
            };
            if escalates {
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
        // Read-only wildcards are harmless; `*` as a verb includes escalate and bind.
        let star_verb = r.verbs.iter().any(|v| v == "*");
        let rbac_resources = resources
            .iter()
            .any(|x| x == "*" || x.starts_with("roles") || x.starts_with("clusterroles"));
        if covers_rbac && star_verb && rbac_resources {
            out.push(raw(
                rid!("tenant/rbac-wildcard"),
                format!("rules[{i}]"),
                "the verb * over RBAC roles includes escalate and bind".into(),
            ));
        }
    }
}

fn subjects(subjects: &[rbac::Subject], scope: &Scope<'_>, out: &mut Vec<Raw>) {
    let owners = match scope.party {
        Party::Tenant(t) => t.owners.as_slice(),
        _ => &[],
    };
    // With user or group owners configured, bindings may name only them.
    let restricts = owners
        .iter()
        .any(|o| matches!(o.kind, OwnerKind::User | OwnerKind::Group));
    let is_owner =
        |kind: OwnerKind, name: &str| owners.iter().any(|o| o.kind == kind && o.name == name);
    for (i, s) in subjects.iter().enumerate() {
        let problem = match s.kind.as_str() {
            "ServiceAccount" => {
                let ns = s
                    .namespace
                    .as_deref()
                    .or(scope.namespace)
                    .unwrap_or_default();
                (!scope.owns(ns))
                    .then(|| format!("service account {ns}/{} is outside {}", s.name, scope.who()))
            }
            "User" => {
                if let Some(rest) = s.name.strip_prefix("system:serviceaccount:") {
                    let ns = rest.split(':').next().unwrap_or_default();
                    (!scope.owns(ns)).then(|| {
                        format!(
                            "user {:?} is a service account outside {}",
                            s.name,
                            scope.who()
                        )
                    })
                } else if s.name.starts_with("system:") {
                    Some(format!("user {:?} is a Kubernetes system identity", s.name))
                } else if restricts && !is_owner(OwnerKind::User, &s.name) {
                    Some(format!(
                        "user {:?} is not an owner of {}",
                        s.name,
                        scope.who()
                    ))
                } else {
                    None
                }
            }
            "Group" => {
                if let Some(ns) = s.name.strip_prefix("system:serviceaccounts:") {
                    (!scope.owns(ns)).then(|| {
                        format!(
                            "group {:?} is the service accounts of a namespace outside {}",
                            s.name,
                            scope.who()
                        )
                    })
                } else if s.name.starts_with("system:") {
                    Some(format!("group {:?} spans the whole cluster", s.name))
                } else if restricts && !is_owner(OwnerKind::Group, &s.name) {
                    Some(format!(
                        "group {:?} is not an owner of {}",
                        s.name,
                        scope.who()
                    ))
                } else {
                    None
                }
            }
            other => Some(format!("unknown subject kind {other:?}")),
        };
        if let Some(p) = problem {
            out.push(raw(
                rid!("tenant/rbac-subject"),
                format!("subjects[{i}]"),
                p,
            ));
        }
    }
}

const PSA_PREFIX: &str = "pod-security.kubernetes.io/";
const PSA_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
const PSA_ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";

static NO_LABELS: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();

/// A Namespace created, changed or deleted by a tenant (not by the platform).
fn namespace(obj: &Object, old: Option<&Object>, scope: &Scope<'_>, out: &mut Vec<Raw>) {
    if let Party::Tenant(t) = scope.party {
        out.push(raw(
            rid!("tenant/namespace-object"),
            "metadata.name".into(),
            format!(
                "namespace {:?} belongs to tenant {:?}; its Namespace object is the platform's, and no tenant may create, change or delete it",
                obj.name(),
                t.name
            ),
        ));
    }
    let labels = obj.meta().labels.as_ref().unwrap_or(&NO_LABELS);
    let label_path = |k: &str| kubebid_model::path::join("metadata.labels", k);
    match (scope.party.tenant_name(), labels.get(TENANT_LABEL)) {
        (Some(name), Some(v)) if v == name => {}
        (Some(name), Some(v)) => out.push(raw(
            rid!("tenant/namespace-labels"),
            label_path(TENANT_LABEL),
            format!("namespace belongs to tenant {name:?} but is labelled {v:?}"),
        )),
        (Some(name), None) => out.push(raw(
            rid!("tenant/namespace-labels"),
            "metadata.labels".into(),
            format!("namespace of tenant {name:?} lacks the {TENANT_LABEL} label"),
        )),
        (None, _) => {}
    }
    if scope.party.tenant_name().is_none() {
        for k in labels.keys().filter(|k| k.starts_with("kubebid.io/")) {
            out.push(raw(
                rid!("tenant/namespace-labels"),
                label_path(k),
                format!("the {k} label is KubeBid's to set"),
            ));
        }
    }
    let needed = if scope.profile == Profile::Baseline {
        1
    } else {
        2
    };
    if let Some(level) = labels.get(PSA_ENFORCE) {
        let rank = match level.as_str() {
            "privileged" => 0,
            "baseline" => 1,
            "restricted" => 2,
            _ => -1,
        };
        if rank < needed {
            out.push(raw(
                rid!("tenant/namespace-labels"),
                label_path(PSA_ENFORCE),
                format!(
                    "pod-security enforce level {level:?} is weaker than the profile {}",
                    scope.profile
                ),
            ));
        }
    }
    if let Some(version) = labels.get(PSA_ENFORCE_VERSION) {
        let wanted = crate::pss::effective_minor(scope.cluster.pss_version.minor);
        let pinned =
            kubebid_model::PssVersion::parse(version).map(|v| crate::pss::effective_minor(v.minor));
        match pinned {
            Some(v) if v >= wanted => {}
            Some(v) => out.push(raw(
                rid!("tenant/namespace-labels"),
                label_path(PSA_ENFORCE_VERSION),
                format!(
                    "pod-security enforce-version {version:?} pins the checks of v1.{v}, older and weaker than the cluster's {} (v1.{wanted})",
                    scope.cluster.pss_version
                ),
            )),
            None => out.push(raw(
                rid!("tenant/namespace-labels"),
                label_path(PSA_ENFORCE_VERSION),
                format!("pod-security enforce-version {version:?} is not \"latest\" or \"v1.N\""),
            )),
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
                    label_path(k),
                    format!("tenants may not change the {k} label of namespaces"),
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
