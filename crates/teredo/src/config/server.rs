//! Reading `miredo-server.conf`, the configuration of a Teredo server (RFC 4380 §5.3),
//! with the directives and defaults of miredo-facts §1.6.

use std::net::Ipv4Addr;

use teredo_proto::address::is_global_unicast;

use super::Parsed;
use super::directive::{Directive, FileKind};
use super::host::Host;
use super::log_level::LogLevel;
use super::prefix::ServicePrefix;
use super::reader::{Reader, Taken};
use super::syslog::SyslogFacility;
use super::value::{MIN_MTU, parse_bool, parse_hook_path, parse_mtu, parse_socket_address};

/// A valid `miredo-server.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `ServerBindAddress`, or the address named on the command line: the primary
    /// server address (UDP port 3544 is bound on it). A literal is global unicast.
    pub server_bind_address: Host,
    /// `ServerBindAddress2`, the secondary address (RFC 4380 §5.3.1). When the file
    /// does not set it and the primary is a literal, it is the primary plus one, as in
    /// Miredo; when the primary is a name, `None`: the daemon adds one once it has
    /// resolved the primary.
    pub server_bind_address2: Option<Host>,
    /// `Prefix`, the advertised service prefix (default 2001::/32).
    pub prefix: ServicePrefix,
    /// `InterfaceMTU`, the MTU in router advertisements (default and minimum 1280).
    pub interface_mtu: u16,
    /// `SyslogFacility` (default `daemon`).
    pub syslog_facility: SyslogFacility,
    /// `MetricsAddress ADDRESS:PORT` (teredo): where `GET /metrics` is served; `None` (the
    /// default) listens on no TCP port.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `LogLevel` (teredo, default `info`).
    pub log_level: LogLevel,
    /// `ClientKeys PATH` (teredo): the key file of secure qualification (RFC 4380
    /// §5.2.2), read by the daemon at start-up (see [`super::parse_client_keys`]).
    pub client_keys: Option<std::path::PathBuf>,
    /// `RequireAuthentication yes|no` (teredo, default `no`): answer only the RSs of the
    /// clients of `ClientKeys`, authenticated.
    pub require_authentication: bool,
}

/// What the command line may set instead of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOverrides {
    /// The positional address of `miredo-server` (miredo-facts §1.2): it replaces
    /// `ServerBindAddress` and `ServerBindAddress2`, and the secondary becomes the
    /// primary plus one.
    pub server_bind_address: Option<Host>,
}

/// Reads the text of a `miredo-server.conf` with nothing set on the command line. `file`
/// names it in the diagnostics. Does no I/O and no DNS; never panics.
pub fn parse_server(text: &str, file: &str) -> Parsed<ServerConfig> {
    parse_server_bytes(text.as_bytes(), file, &ServerOverrides::default())
}

/// Reads the text of a `miredo-server.conf`, with `overrides` from the command line.
pub fn parse_server_with(text: &str, file: &str, overrides: &ServerOverrides) -> Parsed<ServerConfig> {
    parse_server_bytes(text.as_bytes(), file, overrides)
}

/// Reads the raw bytes of a `miredo-server.conf`, which need not be UTF-8, with
/// `overrides` from the command line.
pub fn parse_server_bytes(text: &[u8], file: &str, overrides: &ServerOverrides) -> Parsed<ServerConfig> {
    let mut r = Reader::new(text, file, FileKind::Server);

    let first = r.take(Directive::ServerBindAddress, Host::parse_global);
    let second = r.take(Directive::ServerBindAddress2, Host::parse_global);
    let prefix = r.take(Directive::Prefix, str::parse).value().unwrap_or_default();
    let interface_mtu = r.take(Directive::InterfaceMtu, parse_mtu).value().unwrap_or(MIN_MTU);
    let syslog_facility = r.take(Directive::SyslogFacility, str::parse).value().unwrap_or_default();
    let metrics_address = r.take(Directive::MetricsAddress, parse_socket_address).value();
    let log_level = r.take(Directive::LogLevel, str::parse).value().unwrap_or_default();
    let client_keys = r.take(Directive::ClientKeys, parse_hook_path).value();
    let require = r.take(Directive::RequireAuthentication, parse_bool);
    let require_authentication = match require {
        Taken::Present(true, line) if client_keys.is_none() => {
            r.error(line, "RequireAuthentication yes needs ClientKeys: no client could qualify");
            true
        }
        t => t.value().unwrap_or(false),
    };

    let (primary, primary_line, second) = match (&overrides.server_bind_address, first) {
        (Some(host), _) => (Some(host.clone()), 0, Taken::Absent),
        (None, Taken::Present(host, line)) => (Some(host), line, second),
        (None, Taken::Invalid) => (None, 0, second),
        (None, Taken::Absent) => {
            r.error(0, "ServerBindAddress is required, unless an address is named on the command line");
            (None, 0, second)
        }
    };

    let secondary = match (&primary, second) {
        (_, Taken::Invalid) => None,
        (Some(p), Taken::Present(s, line)) => {
            if p.ipv4().is_some() && p.ipv4() == s.ipv4() {
                r.error(line, format!("ServerBindAddress2 {s} must differ from ServerBindAddress"));
            }
            Some(s)
        }
        (None, Taken::Present(s, _)) => Some(s),
        (Some(Host::Ipv4(p)), Taken::Absent) => match next_address(*p) {
            Some(s) => Some(Host::Ipv4(s)),
            None => {
                r.error(
                    primary_line,
                    format!(
                        "the secondary address after {p} is not a global unicast IPv4 \
                         address (RFC 4380 §5.2.4): set ServerBindAddress2"
                    ),
                );
                None
            }
        },
        (_, Taken::Absent) => None,
    };

    let config = primary.map(|server_bind_address| ServerConfig {
        server_bind_address,
        server_bind_address2: secondary,
        prefix,
        interface_mtu,
        syslog_facility,
        metrics_address,
        log_level,
        client_keys,
        require_authentication,
    });
    r.finish(None, config)
}

