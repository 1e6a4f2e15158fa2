//! Falco's rule language for KubeBid: rules files (rules, macros, lists, exceptions, appends and
//! overrides) loaded from YAML text, compiled once per event source into condition trees over resolved
//! fields, and evaluated against events with alerts in Falco's JSON format.
//!
//! ```text
//! RuleSet::from_yaml / Loader ──► RuleSet ──Engine::compile(set, K8sAudit)──► Engine<K8sAudit>
//!                                                     │ report(): evaluable or why not, per rule
//! AuditEvent { json, context } ──► engine.matches / engine.alerts ──► Alert ──► to_json(hostname)
//! ```
//!
//! Sources plug in through the [`Source`] trait: [`K8sAudit`] (the `k8s_audit` source, with KubeBid's
//! `kubebid.*` fields from a [`KubeBidContext`]) and [`Syscall`] (the `syscall` source of a node sensor,
//! with the process tree, container, pod and tenant). No I/O: text in, alerts out.

mod condition;
mod engine;
mod error;
mod k8s_audit;
mod load;
mod matching;
mod output;
mod priority;
mod source;
mod syscall;

pub use condition::{Ast, FieldRef, Op, Operand, Rhs, SyntaxError, parse as parse_condition};
pub use engine::{CompiledRule, Engine, Report, RuleId, RuleReport, RuleStatus, Scratch};
pub use error::LoadError;
pub use k8s_audit::{ActorKind, AuditEvent, AuditField, K8sAudit, KubeBidContext};
pub use load::{
    Exception, ListDef, Loader, MacroDef, OneOrMany, Origin, PluginRequirement, RuleDef, RuleSet,
};
pub use output::Alert;
pub use priority::{Priority, UnknownPriority};
pub use source::{FieldError, Inline, Source, Val, Values};
pub use syscall::{
    ContainerInfo, FdInfo, PodInfo, ProcessInfo, Syscall, SyscallEvent, SyscallField,
};

/// KubeBid's own tenant-aware `k8s_audit` rules, to load after Falco's upstream rules (they reuse none
/// of its macros, so they also load alone).
#[must_use]
pub fn kubebid_audit_rules() -> &'static str {
    include_str!("../rules/kubebid_audit_rules.yaml")
}

/// KubeBid's own tenant-aware `syscall` rules (privilege escalation, container escape), to load after
/// Falco's upstream `falco_rules.yaml` or alone.
#[must_use]
pub fn kubebid_runtime_rules() -> &'static str {
    include_str!("../rules/kubebid_runtime_rules.yaml")
}

/// The file name [`kubebid_runtime_rules`] is reported under in errors.
pub const KUBEBID_RUNTIME_RULES_FILE: &str = "kubebid_runtime_rules.yaml";

/// KubeBid's system call tier of runtime rules (mount, setns, unshare, ptrace, module loading, bpf()),
/// loaded after [`kubebid_runtime_rules`]: they need the sensor on the system call tracepoints.
#[must_use]
pub fn kubebid_runtime_syscall_rules() -> &'static str {
    include_str!("../rules/kubebid_runtime_syscall_rules.yaml")
}

/// The file name [`kubebid_runtime_syscall_rules`] is reported under in errors.
pub const KUBEBID_RUNTIME_SYSCALL_RULES_FILE: &str = "kubebid_runtime_syscall_rules.yaml";

/// The file name [`kubebid_audit_rules`] is reported under in errors.
pub const KUBEBID_AUDIT_RULES_FILE: &str = "kubebid_audit_rules.yaml";
