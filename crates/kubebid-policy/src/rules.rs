//! The rule set: every rule's stable ID, title, severity, profiles, description and remediation.
//!
//! This table is the single source for `kubebid rules`, the generated reference in `docs/rules.md`, the
//! webhook and every later component. IDs never change meaning; a retired rule keeps its ID reserved.

use kubebid_model::{Action, Profile};
use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Breaks tenant isolation or gives node access outright.
    Critical,
    /// Opens a path to another tenant or the node.
    High,
    /// Weakens defence in depth or lets one tenant starve others.
    Medium,
    /// Hygiene.
    Low,
}

impl Severity {
    /// Lower-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

/// Which profiles a rule belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Pod Security Standards baseline: every profile.
    Baseline,
    /// Pod Security Standards restricted: `restricted` and `zero-trust`.
    Restricted,
    /// `KubeBid`'s tenant rules: `zero-trust` only.
    ZeroTrust,
}

impl Level {
    /// Whether a rule of this level runs under `profile`.
    #[must_use]
    pub fn in_profile(self, profile: Profile) -> bool {
        match self {
            Level::Baseline => true,
            Level::Restricted => profile != Profile::Baseline,
            Level::ZeroTrust => profile == Profile::ZeroTrust,
        }
    }

    /// The profiles a rule of this level belongs to.
    #[must_use]
    pub fn profiles(self) -> &'static [Profile] {
        match self {
            Level::Baseline => &Profile::ALL,
            Level::Restricted => &[Profile::Restricted, Profile::ZeroTrust],
            Level::ZeroTrust => &[Profile::ZeroTrust],
        }
    }
}

/// One rule.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// Stable ID, e.g. `pss/privileged` or `tenant/runtime-class`.
    pub id: &'static str,
    /// One-line title.
    pub title: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Profile membership.
    pub level: Level,
    /// Action when the configuration names none.
    pub default_action: Action,
    /// Kinds the rule looks at.
    pub kinds: &'static str,
    /// What the rule checks and why.
    pub description: &'static str,
    /// One-line fix.
    pub remediation: &'static str,
    /// Kubernetes Multi-Tenancy Benchmark check this rule covers, if any.
    pub mtb: Option<&'static str>,
}

const POD_KINDS: &str = "Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController, PodTemplate";

macro_rules! rule {
    ($id:literal, $level:ident, $sev:ident, $kinds:expr, $title:literal, $desc:literal, $fix:literal $(, mtb = $mtb:literal)? $(, action = $act:ident)?) => {
        Rule {
            id: $id,
            title: $title,
            severity: Severity::$sev,
            level: Level::$level,
            default_action: rule!(@action $($act)?),
            kinds: $kinds,
            description: $desc,
            remediation: $fix,
            mtb: rule!(@mtb $($mtb)?),
        }
    };
    (@action) => { Action::Enforce };
    (@action $a:ident) => { Action::$a };
    (@mtb) => { None };
    (@mtb $m:literal) => { Some($m) };
}

/// Every rule, in the order they are listed and evaluated.
pub static RULES: &[Rule] = RULE_TABLE;

