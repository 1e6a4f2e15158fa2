//! Reads YAML and JSON manifests the way `kubectl` does, and remembers on which line every field stands.
//!
//! Kubernetes tooling reads YAML through a YAML 1.1 resolver (`yes`, `on` and `off` are booleans), so this
//! loader resolves plain scalars the same way: a tool that read `privileged: yes` as a string would
//! disagree with the API server about what the object asks for. JSON is read by the same parser (JSON is
//! YAML), so both give line numbers.
//!
//! Every document is parsed on its own: a syntax error ends that document only, and parsing resumes at the
//! next `---` line. Duplicate keys are an error, never "last one wins" (two parsers disagreeing on a
//! duplicate key is a classic way to smuggle a field past a policy). Aliases are expanded under a node
//! budget so that a "billion laughs" document is an error, not an out-of-memory.

use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, Tag};
use serde_json::{Map, Number, Value};

use crate::path;

/// Bounds on what one document may expand to.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Nodes in one document after alias expansion.
    pub max_nodes: usize,
    /// Nesting depth of collections.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 1_000_000,
            max_depth: 128,
        }
    }
}

/// One parsed document.
#[derive(Clone, Debug)]
pub struct Document {
    /// Position of the document in its file, from 0.
    pub index: usize,
    /// Line (from 1) on which the document's content starts.
    pub line: usize,
    /// The document as JSON.
    pub value: Value,
    /// Where each field stands in the source.
    pub lines: LineIndex,
}

/// A document that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentError {
    /// Position of the document in its file, from 0.
    pub index: usize,
    /// Line (from 1) of the error.
    pub line: usize,
    /// Column (from 1) of the error.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Field path → line, for one document.
#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, u32>,
}

impl LineIndex {
    /// The line of `field`, or of its closest ancestor that is present in the source.
    #[must_use]
    pub fn line_of(&self, field: &str) -> Option<u32> {
        let mut p = field;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            p = path::parent(p)?;
        }
    }
}

/// Parses every document of `text`. Empty documents (only comments, or `null`) are skipped but counted.
#[must_use]
pub fn parse_documents(text: &str) -> Vec<Result<Document, DocumentError>> {
    parse_documents_with(text, Limits::default())
}

/// [`parse_documents`] with explicit limits.
#[must_use]
pub fn parse_documents_with(text: &str, limits: Limits) -> Vec<Result<Document, DocumentError>> {
    let mut out = Vec::new();
    let mut offset = 0usize; // byte offset where the current parse starts
    let mut line_offset = 0usize; // lines before `offset`
    let mut index = 0usize;
    loop {
        let rest = &text[offset..];
        match parse_from(rest, line_offset, &mut index, limits, &mut out) {
            None => break,
            Some(error_line) => {
                // Resume at the first `---` line after the error.
                match next_document_marker(text, error_line) {
                    Some((byte, line)) => {
                        offset = byte;
                        line_offset = line - 1;
                    }
                    None => break,
                }
            }
        }
    }
    out
}

/// Finds the first line after `after_line` (1-based) that starts a document, returning its byte offset and
/// 1-based line number.
fn next_document_marker(text: &str, after_line: usize) -> Option<(usize, usize)> {
    let mut byte = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        if number > after_line {
            let body = line.trim_end_matches(['\n', '\r']);
            if body == "---" || body.starts_with("--- ") || body.starts_with("---\t") {
                return Some((byte, number));
            }
        }
        byte += line.len();
    }
    None
}

/// Parses documents from `text` until the end (returns `None`) or an error (records it and returns the
/// absolute line where the broken document starts, so that parsing resumes at the next `---` after it even
/// when the error surfaced past that marker, as with an unclosed `[`).
fn parse_from(
    text: &str,
    line_offset: usize,
    index: &mut usize,
    limits: Limits,
    out: &mut Vec<Result<Document, DocumentError>>,
) -> Option<usize> {
    let mut parser = Parser::new_from_str(text);
    let mut builder: Option<Builder> = None;
    let mut doc_line = line_offset + 1;
    loop {
        let next = parser.next_event()?;
        let (event, span) = match next {
            Ok(pair) => pair,
            Err(e) => {
                let mut err = scan_error(&e, *index, line_offset);
                let starts = builder
                    .as_ref()
                    .and_then(|b| b.first_line)
                    .unwrap_or(doc_line);
                if err.line != starts {
                    err.message = format!(
                        "{} (in the document that starts at line {starts})",
                        err.message
                    );
                }
                out.push(Err(err));
                *index += 1;
                return Some(doc_line);
            }
        };
        match event {
            Event::StreamEnd => return None,
            Event::StreamStart | Event::Nothing => {}
            Event::DocumentStart(_) => {
                doc_line = span.start.line() + line_offset;
                builder = Some(Builder::new(line_offset, limits));
            }
            Event::DocumentEnd => {
                if let Some((value, lines, first_line)) = builder.take().and_then(Builder::finish) {
                    out.push(Ok(Document {
                        index: *index,
                        line: first_line.unwrap_or(doc_line),
                        value,
                        lines,
                    }));
                }
                *index += 1;
            }
            other => {
                let Some(b) = builder.as_mut() else { continue };
                if let Err(e) = b.event(other, span) {
                    out.push(Err(DocumentError { index: *index, ..e }));
                    *index += 1;
                    return Some(doc_line);
                }
            }
        }
    }
}

