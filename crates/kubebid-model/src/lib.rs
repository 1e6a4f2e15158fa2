//! The shared vocabulary of `KubeBid`: configuration objects (`kubebid.io/v1alpha1`), the manifest loader, and
//! the typed objects the policy engine decides on. Nothing here does I/O but [`input`], which finds and
//! reads the files every command takes; everything else is handed text and values.
//!
//! Start with [`config`] for the CRDs, [`tenancy`] for the one model of who owns and may reach what (every
//! door asks it), [`input`] and [`load`] to read files into objects, [`object`] for the Kubernetes kinds
//! `KubeBid` has rules for and [`podspec`] for where each kind keeps its pod spec.

#![deny(clippy::pedantic)]

pub mod address;
pub mod config;
pub mod input;
pub mod load;
pub mod object;
pub mod path;
pub mod podspec;
pub mod quantity;
pub mod tenancy;
pub mod yaml;

pub use config::{
    Action, KubeBidConfig, KubeBidConfigSpec, PolicyException, PolicyExceptionSpec, Profile,
    PssVersion, Tenant, TenantSpec,
};
pub use input::{Input, InputError, InputProblem};
pub use load::{ConfigSet, ManifestItem, Origin, SourceError};
pub use object::{DecodeError, Object, PodTemplateRef, Resource};
pub use tenancy::{Actor, Direction, Party, Tenancy, TenantScope};
pub mod emit;
