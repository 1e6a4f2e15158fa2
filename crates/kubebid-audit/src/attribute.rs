//! Which trail an event belongs to, asked of the tenancy model: the tenant owning the request's
//! namespace; else the tenant the user acts for (owner, owner group, or a service account of a tenant
//! namespace); else the platform.

use std::sync::Arc;

use kubebid_model::tenancy::Tenancy;

use crate::event::EventHead;
use crate::store::Trail;

/// The trail of one event.
#[must_use]
pub fn trail(tenancy: &Tenancy, event: &EventHead<'_>) -> Trail {
    let by_namespace = event.namespace().and_then(|ns| tenancy.tenant_of(ns));
    let tenant =
        by_namespace.or_else(|| tenancy.tenant_of_user(&event.user.username, &event.user.groups));
    tenant.map_or(Trail::Platform, |t| {
        Trail::Tenant(Arc::from(t.name.as_str()))
    })
}
