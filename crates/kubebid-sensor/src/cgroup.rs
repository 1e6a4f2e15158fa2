//! A process's cgroup path to its pod and container, for every layout the kubelet and the common runtimes
//! make:
//!
//! | driver | runtime | container's cgroup |
//! |---|---|---|
//! | systemd | containerd | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope` |
//! | systemd | CRI-O | `…/kubepods-besteffort-pod<uid>.slice/crio-<id>.scope` (`crio-conmon-<id>.scope` for its monitor) |
//! | systemd | cri-dockerd | `…-pod<uid>.slice/docker-<id>.scope` |
//! | cgroupfs | any | `/kubepods/burstable/pod<uid>/<id>`, `/kubepods/pod<uid>/<id>` (Guaranteed) |
//! | either | Kata | `…pod<uid>…/kata_<sandbox id>`: the sandbox's VMM and shim, not one container |
//!
//! With the systemd driver the pod UID's dashes are underscores. Whatever is before `kubepods` (a
//! cgroup namespace root, `/system.slice/containerd.service/` for a nested kubelet) is skipped. A path
//! that is not a pod's, or a pod's own slice (a process not in any container), is told apart; nothing here
//! panics on any input.

/// The container runtime that made a container's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Runtime {
    Containerd,
    CriO,
    /// CRI-O's `conmon` monitor beside a container.
    CriOMonitor,
    Docker,
    /// The Kata shim's sandbox cgroup: its VMM (Firecracker, QEMU) and shim threads.
    Kata,
    /// The cgroupfs driver names a container by its ID alone.
    Unknown,
}

impl Runtime {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::CriOMonitor => "cri-o-conmon",
            Self::Docker => "docker",
            Self::Kata => "kata",
            Self::Unknown => "unknown",
        }
    }
}

/// The pod's quality-of-service class, from its cgroup's parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Qos {
    Guaranteed,
    Burstable,
    BestEffort,
}

/// What a cgroup path says about a process.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attribution {
    /// Not under `kubepods`: the node's own processes.
    Node,
    /// In a pod's cgroup but not a container's (the pod's slice itself).
    Pod { pod_uid: String, qos: Qos },
    /// In a container (or, for Kata, the pod's sandbox).
    Container {
        pod_uid: String,
        qos: Qos,
        container_id: String,
        runtime: Runtime,
    },
}

impl Attribution {
    /// The pod UID, in its API form (with dashes), if the process is in a pod.
    #[must_use]
    pub fn pod_uid(&self) -> Option<&str> {
        match self {
            Self::Node => None,
            Self::Pod { pod_uid, .. } | Self::Container { pod_uid, .. } => Some(pod_uid),
        }
    }
}

/// A pod UID as the API writes it: 36 characters, hex digits and dashes at 8-4-4-4-12.
fn pod_uid(raw: &str) -> Option<String> {
    let uid: String = raw
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .collect();
    let ok = uid.len() == 36
        && uid.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    ok.then(|| uid.to_ascii_lowercase())
}

/// A runtime's container ID: 64 lowercase hex digits (containerd, CRI-O, Docker), or a Kata sandbox's.
fn container_id(raw: &str) -> Option<&str> {
    (raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit())).then_some(raw)
}

/// The pod segment of a path: `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid>.slice` (systemd).
fn pod_segment(seg: &str) -> Option<String> {
    if let Some(rest) = seg.strip_suffix(".slice") {
        let at = rest.rfind("-pod")?;
        return pod_uid(&rest[at + 4..]);
    }
    pod_uid(seg.strip_prefix("pod")?)
}

fn qos_segment(seg: &str) -> Option<Qos> {
    match seg {
        "burstable" | "kubepods-burstable.slice" => Some(Qos::Burstable),
        "besteffort" | "kubepods-besteffort.slice" => Some(Qos::BestEffort),
        _ => None,
    }
}

fn container_segment(seg: &str) -> Option<(String, Runtime)> {
    if let Some(id) = seg.strip_prefix("kata_") {
        // Kata names the sandbox cgroup by its sandbox ID.
        return container_id(id).map(|id| (id.to_owned(), Runtime::Kata));
    }
    if let Some(scope) = seg.strip_suffix(".scope") {
        for (prefix, runtime) in [
            ("cri-containerd-", Runtime::Containerd),
            ("crio-conmon-", Runtime::CriOMonitor),
            ("crio-", Runtime::CriO),
            ("docker-", Runtime::Docker),
        ] {
            if let Some(id) = scope.strip_prefix(prefix) {
                return container_id(id).map(|id| (id.to_owned(), runtime));
            }
        }
        return None;
    }
    container_id(seg).map(|id| (id.to_owned(), Runtime::Unknown))
}

