//! The line syntax shared by `miredo.conf` and `miredo-server.conf` (miredo-facts §1.4):
//! one setting per line, a name and a value separated by white space, anything after the
//! value ignored (kept as [`Setting::rest`] for the one directive of teredo's that takes
//! a list, a relay's `ServerAddress`), `#` comments, blank lines ignored.
//!
//! Unlike Miredo 1.2.6, the last line is read even when the file does not end with a
//! newline (Miredo skips it as "overly long", miredo-facts §9).

use super::diagnostic::Diagnostic;

/// The longest line Miredo reads, in bytes without the newline (its buffer holds 1056 bytes
/// with the terminating NUL). Longer lines are skipped with a warning, as in Miredo.
pub(crate) const MAX_LINE: usize = 1055;

/// One `name value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The name as written (names are compared without regard to ASCII case).
    pub(crate) name: String,
    /// The value: the second token of the line.
    pub(crate) value: String,
    /// The tokens after the value (bounded by the line length), which Miredo ignores.
    pub(crate) rest: Vec<String>,
    /// The line number, from 1.
    pub(crate) line: usize,
}

/// White space as C's `isspace` in the "C" locale sees it, which is how Miredo splits
/// tokens: space, tab, newline, vertical tab, form feed and carriage return.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits `text` into settings, in file order, and reports over-long lines and names
/// without a value as warnings.
///
/// Bytes that are not UTF-8 are replaced by U+FFFD; no directive name or valid value
/// contains them, so such a setting is reported rather than silently accepted.
pub(crate) fn lex(text: &[u8], file: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<Setting> {
    let mut settings = Vec::new();
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if body.is_empty() {
        return settings;
    }
    for (index, line) in body.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        if line.len() > MAX_LINE {
            diagnostics.push(Diagnostic::warning(
                file,
                number,
                format!("skipped overly long line ({} bytes, at most {MAX_LINE})", line.len()),
            ));
            continue;
        }
        let mut tokens = line.split(|&b| is_space(b)).filter(|t| !t.is_empty());
        let Some(name) = tokens.next() else {
            continue;
        };
        if name.first() == Some(&b'#') {
            continue;
        }
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(value) = tokens.next() else {
            diagnostics.push(Diagnostic::warning(
                file,
                number,
                format!("ignoring line: directive {name:?} has no value"),
            ));
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        let rest = tokens.map(|t| String::from_utf8_lossy(t).into_owned()).collect();
        settings.push(Setting { name, value, rest, line: number });
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex_str(text: &str) -> (Vec<(String, String, usize)>, Vec<String>) {
        let mut d = Vec::new();
        let s = lex(text.as_bytes(), "f", &mut d);
        (
            s.into_iter().map(|s| (s.name, s.value, s.line)).collect(),
            d.into_iter().map(|d| d.to_string()).collect(),
        )
    }

    fn own(v: &[(&str, &str, usize)]) -> Vec<(String, String, usize)> {
        v.iter().map(|&(n, v, l)| (n.to_owned(), v.to_owned(), l)).collect()
    }

    #[test]
    fn tokens_comments_blank_lines() {
        let (s, d) = lex_str(
            "#! /usr/sbin/miredo -f -c\n\n  # comment\nRelayType\tcone  trailing words\r\n\
             \x0bPrefix 2001:0:: #x\n",
        );
        assert_eq!(s, own(&[("RelayType", "cone", 4), ("Prefix", "2001:0::", 5)]));
        assert!(d.is_empty());
        let mut d = Vec::new();
        let s = lex(b"ServerAddress 192.0.2.1  198.51.100.1\t203.0.113.1\n", "f", &mut d);
        assert_eq!(s[0].value, "192.0.2.1");
        assert_eq!(s[0].rest, ["198.51.100.1", "203.0.113.1"]);
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let (s, d) = lex_str("RelayType client\nServerAddress 192.0.2.1");
        assert_eq!(s, own(&[("RelayType", "client", 1), ("ServerAddress", "192.0.2.1", 2)]));
        assert!(d.is_empty());
    }

    #[test]
    fn name_without_value() {
        let (s, d) = lex_str("\nServerAddress   \n");
        assert!(s.is_empty());
        assert_eq!(d, ["f:2: ignoring line: directive \"ServerAddress\" has no value"]);
    }

    #[test]
    fn overly_long_lines() {
        let ok = format!("Name {}", "x".repeat(MAX_LINE - 5));
        let long = format!("Name {}", "x".repeat(MAX_LINE - 4));
        let (s, d) = lex_str(&format!("{ok}\n{long}\nA b"));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].2, 1);
        assert_eq!(s[1], ("A".to_owned(), "b".to_owned(), 3));
        assert_eq!(d, ["f:2: skipped overly long line (1056 bytes, at most 1055)"]);
    }

    #[test]
    fn empty_and_odd_input() {
        assert_eq!(lex_str(""), (vec![], vec![]));
        assert_eq!(lex_str("\n"), (vec![], vec![]));
        let mut d = Vec::new();
        let s = lex(b"N\xff\xfe v\x00\n", "f", &mut d);
        assert_eq!(s[0].name, "N\u{fffd}\u{fffd}");
        assert_eq!(s[0].value, "v\u{0}");
    }
}
