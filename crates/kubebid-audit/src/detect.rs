//! Detection: every stored event through the `k8s_audit` rules (Falco's language, `kubebid-rules`),
//! with KubeBid's fields filled in from the tenancy model.
//!
//! Detection runs after a batch is acknowledged, on its own thread, so it never delays or fails ingest.
//! Its queue is bounded: if detection falls behind, batches are skipped and counted
//! (`kubebid_audit_detection_skipped_events_total`), never stored less. Alerts are written as JSON lines in
//! Falco's output format (so falcosidekick and other consumers read them), counted per rule, tenant and
//! priority, and posted to an outbound webhook when one is configured.

use std::io::Write;
use std::sync::Arc;

use arc_swap::ArcSwap;
use kubebid_model::tenancy::{Actor, Tenancy};
use kubebid_rules::{ActorKind, AuditEvent, Engine, K8sAudit, KubeBidContext, Scratch};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

use crate::event::{EventHead, head};
use crate::metrics::AuditMetrics;
use crate::store::{Batch, Trail};

/// Where alerts go besides metrics.
pub trait AlertOutput: Send {
    /// One alert, as Falco's JSON.
    fn alert(&mut self, json: &serde_json::Value);
}

/// JSON lines to a writer (a file, standard output).
pub struct JsonLines<W: Write + Send>(pub W);

impl<W: Write + Send> AlertOutput for JsonLines<W> {
    fn alert(&mut self, json: &serde_json::Value) {
        if serde_json::to_writer(&mut self.0, json).is_ok() {
            let _ = self.0.write_all(b"\n");
            let _ = self.0.flush();
        }
    }
}

/// Alerts handed to an async task (the outbound webhook) through a bounded queue.
pub struct Forward(pub mpsc::Sender<serde_json::Value>);

impl AlertOutput for Forward {
    fn alert(&mut self, json: &serde_json::Value) {
        let _ = self.0.try_send(json.clone());
    }
}

/// The detector's queue: batches after they are stored.
#[derive(Clone)]
pub struct Detection {
    tx: mpsc::Sender<Batch>,
    metrics: AuditMetrics,
    warned: Arc<std::sync::atomic::AtomicI64>,
}

impl Detection {
    /// Hands a stored batch to detection, or counts it skipped when detection is behind.
    pub fn offer(&self, batch: Batch) {
        let n = batch.events.len() as u64;
        if self.tx.try_send(batch).is_err() {
            self.metrics.detection_skipped.inc_by(n);
            // Said at most once a second: detection that falls behind must be seen, not flood the log.
            let now = jiff::Timestamp::now().as_second();
            if self.warned.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
                tracing::warn!(
                    skipped_total = self.metrics.detection_skipped.get(),
                    "detection is behind: stored events were not run through the rules"
                );
            }
        }
    }
}

/// Whether KubeBid's admission (its webhooks or its ValidatingAdmissionPolicies) refused the request.
/// Only the start of the message is read: what follows can echo the request, which the requester wrote.
#[must_use]
pub fn denied_by_kubebid(e: &EventHead<'_>) -> bool {
    e.response_status.as_ref().is_some_and(|s| {
        let m = s.message.as_str();
        let webhook = m
            .strip_prefix("admission webhook \"")
            .and_then(|rest| rest.split_once('"'))
            .is_some_and(|(name, after)| {
                name.ends_with(".kubebid.io") && after.starts_with(" denied the request")
            });
        let policy = m
            .strip_prefix("ValidatingAdmissionPolicy 'kubebid-")
            .is_some_and(|rest| {
                rest.split_once('\'')
                    .is_some_and(|(name, _)| !name.contains(' '))
            });
        s.code >= 400 && (webhook || policy)
    })
}

/// KubeBid's fields of one event.
fn context<'a>(tenancy: &'a Tenancy, e: &EventHead<'_>) -> KubeBidContext<'a> {
    let tenant = e
        .namespace()
        .and_then(|ns| tenancy.tenant_of(ns))
        .map_or("", |t| t.name.as_str());
    let actor_tenant = tenancy
        .tenant_of_user(&e.user.username, &e.user.groups)
        .map_or("", |t| t.name.as_str());
    let actor_kind = match tenancy.actor(&e.user.username, &e.user.groups) {
        Actor::Exempt => ActorKind::Exempt,
        Actor::Platform => ActorKind::Platform,
        Actor::Tenant if !actor_tenant.is_empty() => ActorKind::Tenant,
        Actor::Tenant => ActorKind::Unknown,
    };
    KubeBidContext {
        tenant,
        actor_tenant,
        actor_kind,
        denied: denied_by_kubebid(e),
    }
}

/// Starts the detector thread; returns the queue to offer stored batches to.
pub fn start(
    engine: Engine<K8sAudit>,
    tenancy: Arc<ArcSwap<Tenancy>>,
    mut outputs: Vec<Box<dyn AlertOutput>>,
    hostname: String,
    metrics: AuditMetrics,
) -> std::io::Result<Detection> {
    let (tx, mut rx) = mpsc::channel::<Batch>(256);
    let m = metrics.clone();
    std::thread::Builder::new()
        .name("audit-detect".into())
        .spawn(move || {
            let mut scratch = Scratch::new();
            while let Some(batch) = rx.blocking_recv() {
                let tenancy = tenancy.load();
                for (trail, range) in &batch.events {
                    let Some(text) = batch
                        .body
                        .get(range.clone())
                        .and_then(|b| std::str::from_utf8(b).ok())
                    else {
                        continue;
                    };
                    let (Ok(h), Ok(json)) =
                        (head(text), serde_json::from_str::<serde_json::Value>(text))
                    else {
                        continue;
                    };
                    let event = AuditEvent {
                        json: &json,
                        context: context(&tenancy, &h),
                    };
                    for alert in engine.alerts(&event, &mut scratch) {
                        let tenant = match trail {
                            Trail::Tenant(t) => t.to_string(),
                            Trail::Platform => String::new(),
                        };
                        m.alert(&alert.rule, &tenant, alert.priority.as_str());
                        let json = alert.to_json(&hostname);
                        for o in &mut outputs {
                            o.alert(&json);
                        }
                    }
                }
            }
        })?;
    Ok(Detection {
        tx,
        metrics,
        warned: Arc::new(std::sync::atomic::AtomicI64::new(0)),
    })
}

/// Posts each alert, as Falco's JSON, to `url` (http or https), like Falco's `http_output`. Alerts wait
/// in a bounded queue; when the receiver is slow or down, the excess is dropped and counted.
pub fn spawn_webhook(url: hyper::Uri, failures: Counter) -> Result<Forward, String> {
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .build();
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{url}: the alert webhook must be an http or https URL"
        ));
    }
    let (tx, mut rx) = mpsc::channel::<serde_json::Value>(4096);
    tokio::spawn(async move {
        while let Some(alert) = rx.recv().await {
            let body = serde_json::to_vec(&alert).unwrap_or_default();
            let req = hyper::Request::post(url.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(bytes::Bytes::from(body)));
            let Ok(req) = req else { continue };
            let sent =
                tokio::time::timeout(std::time::Duration::from_secs(5), client.request(req)).await;
            let ok = matches!(&sent, Ok(Ok(r)) if r.status().is_success());
            if !ok {
                failures.inc();
                tracing::warn!(url = %url, "posting an alert to the webhook failed");
            }
        }
    });
    Ok(Forward(tx))
}
