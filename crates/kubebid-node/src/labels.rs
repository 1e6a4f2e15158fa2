//! From attestations to the Node: which labels, which taint, which condition, with hysteresis so that a
//! check that flaps does not flap the labels (and reschedule tenants' pods) with it.
//!
//! - `kubebid.io/secure-runtime=true` only while every required check passes; `kubebid.io/memory-encryption`
//!   and `kubebid.io/cache-partitioning` only on a secure node that has them.
//! - When a node that was secure stops passing, the labels go and it is tainted
//!   `kubebid.io/attestation-failed:NoSchedule`; the taint goes when it passes again. A node that never
//!   passed is left alone: it may simply not be meant for microVMs.
//! - A verdict that removes something takes effect after `fall` consecutive attestations agree; one that
//!   adds something after `rise`. The agent starts from the labels the Node already carries, so a restart
//!   changes nothing.

use std::collections::BTreeMap;

use kubebid_model::config::{
    CACHE_PARTITIONING_LABEL, MEMORY_ENCRYPTION_LABEL, SECURE_RUNTIME_LABEL,
};
use serde_json::{Value, json};

use crate::checks::Attestation;

/// The taint a node gets when it stops passing.
pub const FAILED_TAINT: &str = "kubebid.io/attestation-failed";
/// The Node condition the agent keeps.
pub const CONDITION: &str = "KubeBidAttested";

/// What the labels say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub secure: bool,
    /// `sev-snp` or `tdx`.
    pub memory_encryption: Option<String>,
    pub cache_partitioning: bool,
}

impl Verdict {
    /// What one attestation says.
    #[must_use]
    pub fn of(a: &Attestation) -> Self {
        let secure = a.secure_runtime();
        Self {
            secure,
            memory_encryption: a
                .memory_encryption
                .filter(|_| secure)
                .map(|t| t.label().to_owned()),
            cache_partitioning: secure && a.cache.is_some(),
        }
    }

    /// What a Node's labels say now.
    #[must_use]
    pub fn of_labels(labels: &BTreeMap<String, String>) -> Self {
        Self {
            secure: labels.get(SECURE_RUNTIME_LABEL).map(String::as_str) == Some("true"),
            memory_encryption: labels.get(MEMORY_ENCRYPTION_LABEL).cloned(),
            cache_partitioning: labels.get(CACHE_PARTITIONING_LABEL).map(String::as_str)
                == Some("true"),
        }
    }

    /// Whether going from `self` to `next` takes anything away.
    fn loses(&self, next: &Verdict) -> bool {
        (self.secure && !next.secure)
            || (self.memory_encryption.is_some()
                && self.memory_encryption != next.memory_encryption)
            || (self.cache_partitioning && !next.cache_partitioning)
    }
}

/// The verdict in effect, moved only by a streak of agreeing attestations.
#[derive(Clone, Debug)]
pub struct Debounce {
    rise: u32,
    fall: u32,
    current: Verdict,
    candidate: Option<(Verdict, u32)>,
}

impl Debounce {
    /// Starts from `current` (the Node's labels); a gain needs `rise` agreeing attestations in a row, a loss
    /// `fall` (each at least 1).
    #[must_use]
    pub fn new(current: Verdict, rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            current,
            candidate: None,
        }
    }

    #[must_use]
    pub fn current(&self) -> &Verdict {
        &self.current
    }

    /// Whether a different verdict is waiting for its streak.
    #[must_use]
    pub fn pending(&self) -> bool {
        self.candidate.is_some()
    }

    /// Takes one attestation's verdict; the verdict in effect after it, and whether it just changed.
    pub fn observe(&mut self, v: Verdict) -> (&Verdict, bool) {
        if v == self.current {
            self.candidate = None;
            return (&self.current, false);
        }
        let seen = match &self.candidate {
            Some((c, n)) if *c == v => n + 1,
            _ => 1,
        };
        let needed = if self.current.loses(&v) {
            self.fall
        } else {
            self.rise
        };
        if seen >= needed {
            self.current = v;
            self.candidate = None;
            (&self.current, true)
        } else {
            self.candidate = Some((v, seen));
            (&self.current, false)
        }
    }
}

