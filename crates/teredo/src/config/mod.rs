//! Miredo's configuration files, read unchanged: `miredo.conf` for a client or relay and
//! `miredo-server.conf` for a server (miredo-facts §1.4–§1.6).
//!
//! The `parse_*` functions are pure: they take the text and the name to report it under,
//! do no I/O and no DNS (host names are kept as [`Host::Name`]), never panic, and return
//! the typed configuration, if the file is usable, with every problem found as a
//! [`Diagnostic`] printed `FILE:LINE: message`. The `load_*` functions read the file
//! first.
//!
//! Semantics, as in Miredo 1.2.6 except where noted:
//! - one `Name value` per line; anything after the value is ignored; a line whose first
//!   token starts with `#` is a comment; blank lines are ignored; a name without a value
//!   is a warning; lines longer than 1055 bytes are skipped with a warning;
//! - names, `RelayType` values and syslog facilities are case-insensitive;
//! - the first occurrence of a directive wins; later ones, unknown directives and
//!   directives for the other file or role are warnings;
//! - a bad value, or a missing required directive, is an error and gives no
//!   configuration;
//! - unlike Miredo, the last line is read even without a final newline, and IPv4 values
//!   are checked for syntax without resolving names.

mod client;
mod client_keys;
mod diagnostic;
mod directive;
mod host;
mod load;
mod log_level;
mod prefix;
mod reader;
mod relay_type;
mod server;
mod syntax;
mod syslog;
mod value;

pub use client::{
    ClientRelayConfig, ClientRelayOverrides, DEFAULT_MAX_PEERS, parse_client_relay, parse_client_relay_bytes,
    parse_client_relay_with,
};
pub use client_keys::{ClientKey, MAX_CLIENT_KEYS, parse_client_keys};
pub use diagnostic::{Diagnostic, Severity};
pub use host::Host;
pub use load::{LoadError, MAX_FILE_SIZE, load_client_keys, load_client_relay, load_server};
pub use log_level::LogLevel;
pub use prefix::ServicePrefix;
pub use relay_type::RelayType;
pub use server::{ServerConfig, ServerOverrides, parse_server, parse_server_bytes, parse_server_with};
pub use syslog::SyslogFacility;
pub use value::{MAX_INTERFACE_NAME, MAX_MAX_PEERS, MIN_MTU, ValueError};

/// The default `miredo.conf` path (Miredo with `--sysconfdir=/etc`, miredo-facts §1.2).
pub const DEFAULT_CLIENT_RELAY_FILE: &str = "/etc/miredo/miredo.conf";
/// The default `miredo-server.conf` path.
pub const DEFAULT_SERVER_FILE: &str = "/etc/miredo/miredo-server.conf";

/// The names of every directive a `miredo.conf` may hold (a client's and a relay's),
/// Miredo's first, then teredo's own, as this reader spells them.
pub fn client_relay_directives() -> Vec<&'static str> {
    directive::names(directive::FileKind::ClientRelay)
}

/// The names of every directive a `miredo-server.conf` may hold.
pub fn server_directives() -> Vec<&'static str> {
    directive::names(directive::FileKind::Server)
}

/// What reading a configuration file gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<T> {
    /// The configuration; `None` when any diagnostic is an error.
    pub config: Option<T>,
    /// Every problem found, sorted by line; those about the whole file (line 0) last.
    pub diagnostics: Vec<Diagnostic>,
}

impl<T> Parsed<T> {
    /// True when nothing at all was reported: what `teredo check-config` requires.
    pub fn is_clean(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// True when an error was reported (and so `config` is `None`).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn never_panics_on_bytes(text in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let o = ClientRelayOverrides::default();
            let p = parse_client_relay_bytes(&text, "f", &o);
            prop_assert_eq!(p.config.is_some(), !p.has_errors());
            let _ = parse_server_bytes(&text, "f", &ServerOverrides::default());
        }

        #[test]
        fn never_panics_on_directive_lines(
            lines in proptest::collection::vec(
                (
                    prop::sample::select(vec![
                        "RelayType", "ServerAddress", "ServerAddress2", "Prefix",
                        "InterfaceMTU", "InterfaceName", "BindAddress", "BindPort",
                        "SyslogFacility", "ServerBindAddress", "ServerBindAddress2",
                        "bindport", "#", "Unknown",
                    ]),
                    "[ -~]{0,40}",
                ),
                0..12,
            ),
            final_newline in any::<bool>(),
        ) {
            let mut text = lines
                .iter()
                .map(|(n, v)| format!("{n} {v}"))
                .collect::<Vec<_>>()
                .join("\n");
            if final_newline {
                text.push('\n');
            }
            for p in [parse_client_relay(&text, "f").diagnostics, parse_server(&text, "f").diagnostics] {
                for d in p {
                    prop_assert!(d.line <= lines.len());
                    prop_assert!(!d.message.is_empty());
                }
            }
            let c = parse_client_relay(&text, "f");
            prop_assert_eq!(c.config.is_some(), !c.has_errors());
            let s = parse_server(&text, "f");
            prop_assert_eq!(s.config.is_some(), !s.has_errors());
        }
    }

    #[test]
    fn clean_files() {
        assert!(parse_client_relay("ServerAddress 192.0.2.1", "f").is_clean());
        assert!(parse_server("ServerBindAddress 192.0.2.1", "f").is_clean());
    }
}

/// Entry points for the configuration fuzz targets in `fuzz/` and for the test that replays
/// their corpora on stable: any bytes as a client/relay file and as a server file.
#[doc(hidden)]
pub mod fuzz {
    use super::{ClientRelayOverrides, ServerOverrides, parse_client_relay_bytes, parse_server_bytes};

    /// Reads `data` as a `miredo.conf`; every outcome must carry diagnostics or a config.
    pub fn client_relay(data: &[u8]) {
        let p = parse_client_relay_bytes(data, "fuzz.conf", &ClientRelayOverrides::default());
        assert!(p.config.is_some() || !p.diagnostics.is_empty(), "a rejected file says why");
    }

    /// Reads `data` as a `miredo-server.conf`.
    pub fn server(data: &[u8]) {
        let p = parse_server_bytes(data, "fuzz.conf", &ServerOverrides::default());
        assert!(p.config.is_some() || !p.diagnostics.is_empty(), "a rejected file says why");
    }
}

/// The line of the directive `name` that applies in `text` (the first one, as Miredo
/// reads them), so that a problem found after reading — a host name that does not
/// resolve, an interface name the kernel refuses — can be reported as `FILE:LINE`.
pub fn directive_line(text: &[u8], name: &str) -> Option<usize> {
    let mut ignored = Vec::new();
    syntax::lex(text, "", &mut ignored)
        .into_iter()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map(|s| s.line)
}

#[cfg(test)]
mod directive_line_tests {
    use super::directive_line;

    #[test]
    fn first_occurrence_any_case() {
        let text =
            b"# comment\nRelayType client\n\nbindaddress 192.0.2.7\nBindAddress 192.0.2.8\nServerAddress";
        assert_eq!(directive_line(text, "BindAddress"), Some(4));
        assert_eq!(directive_line(text, "RelayType"), Some(2));
        // A name without a value is no setting.
        assert_eq!(directive_line(text, "ServerAddress"), None);
        assert_eq!(directive_line(text, "InterfaceName"), None);
    }
}
