//! The audit probe: the requests the admission probes made as A reach KubeBid's audit sink, and are filed
//! in A's trail.
//!
//! After the admission probes, A's trail is read back through the sink's query API
//! (`GET /trails/<A>/events`, a bearer token the sink checks with the API server) for events since the
//! run began in the namespace the probes used. The probe passes when an event there was made as the
//! identity the probes impersonated (`impersonatedUser`) on one of the probe objects (`kubebid-verify-*`).
//! The API server sends audit events in batches, so the trail is read again until `wait` has passed. The
//! sink's `x-kubebid-verified` header (the trail's hash chain checked) is part of the evidence.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::Finding;

/// Where the sink answers queries, and how to be let in.
pub struct AuditSink {
    /// The sink's base URL (`https://kubebid-audit.kubebid-system:8443`).
    pub url: String,
    /// A bearer token allowed to read the tenants' trails.
    pub token: Zeroizing<String>,
    /// The sink's CA (and a client certificate, if it asks); `None` for the system's roots.
    pub tls: Option<rustls::ClientConfig>,
    /// How long to keep reading for events not arrived yet.
    pub wait: Duration,
}

/// What one admission probe request was made as: tenant, identity and namespace.
pub type Made = (String, String, String);

fn finding(
    tenant: &str,
    identity: &str,
    ns: &str,
    passed: bool,
    skipped: bool,
    evidence: Vec<String>,
) -> Finding {
    Finding {
        probe: "audit/trail",
        tenant: tenant.to_owned(),
        other: None,
        identity: identity.to_owned(),
        namespace: Some(ns.to_owned()),
        passed,
        skipped,
        evidence,
    }
}

/// Every probe's findings skipped: no sink was given.
#[must_use]
pub fn not_checked(made: &[Made]) -> Vec<Finding> {
    made.iter()
        .map(|(t, id, ns)| {
            finding(t, id, ns, true, true, vec![
                "not checked: no --audit-sink given, so the arrival of the probes' requests in the tenant's trail was not read".into(),
            ])
        })
        .collect()
}

/// The audit probe for each request `made`, reading events since `since`.
pub async fn probe(sink: &AuditSink, made: &[Made], since: jiff::Timestamp) -> Vec<Finding> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match &sink.tls {
        Some(c) => {
            let mut c = c.clone();
            c.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.with_tls_config(c)
        }
        None => builder.with_webpki_roots(),
    }
    .https_or_http()
    .enable_http1()
    .build();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let deadline = tokio::time::Instant::now() + sink.wait;
    let base = sink.url.trim_end_matches('/');
    let mut out = Vec::new();
    for (tenant, identity, ns) in made {
        let url = format!(
            "{base}/trails/{}/events?since={}&namespace={}",
            crate::query_value(tenant),
            crate::query_value(&since.to_string()),
            crate::query_value(ns)
        );
        let mut last = String::new();
        let found = loop {
            match read(&client, &url, &sink.token).await {
                Ok((verified, events)) => {
                    let hit = events.iter().find(|e| {
                        e["impersonatedUser"]["username"] == identity.as_str()
                            && e["objectRef"]["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("kubebid-verify-"))
                    });
                    if let Some(e) = hit {
                        break Some(format!(
                            "{} {}/{} as {identity} at {} is in {tenant}'s trail (auditID {}); the trail's chain {}",
                            e["verb"].as_str().unwrap_or("?"),
                            e["objectRef"]["resource"].as_str().unwrap_or("?"),
                            e["objectRef"]["name"].as_str().unwrap_or("?"),
                            e["requestReceivedTimestamp"].as_str().unwrap_or("?"),
                            e["auditID"].as_str().unwrap_or("?"),
                            if verified {
                                "verifies"
                            } else {
                                "does NOT verify"
                            }
                        ));
                    }
                    last = format!(
                        "{} events in {tenant}'s trail for {ns} since {since}, none made as {identity} on a probe object",
                        events.len()
                    );
                }
                Err(e) => last = e,
            }
            if tokio::time::Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        out.push(match found {
            Some(line) => finding(
                tenant,
                identity,
                ns,
                !line.ends_with("does NOT verify"),
                false,
                vec![line],
            ),
            None => finding(
                tenant,
                identity,
                ns,
                false,
                false,
                vec![format!(
                    "the probes' requests did not arrive in {tenant}'s trail within {:?}: {last}",
                    sink.wait
                )],
            ),
        });
    }
    out
}

/// One read of a trail: whether the sink verified it, and its events.
async fn read<C>(
    client: &Client<C, Empty<Bytes>>,
    url: &str,
    token: &str,
) -> Result<(bool, Vec<Value>), String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let req = hyper::Request::get(url)
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let res = client
        .request(req)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = res.status();
    let verified = res
        .headers()
        .get("x-kubebid-verified")
        .is_some_and(|v| v == "true");
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {}", text.trim()));
    }
    let events = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).map_err(|e| format!("GET {url}: an event is not JSON: {e}"))
        })
        .collect::<Result<Vec<Value>, String>>()?;
    Ok((verified, events))
}
