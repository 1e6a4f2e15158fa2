//! Per-rule tests: each pod rule over every pod-bearing kind and every container list, then the object
//! rules, profiles, actions, exceptions and operations.

// Test helpers fail the test by panicking on broken fixtures; that is their job.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use jiff::Timestamp;
use kubebid_model::load::ConfigSet;
use kubebid_model::{Action, Object, Profile, PssVersion};
use kubebid_policy::{Decision, Operation, PolicySet, Request};
use serde_json::{Value, json};

fn container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "ghcr.io/acme/app:1",
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    })
}

/// A pod spec that passes every rule under the built-in zero-trust defaults.
fn good_spec() -> Value {
    let mut eph = container("debug");
    eph.as_object_mut().expect("object").remove("resources");
    json!({
        "runtimeClassName": "kubebid-secure",
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "initContainers": [container("init")],
        "containers": [container("app"), container("sidecar")],
        "ephemeralContainers": [eph],
        "volumes": [{"name": "tmp", "emptyDir": {}}]
    })
}

/// Wraps a pod spec in each pod-bearing kind; returns (kind, object JSON, path of the pod spec).
fn wrap_all(spec: &Value) -> Vec<(&'static str, Value, &'static str)> {
    let meta = json!({"name": "x", "namespace": "tenant-a"});
    let tpl = json!({"metadata": {"labels": {"app": "x"}}, "spec": spec});
    let sel = json!({"matchLabels": {"app": "x"}});
    vec![
        (
            "Pod",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}),
            "spec",
        ),
        (
            "Deployment",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {"selector": sel, "template": tpl}}),
            "spec.template.spec",
        ),
        (
            "ReplicaSet",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta, "spec": {"selector": sel, "template": tpl}}),
            "spec.template.spec",
        ),
        (
            "StatefulSet",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": {"selector": sel, "serviceName": "x", "template": tpl}}),
            "spec.template.spec",
        ),
        (
            "DaemonSet",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta, "spec": {"selector": sel, "template": tpl}}),
            "spec.template.spec",
        ),
        (
            "Job",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": {"template": tpl}}),
            "spec.template.spec",
        ),
        (
            "CronJob",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta, "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": tpl}}}}),
            "spec.jobTemplate.spec.template.spec",
        ),
        (
            "ReplicationController",
            json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta, "spec": {"selector": {"app": "x"}, "template": tpl}}),
            "spec.template.spec",
        ),
        (
            "PodTemplate",
            json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta, "template": tpl}),
            "template.spec",
        ),
    ]
}

fn decide(policy: &PolicySet, v: Value) -> Decision {
    let o = Object::from_value(v).expect("decodes");
    policy.evaluate(&Request::create(&o))
}

fn ids(d: &Decision) -> Vec<String> {
    d.findings
        .iter()
        .map(|f| format!("{} @ {}", f.rule.id, f.path))
        .collect()
}

#[test]
fn the_good_spec_passes_in_every_kind() {
    let policy = PolicySet::builtin();
    for (kind, obj, _) in wrap_all(&good_spec()) {
        let d = decide(&policy, obj);
        assert!(d.findings.is_empty(), "{kind}: {:?}", ids(&d));
    }
}

type Mutation = fn(&mut Value);

/// Container rules: (rule, profile, mutation of one container, path tail inside the container).
fn container_cases() -> Vec<(&'static str, Profile, Mutation, &'static str)> {
    vec![
        (
            "pss/privileged",
            Profile::Baseline,
            |c| c["securityContext"]["privileged"] = json!(true),
            "securityContext.privileged",
        ),
        (
            "pss/capabilities_baseline",
            Profile::Baseline,
            |c| c["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"]),
            "securityContext.capabilities.add[0]",
        ),
        (
            "pss/capabilities_restricted",
            Profile::Restricted,
            |c| c["securityContext"]["capabilities"]["drop"] = json!([]),
            "securityContext.capabilities.drop",
        ),
        (
            "pss/capabilities_restricted",
            Profile::ZeroTrust,
            |c| c["securityContext"]["capabilities"]["add"] = json!(["NET_RAW"]),
            "securityContext.capabilities.add[0]",
        ),
        (
            "pss/allowPrivilegeEscalation",
            Profile::Restricted,
            |c| c["securityContext"]["allowPrivilegeEscalation"] = json!(true),
            "securityContext.allowPrivilegeEscalation",
        ),
        (
            "pss/runAsNonRoot",
            Profile::Restricted,
            |c| c["securityContext"]["runAsNonRoot"] = json!(false),
            "securityContext.runAsNonRoot",
        ),
        (
            "pss/runAsUser",
            Profile::Restricted,
            |c| c["securityContext"]["runAsUser"] = json!(0),
            "securityContext.runAsUser",
        ),
        (
            "pss/seccompProfile_baseline",
            Profile::Baseline,
            |c| c["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"}),
            "securityContext.seccompProfile.type",
        ),
        (
            "pss/seccompProfile_restricted",
            Profile::Restricted,
            |c| c["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"}),
            "securityContext.seccompProfile.type",
        ),
        (
            "pss/seLinuxOptions",
            Profile::Baseline,
            |c| c["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t"}),
            "securityContext.seLinuxOptions",
        ),
        (
            "pss/procMount",
            Profile::Baseline,
            |c| c["securityContext"]["procMount"] = json!("Unmasked"),
            "securityContext.procMount",
        ),
        (
            "pss/procMount_restricted",
            Profile::Restricted,
            |c| c["securityContext"]["procMount"] = json!("Unmasked"),
            "securityContext.procMount",
        ),
        (
            "pss/appArmorProfile",
            Profile::Baseline,
            |c| c["securityContext"]["appArmorProfile"] = json!({"type": "Unconfined"}),
            "securityContext.appArmorProfile.type",
        ),
        (
            "pss/windowsHostProcess",
            Profile::Baseline,
            |c| c["securityContext"]["windowsOptions"] = json!({"hostProcess": true}),
            "securityContext.windowsOptions.hostProcess",
        ),
        (
            "pss/hostPorts",
            Profile::Baseline,
            |c| c["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]),
            "ports[0].hostPort",
        ),
        (
            "pss/hostProbesAndHostLifecycle",
            Profile::Baseline,
            |c| c["livenessProbe"] = json!({"httpGet": {"port": 80, "host": "169.254.169.254"}}),
            "livenessProbe.httpGet.host",
        ),
        (
            "pss/hostProbesAndHostLifecycle",
            Profile::Baseline,
            |c| {
                c["lifecycle"] =
                    json!({"preStop": {"tcpSocket": {"port": 80, "host": "10.0.0.1"}}});
            },
            "lifecycle.preStop.tcpSocket.host",
        ),
        (
            "tenant/image-registry",
            Profile::ZeroTrust,
            |c| c["image"] = json!("evil.example/miner:latest"),
            "image",
        ),
        (
            "tenant/resources",
            Profile::ZeroTrust,
            |c| {
                c.as_object_mut().expect("object").remove("resources");
            },
            "resources",
        ),
    ]
}

#[test]
fn every_container_rule_fires_in_every_kind_and_container_list() {
    let mut config = ConfigSet::default();
    let tenant = "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: a}\nspec:\n  namespaces: [tenant-a]\n  registries: [ghcr.io/acme]\n";
    assert!(config.add_text("t.yaml", tenant).is_empty());
    let base = PolicySet::from_config(&config).expect("config compiles");
    let mut cases = 0;
    for (rule, profile, mutate, tail) in container_cases() {
        let policy = base.clone().with_profile(profile);
        for (list, index) in [
            ("initContainers", 0usize),
            ("containers", 1),
            ("ephemeralContainers", 0),
        ] {
            if rule == "tenant/resources" && list == "ephemeralContainers" {
                continue; // ephemeral containers cannot set resources
            }
            let mut spec = good_spec();
            mutate(&mut spec[list][index]);
            for (kind, obj, spec_path) in wrap_all(&spec) {
                let d = decide(&policy, obj);
                let want = format!("{rule} @ {spec_path}.{list}[{index}].{tail}");
                assert!(
                    ids(&d).contains(&want),
                    "{kind}/{list}: expected {want}, got {:?}",
                    ids(&d)
                );
                assert!(d.denied(), "{kind}/{list}: {rule} should deny");
                // No other container of the pod is blamed.
                assert!(
                    d.findings.iter().all(|f| !f.path.contains("containers[")
                        || f.path.contains(&format!("{list}[{index}]"))),
                    "{kind}/{list}: {:?}",
                    ids(&d)
                );
                cases += 1;
            }
        }
    }
    assert!(cases > 400, "{cases} cases");
}

/// Pod-level rules: (rule, profile, mutation of the pod spec, path tail inside the pod spec).
fn pod_cases() -> Vec<(&'static str, Profile, Mutation, &'static str)> {
    vec![
        (
            "pss/hostNamespaces",
            Profile::Baseline,
            |s| s["hostNetwork"] = json!(true),
            "hostNetwork",
        ),
        (
            "pss/hostNamespaces",
            Profile::Baseline,
            |s| s["hostIPC"] = json!(true),
            "hostIPC",
        ),
        (
            "pss/hostPathVolumes",
            Profile::Baseline,
            |s| s["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}]),
            "volumes[0].hostPath",
        ),
        (
            "pss/restrictedVolumes",
            Profile::Restricted,
            |s| s["volumes"] = json!([{"name": "n", "nfs": {"server": "x", "path": "/"}}]),
            "volumes[0].nfs",
        ),
        (
            "pss/sysctls",
            Profile::Baseline,
            |s| s["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}]),
            "securityContext.sysctls[0].name",
        ),
        (
            "pss/runAsNonRoot",
            Profile::Restricted,
            |s| s["securityContext"]["runAsNonRoot"] = json!(false),
            "securityContext.runAsNonRoot",
        ),
        (
            "pss/seccompProfile_restricted",
            Profile::Restricted,
            |s| {
                s["securityContext"]
                    .as_object_mut()
                    .expect("object")
                    .remove("seccompProfile");
            },
            "containers[0].securityContext.seccompProfile",
        ),
        (
            "tenant/runtime-class",
            Profile::ZeroTrust,
            |s| s["runtimeClassName"] = json!("runc"),
            "runtimeClassName",
        ),
        (
            "tenant/runtime-class",
            Profile::ZeroTrust,
            |s| {
                s.as_object_mut()
                    .expect("object")
                    .remove("runtimeClassName");
            },
            "runtimeClassName",
        ),
        (
            "tenant/node-name",
            Profile::ZeroTrust,
            |s| s["nodeName"] = json!("node-1"),
            "nodeName",
        ),
        (
            "tenant/node-steering",
            Profile::ZeroTrust,
            |s| s["nodeSelector"] = json!({"node-role.kubernetes.io/control-plane": ""}),
            "nodeSelector[\"node-role.kubernetes.io/control-plane\"]",
        ),
        (
            "tenant/node-steering",
            Profile::ZeroTrust,
            |s| s["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubebid.io/secure-runtime", "operator": "NotIn", "values": ["true"]}]}]}}}),
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]",
        ),
        (
            "tenant/tolerations",
            Profile::ZeroTrust,
            |s| s["tolerations"] = json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]),
            "tolerations[0].key",
        ),
        (
            "tenant/tolerations",
            Profile::ZeroTrust,
            |s| s["tolerations"] = json!([{"key": "CriticalAddonsOnly", "operator": "Exists"}]),
            "tolerations[0].key",
        ),
        (
            "tenant/tolerations",
            Profile::ZeroTrust,
            |s| s["tolerations"] = json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
            "tolerations[0].key",
        ),
        (
            "tenant/node-steering",
            Profile::ZeroTrust,
            |s| s["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}}, "namespaces": ["tenant-a", "other-tenant"]}]}}),
            "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].namespaces[1]",
        ),
        (
            "tenant/node-steering",
            Profile::ZeroTrust,
            |s| s["affinity"] = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {}, "namespaceSelector": {}}}]}}),
            "affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.namespaceSelector",
        ),
        (
            "tenant/dns-bypass",
            Profile::ZeroTrust,
            |s| s["dnsPolicy"] = json!("None"),
            "dnsPolicy",
        ),
        (
            "tenant/dns-bypass",
            Profile::ZeroTrust,
            |s| s["dnsConfig"] = json!({"nameservers": ["1.1.1.1"]}),
            "dnsConfig.nameservers[0]",
        ),
        (
            "tenant/storage-class",
            Profile::ZeroTrust,
            |s| s["volumes"] = json!([{"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard", "resources": {"requests": {"storage": "1Gi"}}}}}}]),
            "volumes[0].ephemeral.volumeClaimTemplate.spec.storageClassName",
        ),
    ]
}

