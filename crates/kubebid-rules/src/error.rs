//! Errors from loading rules files and compiling them for a source.

use std::fmt;

/// What went wrong while loading or compiling rules, and where: the file, the item (rule, macro or list
/// name) and, when known, the line of the item in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    /// The name the file was added under.
    pub file: String,
    /// The item's kind and name, e.g. `rule "Create Privileged Pod"`; `None` for file-level errors.
    pub item: Option<String>,
    /// 1-based line of the item (or of the YAML error) in the file.
    pub line: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl LoadError {
    pub(crate) fn new(
        file: &str,
        item: Option<String>,
        line: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            item,
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(item) = &self.item {
            write!(f, ": {item}")?;
        }
        write!(f, ": {}", self.message)
    }
}
