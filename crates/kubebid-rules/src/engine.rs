//! Compiling a [`RuleSet`] for one [`Source`], and evaluating events against it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use foldhash::HashMap as FoldMap;

use crate::condition::{Ast, FieldRef, Op, Operand, Rhs, split_field};
use crate::error::LoadError;
use crate::load::{Exception, OneOrMany, Origin, RuleDef, RuleSet};
use crate::matching::{Set, Test, cross, hex_bytes};
use crate::output::{Alert, Part, parse_template};
use crate::priority::Priority;
use crate::source::{Source, Values};

/// A compiled condition over field slots.
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    False,
    And(Box<[Expr]>),
    Or(Box<[Expr]>),
    Not(Box<Expr>),
    Test(u16, Test),
    /// `field op val(other)`.
    Cross(u16, Op, u16),
}

/// Whether a rule can be evaluated for the compiled source, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleStatus {
    /// Compiled and evaluated.
    Evaluable,
    /// `enabled: false`.
    Disabled,
    /// The rule's `source` is not the compiled one.
    OtherSource,
    /// The rule uses fields the source does not support (in its condition, exceptions or output).
    /// `skipped` is set when the rule has `skip-if-unknown-filter: true`.
    UnsupportedFields {
        /// The fields, as written.
        fields: Vec<String>,
        /// The rule asked to be skipped silently.
        skipped: bool,
    },
}

/// One rule's line in a [`Report`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleReport {
    /// The rule's name.
    pub name: String,
    /// The rule's source.
    pub source: String,
    /// Its status.
    pub status: RuleStatus,
}

/// Which rules an [`Engine`] evaluates and why the others are left out; `Display` prints it for a CLI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The source compiled for.
    pub source: String,
    /// Every loaded rule, in definition order.
    pub rules: Vec<RuleReport>,
}

impl Report {
    /// The rules of the compiled source that are not evaluable (enabled, but using unsupported fields).
    pub fn unsupported(&self) -> impl Iterator<Item = &RuleReport> {
        self.rules
            .iter()
            .filter(|r| matches!(r.status, RuleStatus::UnsupportedFields { .. }))
    }

    /// How many rules are evaluable.
    #[must_use]
    pub fn evaluable_count(&self) -> usize {
        self.rules
            .iter()
            .filter(|r| r.status == RuleStatus::Evaluable)
            .count()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "source {}: {} of {} rules evaluable",
            self.source,
            self.evaluable_count(),
            self.rules.len()
        )?;
        for r in &self.rules {
            let status = match &r.status {
                RuleStatus::Evaluable => "evaluable".to_owned(),
                RuleStatus::Disabled => "disabled".to_owned(),
                RuleStatus::OtherSource => {
                    format!("not evaluable: source {} is not loaded", r.source)
                }
                RuleStatus::UnsupportedFields { fields, skipped } => format!(
                    "not evaluable{}: unsupported fields {}",
                    if *skipped {
                        " (skip-if-unknown-filter)"
                    } else {
                        ""
                    },
                    fields.join(", ")
                ),
            };
            writeln!(f, "  {}: {status}", r.name)?;
        }
        Ok(())
    }
}

/// An evaluable rule, compiled.
#[derive(Debug)]
pub struct CompiledRule<F> {
    name: String,
    desc: String,
    priority: Priority,
    source: String,
    tags: Vec<String>,
    expr: Expr,
    output: Vec<Part<F>>,
}

impl<F> CompiledRule<F> {
    /// The rule's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's description.
    #[must_use]
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The rule's priority.
    #[must_use]
    pub fn priority(&self) -> Priority {
        self.priority
    }

    /// The rule's tags.
    #[must_use]
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
}

/// Index of a rule in [`Engine::rules`].
pub type RuleId = u32;

/// Rules bucketed by the value one field must have for them to match, so most rules are never looked at.
#[derive(Debug, Default)]
struct Index {
    /// Rules with no usable literal constraint.
    always: Vec<RuleId>,
    /// Per field slot: value → rules requiring it, and every rule keyed on the slot.
    by_field: Vec<FieldBuckets>,
}

