//! Loading rules files: YAML items merged in order (later files append to or override earlier ones).

use std::collections::HashMap;

use serde_json::Value;
use serde_saphyr::Spanned;

use crate::condition::{self, Ast};
use crate::error::LoadError;
use crate::priority::Priority;

/// Where an item was (last) defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file name it was added under.
    pub file: String,
    /// 1-based line of the item.
    pub line: Option<u64>,
}

/// A `list`: items may name other lists, expanded when compiling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListDef {
    /// The list's name.
    pub name: String,
    /// Its items, as written.
    pub items: Vec<String>,
    /// Where it was defined.
    pub origin: Origin,
}

/// A `macro`: a named condition fragment.
#[derive(Clone, Debug, PartialEq)]
pub struct MacroDef {
    /// The macro's name.
    pub name: String,
    /// The condition text after appends.
    pub condition: String,
    /// The parsed condition.
    pub ast: Ast,
    /// Where it was defined.
    pub origin: Origin,
}

/// One of a rule's or exception's field/comparison lists: a single name or several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OneOrMany {
    /// `fields: ka.user.name`.
    One(String),
    /// `fields: [ka.user.name, ka.verb]`.
    Many(Vec<String>),
}

/// A rule exception: named tuples of field values that suppress the rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Exception {
    /// The exception's name.
    pub name: String,
    /// The fields compared.
    pub fields: OneOrMany,
    /// The comparison operators, one per field (default `=`, or `in` for a single field).
    pub comps: Option<OneOrMany>,
    /// The values: tuples (one element per field) or, for a single field, plain values.
    pub values: Vec<Value>,
}

/// A rule after all files' appends and overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleDef {
    /// The rule's name.
    pub name: String,
    /// Description.
    pub desc: String,
    /// Condition text.
    pub condition: String,
    /// Parsed condition.
    pub ast: Ast,
    /// Output template.
    pub output: String,
    /// Priority.
    pub priority: Priority,
    /// Event source (default `syscall`).
    pub source: String,
    /// Whether the rule is enabled.
    pub enabled: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Exceptions, compiled into the condition.
    pub exceptions: Vec<Exception>,
    /// `warn_evttypes` (kept; meaningful only for the syscall source).
    pub warn_evttypes: bool,
    /// `skip-if-unknown-filter`: a rule using an unsupported field is skipped silently.
    pub skip_if_unknown_filter: bool,
    /// Where it was defined.
    pub origin: Origin,
}

/// A `required_plugin_versions` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRequirement {
    /// Plugin name.
    pub name: String,
    /// Minimum version.
    pub version: String,
    /// Alternatives (name, version) that also satisfy it.
    pub alternatives: Vec<(String, String)>,
}

/// Everything loaded from one or more rules files, in definition order, merged.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// Lists.
    pub lists: Vec<ListDef>,
    /// Macros.
    pub macros: Vec<MacroDef>,
    /// Rules, in definition order.
    pub rules: Vec<RuleDef>,
    /// The highest `required_engine_version` seen, as written.
    pub required_engine_version: Option<String>,
    /// `required_plugin_versions` entries from every file.
    pub required_plugin_versions: Vec<PluginRequirement>,
}

impl RuleSet {
    /// Loads one rules file.
    ///
    /// # Errors
    /// See [`Loader::add`].
    pub fn from_yaml(file: &str, text: &str) -> Result<RuleSet, LoadError> {
        let mut l = Loader::new();
        l.add(file, text)?;
        l.finish()
    }

    /// A rule by name.
    #[must_use]
    pub fn rule(&self, name: &str) -> Option<&RuleDef> {
        self.rules.iter().find(|r| r.name == name)
    }
}

#[derive(Clone, Debug)]
struct RawRule {
    name: String,
    desc: String,
    condition: String,
    output: String,
    priority: Priority,
    source: String,
    enabled: bool,
    tags: Vec<String>,
    exceptions: Vec<Exception>,
    warn_evttypes: bool,
    skip_if_unknown_filter: bool,
    origin: Origin,
}

/// Loads rules files in order, as Falco does with several `-r` files: later items with `append: true` or
/// `override:` extend or replace earlier ones; a plain redefinition replaces.
#[derive(Debug, Default)]
pub struct Loader {
    lists: Vec<ListDef>,
    list_index: HashMap<String, usize>,
    macros: Vec<(String, String, Origin)>,
    macro_index: HashMap<String, usize>,
    rules: Vec<RawRule>,
    rule_index: HashMap<String, usize>,
    engine_version: Option<String>,
    plugins: Vec<PluginRequirement>,
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

struct Item<'a> {
    file: &'a str,
    kind: &'static str,
    name: String,
    line: Option<u64>,
    map: &'a serde_json::Map<String, Value>,
}