/// Attributes one cgroup path (`/kubepods.slice/…`, as in `/proc/<pid>/cgroup` after `0::`).
#[must_use]
pub fn attribute(path: &str) -> Attribution {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(start) = segs
        .iter()
        .position(|s| *s == "kubepods" || *s == "kubepods.slice")
    else {
        return Attribution::Node;
    };
    let mut rest = &segs[start + 1..];
    let mut qos = Qos::Guaranteed;
    if let Some(q) = rest.first().and_then(|s| qos_segment(s)) {
        qos = q;
        rest = &rest[1..];
    }
    let Some(pod_uid) = rest.first().and_then(|s| pod_segment(s)) else {
        return Attribution::Node;
    };
    match rest.get(1).and_then(|s| container_segment(s)) {
        Some((container_id, runtime)) => Attribution::Container {
            pod_uid,
            qos,
            container_id,
            runtime,
        },
        None => Attribution::Pod { pod_uid, qos },
    }
}

/// The cgroup path in the text of `/proc/<pid>/cgroup`: the unified hierarchy's line (`0::<path>`), else
/// (cgroup v1) the first controller line whose path is a pod's.
#[must_use]
pub fn path_in_proc(text: &str) -> Option<&str> {
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" {
            return Some(path);
        }
        if v1.is_none() && path.contains("kubepods") {
            v1 = Some(path);
        }
    }
    v1
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c2b3a-1d2e-4f5a-8b9c-0123456789ab";
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn c(qos: Qos, runtime: Runtime) -> Attribution {
        Attribution::Container {
            pod_uid: UID.into(),
            qos,
            container_id: ID.into(),
            runtime,
        }
    }

    #[test]
    fn every_layout() {
        let u = UID.replace('-', "_");
        let cases = [
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{ID}.scope"
                ),
                c(Qos::Burstable, Runtime::Containerd),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{ID}.scope"),
                c(Qos::Guaranteed, Runtime::Containerd),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-{ID}.scope"
                ),
                c(Qos::BestEffort, Runtime::CriO),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-conmon-{ID}.scope"
                ),
                c(Qos::BestEffort, Runtime::CriOMonitor),
            ),
            (
                format!("/kubepods.slice/kubepods-pod{u}.slice/docker-{ID}.scope"),
                c(Qos::Guaranteed, Runtime::Docker),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                c(Qos::Burstable, Runtime::Unknown),
            ),
            (
                format!("/kubepods/pod{UID}/{ID}"),
                c(Qos::Guaranteed, Runtime::Unknown),
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/kata_{ID}"),
                c(Qos::BestEffort, Runtime::Kata),
            ),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/kata_{ID}"
                ),
                c(Qos::Burstable, Runtime::Kata),
            ),
            // A nested kubelet (kind): the node's own cgroup before kubepods.
            (
                format!("/system.slice/docker-{ID}.scope/kubepods/burstable/pod{UID}/{ID}"),
                c(Qos::Burstable, Runtime::Unknown),
            ),
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice"),
                Attribution::Pod {
                    pod_uid: UID.into(),
                    qos: Qos::Burstable,
                },
            ),
            ("/system.slice/containerd.service".into(), Attribution::Node),
            ("/".into(), Attribution::Node),
            (
                "/kubepods.slice/kubepods-burstable.slice".into(),
                Attribution::Node,
            ),
            (
                format!("/kubepods/burstable/pod{UID}x/{ID}"),
                Attribution::Node,
            ),
        ];
        for (path, want) in cases {
            assert_eq!(attribute(&path), want, "{path}");
        }
    }

    #[test]
    fn proc_cgroup_text() {
        let v2 = format!("0::/kubepods/pod{UID}/{ID}\n");
        assert_eq!(path_in_proc(&v2), Some(&v2[3..v2.len() - 1]));
        let v1 =
            format!("12:pids:/user.slice\n4:memory:/kubepods/pod{UID}/{ID}\n1:name=systemd:/x\n");
        assert_eq!(
            path_in_proc(&v1),
            Some(format!("/kubepods/pod{UID}/{ID}").as_str())
        );
        assert_eq!(path_in_proc("garbage"), None);
    }
}