#[test]
fn every_pod_rule_fires_in_every_kind() {
    for (rule, profile, mutate, tail) in pod_cases() {
        let policy = PolicySet::builtin().with_profile(profile);
        let mut spec = good_spec();
        mutate(&mut spec);
        for (kind, obj, spec_path) in wrap_all(&spec) {
            let d = decide(&policy, obj);
            let want = format!("{rule} @ {spec_path}.{tail}");
            assert!(
                ids(&d).contains(&want),
                "{kind}: expected {want}, got {:?}",
                ids(&d)
            );
        }
    }
}

#[test]
fn tenant_rules_stay_out_of_the_pss_profiles() {
    let mut spec = good_spec();
    spec["nodeName"] = json!("n");
    spec["runtimeClassName"] = json!("runc");
    for profile in [Profile::Baseline, Profile::Restricted] {
        let d = decide(
            &PolicySet::builtin().with_profile(profile),
            wrap_all(&spec).remove(0).1,
        );
        assert!(d.findings.is_empty(), "{profile}: {:?}", ids(&d));
    }
}

#[test]
fn pss_versions_change_decisions_as_upstream() {
    // net.ipv4.tcp_rmem is safe from v1.32 on; the host field of probes is checked from v1.34 on.
    let mut spec = good_spec();
    spec["securityContext"]["sysctls"] =
        json!([{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]);
    let pod = wrap_all(&spec).remove(0).1;
    let at = |v: u16| {
        decide(
            &PolicySet::builtin()
                .with_profile(Profile::Baseline)
                .with_pss_version(PssVersion::v1(v)),
            pod.clone(),
        )
    };
    assert!(at(31).denied());
    assert!(!at(32).denied());
    let mut spec = good_spec();
    spec["containers"][0]["readinessProbe"] = json!({"tcpSocket": {"port": 1, "host": "10.1.1.1"}});
    let pod = wrap_all(&spec).remove(0).1;
    assert!(
        !decide(
            &PolicySet::builtin()
                .with_profile(Profile::Baseline)
                .with_pss_version(PssVersion::v1(33)),
            pod.clone()
        )
        .denied()
    );
    assert!(
        decide(
            &PolicySet::builtin()
                .with_profile(Profile::Baseline)
                .with_pss_version(PssVersion::v1(34)),
            pod
        )
        .denied()
    );
}

fn object(kind: &str, api: &str, ns: Option<&str>, rest: Value) -> Value {
    let mut o = json!({"apiVersion": api, "kind": kind, "metadata": {"name": "o"}});
    if let Some(ns) = ns {
        o["metadata"]["namespace"] = json!(ns);
    }
    for (k, v) in rest.as_object().expect("object") {
        o[k] = v.clone();
    }
    o
}

/// An Ingress in `ns` for `host` carrying one annotation.
fn annotated_ingress(ns: &str, host: &str, key: &str, value: &str) -> Value {
    let mut o = object(
        "Ingress",
        "networking.k8s.io/v1",
        Some(ns),
        json!({"spec": {"rules": [{"host": host}]}}),
    );
    o["metadata"]["annotations"] = json!({key: value});
    o
}

/// A LoadBalancer Service in `ns`, without node ports, carrying annotation `key`.
fn annotated_lb(ns: &str, key: &str) -> Value {
    let mut o = object(
        "Service",
        "v1",
        Some(ns),
        json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}}),
    );
    o["metadata"]["annotations"] = json!({key: "x"});
    o
}

const CONFIG: &str = r#"
apiVersion: kubebid.io/v1alpha1
kind: KubeBidConfig
metadata: {name: c}
spec:
  podCidrs: [10.244.0.0/16]
  serviceCidrs: [10.96.0.0/12]
  sharedNamespaces: [monitoring]
  rules:
    tenant/resources: warn
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme, acme-dev]
  owners: [{kind: User, name: alice}]
  ingressDomains: [acme.example]
  egressCidrs: [203.0.113.0/24]
  network: {sharedServices: [platform/registry]}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: globex}
spec:
  namespaces: [globex]
  allowLoadBalancer: true
---
apiVersion: kubebid.io/v1alpha1
kind: PolicyException
metadata: {name: acme-lb}
spec:
  rules: [tenant/service-loadbalancer]
  match: {namespaces: [acme], kinds: [Service], names: [edge-*]}
  reason: edge proxy
  expires: "2030-01-01T00:00:00Z"
"#;

fn configured() -> PolicySet {
    let mut set = ConfigSet::default();
    let errs = set.add_text("config.yaml", CONFIG);
    assert!(errs.is_empty(), "{errs:?}");
    PolicySet::from_config(&set).expect("compiles")
}

fn rules_of(policy: &PolicySet, v: Value) -> Vec<&'static str> {
    let mut r: Vec<&str> = decide(policy, v)
        .findings
        .iter()
        .filter(|f| f.denies())
        .map(|f| f.rule.id)
        .collect();
    r.dedup();
    r
}

#[test]
fn services() {
    let p = configured();
    let svc = |ns: &str, spec: Value| object("Service", "v1", Some(ns), json!({"spec": spec}));
    assert_eq!(
        rules_of(&p, svc("acme", json!({"type": "NodePort"}))),
        ["tenant/service-nodeport"]
    );
    assert_eq!(
        rules_of(&p, svc("acme", json!({"externalIPs": ["1.2.3.4"]}))),
        ["tenant/service-external-ips"]
    );
    assert_eq!(
        rules_of(
            &p,
            svc(
                "acme",
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false})
            )
        ),
        ["tenant/service-loadbalancer"]
    );
    assert!(
        rules_of(
            &p,
            svc(
                "globex",
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false})
            )
        )
        .is_empty()
    );
    assert_eq!(
        rules_of(&p, svc("globex", json!({"type": "LoadBalancer"}))),
        ["tenant/service-nodeport"]
    );
    let ext = |name: &str| {
        svc(
            "acme",
            json!({"type": "ExternalName", "externalName": name}),
        )
    };
    assert!(rules_of(&p, ext("db.acme-dev.svc.cluster.local")).is_empty());
    assert!(rules_of(&p, ext("prometheus.monitoring.svc")).is_empty());
    assert!(rules_of(&p, ext("api.stripe.com")).is_empty());
    assert_eq!(
        rules_of(&p, ext("db.globex.svc.cluster.local.")),
        ["tenant/service-externalname"]
    );
    assert_eq!(
        rules_of(&p, ext("kubernetes.default.svc")),
        ["tenant/service-externalname"]
    );
    assert_eq!(
        rules_of(&p, ext("cluster.local")),
        ["tenant/service-externalname"]
    );
    assert_eq!(
        rules_of(&p, ext("10.96.0.1")),
        ["tenant/service-externalname"]
    );
    // The neighbours: link-local and loopback addresses, in every spelling a resolver accepts; names that
    // always mean the local host or its metadata; relative names a resolver completes into another
    // tenant's namespace; single labels, which resolve in whoever follows them.
    for target in [
        "169.254.169.254",
        "169.254.169.254.",
        "2852039166",
        "0xa9fea9fe",
        "169.254.43518",
        "127.0.0.1",
        "127.1",
        "::1",
        "::ffff:169.254.169.254",
        // NAT64's well-known prefix maps IPv4 addresses, the metadata service among them.
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::10.96.0.1",
        "fe80::1",
        "0.0.0.0",
        "localhost",
        "api.localhost",
        "metadata.google.internal",
        "web.globex",
        "web.globex.svc",
        "kubernetes.default",
        "kubernetes",
        // acme may reach platform's registry Service, nothing else of that namespace.
        "internal.platform.svc",
        "10-0-0-1.platform.pod",
    ] {
        assert_eq!(
            rules_of(&p, ext(target)),
            ["tenant/service-externalname"],
            "{target}"
        );
    }
    for target in [
        "203.0.113.9",
        "db.example.com",
        "example.com",
        "db.acme-dev",
        "web.monitoring",
        "registry.platform.svc",
    ] {
        assert!(rules_of(&p, ext(target)).is_empty(), "{target}");
    }
    // An allowed LoadBalancer still may not pick its address: another tenant's, or the platform's.
    let lb = json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false});
    let mut with_ip = lb.clone();
    with_ip["loadBalancerIP"] = json!("198.51.100.7");
    assert_eq!(
        rules_of(&p, svc("globex", with_ip)),
        ["tenant/service-loadbalancer"]
    );
    for key in [
        "metallb.io/loadBalancerIPs",
        "io.cilium/lb-ipam-ips",
        "metallb.universe.tf/allow-shared-ip",
        "service.beta.kubernetes.io/aws-load-balancer-eip-allocations",
        "service.beta.kubernetes.io/aws-load-balancer-private-ipv4-addresses",
        "service.beta.kubernetes.io/azure-load-balancer-ipv4",
        "service.beta.kubernetes.io/azure-pip-name",
        "networking.gke.io/load-balancer-ip-addresses",
        "oci.oraclecloud.com/reserved-ips",
        "kubernetes.digitalocean.com/load-balancer-id",
        "lb.example.net/frontend-ip",
    ] {
        let mut o = svc("globex", lb.clone());
        o["metadata"]["annotations"] = json!({key: "198.51.100.7"});
        let d = decide(&p, o);
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/service-loadbalancer" && f.path.contains(key)),
            "{key}: {:?}",
            d.findings
        );
    }
    // Annotations that do not pick an address stay the tenant's.
    let mut nlb = svc("globex", lb.clone());
    nlb["metadata"]["annotations"] = json!({
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
    });
    assert!(rules_of(&p, nlb).is_empty());
    // Hand-written FQDN endpoints are names followed like an ExternalName.
    let slice = |addresses: Value| {
        object(
            "EndpointSlice",
            "discovery.k8s.io/v1",
            Some("acme"),
            json!({"addressType": "FQDN", "endpoints": [{"addresses": addresses}]}),
        )
    };
    assert!(rules_of(&p, slice(json!(["db.example.com"]))).is_empty());
    for target in [
        "db.globex.svc.cluster.local",
        "metadata.google.internal",
        "localhost",
    ] {
        let d = decide(&p, slice(json!(["db.example.com", target])));
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/endpoints" && f.path == "endpoints[0].addresses[1]"),
            "{target}: {:?}",
            d.findings
        );
    }
    // A LoadBalancer's node ports in every form, and explicit node ports on any type.
    for spec in [
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "externalTrafficPolicy": "Local"}),
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "healthCheckNodePort": 30001}),
        json!({"ports": [{"port": 80, "nodePort": 30080}]}),
    ] {
        assert!(
            rules_of(&p, svc("globex", spec.clone())).contains(&"tenant/service-nodeport"),
            "{spec}"
        );
    }
}