/// The merge patch that brings a Node's labels and taints to `v`, or `None` when they already are. It carries
/// the Node's `resourceVersion`, so a concurrent change makes it fail (409) rather than be overwritten.
#[must_use]
pub fn node_patch(node: &k8s_openapi::api::core::v1::Node, v: &Verdict) -> Option<Value> {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let want = |key: &str, value: Option<&str>| -> Option<(String, Value)> {
        let have = labels.get(key).map(String::as_str);
        (have != value).then(|| (key.to_owned(), value.map_or(Value::Null, Value::from)))
    };
    let changes: serde_json::Map<String, Value> = [
        want(SECURE_RUNTIME_LABEL, v.secure.then_some("true")),
        want(MEMORY_ENCRYPTION_LABEL, v.memory_encryption.as_deref()),
        want(
            CACHE_PARTITIONING_LABEL,
            v.cache_partitioning.then_some("true"),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tainted = taints.iter().any(|t| t.key == FAILED_TAINT);
    let was_secure = Verdict::of_labels(&labels).secure;
    // Tainted when a secure node stops passing, until it passes again.
    let taint = !v.secure && (was_secure || tainted);
    let new_taints = (taint != tainted).then(|| {
        let mut t: Vec<Value> = taints
            .iter()
            .filter(|t| t.key != FAILED_TAINT)
            .filter_map(|t| serde_json::to_value(t).ok())
            .collect();
        if taint {
            t.push(json!({"key": FAILED_TAINT, "value": "true", "effect": "NoSchedule"}));
        }
        t
    });
    if changes.is_empty() && new_taints.is_none() {
        return None;
    }
    let mut patch = json!({"metadata": {"resourceVersion": node.metadata.resource_version}});
    if !changes.is_empty() {
        patch["metadata"]["labels"] = Value::Object(changes);
    }
    if let Some(t) = new_taints {
        patch["spec"] = json!({"taints": t});
    }
    Some(patch)
}

/// The strategic merge patch of the Node's `KubeBidAttested` condition (merged by type, the others kept).
#[must_use]
pub fn condition_patch(
    a: &Attestation,
    in_effect: &Verdict,
    pending: bool,
    now: &str,
    transition: &str,
) -> Value {
    let failures = a.failures();
    let (status, reason, message) = if in_effect.secure && failures.is_empty() {
        (
            "True",
            "AttestationPassed",
            "every required check passes".to_owned(),
        )
    } else if failures.is_empty() {
        (
            "False",
            "AttestationPending",
            "every required check passes; waiting for the checks to hold before labelling"
                .to_owned(),
        )
    } else {
        let why: Vec<String> = failures
            .iter()
            .map(|c| format!("{}: {}", c.id, c.detail))
            .collect();
        (
            if in_effect.secure { "True" } else { "False" },
            if in_effect.secure && pending {
                "AttestationFailing"
            } else {
                "AttestationFailed"
            },
            why.join("; "),
        )
    };
    json!({"status": {"conditions": [{
        "type": CONDITION,
        "status": status,
        "reason": reason,
        "message": message,
        "lastHeartbeatTime": now,
        "lastTransitionTime": transition,
    }]}})
}

/// A core/v1 Event about the Node, for a change of verdict.
#[must_use]
pub fn event(
    node: &str,
    uid: Option<&str>,
    v: &Verdict,
    a: &Attestation,
    now: &str,
    name: &str,
) -> Value {
    let (kind, reason, message) = if v.secure {
        (
            "Normal",
            "NodeAttested",
            format!(
                "attested for microVM tenants{}{}",
                v.memory_encryption
                    .as_deref()
                    .map_or(String::new(), |t| format!(", memory encryption {t}")),
                if v.cache_partitioning {
                    ", cache partitioning"
                } else {
                    ""
                }
            ),
        )
    } else {
        let why: Vec<String> = a
            .failures()
            .iter()
            .map(|c| format!("{}: {}", c.id, c.detail))
            .collect();
        ("Warning", "AttestationFailed", why.join("; "))
    };
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": "default"},
        "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid},
        "reason": reason, "message": message, "type": kind,
        "source": {"component": "kubebid-node", "host": node},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    })
}
