//! One node's attestation loop against the API server: attest, debounce, and bring the Node's labels,
//! taint and condition in line, with an Event on every change of verdict.

use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::checks::{Attestation, Options, attest};
use crate::labels::{Debounce, Verdict, condition_patch, event, node_patch};

/// What one round did.
#[derive(Debug)]
pub struct Round {
    pub attestation: Attestation,
    /// The verdict in effect after it.
    pub verdict: Verdict,
    /// The verdict changed in this round.
    pub changed: bool,
    /// The Node's labels or taints were patched.
    pub patched: bool,
}

/// The agent of one node.
pub struct Agent {
    opts: Options,
    node: String,
    nodes: Api<Node>,
    events: Api<Event>,
    debounce: Option<Debounce>,
    rise: u32,
    fall: u32,
    /// The condition's status and when it last changed.
    transition: Option<(bool, String)>,
}

impl Agent {
    /// An agent for `node`: a gain of label takes `rise` agreeing attestations, a loss `fall`.
    #[must_use]
    pub fn new(client: Client, node: String, opts: Options, rise: u32, fall: u32) -> Self {
        Self {
            opts,
            nodes: Api::all(client.clone()),
            events: Api::namespaced(client, "default"),
            node,
            debounce: None,
            rise,
            fall,
            transition: None,
        }
    }

    /// Attests once and updates the Node.
    ///
    /// # Errors
    /// The API server refused or did not answer (the next round tries again).
    pub async fn round(&mut self) -> Result<Round, kube::Error> {
        let attestation = attest(&self.opts);
        let node = self.nodes.get(&self.node).await?;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let (rise, fall) = (self.rise, self.fall);
        let debounce = self
            .debounce
            .get_or_insert_with(|| Debounce::new(Verdict::of_labels(&labels), rise, fall));
        let (verdict, changed) = debounce.observe(Verdict::of(&attestation));
        let verdict = verdict.clone();
        let pending = debounce.pending();
        let patched = match node_patch(&node, &verdict) {
            Some(p) => {
                self.nodes
                    .patch(&self.node, &PatchParams::default(), &Patch::Merge(&p))
                    .await?;
                true
            }
            None => false,
        };
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .to_string();
        let status = verdict.secure;
        let transition = match &self.transition {
            Some((s, at)) if *s == status => at.clone(),
            _ => now.clone(),
        };
        self.transition = Some((status, transition.clone()));
        let condition = condition_patch(&attestation, &verdict, pending, &now, &transition);
        self.nodes
            .patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await?;
        if changed {
            let name = format!(
                "{}.kubebid-attestation.{}",
                self.node,
                jiff::Timestamp::now().as_millisecond()
            );
            let body = event(
                &self.node,
                node.metadata.uid.as_deref(),
                &verdict,
                &attestation,
                &now,
                &name,
            );
            if let Ok(ev) = serde_json::from_value::<Event>(body) {
                // An Event is a courtesy: its failure does not fail the round.
                if let Err(e) = self.events.create(&PostParams::default(), &ev).await {
                    tracing::warn!(error = %e, "could not record the attestation Event");
                }
            }
        }
        Ok(Round {
            attestation,
            verdict,
            changed,
            patched,
        })
    }
}