#[test]
fn exceptions_apply_by_match_and_expire() {
    let p = configured();
    let lb = |name: &str| {
        let mut v = object(
            "Service",
            "v1",
            Some("acme"),
            json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}}),
        );
        v["metadata"]["name"] = json!(name);
        Object::from_value(v).expect("decodes")
    };
    let obj = lb("edge-proxy");
    let mut req = Request::create(&obj);
    req.now = Some("2029-06-01T00:00:00Z".parse::<Timestamp>().expect("time"));
    let d = p.evaluate(&req);
    assert!(!d.denied());
    assert_eq!(d.findings[0].exception.as_deref(), Some("acme-lb"));
    req.now = Some("2030-06-01T00:00:00Z".parse::<Timestamp>().expect("time"));
    assert!(
        p.evaluate(&req).denied(),
        "expired exceptions no longer apply"
    );
    req.now = None;
    assert!(
        p.evaluate(&req).denied(),
        "without a clock an expiring exception does not apply"
    );
    let other = lb("api");
    let mut req = Request::create(&other);
    req.now = Some("2029-06-01T00:00:00Z".parse::<Timestamp>().expect("time"));
    assert!(p.evaluate(&req).denied(), "name pattern does not match");
}

#[test]
fn labels_and_annotations_on_the_object_never_exempt_it() {
    let p = PolicySet::builtin();
    let mut spec = good_spec();
    spec["hostPID"] = json!(true);
    let mut pod = wrap_all(&spec).remove(0).1;
    pod["metadata"]["labels"] =
        json!({"kubebid.io/exempt": "true", "pod-security.kubernetes.io/enforce": "privileged"});
    pod["metadata"]["annotations"] = json!({"kubebid.io/exception": "all"});
    assert!(decide(&p, pod).denied());
}

#[test]
fn ingress() {
    let p = configured();
    let ing = |ns: &str, spec: Value| {
        object(
            "Ingress",
            "networking.k8s.io/v1",
            Some(ns),
            json!({"spec": spec}),
        )
    };
    assert!(rules_of(&p, ing("acme", json!({"rules": [{"host": "shop.acme.example"}], "tls": [{"hosts": ["acme.example"]}]}))).is_empty());
    assert_eq!(
        rules_of(
            &p,
            ing("acme", json!({"rules": [{"host": "*.acme.example"}]}))
        ),
        ["tenant/ingress-wildcard-host"]
    );
    assert_eq!(
        rules_of(
            &p,
            ing("acme", json!({"rules": [{"host": "evilacme.example"}]}))
        ),
        ["tenant/ingress-host"]
    );
    assert_eq!(
        rules_of(&p, ing("acme", json!({"rules": [{"http": {"paths": []}}]}))),
        ["tenant/ingress-host"]
    );
    assert_eq!(
        rules_of(
            &p,
            ing(
                "acme",
                json!({"defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}})
            )
        ),
        ["tenant/ingress-host"]
    );
    assert!(
        rules_of(
            &p,
            ing("globex", json!({"rules": [{"host": "anything.example"}]}))
        )
        .is_empty(),
        "no domain list: any explicit host"
    );
    // But never one under a domain another tenant claims, in any spelling, rule or TLS host.
    for host in [
        "shop.acme.example",
        "acme.example",
        "SHOP.Acme.Example",
        "shop.acme.example.",
    ] {
        let d = decide(&p, ing("globex", json!({"rules": [{"host": host}]})));
        let f = d
            .findings
            .iter()
            .find(|f| f.rule.id == "tenant/ingress-host");
        assert!(
            f.is_some_and(|f| f.message.contains("tenant \"acme\" claims")),
            "{host}: {:?}",
            d.findings
        );
    }
    assert_eq!(
        rules_of(
            &p,
            ing("globex", json!({"tls": [{"hosts": ["pay.acme.example"]}]}))
        ),
        ["tenant/ingress-host"]
    );
    // Snippets configure the controller every tenant shares; auth URLs make it fetch on the tenant's behalf.
    let annotated = |k: &str, v: &str| annotated_ingress("globex", "a.globex.example", k, v);
    for (k, v) in [
        (
            "nginx.ingress.kubernetes.io/configuration-snippet",
            "more_set_headers x;",
        ),
        (
            "nginx.ingress.kubernetes.io/server-snippet",
            "location /x {}",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://169.254.169.254/latest/meta-data",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://web.acme.svc.cluster.local/auth",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "https://user@[::1]:8443/",
        ),
        // Other controllers' spellings of raw configuration.
        ("nginx.org/server-snippets", "location / {}"),
        ("nginx.org/location-snippets", "proxy_pass x;"),
        ("haproxy.org/backend-config-snippet", "http-request x"),
        // Mirroring sends copies of every request where the tenant says.
        (
            "nginx.ingress.kubernetes.io/mirror-target",
            "http://10.96.0.1/",
        ),
        (
            "nginx.ingress.kubernetes.io/mirror-host",
            "web.acme.svc.cluster.local",
        ),
        // The controller reads namespace/name objects with its own rights.
        ("nginx.ingress.kubernetes.io/auth-secret", "acme/htpasswd"),
        (
            "nginx.ingress.kubernetes.io/auth-tls-secret",
            "kube-system/ca",
        ),
        ("nginx.ingress.kubernetes.io/custom-headers", "acme/headers"),
        // More host names for the same server: another tenant's, in any spelling.
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "shop.ACME.example",
        ),
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "a.globex.example, *.acme.example",
        ),
        // Patterns, in the controller's own reading (comma-separated, any whitespace trimmed).
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "\t~^.*\\.acme\\.example$|.globex.example",
        ),
        ("nginx.ingress.kubernetes.io/server-alias", "login.acme.*"),
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "shop.acme.example\t",
        ),
        // nginx variables end the host, or are the host.
        (
            "nginx.ingress.kubernetes.io/mirror-target",
            "http://web.acme.svc.cluster.local$request_uri",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://169.254.169.254$request_uri",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://$http_host/auth",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "https://$hostname/auth",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://web%2eacme.svc/",
        ),
        // Leading zeros as strtoul reads them.
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://00000000000251.0376.0251.0376/",
        ),
        // Any annotation naming another namespace's object; the same names under another prefix.
        (
            "nginx.ingress.kubernetes.io/fastcgi-params-configmap",
            "acme/params",
        ),
        ("nginx.ingress.kubernetes.io/some-future-ref", "acme/thing"),
        ("ingress.example.org/auth-url", "http://169.254.169.254/"),
    ] {
        assert_eq!(
            rules_of(&p, annotated(k, v)),
            ["tenant/ingress-annotations"],
            "{k}: {v}"
        );
    }
    assert!(
        rules_of(
            &p,
            annotated(
                "nginx.ingress.kubernetes.io/auth-url",
                "https://auth.example.com/check"
            )
        )
        .is_empty()
    );
    for (k, v) in [
        ("nginx.ingress.kubernetes.io/rewrite-target", "/"),
        // Its own objects, by bare name or in its own namespace; its own host names.
        ("nginx.ingress.kubernetes.io/auth-secret", "htpasswd"),
        ("nginx.ingress.kubernetes.io/auth-tls-secret", "globex/ca"),
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "b.globex.example",
        ),
        (
            "nginx.ingress.kubernetes.io/mirror-target",
            "https://mirror.example.com$request_uri",
        ),
        (
            "nginx.ingress.kubernetes.io/server-alias",
            "b.globex.example, \tc.globex.example",
        ),
        ("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS"),
        (
            "nginx.ingress.kubernetes.io/fastcgi-params-configmap",
            "params",
        ),
        ("nginx.ingress.kubernetes.io/upstream-vhost", "globex/local"),
    ] {
        assert!(rules_of(&p, annotated(k, v)).is_empty(), "{k}: {v}");
    }
}

/// An exception for a CronJob covers the Jobs it creates and their Pods (named by the controllers, found by
/// their owner references): the example exception works for what actually runs. A bare Pod whose owner is not
/// the named CronJob's is not covered.
#[test]
fn an_exception_for_a_cronjob_covers_its_jobs_and_pods() {
    let mut set = ConfigSet::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config");
    for f in ["kubebid.yaml", "exceptions.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).expect("example");
        assert!(set.add_text(f, &text).is_empty());
    }
    let p = PolicySet::from_config(&set).expect("compiles");
    let mut spec = good_spec();
    spec["volumes"] =
        json!([{"name": "archive", "nfs": {"server": "nfs.globex.example", "path": "/a"}}]);
    spec["containers"][0]["image"] = json!("docker.io/globex/report:2.0");
    let owned = |kind: &str, name: &str, owner: Option<(&str, &str, &str)>| {
        let mut o = match kind {
            "Job" => {
                json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": spec}}})
            }
            _ => json!({"apiVersion": "v1", "kind": "Pod", "spec": spec}),
        };
        o["metadata"] = json!({"name": name, "namespace": "tenant-globex"});
        if let Some((api, k, n)) = owner {
            o["metadata"]["ownerReferences"] =
                json!([{"apiVersion": api, "kind": k, "name": n, "uid": "u", "controller": true}]);
        }
        let o = Object::from_value(o).expect("decodes");
        let mut req = Request::create(&o);
        req.now = Some("2027-01-01T00:00:00Z".parse::<Timestamp>().expect("time"));
        p.evaluate(&req)
    };
    let job = owned(
        "Job",
        "legacy-report-nightly-29000000",
        Some(("batch/v1", "CronJob", "legacy-report-nightly")),
    );
    assert!(!job.denied(), "{:?}", job.findings);
    assert!(
        job.findings
            .iter()
            .any(|f| f.exception.as_deref() == Some("globex-legacy-nfs"))
    );
    let pod = owned(
        "Pod",
        "legacy-report-nightly-29000000-x7k2p",
        Some(("batch/v1", "Job", "legacy-report-nightly-29000000")),
    );
    assert!(!pod.denied(), "{:?}", pod.findings);
    // Not the CronJob's: a bare pod, or one owned by another job.
    assert!(owned("Pod", "legacy-report-x", None).denied());
    assert!(owned("Pod", "p", Some(("batch/v1", "Job", "other-29000000"))).denied());
}

