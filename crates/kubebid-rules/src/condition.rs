//! The condition language's syntax: a hand-written lexer and recursive-descent parser producing an AST
//! that still names macros, lists and fields (they are resolved when compiling for a source).

use std::fmt;

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `in (list)`: every value of the field is in the list.
    In,
    /// `intersects (list)`: some value of the field is in the list.
    Intersects,
    /// `contains`.
    Contains,
    /// `icontains` (ASCII case-insensitive).
    IContains,
    /// `startswith`.
    StartsWith,
    /// `endswith`.
    EndsWith,
    /// `glob` (`*`, `?`, `[...]`).
    Glob,
    /// `pmatch (paths)`: the value is one of the paths or below one of them.
    Pmatch,
    /// `exists`: the field has a value.
    Exists,
    /// `bcontains` with a hex byte string.
    BContains,
    /// `bstartswith` with a hex byte string.
    BStartsWith,
}

impl Op {
    fn from_word(w: &str) -> Option<Op> {
        Some(match w {
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "startswith" => Op::StartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "pmatch" => Op::Pmatch,
            "exists" => Op::Exists,
            "bcontains" => Op::BContains,
            "bstartswith" => Op::BStartsWith,
            _ => return None,
        })
    }

    /// The operator as written in conditions.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::StartsWith => "startswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::Pmatch => "pmatch",
            Op::Exists => "exists",
            Op::BContains => "bcontains",
            Op::BStartsWith => "bstartswith",
        }
    }

    /// Whether the operator takes a parenthesised list on its right.
    pub(crate) fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::Pmatch)
    }

    /// Parses an operator as written in an exception's `comps`.
    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s.trim() {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            other => return Op::from_word(other),
        })
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field reference as written: `name` or `name[arg]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FieldRef {
    /// The field name, e.g. `ka.user.name`.
    pub name: String,
    /// The argument inside brackets, if any.
    pub arg: Option<String>,
}

impl fmt::Display for FieldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.arg {
            Some(a) => write!(f, "{}[{}]", self.name, a),
            None => f.write_str(&self.name),
        }
    }
}

/// A value operand: bare words may name lists (inside parentheses), quoted strings never do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    /// A bare word.
    Bare(String),
    /// A quoted string (quotes removed, escapes resolved).
    Quoted(String),
}

impl Operand {
    pub(crate) fn text(&self) -> &str {
        match self {
            Operand::Bare(s) | Operand::Quoted(s) => s,
        }
    }
}

/// The right-hand side of a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rhs {
    /// `exists` takes nothing.
    None,
    /// A single value.
    Value(Operand),
    /// A parenthesised list.
    List(Vec<Operand>),
    /// `val(field)`: another field of the same event.
    Field(FieldRef),
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ast {
    /// All of these.
    And(Vec<Ast>),
    /// Any of these.
    Or(Vec<Ast>),
    /// Negation.
    Not(Box<Ast>),
    /// A macro reference, by name.
    Macro(String),
    /// A field comparison.
    Cmp {
        /// The field.
        field: FieldRef,
        /// The operator.
        op: Op,
        /// The operand(s).
        rhs: Rhs,
    },
}

/// A syntax error with the byte offset in the condition where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} at offset {offset} of the condition")]
pub struct SyntaxError {
    /// Byte offset into the condition text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Sym(Op),
    Word(String),
    Quoted(String),
}

/// Deepest nesting accepted, so that hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 200;

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '<' | '>' | '!' | '"' | '\''))
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let err = |m: &str| SyntaxError {
            offset: i,
            message: m.to_owned(),
        };
        match c {
            '(' => {
                chars.next();
                out.push((i, Tok::LParen));
            }
            ')' => {
                chars.next();
                out.push((i, Tok::RParen));
            }
            ',' => {
                chars.next();
                out.push((i, Tok::Comma));
            }
            '=' => {
                chars.next();
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                }
                out.push((i, Tok::Sym(Op::Eq)));
            }
            '!' => {
                chars.next();
                if chars.peek().map(|p| p.1) == Some('=') {
                    chars.next();
                    out.push((i, Tok::Sym(Op::Ne)));
                } else {
                    return Err(err("expected '=' after '!'"));
                }
            }
            '<' | '>' => {
                chars.next();
                let eq = chars.peek().map(|p| p.1) == Some('=');
                if eq {
                    chars.next();
                }
                let op = match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                };
                out.push((i, Tok::Sym(op)));
            }
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, e)) => s.push(e),
                            None => break,
                        }
                    } else {
                        s.push(d);
                    }
                }
                if !closed {
                    return Err(err("unterminated quoted string"));
                }
                out.push((i, Tok::Quoted(s)));
            }
            _ => {
                let mut s = String::new();
                while let Some(&(_, d)) = chars.peek() {
                    if d == '[' {
                        // A field argument: everything up to the matching ']' belongs to the word.
                        let mut depth = 0usize;
                        let mut closed = false;
                        for (_, e) in chars.by_ref() {
                            s.push(e);
                            if e == '[' {
                                depth += 1;
                            } else if e == ']' {
                                depth = depth.saturating_sub(1);
                                if depth == 0 {
                                    closed = true;
                                    break;
                                }
                            }
                        }
                        if !closed {
                            return Err(err("unterminated '[' in a field argument"));
                        }
                    } else if is_word_char(d) {
                        s.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push((i, Tok::Word(s)));
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.1)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.0)
    }

    fn err<T>(&self, m: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError {
            offset: self.offset(),
            message: m.into(),
        })
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.1.clone());
        self.pos += 1;
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or_expr(&mut self) -> Result<Ast, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("condition nested too deeply");
        }
        let mut items = vec![self.and_expr()?];
        while self.is_word("or") {
            self.pos += 1;
            items.push(self.and_expr()?);
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Ast, SyntaxError> {
        let mut items = vec![self.not_expr()?];
        while self.is_word("and") {
            self.pos += 1;
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Ast::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Ast, SyntaxError> {
        let mut nots = 0usize;
        while self.is_word("not") {
            self.pos += 1;
            nots += 1;
            if nots > MAX_DEPTH {
                return self.err("too many 'not'");
            }
        }
        let mut e = self.primary()?;
        for _ in 0..nots {
            e = Ast::Not(Box::new(e));
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Ast, SyntaxError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or_expr()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => {
                        self.pos = self.pos.saturating_sub(1);
                        self.err("expected ')'")
                    }
                }
            }
            Some(Tok::Word(w)) => {
                if matches!(w.as_str(), "and" | "or" | "not") {
                    self.pos -= 1;
                    return self.err(format!("unexpected '{w}'"));
                }
                let op = match self.peek() {
                    Some(Tok::Sym(op)) => Some(*op),
                    Some(Tok::Word(x)) => Op::from_word(x),
                    _ => None,
                };
                match op {
                    Some(op) => {
                        self.pos += 1;
                        let field = split_field(&w);
                        let rhs = self.rhs(op)?;
                        Ok(Ast::Cmp { field, op, rhs })
                    }
                    None => {
                        if w.contains('[') || w.is_empty() {
                            self.pos -= 1;
                            return self.err(format!("expected an operator after '{w}'"));
                        }
                        Ok(Ast::Macro(w))
                    }
                }
            }
            Some(_) => {
                self.pos -= 1;
                self.err("expected a field, a macro or '('")
            }
            None => self.err("unexpected end of condition"),
        }
    }

    fn operand(&mut self) -> Result<Operand, SyntaxError> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(Operand::Bare(w)),
            Some(Tok::Quoted(q)) => Ok(Operand::Quoted(q)),
            _ => {
                self.pos = self.pos.saturating_sub(1);
                self.err("expected a value")
            }
        }
    }

    fn rhs(&mut self, op: Op) -> Result<Rhs, SyntaxError> {
        if op == Op::Exists {
            return Ok(Rhs::None);
        }
        if op.takes_list() {
            if self.peek() != Some(&Tok::LParen) {
                return self.err(format!("expected '(' after '{op}'"));
            }
            self.pos += 1;
            let mut items = Vec::new();
            if self.peek() == Some(&Tok::RParen) {
                self.pos += 1;
                return Ok(Rhs::List(items));
            }
            loop {
                items.push(self.operand()?);
                match self.next() {
                    Some(Tok::Comma) => {}
                    Some(Tok::RParen) => return Ok(Rhs::List(items)),
                    _ => {
                        self.pos = self.pos.saturating_sub(1);
                        return self.err("expected ',' or ')' in a list");
                    }
                }
            }
        }
        if self.is_word("val") && self.toks.get(self.pos + 1).map(|t| &t.1) == Some(&Tok::LParen) {
            if let (Some(Tok::Word(f)), Some(Tok::RParen)) = (
                self.toks.get(self.pos + 2).map(|t| &t.1),
                self.toks.get(self.pos + 3).map(|t| &t.1),
            ) {
                let field = split_field(f);
                self.pos += 4;
                return Ok(Rhs::Field(field));
            }
            return self.err("expected val(field)");
        }
        Ok(Rhs::Value(self.operand()?))
    }
}

/// Splits `name[arg]` into its parts.
pub(crate) fn split_field(w: &str) -> FieldRef {
    match w.find('[') {
        Some(i) if w.ends_with(']') => FieldRef {
            name: w.get(..i).unwrap_or_default().to_owned(),
            arg: w.get(i + 1..w.len() - 1).map(str::to_owned),
        },
        _ => FieldRef {
            name: w.to_owned(),
            arg: None,
        },
    }
}

/// Parses a condition.
///
/// # Errors
/// On a syntax error, with the byte offset where it was found.
pub fn parse(text: &str) -> Result<Ast, SyntaxError> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.len(),
        depth: 0,
    };
    if p.peek().is_none() {
        return p.err("empty condition");
    }
    let ast = p.or_expr()?;
    if p.peek().is_some() {
        return p.err("unexpected text after the end of the condition");
    }
    Ok(ast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(name: &str, op: Op, rhs: Rhs) -> Ast {
        Ast::Cmp {
            field: split_field(name),
            op,
            rhs,
        }
    }

    #[test]
    fn precedence_and_lists() {
        let a = parse("a and not b or ka.verb in (get, \"list\", l) and x.y[/p/q]=1")
            .unwrap_or(Ast::Macro(String::new()));
        let want = Ast::Or(vec![
            Ast::And(vec![
                Ast::Macro("a".into()),
                Ast::Not(Box::new(Ast::Macro("b".into()))),
            ]),
            Ast::And(vec![
                cmp(
                    "ka.verb",
                    Op::In,
                    Rhs::List(vec![
                        Operand::Bare("get".into()),
                        Operand::Quoted("list".into()),
                        Operand::Bare("l".into()),
                    ]),
                ),
                cmp("x.y[/p/q]", Op::Eq, Rhs::Value(Operand::Bare("1".into()))),
            ]),
        ]);
        assert_eq!(a, want);
    }

    #[test]
    fn operators_glued_to_words() {
        assert_eq!(
            parse("ka.target.namespace!=kube-system"),
            Ok(cmp(
                "ka.target.namespace",
                Op::Ne,
                Rhs::Value(Operand::Bare("kube-system".into()))
            ))
        );
        assert_eq!(
            parse("f>=3"),
            Ok(cmp("f", Op::Ge, Rhs::Value(Operand::Bare("3".into()))))
        );
        assert_eq!(
            parse("f == 'a b'"),
            Ok(cmp("f", Op::Eq, Rhs::Value(Operand::Quoted("a b".into()))))
        );
        assert_eq!(parse("f exists"), Ok(cmp("f", Op::Exists, Rhs::None)));
        assert_eq!(
            parse("a != val(b.c)"),
            Ok(cmp("a", Op::Ne, Rhs::Field(split_field("b.c"))))
        );
    }

    #[test]
    fn errors_have_offsets() {
        assert_eq!(parse("a and").map_err(|e| e.offset), Err(5));
        assert!(parse("(a").is_err());
        assert!(parse("f in x").is_err());
        assert!(parse("f = \"open").is_err());
        assert!(parse("").is_err());
        assert!(parse("a b").is_err());
        assert!(parse(&"(".repeat(10_000)).is_err());
    }
}
