//! The source abstraction: how field names resolve and how values come out of one source's events.
//!
//! A [`Source`] (the Kubernetes audit source [`crate::K8sAudit`] now, a node `syscall` source later)
//! resolves each `name[arg]` a rules file uses once, at compile time, to its own field type, and then
//! extracts [`Values`] borrowed from the event wherever it can.

use std::fmt;
use std::hash::Hash;
use std::io::Write as _;

/// One field value. Strings are borrowed from the event where possible; numbers and booleans are kept
/// inline, so extracting them does not allocate either.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Val<'e> {
    /// Borrowed from the event.
    Str(&'e str),
    /// Built for this event (e.g. a JSON object rendered to text).
    Owned(Box<str>),
    /// A number or boolean rendered as text, without a heap allocation.
    Inline(Inline),
}

impl Val<'_> {
    /// The value as text, as Falco compares it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Val::Str(s) => s,
            Val::Owned(s) => s,
            Val::Inline(i) => i.as_str(),
        }
    }

    /// An integer as a value.
    #[must_use]
    pub fn int(n: i64) -> Self {
        Val::Inline(Inline::int(n))
    }

    /// A boolean as a value (`true` / `false`).
    #[must_use]
    pub fn bool(b: bool) -> Self {
        Val::Str(if b { "true" } else { "false" })
    }
}

/// Up to 24 bytes of text stored inline: integers rendered without allocating.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Inline {
    buf: [u8; 24],
    len: u8,
}

impl Inline {
    /// Renders an integer.
    #[must_use]
    pub fn int(n: i64) -> Self {
        let mut buf = [0u8; 24];
        let mut cursor: &mut [u8] = &mut buf;
        // An i64 has at most 20 characters, so this always fits.
        let len = if write!(cursor, "{n}").is_ok() {
            24 - cursor.len()
        } else {
            0
        };
        Self {
            buf,
            len: u8::try_from(len).unwrap_or(0),
        }
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..usize::from(self.len)).unwrap_or_default())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What a field extracts from one event: nothing (Falco's `<NA>`), one value, or a list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Values<'e> {
    /// The field is not available in this event.
    #[default]
    NotAvailable,
    /// A single value.
    One(Val<'e>),
    /// A list field's values (may be empty).
    List(Vec<Val<'e>>),
}

impl<'e> Values<'e> {
    /// The values as a slice: empty when not available.
    #[must_use]
    pub fn as_slice(&self) -> &[Val<'e>] {
        match self {
            Values::NotAvailable => &[],
            Values::One(v) => std::slice::from_ref(v),
            Values::List(v) => v,
        }
    }

    /// Whether the field has at least one value.
    #[must_use]
    pub fn is_available(&self) -> bool {
        !self.as_slice().is_empty()
    }

    /// Renders the values as Falco prints them in outputs: `<NA>` when not available, the value itself
    /// for a single value, and `(a,b)` for a list.
    #[must_use]
    pub fn render(&self) -> Option<String> {
        match self {
            Values::NotAvailable => None,
            Values::One(v) => Some(v.as_str().to_owned()),
            Values::List(vs) if vs.is_empty() => None,
            Values::List(vs) => {
                let mut s = String::from("(");
                for (i, v) in vs.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(v.as_str());
                }
                s.push(')');
                Some(s)
            }
        }
    }
}

/// Why a field name could not be resolved by a source.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The source has no field of that name.
    #[error("unknown field")]
    Unknown,
    /// The field needs an argument (`name[arg]`) and none was given.
    #[error("the field needs an argument")]
    ArgRequired,
    /// The field takes no argument, or not this one.
    #[error("bad argument: {0}")]
    BadArg(String),
}

/// An event source: resolves field names once, then extracts values from events.
///
/// New sources plug in by implementing this trait; the loader, compiler, evaluator and output formatter
/// are generic over it.
pub trait Source {
    /// The event type, borrowing from the caller's data for `'e`.
    type Event<'e>;
    /// A resolved field (name plus parsed argument).
    type Field: Clone + Eq + Hash + fmt::Debug;

    /// The source's name as rules write it in `source:` (e.g. `k8s_audit`).
    fn name(&self) -> &str;

    /// Resolves `name` with its optional `[arg]`.
    ///
    /// # Errors
    /// When the source has no such field, or the argument does not fit it.
    fn field(&self, name: &str, arg: Option<&str>) -> Result<Self::Field, FieldError>;

    /// Extracts a resolved field's values from an event.
    fn extract<'e>(&self, field: &Self::Field, event: &Self::Event<'e>) -> Values<'e>;

    /// When the event happened, for alerts; `None` when the event does not say.
    fn timestamp(&self, event: &Self::Event<'_>) -> Option<jiff::Timestamp>;

    /// Whether a field the source does not support at least belongs to one of the source's field
    /// families (`proc.` of `proc.nosuch`). A rule using an unsupported field of a known family is only
    /// not evaluable (a field the upstream engine has and this one lacks); one using a field of no
    /// family is a mistake in the rule file, refused with its file and line.
    fn known_family(&self, _name: &str) -> bool {
        true
    }
}