#[test]
fn network_policies() {
    let p = configured();
    let np = |peer: Value, egress: bool| {
        let spec = if egress {
            json!({"podSelector": {}, "egress": [{"to": [peer]}]})
        } else {
            json!({"podSelector": {}, "ingress": [{"from": [peer]}]})
        };
        object(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            Some("acme"),
            json!({"spec": spec}),
        )
    };
    let ok = [
        json!({"podSelector": {"matchLabels": {"app": "x"}}}),
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "acme-dev"}}}),
        // Ingress controllers, by name, for ingress.
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}),
        json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["acme", "monitoring"]}]}}),
        // Another requirement ANDed with a pinned name only narrows it.
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "acme-dev", "team": "x"}}}),
    ];
    for peer in ok {
        assert!(rules_of(&p, np(peer.clone(), false)).is_empty(), "{peer}");
    }
    // Egress to the cluster DNS is allowed; ingress from kube-system, or egress to other kube-system pods, is not.
    let dns = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}});
    let dns_egress = |peer: &Value, ports: Value| {
        object(
            "NetworkPolicy",
            "networking.k8s.io/v1",
            Some("acme"),
            json!({"spec": {"podSelector": {}, "egress": [{"to": [peer], "ports": ports}]}}),
        )
    };
    let dns_ports =
        json!([{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": "dns-tcp"}]);
    assert!(rules_of(&p, dns_egress(&dns, dns_ports.clone())).is_empty());
    // The same selector in matchExpressions spelling.
    let dns_expr = json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["kube-system"]}]}, "podSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]}});
    assert!(rules_of(&p, dns_egress(&dns_expr, dns_ports)).is_empty());
    // DNS pods on any other port (or every port) are not "the DNS".
    for ports in [json!([{"protocol": "TCP", "port": 9153}]), json!(null)] {
        assert_eq!(
            rules_of(&p, dns_egress(&dns, ports.clone())),
            ["tenant/netpol-namespace-selector"],
            "{ports}"
        );
    }
    assert_eq!(
        rules_of(&p, np(dns, false)),
        ["tenant/netpol-namespace-selector"]
    );
    let api = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"component": "kube-apiserver"}}});
    assert_eq!(
        rules_of(&p, np(api, true)),
        ["tenant/netpol-namespace-selector"]
    );
    // Labels a namespace's editor can set are no proof: the tenant's own label, the old ingress-controller
    // label, any other.
    for (peer, why) in [
        (
            json!({"namespaceSelector": {"matchLabels": {"kubebid.io/tenant": "acme"}}}),
            "is a label",
        ),
        (
            json!({"namespaceSelector": {"matchLabels": {"kubebid.io/tenant": "globex"}}}),
            "tenant \"globex\"'s",
        ),
        (
            json!({"namespaceSelector": {"matchLabels": {"kubebid.io/ingress-controller": "true"}}}),
            "does not pin",
        ),
        // A namespace only one Service of which is shared: the rendered policy opens that Service's pods.
        (
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform"}}}),
            "platform",
        ),
        (
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "globex"}}}),
            "globex (tenant \"globex\")",
        ),
    ] {
        let d = decide(&p, np(peer.clone(), false));
        let f = d
            .findings
            .iter()
            .find(|f| f.rule.id == "tenant/netpol-namespace-selector");
        assert!(
            f.is_some_and(|f| f.message.contains(why)),
            "{peer}: {:?}",
            d.findings
        );
    }
    // Ingress controllers may be admitted, not reached.
    let to_ingress = json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}});
    assert_eq!(
        rules_of(&p, np(to_ingress, true)),
        ["tenant/netpol-namespace-selector"]
    );
    // An egress rule without peers reaches everything.
    let anywhere = object(
        "NetworkPolicy",
        "networking.k8s.io/v1",
        Some("acme"),
        json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 443}]}]}}),
    );
    assert_eq!(rules_of(&p, anywhere), ["tenant/netpol-namespace-selector"]);
    // The same for ingress: a rule without `from` admits every source, other tenants' pods included.
    let from_anywhere = object(
        "NetworkPolicy",
        "networking.k8s.io/v1",
        Some("acme"),
        json!({"spec": {"podSelector": {}, "ingress": [{}]}}),
    );
    assert_eq!(
        rules_of(&p, from_anywhere),
        ["tenant/netpol-namespace-selector"]
    );
    // IPv6 blocks reach IPv4 addresses through the mapped and NAT64 spaces; excepts count only in the
    // family they are written in.
    for block in [
        json!({"cidr": "::/0", "except": ["::1/128", "fe80::/10"]}),
        json!({"cidr": "64:ff9b::/95"}),
        json!({"cidr": "0.0.0.0/0", "except": ["::ffff:10.244.0.0/112", "::ffff:10.96.0.0/108", "::ffff:169.254.0.0/112", "::ffff:127.0.0.0/104"]}),
    ] {
        let d = decide(&p, np(json!({"ipBlock": block.clone()}), true));
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/netpol-ipblock" && f.message.contains("169.254")),
            "{block}: {:?}",
            d.findings
        );
    }
    let bad = [
        json!({"namespaceSelector": {}}),
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "globex"}}}),
        json!({"namespaceSelector": {"matchLabels": {"team": "acme"}}}),
        json!({"namespaceSelector": {"matchLabels": {"kubebid.io/tenant": "globex"}}}),
        json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["acme"]}]}}),
        json!({"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["acme", "globex"]}]}}),
        json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "platform-internal"}}}),
    ];
    for peer in bad {
        assert_eq!(
            rules_of(&p, np(peer.clone(), false)),
            ["tenant/netpol-namespace-selector"],
            "{peer}"
        );
    }
    assert_eq!(
        rules_of(&p, np(json!({"ipBlock": {"cidr": "10.0.0.0/8"}}), false)),
        ["tenant/netpol-ipblock"]
    );
    assert_eq!(
        rules_of(&p, np(json!({"ipBlock": {"cidr": "10.244.3.0/24"}}), false)),
        ["tenant/netpol-ipblock"]
    );
    assert!(rules_of(&p, np(json!({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16", "10.96.0.0/12"]}}), false)).is_empty());
    // Link-local (the metadata service) is protected like the cluster's own ranges, in either address
    // family.
    for cidr in [
        "169.254.169.254/32",
        "169.254.0.0/16",
        "fe80::/64",
        "::ffff:169.254.169.254/128",
        "0.0.0.0/0",
        "::/0",
    ] {
        assert!(
            rules_of(&p, np(json!({"ipBlock": {"cidr": cidr}}), false))
                .contains(&"tenant/netpol-ipblock"),
            "{cidr}"
        );
    }
    // Loopback and "this host" never leave the pod: a policy covering them grants nothing there, so the
    // usual internet policy need not except them.
    for cidr in ["127.0.0.1/32", "::1/128", "0.0.0.0/8"] {
        assert!(
            rules_of(&p, np(json!({"ipBlock": {"cidr": cidr}}), false)).is_empty(),
            "{cidr}"
        );
    }
    let internet = json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "168.63.129.16/32", "100.100.100.200/32"]}});
    assert!(rules_of(&p, np(internet, false)).is_empty());
    let all_but = json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16", "10.96.0.0/12", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8", "168.63.129.16/32", "100.100.100.200/32"]}});
    assert!(rules_of(&p, np(all_but, false)).is_empty());
    assert!(rules_of(&p, np(json!({"ipBlock": {"cidr": "203.0.113.7/32"}}), true)).is_empty());
    assert_eq!(
        rules_of(
            &p,
            np(
                json!({"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}),
                true
            )
        ),
        // The cluster's ranges are excepted, not link-local or loopback; and it is not within 203.0.113.0/24.
        ["tenant/netpol-ipblock", "tenant/netpol-egress-cidr"]
    );
    assert_eq!(
        rules_of(&p, np(json!({"ipBlock": {"cidr": "not-a-cidr"}}), true)),
        ["tenant/netpol-ipblock"]
    );
}

#[test]
fn rbac() {
    let p = configured();
    let role = |rules: Value| {
        object(
            "Role",
            "rbac.authorization.k8s.io/v1",
            Some("acme"),
            json!({"rules": rules}),
        )
    };
    assert!(
        rules_of(
            &p,
            role(json!([{"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["*"]}]))
        )
        .is_empty()
    );
    assert_eq!(
        rules_of(
            &p,
            role(json!([{"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}]))
        ),
        ["tenant/rbac-escalation-verbs"]
    );
    // `bind` on allowed ClusterRoles by name is what tenant-admin itself holds; on anything more, not.
    let bind = |resources: Value, names: Value| {
        role(
            json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": resources, "verbs": ["bind"], "resourceNames": names}]),
        )
    };
    assert!(rules_of(&p, bind(json!(["clusterroles"]), json!(["view"]))).is_empty());
    for (resources, names) in [
        // edit is not allowed by default: bind on it would hand out the API server's proxies.
        (json!(["clusterroles"]), json!(["view", "edit"])),
        (json!(["clusterroles"]), json!(["view", "cluster-admin"])),
        (json!(["clusterroles"]), json!([])),
        (json!(["clusterroles"]), json!(null)),
        (json!(["clusterroles", "roles"]), json!(["view"])),
        (json!(["roles"]), json!(["view"])),
    ] {
        assert_eq!(
            rules_of(&p, bind(resources.clone(), names.clone())),
            ["tenant/rbac-escalation-verbs"],
            "{resources} {names}"
        );
    }
    // Read-only wildcards grant nothing RBAC would not refuse anyway; `*` as a verb includes bind.
    assert!(
        rules_of(
            &p,
            role(
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}])
            )
        )
        .is_empty()
    );
    assert_eq!(
        rules_of(
            &p,
            role(json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]))
        ),
        ["tenant/rbac-wildcard"]
    );
    assert_eq!(
        rules_of(
            &p,
            role(
                json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["*"]}])
            )
        ),
        ["tenant/rbac-wildcard"]
    );
    let rb = |role_ref: Value, subjects: Value| {
        object(
            "RoleBinding",
            "rbac.authorization.k8s.io/v1",
            Some("acme"),
            json!({"roleRef": role_ref, "subjects": subjects}),
        )
    };
    let edit =
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"});
    let sub = |kind: &str, name: &str, ns: Option<&str>| {
        let mut s = json!({"kind": kind, "name": name});
        if let Some(ns) = ns {
            s["namespace"] = json!(ns);
        }
        json!([s])
    };
    assert!(rules_of(&p, rb(edit.clone(), sub("User", "alice", None))).is_empty());
    assert!(
        rules_of(
            &p,
            rb(edit.clone(), sub("ServiceAccount", "ci", Some("acme-dev")))
        )
        .is_empty()
    );
    assert!(
        rules_of(&p, rb(edit.clone(), sub("ServiceAccount", "ci", None))).is_empty(),
        "defaults to the binding's namespace"
    );
    assert!(
        rules_of(
            &p,
            rb(
                edit.clone(),
                sub("Group", "system:serviceaccounts:acme", None)
            )
        )
        .is_empty()
    );
    for bad in [
        sub("User", "mallory", None),
        sub("User", "system:admin", None),
        sub("User", "system:serviceaccount:globex:default", None),
        sub("Group", "system:authenticated", None),
        sub("Group", "system:serviceaccounts", None),
        sub("ServiceAccount", "default", Some("globex")),
    ] {
        assert_eq!(
            rules_of(&p, rb(edit.clone(), bad.clone())),
            ["tenant/rbac-subject"],
            "{bad}"
        );
    }
    let admin = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"});
    assert_eq!(
        rules_of(&p, rb(admin, sub("User", "alice", None))),
        ["tenant/rbac-cluster-role-ref"]
    );
    let crb = object(
        "ClusterRoleBinding",
        "rbac.authorization.k8s.io/v1",
        None,
        json!({"roleRef": edit, "subjects": sub("User", "alice", None)}),
    );
    assert_eq!(rules_of(&p, crb), ["tenant/rbac-cluster-scope"]);
}

#[test]
fn storage() {
    let p = configured();
    let pvc = |spec: Value| {
        object(
            "PersistentVolumeClaim",
            "v1",
            Some("acme"),
            json!({"spec": spec}),
        )
    };
    assert!(rules_of(&p, pvc(json!({"storageClassName": "encrypted-ssd"}))).is_empty());
    assert_eq!(rules_of(&p, pvc(json!({}))), ["tenant/storage-class"]);
    assert_eq!(
        rules_of(&p, pvc(json!({"storageClassName": ""}))),
        ["tenant/storage-class"]
    );
    assert_eq!(
        rules_of(
            &p,
            pvc(json!({"storageClassName": "encrypted-ssd", "volumeName": "pv-1"}))
        ),
        ["tenant/pvc-volume-name"]
    );
    let pv = |spec: Value| object("PersistentVolume", "v1", None, json!({"spec": spec}));
    assert_eq!(
        rules_of(&p, pv(json!({"hostPath": {"path": "/data"}}))),
        ["tenant/pv-host-storage"]
    );
    assert_eq!(
        rules_of(&p, pv(json!({"local": {"path": "/mnt/disk"}}))),
        ["tenant/pv-host-storage"]
    );
    let mut spec = good_spec();
    spec["containers"]
        .as_array_mut()
        .expect("array")
        .truncate(1);
    let sts = object(
        "StatefulSet",
        "apps/v1",
        Some("acme"),
        json!({"spec": {"selector": {}, "serviceName": "s", "template": {"spec": spec},
        "volumeClaimTemplates": [{"metadata": {"name": "d"}, "spec": {"storageClassName": "gp2"}}]}}),
    );
    let d = decide(&p, sts.clone());
    assert!(
        ids(&d).contains(
            &"tenant/storage-class @ spec.volumeClaimTemplates[0].spec.storageClassName".to_owned()
        ),
        "{:?}",
        ids(&d)
    );
    // Data sources: the tenant's own namespaces only, in every kind of claim.
    let source = |ns: &str| json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap", "namespace": ns});
    let claim =
        |ns: &str| json!({"storageClassName": "encrypted-ssd", "dataSourceRef": source(ns)});
    assert!(
        rules_of(&p, pvc(claim("acme-dev"))).is_empty(),
        "same tenant"
    );
    assert_eq!(
        rules_of(&p, pvc(claim("globex"))),
        ["tenant/pvc-data-source"]
    );
    let mut sts_from = sts;
    sts_from["spec"]["volumeClaimTemplates"][0]["spec"] = claim("globex");
    assert!(
        ids(&decide(&p, sts_from)).contains(
            &"tenant/pvc-data-source @ spec.volumeClaimTemplates[0].spec.dataSourceRef.namespace"
                .to_owned()
        )
    );
    let mut eph = good_spec();
    eph["volumes"] =
        json!([{"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": claim("globex")}}}]);
    let pod = object("Pod", "v1", Some("acme"), json!({"spec": eph}));
    let d = decide(&p, pod);
    assert!(
        ids(&d).contains(
            &"tenant/pvc-data-source @ spec.volumes[0].ephemeral.volumeClaimTemplate.spec.dataSourceRef.namespace"
                .to_owned()
        ),
        "{:?}",
        ids(&d)
    );
    // A claim selecting volumes by label binds existing ones, like volumeName.
    assert_eq!(
        rules_of(
            &p,
            pvc(
                json!({"storageClassName": "encrypted-ssd", "selector": {"matchLabels": {"team": "x"}}})
            )
        ),
        ["tenant/pvc-volume-name"]
    );
}

