//! Field paths in the one spelling every `KubeBid` component prints: `spec.initContainers[1].securityContext.privileged`.
//!
//! Findings, loader errors and the line index all use this format, so a path printed in a finding can be
//! looked up to a line of the source file.

use std::fmt::Write as _;

/// Appends a map key to `path`, as `.key`, or `["key"]` when the key is not a plain identifier
/// (annotation keys such as `container.seccomp.security.alpha.kubernetes.io/app`).
pub fn push_key(path: &mut String, key: &str) {
    if is_plain_key(key) {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
    } else {
        path.push_str("[\"");
        for c in key.chars() {
            match c {
                '"' => path.push_str("\\\""),
                '\\' => path.push_str("\\\\"),
                c => path.push(c),
            }
        }
        path.push_str("\"]");
    }
}

/// Appends a sequence index to `path`, as `[i]`.
pub fn push_index(path: &mut String, index: usize) {
    // Writing to a String cannot fail.
    let _ = write!(path, "[{index}]");
}

/// `base` followed by `key`.
#[must_use]
pub fn join(base: &str, key: &str) -> String {
    let mut p = String::with_capacity(base.len() + key.len() + 1);
    p.push_str(base);
    push_key(&mut p, key);
    p
}

/// `base` followed by `[index]`.
#[must_use]
pub fn index(base: &str, index: usize) -> String {
    let mut p = String::with_capacity(base.len() + 4);
    p.push_str(base);
    push_index(&mut p, index);
    p
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
}

/// The path one segment shorter: `a.b[2].c` → `a.b[2]` → `a.b` → `a` → the empty path → `None`.
#[must_use]
pub fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        // Find the matching '[' that is not inside a quoted key.
        let bytes = path.as_bytes();
        let mut i = path.len() - 1;
        let quoted = path.ends_with("\"]");
        while i > 0 {
            i -= 1;
            if bytes[i] == b'[' && (!quoted || bytes.get(i + 1) == Some(&b'"')) {
                // For quoted keys make sure the quote is not escaped content.
                if !quoted || (i == 0 || bytes[i - 1] != b'\\') {
                    return Some(&path[..i]);
                }
            }
        }
        return Some("");
    }
    match path.rfind(['.', ']']) {
        Some(i) if path.as_bytes()[i] == b']' => Some(&path[..=i]),
        Some(i) => Some(&path[..i]),
        None => Some(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_indexes_are_spelled_like_kubectl_explain() {
        let mut p = String::new();
        push_key(&mut p, "spec");
        push_key(&mut p, "initContainers");
        push_index(&mut p, 1);
        push_key(&mut p, "securityContext");
        assert_eq!(p, "spec.initContainers[1].securityContext");
        let a = join(
            "metadata.annotations",
            "container.seccomp.security.alpha.kubernetes.io/app",
        );
        assert_eq!(
            a,
            "metadata.annotations[\"container.seccomp.security.alpha.kubernetes.io/app\"]"
        );
    }

    #[test]
    fn parent_walks_back_one_segment() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a.b"), Some("a"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
        assert_eq!(parent("m.annotations[\"x.y/z\"]"), Some("m.annotations"));
        assert_eq!(
            parent("m.annotations[\"x.y/z\"].q"),
            Some("m.annotations[\"x.y/z\"]")
        );
    }
}
