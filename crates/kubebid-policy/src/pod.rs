//! A uniform view of a pod spec's containers (init, regular and ephemeral), with their field paths.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EphemeralContainer, Lifecycle, PodSpec, Probe, ResourceRequirements,
    SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubebid_model::path;

/// A pod spec with where it stands in its object.
#[derive(Clone, Copy)]
pub(crate) struct PodView<'a> {
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
    pub spec_path: &'a str,
    pub meta_path: &'a str,
}

impl<'a> PodView<'a> {
    /// `spec_path` + `.tail`.
    pub fn at(&self, tail: &str) -> String {
        let mut p = String::with_capacity(self.spec_path.len() + tail.len() + 1);
        p.push_str(self.spec_path);
        if !tail.is_empty() {
            p.push('.');
            p.push_str(tail);
        }
        p
    }

    /// Path of an annotation of the pod.
    pub fn annotation_path(&self, key: &str) -> String {
        path::join(&format!("{}.annotations", self.meta_path), key)
    }

    /// Init containers, then containers, then ephemeral containers, as Pod Security Admission visits them.
    pub fn containers(&self) -> impl Iterator<Item = ContainerView<'a>> + use<'a> {
        let spec: &'a PodSpec = self.spec;
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| ContainerView::of(c, "initContainers", i));
        let main = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerView::of(c, "containers", i));
        let eph = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| ContainerView::of_ephemeral(c, i));
        init.chain(main).chain(eph)
    }

    pub fn is_windows(&self) -> bool {
        self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }

    /// `hostUsers: false`: the pod runs in a user namespace.
    pub fn in_user_namespace(&self) -> bool {
        self.spec.host_users == Some(false)
    }
}

/// The fields of a container the rules read, for any of the three container lists.
pub(crate) struct ContainerView<'a> {
    pub list: &'static str,
    pub index: usize,
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub sc: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
    pub liveness: Option<&'a Probe>,
    pub readiness: Option<&'a Probe>,
    pub startup: Option<&'a Probe>,
    pub lifecycle: Option<&'a Lifecycle>,
    pub resources: Option<&'a ResourceRequirements>,
    pub image_pull_policy: Option<&'a str>,
}

/// `Container` and `EphemeralContainer` are distinct types with the same fields.
macro_rules! container_view {
    ($c:expr, $list:expr, $index:expr) => {
        ContainerView {
            list: $list,
            index: $index,
            name: &$c.name,
            image: $c.image.as_deref(),
            sc: $c.security_context.as_ref(),
            ports: $c.ports.as_deref().unwrap_or_default(),
            liveness: $c.liveness_probe.as_ref(),
            readiness: $c.readiness_probe.as_ref(),
            startup: $c.startup_probe.as_ref(),
            lifecycle: $c.lifecycle.as_ref(),
            resources: $c.resources.as_ref(),
            image_pull_policy: $c.image_pull_policy.as_deref(),
        }
    };
}

impl<'a> ContainerView<'a> {
    fn of(c: &'a Container, list: &'static str, index: usize) -> Self {
        container_view!(c, list, index)
    }

    fn of_ephemeral(c: &'a EphemeralContainer, index: usize) -> Self {
        container_view!(c, "ephemeralContainers", index)
    }

    /// Path of `tail` inside this container.
    pub fn at(&self, pod: &PodView<'_>, tail: &str) -> String {
        // Sized up front: this runs for every finding, and growing the string reallocates.
        let mut p = String::with_capacity(pod.spec_path.len() + self.list.len() + tail.len() + 8);
        p.push_str(pod.spec_path);
        p.push('.');
        p.push_str(self.list);
        path::push_index(&mut p, self.index);
        if !tail.is_empty() {
            p.push('.');
            p.push_str(tail);
        }
        p
    }

    /// `container "name"` (or `init container`, `ephemeral container`).
    pub fn describe(&self) -> String {
        let kind = match self.list {
            "initContainers" => "init container",
            "ephemeralContainers" => "ephemeral container",
            _ => "container",
        };
        let mut s = String::with_capacity(kind.len() + self.name.len() + 3);
        s.push_str(kind);
        s.push(' ');
        push_quoted(&mut s, self.name);
        s
    }
}

/// Appends `"name"`, escaping like `{:?}` only when the name holds something other than the characters
/// Kubernetes names use (the fast path matters: this runs for every finding).
pub(crate) fn push_quoted(out: &mut String, name: &str) {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        out.push('"');
        out.push_str(name);
        out.push('"');
    } else {
        use std::fmt::Write as _;
        let _ = write!(out, "{name:?}");
    }
}