#[test]
fn namespaces_managed_objects_and_quotas() {
    let p = configured();
    let ns = |labels: Value| {
        object(
            "Namespace",
            "v1",
            None,
            json!({"metadata": {"name": "acme", "labels": labels}}),
        )
    };
    // A tenant's Namespace object is the platform's: a tenant may not create, change or delete it, even
    // with every label right.
    assert_eq!(
        rules_of(
            &p,
            ns(
                json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "restricted"})
            )
        ),
        ["tenant/namespace-object"]
    );
    let labels_of = |labels: Value| -> Vec<&'static str> {
        rules_of(&p, ns(labels))
            .into_iter()
            .filter(|r| *r != "tenant/namespace-object")
            .collect()
    };
    assert_eq!(
        labels_of(json!({"kubebid.io/tenant": "globex"})),
        ["tenant/namespace-labels"]
    );
    assert_eq!(
        labels_of(
            json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "baseline"})
        ),
        ["tenant/namespace-labels"]
    );
    // An enforce-version pinned to an old release checks less: weaker.
    assert_eq!(
        labels_of(
            json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.0"})
        ),
        ["tenant/namespace-labels"]
    );
    assert_eq!(
        labels_of(
            json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "bogus"})
        ),
        ["tenant/namespace-labels"]
    );
    assert!(labels_of(json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})).is_empty());
    // Kubernetes' controllers and cluster admins act on namespaces (deletion, repairs): not judged.
    let o = Object::from_value(ns(json!({}))).expect("decodes");
    let admins = ["system:masters".to_owned()];
    for (user, groups) in [
        (
            "system:serviceaccount:kube-system:namespace-controller",
            &[][..],
        ),
        ("root", &admins[..]),
    ] {
        for op in [Operation::Update, Operation::Delete] {
            let d = p.evaluate(&Request {
                operation: op,
                user: Some(user),
                groups,
                ..Request::create(&o)
            });
            assert!(!d.denied(), "{user} {op:?}: {:?}", d.findings);
        }
    }
    // A namespace of no tenant may be made by whoever RBAC lets, but not with KubeBid's labels.
    let stray = object(
        "Namespace",
        "v1",
        None,
        json!({"metadata": {"name": "stray", "labels": {"kubebid.io/tenant": "acme"}}}),
    );
    assert_eq!(rules_of(&p, stray), ["tenant/namespace-labels"]);
    // UPDATE that drops a guarded label.
    let old = Object::from_value(ns(
        json!({"kubebid.io/tenant": "acme", "pod-security.kubernetes.io/warn": "restricted"}),
    ))
    .expect("decodes");
    let new = Object::from_value(ns(json!({"kubebid.io/tenant": "acme"}))).expect("decodes");
    let d = p.evaluate(&Request {
        old_object: Some(&old),
        operation: Operation::Update,
        ..Request::create(&new)
    });
    assert!(
        ids(&d)
            .iter()
            .any(|f| f.contains("pod-security.kubernetes.io/warn")),
        "{:?}",
        ids(&d)
    );
    // Managed objects cannot be edited or deleted, even when the edit removes the label.
    let np = |labels: Value| {
        Object::from_value(object("NetworkPolicy", "networking.k8s.io/v1", Some("acme"), json!({"metadata": {"name": "default-deny-all", "namespace": "acme", "labels": labels}, "spec": {"podSelector": {}}}))).expect("decodes")
    };
    let managed = np(json!({"kubebid.io/managed": "true"}));
    let stripped = np(json!({}));
    let d = p.evaluate(&Request {
        old_object: Some(&managed),
        operation: Operation::Update,
        ..Request::create(&stripped)
    });
    assert!(d.denied());
    let d = p.evaluate(&Request {
        old_object: None,
        operation: Operation::Delete,
        ..Request::create(&managed)
    });
    assert_eq!(
        d.findings.iter().map(|f| f.rule.id).collect::<Vec<_>>(),
        ["tenant/managed-object"]
    );
    let d = p.evaluate(&Request {
        old_object: None,
        operation: Operation::Delete,
        ..Request::create(&stripped)
    });
    assert!(!d.denied(), "deleting a tenant's own policy is fine");
    assert_eq!(
        rules_of(
            &p,
            object(
                "LimitRange",
                "v1",
                Some("acme"),
                json!({"spec": {"limits": []}})
            )
        ),
        ["tenant/quota-change"]
    );
}

#[test]
fn actions_profiles_and_scoping() {
    let p = configured();
    let mut spec = good_spec();
    spec["containers"][0]
        .as_object_mut()
        .expect("object")
        .remove("resources");
    let mut pod = wrap_all(&spec).remove(0).1;
    pod["metadata"]["namespace"] = json!("acme");
    pod["spec"]["containers"][0]["image"] = json!("docker.io/library/nginx");
    let d = decide(&p, pod.clone());
    assert!(
        !d.denied(),
        "resources is set to warn in the config: {:?}",
        ids(&d)
    );
    assert_eq!(d.findings[0].action, Action::Warn);
    assert_eq!(d.tenant.as_deref(), Some("acme"));
    let off = p.clone().with_action("tenant/resources", Action::Off);
    assert!(decide(&off, pod.clone()).findings.is_empty());
    // System namespaces are not tenant namespaces.
    let mut sys = pod.clone();
    sys["metadata"]["namespace"] = json!("kube-system");
    sys["spec"]["hostNetwork"] = json!(true);
    let d = decide(&p, sys);
    assert!(d.findings.is_empty() && d.notes[0].contains("excluded"));
    // A namespace of no tenant is still checked, under the defaults.
    let mut stray = pod;
    stray["metadata"]["namespace"] = json!("nobody");
    stray["spec"]["hostNetwork"] = json!(true);
    let d = decide(&p, stray);
    assert!(d.denied() && d.notes[0].contains("belongs to no tenant"));
    // Kinds without rules pass with a note.
    let d = decide(
        &p,
        object("ConfigMap", "v1", Some("acme"), json!({"data": {"a": "b"}})),
    );
    assert!(d.findings.is_empty() && d.notes[0].contains("has no rules"));
}

#[test]
fn configuration_errors_name_file_line_and_field() {
    let mut set = ConfigSet::default();
    let text = "apiVersion: kubebid.io/v1alpha1\nkind: KubeBidConfig\nmetadata: {name: c}\nspec:\n  rules:\n    pss/privileged: warn\n    tenant/no-such-rule: off\n";
    assert!(set.add_text("c.yaml", text).is_empty());
    let errs = PolicySet::from_config(&set).err().expect("refused");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 7);
    assert!(errs[0].message.contains("unknown rule ID"));
}

#[test]
fn connect_exemptions_and_per_tenant_actions() {
    let mut set = ConfigSet::default();
    let text = "apiVersion: kubebid.io/v1alpha1\nkind: KubeBidConfig\nmetadata: {name: c}\nspec:\n  exemptUsers: [system:kube-scheduler]\n---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: a}\nspec:\n  namespaces: [a]\n---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: b}\nspec:\n  namespaces: [b]\n  rules:\n    tenant/pod-connect: enforce\n    tenant/runtime-class: warn\n";
    assert!(set.add_text("c.yaml", text).is_empty());
    let p = PolicySet::from_config(&set).expect("compiles");
    let opts = Object::from_value(
        json!({"apiVersion": "v1", "kind": "PodExecOptions", "command": ["sh"]}),
    )
    .expect("decodes");
    let connect = |ns: &'static str| Request {
        operation: Operation::Connect,
        namespace: Some(ns),
        subresource: Some("exec"),
        name: Some("web-0"),
        ..Request::create(&opts)
    };
    let a = p.evaluate(&connect("a"));
    assert!(!a.denied());
    assert_eq!(a.findings[0].action, Action::Audit);
    assert_eq!(a.findings[0].message, "exec into pod a/web-0");
    assert!(p.evaluate(&connect("b")).denied(), "tenant b forbids exec");
    // Tenant b relaxes runtime-class to warn; tenant a keeps enforce.
    let mut spec = good_spec();
    spec["runtimeClassName"] = json!("runc");
    let mut pod = wrap_all(&spec).remove(0).1;
    pod["metadata"]["namespace"] = json!("b");
    assert!(!decide(&p, pod.clone()).denied());
    pod["metadata"]["namespace"] = json!("a");
    assert!(decide(&p, pod.clone()).denied());
    // Exempt users: the configured one and KubeBid's own service account.
    let o = Object::from_value(pod).expect("decodes");
    for user in [
        "system:kube-scheduler",
        "system:serviceaccount:kubebid-system:kubebid",
    ] {
        let d = p.evaluate(&Request {
            user: Some(user),
            ..Request::create(&o)
        });
        assert!(
            d.findings.is_empty() && d.notes[0].contains("exempt"),
            "{user}"
        );
    }
    assert!(
        p.evaluate(&Request {
            user: Some("mallory"),
            ..Request::create(&o)
        })
        .denied()
    );
    // Unknown rule IDs in a Tenant are refused.
    let mut bad = ConfigSet::default();
    assert!(bad.add_text("t.yaml", "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec:\n  namespaces: [t]\n  rules: {tenant/nope: off}\n").is_empty());
    let errs = PolicySet::from_config(&bad).err().expect("refused");
    assert_eq!(errs[0].field, "spec.rules[\"tenant/nope\"]");
}

