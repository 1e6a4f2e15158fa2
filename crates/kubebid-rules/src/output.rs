//! Output templates (`%field`, `%(field)`, `%field[arg]`) and alerts in Falco's JSON format.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::condition::{FieldRef, split_field};
use crate::priority::Priority;

/// One piece of an output template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Part<F> {
    Text(String),
    /// A field: its display name (`name[arg]`) and its resolved form.
    Field(String, F),
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// Splits an output template into text and field references, as written.
pub(crate) fn parse_template(t: &str) -> Vec<Part<FieldRef>> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut rest = t;
    while let Some(i) = rest.find('%') {
        text.push_str(rest.get(..i).unwrap_or_default());
        let after = rest.get(i + 1..).unwrap_or_default();
        let field = if let Some(inner) = after.strip_prefix('(') {
            inner
                .find(')')
                .map(|j| (inner.get(..j).unwrap_or_default().trim().to_owned(), j + 2))
        } else {
            let mut end = after
                .find(|c: char| !is_name_char(c))
                .unwrap_or(after.len());
            if after.get(end..).is_some_and(|s| s.starts_with('['))
                && let Some(close) = after.get(end..).and_then(|s| s.find(']'))
            {
                end += close + 1;
            }
            // A trailing dot ends a sentence, not a field name.
            let mut name = after.get(..end).unwrap_or_default();
            while name.ends_with('.') {
                name = name.get(..name.len() - 1).unwrap_or_default();
                end -= 1;
            }
            (!name.is_empty()).then(|| (name.to_owned(), end))
        };
        match field {
            Some((name, consumed)) if !name.is_empty() => {
                if !text.is_empty() {
                    out.push(Part::Text(std::mem::take(&mut text)));
                }
                let fr = split_field(&name);
                out.push(Part::Field(fr.to_string(), fr));
                rest = after.get(consumed..).unwrap_or_default();
            }
            _ => {
                text.push('%');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        out.push(Part::Text(text));
    }
    out
}

/// A rule that matched an event, ready to print or send.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// The rule's priority.
    pub priority: Priority,
    /// The event source (`k8s_audit`).
    pub source: String,
    /// The rule's tags.
    pub tags: Vec<String>,
    /// When the event happened (the audit event's `stageTimestamp`), or the Unix epoch if unknown.
    pub time: Timestamp,
    /// The rule's output with fields substituted (`<NA>` for fields the event does not have).
    pub message: String,
    /// Each field the output names, with its value (`None` when not available), in template order.
    pub output_fields: Vec<(String, Option<String>)>,
}

/// `HH:MM:SS.nnnnnnnnn` of `t` in UTC.
pub(crate) fn clock(t: Timestamp) -> String {
    let d = utc_parts(t);
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        d.hour(),
        d.minute(),
        d.second(),
        d.subsec_nanosecond()
    )
}

fn utc_parts(t: Timestamp) -> jiff::civil::DateTime {
    t.to_zoned(TimeZone::UTC).datetime()
}

impl Alert {
    /// `HH:MM:SS.nnnnnnnnn` in UTC, the prefix Falco puts before its output lines.
    #[must_use]
    pub fn clock_time(&self) -> String {
        clock(self.time)
    }

    /// ISO 8601 in UTC with nanoseconds, as in Falco's JSON `time` (`2024-05-01T12:00:00.123456789Z`).
    #[must_use]
    pub fn iso_time(&self) -> String {
        let d = utc_parts(self.time);
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.subsec_nanosecond()
        )
    }

    /// The output line as Falco prints it: `HH:MM:SS.nnnnnnnnn: Priority message`.
    #[must_use]
    pub fn output(&self) -> String {
        format!("{}: {} {}", self.clock_time(), self.priority, self.message)
    }

    /// Falco's JSON alert: `hostname`, `output`, `priority`, `rule`, `source`, `tags`, `time` and
    /// `output_fields` (fields that are not available are `null`).
    #[must_use]
    pub fn to_json(&self, hostname: &str) -> Value {
        let mut fields = Map::new();
        for (k, v) in &self.output_fields {
            fields.insert(k.clone(), v.clone().map_or(Value::Null, Value::String));
        }
        let mut m = Map::new();
        m.insert("hostname".into(), Value::String(hostname.to_owned()));
        m.insert("output".into(), Value::String(self.output()));
        m.insert(
            "priority".into(),
            Value::String(self.priority.as_str().to_owned()),
        );
        m.insert("rule".into(), Value::String(self.rule.clone()));
        m.insert("source".into(), Value::String(self.source.clone()));
        m.insert(
            "tags".into(),
            Value::Array(self.tags.iter().cloned().map(Value::String).collect()),
        );
        m.insert("time".into(), Value::String(self.iso_time()));
        m.insert("output_fields".into(), Value::Object(fields));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(t: &str) -> Vec<String> {
        parse_template(t)
            .into_iter()
            .map(|p| match p {
                Part::Text(s) => format!("T:{s}"),
                Part::Field(n, _) => format!("F:{n}"),
            })
            .collect()
    }

    #[test]
    fn template_forms() {
        assert_eq!(
            names("a=%ka.user.name b=%(ka.verb)c %jevt.value[/x/y]. 100%"),
            vec![
                "T:a=",
                "F:ka.user.name",
                "T: b=",
                "F:ka.verb",
                "T:c ",
                "F:jevt.value[/x/y]",
                "T:. 100%"
            ]
        );
    }
}
