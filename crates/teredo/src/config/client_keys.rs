//! The key file of a server that does secure qualification (RFC 4380 §5.2.2), named by
//! `ClientKeys PATH` in `miredo-server.conf` (teredo): one client a line, its identifier
//! and its shared secret separated by white space (neither may contain any), `#` starting
//! a comment, blank lines ignored. An identifier has 1 to 255 bytes; a repeated one is an
//! error, as is a line with fewer or more than two words. Diagnostics name the file and
//! line; they never show a secret.

use super::Parsed;
use super::diagnostic::Diagnostic;

/// The most clients a key file may list.
pub const MAX_CLIENT_KEYS: usize = 1 << 20;

/// One client of the key file.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey {
    /// Its identifier.
    pub id: String,
    /// Its shared secret.
    pub secret: String,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Reads the text of a key file; `file` names it in the diagnostics. Pure.
pub fn parse_client_keys(text: &[u8], file: &str) -> Parsed<Vec<ClientKey>> {
    let mut keys: Vec<ClientKey> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut diagnostics = Vec::new();
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.split(|&b| b == b'#').next().unwrap_or_default();
        let words: Vec<&[u8]> = raw.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()).collect();
        match words[..] {
            [] => {}
            [id, secret] => {
                let (Ok(id), Ok(secret)) = (std::str::from_utf8(id), std::str::from_utf8(secret)) else {
                    diagnostics.push(Diagnostic::error(file, line, "not UTF-8"));
                    continue;
                };
                if id.len() > 255 {
                    diagnostics.push(Diagnostic::error(
                        file,
                        line,
                        "a client identifier has at most 255 bytes",
                    ));
                } else if !seen.insert(id.to_owned()) {
                    diagnostics.push(Diagnostic::error(file, line, format!("client {id:?} listed twice")));
                } else if keys.len() >= MAX_CLIENT_KEYS {
                    diagnostics.push(Diagnostic::error(
                        file,
                        line,
                        format!("more than {MAX_CLIENT_KEYS} clients"),
                    ));
                    break;
                } else {
                    keys.push(ClientKey { id: id.to_owned(), secret: secret.to_owned() });
                }
            }
            _ => diagnostics.push(Diagnostic::error(
                file,
                line,
                format!("expected \"IDENTIFIER SECRET\", found {} words", words.len()),
            )),
        }
    }
    let config = diagnostics.is_empty().then_some(keys);
    Parsed { config, diagnostics }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clients_and_names_bad_lines() {
        let p = parse_client_keys(b"# clients\nalice s3cret\n\nbob  other # the laptop\n", "k");
        assert!(p.diagnostics.is_empty());
        let k = p.config.unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!((k[1].id.as_str(), k[1].secret.as_str()), ("bob", "other"));
        assert!(!format!("{k:?}").contains("s3cret"));
        let p = parse_client_keys(b"alice s3cret\nalice again\ncarol\ndave a b\n", "k");
        let m: Vec<String> = p.diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            m,
            [
                "k:2: client \"alice\" listed twice",
                "k:3: expected \"IDENTIFIER SECRET\", found 1 words",
                "k:4: expected \"IDENTIFIER SECRET\", found 3 words",
            ]
        );
        assert!(p.config.is_none());
        assert!(!m.concat().contains("s3cret"));
    }
}
