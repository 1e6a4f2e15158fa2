//! The API server's audit events (`audit.k8s.io/v1`), read at the boundary.
//!
//! The webhook backend posts an `EventList`. The sink keeps each event's JSON exactly as it arrived (the
//! bytes are what the log hashes) and reads only what attribution and queries need, borrowed.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("expected an audit.k8s.io/v1 EventList, got apiVersion {api_version:?} kind {kind:?}")]
    Type { api_version: String, kind: String },
    #[error("items[{index}]: {what}")]
    Event { index: usize, what: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct List<'a> {
    #[serde(default, borrow)]
    api_version: Option<&'a str>,
    #[serde(default, borrow)]
    kind: Option<&'a str>,
    #[serde(default, borrow)]
    items: Vec<&'a RawValue>,
}

/// The parts of an event the sink reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHead<'a> {
    #[serde(default, borrow, rename = "auditID")]
    pub audit_id: Cow<'a, str>,
    #[serde(default, borrow)]
    pub stage: Cow<'a, str>,
    #[serde(default, borrow)]
    pub verb: Cow<'a, str>,
    #[serde(default, borrow, rename = "requestURI")]
    pub request_uri: Cow<'a, str>,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub impersonated_user: Option<User>,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default, borrow)]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub stage_timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `user` and `impersonatedUser`.
#[derive(Debug, Default, Deserialize)]
pub struct User {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// `objectRef`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub subresource: String,
}

/// `responseStatus`.
#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: i64,
    #[serde(default)]
    pub message: String,
}

impl EventHead<'_> {
    /// The namespace the request is about: the object's, or a Namespace's own name.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        let o = self.object_ref.as_ref()?;
        if !o.namespace.is_empty() {
            Some(&o.namespace)
        } else if o.resource == "namespaces" && o.api_group.is_empty() && !o.name.is_empty() {
            Some(&o.name)
        } else {
            None
        }
    }

    /// The time the request arrived, else when this stage was reached.
    #[must_use]
    pub fn time(&self) -> Option<jiff::Timestamp> {
        self.request_received_timestamp
            .as_deref()
            .or(self.stage_timestamp.as_deref())
            .and_then(|t| t.parse().ok())
    }
}

/// Reads one event's head from its JSON.
pub fn head(json: &str) -> Result<EventHead<'_>, serde_json::Error> {
    serde_json::from_str(json)
}

/// A batch read from a request body: each event's byte range in the body and its head.
pub struct ParsedBatch<'a> {
    pub events: Vec<(Range<usize>, EventHead<'a>)>,
}

/// Reads and checks a webhook backend batch. Every event must be a JSON object with `auditID`, `stage`
/// and `verb`, which the API server always sets; if one is not, the whole batch is refused and nothing of
/// it stored. `user` may be empty: a request that failed authentication has no user, and its event is
/// kept (in the platform's trail unless its namespace says otherwise).
pub fn parse_batch(body: &str) -> Result<ParsedBatch<'_>, BatchError> {
    let list: List<'_> = serde_json::from_str(body).map_err(|e| BatchError::Json(e.to_string()))?;
    let (api_version, kind) = (list.api_version.unwrap_or(""), list.kind.unwrap_or(""));
    if api_version != "audit.k8s.io/v1" || kind != "EventList" {
        return Err(BatchError::Type {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        });
    }
    let base = body.as_ptr() as usize;
    let mut events = Vec::with_capacity(list.items.len());
    for (index, raw) in list.items.into_iter().enumerate() {
        let text = raw.get();
        let bad = |what: String| BatchError::Event { index, what };
        if !text.starts_with('{') {
            return Err(bad("an event must be a JSON object".into()));
        }
        let h = head(text).map_err(|e| bad(e.to_string()))?;
        for (field, value) in [
            ("auditID", &*h.audit_id),
            ("stage", &*h.stage),
            ("verb", &*h.verb),
        ] {
            if value.is_empty() {
                return Err(bad(format!("{field} is missing or empty")));
            }
        }
        // `RawValue` borrows from the body, so its address gives its range.
        let start = (text.as_ptr() as usize).saturating_sub(base);
        let range = start..start + text.len();
        if body.get(range.clone()) != Some(text) {
            return Err(bad("could not locate the event in the body".into()));
        }
        events.push((range, h));
    }
    Ok(ParsedBatch { events })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/acme-prod/secrets/db","verb":"get","user":{"username":"alice","groups":["acme-admins","system:authenticated"]},"objectRef":{"resource":"secrets","namespace":"acme-prod","name":"db","apiVersion":"v1"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-11-29T10:00:00.000000Z","stageTimestamp":"2026-11-29T10:00:00.002000Z"}"#;

    #[test]
    fn a_batch_keeps_each_event_byte_for_byte() {
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{EVENT}, {EVENT}]}}"#
        );
        let b = parse_batch(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.events.len(), 2);
        for (range, h) in &b.events {
            assert_eq!(&body[range.clone()], EVENT);
            assert_eq!(h.namespace(), Some("acme-prod"));
            assert_eq!(h.user.groups[0], "acme-admins");
            assert!(h.time().is_some());
        }
    }

    #[test]
    fn a_bad_batch_names_what_is_wrong() {
        assert!(matches!(parse_batch("{"), Err(BatchError::Json(_))));
        assert!(matches!(
            parse_batch(r#"{"kind":"PodList","apiVersion":"v1","items":[]}"#),
            Err(BatchError::Type { .. })
        ));
        let missing = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"x","stage":"ResponseComplete","user":{}}]}"#;
        assert_eq!(
            parse_batch(missing).err().map(|e| e.to_string()),
            Some("items[0]: verb is missing or empty".into())
        );
        // A request that failed authentication has no user, and an audit ID the client chose may need
        // escapes: both are events to keep.
        let anonymous = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"auditID":"a\"b","stage":"ResponseComplete","verb":"get","user":{},"responseStatus":{"code":401}}]}"#;
        let b = parse_batch(anonymous).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.events[0].1.audit_id, "a\"b");
        let not_object = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[[1]]}"#;
        assert!(matches!(
            parse_batch(not_object),
            Err(BatchError::Event { index: 0, .. })
        ));
    }

    #[test]
    fn a_namespace_request_is_about_that_namespace() {
        let e = r#"{"auditID":"x","stage":"ResponseComplete","verb":"update","user":{"username":"u"},"objectRef":{"resource":"namespaces","name":"acme-prod"}}"#;
        assert_eq!(
            head(e).ok().and_then(|h| h.namespace().map(str::to_owned)),
            Some("acme-prod".into())
        );
    }
}
