//! Leader election through a `coordination.k8s.io` Lease, so that operator replicas can run side by side and
//! only one reconciles. The decision is a pure function of the lease and the clock; writes use the lease's
//! resourceVersion, so two replicas racing for an expired lease cannot both win.
//!
//! Why not a crate: the maintained ones were checked (November 2026) and none fits this workspace.
//! `kube-lease-manager` 0.12 (June 2026) is built on kube 4 and k8s-openapi 0.28; `kube-coordinate` 2.0
//! (a release candidate) on kube 2. KubeBid is on kube 5 and k8s-openapi 0.29, and two k8s-openapi versions
//! cannot live in one build (each selects the Kubernetes API version for the whole graph), so either would
//! pin the operator to an older kube. `kube-runtime` itself has no leader election. What is here is small
//! (one pure decision function and two writes guarded by resourceVersion) and tested against the API
//! server's HTTP boundary (`tests/lease.rs`); revisit when a maintained crate follows kube 5.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// What to do about the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Another holder's lease expired: take it over.
    TakeOver,
    /// Another holder's lease is live: wait.
    Wait { holder: String },
}

/// Decides what a replica called `me` should do with `lease` at `now`.
#[must_use]
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else {
        return Step::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == me {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1));
    let expired = spec.renew_time.as_ref().is_none_or(|t| {
        t.0.checked_add(jiff::SignedDuration::from_secs(duration))
            .is_ok_and(|until| until <= now)
    });
    if expired {
        Step::TakeOver
    } else {
        Step::Wait {
            holder: holder.to_owned(),
        }
    }
}

/// A lease held, or wanted, by one replica.
pub struct LeaseLock {
    pub api: Api<Lease>,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

impl LeaseLock {
    /// One round: acquire or renew if possible. Returns whether this replica leads after it.
    ///
    /// # Errors
    /// API errors other than a lost race (409 Conflict), which just means "not the leader".
    pub async fn try_lead(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let step = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
        let result = match (step, current) {
            (Step::Wait { .. }, _) => return Ok(false),
            (Step::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (step, Some(mut lease)) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if step == Step::TakeOver {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(seconds);
                // Carries metadata.resourceVersion: a concurrent writer makes this fail with 409.
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: Timestamp, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(secs),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().expect("time");
        let ago = |s: i64| {
            now.checked_sub(jiff::SignedDuration::from_secs(s))
                .expect("time")
        };
        assert_eq!(decide(None, "a", now), Step::Create);
        assert_eq!(
            decide(Some(&lease("a", ago(100), 15)), "a", now),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&lease("b", ago(5), 15)), "a", now),
            Step::Wait { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&lease("b", ago(15), 15)), "a", now),
            Step::TakeOver
        );
        assert_eq!(
            decide(Some(&lease("", ago(1), 15)), "a", now),
            Step::TakeOver
        );
        assert_eq!(
            decide(
                Some(&LeaseSpec {
                    holder_identity: Some("b".into()),
                    ..LeaseSpec::default()
                }),
                "a",
                now
            ),
            Step::TakeOver
        );
    }
}