fn scan_error(e: &ScanError, index: usize, line_offset: usize) -> DocumentError {
    DocumentError {
        index,
        line: e.marker().line() + line_offset,
        column: e.marker().col() + 1,
        message: format!("invalid YAML: {}", e.info()),
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
        path_len: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<String>,
        merged: HashSet<String>,
        anchor: usize,
        path_len: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    path: String,
    lines: LineIndex,
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    root: Option<Value>,
    first_line: Option<usize>,
    line_offset: usize,
    limits: Limits,
}

impl Builder {
    fn new(line_offset: usize, limits: Limits) -> Self {
        Self {
            stack: Vec::new(),
            path: String::new(),
            lines: LineIndex::default(),
            anchors: HashMap::new(),
            nodes: 0,
            root: None,
            first_line: None,
            line_offset,
            limits,
        }
    }

    fn error(&self, span: Span, message: impl Into<String>) -> DocumentError {
        DocumentError {
            index: 0,
            line: span.start.line() + self.line_offset,
            column: span.start.col() + 1,
            message: message.into(),
        }
    }

    fn finish(self) -> Option<(Value, LineIndex, Option<usize>)> {
        match self.root {
            None | Some(Value::Null) => None,
            Some(v) => Some((v, self.lines, self.first_line)),
        }
    }

    /// Records where the node about to be added starts, and extends the path to it.
    fn enter(&mut self, span: Span) -> usize {
        let line = span.start.line() + self.line_offset;
        if self.first_line.is_none() {
            self.first_line = Some(line);
        }
        let path_len = self.path.len();
        match self.stack.last() {
            Some(Frame::Seq { items, .. }) => path::push_index(&mut self.path, items.len()),
            Some(Frame::Map { key: Some(k), .. }) => path::push_key(&mut self.path, k),
            _ => {}
        }
        self.lines
            .lines
            .entry(self.path.clone())
            .or_insert(u32::try_from(line).unwrap_or(u32::MAX));
        path_len
    }

    fn count(&mut self, n: usize, span: Span) -> Result<(), DocumentError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(self.error(
                span,
                format!(
                    "document expands to more than {} nodes (alias bomb?)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), DocumentError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    // Keys are strings in Kubernetes objects, whatever their tag says.
                    return self.set_key(text.into_owned(), style, span);
                }
                let path_len = self.enter(span);
                self.count(1, span)?;
                let value = resolve_scalar(&text, style, tag.as_deref())
                    .map_err(|m| self.error(span, m))?;
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), 1));
                }
                self.path.truncate(path_len);
                self.add(value, 1, span)
            }
            Event::Alias(id) => {
                if self.expecting_key() {
                    return Err(self.error(span, "an alias cannot be a mapping key"));
                }
                let Some((value, size)) = self.anchors.get(&id).cloned() else {
                    return Err(self.error(span, "alias to an unknown anchor"));
                };
                let path_len = self.enter(span);
                self.count(size, span)?;
                self.path.truncate(path_len);
                self.add(value, size, span)
            }
            Event::SequenceStart(anchor, _) => {
                if self.expecting_key() {
                    return Err(self.error(span, "mapping keys must be scalars"));
                }
                let path_len = self.enter(span);
                self.count(1, span)?;
                self.push(
                    Frame::Seq {
                        items: Vec::new(),
                        anchor,
                        path_len,
                    },
                    span,
                )
            }
            Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    return Err(self.error(span, "mapping keys must be scalars"));
                }
                let path_len = self.enter(span);
                self.count(1, span)?;
                self.push(
                    Frame::Map {
                        map: Map::new(),
                        key: None,
                        merged: HashSet::new(),
                        anchor,
                        path_len,
                    },
                    span,
                )
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Err(self.error(span, "unbalanced collection end"));
                };
                let (value, anchor, path_len) = match frame {
                    Frame::Seq {
                        items,
                        anchor,
                        path_len,
                    } => (Value::Array(items), anchor, path_len),
                    Frame::Map {
                        map,
                        key,
                        anchor,
                        path_len,
                        ..
                    } => {
                        if key.is_some() {
                            return Err(self.error(span, "mapping key without a value"));
                        }
                        (Value::Object(map), anchor, path_len)
                    }
                };
                self.path.truncate(path_len);
                let size = if anchor == 0 { 1 } else { count_nodes(&value) };
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), size));
                }
                self.add(value, 0, span)
            }
            _ => Ok(()),
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn push(&mut self, frame: Frame, span: Span) -> Result<(), DocumentError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.error(
                span,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            ));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn set_key(
        &mut self,
        key: String,
        style: ScalarStyle,
        span: Span,
    ) -> Result<(), DocumentError> {
        let duplicate = match self.stack.last() {
            Some(Frame::Map { map, merged, .. }) => {
                !(key == "<<" && style == ScalarStyle::Plain)
                    && map.contains_key(&key)
                    && !merged.contains(&key)
            }
            _ => false,
        };
        if duplicate {
            return Err(self.error(span, format!("duplicate key {key:?}")));
        }
        if let Some(Frame::Map { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some(if key == "<<" && style == ScalarStyle::Plain {
                MERGE_KEY.to_owned()
            } else {
                key
            });
        }
        Ok(())
    }

    /// Adds a finished value to the enclosing collection, or makes it the root.
    fn add(&mut self, value: Value, _size: usize, span: Span) -> Result<(), DocumentError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(value);
                Ok(())
            }
            Some(Frame::Map {
                map, key, merged, ..
            }) => {
                let Some(k) = key.take() else {
                    return Err(DocumentError {
                        index: 0,
                        line: span.start.line() + self.line_offset,
                        column: span.start.col() + 1,
                        message: "mapping value without a key".into(),
                    });
                };
                if k == MERGE_KEY {
                    let sources = match value {
                        Value::Object(m) => vec![m],
                        Value::Array(items) => {
                            let mut maps = Vec::with_capacity(items.len());
                            for item in items {
                                match item {
                                    Value::Object(m) => maps.push(m),
                                    _ => {
                                        return Err(DocumentError {
                                            index: 0,
                                            line: span.start.line() + self.line_offset,
                                            column: span.start.col() + 1,
                                            message: "a merge key (<<) takes a mapping or a list of mappings".into(),
                                        });
                                    }
                                }
                            }
                            maps
                        }
                        _ => {
                            return Err(DocumentError {
                                index: 0,
                                line: span.start.line() + self.line_offset,
                                column: span.start.col() + 1,
                                message: "a merge key (<<) takes a mapping or a list of mappings"
                                    .into(),
                            });
                        }
                    };
                    for source in sources {
                        for (k, v) in source {
                            if !map.contains_key(&k) {
                                merged.insert(k.clone());
                                map.insert(k, v);
                            }
                        }
                    }
                } else {
                    merged.remove(&k);
                    map.insert(k, value);
                }
                Ok(())
            }
        }
    }
}

