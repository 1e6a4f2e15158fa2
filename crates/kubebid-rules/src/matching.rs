//! Compiled tests on one value: the operators with their constants lowered once.

use std::cmp::Ordering;

use crate::condition::Op;
use crate::source::Values;

/// A sorted set of strings, searched by binary search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Set(pub(crate) Box<[Box<str>]>);

impl Set {
    pub(crate) fn new(mut items: Vec<String>) -> Self {
        items.sort_unstable();
        items.dedup();
        Set(items.into_iter().map(String::into_boxed_str).collect())
    }

    pub(crate) fn contains(&self, v: &str) -> bool {
        self.0.binary_search_by(|x| x.as_ref().cmp(v)).is_ok()
    }
}

/// A test of a field's values against pre-lowered constants.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Test {
    Exists,
    Eq(Box<str>),
    Ne(Box<str>),
    Order(Op, Box<str>, Option<f64>),
    In(Set),
    Intersects(Set),
    Contains(Box<str>),
    /// The needle is stored lower-cased.
    IContains(Box<str>),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    Glob(Box<str>),
    Pmatch(Box<[Box<str>]>),
    BContains(Box<[u8]>),
    BStartsWith(Box<[u8]>),
}

fn icontains(hay: &str, lower_needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), lower_needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

fn bytes_contain(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn pmatch(value: &str, prefix: &str) -> bool {
    value == prefix
        || value
            .strip_prefix(prefix)
            .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
}

fn order(op: Op, v: &str, c: &str, cnum: Option<f64>) -> bool {
    let ord = match (cnum, v.trim().parse::<f64>().ok()) {
        (Some(c), Some(v)) => v.partial_cmp(&c),
        _ => Some(v.cmp(c)),
    };
    matches!(
        (op, ord),
        (Op::Lt, Some(Ordering::Less))
            | (Op::Le, Some(Ordering::Less | Ordering::Equal))
            | (Op::Gt, Some(Ordering::Greater))
            | (Op::Ge, Some(Ordering::Greater | Ordering::Equal))
    )
}

/// Shell-style glob over bytes: `*`, `?` and `[...]` classes (`[!...]` / `[^...]` negate, `a-z` ranges).
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => class(p, pi, t.get(ti).copied().unwrap_or(0)),
            Some(&c) if t.get(ti) == Some(&c) => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Matches `c` against the class starting at `p[start] == b'['`; returns the index after the class.
fn class(p: &[u8], start: usize, c: u8) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &lo = p.get(i)?;
        if lo == b']' && !first {
            break;
        }
        first = false;
        if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|&h| h != b']') {
            let hi = *p.get(i + 2)?;
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    (matched != negate).then_some(i + 1)
}

impl Test {
    fn one(&self, v: &str) -> bool {
        match self {
            Test::Exists => true,
            Test::Eq(c) => v == &**c,
            Test::Ne(c) => v != &**c,
            Test::Order(op, c, n) => order(*op, v, c, *n),
            Test::In(s) | Test::Intersects(s) => s.contains(v),
            Test::Contains(c) => v.contains(&**c),
            Test::IContains(c) => icontains(v, c),
            Test::StartsWith(c) => v.starts_with(&**c),
            Test::EndsWith(c) => v.ends_with(&**c),
            Test::Glob(g) => glob(g, v),
            Test::Pmatch(ps) => ps.iter().any(|p| pmatch(v, p)),
            Test::BContains(b) => bytes_contain(v.as_bytes(), b),
            Test::BStartsWith(b) => v.as_bytes().starts_with(b),
        }
    }

    /// Falco's semantics over extracted values: a field that is not available (or an empty list) fails
    /// every test; `in` needs every value in the set; `!=` needs no value equal; every other operator
    /// needs some value to pass.
    pub(crate) fn eval(&self, values: &Values<'_>) -> bool {
        let vs = values.as_slice();
        if vs.is_empty() {
            return false;
        }
        match self {
            Test::In(_) | Test::Ne(_) => vs.iter().all(|v| self.one(v.as_str())),
            _ => vs.iter().any(|v| self.one(v.as_str())),
        }
    }
}

/// `op` between a field's values and another field's first value (`val(field)`): both must be available.
pub(crate) fn cross(op: Op, left: &Values<'_>, right: &Values<'_>) -> bool {
    let (Some(r), vs) = (right.as_slice().first(), left.as_slice()) else {
        return false;
    };
    let r = r.as_str();
    if vs.is_empty() {
        return false;
    }
    let one = |v: &str| match op {
        Op::Eq => v == r,
        Op::Ne => v != r,
        Op::Lt | Op::Le | Op::Gt | Op::Ge => order(op, v, r, r.trim().parse().ok()),
        Op::Contains => v.contains(r),
        Op::IContains => icontains(v, &r.to_ascii_lowercase()),
        Op::StartsWith => v.starts_with(r),
        Op::EndsWith => v.ends_with(r),
        Op::Glob => glob(r, v),
        _ => false,
    };
    if op == Op::Ne {
        vs.iter().all(|v| one(v.as_str()))
    } else {
        vs.iter().any(|v| one(v.as_str()))
    }
}

/// Decodes a `bcontains` operand: hex digits (spaces allowed).
pub(crate) fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Val;

    #[test]
    fn globs() {
        assert!(glob("*.sock", "/var/run/docker.sock"));
        assert!(glob("/etc/*", "/etc/passwd"));
        assert!(!glob("/etc/*", "/var/etc"));
        assert!(glob("a?c", "abc"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[!a-c]x", "bx"));
        assert!(glob("*", ""));
        assert!(!glob("a", ""));
        assert!(glob("*a*b*", "xxaxxbxx"));
        assert!(!glob("[", "a"));
    }

    #[test]
    fn list_semantics() {
        let list = Values::List(vec![Val::Str("a"), Val::Str("b")]);
        assert!(Test::In(Set::new(vec!["a".into(), "b".into(), "c".into()])).eval(&list));
        assert!(!Test::In(Set::new(vec!["a".into()])).eval(&list));
        assert!(Test::Intersects(Set::new(vec!["b".into()])).eval(&list));
        assert!(!Test::Ne("a".into()).eval(&list));
        assert!(!Test::Exists.eval(&Values::List(Vec::new())));
        assert!(!Test::Ne("x".into()).eval(&Values::NotAvailable));
    }

    #[test]
    fn operators() {
        assert!(Test::IContains("abc".into()).eval(&Values::One(Val::Str("xxABCxx"))));
        assert!(Test::Order(Op::Ge, "200".into(), Some(200.0)).eval(&Values::One(Val::int(404))));
        assert!(!Test::Order(Op::Lt, "9".into(), Some(9.0)).eval(&Values::One(Val::int(10))));
        assert!(Test::Pmatch(vec!["/etc".into()].into()).eval(&Values::One(Val::Str("/etc/x"))));
        assert!(!Test::Pmatch(vec!["/etc".into()].into()).eval(&Values::One(Val::Str("/etcx"))));
        assert_eq!(hex_bytes("41 42"), Some(vec![0x41, 0x42]));
        assert!(Test::BContains(vec![0x42].into()).eval(&Values::One(Val::Str("AB"))));
    }
}
