//! The Pod Security Standards, with Pod Security Admission's versioned semantics.
//!
//! Each check follows the upstream check of the same ID at every version from v1.0 to the newest one
//! known here; a newer requested version is evaluated as the newest known, as PSA does. At `restricted`,
//! the restricted checks that override a baseline check replace it from the version where upstream
//! does so (`capabilities_restricted` for `capabilities_baseline` from v1.22, and so on). Findings are
//! reported per offending field, each with the reason PSA gives.

use crate::Raw;
use k8s_openapi::api::core::v1::{PodSecurityContext, SELinuxOptions, SecurityContext};

use crate::pod::{ContainerView, PodView};

/// The newest PSS minor version whose semantics are implemented.
pub const LATEST_MINOR: u16 = 37;

/// A PSS level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PssLevel {
    Baseline,
    Restricted,
}

use crate::rules::rid;

type Check = fn(&PodView<'_>, u16, &mut Vec<Raw>);

struct VersionedCheck {
    id: &'static str,
    rule: usize,
    since: u16,
    check: Check,
}

const BASELINE: &[VersionedCheck] = &[
    VersionedCheck {
        id: "pss/appArmorProfile",
        rule: rid!("pss/appArmorProfile"),
        since: 0,
        check: app_armor,
    },
    VersionedCheck {
        id: "pss/capabilities_baseline",
        rule: rid!("pss/capabilities_baseline"),
        since: 0,
        check: capabilities_baseline,
    },
    VersionedCheck {
        id: "pss/hostNamespaces",
        rule: rid!("pss/hostNamespaces"),
        since: 0,
        check: host_namespaces,
    },
    VersionedCheck {
        id: "pss/hostPathVolumes",
        rule: rid!("pss/hostPathVolumes"),
        since: 0,
        check: host_path_volumes,
    },
    VersionedCheck {
        id: "pss/hostPorts",
        rule: rid!("pss/hostPorts"),
        since: 0,
        check: host_ports,
    },
    VersionedCheck {
        id: "pss/hostProbesAndHostLifecycle",
        rule: rid!("pss/hostProbesAndHostLifecycle"),
        since: 34,
        check: host_probes,
    },
    VersionedCheck {
        id: "pss/privileged",
        rule: rid!("pss/privileged"),
        since: 0,
        check: privileged,
    },
    VersionedCheck {
        id: "pss/procMount",
        rule: rid!("pss/procMount"),
        since: 0,
        check: proc_mount_baseline,
    },
    VersionedCheck {
        id: "pss/seLinuxOptions",
        rule: rid!("pss/seLinuxOptions"),
        since: 0,
        check: selinux,
    },
    VersionedCheck {
        id: "pss/seccompProfile_baseline",
        rule: rid!("pss/seccompProfile_baseline"),
        since: 0,
        check: seccomp_baseline,
    },
    VersionedCheck {
        id: "pss/sysctls",
        rule: rid!("pss/sysctls"),
        since: 0,
        check: sysctls,
    },
    VersionedCheck {
        id: "pss/windowsHostProcess",
        rule: rid!("pss/windowsHostProcess"),
        since: 0,
        check: windows_host_process,
    },
];

/// Restricted checks, with the baseline check each replaces and from which version.
const RESTRICTED: &[(VersionedCheck, Option<&str>)] = &[
    (
        VersionedCheck {
            id: "pss/allowPrivilegeEscalation",
            rule: rid!("pss/allowPrivilegeEscalation"),
            since: 8,
            check: allow_privilege_escalation,
        },
        None,
    ),
    (
        VersionedCheck {
            id: "pss/capabilities_restricted",
            rule: rid!("pss/capabilities_restricted"),
            since: 22,
            check: capabilities_restricted,
        },
        Some("pss/capabilities_baseline"),
    ),
    (
        VersionedCheck {
            id: "pss/procMount_restricted",
            rule: rid!("pss/procMount_restricted"),
            since: 35,
            check: proc_mount_restricted,
        },
        Some("pss/procMount"),
    ),
    (
        VersionedCheck {
            id: "pss/restrictedVolumes",
            rule: rid!("pss/restrictedVolumes"),
            since: 0,
            check: restricted_volumes,
        },
        Some("pss/hostPathVolumes"),
    ),
    (
        VersionedCheck {
            id: "pss/runAsNonRoot",
            rule: rid!("pss/runAsNonRoot"),
            since: 0,
            check: run_as_non_root,
        },
        None,
    ),
    (
        VersionedCheck {
            id: "pss/runAsUser",
            rule: rid!("pss/runAsUser"),
            since: 23,
            check: run_as_user,
        },
        None,
    ),
    (
        VersionedCheck {
            id: "pss/seccompProfile_restricted",
            rule: rid!("pss/seccompProfile_restricted"),
            since: 19,
            check: seccomp_restricted,
        },
        Some("pss/seccompProfile_baseline"),
    ),
];

/// Clamps a requested minor version to the newest implemented one.
#[must_use]
pub fn effective_minor(requested: u16) -> u16 {
    requested.min(LATEST_MINOR)
}

/// The checks of `level` at version `v`. A restricted check replaces the baseline check it tightens
/// (`restrictedVolumes` covers `hostPathVolumes`) only where `supersedes(restricted, baseline)` says it
/// holds at least as firmly: when an exception lifts it, or it only warns, the baseline check still runs.
fn active(
    level: PssLevel,
    v: u16,
    supersedes: &dyn Fn(usize, usize) -> bool,
) -> impl Iterator<Item = &'static VersionedCheck> + '_ {
    let overridden = move |b: &VersionedCheck| {
        level == PssLevel::Restricted
            && RESTRICTED
                .iter()
                .any(|(c, o)| *o == Some(b.id) && c.since <= v && supersedes(c.rule, b.rule))
    };
    let baseline = BASELINE
        .iter()
        .filter(move |c| c.since <= v && !overridden(c));
    let restricted = RESTRICTED
        .iter()
        .map(|(c, _)| c)
        .filter(move |c| level == PssLevel::Restricted && c.since <= v);
    baseline.chain(restricted)
}

/// Runs every check of `level` at version `minor`, for the rules `enabled` accepts.
pub(crate) fn evaluate(
    pod: &PodView<'_>,
    level: PssLevel,
    minor: u16,
    enabled: impl Fn(usize) -> bool,
    supersedes: &dyn Fn(usize, usize) -> bool,
    out: &mut Vec<Raw>,
) {
    let v = effective_minor(minor);
    for c in active(level, v, supersedes) {
        if enabled(c.rule) {
            let start = out.len();
            (c.check)(pod, v, out);
            for raw in &mut out[start..] {
                raw.rule = c.rule;
            }
        }
    }
}

fn push(out: &mut Vec<Raw>, path: String, message: String) {
    // The rule is filled in by `evaluate`, which knows which check ran.
    out.push(Raw {
        rule: usize::MAX,
        path,
        message,
    });
}

fn sc_flag(
    c: &ContainerView<'_>,
    get: impl Fn(&k8s_openapi::api::core::v1::SecurityContext) -> Option<bool>,
) -> Option<bool> {
    c.sc.and_then(get)
}

/// Checks one security-context field wherever it is set: the pod's `securityContext`, then each container's.
/// `violation` says what is wrong with a value (or `None`); `message` words the finding for a setter
/// (`pod`, `container "app"`) and that description.
fn check_field<'a, T: ?Sized + 'a>(
    pod: &PodView<'a>,
    out: &mut Vec<Raw>,
    field: &str,
    at_pod: impl Fn(&'a PodSecurityContext) -> Option<&'a T>,
    at_container: impl Fn(&'a SecurityContext) -> Option<&'a T>,
    violation: impl Fn(&T) -> Option<String>,
    message: impl Fn(&str, &str) -> String,
) {
    if let Some(what) = pod
        .spec
        .security_context
        .as_ref()
        .and_then(&at_pod)
        .and_then(&violation)
    {
        push(
            out,
            pod.at(&format!("securityContext.{field}")),
            message("pod", &what),
        );
    }
    for c in pod.containers() {
        if let Some(what) = c.sc.and_then(&at_container).and_then(&violation) {
            push(
                out,
                c.at(pod, &format!("securityContext.{field}")),
                message(&c.describe(), &what),
            );
        }
    }
}

fn privileged(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for c in pod.containers() {
        if sc_flag(&c, |s| s.privileged) == Some(true) {
            push(
                out,
                c.at(pod, "securityContext.privileged"),
                format!(
                    "privileged: {} must not set securityContext.privileged=true",
                    c.describe()
                ),
            );
        }
    }
}

fn host_namespaces(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for (field, value) in [
        ("hostNetwork", pod.spec.host_network),
        ("hostPID", pod.spec.host_pid),
        ("hostIPC", pod.spec.host_ipc),
    ] {
        if value == Some(true) {
            push(out, pod.at(field), format!("host namespaces: {field}=true"));
        }
    }
}

const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_baseline(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for c in pod.containers() {
        let Some(caps) = c.sc.and_then(|s| s.capabilities.as_ref()) else {
            continue;
        };
        for (i, cap) in caps.add.iter().flatten().enumerate() {
            if !DEFAULT_CAPABILITIES.contains(&cap.as_str()) {
                push(
                    out,
                    c.at(pod, &format!("securityContext.capabilities.add[{i}]")),
                    format!(
                        "non-default capabilities: {} must not include {cap:?} in securityContext.capabilities.add",
                        c.describe()
                    ),
                );
            }
        }
    }
}

fn capabilities_restricted(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 25 && pod.is_windows() {
        return;
    }
    for c in pod.containers() {
        let caps = c.sc.and_then(|s| s.capabilities.as_ref());
        let drops_all = caps
            .and_then(|k| k.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            push(
                out,
                c.at(pod, "securityContext.capabilities.drop"),
                format!(
                    "unrestricted capabilities: {} must set securityContext.capabilities.drop=[\"ALL\"]",
                    c.describe()
                ),
            );
        }
        for (i, cap) in caps
            .and_then(|k| k.add.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if cap != "NET_BIND_SERVICE" {
                push(
                    out,
                    c.at(pod, &format!("securityContext.capabilities.add[{i}]")),
                    format!(
                        "unrestricted capabilities: {} must not include {cap:?} in securityContext.capabilities.add",
                        c.describe()
                    ),
                );
            }
        }
    }
}

fn host_path_volumes(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for (i, vol) in pod.spec.volumes.iter().flatten().enumerate() {
        if vol.host_path.is_some() {
            push(
                out,
                pod.at(&format!("volumes[{i}].hostPath")),
                format!("hostPath volumes: volume {:?}", vol.name),
            );
        }
    }
}

fn host_ports(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for c in pod.containers() {
        for (i, p) in c.ports.iter().enumerate() {
            if let Some(hp) = p.host_port
                && hp != 0
            {
                push(
                    out,
                    c.at(pod, &format!("ports[{i}].hostPort")),
                    format!("hostPort: {} uses hostPort {hp}", c.describe()),
                );
            }
        }
    }
}

fn host_probes(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for c in pod.containers() {
        // (field, httpGet host, tcpSocket host) for each probe and lifecycle handler.
        let mut handlers = Vec::with_capacity(5);
        for (field, p) in [
            ("livenessProbe", c.liveness),
            ("readinessProbe", c.readiness),
            ("startupProbe", c.startup),
        ] {
            if let Some(p) = p {
                handlers.push((
                    field,
                    p.http_get.as_ref().and_then(|h| h.host.as_deref()),
                    p.tcp_socket.as_ref().and_then(|t| t.host.as_deref()),
                ));
            }
        }
        if let Some(lc) = c.lifecycle {
            for (field, h) in [
                ("lifecycle.postStart", lc.post_start.as_ref()),
                ("lifecycle.preStop", lc.pre_stop.as_ref()),
            ] {
                if let Some(h) = h {
                    handlers.push((
                        field,
                        h.http_get.as_ref().and_then(|x| x.host.as_deref()),
                        h.tcp_socket.as_ref().and_then(|t| t.host.as_deref()),
                    ));
                }
            }
        }
        for (field, http, tcp) in handlers {
            for (kind, host) in [("httpGet", http), ("tcpSocket", tcp)] {
                if let Some(h) = host.filter(|h| !h.is_empty()) {
                    push(
                        out,
                        c.at(pod, &format!("{field}.{kind}.host")),
                        format!(
                            "probe or lifecycle host: {} uses probe or lifecycle host {h:?}",
                            c.describe()
                        ),
                    );
                }
            }
        }
    }
}

const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

fn app_armor(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    check_field(
        pod,
        out,
        "appArmorProfile.type",
        |s| s.app_armor_profile.as_ref(),
        |s| s.app_armor_profile.as_ref(),
        |p| {
            (!matches!(p.type_.as_str(), "RuntimeDefault" | "Localhost"))
                .then(|| format!("{:?}", p.type_))
        },
        |who, t| {
            format!("forbidden AppArmor profile: {who} must not set AppArmor profile type to {t}")
        },
    );
    for (k, v) in pod.meta.annotations.iter().flatten() {
        if k.starts_with(APPARMOR_ANNOTATION_PREFIX)
            && !(v.is_empty() || v == "runtime/default" || v.starts_with("localhost/"))
        {
            push(
                out,
                pod.annotation_path(k),
                format!("forbidden AppArmor profile: annotation {k}={v:?}"),
            );
        }
    }
}

fn selinux(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    let allowed_type = |t: &str| {
        matches!(
            t,
            "" | "container_t" | "container_init_t" | "container_kvm_t"
        ) || (v >= 31 && t == "container_engine_t")
    };
    let problems = |o: &SELinuxOptions| {
        let mut p = Vec::new();
        let t = o.type_.as_deref().unwrap_or_default();
        if !allowed_type(t) {
            p.push(format!("type {t:?}"));
        }
        if o.user.as_deref().is_some_and(|u| !u.is_empty()) {
            p.push("user may not be set".to_owned());
        }
        if o.role.as_deref().is_some_and(|r| !r.is_empty()) {
            p.push("role may not be set".to_owned());
        }
        (!p.is_empty()).then(|| p.join("; "))
    };
    check_field(
        pod,
        out,
        "seLinuxOptions",
        |s| s.se_linux_options.as_ref(),
        |s| s.se_linux_options.as_ref(),
        problems,
        |who, what| {
            format!("seLinuxOptions: {who} set forbidden securityContext.seLinuxOptions: {what}")
        },
    );
}

fn proc_mount_check(pod: &PodView<'_>, out: &mut Vec<Raw>) {
    for c in pod.containers() {
        if let Some(pm) = c.sc.and_then(|s| s.proc_mount.as_deref())
            && pm != "Default"
        {
            push(
                out,
                c.at(pod, "securityContext.procMount"),
                format!(
                    "procMount: {} must not set securityContext.procMount to {pm:?}",
                    c.describe()
                ),
            );
        }
    }
}

fn proc_mount_baseline(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 35 && pod.in_user_namespace() {
        return;
    }
    proc_mount_check(pod, out);
}

fn proc_mount_restricted(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    proc_mount_check(pod, out);
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn valid_seccomp(t: &str) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_baseline(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v < 19 {
        let valid = |val: &str| {
            val == "runtime/default" || val == "docker/default" || val.starts_with("localhost/")
        };
        let annotations = pod.meta.annotations.as_ref();
        if let Some(val) = annotations.and_then(|a| a.get(SECCOMP_POD_ANNOTATION))
            && !valid(val)
        {
            push(
                out,
                pod.annotation_path(SECCOMP_POD_ANNOTATION),
                format!("seccompProfile: forbidden annotation {SECCOMP_POD_ANNOTATION}={val:?}"),
            );
        }
        for c in pod.containers() {
            let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", c.name);
            if let Some(val) = annotations.and_then(|a| a.get(&key))
                && !valid(val)
            {
                push(
                    out,
                    pod.annotation_path(&key),
                    format!("seccompProfile: forbidden annotation {key}={val:?}"),
                );
            }
        }
        return;
    }
    seccomp_types(pod, out);
}

/// Findings for seccomp profile types other than `RuntimeDefault` and `Localhost`, wherever set.
fn seccomp_types(pod: &PodView<'_>, out: &mut Vec<Raw>) {
    check_field(
        pod,
        out,
        "seccompProfile.type",
        |s| s.seccomp_profile.as_ref(),
        |s| s.seccomp_profile.as_ref(),
        |p| (!valid_seccomp(&p.type_)).then(|| format!("{:?}", p.type_)),
        |who, t| {
            format!("seccompProfile: {who} must not set securityContext.seccompProfile.type to {t}")
        },
    );
}

fn seccomp_restricted(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 25 && pod.is_windows() {
        return;
    }
    seccomp_types(pod, out);
    let pod_profile = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref());
    if pod_profile.is_some_and(|p| valid_seccomp(&p.type_)) {
        return;
    }
    for c in pod.containers() {
        if c.sc.and_then(|s| s.seccomp_profile.as_ref()).is_none() {
            push(
                out,
                c.at(pod, "securityContext.seccompProfile"),
                format!(
                    "seccompProfile: pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
                    c.describe()
                ),
            );
        }
    }
}

fn sysctls_allowed(name: &str, v: u16) -> bool {
    match name {
        "kernel.shm_rmid_forced"
        | "net.ipv4.ip_local_port_range"
        | "net.ipv4.tcp_syncookies"
        | "net.ipv4.ping_group_range"
        | "net.ipv4.ip_unprivileged_port_start" => true,
        "net.ipv4.ip_local_reserved_ports" => v >= 27,
        "net.ipv4.tcp_keepalive_time"
        | "net.ipv4.tcp_fin_timeout"
        | "net.ipv4.tcp_keepalive_intvl"
        | "net.ipv4.tcp_keepalive_probes" => v >= 29,
        "net.ipv4.tcp_rmem" | "net.ipv4.tcp_wmem" => v >= 32,
        "net.ipv4.tcp_slow_start_after_idle" | "net.ipv4.tcp_notsent_lowat" => v >= 37,
        _ => false,
    }
}

fn sysctls(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    let Some(list) = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref())
    else {
        return;
    };
    for (i, s) in list.iter().enumerate() {
        if !sysctls_allowed(&s.name, v) {
            push(
                out,
                pod.at(&format!("securityContext.sysctls[{i}].name")),
                format!("forbidden sysctls: {}", s.name),
            );
        }
    }
}

fn windows_host_process(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    check_field(
        pod,
        out,
        "windowsOptions.hostProcess",
        |s| s.windows_options.as_ref(),
        |s| s.windows_options.as_ref(),
        |w| (w.host_process == Some(true)).then(String::new),
        |who, _| {
            format!(
                "hostProcess: {who} must not set securityContext.windowsOptions.hostProcess=true"
            )
        },
    );
}

fn restricted_volumes(pod: &PodView<'_>, _v: u16, out: &mut Vec<Raw>) {
    for (i, vol) in pod.spec.volumes.iter().flatten().enumerate() {
        let allowed = vol.config_map.is_some()
            || vol.csi.is_some()
            || vol.downward_api.is_some()
            || vol.empty_dir.is_some()
            || vol.ephemeral.is_some()
            || vol.image.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.projected.is_some()
            || vol.secret.is_some();
        if allowed {
            continue;
        }
        let kinds: [(&str, bool); 21] = [
            ("hostPath", vol.host_path.is_some()),
            ("gcePersistentDisk", vol.gce_persistent_disk.is_some()),
            (
                "awsElasticBlockStore",
                vol.aws_elastic_block_store.is_some(),
            ),
            ("gitRepo", vol.git_repo.is_some()),
            ("nfs", vol.nfs.is_some()),
            ("iscsi", vol.iscsi.is_some()),
            ("glusterfs", vol.glusterfs.is_some()),
            ("rbd", vol.rbd.is_some()),
            ("flexVolume", vol.flex_volume.is_some()),
            ("cinder", vol.cinder.is_some()),
            ("cephfs", vol.cephfs.is_some()),
            ("flocker", vol.flocker.is_some()),
            ("fc", vol.fc.is_some()),
            ("azureFile", vol.azure_file.is_some()),
            ("vsphereVolume", vol.vsphere_volume.is_some()),
            ("quobyte", vol.quobyte.is_some()),
            ("azureDisk", vol.azure_disk.is_some()),
            ("photonPersistentDisk", vol.photon_persistent_disk.is_some()),
            ("portworxVolume", vol.portworx_volume.is_some()),
            ("scaleIO", vol.scale_io.is_some()),
            ("storageos", vol.storageos.is_some()),
        ];
        // A volume with no source at all is defaulted to emptyDir by the API server.
        let Some((kind, _)) = kinds.iter().find(|(_, set)| *set) else {
            continue;
        };
        let path = pod.at(&format!("volumes[{i}].{kind}"));
        push(
            out,
            path,
            format!(
                "restricted volume types: volume {:?} uses restricted volume type {kind:?}",
                vol.name
            ),
        );
    }
}

fn allow_privilege_escalation(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 25 && pod.is_windows() {
        return;
    }
    for c in pod.containers() {
        if sc_flag(&c, |s| s.allow_privilege_escalation) != Some(false) {
            push(
                out,
                c.at(pod, "securityContext.allowPrivilegeEscalation"),
                format!(
                    "allowPrivilegeEscalation != false: {} must set securityContext.allowPrivilegeEscalation=false",
                    c.describe()
                ),
            );
        }
    }
}

fn run_as_non_root(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 35 && pod.in_user_namespace() {
        return;
    }
    let pod_value = pod
        .spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_non_root);
    if pod_value == Some(false) {
        push(
            out,
            pod.at("securityContext.runAsNonRoot"),
            "runAsNonRoot != true: pod must not set securityContext.runAsNonRoot=false".into(),
        );
    }
    for c in pod.containers() {
        match sc_flag(&c, |s| s.run_as_non_root) {
            Some(false) => push(
                out,
                c.at(pod, "securityContext.runAsNonRoot"),
                format!(
                    "runAsNonRoot != true: {} must not set securityContext.runAsNonRoot=false",
                    c.describe()
                ),
            ),
            None if pod_value != Some(true) => push(
                out,
                c.at(pod, "securityContext.runAsNonRoot"),
                format!(
                    "runAsNonRoot != true: pod or {} must set securityContext.runAsNonRoot=true",
                    c.describe()
                ),
            ),
            Some(true) | None => {}
        }
    }
}

fn run_as_user(pod: &PodView<'_>, v: u16, out: &mut Vec<Raw>) {
    if v >= 35 && pod.in_user_namespace() {
        return;
    }
    check_field(
        pod,
        out,
        "runAsUser",
        |s| s.run_as_user.as_ref(),
        |s| s.run_as_user.as_ref(),
        |uid| (*uid == 0).then(String::new),
        |who, _| format!("runAsUser=0: {who} must not set runAsUser=0"),
    );
}