const RULE_TABLE: &[Rule] = &[
    // Pod Security Standards, baseline.
    rule!(
        "pss/hostNamespaces",
        Baseline,
        Critical,
        POD_KINDS,
        "Host namespaces",
        "Sharing the host's network, PID or IPC namespace (hostNetwork, hostPID, hostIPC) exposes the node and every other tenant's traffic and processes.",
        "Remove hostNetwork, hostPID and hostIPC, or set them to false.",
        mtb =
            "Block use of host networking and ports; block use of host PID; block use of host IPC"
    ),
    rule!(
        "pss/privileged",
        Baseline,
        Critical,
        POD_KINDS,
        "Privileged containers",
        "Privileged containers disable almost every isolation mechanism and can take over the node.",
        "Remove securityContext.privileged or set it to false.",
        mtb = "Block privileged containers"
    ),
    rule!(
        "pss/capabilities_baseline",
        Baseline,
        High,
        POD_KINDS,
        "Capabilities beyond the default set",
        "Adding capabilities beyond the container runtime's default set (e.g. SYS_ADMIN, NET_RAW) widens the kernel attack surface.",
        "Remove capabilities outside the default set from securityContext.capabilities.add.",
        mtb = "Block add capabilities"
    ),
    rule!(
        "pss/hostPathVolumes",
        Baseline,
        Critical,
        POD_KINDS,
        "hostPath volumes",
        "hostPath volumes mount the node's file system into the pod.",
        "Replace hostPath volumes with emptyDir, configMap, secret, projected or a PersistentVolumeClaim.",
        mtb = "Block use of host path volumes"
    ),
    rule!(
        "pss/hostPorts",
        Baseline,
        High,
        POD_KINDS,
        "Host ports",
        "hostPort binds a port on the node's address, bypassing network policy and colliding with other tenants.",
        "Remove hostPort (or set it to 0) and expose the port through a Service.",
        mtb = "Block use of host networking and ports"
    ),
    rule!(
        "pss/hostProbesAndHostLifecycle",
        Baseline,
        High,
        POD_KINDS,
        "Host field in probes and lifecycle handlers",
        "A host in an httpGet or tcpSocket probe or lifecycle handler makes the kubelet connect to an arbitrary address on the pod's behalf (from v1.34).",
        "Remove the host field from probes and lifecycle handlers; they target the pod's own IP."
    ),
    rule!(
        "pss/appArmorProfile",
        Baseline,
        High,
        POD_KINDS,
        "AppArmor profile",
        "Disabling AppArmor (Unconfined) or using an unknown profile type removes a mandatory access control layer.",
        "Use appArmorProfile.type RuntimeDefault or Localhost, or leave it unset."
    ),
    rule!(
        "pss/seLinuxOptions",
        Baseline,
        High,
        POD_KINDS,
        "SELinux options",
        "Custom SELinux user or role, or a type outside the container types, can escape SELinux confinement.",
        "Remove seLinuxOptions.user and .role; use type container_t, container_init_t, container_kvm_t or container_engine_t."
    ),
    rule!(
        "pss/procMount",
        Baseline,
        High,
        POD_KINDS,
        "/proc mount type",
        "An Unmasked /proc exposes host kernel interfaces; baseline allows it only in a user namespace (hostUsers: false) from v1.35.",
        "Remove securityContext.procMount or set it to Default."
    ),
    rule!(
        "pss/seccompProfile_baseline",
        Baseline,
        High,
        POD_KINDS,
        "Seccomp profile (baseline)",
        "An Unconfined seccomp profile gives the container every system call.",
        "Set seccompProfile.type to RuntimeDefault or Localhost, or leave it unset."
    ),
    rule!(
        "pss/sysctls",
        Baseline,
        High,
        POD_KINDS,
        "Unsafe sysctls",
        "Only namespaced sysctls known to be isolated between pods are safe; others affect the whole node.",
        "Remove sysctls outside the safe set from spec.securityContext.sysctls."
    ),
    rule!(
        "pss/windowsHostProcess",
        Baseline,
        Critical,
        POD_KINDS,
        "Windows HostProcess",
        "Windows HostProcess containers run directly on the host with full access.",
        "Remove windowsOptions.hostProcess or set it to false."
    ),
    // Pod Security Standards, restricted.
    rule!(
        "pss/restrictedVolumes",
        Restricted,
        High,
        POD_KINDS,
        "Restricted volume types",
        "Only configMap, csi, downwardAPI, emptyDir, ephemeral, image, persistentVolumeClaim, projected and secret volumes are allowed; the others reach node or network storage directly.",
        "Use one of the allowed volume types; reach other storage through a PersistentVolumeClaim.",
        mtb = "Block use of host path volumes"
    ),
    rule!(
        "pss/allowPrivilegeEscalation",
        Restricted,
        High,
        POD_KINDS,
        "Privilege escalation",
        "Without allowPrivilegeEscalation: false, set-user-ID binaries can raise a process's privileges.",
        "Set securityContext.allowPrivilegeEscalation: false in every container.",
        mtb = "Block privilege escalation"
    ),
    rule!(
        "pss/runAsNonRoot",
        Restricted,
        High,
        POD_KINDS,
        "Running as non-root",
        "Containers must run as a non-root user (relaxed for pods in a user namespace from v1.35).",
        "Set securityContext.runAsNonRoot: true on the pod or every container.",
        mtb = "Require run as non-root user"
    ),
    rule!(
        "pss/runAsUser",
        Restricted,
        High,
        POD_KINDS,
        "Running as root user ID",
        "runAsUser: 0 runs the container as root (relaxed for pods in a user namespace from v1.35).",
        "Set runAsUser to a non-zero user ID, or leave it unset."
    ),
    rule!(
        "pss/seccompProfile_restricted",
        Restricted,
        High,
        POD_KINDS,
        "Seccomp profile (restricted)",
        "Every container must run under a RuntimeDefault or Localhost seccomp profile.",
        "Set spec.securityContext.seccompProfile.type: RuntimeDefault."
    ),
    rule!(
        "pss/capabilities_restricted",
        Restricted,
        High,
        POD_KINDS,
        "Capabilities (restricted)",
        "Containers must drop ALL capabilities and may add back only NET_BIND_SERVICE.",
        "Set securityContext.capabilities.drop: [\"ALL\"] and add at most NET_BIND_SERVICE.",
        mtb = "Block add capabilities"
    ),
    rule!(
        "pss/procMount_restricted",
        Restricted,
        High,
        POD_KINDS,
        "/proc mount type (restricted)",
        "Restricted requires the default /proc mount even in a user namespace (from v1.35).",
        "Remove securityContext.procMount or set it to Default."
    ),
    // The request itself.
    rule!(
        "tenant/unknown-version",
        Baseline,
        Critical,
        "any kind KubeBid judges",
        "Known kind at an unknown API version",
        "An object of a kind KubeBid judges (a Pod, a Deployment, a NetworkPolicy...) at an API version it does not decode cannot be judged, so it is refused rather than passed.",
        "Use the served version of the kind (v1, apps/v1, batch/v1, networking.k8s.io/v1, rbac.authorization.k8s.io/v1, discovery.k8s.io/v1)."
    ),
    rule!(
        "tenant/request-mismatch",
        Baseline,
        Critical,
        "any",
        "Object and request disagree",
        "An object is judged by the namespace and name of the request that carries it; an object naming another namespace or name than its request is refused, so that it can never be judged as someone else's.",
        "Send the object to its own namespace, or leave metadata.namespace unset."
    ),
    // Tenant isolation: compute.
    rule!(
        "tenant/runtime-class",
        ZeroTrust,
        Critical,
        POD_KINDS,
        "Secure runtime class",
        "Tenant pods must run in a microVM RuntimeClass the tenant is allowed (kubebid-secure by default), never on the shared host kernel; the sandbox's own configuration (io.katacontainers.*, io.kubernetes.cri-o.*, io.kubernetes.cri.*, io.containerd.* pod annotations) is the platform's.",
        "Set spec.runtimeClassName to one of the tenant's allowed classes (kubebid-secure); remove runtime annotations."
    ),
    rule!(
        "tenant/dedicated-cores",
        ZeroTrust,
        High,
        POD_KINDS,
        "Dedicated cores",
        "For a tenant with isolation.dedicatedCores, every container must be Guaranteed (cpu and memory requests equal to limits) with a whole number of CPUs: only then does the kubelet's static CPU manager pin it to cores no other tenant's pod is scheduled on, so no core, and none of its L1/L2 caches, is time-shared with another tenant.",
        "Set resources.limits.cpu to a whole number of CPUs and memory, with requests equal to limits (or no requests), in every container and init container."
    ),
    rule!(
        "tenant/node-name",
        ZeroTrust,
        High,
        "Pod kinds, pods/binding, Binding",
        "Direct node assignment",
        "spec.nodeName, or binding a pod through pods/binding, bypasses the scheduler, and with it the secure node pool and taints.",
        "Remove spec.nodeName; let the scheduler place the pod."
    ),
    rule!(
        "tenant/node-steering",
        ZeroTrust,
        High,
        POD_KINDS,
        "Node selection off the secure pool",
        "Node selectors and node affinity must not steer pods off the attested secure pool (kubebid.io/secure-runtime) or onto control-plane nodes; pod affinity and anti-affinity may look only at the tenant's own namespaces (namespaces, namespaceSelector), or a tenant could learn where other tenants' pods run and place itself beside them.",
        "Remove node selectors and affinity terms on kubebid.io/secure-runtime and node-role.kubernetes.io labels; name only own namespaces in pod affinity terms."
    ),
    rule!(
        "tenant/tolerations",
        ZeroTrust,
        High,
        POD_KINDS,
        "Tolerations of control-plane taints",
        "Tolerating control-plane taints, every taint (operator Exists with no key), CriticalAddonsOnly, the node lifecycle taints (uninitialized, unschedulable) or a KubeBid taint that reserves nodes for another tenant lets tenant pods land on nodes that are not theirs.",
        "Remove tolerations of node-role.kubernetes.io/control-plane and master, CriticalAddonsOnly, node.cloudprovider.kubernetes.io/uninitialized, node.kubernetes.io/unschedulable, other tenants' kubebid.io taints, and tolerations without a key."
    ),
    rule!(
        "tenant/pod-network",
        ZeroTrust,
        Critical,
        POD_KINDS,
        "Extra network interfaces and chosen addresses",
        "Pod annotations that attach more network interfaces (Multus k8s.v1.cni.cncf.io/networks, v1.multus-cni.io/default-network) or pick the pod's addresses or pools (Calico ipAddrs, ipv4pools, floatingIPs; Cilium ip-pool) put the pod on networks no NetworkPolicy covers, or on an address another tenant's policies trust.",
        "Remove the network plugin's annotations; the pod gets its address from the cluster's pod network."
    ),
    rule!(
        "tenant/dns-bypass",
        ZeroTrust,
        High,
        POD_KINDS,
        "DNS isolation bypass",
        "dnsPolicy Default (the node's resolver) or None, and custom dnsConfig nameservers, send queries past the tenant-aware cluster DNS.",
        "Use dnsPolicy ClusterFirst and remove spec.dnsConfig.nameservers."
    ),
    rule!(
        "tenant/image-pull-policy",
        ZeroTrust,
        High,
        POD_KINDS,
        "Image pull policy",
        "A container that may start from an image its node already holds (imagePullPolicy IfNotPresent or Never) can run another tenant's private image without its credentials. The mutating webhook sets Always on every container; a Tenant that turns mutate.imagePullPolicy off must set it on its pods itself.",
        "Set imagePullPolicy: Always, or leave the Tenant's mutate.imagePullPolicy on."
    ),
    rule!(
        "tenant/extended-resources",
        ZeroTrust,
        High,
        POD_KINDS,
        "Hugepages, GPUs and device resources",
        "Resources other than cpu, memory and ephemeral-storage (hugepages-*, nvidia.com/gpu, device plugins' resources) are bounded by no default quota or limit range: a container may ask for them only when the Tenant lists them in extendedResources, and the platform sets their quota.",
        "Remove the resource, or ask a platform admin to add it to the Tenant's extendedResources (and quota)."
    ),
    rule!(
        "tenant/image-registry",
        ZeroTrust,
        High,
        POD_KINDS,
        "Image registry",
        "Images, of containers and of image volumes, must come from the tenant's allowed registries.",
        "Pull the image from one of the tenant's allowed registries."
    ),
    rule!(
        "tenant/resources",
        ZeroTrust,
        Medium,
        POD_KINDS,
        "Resource requests and limits",
        "Every container must request and limit CPU and memory so that no tenant can starve another.",
        "Set resources.requests and resources.limits for cpu and memory in every container."
    ),
    rule!(
        "tenant/priority-class",
        ZeroTrust,
        High,
        POD_KINDS,
        "Priority classes",
        "A pod may name only the PriorityClasses its tenant is given (none by default beyond the cluster's shared ones): a class above other tenants' pods lets it preempt them, and system-node-critical or system-cluster-critical outrank the platform itself.",
        "Remove priorityClassName, or ask a platform admin to add the class to the Tenant's priorityClasses."
    ),
    // Tenant isolation: network.
    rule!(
        "tenant/service-nodeport",
        ZeroTrust,
        High,
        "Service",
        "NodePort services",
        "NodePort (and LoadBalancer node ports, and a health-check node port) open a port on every node, outside network policy.",
        "Use type ClusterIP and publish through an Ingress; a LoadBalancer (where the Tenant allows one) needs allocateLoadBalancerNodePorts: false, with a load balancer that targets pods directly (AWS NLB in IP mode, Azure, GKE NEG, MetalLB, Cilium), and externalTrafficPolicy Cluster.",
        mtb = "Block NodePort services"
    ),
    rule!(
        "tenant/service-external-ips",
        ZeroTrust,
        Critical,
        "Service",
        "Service externalIPs",
        "externalIPs let a tenant capture traffic to any address in the cluster (CVE-2020-8554).",
        "Remove spec.externalIPs."
    ),
    rule!(
        "tenant/service-loadbalancer",
        ZeroTrust,
        Medium,
        "Service",
        "LoadBalancer services",
        "LoadBalancer services are allowed only for tenants whose Tenant sets allowLoadBalancer, and never with a requested address, which could take another tenant's: spec.loadBalancerIP, or an annotation that picks an address, a pool, a shared address or an existing load balancer by id or name (MetalLB, kube-vip, Cilium, PureLB, AWS, Azure, GKE, Oracle, DigitalOcean, Hetzner, Civo, Linode, Scaleway, Outscale, Alibaba, Tencent, Huawei, OpenStack, and any name ending in -ip, -ips or -ip-address(es), reserved IPs, IP pools and EIPs).",
        "Use type ClusterIP and an Ingress, or ask a platform admin to set allowLoadBalancer; let the cloud assign the address."
    ),
    rule!(
        "tenant/service-externalname",
        ZeroTrust,
        High,
        "Service",
        "ExternalName into other tenants",
        "An ExternalName is followed by pods and by ingress controllers: one that names a service of another tenant (fully qualified, or relative such as web.other-tenant), a single label, the local host, a metadata endpoint, or an address in a protected range (loopback, link-local, the cluster's networks, also as 2852039166 or 0xa9fea9fe) proxies what the tenant may not reach.",
        "Point externalName at an external DNS name, or at a service the tenant may reach."
    ),
    rule!(
        "tenant/ingress-annotations",
        ZeroTrust,
        Critical,
        "Ingress",
        "Ingress controller configuration from tenants",
        "Ingress annotations act with the controller's rights over every tenant: any *-snippet or *-snippets annotation (ingress-nginx, CVE-2021-25742; NGINX Inc.; HAProxy) injects configuration; auth-url, auth-signin, global-auth-url, mirror-target and mirror-host make it send requests on the tenant's behalf (to another tenant or a protected address); auth-secret, auth-tls-secret, proxy-ssl-secret, custom-headers and auth-proxy-set-headers as namespace/name make it read another namespace's objects; server-alias serves host names outside the tenant's domains, and any alias that is a pattern (a regular expression, a wildcard) matches other tenants' names. A URL's host ends where an nginx variable ($request_uri) begins and must be a plain host name or address; any ingress controller annotation whose value is namespace/name names another namespace's object. Annotations are matched by name whatever their prefix (--annotations-prefix).",
        "Remove snippet annotations; point URLs at external hosts or services the tenant may reach; name only own Secrets and ConfigMaps; alias only the tenant's own host names."
    ),
    rule!(
        "tenant/ingress-wildcard-host",
        ZeroTrust,
        High,
        "Ingress",
        "Wildcard Ingress hosts",
        "A wildcard host captures traffic for names other tenants may serve.",
        "Name each host explicitly."
    ),
    rule!(
        "tenant/ingress-host",
        ZeroTrust,
        High,
        "Ingress, Service",
        "Ingress hosts outside the tenant's domains",
        "Ingress hosts must fall under the tenant's domains, never under a domain another tenant claims or the platform reserves (reservedDomains, the cluster domain); a rule or default backend without a host catches every host. The names other controllers publish for an Ingress or a Service are held to the same: ExternalDNS's hostname and internal-hostname records, cert-manager's common-name.",
        "Use hosts under the tenant's ingressDomains, and give every rule a host."
    ),
    rule!(
        "tenant/netpol-namespace-selector",
        ZeroTrust,
        Critical,
        "NetworkPolicy",
        "NetworkPolicy peers in other tenants",
        "Peers may select only namespaces the tenant may reach (its own, shared ones, and ingress controllers' for ingress), by kubernetes.io/metadata.name, the one label nobody can change; any other label can be put on another namespace. An empty namespaceSelector selects every namespace, and a rule without peers (egress or ingress) admits every address. Egress to kube-system is allowed on the DNS port only (53, or a port named dns or dns-tcp), whatever its pod selector.",
        "Select namespaces with kubernetes.io/metadata.name In [own, shared or ingress-controller namespaces]."
    ),
    rule!(
        "tenant/netpol-ipblock",
        ZeroTrust,
        High,
        "NetworkPolicy",
        "NetworkPolicy ipBlocks over protected addresses",
        "An ipBlock that covers pod, service or node addresses, loopback, or link-local (the cloud metadata service at 169.254.169.254) reaches what no tenant may, around namespace isolation. An IPv6 block holding the IPv4-mapped or NAT64 space (::/0, 64:ff9b::/96) reaches every IPv4 address; an except counts only in the address family it is written in.",
        "Limit ipBlock CIDRs to external addresses, or list every protected range they cover in except."
    ),
    rule!(
        "tenant/netpol-egress-cidr",
        ZeroTrust,
        Medium,
        "NetworkPolicy",
        "Egress outside the tenant's CIDRs",
        "Egress ipBlocks must fall inside the tenant's allowed egress CIDRs when the Tenant lists them.",
        "Use CIDRs inside the tenant's egressCidrs."
    ),
    rule!(
        "tenant/endpoints",
        ZeroTrust,
        Critical,
        "Endpoints, EndpointSlice",
        "Hand-written endpoints",
        "Endpoints and EndpointSlices written by a tenant (not by Kubernetes' controllers) may not point at protected addresses (other tenants' pods, services, nodes, metadata) or at objects of other namespaces: through a selector-less Service, ingress controllers and the API server proxy would follow them (CVE-2021-25740).",
        "Give the Service a selector and let Kubernetes write its endpoints; hand-written endpoints may name external addresses only."
    ),
    // Tenant isolation: control plane.
    rule!(
        "tenant/rbac-escalation-verbs",
        ZeroTrust,
        Critical,
        "Role, ClusterRole",
        "RBAC escalation verbs",
        "The escalate, bind and impersonate verbs let a subject grant itself more than it holds. `bind` on \
         ClusterRoles named in resourceNames, all of which tenants may bind (allowedClusterRoles), is allowed.",
        "Remove escalate, bind and impersonate from the rule's verbs, or name only allowed ClusterRoles."
    ),
    rule!(
        "tenant/rbac-wildcard",
        ZeroTrust,
        High,
        "Role, ClusterRole",
        "Wildcards over RBAC resources",
        "The verb * over roles or clusterroles (by name or by a resource wildcard) in rbac.authorization.k8s.io (or every group) includes escalate and bind. Read-only wildcards pass.",
        "List RBAC verbs explicitly."
    ),
    rule!(
        "tenant/rbac-cluster-role-ref",
        ZeroTrust,
        High,
        "RoleBinding",
        "RoleBindings to ClusterRoles not allowed for tenants",
        "A tenant RoleBinding may refer to a Role in its namespace or to one of the allowed ClusterRoles (view by default).",
        "Refer to a Role of the namespace or an allowed ClusterRole."
    ),
    rule!(
        "tenant/rbac-subject",
        ZeroTrust,
        Critical,
        "RoleBinding, ClusterRoleBinding",
        "RBAC subjects outside the tenant",
        "Bindings may name only the tenant's own service accounts and owners, never system: users or groups of the whole cluster.",
        "Bind only service accounts of the tenant's namespaces and the tenant's owners."
    ),
    rule!(
        "tenant/rbac-cluster-scope",
        ZeroTrust,
        Critical,
        "ClusterRole, ClusterRoleBinding",
        "Cluster-scoped RBAC",
        "Tenants may not create ClusterRoles or ClusterRoleBindings: they grant rights outside the tenant's namespaces.",
        "Use a Role and RoleBinding in the tenant's namespace."
    ),
    rule!(
        "tenant/namespace-labels",
        ZeroTrust,
        Critical,
        "Namespace",
        "Tenant and pod-security labels of namespaces",
        "A namespace's kubebid.io/tenant label must name its tenant, and its pod-security labels (level and version) may not be weaker than the tenant's profile or be changed by the tenant.",
        "Keep the kubebid.io/tenant and pod-security.kubernetes.io labels KubeBid set."
    ),
    rule!(
        "tenant/namespace-object",
        ZeroTrust,
        Critical,
        "Namespace",
        "Tenant namespaces themselves",
        "A tenant's Namespace objects are the platform's: a tenant that could relabel or delete its namespace could take it out of every admission rule and network policy.",
        "Ask a platform admin to change the Tenant; KubeBid keeps the namespaces."
    ),
    rule!(
        "tenant/managed-object",
        ZeroTrust,
        Critical,
        "any",
        "Objects managed by KubeBid",
        "Objects labelled kubebid.io/managed: \"true\" (quotas, limit ranges, default network policies) belong to the platform; tenants may not create, change or delete them.",
        "Leave managed objects to KubeBid; change the Tenant instead."
    ),
    rule!(
        "tenant/pod-connect",
        ZeroTrust,
        Medium,
        "pods/exec, pods/attach, pods/portforward (CONNECT)",
        "Interactive access to pods",
        "kubectl exec, attach and port-forward reach into a running pod; recorded by default, and denied for tenants whose Tenant sets this rule to enforce.",
        "Use the tenant's observability tools, or ask a platform admin to allow interactive access.",
        action = Audit
    ),
    rule!(
        "tenant/quota-change",
        ZeroTrust,
        High,
        "ResourceQuota, LimitRange",
        "Quota and limit-range changes",
        "Quotas and limit ranges are set by the platform from the Tenant; a tenant changing them could take more than its share.",
        "Ask a platform admin to change the Tenant's quotas.",
        mtb = "Block modification of resource quotas"
    ),
    // Tenant isolation: data.
    rule!(
        "tenant/pvc-volume-name",
        ZeroTrust,
        Critical,
        "PersistentVolumeClaim, StatefulSet, ephemeral volumes",
        "Binding a pre-existing volume",
        "spec.volumeName, or a spec.selector matching volumes by label, binds a claim to an existing PersistentVolume, possibly another tenant's released data.",
        "Remove spec.volumeName and spec.selector and let the encrypted StorageClass provision a volume."
    ),
    rule!(
        "tenant/pvc-data-source",
        ZeroTrust,
        Critical,
        "PersistentVolumeClaim, StatefulSet, ephemeral volumes",
        "Volume data from another namespace",
        "A claim (a PersistentVolumeClaim, a StatefulSet's volumeClaimTemplates, a generic ephemeral volume) whose dataSourceRef names a namespace of another tenant would be filled with a copy of that namespace's volume or snapshot.",
        "Use data sources of the tenant's own namespaces."
    ),
    rule!(
        "tenant/inline-volumes",
        ZeroTrust,
        Critical,
        POD_KINDS,
        "Storage mounted inline by address",
        "Inline volumes that mount remote or cloud storage by address (nfs, iscsi, rbd, cephfs, glusterfs, fc, flexVolume, azureFile, azureDisk, awsElasticBlockStore, gcePersistentDisk, cinder, vsphereVolume, ...) and inline CSI volumes of drivers outside inlineCsiDrivers skip the encrypted StorageClass and the claim quota: the node mounts them.",
        "Use a PersistentVolumeClaim of an allowed StorageClass, or ask a platform admin to add the CSI driver to inlineCsiDrivers."
    ),
    rule!(
        "tenant/volume-servers",
        ZeroTrust,
        Critical,
        POD_KINDS,
        "Volume servers inside the cluster",
        "The node, not the pod, connects to an inline volume's servers (nfs.server, iscsi portals, rbd and cephfs monitors, a CSI driver's server attributes), past every network policy: none may be a protected address (the metadata service, loopback, the cluster's networks) or a cluster name the tenant may not reach, even where an exception lifts tenant/inline-volumes. gitRepo volumes run git on the node (CVE-2024-10220) and are refused.",
        "Point the volume at a server outside the cluster, or use a PersistentVolumeClaim; replace gitRepo with an init container that clones into an emptyDir."
    ),
    rule!(
        "tenant/storage-class",
        ZeroTrust,
        High,
        "PersistentVolumeClaim, StatefulSet, ephemeral volumes",
        "Storage class",
        "Claims must name one of the tenant's allowed (encrypted) StorageClasses; an empty class falls back to the cluster default.",
        "Set storageClassName to one of the tenant's allowed classes (encrypted-ssd)."
    ),
    rule!(
        "tenant/pv-host-storage",
        ZeroTrust,
        Critical,
        "PersistentVolume",
        "hostPath and local PersistentVolumes",
        "hostPath and local PersistentVolumes expose a node's disk.",
        "Provision volumes through the encrypted CSI StorageClass."
    ),
];