/// One indexed field: its slot, value → rules requiring it, and every rule keyed on it.
type FieldBuckets = (u16, FoldMap<Box<str>, Vec<RuleId>>, Vec<RuleId>);

/// A compiled condition and output template.
type CompiledParts<F> = (Expr, Vec<Part<F>>);

/// A rule's literal constraints: (slot, accepted values).
type Constraints<'a> = Vec<(u16, Vec<&'a str>)>;

/// Per-evaluation scratch space, reused across events so evaluation does not allocate in steady state.
#[derive(Debug, Default)]
pub struct Scratch {
    cache: Vec<Option<Values<'static>>>,
    candidates: Vec<RuleId>,
    matched: Vec<RuleId>,
}

impl Scratch {
    /// Empty scratch space.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

/// Rules compiled for one source: conditions as trees over resolved fields, outputs as templates, plus an
/// index that skips rules whose literal constraints the event cannot meet.
pub struct Engine<S: Source> {
    source: S,
    fields: Vec<S::Field>,
    rules: Vec<CompiledRule<S::Field>>,
    report: Report,
    min_priority: Priority,
    index: Index,
}

impl<S: Source> fmt::Debug for Engine<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("source", &self.source.name())
            .field("fields", &self.fields.len())
            .field("rules", &self.rules.len())
            .field("min_priority", &self.min_priority)
            .finish_non_exhaustive()
    }
}

/// Deepest macro/list nesting followed before giving up (also catches cycles).
const MAX_NESTING: usize = 64;

struct Compiler<'a, S: Source> {
    source: &'a S,
    macros: HashMap<&'a str, &'a Ast>,
    lists: HashMap<&'a str, &'a [String]>,
    fields: Vec<S::Field>,
    slots: HashMap<S::Field, u16>,
    /// Unsupported fields met while compiling the current rule.
    unsupported: Vec<String>,
}

struct CompileError(String);

impl<'a, S: Source> Compiler<'a, S> {
    fn slot(&mut self, f: &FieldRef) -> Result<Option<u16>, CompileError> {
        match self.source.field(&f.name, f.arg.as_deref()) {
            Ok(field) => {
                if let Some(&s) = self.slots.get(&field) {
                    return Ok(Some(s));
                }
                let s = u16::try_from(self.fields.len())
                    .map_err(|_| CompileError("too many distinct fields".into()))?;
                self.fields.push(field.clone());
                self.slots.insert(field, s);
                Ok(Some(s))
            }
            Err(e) => {
                let name = f.to_string();
                self.family_known(&f.name)?;
                if !self.unsupported.contains(&name) {
                    self.unsupported.push(name);
                }
                let _ = e;
                Ok(None)
            }
        }
    }

    /// A field of no family of the source is an error in the rule, not a field to lack.
    fn family_known(&self, name: &str) -> Result<(), CompileError> {
        if self.source.known_family(name) {
            Ok(())
        } else {
            Err(CompileError(format!(
                "unknown field {name:?}: no such field in the {} source",
                self.source.name()
            )))
        }
    }

    fn expand_list(
        &self,
        name: &str,
        depth: usize,
        out: &mut Vec<String>,
    ) -> Result<(), CompileError> {
        if depth > MAX_NESTING {
            return Err(CompileError(format!(
                "list {name:?} nests too deeply (a cycle?)"
            )));
        }
        match self.lists.get(name) {
            Some(items) => {
                for i in *items {
                    if self.lists.contains_key(i.as_str()) {
                        self.expand_list(i, depth + 1, out)?;
                    } else {
                        out.push(i.clone());
                    }
                }
            }
            None => out.push(name.to_owned()),
        }
        Ok(())
    }

    fn operands(&self, items: &[Operand]) -> Result<Vec<String>, CompileError> {
        let mut out = Vec::new();
        for i in items {
            match i {
                Operand::Bare(b) => self.expand_list(b, 0, &mut out)?,
                Operand::Quoted(q) => out.push(q.clone()),
            }
        }
        Ok(out)
    }

