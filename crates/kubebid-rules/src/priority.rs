//! Falco's eight priorities, most severe first.

use std::fmt;
use std::str::FromStr;

/// A rule's priority, with Falco's names and order: [`Priority::Emergency`] is the most severe and
/// [`Priority::Debug`] the least. `Ord` follows severity, so `a > b` means `a` is more severe, and a
/// minimum-priority filter keeps `p >= min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Least severe.
    Debug,
    /// `informational` (`info` is accepted when parsing).
    Informational,
    /// `notice`.
    Notice,
    /// `warning` (`warn` is accepted when parsing).
    Warning,
    /// `error`.
    Error,
    /// `critical`.
    Critical,
    /// `alert`.
    Alert,
    /// Most severe.
    Emergency,
}

impl Priority {
    /// Every priority, most severe first.
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// The name Falco prints in alerts (`"Warning"`, `"Informational"`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The priority name was none of Falco's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown priority {0:?} (expected emergency, alert, critical, error, warning, notice, informational or debug)"
)]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, as in rules files; `info` and `warn` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" | "warn" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_owned())),
        })
    }
}
