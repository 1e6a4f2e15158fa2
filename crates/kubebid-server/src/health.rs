//! What a process's `/healthz` (liveness) and `/readyz` (readiness) answer: every component adds its
//! checks; the endpoint is healthy (200) when all of them pass, else 503 with each failing check's reason.

use std::sync::{Arc, PoisonError, RwLock};

/// One check: `Ok`, or why not.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The process's health checks. Clones share them.
#[derive(Clone, Default)]
pub struct Health {
    live: Arc<RwLock<Vec<(&'static str, Check)>>>,
    ready: Arc<RwLock<Vec<(&'static str, Check)>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &RwLock<Vec<(&'static str, Check)>>| -> Vec<&'static str> {
            v.read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(n, _)| *n)
                .collect()
        };
        f.debug_struct("Health")
            .field("live", &names(&self.live))
            .field("ready", &names(&self.ready))
            .finish()
    }
}

/// The answer of one endpoint: every check passed, or the reasons of those that did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// `(check, reason)` of each failing check.
    Fail(Vec<(&'static str, String)>),
}

impl Verdict {
    /// The body the endpoint answers with.
    #[must_use]
    pub fn body(&self) -> String {
        match self {
            Verdict::Pass => "ok\n".to_owned(),
            Verdict::Fail(why) => why.iter().fold(String::new(), |mut out, (name, reason)| {
                out.push_str(name);
                out.push_str(": ");
                out.push_str(reason);
                out.push('\n');
                out
            }),
        }
    }
}

fn run(checks: &RwLock<Vec<(&'static str, Check)>>) -> Verdict {
    let failing: Vec<(&'static str, String)> = checks
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(name, check)| check().err().map(|why| (*name, why)))
        .collect();
    if failing.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(failing)
    }
}

impl Health {
    /// No checks yet: live and ready.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a liveness check (`/healthz`): failing means the process should be restarted.
    pub fn add_liveness(
        &self,
        name: &'static str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.live
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, Arc::new(check)));
    }

    /// Adds a readiness check (`/readyz`): failing means the process should get no traffic yet.
    pub fn add_readiness(
        &self,
        name: &'static str,
        check: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.ready
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, Arc::new(check)));
    }

    /// What `/healthz` answers.
    #[must_use]
    pub fn liveness(&self) -> Verdict {
        run(&self.live)
    }

    /// What `/readyz` answers: readiness needs liveness too.
    #[must_use]
    pub fn readiness(&self) -> Verdict {
        match (run(&self.live), run(&self.ready)) {
            (Verdict::Pass, Verdict::Pass) => Verdict::Pass,
            (Verdict::Fail(mut a), Verdict::Fail(b)) => {
                a.extend(b);
                Verdict::Fail(a)
            }
            (Verdict::Fail(a), Verdict::Pass) | (Verdict::Pass, Verdict::Fail(a)) => {
                Verdict::Fail(a)
            }
        }
    }
}