/// Placeholder for a plain `<<` key while its value is being read; never a real key in the output.
const MERGE_KEY: &str = "\u{0}<<merge>>";

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// Resolves a scalar as Kubernetes tooling does (YAML 1.1 booleans and integers for plain scalars).
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if tag.is_yaml_core_schema() {
            return match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => Ok(Value::String(text.to_owned())),
                "null" => Ok(Value::Null),
                "bool" => resolve_bool(text)
                    .map(Value::Bool)
                    .ok_or_else(|| format!("{text:?} is not a !!bool")),
                "int" => resolve_int(text).ok_or_else(|| format!("{text:?} is not an !!int")),
                "float" => resolve_float(text)
                    .or_else(|| resolve_int(text))
                    .ok_or_else(|| format!("{text:?} is not a !!float")),
                other => Err(format!("unsupported tag !!{other} on a scalar")),
            };
        }
        // `!` (non-specific) forces a string; custom tags carry no meaning in Kubernetes objects.
        return Ok(Value::String(text.to_owned()));
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = resolve_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(n) = resolve_int(text) {
        return Ok(n);
    }
    if let Some(f) = resolve_float(text) {
        return Ok(f);
    }
    Ok(Value::String(text.to_owned()))
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            Some(false)
        }
        _ => None,
    }
}

