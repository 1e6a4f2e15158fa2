//! The reachability matrix: which namespace's pods may open connections to which, computed from every
//! NetworkPolicy in the cluster and the labels of every Namespace, as Kubernetes enforces them.
//!
//! A connection from a pod in X to a pod in Y is allowed when X's egress policies let it out and Y's
//! ingress policies let it in. A direction no policy selecting the pod restricts is open. The matrix asks
//! whether *some* pod of X can reach *some* pod of Y: a tenant chooses its own pods' labels, so a pod
//! selector that some label set satisfies is taken to select one of its pods, and a namespace whose
//! policies do not select every pod (no policy with an empty `podSelector`) is taken to have pods nothing
//! restricts. The answer is therefore an over-approximation, the safe side for a proof of isolation: a path
//! it reports might need labels no pod carries yet, but a path it does not report exists for no pod.
//! Ports are not considered: any port open is a path.
//!
//! `ipBlock` peers reach pods when they overlap a pod CIDR (the cluster configuration's and the Nodes'
//! `spec.podCIDRs`) in addresses their `except` does not cut out. No Tenant can declare a path to another
//! tenant (only to shared namespaces), so every path between two tenants is a failure. Policies of kinds
//! the matrix does not model ([`may_allow`]: Cilium's, `AdminNetworkPolicy`) that can allow traffic make
//! every pair undecided, and so a failure: a proof is not given on what was not read.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_json::Value;

/// Labels of one object.
pub type Labels = BTreeMap<String, String>;

/// Whether `labels` satisfy the label selector `sel` (`matchLabels` and `matchExpressions`).
#[must_use]
pub fn matches(sel: &Value, labels: &Labels) -> bool {
    let by_label = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    by_label
        && sel["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| {
                let key = e["key"].as_str().unwrap_or_default();
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let have = labels.get(key).map(String::as_str);
                match e["operator"].as_str() {
                    Some("In") => have.is_some_and(|h| values.contains(&h)),
                    Some("NotIn") => have.is_none_or(|h| !values.contains(&h)),
                    Some("Exists") => have.is_some(),
                    Some("DoesNotExist") => have.is_none(),
                    // An operator the API server would have refused: it selects nothing.
                    _ => false,
                }
            })
}

/// Whether `sel` selects everything (no constraints at all).
#[must_use]
pub fn selects_all(sel: &Value) -> bool {
    sel["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && sel["matchExpressions"].as_array().is_none_or(Vec::is_empty)
}

/// Whether some label set satisfies `sel`: its constraints on each key do not contradict each other.
#[must_use]
pub fn satisfiable(sel: &Value) -> bool {
    #[derive(Default)]
    struct Key<'a> {
        fixed: Vec<&'a str>,
        within: Option<BTreeSet<&'a str>>,
        not: BTreeSet<&'a str>,
        exists: bool,
        absent: bool,
    }
    let mut keys: BTreeMap<&str, Key> = BTreeMap::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        keys.entry(k)
            .or_default()
            .fixed
            .push(v.as_str().unwrap_or_default());
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = keys
            .entry(e["key"].as_str().unwrap_or_default())
            .or_default();
        let values: BTreeSet<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str() {
            Some("In") => {
                key.within = Some(match key.within.take() {
                    Some(w) => w.intersection(&values).copied().collect(),
                    None => values,
                });
            }
            Some("NotIn") => key.not.extend(values),
            Some("Exists") => key.exists = true,
            Some("DoesNotExist") => key.absent = true,
            _ => return false,
        }
    }
    keys.values().all(|k| {
        if k.absent {
            return k.fixed.is_empty() && k.within.is_none() && !k.exists;
        }
        match (k.fixed.first(), &k.within) {
            (Some(f), w) => {
                k.fixed.iter().all(|x| x == f)
                    && !k.not.contains(f)
                    && w.as_ref().is_none_or(|w| w.contains(f))
            }
            (None, Some(w)) => w.iter().any(|v| !k.not.contains(v)),
            (None, None) => true,
        }
    })
}

/// Whether an `ipBlock` reaches addresses in one of `pods` that its `except` does not cut out. Without
/// known pod CIDRs (a CNI that does not fill `Node.spec.podCIDRs`), or with a CIDR that does not parse,
/// every block is taken to reach pods: the matrix never decides "isolated" on what it could not read.
#[must_use]
pub fn block_reaches(block: &Value, pods: &[IpNet]) -> bool {
    let Some(cidr) = block["cidr"].as_str().and_then(|c| c.parse::<IpNet>().ok()) else {
        return true;
    };
    if pods.is_empty() {
        return true;
    }
    let except: Vec<IpNet> = block["except"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str()?.parse().ok())
        .collect();
    pods.iter().any(|p| {
        let overlap = if cidr.contains(p) {
            *p
        } else if p.contains(&cidr) {
            cidr
        } else {
            return false;
        };
        let inside: Vec<IpNet> = except
            .iter()
            .filter_map(|e| {
                if e.contains(&overlap) {
                    Some(overlap)
                } else if overlap.contains(e) {
                    Some(*e)
                } else {
                    None
                }
            })
            .collect();
        !IpNet::aggregate(&inside)
            .iter()
            .any(|a| a.contains(&overlap))
    })
}

/// What a connection's far end looks like to a rule: its namespace and that namespace's labels.
struct End<'a> {
    namespace: &'a str,
    labels: &'a Labels,
}

