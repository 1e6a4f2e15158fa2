//! `KubeBid`'s admission policy engine: the Pod Security Standards (with Pod Security Admission's versioned
//! semantics) and the zero-trust tenant rules, as pure functions over typed objects.
//!
//! No I/O and no async: a [`PolicySet`] (rules plus configuration) and a [`Request`] go in, a [`Decision`]
//! comes out. The CLI, the webhook and the generated in-API-server policies all call this crate, so a rule
//! ID means the same thing everywhere. Start with [`PolicySet::evaluate`]; the rule table is [`rules::RULES`];
//! [`mutate`] fills in secure defaults and [`vap`] writes the rules CEL can carry as
//! `ValidatingAdmissionPolicies`. Who owns and may reach what is the tenancy model's
//! ([`kubebid_model::tenancy`]).

#![deny(clippy::pedantic)]

mod engine;
pub mod mutate;
mod pod;
pub mod pss;
pub mod rules;
pub mod settings;
mod tenant;
pub mod vap;

pub use engine::{Decision, Finding, Operation, PolicySet, Request, selector_matches};
pub use rules::{Level, RULES, Rule, Severity};
pub use tenant::image_repository;

/// A finding before actions and exceptions are applied.
pub(crate) struct Raw {
    /// Index into [`rules::RULES`].
    pub rule: usize,
    pub path: String,
    pub message: String,
}