fn resolve_int(text: &str) -> Option<Value> {
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let cleaned: String = body.chars().filter(|c| *c != '_').collect();
    let (radix, digits) = if let Some(d) = cleaned.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = cleaned.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = cleaned.strip_prefix("0b") {
        (2, d)
    } else if cleaned.len() > 1 && cleaned.starts_with('0') {
        (8, &cleaned[1..])
    } else {
        (10, cleaned.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        let n = i64::try_from(magnitude)
            .ok()
            .map(|m| -m)
            .or_else(|| (magnitude == 1u64 << 63).then_some(i64::MIN))?;
        Some(Value::Number(Number::from(n)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

fn resolve_float(text: &str) -> Option<Value> {
    let t = text.trim_start_matches(['+', '-']);
    if matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        // JSON has no infinities; Kubernetes would reject them too. Keep the text.
        return None;
    }
    let looks_numeric = t
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-' | '_'))
        && t.chars().any(|c| c.is_ascii_digit());
    if !looks_numeric {
        return None;
    }
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let f: f64 = cleaned.parse().ok()?;
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fmt::Write as _;

    fn docs(text: &str) -> Vec<Result<Document, DocumentError>> {
        parse_documents(text)
    }

    #[test]
    fn multi_document_with_lines() {
        let d = docs(
            "a: 1\n---\n# comment only\n---\nkind: Pod\nspec:\n  containers:\n  - name: c\n    securityContext:\n      privileged: yes\n",
        );
        assert_eq!(d.len(), 2);
        let second = d[1].as_ref().expect("parses");
        assert_eq!(second.index, 2);
        assert_eq!(second.line, 5);
        assert_eq!(
            second.value["spec"]["containers"][0]["securityContext"]["privileged"],
            json!(true)
        );
        assert_eq!(
            second
                .lines
                .line_of("spec.containers[0].securityContext.privileged"),
            Some(10)
        );
        assert_eq!(
            second.lines.line_of("spec.containers[0].resources.limits"),
            Some(8)
        );
    }

    #[test]
    fn yaml_1_1_scalars_like_kubectl() {
        let d = docs(
            "a: on\nb: 'on'\nc: 0x1F\nd: 010\ne: 1.5\nf: ~\ng: 1_000\nh: !!str 12\ni: -7\nj: 12abc\n",
        );
        let v = &d[0].as_ref().expect("parses").value;
        assert_eq!(
            v,
            &json!({"a": true, "b": "on", "c": 31, "d": 8, "e": 1.5, "f": null, "g": 1000, "h": "12", "i": -7, "j": "12abc"})
        );
    }

    #[test]
    fn a_broken_document_does_not_hide_the_others() {
        let d = docs("a: 1\n---\nb: [1, 2\nc: 3\n---\nd: 4\n");
        assert_eq!(d.len(), 3);
        assert!(d[0].is_ok());
        let err = d[1].as_ref().expect_err("broken");
        assert_eq!(err.index, 1);
        assert!(err.line >= 3, "{err:?}");
        let third = d[2].as_ref().expect("parses");
        assert_eq!(third.value, json!({"d": 4}));
        assert_eq!(third.index, 2);
        assert_eq!(third.line, 6);
    }

    #[test]
    fn an_unclosed_flow_collection_does_not_swallow_the_next_document() {
        let d = docs("a: 1\n---\nfoo: [\n---\nb: 2\n");
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[1].is_err());
        assert_eq!(d[2].as_ref().expect("parses").value, json!({"b": 2}));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let d = docs("spec:\n  hostPID: false\n  hostPID: true\n");
        let err = d[0].as_ref().expect_err("duplicate");
        assert_eq!(err.line, 3);
        assert!(
            err.message.contains("duplicate key \"hostPID\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let d = docs("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nl: [*b, *b]\n");
        let v = &d[0].as_ref().expect("parses").value;
        assert_eq!(v["m"], json!({"x": 1, "y": 3}));
        assert_eq!(v["l"][1], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let (name, prev) = ((b'a' + i) as char, (b'a' + i - 1) as char);
            let refs = vec![format!("*{prev}"); 10].join(", ");
            writeln!(text, "{name}: &{name} [{refs}]").expect("write to String");
        }
        let d = docs(&text);
        let err = d[0].as_ref().expect_err("bomb");
        assert!(err.message.contains("more than"), "{}", err.message);
    }

    #[test]
    fn json_is_read_with_lines() {
        let d = docs("{\n  \"kind\": \"Pod\",\n  \"spec\": {\"hostNetwork\": true}\n}\n");
        let doc = d[0].as_ref().expect("parses");
        assert_eq!(doc.value["spec"]["hostNetwork"], json!(true));
        assert_eq!(doc.lines.line_of("spec.hostNetwork"), Some(3));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(10_000);
        let d = docs(&text);
        assert!(d.iter().all(std::result::Result::is_err));
    }
}
