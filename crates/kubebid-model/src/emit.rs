//! Writes objects as YAML that Kubernetes tooling reads back unchanged (a test checks the round trip through
//! KubeBid's own YAML 1.1 loader, so strings such as `on` or `yes` stay strings).

use serde::Serialize;

/// A value YAML cannot represent.
#[derive(Debug, thiserror::Error)]
#[error("cannot write YAML: {0}")]
pub struct EmitError(String);

impl From<EmitError> for String {
    fn from(e: EmitError) -> Self {
        e.to_string()
    }
}

/// Serialises `value` as one YAML document.
///
/// # Errors
/// When the value cannot be represented (a map with non-string keys, for example).
pub fn to_yaml<T: Serialize>(value: &T) -> Result<String, EmitError> {
    serde_saphyr::to_string(value).map_err(|e| EmitError(e.to_string()))
}

/// Serialises several objects as a multi-document YAML stream.
///
/// # Errors
/// As [`to_yaml`].
pub fn to_yaml_stream<T: Serialize>(values: &[T]) -> Result<String, EmitError> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&to_yaml(v)?);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::yaml::parse_documents;

    #[test]
    fn yaml_1_1_lookalikes_stay_strings() {
        let v = json!({"a": "on", "b": "yes", "c": "true", "d": "1", "e": "0x1F", "f": "~", "g": "", "h": "010", "i": "1.5", "j": "a: b", "k": "- x", "l": "#c", "m": "multi\nline", "n": 7, "o": true, "p": null, "q": "No"});
        let text = to_yaml(&v).expect("emits");
        let back = parse_documents(&text);
        assert_eq!(back[0].as_ref().expect("parses").value, v, "{text}");
    }
}