/// Whether a rule's peers (`to` or `from`, from a policy in `home`) admit some pod of `end`.
fn peers_admit(peers: &Value, home: &str, end: &End<'_>, pods: &[IpNet]) -> bool {
    let Some(peers) = peers.as_array().filter(|p| !p.is_empty()) else {
        // No peers: every source or destination.
        return true;
    };
    peers.iter().any(|peer| {
        if peer.get("ipBlock").is_some() {
            return block_reaches(&peer["ipBlock"], pods);
        }
        let pod_ok = peer.get("podSelector").is_none_or(satisfiable);
        match peer.get("namespaceSelector") {
            Some(ns) => pod_ok && matches(ns, end.labels),
            None => pod_ok && peer.get("podSelector").is_some() && end.namespace == home,
        }
    })
}

/// Whether a policy governs `direction` (`Ingress` or `Egress`): by `policyTypes`, else Ingress always
/// and Egress when it has egress rules.
fn governs(policy: &Value, direction: &str) -> bool {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types.iter().any(|t| t == direction),
        None => direction == "Ingress" || policy["spec"].get("egress").is_some(),
    }
}

/// Why a direction is open, or `None` if it is closed.
fn open_by(
    policies: &[&Value],
    home: &str,
    direction: &str,
    end: &End<'_>,
    pods: &[IpNet],
) -> Option<String> {
    let (rules, peers) = if direction == "Egress" {
        ("egress", "to")
    } else {
        ("ingress", "from")
    };
    let governing: Vec<&&Value> = policies.iter().filter(|p| governs(p, direction)).collect();
    if !governing
        .iter()
        .any(|p| selects_all(&p["spec"]["podSelector"]))
    {
        return Some(if governing.is_empty() {
            format!("no NetworkPolicy in {home} restricts {rules}")
        } else {
            format!("{home}'s {rules} policies do not select every pod")
        });
    }
    governing.iter().find_map(|p| {
        if !satisfiable(&p["spec"]["podSelector"]) {
            return None;
        }
        p["spec"][rules]
            .as_array()
            .into_iter()
            .flatten()
            .position(|r| peers_admit(&r[peers], home, end, pods))
            .map(|i| {
                format!(
                    "{home}/{} {rules} rule {}",
                    p["metadata"]["name"].as_str().unwrap_or("?"),
                    i + 1
                )
            })
    })
}

/// The cluster's policies and namespaces, ready to be asked about pairs.
pub struct Matrix<'a> {
    labels: BTreeMap<&'a str, Labels>,
    policies: BTreeMap<&'a str, Vec<&'a Value>>,
    pods: Vec<IpNet>,
}

impl<'a> Matrix<'a> {
    /// From the items of a Namespace list, a NetworkPolicy list, and the pod CIDRs.
    #[must_use]
    pub fn new(namespaces: &'a [Value], policies: &'a [Value], pods: Vec<IpNet>) -> Self {
        let labels = namespaces
            .iter()
            .filter_map(|n| {
                let name = n["metadata"]["name"].as_str()?;
                let mut l: Labels = n["metadata"]["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect();
                // The API server sets it on every namespace; a list from an older one may lack it.
                l.entry("kubernetes.io/metadata.name".into())
                    .or_insert_with(|| name.to_owned());
                Some((name, l))
            })
            .collect();
        let mut by_ns: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        for p in policies {
            if let Some(ns) = p["metadata"]["namespace"].as_str() {
                by_ns.entry(ns).or_default().push(p);
            }
        }
        Self {
            labels,
            policies: by_ns,
            pods,
        }
    }

    /// Why pods of `from` may reach pods of `to` (egress and ingress reasons), or `None` if none may.
    #[must_use]
    pub fn path(&self, from: &str, to: &str) -> Option<String> {
        // A namespace not in the list (made between the two lists) still carries its name label.
        let named = |ns: &str| -> Labels {
            [("kubernetes.io/metadata.name".to_owned(), ns.to_owned())].into()
        };
        let (from_named, to_named) = (named(from), named(to));
        let none = Vec::new();
        let out = open_by(
            self.policies.get(from).unwrap_or(&none),
            from,
            "Egress",
            &End {
                namespace: to,
                labels: self.labels.get(to).unwrap_or(&to_named),
            },
            &self.pods,
        )?;
        let inn = open_by(
            self.policies.get(to).unwrap_or(&none),
            to,
            "Ingress",
            &End {
                namespace: from,
                labels: self.labels.get(from).unwrap_or(&from_named),
            },
            &self.pods,
        )?;
        Some(format!("{from} → {to}: out by {out}; in by {inn}"))
    }
}

/// Whether a policy of a kind the matrix does not model can allow traffic: a `CiliumNetworkPolicy` or
/// `CiliumClusterwideNetworkPolicy` with `ingress` or `egress` rules (in `spec` or any of `specs`; deny
/// rules only narrow), or an `AdminNetworkPolicy` with an `Allow` rule (which overrides every
/// NetworkPolicy).
#[must_use]
pub fn may_allow(policy: &Value) -> bool {
    let allows = |spec: &Value| {
        ["ingress", "egress"]
            .iter()
            .any(|k| spec[*k].as_array().is_some_and(|r| !r.is_empty()))
    };
    if policy["kind"] == "AdminNetworkPolicy" {
        return ["ingress", "egress"].iter().any(|k| {
            policy["spec"][*k]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["action"] == "Allow")
        });
    }
    allows(&policy["spec"]) || policy["specs"].as_array().into_iter().flatten().any(allows)
}