const PROFILES: &str = r#"
apiVersion: kubebid.io/v1alpha1
kind: KubeBidConfig
metadata: {name: c}
spec:
  podCidrs: [10.244.0.0/16]
  serviceCidrs: [10.96.0.0/12]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: initech}
spec:
  namespaces: [initech]
  profile: restricted
  registries: [ghcr.io/initech]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: hooli}
spec:
  namespaces: [hooli]
  profile: baseline
"#;

/// A Tenant's profile sets the Pod Security level its pods are held to; the isolation rules hold whatever it
/// is, since a tenant on the restricted level is no less hostile. Only `kubebid check --profile` (a local
/// Pod Security audit) leaves them out.
#[test]
fn tenant_rules_hold_whatever_profile_the_tenant_runs() {
    let mut set = ConfigSet::default();
    assert!(set.add_text("c.yaml", PROFILES).is_empty());
    let p = PolicySet::from_config(&set).expect("compiles");
    let pod = |ns: &str, mutate: &dyn Fn(&mut Value)| {
        let mut spec = good_spec();
        for c in spec["containers"].as_array_mut().expect("array") {
            c["image"] = json!("ghcr.io/initech/app:1");
        }
        spec["initContainers"][0]["image"] = json!("ghcr.io/initech/app:1");
        spec["ephemeralContainers"][0]["image"] = json!("ghcr.io/initech/app:1");
        mutate(&mut spec);
        object("Pod", "v1", Some(ns), json!({"spec": spec}))
    };
    assert!(rules_of(&p, pod("initech", &|_| {})).is_empty());
    for (ns, mutate, rule) in [
        (
            "initech",
            &(|s: &mut Value| s["runtimeClassName"] = json!("runc")) as &dyn Fn(&mut Value),
            "tenant/runtime-class",
        ),
        (
            "initech",
            &|s: &mut Value| s["nodeName"] = json!("node-1"),
            "tenant/node-name",
        ),
        (
            "initech",
            &|s: &mut Value| s["containers"][0]["image"] = json!("docker.io/library/nginx"),
            "tenant/image-registry",
        ),
        (
            "hooli",
            &|s: &mut Value| s["dnsPolicy"] = json!("Default"),
            "tenant/dns-bypass",
        ),
    ] {
        let got = rules_of(&p, pod(ns, mutate));
        assert!(got.contains(&rule), "{ns}: expected {rule}, got {got:?}");
    }
    // The host of an image is matched in any case, as registries resolve it.
    assert!(
        rules_of(
            &p,
            pod("initech", &|s| s["containers"][0]["image"] =
                json!("GHCR.IO/initech/app:1"))
        )
        .is_empty()
    );
    // The Pod Security level still follows the profile: root is refused under restricted, not baseline.
    let root = |s: &mut Value| s["securityContext"]["runAsNonRoot"] = json!(false);
    assert!(rules_of(&p, pod("initech", &root)).contains(&"pss/runAsNonRoot"));
    assert!(!rules_of(&p, pod("hooli", &root)).contains(&"pss/runAsNonRoot"));
}

/// A pod spec is judged when it is written. The garbage collector removing a finalizer, or anyone changing
/// a label, from a pod admitted under an older policy must not fail; a changed spec is judged again.
#[test]
fn metadata_only_updates_do_not_rejudge_the_pod_spec() {
    let p = configured();
    let mut spec = good_spec();
    spec["runtimeClassName"] = json!("runc");
    let old = Object::from_value(object(
        "Pod",
        "v1",
        Some("acme"),
        json!({"metadata": {"name": "o", "namespace": "acme", "finalizers": ["x"]}, "spec": spec}),
    ))
    .expect("decodes");
    let mut relabelled = object(
        "Pod",
        "v1",
        Some("acme"),
        json!({"metadata": {"name": "o", "namespace": "acme", "labels": {"a": "b"}}, "spec": spec}),
    );
    let new = Object::from_value(relabelled.clone()).expect("decodes");
    let update = |new: &Object, user: &'static str| {
        let mut r = Request::create(new);
        r.operation = Operation::Update;
        r.old_object = Some(&old);
        r.user = Some(user);
        p.evaluate(&r)
    };
    for user in [
        "system:serviceaccount:kube-system:generic-garbage-collector",
        "alice",
    ] {
        let d = update(&new, user);
        assert!(!d.denied(), "{user}: {:?}", ids(&d));
    }
    // An annotation Pod Security reads, or the spec itself, changed: judged.
    relabelled["spec"]["hostNetwork"] = json!(true);
    let respec = Object::from_value(relabelled).expect("decodes");
    let d = update(&respec, "alice");
    assert!(
        d.findings
            .iter()
            .any(|f| f.rule.id == "tenant/runtime-class"),
        "{:?}",
        ids(&d)
    );
}

/// An exception that lifts a restricted Pod Security check (NFS volumes, under `restrictedVolumes`) does not
/// lift the baseline check it tightens (`hostPathVolumes`): the baseline check runs again for that object.
#[test]
fn lifting_a_restricted_check_leaves_the_baseline_one() {
    let mut set = ConfigSet::default();
    let config = r#"
apiVersion: kubebid.io/v1alpha1
kind: KubeBidConfig
metadata: {name: c}
spec: {}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: initech}
spec: {namespaces: [initech], profile: restricted}
---
apiVersion: kubebid.io/v1alpha1
kind: PolicyException
metadata: {name: nfs}
spec:
  rules: [pss/restrictedVolumes, tenant/inline-volumes]
  match: {namespaces: [initech]}
  reason: legacy NFS
"#;
    assert!(set.add_text("c.yaml", config).is_empty());
    let p = PolicySet::from_config(&set).expect("compiles");
    let pod = |volume: Value| {
        let mut spec = good_spec();
        spec["volumes"] = json!([volume]);
        object("Pod", "v1", Some("initech"), json!({"spec": spec}))
    };
    let nfs = decide(
        &p,
        pod(json!({"name": "v", "nfs": {"server": "nfs.example", "path": "/"}})),
    );
    assert!(!nfs.denied(), "{:?}", ids(&nfs));
    assert!(
        nfs.findings
            .iter()
            .any(|f| f.exception.as_deref() == Some("nfs"))
    );
    let host = decide(&p, pod(json!({"name": "v", "hostPath": {"path": "/"}})));
    assert!(
        ids(&host).contains(&"pss/hostPathVolumes @ spec.volumes[0].hostPath".to_owned()),
        "{:?}",
        ids(&host)
    );
    assert!(host.denied());
    // Without the exception the restricted check alone reports it, once.
    let strict = PolicySet::builtin().with_profile(Profile::Restricted);
    let plain = decide(
        &strict,
        pod(json!({"name": "v", "hostPath": {"path": "/"}})),
    );
    assert!(
        !ids(&plain)
            .iter()
            .any(|i| i.starts_with("pss/hostPathVolumes")),
        "{:?}",
        ids(&plain)
    );
}

/// The sandbox's configuration is the platform's, in every pod-bearing kind.
#[test]
fn runtime_annotations_are_refused() {
    let p = PolicySet::builtin();
    for key in [
        "io.katacontainers.config.hypervisor.kernel_params",
        "io.katacontainers.config.hypervisor.path",
        "io.kubernetes.cri-o.Devices",
        "io.containerd.cri.runtime-handler",
    ] {
        for (kind, mut obj, _) in wrap_all(&good_spec()) {
            let meta = if kind == "Pod" {
                &mut obj["metadata"]
            } else if kind == "CronJob" {
                &mut obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
            } else if kind == "PodTemplate" {
                &mut obj["template"]["metadata"]
            } else {
                &mut obj["spec"]["template"]["metadata"]
            };
            meta["annotations"] = json!({key: "x"});
            let d = decide(&p, obj);
            assert!(
                d.findings
                    .iter()
                    .any(|f| f.rule.id == "tenant/runtime-class" && f.path.contains(key)),
                "{kind} {key}: {:?}",
                ids(&d)
            );
        }
    }
}

const ROUND3: &str = r#"
apiVersion: kubebid.io/v1alpha1
kind: KubeBidConfig
metadata: {name: c}
spec:
  inlineCsiDrivers: [secrets-store.csi.k8s.io]
  reservedDomains: [platform.example]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: acme}
spec:
  namespaces: [acme]
  extendedResources: [nvidia.com/gpu]
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: hooli}
spec:
  namespaces: [hooli]
  profile: baseline
  mutate: {imagePullPolicy: false}
"#;

fn round3() -> PolicySet {
    let mut set = ConfigSet::default();
    let errs = set.add_text("c.yaml", ROUND3);
    assert!(errs.is_empty(), "{errs:?}");
    PolicySet::from_config(&set).expect("compiles")
}

fn pod_in(ns: &str, mutate: impl Fn(&mut Value)) -> Value {
    let mut spec = good_spec();
    mutate(&mut spec);
    object("Pod", "v1", Some(ns), json!({"spec": spec}))
}

/// A node's image cache must not hand a tenant another's private image: with the mutation on, the webhook
/// sets Always (so a manifest's own value does not matter); with it off, the pod must say Always itself.
#[test]
fn image_pull_policy_follows_the_mutation() {
    let p = round3();
    let if_not_present = |s: &mut Value| {
        s["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
        s["volumes"] = json!([{"name": "m", "image": {"reference": "ghcr.io/acme/model:1"}}]);
    };
    assert!(!rules_of(&p, pod_in("acme", if_not_present)).contains(&"tenant/image-pull-policy"));
    let d = decide(&p, pod_in("hooli", if_not_present));
    let found = ids(&d);
    for path in [
        "spec.containers[0].imagePullPolicy",
        "spec.containers[1].imagePullPolicy",
        "spec.ephemeralContainers[0].imagePullPolicy",
        "spec.volumes[0].image.pullPolicy",
    ] {
        assert!(
            found.contains(&format!("tenant/image-pull-policy @ {path}")),
            "{path}: {found:?}"
        );
    }
    let always = pod_in("hooli", |s| {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            for c in s[list].as_array_mut().expect("array") {
                c["imagePullPolicy"] = json!("Always");
            }
        }
    });
    assert!(!rules_of(&p, always).contains(&"tenant/image-pull-policy"));
}

/// Hugepages, GPUs and device plugins' resources: only those the Tenant is given.
#[test]
fn extended_resources_need_the_tenants_list() {
    let p = round3();
    let asking = |name: &'static str| {
        move |s: &mut Value| {
            s["containers"][0]["resources"]["limits"][name] = json!("2");
            s["containers"][0]["resources"]["requests"][name] = json!("2");
        }
    };
    for (ns, name, denied) in [
        ("acme", "nvidia.com/gpu", false),
        ("acme", "hugepages-2Mi", true),
        ("acme", "devices.kubevirt.io/kvm", true),
        ("hooli", "nvidia.com/gpu", true),
        ("hooli", "ephemeral-storage", false),
    ] {
        let d = decide(&p, pod_in(ns, asking(name)));
        let hits: Vec<String> = ids(&d)
            .into_iter()
            .filter(|i| i.starts_with("tenant/extended-resources"))
            .collect();
        assert_eq!(!hits.is_empty(), denied, "{ns} {name}: {:?}", ids(&d));
        if denied {
            assert_eq!(
                hits.len(),
                1,
                "one finding per resource, not per map: {hits:?}"
            );
        }
    }
}

