//! Problems found while reading a configuration file, each with the file name and line
//! number, printed as `FILE:LINE: message` (or `FILE: message` for a problem with the
//! whole file, such as a missing required directive).

use core::fmt;

/// How serious a [`Diagnostic`] is.
///
/// The daemons start with warnings and refuse to start with errors, as Miredo does
/// (miredo-facts §1.4). `teredo check-config` treats both as failures, like
/// `miredo-checkconf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The directive or line is ignored; the configuration is still usable.
    Warning,
    /// The configuration cannot be used.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Warning => "warning",
            Self::Error => "error",
        })
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name, as the caller gave it.
    pub file: String,
    /// The line number, starting at 1; 0 for a problem with the whole file.
    pub line: usize,
    /// Warning or error.
    pub severity: Severity,
    /// What is wrong, without the file name and line number.
    pub message: String,
}

impl Diagnostic {
    /// A warning at `line` of `file`.
    pub fn warning(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self::new(file, line, Severity::Warning, message)
    }

    /// An error at `line` of `file`.
    pub fn error(file: &str, line: usize, message: impl Into<String>) -> Self {
        Self::new(file, line, Severity::Error, message)
    }

    fn new(file: &str, line: usize, severity: Severity, message: impl Into<String>) -> Self {
        Self { file: file.to_owned(), line, severity, message: message.into() }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

/// Sorts diagnostics by line, keeping the order of those on the same line, with the
/// whole-file ones (line 0) last.
pub(crate) fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| if d.line == 0 { usize::MAX } else { d.line });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        let d = Diagnostic::warning("miredo.conf", 3, "unknown directive \"Foo\"");
        assert_eq!(d.to_string(), "miredo.conf:3: unknown directive \"Foo\"");
        let d = Diagnostic::error("miredo.conf", 0, "ServerAddress is required");
        assert_eq!(d.to_string(), "miredo.conf: ServerAddress is required");
        assert!(d.is_error());
    }

    #[test]
    fn sorted_by_line_file_level_last() {
        let mut v = vec![
            Diagnostic::error("f", 0, "a"),
            Diagnostic::warning("f", 5, "b"),
            Diagnostic::warning("f", 2, "c"),
            Diagnostic::warning("f", 5, "d"),
        ];
        sort(&mut v);
        let m: Vec<_> = v.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(m, ["c", "b", "d", "a"]);
    }
}