impl Item<'_> {
    fn err(&self, m: impl Into<String>) -> LoadError {
        LoadError::new(
            self.file,
            Some(format!("{} {:?}", self.kind, self.name)),
            self.line,
            m,
        )
    }

    fn origin(&self) -> Origin {
        Origin {
            file: self.file.to_owned(),
            line: self.line,
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, LoadError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(scalar_string(v)),
            Some(_) => Err(self.err(format!("`{key}` must be a string"))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, LoadError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(self.err(format!("`{key}` must be true or false"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Option<Vec<String>>, LoadError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    scalar_string(v)
                        .ok_or_else(|| self.err(format!("`{key}` must hold only strings")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(self.err(format!("`{key}` must be a list"))),
        }
    }

    /// The `override` map: key → append (true) or replace (false).
    fn overrides(&self, allowed: &[&str]) -> Result<Vec<(String, bool)>, LoadError> {
        let Some(ov) = self.map.get("override") else {
            return Ok(Vec::new());
        };
        let Value::Object(ov) = ov else {
            return Err(self.err("`override` must be a mapping"));
        };
        let mut out = Vec::new();
        for (k, v) in ov {
            if !allowed.contains(&k.as_str()) {
                return Err(self.err(format!(
                    "`override` of `{k}` is not supported (allowed: {})",
                    allowed.join(", ")
                )));
            }
            let append = match v.as_str() {
                Some("append") => true,
                Some("replace") => false,
                _ => return Err(self.err(format!("`override.{k}` must be append or replace"))),
            };
            if append && k == "enabled" {
                return Err(self.err("`enabled` can only be replaced"));
            }
            if !self.map.contains_key(k) {
                return Err(self.err(format!("`override.{k}` is set but `{k}` is missing")));
            }
            out.push((k.clone(), append));
        }
        Ok(out)
    }

    fn exceptions(&self) -> Result<Option<Vec<Exception>>, LoadError> {
        let Some(v) = self.map.get("exceptions") else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            if v.is_null() {
                return Ok(None);
            }
            return Err(self.err("`exceptions` must be a list"));
        };
        let mut out = Vec::new();
        for e in items {
            let Value::Object(m) = e else {
                return Err(self.err("each exception must be a mapping"));
            };
            let name = m
                .get("name")
                .and_then(scalar_string)
                .ok_or_else(|| self.err("an exception has no `name`"))?;
            let one_or_many = |key: &str| -> Result<Option<OneOrMany>, LoadError> {
                match m.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(OneOrMany::One(s.clone()))),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| {
                            scalar_string(v).ok_or_else(|| {
                                self.err(format!("exception {name:?}: `{key}` must hold strings"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(|v| Some(OneOrMany::Many(v))),
                    Some(_) => Err(self.err(format!(
                        "exception {name:?}: `{key}` must be a string or a list"
                    ))),
                }
            };
            let fields = one_or_many("fields")?;
            let comps = one_or_many("comps")?;
            let values = match m.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a.clone(),
                Some(_) => {
                    return Err(self.err(format!("exception {name:?}: `values` must be a list")));
                }
            };
            out.push(Exception {
                name,
                fields: fields.unwrap_or(OneOrMany::Many(Vec::new())),
                comps,
                values,
            });
        }
        Ok(Some(out))
    }
}

fn validate_exception(item: &Item<'_>, e: &Exception, appending: bool) -> Result<(), LoadError> {
    let err = |m: String| item.err(format!("exception {:?}: {m}", e.name));
    if e.fields == OneOrMany::Many(Vec::new()) {
        // Appending values to an exception defined earlier names no fields.
        return if appending {
            Ok(())
        } else {
            Err(err("`fields` is missing".into()))
        };
    }
    match (&e.fields, &e.comps) {
        (OneOrMany::Many(f), Some(OneOrMany::Many(c))) if f.len() != c.len() => {
            return Err(err(format!("{} fields but {} comps", f.len(), c.len())));
        }
        (OneOrMany::One(_), Some(OneOrMany::Many(_)))
        | (OneOrMany::Many(_), Some(OneOrMany::One(_))) => {
            return Err(err(
                "`fields` and `comps` must both be lists or both be single".into(),
            ));
        }
        _ => {}
    }
    for c in match &e.comps {
        Some(OneOrMany::One(c)) => std::slice::from_ref(c),
        Some(OneOrMany::Many(c)) => c.as_slice(),
        None => &[],
    } {
        if condition::Op::parse(c).is_none_or(|op| op == condition::Op::Exists) {
            return Err(err(format!("unknown comparison operator {c:?}")));
        }
    }
    if let OneOrMany::Many(f) = &e.fields {
        for v in &e.values {
            match v {
                Value::Array(t) if t.len() == f.len() => {}
                _ => {
                    return Err(err(format!(
                        "each value must be a list of {} elements, one per field",
                        f.len()
                    )));
                }
            }
        }
    }
    Ok(())
}

fn merge_exceptions(into: &mut Vec<Exception>, new: Vec<Exception>) {
    for e in new {
        if let Some(old) = into.iter_mut().find(|o| o.name == e.name) {
            old.values.extend(e.values);
        } else {
            into.push(e);
        }
    }
}

fn append_text(a: &mut String, b: &str) {
    if !a.is_empty() && !b.is_empty() {
        a.push(' ');
    }
    a.push_str(b);
}

impl Loader {
    /// An empty loader.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one rules file's text, named `file` in errors.
    ///
    /// # Errors
    /// When the YAML does not parse, an item is malformed (missing keys, wrong types, an unknown
    /// priority, an `append` to an unknown item, inconsistent exceptions) or a top-level item is unknown.
    /// The error names the file, the item and its line.
    pub fn add(&mut self, file: &str, text: &str) -> Result<(), LoadError> {
        let docs: Option<Vec<Spanned<Value>>> = serde_saphyr::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line());
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid YAML").to_owned();
            LoadError::new(file, None, line, format!("invalid YAML: {first}"))
        })?;
        for doc in docs.unwrap_or_default() {
            let line = Some(doc.referenced.line());
            let Value::Object(map) = &doc.value else {
                return Err(LoadError::new(
                    file,
                    None,
                    line,
                    "each top-level item must be a mapping",
                ));
            };
            self.add_item(file, line, map)?;
        }
        Ok(())
    }

    fn add_item(
        &mut self,
        file: &str,
        line: Option<u64>,
        map: &serde_json::Map<String, Value>,
    ) -> Result<(), LoadError> {
        if let Some(v) = map.get("required_engine_version") {
            let v = scalar_string(v).ok_or_else(|| {
                LoadError::new(
                    file,
                    None,
                    line,
                    "`required_engine_version` must be a version",
                )
            })?;
            self.engine_version = Some(v);
            return Ok(());
        }
        if let Some(v) = map.get("required_plugin_versions") {
            return self.plugin_versions(file, line, v);
        }
        for kind in ["rule", "macro", "list"] {
            if let Some(name) = map.get(kind) {
                let kind_static = match kind {
                    "rule" => "rule",
                    "macro" => "macro",
                    _ => "list",
                };
                let name = scalar_string(name).ok_or_else(|| {
                    LoadError::new(
                        file,
                        None,
                        line,
                        format!("`{kind}` must name the {kind} with a string"),
                    )
                })?;
                if name.is_empty() {
                    return Err(LoadError::new(
                        file,
                        None,
                        line,
                        format!("`{kind}` has an empty name"),
                    ));
                }
                let item = Item {
                    file,
                    kind: kind_static,
                    name,
                    line,
                    map,
                };
                return match kind {
                    "rule" => self.rule(&item),
                    "macro" => self.macro_(&item),
                    _ => self.list(&item),
                };
            }
        }
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        Err(LoadError::new(
            file,
            None,
            line,
            format!("unknown top-level item with keys {keys:?}"),
        ))
    }

    fn plugin_versions(
        &mut self,
        file: &str,
        line: Option<u64>,
        v: &Value,
    ) -> Result<(), LoadError> {
        let bad = || {
            LoadError::new(
                file,
                None,
                line,
                "`required_plugin_versions` must be a list of {name, version}",
            )
        };
        let Value::Array(a) = v else {
            return Err(bad());
        };
        for p in a {
            let name = p.get("name").and_then(scalar_string).ok_or_else(bad)?;
            let version = p.get("version").and_then(scalar_string).ok_or_else(bad)?;
            let mut alternatives = Vec::new();
            if let Some(Value::Array(alts)) = p.get("alternatives") {
                for a in alts {
                    let n = a.get("name").and_then(scalar_string).ok_or_else(bad)?;
                    let v = a.get("version").and_then(scalar_string).ok_or_else(bad)?;
                    alternatives.push((n, v));
                }
            }
            self.plugins.push(PluginRequirement {
                name,
                version,
                alternatives,
            });
        }
        Ok(())
    }

    fn list(&mut self, item: &Item<'_>) -> Result<(), LoadError> {
        let items = item.strings("items")?;
        let append = item.bool("append")?.unwrap_or(false);
        let overrides = item.overrides(&["items"])?;
        let existing = self.list_index.get(&item.name).copied();
        if append || !overrides.is_empty() {
            let Some(i) = existing else {
                return Err(item.err("append or override of a list that is not defined"));
            };
            let items = items.ok_or_else(|| item.err("`items` is missing"))?;
            let replace = overrides.iter().any(|(_, a)| !a);
            if let Some(l) = self.lists.get_mut(i) {
                if replace {
                    l.items = items;
                } else {
                    l.items.extend(items);
                }
            }
            return Ok(());
        }
        let items = items.ok_or_else(|| item.err("`items` is missing"))?;
        let def = ListDef {
            name: item.name.clone(),
            items,
            origin: item.origin(),
        };
        match existing.and_then(|i| self.lists.get_mut(i)) {
            Some(l) => *l = def,
            None => {
                self.list_index.insert(item.name.clone(), self.lists.len());
                self.lists.push(def);
            }
        }
        Ok(())
    }

    fn macro_(&mut self, item: &Item<'_>) -> Result<(), LoadError> {
        let cond = item.string("condition")?;
        let append = item.bool("append")?.unwrap_or(false);
        let overrides = item.overrides(&["condition"])?;
        let existing = self.macro_index.get(&item.name).copied();
        let cond = cond.ok_or_else(|| item.err("`condition` is missing"))?;
        if append || !overrides.is_empty() {
            let Some(i) = existing else {
                return Err(item.err("append or override of a macro that is not defined"));
            };
            let replace = overrides.iter().any(|(_, a)| !a);
            if let Some(m) = self.macros.get_mut(i) {
                if replace {
                    m.1 = cond;
                } else {
                    append_text(&mut m.1, &cond);
                }
                m.2 = item.origin();
            }
            return Ok(());
        }
        match existing.and_then(|i| self.macros.get_mut(i)) {
            Some(m) => *m = (item.name.clone(), cond, item.origin()),
            None => {
                self.macro_index
                    .insert(item.name.clone(), self.macros.len());
                self.macros.push((item.name.clone(), cond, item.origin()));
            }
        }
        Ok(())
    }

    fn rule(&mut self, item: &Item<'_>) -> Result<(), LoadError> {
        const KEYS: &[&str] = &[
            "rule",
            "desc",
            "condition",
            "output",
            "priority",
            "source",
            "enabled",
            "tags",
            "exceptions",
            "append",
            "override",
            "warn_evttypes",
            "skip-if-unknown-filter",
            "required_engine_version",
        ];
        if let Some(k) = item.map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(item.err(format!("unknown key `{k}`")));
        }
        let desc = item.string("desc")?;
        let condition = item.string("condition")?;
        let output = item.string("output")?;
        let priority = match item.string("priority")? {
            Some(p) => Some(p.parse::<Priority>().map_err(|e| item.err(e.to_string()))?),
            None => None,
        };
        let source = item.string("source")?;
        let enabled = item.bool("enabled")?;
        let tags = item.strings("tags")?;
        let exceptions = item.exceptions()?;
        let append = item.bool("append")?.unwrap_or(false);
        let overrides = item.overrides(&[
            "condition",
            "output",
            "desc",
            "priority",
            "tags",
            "exceptions",
            "enabled",
        ])?;
        let appending = append || overrides.iter().any(|(k, a)| k == "exceptions" && *a);
        for e in exceptions.iter().flatten() {
            validate_exception(item, e, appending)?;
        }
        let existing = self.rule_index.get(&item.name).copied();

        if append || !overrides.is_empty() {
            let Some(r) = existing.and_then(|i| self.rules.get_mut(i)) else {
                return Err(item.err("append or override of a rule that is not defined"));
            };
            let how = |key: &str| -> Option<bool> {
                if append {
                    Some(true)
                } else {
                    overrides.iter().find(|(k, _)| k == key).map(|(_, a)| *a)
                }
            };
            if append && (priority.is_some() || source.is_some()) {
                return Err(item.err("`append: true` cannot change `priority` or `source`"));
            }
            if let (Some(a), Some(c)) = (how("condition"), condition) {
                if a {
                    append_text(&mut r.condition, &c)
                } else {
                    r.condition = c
                }
            }
            if let (Some(a), Some(o)) = (how("output"), output) {
                if a {
                    append_text(&mut r.output, &o)
                } else {
                    r.output = o
                }
            }
            if let (Some(a), Some(d)) = (how("desc"), desc) {
                if a {
                    append_text(&mut r.desc, &d)
                } else {
                    r.desc = d
                }
            }
            if let (Some(false), Some(p)) = (how("priority"), priority) {
                r.priority = p;
            }
            if let (Some(a), Some(t)) = (how("tags"), tags) {
                if a { r.tags.extend(t) } else { r.tags = t }
            }
            if let (Some(a), Some(e)) = (how("exceptions"), exceptions) {
                if a {
                    merge_exceptions(&mut r.exceptions, e)
                } else {
                    r.exceptions = e
                }
            }
            if let Some(e) = enabled {
                r.enabled = e;
            }
            return Ok(());
        }

        // Only `enabled` (and the name): switch an existing rule on or off.
        if condition.is_none()
            && output.is_none()
            && priority.is_none()
            && desc.is_none()
            && let Some(e) = enabled
        {
            let Some(r) = existing.and_then(|i| self.rules.get_mut(i)) else {
                return Err(item.err("`enabled` set on a rule that is not defined"));
            };
            r.enabled = e;
            return Ok(());
        }

        let missing: Vec<&str> = [
            ("condition", condition.is_none()),
            ("output", output.is_none()),
            ("desc", desc.is_none()),
            ("priority", priority.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| *k)
        .collect();
        if !missing.is_empty() {
            return Err(item.err(format!("missing {}", missing.join(", "))));
        }
        let raw = RawRule {
            name: item.name.clone(),
            desc: desc.unwrap_or_default(),
            condition: condition.unwrap_or_default(),
            output: output.unwrap_or_default(),
            priority: priority.unwrap_or(Priority::Debug),
            source: source.unwrap_or_else(|| "syscall".to_owned()),
            enabled: enabled.unwrap_or(true),
            tags: tags.unwrap_or_default(),
            exceptions: exceptions.unwrap_or_default(),
            warn_evttypes: item.bool("warn_evttypes")?.unwrap_or(true),
            skip_if_unknown_filter: item.bool("skip-if-unknown-filter")?.unwrap_or(false),
            origin: item.origin(),
        };
        match existing.and_then(|i| self.rules.get_mut(i)) {
            Some(r) => *r = raw,
            None => {
                self.rule_index.insert(item.name.clone(), self.rules.len());
                self.rules.push(raw);
            }
        }
        Ok(())
    }

    /// Parses every macro's and rule's merged condition and returns the rule set.
    ///
    /// # Errors
    /// On a condition syntax error, naming the file, item and line of its (last) definition.
    pub fn finish(self) -> Result<RuleSet, LoadError> {
        let parse = |kind: &str, name: &str, text: &str, o: &Origin| {
            condition::parse(text).map_err(|e| {
                LoadError::new(
                    &o.file,
                    Some(format!("{kind} {name:?}")),
                    o.line,
                    format!("condition: {e}"),
                )
            })
        };
        let mut macros = Vec::with_capacity(self.macros.len());
        for (name, cond, origin) in self.macros {
            let ast = parse("macro", &name, &cond, &origin)?;
            macros.push(MacroDef {
                name,
                condition: cond,
                ast,
                origin,
            });
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for r in self.rules {
            let ast = parse("rule", &r.name, &r.condition, &r.origin)?;
            rules.push(RuleDef {
                name: r.name,
                desc: r.desc,
                condition: r.condition,
                ast,
                output: r.output,
                priority: r.priority,
                source: r.source,
                enabled: r.enabled,
                tags: r.tags,
                exceptions: r.exceptions,
                warn_evttypes: r.warn_evttypes,
                skip_if_unknown_filter: r.skip_if_unknown_filter,
                origin: r.origin,
            });
        }
        Ok(RuleSet {
            lists: self.lists,
            macros,
            rules,
            required_engine_version: self.engine_version,
            required_plugin_versions: self.plugins,
        })
    }
}