/// The primary address plus one, Miredo's default secondary (miredo-facts §1.6), if it
/// is global unicast.
fn next_address(primary: Ipv4Addr) -> Option<Ipv4Addr> {
    u32::from(primary).checked_add(1).map(Ipv4Addr::from).filter(|a| is_global_unicast(*a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(p: &Parsed<ServerConfig>) -> Vec<String> {
        p.diagnostics.iter().map(ToString::to_string).collect()
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Host {
        Host::Ipv4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn secondary_defaults_to_primary_plus_one() {
        let p = parse_server("ServerBindAddress 192.0.2.255\n", "s");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.server_bind_address, v4(192, 0, 2, 255));
        assert_eq!(c.server_bind_address2, Some(v4(192, 0, 3, 0)));
        assert_eq!(c.prefix, ServicePrefix::STANDARD);
        assert_eq!(c.interface_mtu, 1280);
        assert_eq!(c.syslog_facility, SyslogFacility::Daemon);
    }

    #[test]
    fn full_file() {
        let p = parse_server(
            "ServerBindAddress 192.0.2.1\nServerBindAddress2 198.51.100.7\nPrefix 3ffe:831f::\n\
             InterfaceMTU 1400\nSyslogFacility user",
            "s",
        );
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.server_bind_address2, Some(v4(198, 51, 100, 7)));
        assert_eq!(c.prefix, ServicePrefix(0x3ffe_831f));
        assert_eq!(c.interface_mtu, 1400);
        assert_eq!(c.syslog_facility, SyslogFacility::User);
    }

    #[test]
    fn names_are_kept() {
        let p = parse_server("ServerBindAddress teredo.example.net\n", "s");
        let c = p.config.unwrap();
        assert_eq!(c.server_bind_address, Host::Name("teredo.example.net".into()));
        assert_eq!(c.server_bind_address2, None);
    }

    #[test]
    fn errors() {
        let p = parse_server("ServerBindAddress 223.255.255.255\n", "s");
        assert_eq!(
            messages(&p),
            [
                "s:1: the secondary address after 223.255.255.255 is not a global unicast IPv4 address (RFC 4380 §5.2.4): set ServerBindAddress2"
            ]
        );
        let p = parse_server("ServerBindAddress 192.0.2.1\nServerBindAddress2 192.0.2.1\n", "s");
        assert_eq!(messages(&p), ["s:2: ServerBindAddress2 192.0.2.1 must differ from ServerBindAddress"]);
        let p = parse_server("Prefix 2001::\n", "s");
        assert_eq!(
            messages(&p),
            ["s: ServerBindAddress is required, unless an address is named on the command line"]
        );
        assert!(p.config.is_none());
        let p = parse_server("ServerBindAddress 100.64.0.1\n", "s");
        assert_eq!(
            messages(&p),
            [
                "s:1: invalid ServerBindAddress \"100.64.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)"
            ]
        );
    }

    #[test]
    fn client_directives_are_misplaced() {
        let p = parse_server("ServerBindAddress 192.0.2.1\nServerAddress 192.0.2.1\nRelayType cone\n", "s");
        assert_eq!(
            messages(&p),
            [
                "s:2: directive \"ServerAddress\" ignored: it is a client and relay directive (miredo.conf)",
                "s:3: directive \"RelayType\" ignored: it is a client and relay directive (miredo.conf)",
            ]
        );
        assert!(p.config.is_some());
    }

    #[test]
    fn override_replaces_both_addresses() {
        let o = ServerOverrides { server_bind_address: Some(v4(203, 0, 113, 10)) };
        let p = parse_server_with("ServerBindAddress2 192.0.2.9\n", "s", &o);
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.server_bind_address, v4(203, 0, 113, 10));
        assert_eq!(c.server_bind_address2, Some(v4(203, 0, 113, 11)));
    }
}
