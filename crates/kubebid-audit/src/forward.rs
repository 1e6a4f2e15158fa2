//! Runtime alerts into the tenants' trails. The node sensor posts its alerts to the sink's `POST /events`,
//! through the same door, format and client authentication as the API server: each alert becomes one
//! `audit.k8s.io/v1` event whose `objectRef` is the pod it happened in, so the sink files it in the trail
//! of the tenant owning that namespace (an alert outside any pod goes to the platform's trail), signs it
//! and keeps it with the tenant's API events, where `kubebid audit query` and the tenant's own trail
//! endpoint find it.
//!
//! The event's user is `system:kubebid:sensor:<node>` (group `system:kubebid:sensors`), its verb
//! `runtime-alert`, and the alert itself is in its annotations: `kubebid.io/rule`, `kubebid.io/priority`,
//! `kubebid.io/output`, `kubebid.io/output-fields` (the fields as JSON) and `kubebid.io/node`.
//!
//! Delivery is at least once while the sensor runs: a batch the sink did not acknowledge is posted again,
//! with backoff, and newer alerts wait in a bounded queue; past it they are dropped and counted.

use std::time::Duration;

use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Alerts waiting for the sink, at most.
pub const QUEUE: usize = 4096;
/// Alerts per posted batch, at most.
pub const BATCH: usize = 100;

/// The pod an alert happened in: its namespace and name.
pub type PodRef = Option<(String, String)>;

/// One alert (Falco's JSON, as [`kubebid_rules::Alert::to_json`] writes it) as an audit event about
/// `pod`, the pod the sensor attributed the event to (whatever the rule's output shows).
#[must_use]
pub fn alert_event(alert: &Value, pod: &PodRef, node: &str, id: &str) -> Value {
    let fields = alert.get("output_fields").cloned().unwrap_or(Value::Null);
    let text = |k: &str| alert.get(k).and_then(Value::as_str).unwrap_or_default();
    let time = text("time");
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": format!("/kubebid/runtime/{node}"),
        "verb": "runtime-alert",
        "user": {"username": format!("system:kubebid:sensor:{node}"), "groups": ["system:kubebid:sensors"]},
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": {
            "kubebid.io/rule": text("rule"),
            "kubebid.io/priority": text("priority"),
            "kubebid.io/output": text("output"),
            "kubebid.io/output-fields": fields.to_string(),
            "kubebid.io/node": node,
        },
    });
    if let Some((ns, name)) = pod {
        event["objectRef"] =
            json!({"resource": "pods", "namespace": ns, "name": name, "apiVersion": "v1"});
    }
    event
}

/// Alerts handed to the task that posts them to the sink.
pub struct TrailForward {
    tx: mpsc::Sender<(Value, PodRef)>,
    dropped: Counter,
}

impl TrailForward {
    /// Queues one alert about `pod`; counted as dropped when the queue is full.
    pub fn send(&self, alert: &Value, pod: PodRef) {
        if self.tx.try_send((alert.clone(), pod)).is_err() {
            self.dropped.inc();
        }
    }
}

/// What the posting task counts.
#[derive(Clone, Debug, Default)]
pub struct ForwardCounters {
    /// Alerts dropped because the queue was full.
    pub dropped: Counter,
    /// Posts the sink did not acknowledge (each is tried again).
    pub failures: Counter,
    /// Alerts the sink acknowledged.
    pub delivered: Counter,
}

/// Starts posting alerts to the sink's `url` (`https://…/events`; `http` only for tests and loopback)
/// with `tls` (the sink's CA and this sensor's client certificate). Returns the output to hand alerts to
/// and the task, which ends once the output is dropped and its queue is delivered.
///
/// # Errors
/// A URL that is not http or https.
pub fn spawn_trail_forward(
    url: hyper::Uri,
    tls: Option<rustls::ClientConfig>,
    node: String,
    counters: ForwardCounters,
) -> Result<(TrailForward, tokio::task::JoinHandle<()>), String> {
    if !matches!(url.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{url}: the audit sink must be an http or https URL"
        ));
    }
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match tls {
        Some(mut c) => {
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.with_tls_config(c)
        }
        None => builder.with_webpki_roots(),
    }
    .https_or_http()
    .enable_http1()
    .build();
    let client: Client<_, Full<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector);
    let (tx, mut rx) = mpsc::channel::<(Value, PodRef)>(QUEUE);
    let out = TrailForward {
        tx,
        dropped: counters.dropped.clone(),
    };
    let started = jiff::Timestamp::now().as_nanosecond();
    let task = tokio::spawn(async move {
        let mut seq = 0u64;
        while let Some(first) = rx.recv().await {
            let mut alerts = vec![first];
            while alerts.len() < BATCH {
                match rx.try_recv() {
                    Ok(a) => alerts.push(a),
                    Err(_) => break,
                }
            }
            let items: Vec<Value> = alerts
                .iter()
                .map(|(a, pod)| {
                    seq += 1;
                    alert_event(a, pod, &node, &format!("sensor-{node}-{started}-{seq}"))
                })
                .collect();
            let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
                .to_string();
            let mut wait = Duration::from_millis(250);
            loop {
                let req = hyper::Request::post(url.clone())
                    .header(hyper::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(bytes::Bytes::from(body.clone())));
                let Ok(req) = req else { break };
                let sent = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await;
                if matches!(&sent, Ok(Ok(r)) if r.status().is_success()) {
                    counters.delivered.inc_by(items.len() as u64);
                    break;
                }
                counters.failures.inc();
                let why = match sent {
                    Ok(Ok(r)) => format!("answered {}", r.status()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no answer in 10 s".to_owned(),
                };
                tracing::warn!(url = %url, error = %why, alerts = items.len(), "the audit sink did not take alerts; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    });
    Ok((out, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_in_a_pod_is_an_event_about_that_pod() {
        let alert = json!({
            "rule": "KubeBid Privilege Escalation Tool", "priority": "Critical", "output": "x",
            "time": "2026-11-29T10:00:00.000000001Z",
            "output_fields": {"k8s.ns.name": "acme-prod", "k8s.pod.name": "web-0", "kubebid.tenant": "acme"}
        });
        let pod = Some(("acme-prod".to_owned(), "web-0".to_owned()));
        let e = alert_event(&alert, &pod, "node-1", "id-1");
        let text = e.to_string();
        let batch =
            format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{text}]}}"#);
        let parsed = crate::event::parse_batch(&batch).unwrap_or_else(|e| panic!("{e}"));
        let head = &parsed.events[0].1;
        assert_eq!(head.namespace(), Some("acme-prod"));
        assert_eq!(head.verb, "runtime-alert");
        assert_eq!(head.user.username, "system:kubebid:sensor:node-1");
        assert_eq!(
            head.annotations.get("kubebid.io/rule").map(String::as_str),
            Some("KubeBid Privilege Escalation Tool")
        );
        assert!(head.time().is_some());
        // On the node, outside any pod: no object, so the platform's trail.
        let host = alert_event(
            &json!({"rule": "r", "output_fields": {}}),
            &None,
            "node-1",
            "id-2",
        );
        assert!(host.get("objectRef").is_none());
    }
}