/// Storage mounted inline by address skips the StorageClass, its quota and the network policies, at every
/// Pod Security level; inline CSI only for the drivers the platform lists.
#[test]
fn inline_volumes_by_address_are_refused() {
    let p = round3();
    for (volume, path) in [
        (
            json!({"name": "v", "nfs": {"server": "169.254.169.254", "path": "/"}}),
            "spec.volumes[0].nfs",
        ),
        (
            json!({"name": "v", "iscsi": {"targetPortal": "10.244.1.5:3260", "iqn": "iqn.x", "lun": 0}}),
            "spec.volumes[0].iscsi",
        ),
        (
            json!({"name": "v", "csi": {"driver": "nfs.csi.k8s.io", "volumeAttributes": {"server": "10.96.0.1"}}}),
            "spec.volumes[0].csi.driver",
        ),
    ] {
        for ns in ["acme", "hooli"] {
            let d = decide(&p, pod_in(ns, |s| s["volumes"] = json!([volume.clone()])));
            assert!(
                ids(&d).contains(&format!("tenant/inline-volumes @ {path}")),
                "{ns} {volume}: {:?}",
                ids(&d)
            );
        }
    }
    let secrets = pod_in("acme", |s| {
        s["volumes"] =
            json!([{"name": "v", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true}}]);
    });
    assert!(!rules_of(&p, secrets).contains(&"tenant/inline-volumes"));
}

/// Annotation values the controller writes into its configuration cannot end a directive and start another.
#[test]
fn ingress_annotation_values_cannot_break_out() {
    let p = round3();
    let ing = |k: &str, v: &str| annotated_ingress("hooli", "a.hooli.example", k, v);
    for (k, v) in [
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "http://auth.example.com/;\n}\nlocation /x {",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-tls-match-cn",
            "CN=a\"; load_module /tmp/x.so; #",
        ),
        (
            "nginx.ingress.kubernetes.io/permanent-redirect",
            "https://example.com/}",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-method",
            "GET\\nproxy_pass",
        ),
    ] {
        assert_eq!(
            rules_of(&p, ing(k, v)),
            ["tenant/ingress-annotations"],
            "{k}: {v:?}"
        );
    }
    for (k, v) in [
        ("nginx.ingress.kubernetes.io/rewrite-target", "/$2"),
        (
            "nginx.ingress.kubernetes.io/whitelist-source-range",
            "203.0.113.0/24, 198.51.100.0/24",
        ),
        (
            "nginx.ingress.kubernetes.io/cors-allow-headers",
            "DNT,X-CustomHeader,Keep-Alive",
        ),
        ("nginx.ingress.kubernetes.io/auth-tls-match-cn", "CN=client"),
    ] {
        assert!(rules_of(&p, ing(k, v)).is_empty(), "{k}: {v:?}");
    }
}

/// The platform's own domains and the cluster domain are no tenant's to publish, whatever its domain list.
#[test]
fn reserved_domains_are_the_platforms() {
    let p = round3();
    for host in [
        "registry.platform.example",
        "PLATFORM.example.",
        "web.hooli.svc.cluster.local",
    ] {
        let o = object(
            "Ingress",
            "networking.k8s.io/v1",
            Some("hooli"),
            json!({"spec": {"rules": [{"host": host}]}}),
        );
        let d = decide(&p, o);
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/ingress-host" && f.message.contains("reserves")),
            "{host}: {:?}",
            d.findings
        );
    }
    // A Tenant cannot claim a domain under or above a reserved one.
    let mut set = ConfigSet::default();
    assert!(set.add_text("c.yaml", ROUND3).is_empty());
    assert!(
        set.add_text(
            "t.yaml",
            "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: evil}\nspec:\n  namespaces: [evil]\n  ingressDomains: [console.platform.example]\n"
        )
        .is_empty()
    );
    let model = set.tenancy();
    assert!(model.tenant("evil").is_none());
    assert!(
        model.rejected().iter().any(
            |r| r.tenant == "evil" && r.problems.iter().any(|p| p.message.contains("reserves"))
        ),
        "{:?}",
        model.rejected()
    );
}

/// Sandbox configuration in every spelling the runtimes read, and more load-balancer takeovers.
#[test]
fn more_sandbox_annotations_and_load_balancer_takeovers() {
    let p = round3();
    for key in [
        "cdi.k8s.io/gpu",
        "cpu-quota.crio.io",
        "irq-load-balancing.crio.io",
        "run.oci.handler",
    ] {
        let mut pod = pod_in("acme", |_| {});
        pod["metadata"]["annotations"] = json!({key: "x"});
        assert!(rules_of(&p, pod).contains(&"tenant/runtime-class"), "{key}");
    }
    let lb = |key: &str| annotated_lb("acme", key);
    for key in [
        "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-id",
        "service.kubernetes.io/tke-existed-lbid",
        "kubernetes.io/elb.id",
        "kubernetes.io/elb.eip-id",
        "loadbalancer.openstack.org/port-id",
        "purelb.io/addresses",
        "purelb.io/service-group",
        "load-balancer.hetzner.cloud/name",
    ] {
        let d = decide(&p, lb(key));
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/service-loadbalancer" && f.path.contains(key)),
            "{key}: {:?}",
            d.findings
        );
    }
}

/// The example configuration, as `kubebid up` and the README use it.
fn example() -> PolicySet {
    let mut set = ConfigSet::default();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/config");
    for f in ["kubebid.yaml", "exceptions.yaml"] {
        let text = std::fs::read_to_string(dir.join(f)).expect("example");
        assert!(set.add_text(f, &text).is_empty());
    }
    PolicySet::from_config(&set).expect("compiles")
}

/// Pod-level resources (Kubernetes 1.34) take hugepages as containers do.
#[test]
fn pod_level_resources_are_judged_too() {
    let p = round3();
    let d = decide(
        &p,
        pod_in("acme", |s| {
            s["resources"] = json!({"requests": {"hugepages-2Mi": "64Gi"}, "limits": {"hugepages-2Mi": "64Gi", "memory": "1Gi"}});
        }),
    );
    assert!(
        ids(&d).contains(
            &"tenant/extended-resources @ spec.resources.requests[\"hugepages-2Mi\"]".to_owned()
        ),
        "{:?}",
        ids(&d)
    );
}

