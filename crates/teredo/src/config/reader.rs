//! The directive store both file readers work from: the settings of a file in file order,
//! taken one directive at a time (the first occurrence wins, miredo-facts §1.4), and at
//! the end a warning for every setting nobody took, like Miredo's "Superfluous directive"
//! but saying why (unknown, repeated, or not for this file or role).

use super::Parsed;
use super::diagnostic::{self, Diagnostic};
use super::directive::{Directive, FileKind};
use super::relay_type::RelayType;
use super::syntax::{Setting, lex};
use super::value::ValueError;

/// The outcome of looking a directive up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken<T> {
    /// The file does not set it.
    Absent,
    /// The file sets it to a bad value; an error has been reported.
    Invalid,
    /// The file sets it, at this line.
    Present(T, usize),
}

impl<T> Taken<T> {
    /// The value, if present and valid.
    pub(crate) fn value(self) -> Option<T> {
        match self {
            Self::Present(v, _) => Some(v),
            Self::Absent | Self::Invalid => None,
        }
    }
}

/// One setting of the file, with the directive its name stands for.
struct Entry {
    setting: Setting,
    directive: Option<Directive>,
    used: bool,
}

/// Settings being read, and the diagnostics so far.
pub(crate) struct Reader<'a> {
    file: &'a str,
    kind: FileKind,
    /// Every setting, in file order.
    entries: Vec<Entry>,
    /// The directives taken so far, with the line each was taken from (at most one per
    /// directive).
    taken: Vec<(Directive, usize)>,
    diagnostics: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    /// Splits `text` into settings (reporting syntax warnings).
    pub(crate) fn new(text: &[u8], file: &'a str, kind: FileKind) -> Self {
        let mut diagnostics = Vec::new();
        let entries = lex(text, file, &mut diagnostics)
            .into_iter()
            .map(|setting| Entry { directive: Directive::lookup(&setting.name), setting, used: false })
            .collect();
        Self { file, kind, entries, taken: Vec::new(), diagnostics }
    }

    /// Takes the first setting of `directive` and parses its value, reporting an error
    /// "invalid DIRECTIVE "VALUE": reason" when `parse` refuses it. Each directive is
    /// taken once; later settings of it are reported as duplicates by [`Self::finish`].
    pub(crate) fn take<T>(
        &mut self,
        directive: Directive,
        parse: impl FnOnce(&str) -> Result<T, ValueError>,
    ) -> Taken<T> {
        let Some(entry) = self.entries.iter_mut().find(|e| !e.used && e.directive == Some(directive)) else {
            return Taken::Absent;
        };
        entry.used = true;
        let line = entry.setting.line;
        self.taken.push((directive, line));
        match parse(&entry.setting.value) {
            Ok(v) => Taken::Present(v, line),
            Err(e) => {
                let message = format!("invalid {} {:?}: {e}", directive.name(), entry.setting.value);
                self.error(line, message);
                Taken::Invalid
            }
        }
    }

    /// Like [`Self::take`] for a directive whose value is a list: the value and every
    /// token after it, each parsed by `parse` (each bad one reported on its own).
    pub(crate) fn take_list<T>(
        &mut self,
        directive: Directive,
        parse: impl Fn(&str) -> Result<T, ValueError>,
    ) -> Taken<Vec<T>> {
        let Some(entry) = self.entries.iter_mut().find(|e| !e.used && e.directive == Some(directive)) else {
            return Taken::Absent;
        };
        entry.used = true;
        let line = entry.setting.line;
        self.taken.push((directive, line));
        let tokens: Vec<String> =
            std::iter::once(entry.setting.value.clone()).chain(entry.setting.rest.iter().cloned()).collect();
        let mut values = Vec::with_capacity(tokens.len());
        let mut invalid = false;
        for t in &tokens {
            match parse(t) {
                Ok(v) => values.push(v),
                Err(e) => {
                    self.error(line, format!("invalid {} {t:?}: {e}", directive.name()));
                    invalid = true;
                }
            }
        }
        if invalid { Taken::Invalid } else { Taken::Present(values, line) }
    }

    /// Reports a warning.
    pub(crate) fn warning(&mut self, line: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::warning(self.file, line, message));
    }

    /// Reports an error: the file will give no configuration.
    pub(crate) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(self.file, line, message));
    }

    /// Reports the settings nobody took, sorts the diagnostics by line, and keeps
    /// `config` only when no error was reported. `relay_type` is the role read from the
    /// file (`None` when it was invalid).
    pub(crate) fn finish<C>(mut self, relay_type: Option<RelayType>, config: Option<C>) -> Parsed<C> {
        for e in self.entries.iter().filter(|e| !e.used) {
            let name = &e.setting.name;
            let message = match e.directive {
                None => format!("unknown directive {name:?}"),
                Some(d) => match self.taken.iter().find(|(t, _)| *t == d) {
                    Some((_, first)) => format!(
                        "duplicate directive {name:?} ignored: the first one, at line {first}, \
                         applies"
                    ),
                    None if !d.applies(self.kind, relay_type) => {
                        format!("directive {name:?} ignored: {}", d.misplaced_reason(self.kind))
                    }
                    None => format!("directive {name:?} ignored"),
                },
            };
            self.diagnostics.push(Diagnostic::warning(self.file, e.setting.line, message));
        }
        diagnostic::sort(&mut self.diagnostics);
        let failed = self.diagnostics.iter().any(Diagnostic::is_error);
        Parsed { config: if failed { None } else { config }, diagnostics: self.diagnostics }
    }
}