/// Index of rule `id`, computed at compile time where called in a const context (see [`rid!`]): a
/// misspelt rule ID then fails the build instead of a test.
#[must_use]
// Only ever evaluated in const context (through `rid!`), where this panic is a compile error, not a crash.
#[allow(clippy::panic)]
pub(crate) const fn index_of(id: &str) -> usize {
    let mut i = 0;
    while i < RULE_TABLE.len() {
        if const_str_eq(RULE_TABLE[i].id, id) {
            return i;
        }
        i += 1;
    }
    panic!("unknown rule ID")
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The index of a rule ID, checked at compile time.
macro_rules! rid {
    ($id:literal) => {{
        const I: usize = $crate::rules::index_of($id);
        I
    }};
}
pub(crate) use rid;

static INDEX: std::sync::LazyLock<std::collections::HashMap<&'static str, usize>> =
    std::sync::LazyLock::new(|| RULES.iter().enumerate().map(|(i, r)| (r.id, i)).collect());

/// Looks a rule up by ID.
#[must_use]
pub fn rule(id: &str) -> Option<&'static Rule> {
    rule_index(id).map(|i| &RULES[i])
}

/// Index of a rule in [`RULES`], for IDs known only at run time (configuration, exceptions).
#[must_use]
pub fn rule_index(id: &str) -> Option<usize> {
    INDEX.get(id).copied()
}