    fn test(&self, op: Op, rhs: &Rhs) -> Result<Test, CompileError> {
        let scalar = |rhs: &Rhs| -> Result<String, CompileError> {
            match rhs {
                Rhs::Value(v) => Ok(v.text().to_owned()),
                _ => Err(CompileError(format!("'{op}' needs a single value"))),
            }
        };
        let list = |rhs: &Rhs| -> Result<Vec<String>, CompileError> {
            match rhs {
                Rhs::List(items) => self.operands(items),
                Rhs::Value(v) => self.operands(std::slice::from_ref(v)),
                Rhs::None | Rhs::Field(_) => Err(CompileError(format!("'{op}' needs a list"))),
            }
        };
        Ok(match op {
            Op::Exists => Test::Exists,
            Op::Eq => Test::Eq(scalar(rhs)?.into()),
            Op::Ne => Test::Ne(scalar(rhs)?.into()),
            Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                let s = scalar(rhs)?;
                let n = s.trim().parse::<f64>().ok();
                Test::Order(op, s.into(), n)
            }
            Op::In => Test::In(Set::new(list(rhs)?)),
            Op::Intersects => Test::Intersects(Set::new(list(rhs)?)),
            Op::Pmatch => {
                Test::Pmatch(list(rhs)?.into_iter().map(String::into_boxed_str).collect())
            }
            Op::Contains => Test::Contains(scalar(rhs)?.into()),
            Op::IContains => Test::IContains(scalar(rhs)?.to_ascii_lowercase().into()),
            Op::StartsWith => Test::StartsWith(scalar(rhs)?.into()),
            Op::EndsWith => Test::EndsWith(scalar(rhs)?.into()),
            Op::Glob => Test::Glob(scalar(rhs)?.into()),
            Op::BContains | Op::BStartsWith => {
                let s = scalar(rhs)?;
                let b = hex_bytes(&s)
                    .ok_or_else(|| CompileError(format!("'{op}' needs hex bytes, not {s:?}")))?;
                if op == Op::BContains {
                    Test::BContains(b.into())
                } else {
                    Test::BStartsWith(b.into())
                }
            }
        })
    }

    fn compile(&mut self, ast: &Ast, stack: &mut Vec<String>) -> Result<Expr, CompileError> {
        Ok(match ast {
            Ast::And(xs) => Expr::And(
                xs.iter()
                    .map(|x| self.compile(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Ast::Or(xs) => Expr::Or(
                xs.iter()
                    .map(|x| self.compile(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Ast::Not(x) => Expr::Not(Box::new(self.compile(x, stack)?)),
            Ast::Macro(name) => {
                let Some(m) = self.macros.get(name.as_str()).copied() else {
                    return Err(CompileError(format!("undefined macro {name:?}")));
                };
                if stack.contains(name) || stack.len() > MAX_NESTING {
                    return Err(CompileError(format!("macro {name:?} refers to itself")));
                }
                stack.push(name.clone());
                let e = self.compile(m, stack)?;
                stack.pop();
                e
            }
            Ast::Cmp {
                field,
                op,
                rhs: Rhs::Field(other),
            } => {
                if op.takes_list() || matches!(op, Op::Exists | Op::BContains | Op::BStartsWith) {
                    return Err(CompileError(format!(
                        "'{op}' cannot compare with val({other})"
                    )));
                }
                match (self.slot(field)?, self.slot(other)?) {
                    (Some(a), Some(b)) => Expr::Cross(a, *op, b),
                    _ => Expr::False,
                }
            }
            Ast::Cmp { field, op, rhs } => {
                let test = self.test(*op, rhs)?;
                match self.slot(field)? {
                    Some(s) => Expr::Test(s, test),
                    None => Expr::False,
                }
            }
        })
    }

    /// An exception as a condition: OR over its value tuples of AND over its fields.
    fn exception(&self, e: &Exception) -> Result<Ast, CompileError> {
        let comp = |c: Option<&String>, default: Op| -> Result<Op, CompileError> {
            match c {
                None => Ok(default),
                Some(c) => Op::parse(c)
                    .ok_or_else(|| CompileError(format!("exception {:?}: bad comp {c:?}", e.name))),
            }
        };
        let rhs_of = |op: Op, v: &serde_json::Value| -> Rhs {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if op.takes_list() {
                match v {
                    serde_json::Value::Array(items) => {
                        Rhs::List(items.iter().map(|i| Operand::Bare(text(i))).collect())
                    }
                    other => Rhs::List(vec![Operand::Bare(text(other))]),
                }
            } else {
                Rhs::Value(Operand::Quoted(text(v)))
            }
        };
        let mut alts = Vec::new();
        match &e.fields {
            OneOrMany::One(f) => {
                let c = match &e.comps {
                    Some(OneOrMany::One(c)) => Some(c),
                    _ => None,
                };
                let op = comp(c, Op::In)?;
                let field = split_field(f);
                if op.takes_list() {
                    if !e.values.is_empty() {
                        alts.push(Ast::Cmp {
                            field,
                            op,
                            rhs: rhs_of(op, &serde_json::Value::Array(e.values.clone())),
                        });
                    }
                } else {
                    for v in &e.values {
                        alts.push(Ast::Cmp {
                            field: field.clone(),
                            op,
                            rhs: rhs_of(op, v),
                        });
                    }
                }
            }
            OneOrMany::Many(fields) => {
                for tuple in &e.values {
                    let serde_json::Value::Array(vals) = tuple else {
                        continue;
                    };
                    let mut conj = Vec::new();
                    for (i, (f, v)) in fields.iter().zip(vals).enumerate() {
                        let c = match &e.comps {
                            Some(OneOrMany::Many(cs)) => cs.get(i),
                            _ => None,
                        };
                        let op = comp(c, Op::Eq)?;
                        conj.push(Ast::Cmp {
                            field: split_field(f),
                            op,
                            rhs: rhs_of(op, v),
                        });
                    }
                    if !conj.is_empty() {
                        alts.push(Ast::And(conj));
                    }
                }
            }
        }
        Ok(Ast::Or(alts))
    }

    fn rule(&mut self, r: &RuleDef) -> Result<CompiledParts<S::Field>, CompileError> {
        let mut conj = vec![r.ast.clone()];
        for e in &r.exceptions {
            let exc = self.exception(e)?;
            if !matches!(&exc, Ast::Or(a) if a.is_empty()) {
                conj.push(Ast::Not(Box::new(exc)));
            }
        }
        let ast = if conj.len() == 1 {
            conj.remove(0)
        } else {
            Ast::And(conj)
        };
        let expr = simplify(self.compile(&ast, &mut Vec::new())?);
        let mut output = Vec::new();
        for p in parse_template(&r.output) {
            match p {
                Part::Text(t) => output.push(Part::Text(t)),
                Part::Field(display, fr) => match self.source.field(&fr.name, fr.arg.as_deref()) {
                    Ok(f) => output.push(Part::Field(display, f)),
                    Err(_) => {
                        self.family_known(&fr.name)?;
                        if !self.unsupported.contains(&display) {
                            self.unsupported.push(display);
                        }
                    }
                },
            }
        }
        Ok((expr, output))
    }
}

/// Flattens nested AND/OR.
fn simplify(e: Expr) -> Expr {
    match e {
        Expr::And(xs) => {
            let mut out = Vec::new();
            for x in xs.into_vec() {
                match simplify(x) {
                    Expr::And(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            if out.len() == 1 {
                out.remove(0)
            } else {
                Expr::And(out.into())
            }
        }
        Expr::Or(xs) => {
            let mut out = Vec::new();
            for x in xs.into_vec() {
                match simplify(x) {
                    Expr::Or(inner) => out.extend(inner.into_vec()),
                    other => out.push(other),
                }
            }
            if out.len() == 1 {
                out.remove(0)
            } else {
                Expr::Or(out.into())
            }
        }
        Expr::Not(x) => Expr::Not(Box::new(simplify(*x))),
        other => other,
    }
}

/// Literal constraints a match requires: (slot, values one of which the field's single value must equal).
fn constraints(e: &Expr) -> Vec<(u16, Vec<&str>)> {
    match e {
        Expr::Test(s, Test::Eq(v)) => vec![(*s, vec![&**v])],
        Expr::Test(s, Test::In(set)) => vec![(*s, set.0.iter().map(|b| &**b).collect())],
        Expr::And(xs) => xs.iter().flat_map(constraints).collect(),
        Expr::Or(xs) => {
            let per: Vec<Vec<(u16, Vec<&str>)>> = xs.iter().map(constraints).collect();
            let Some(first) = per.first() else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for (slot, _) in first {
                if out.iter().any(|(s, _): &(u16, Vec<&str>)| s == slot) {
                    continue;
                }
                let mut union: Vec<&str> = Vec::new();
                let mut all = true;
                for c in &per {
                    match c.iter().find(|(s, _)| s == slot) {
                        Some((_, vals)) => union.extend(vals.iter().copied()),
                        None => {
                            all = false;
                            break;
                        }
                    }
                }
                if all {
                    out.push((*slot, union));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn origin_error(o: &Origin, name: &str, m: String) -> LoadError {
    LoadError::new(&o.file, Some(format!("rule {name:?}")), o.line, m)
}

impl<S: Source> Engine<S> {
    /// Compiles every enabled rule of `set` whose source is `source`'s name; the others are listed in the
    /// [`Report`] with the reason they are not evaluated.
    ///
    /// # Errors
    /// When a rule of this source refers to an undefined macro, macros or lists refer to themselves, or an
    /// operand does not fit its operator; the error names the rule's file, name and line.
    pub fn compile(set: &RuleSet, source: S) -> Result<Self, LoadError> {
        let mut c = Compiler {
            source: &source,
            macros: set
                .macros
                .iter()
                .map(|m| (m.name.as_str(), &m.ast))
                .collect(),
            lists: set
                .lists
                .iter()
                .map(|l| (l.name.as_str(), l.items.as_slice()))
                .collect(),
            fields: Vec::new(),
            slots: HashMap::new(),
            unsupported: Vec::new(),
        };
        let mut rules = Vec::new();
        let mut report = Report {
            source: source.name().to_owned(),
            rules: Vec::new(),
        };
        for r in &set.rules {
            let status = if r.source != source.name() {
                RuleStatus::OtherSource
            } else if !r.enabled {
                RuleStatus::Disabled
            } else {
                c.unsupported.clear();
                let (expr, output) = c
                    .rule(r)
                    .map_err(|e| origin_error(&r.origin, &r.name, e.0))?;
                if c.unsupported.is_empty() {
                    rules.push(CompiledRule {
                        name: r.name.clone(),
                        desc: r.desc.clone(),
                        priority: r.priority,
                        source: r.source.clone(),
                        tags: r.tags.clone(),
                        expr,
                        output,
                    });
                    RuleStatus::Evaluable
                } else {
                    RuleStatus::UnsupportedFields {
                        fields: c.unsupported.clone(),
                        skipped: r.skip_if_unknown_filter,
                    }
                }
            };
            report.rules.push(RuleReport {
                name: r.name.clone(),
                source: r.source.clone(),
                status,
            });
        }
        let fields = c.fields;
        let mut engine = Engine {
            source,
            fields,
            rules,
            report,
            min_priority: Priority::Debug,
            index: Index::default(),
        };
        engine.index = engine.build_index();
        Ok(engine)
    }

    /// Only evaluate rules at least as severe as `min` (Falco's `priority` setting).
    #[must_use]
    pub fn with_min_priority(mut self, min: Priority) -> Self {
        self.min_priority = min;
        self.index = self.build_index();
        self
    }

    fn build_index(&self) -> Index {
        let active: Vec<RuleId> = (0..self.rules.len())
            .filter_map(|i| RuleId::try_from(i).ok())
            .filter(|&i| {
                self.rules
                    .get(i as usize)
                    .is_some_and(|r| r.priority >= self.min_priority)
            })
            .collect();
        let per_rule: Vec<(RuleId, Constraints<'_>)> = active
            .iter()
            .map(|&i| {
                (
                    i,
                    self.rules
                        .get(i as usize)
                        .map(|r| constraints(&r.expr))
                        .unwrap_or_default(),
                )
            })
            .collect();
        // A field's selectivity: how many distinct literals rules require of it.
        let mut distinct: HashMap<u16, HashSet<&str>> = HashMap::new();
        for (_, cs) in &per_rule {
            for (slot, vals) in cs {
                distinct
                    .entry(*slot)
                    .or_default()
                    .extend(vals.iter().copied());
            }
        }
        let mut index = Index::default();
        for (id, cs) in per_rule {
            let best = cs.iter().max_by_key(|(slot, vals)| {
                (
                    distinct.get(slot).map_or(0, HashSet::len),
                    std::cmp::Reverse(vals.len()),
                    std::cmp::Reverse(*slot),
                )
            });
            // A constraint with many values barely filters; keep such rules in the always-run list.
            match best {
                Some((slot, vals)) if distinct.get(slot).map_or(0, HashSet::len) > 1 => {
                    let pos = match index.by_field.iter().position(|(s, _, _)| s == slot) {
                        Some(p) => p,
                        None => {
                            index.by_field.push((*slot, FoldMap::default(), Vec::new()));
                            index.by_field.len() - 1
                        }
                    };
                    if let Some((_, map, all)) = index.by_field.get_mut(pos) {
                        let mut seen = HashSet::new();
                        for v in vals {
                            if seen.insert(*v) {
                                map.entry(Box::from(*v)).or_insert_with(Vec::new).push(id);
                            }
                        }
                        all.push(id);
                    }
                }
                _ => index.always.push(id),
            }
        }
        index
    }

    /// The values a field must take for some active rule to match, from the rules' literal constraints
    /// (`evt.type in (execve, execveat)` in a rule or a macro it uses): the event types a sensor must let
    /// through, say. `None` when some active rule matches whatever the field's value, or the source has
    /// no such field.
    #[must_use]
    pub fn required_values(&self, name: &str, arg: Option<&str>) -> Option<Vec<String>> {
        let field = self.source.field(name, arg).ok()?;
        let slot = u16::try_from(self.fields.iter().position(|f| *f == field)?).ok()?;
        let mut out = std::collections::BTreeSet::new();
        for r in self
            .rules
            .iter()
            .filter(|r| r.priority >= self.min_priority)
        {
            let cs = constraints(&r.expr);
            let (_, vals) = cs.iter().find(|(s, _)| *s == slot)?;
            out.extend(vals.iter().map(|v| (*v).to_owned()));
        }
        Some(out.into_iter().collect())
    }

    /// The report: every loaded rule and whether it is evaluated for this source.
    #[must_use]
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The source.
    #[must_use]
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The evaluable rules; [`RuleId`]s index this slice.
    #[must_use]
    pub fn rules(&self) -> &[CompiledRule<S::Field>] {
        &self.rules
    }

    /// How many (event, rule) evaluations the prefilter leaves for this event: a measure of its effect.
    pub fn candidates(&self, event: &S::Event<'_>, scratch: &mut Scratch) -> usize {
        let _ = self.matches(event, scratch);
        scratch.candidates.len()
    }

    /// The rules matching `event`, in definition order. The slice lives in `scratch`, which is reused by
    /// the next call.
    pub fn matches<'s>(&self, event: &S::Event<'_>, scratch: &'s mut Scratch) -> &'s [RuleId] {
        self.matches_with(event, scratch, true)
    }

    /// Like [`Engine::matches`], but evaluates every active rule without the prefilter: the reference
    /// the prefilter must agree with, and the baseline it is measured against.
    pub fn matches_without_prefilter<'s>(
        &self,
        event: &S::Event<'_>,
        scratch: &'s mut Scratch,
    ) -> &'s [RuleId] {
        self.matches_with(event, scratch, false)
    }

    fn matches_with<'s>(
        &self,
        event: &S::Event<'_>,
        scratch: &'s mut Scratch,
        prefilter: bool,
    ) -> &'s [RuleId] {
        // Reuse the cache's allocation for this event's lifetime: an empty vector is converted in place.
        let mut cache: Vec<Option<Values<'_>>> = std::mem::take(&mut scratch.cache)
            .into_iter()
            .map(|_| None)
            .collect();
        cache.resize(self.fields.len(), None);
        scratch.candidates.clear();
        scratch.matched.clear();
        scratch.candidates.extend_from_slice(&self.index.always);
        for (slot, map, all) in &self.index.by_field {
            if !prefilter {
                scratch.candidates.extend_from_slice(all);
                continue;
            }
            let vals = self.value(*slot, event, &mut cache);
            match vals {
                Values::One(v) => {
                    if let Some(ids) = map.get(v.as_str()) {
                        scratch.candidates.extend_from_slice(ids);
                    }
                }
                Values::List(vs) if !vs.is_empty() => scratch.candidates.extend_from_slice(all),
                _ => {}
            }
        }
        scratch.candidates.sort_unstable();
        for &id in &scratch.candidates {
            if let Some(r) = self.rules.get(id as usize)
                && self.eval(&r.expr, event, &mut cache)
            {
                scratch.matched.push(id);
            }
        }
        cache.clear();
        scratch.cache = cache.into_iter().map(|_| None).collect();
        &scratch.matched
    }

    fn value<'c, 'e>(
        &self,
        slot: u16,
        event: &S::Event<'e>,
        cache: &'c mut [Option<Values<'e>>],
    ) -> &'c Values<'e> {
        static NA: Values<'static> = Values::NotAvailable;
        let Some(entry) = cache.get_mut(usize::from(slot)) else {
            return &NA;
        };
        if entry.is_none() {
            let v = match self.fields.get(usize::from(slot)) {
                Some(f) => self.source.extract(f, event),
                None => Values::NotAvailable,
            };
            *entry = Some(v);
        }
        entry.as_ref().unwrap_or(&NA)
    }

    fn eval<'e>(&self, e: &Expr, event: &S::Event<'e>, cache: &mut [Option<Values<'e>>]) -> bool {
        match e {
            Expr::False => false,
            Expr::And(xs) => xs.iter().all(|x| self.eval(x, event, cache)),
            Expr::Or(xs) => xs.iter().any(|x| self.eval(x, event, cache)),
            Expr::Not(x) => !self.eval(x, event, cache),
            Expr::Test(slot, t) => t.eval(self.value(*slot, event, cache)),
            Expr::Cross(a, op, b) => {
                // Make sure both are cached, then borrow them together.
                self.value(*a, event, cache);
                self.value(*b, event, cache);
                match (cache.get(usize::from(*a)), cache.get(usize::from(*b))) {
                    (Some(Some(l)), Some(Some(r))) => cross(*op, l, r),
                    _ => false,
                }
            }
        }
    }

    /// Builds the alert for a rule that matched `event`: output fields substituted, `<NA>` for missing.
    #[must_use]
    pub fn alert(&self, id: RuleId, event: &S::Event<'_>) -> Option<Alert> {
        let r = self.rules.get(id as usize)?;
        let mut message = String::new();
        let mut output_fields: Vec<(String, Option<String>)> = Vec::new();
        for p in &r.output {
            match p {
                Part::Text(t) => message.push_str(t),
                Part::Field(name, f) => {
                    let v = self.source.extract(f, event).render();
                    message.push_str(v.as_deref().unwrap_or("<NA>"));
                    if !output_fields.iter().any(|(n, _)| n == name) {
                        output_fields.push((name.clone(), v));
                    }
                }
            }
        }
        Some(Alert {
            rule: r.name.clone(),
            priority: r.priority,
            source: r.source.clone(),
            tags: r.tags.clone(),
            time: self
                .source
                .timestamp(event)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            message: message.trim().to_owned(),
            output_fields,
        })
    }

    /// Every alert for `event`, in rule order.
    pub fn alerts(&self, event: &S::Event<'_>, scratch: &mut Scratch) -> Vec<Alert> {
        let ids = self.matches(event, scratch).to_vec();
        ids.into_iter()
            .filter_map(|id| self.alert(id, event))
            .collect()
    }
}