/// The servers an inline volume names are checked whatever exception lifts inline volumes: the example's
/// NFS exception for globex's legacy job admits its archive share, and nothing inside the cluster.
#[test]
fn volume_servers_survive_the_nfs_exception() {
    let p = example();
    let job = |volume: Value| {
        let mut spec = good_spec();
        for c in spec["containers"].as_array_mut().expect("array") {
            c["image"] = json!("ghcr.io/globex/report:1");
        }
        spec["volumes"] = json!([volume]);
        object(
            "CronJob",
            "batch/v1",
            Some("tenant-globex"),
            json!({"metadata": {"name": "legacy-report-nightly", "namespace": "tenant-globex"},
                "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
        )
    };
    // The exception expires, so it applies only with a clock.
    let decide = |p: &PolicySet, v: Value| {
        let o = Object::from_value(v).expect("decodes");
        let mut req = Request::create(&o);
        req.now = Some("2026-11-29T00:00:00Z".parse::<Timestamp>().expect("time"));
        p.evaluate(&req)
    };
    let archive = decide(
        &p,
        job(json!({"name": "v", "nfs": {"server": "archive.globex.example", "path": "/reports"}})),
    );
    assert!(!archive.denied(), "{:?}", ids(&archive));
    for (volume, path) in [
        (
            json!({"name": "v", "nfs": {"server": "10.244.1.10", "path": "/"}}),
            "nfs.server",
        ),
        (
            json!({"name": "v", "iscsi": {"targetPortal": "169.254.169.254:80", "iqn": "iqn.x", "lun": 0}}),
            "iscsi.targetPortal",
        ),
        (
            json!({"name": "v", "iscsi": {"targetPortal": "203.0.113.5:3260", "portals": ["10.96.0.10:3260"], "iqn": "iqn.x", "lun": 0}}),
            "iscsi.portals[0]",
        ),
        (
            json!({"name": "v", "rbd": {"monitors": ["127.0.0.1:6789"], "image": "x"}}),
            "rbd.monitors[0]",
        ),
        (
            json!({"name": "v", "nfs": {"server": "db.tenant-acme.svc.cluster.local", "path": "/"}}),
            "nfs.server",
        ),
        (
            json!({"name": "v", "gitRepo": {"repository": "https://example.com/x.git"}}),
            "gitRepo",
        ),
    ] {
        let d = decide(&p, job(volume.clone()));
        let want = format!(
            "tenant/volume-servers @ spec.jobTemplate.spec.template.spec.volumes[0].{path}"
        );
        assert!(ids(&d).contains(&want), "{volume}: {:?}", ids(&d));
        assert!(d.denied());
    }
    // A CSI driver's server attribute, in a pod no exception covers.
    let csi = pod_in("tenant-acme", |s| {
        s["volumes"] = json!([{"name": "v", "csi": {"driver": "secrets-store.csi.k8s.io", "volumeAttributes": {"vaultAddress": "http://10.96.0.10:8200"}}}]);
    });
    let d = decide(&p, csi);
    assert!(
        ids(&d).contains(
            &"tenant/volume-servers @ spec.volumes[0].csi.volumeAttributes.vaultAddress".to_owned()
        ),
        "{:?}",
        ids(&d)
    );
}

/// Names other controllers publish for an object are held to the Ingress host rules.
#[test]
fn external_dns_and_certificate_names_are_published_hosts() {
    let p = example();
    let annotated = |kind: &str, ns: &str, key: &str, value: &str| {
        let (api, spec) = if kind == "Ingress" {
            (
                "networking.k8s.io/v1",
                json!({"rules": [{"host": "www.acme.example"}]}),
            )
        } else {
            ("v1", json!({"type": "ClusterIP", "ports": [{"port": 80}]}))
        };
        let mut o = object(kind, api, Some(ns), json!({"spec": spec}));
        o["metadata"]["annotations"] = json!({key: value});
        o
    };
    for (kind, key, value) in [
        (
            "Ingress",
            "external-dns.alpha.kubernetes.io/hostname",
            "www.acme.example,registry.platform.example",
        ),
        (
            "Service",
            "external-dns.alpha.kubernetes.io/hostname",
            "login.globex.example",
        ),
        (
            "Service",
            "external-dns.alpha.kubernetes.io/internal-hostname",
            "*.globex.example",
        ),
        (
            "Ingress",
            "cert-manager.io/common-name",
            "console.platform.example",
        ),
    ] {
        let d = decide(&p, annotated(kind, "tenant-acme", key, value));
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/ingress-host" && f.path.contains(key)),
            "{kind} {key}={value}: {:?}",
            d.findings
        );
    }
    for (kind, key, value) in [
        (
            "Ingress",
            "external-dns.alpha.kubernetes.io/hostname",
            "www.acme.example, api.acme.example",
        ),
        (
            "Service",
            "external-dns.alpha.kubernetes.io/target",
            "203.0.113.10",
        ),
        ("Ingress", "cert-manager.io/common-name", "www.acme.example"),
        ("Ingress", "cert-manager.io/cluster-issuer", "letsencrypt"),
    ] {
        assert!(
            rules_of(&p, annotated(kind, "tenant-acme", key, value)).is_empty(),
            "{kind} {key}={value}"
        );
    }
}

/// What ordinary charts ship passes: oauth2-proxy's `$host` URLs, a realm with an apostrophe, a URL with a
/// fragment, the AWS Load Balancer Controller's JSON, load-balancer annotations that pick no address, DNS
/// egress to kube-system on port 53, a read-only wildcard Role, the platform's sidecar images.
#[test]
fn ordinary_charts_pass() {
    let p = example();
    let ing = |k: &str, v: &str| annotated_ingress("tenant-acme", "www.acme.example", k, v);
    for (k, v) in [
        (
            "nginx.ingress.kubernetes.io/auth-url",
            "https://$host/oauth2/auth",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-signin",
            "https://$host/oauth2/start?rd=$escaped_request_uri",
        ),
        (
            "nginx.ingress.kubernetes.io/auth-realm",
            "Acme's internal dashboard",
        ),
        (
            "nginx.ingress.kubernetes.io/permanent-redirect",
            "https://docs.acme.example/install#kubernetes",
        ),
        (
            "alb.ingress.kubernetes.io/listen-ports",
            r#"[{"HTTP": 80}, {"HTTPS": 443}]"#,
        ),
    ] {
        assert!(rules_of(&p, ing(k, v)).is_empty(), "{k}: {v}");
    }
    // The same break-out under a prefix of the platform's choosing is refused by the annotation's name.
    assert_eq!(
        rules_of(
            &p,
            ing(
                "custom.example.com/auth-tls-match-cn",
                "CN=a\n}\nlocation /x {"
            )
        ),
        ["tenant/ingress-annotations"]
    );
    let lb = |key: &str| annotated_lb("tenant-globex", key);
    for key in [
        "service.beta.kubernetes.io/do-loadbalancer-certificate-id",
        "loadbalancer.openstack.org/flavor-id",
        "kubernetes.civo.com/firewall-id",
        "service.beta.kubernetes.io/aws-load-balancer-ssl-cert",
        "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type",
    ] {
        assert!(rules_of(&p, lb(key)).is_empty(), "{key}");
    }
    for key in [
        "service.beta.kubernetes.io/do-loadbalancer-name",
        "service.beta.kubernetes.io/scw-loadbalancer-ip-ids",
        "kubernetes.civo.com/ipv4-address",
        "service.beta.kubernetes.io/linode-loadbalancer-reserved-ipv4",
        "service.beta.kubernetes.io/osc-load-balancer-ip-pool",
        "service.beta.kubernetes.io/aws-load-balancer-name",
        "service.kubernetes.io/ibm-load-balancer-cloud-provider-vpc-lb-name",
    ] {
        let d = decide(&p, lb(key));
        assert!(
            d.findings
                .iter()
                .any(|f| f.rule.id == "tenant/service-loadbalancer"),
            "{key}: {:?}",
            d.findings
        );
    }
    let dns = object(
        "NetworkPolicy",
        "networking.k8s.io/v1",
        Some("tenant-acme"),
        json!({"spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}),
    );
    assert!(rules_of(&p, dns).is_empty());
    let reader = object(
        "Role",
        "rbac.authorization.k8s.io/v1",
        Some("tenant-acme"),
        json!({"rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
    );
    assert!(rules_of(&p, reader).is_empty());
    let meshed = pod_in("tenant-acme", |s| {
        s["containers"][0]["image"] = json!("ghcr.io/acme/web:1");
        s["containers"][1]["image"] = json!("cr.l5d.io/linkerd/proxy:edge-24.1.1");
        s["initContainers"][0]["image"] = json!("ghcr.io/acme/init:1");
        s["ephemeralContainers"][0]["image"] = json!("ghcr.io/acme/debug:1");
    });
    assert!(!rules_of(&p, meshed).contains(&"tenant/image-registry"));
}

/// Network plugins' pod annotations that add interfaces or pick addresses, and CRI-O's seccomp override.
#[test]
fn pod_network_and_runtime_overrides_are_refused() {
    let p = round3();
    for (key, rule) in [
        ("k8s.v1.cni.cncf.io/networks", "tenant/pod-network"),
        ("v1.multus-cni.io/default-network", "tenant/pod-network"),
        ("cni.projectcalico.org/ipAddrs", "tenant/pod-network"),
        ("cni.projectcalico.org/ipv4pools", "tenant/pod-network"),
        ("ipam.cilium.io/ip-pool", "tenant/pod-network"),
        (
            "seccomp-profile.kubernetes.cri-o.io/POD",
            "tenant/runtime-class",
        ),
        ("io.containers.trace-syscall", "tenant/runtime-class"),
    ] {
        let mut pod = pod_in("acme", |_| {});
        pod["metadata"]["annotations"] = json!({key: "x"});
        assert!(rules_of(&p, pod).contains(&rule), "{key}");
    }
    // What network plugins write back about a pod (its address, its networks' status) is not a request.
    let mut pod = pod_in("acme", |_| {});
    pod["metadata"]["annotations"] = json!({"cni.projectcalico.org/podIP": "10.244.1.5/32", "k8s.v1.cni.cncf.io/network-status": "[]"});
    assert!(rules_of(&p, pod).is_empty());
}

/// Tenants with compute tiers: `vault` dedicated cores and SEV-SNP, `cache` any memory encryption.
const TIERS: &str = r"
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: vault}
spec:
  namespaces: [vault]
  isolation: {dedicatedCores: true, memoryEncryption: sev-snp, cachePartition: {share: 40}}
---
apiVersion: kubebid.io/v1alpha1
kind: Tenant
metadata: {name: enc}
spec:
  namespaces: [enc]
  isolation: {memoryEncryption: required}
";

fn tiers() -> PolicySet {
    let mut set = ConfigSet::default();
    let errs = set.add_text("tiers.yaml", TIERS);
    assert!(errs.is_empty(), "{errs:?}");
    PolicySet::from_config(&set).expect("compiles")
}

fn in_ns(ns: &str, spec: &Value) -> Vec<(&'static str, Value, &'static str)> {
    wrap_all(spec)
        .into_iter()
        .map(|(k, mut o, p)| {
            o["metadata"]["namespace"] = ns.into();
            (k, o, p)
        })
        .collect()
}

#[test]
fn dedicated_cores_need_guaranteed_whole_cpus_in_every_container() {
    let policy = tiers();
    let guaranteed = |c: &mut Value| {
        c["resources"] = json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2000m", "memory": "1Gi"}});
    };
    let mut spec = good_spec();
    spec["runtimeClassName"] = "kubebid-secure-snp".into();
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().unwrap() {
            guaranteed(c);
        }
    }
    for (kind, obj, _) in in_ns("vault", &spec) {
        let d = decide(&policy, obj);
        assert!(d.findings.is_empty(), "{kind}: {:?}", ids(&d));
    }
    // The good spec of other tenants (requests below limits, fractions) is refused here, at each container.
    let cases: &[(&str, Mutation, &str)] = &[
        (
            "fraction",
            |c| c["resources"]["limits"]["cpu"] = "1500m".into(),
            "containers[0].resources.limits.cpu",
        ),
        (
            "burstable",
            |c| c["resources"]["requests"]["cpu"] = "1".into(),
            "containers[0].resources.requests.cpu",
        ),
        (
            "memory below",
            |c| c["resources"]["requests"]["memory"] = "512Mi".into(),
            "containers[0].resources.requests.memory",
        ),
        (
            "no limit",
            |c| {
                c["resources"]["limits"]
                    .as_object_mut()
                    .unwrap()
                    .remove("memory");
            },
            "containers[0].resources.limits.memory",
        ),
        (
            "no resources",
            |c| {
                c.as_object_mut().unwrap().remove("resources");
            },
            "containers[0].resources.limits.cpu",
        ),
    ];
    for (what, change, path) in cases {
        for list in ["containers", "initContainers"] {
            let mut bad = spec.clone();
            change(&mut bad[list][0]);
            let path = path.replacen("containers", list, 1);
            for (kind, obj, at) in in_ns("vault", &bad) {
                let d = decide(&policy, obj);
                let want = format!("tenant/dedicated-cores @ {at}.{path}");
                assert!(
                    ids(&d).contains(&want),
                    "{what} {kind}: {:?}, want {want}",
                    ids(&d)
                );
            }
        }
    }
    // Another tenant's Burstable pod is fine.
    let mut other = good_spec();
    other["runtimeClassName"] = "kubebid-secure-snp".into();
    let d = decide(&policy, in_ns("enc", &other).remove(0).1);
    assert!(
        !ids(&d)
            .iter()
            .any(|i| i.starts_with("tenant/dedicated-cores")),
        "{:?}",
        ids(&d)
    );
}

#[test]
fn memory_encryption_allows_only_its_runtime_classes_and_mutation_sets_one() {
    let policy = tiers();
    let with = |rc: &str| {
        let mut s = good_spec();
        s["runtimeClassName"] = rc.into();
        for list in ["initContainers", "containers"] {
            for c in s[list].as_array_mut().unwrap() {
                c["resources"] = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
            }
        }
        s
    };
    for (ns, rc, allowed) in [
        ("vault", "kubebid-secure-snp", true),
        ("vault", "kubebid-secure-tdx", false),
        ("vault", "kubebid-secure", false),
        ("enc", "kubebid-secure-snp", true),
        ("enc", "kubebid-secure-tdx", true),
        ("enc", "kubebid-secure", false),
    ] {
        for (kind, obj, _) in in_ns(ns, &with(rc)) {
            let denied = rules_of(&policy, obj).contains(&"tenant/runtime-class");
            assert_eq!(!denied, allowed, "{ns} {rc} {kind}");
        }
    }
    // A pod that names none gets the tenant's first class from the mutating webhook.
    let mut none = with("");
    none.as_object_mut().unwrap().remove("runtimeClassName");
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "x", "namespace": "enc"}, "spec": none});
    let settings = policy.tenant_for(Some("enc")).unwrap();
    assert!(kubebid_policy::mutate::apply(
        &mut pod,
        &settings.mutate,
        settings.default_runtime_class.as_deref()
    ));
    assert_eq!(pod["spec"]["runtimeClassName"], "kubebid-secure-snp");
    assert!(!rules_of(&policy, pod).contains(&"tenant/runtime-class"));
}

#[test]
fn cache_shares_are_bounded_per_tenant_and_together() {
    let mut set = ConfigSet::default();
    let errs = set.add_text(
        "bad.yaml",
        "apiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {name: a}\nspec:\n  namespaces: [a]\n  isolation: {cachePartition: {share: 95}}\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.to_string().contains("cachePartition.share")),
        "{errs:?}"
    );
    let tenancy = |text: &str| {
        let mut set = ConfigSet::default();
        assert!(set.add_text("t.yaml", text).is_empty());
        set.tenancy()
    };
    let t = tenancy(&format!(
        "{TIERS}---\napiVersion: kubebid.io/v1alpha1\nkind: Tenant\nmetadata: {{name: big}}\nspec:\n  namespaces: [big]\n  isolation: {{cachePartition: {{share: 60}}}}\n"
    ));
    let rejected: Vec<String> = t
        .rejected()
        .iter()
        .map(|r| format!("{}: {:?}", r.tenant, r.problems))
        .collect();
    assert!(
        rejected.iter().any(|r| r.contains("passes 90%")),
        "{rejected:?}"
    );
}
