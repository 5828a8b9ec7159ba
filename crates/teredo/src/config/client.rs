//! Reading `miredo.conf`, the configuration of a Teredo client (RFC 4380 §5.2) or relay
//! (RFC 4380 §5.4), with the directives and defaults of miredo-facts §1.5.

use super::Parsed;
use super::directive::{Directive, FileKind};
use super::host::Host;
use super::log_level::LogLevel;
use super::prefix::ServicePrefix;
use super::reader::{Reader, Taken};
use super::relay_type::RelayType;
use super::syslog::SyslogFacility;
use super::value::{
    MIN_MTU, parse_hook_path, parse_interface_name, parse_max_peers, parse_mtu, parse_socket_address,
    parse_u16,
};

/// The default `MaxPeers`: 1,048,576 peers, Miredo's limit with libJudy.
pub const DEFAULT_MAX_PEERS: u32 = 1 << 20;

/// A valid `miredo.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRelayConfig {
    /// `RelayType`: client (the default) or relay.
    pub relay_type: RelayType,
    /// `ServerAddress`, or the server named on the command line: the Teredo server of a
    /// client. Always set for a client, `None` for a relay. A literal is global unicast.
    pub server_address: Option<Host>,
    /// `ServerAddress2`, the server's secondary address (Miredo 1.2.6 reads it and then
    /// ignores it, miredo-facts §1.5). `None` for a relay and when the server was named on
    /// the command line.
    pub server_address2: Option<Host>,
    /// `Prefix`, the service prefix a relay serves (default 2001::/32). A client learns
    /// its prefix from the server and keeps the default here.
    pub prefix: ServicePrefix,
    /// `InterfaceMTU`, the MTU of a relay's tunnel interface (default and minimum 1280).
    /// A client keeps 1280.
    pub interface_mtu: u16,
    /// `InterfaceName`; `None` lets the kernel choose (Miredo has no default name,
    /// miredo-facts §1.5).
    pub interface_name: Option<String>,
    /// `BindAddress`, the local IPv4 address of the UDP socket; `None` is any address.
    pub bind_address: Option<Host>,
    /// `BindPort`, the local UDP port; 0 (the default) lets the kernel choose.
    pub bind_port: u16,
    /// `SyslogFacility` (default `daemon`).
    pub syslog_facility: SyslogFacility,
    /// `ClientHook PATH` (teredo): a Miredo-style hook script run on every state change
    /// instead of teredo configuring the interface itself (miredo-facts §1.8). A user
    /// moving from Miredo names `/etc/miredo/client-hook`. Client only.
    pub client_hook: Option<std::path::PathBuf>,
    /// `MaxPeers N` (teredo): the capacity of the peer table (default
    /// [`DEFAULT_MAX_PEERS`]).
    pub max_peers: u32,
    /// `MetricsAddress ADDRESS:PORT` (teredo): where `GET /metrics` is served; `None` (the
    /// default) listens on no TCP port.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `LogLevel` (teredo, default `info`).
    pub log_level: LogLevel,
}

/// What the command line may set instead of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientRelayOverrides {
    /// The positional server name of `miredo` (miredo-facts §1.2): it replaces
    /// `ServerAddress`, makes it optional, and disables `ServerAddress2`. A relay ignores
    /// it.
    pub server_address: Option<Host>,
}

/// Reads the text of a `miredo.conf` with nothing set on the command line. `file` names
/// it in the diagnostics. Does no I/O and no DNS; never panics.
pub fn parse_client_relay(text: &str, file: &str) -> Parsed<ClientRelayConfig> {
    parse_client_relay_bytes(text.as_bytes(), file, &ClientRelayOverrides::default())
}

/// Reads the text of a `miredo.conf`, with `overrides` from the command line.
pub fn parse_client_relay_with(
    text: &str,
    file: &str,
    overrides: &ClientRelayOverrides,
) -> Parsed<ClientRelayConfig> {
    parse_client_relay_bytes(text.as_bytes(), file, overrides)
}

/// Reads the raw bytes of a `miredo.conf`, which need not be UTF-8 (comments in Latin-1,
/// say), with `overrides` from the command line.
pub fn parse_client_relay_bytes(
    text: &[u8],
    file: &str,
    overrides: &ClientRelayOverrides,
) -> Parsed<ClientRelayConfig> {
    let mut r = Reader::new(text, file, FileKind::ClientRelay);

    let relay_type = match r.take(Directive::RelayType, str::parse) {
        Taken::Absent => Some(RelayType::Client),
        Taken::Invalid => None,
        Taken::Present(t, line) => {
            if t == RelayType::Restricted {
                r.warning(
                    line,
                    "RelayType restricted is deprecated and STRONGLY DISCOURAGED: \
                     use RelayType cone",
                );
            }
            Some(t)
        }
    };
    // With an invalid RelayType the role is unknown: check the directives of both roles.
    let client = relay_type.is_none_or(RelayType::is_client);
    let relay = relay_type.is_none_or(RelayType::is_relay);

    let (mut server_address, mut server_address2) = (None, None);
    if client {
        let first = r.take(Directive::ServerAddress, Host::parse_global);
        let second = r.take(Directive::ServerAddress2, Host::parse_global);
        if let Some(server) = &overrides.server_address {
            server_address = Some(server.clone());
        } else {
            if first == Taken::Absent && relay_type.is_some() {
                r.error(
                    0,
                    "ServerAddress is required for a client (RelayType client), unless a \
                     server is named on the command line",
                );
            }
            server_address = first.value();
            server_address2 = second.value();
        }
    }

    let (mut prefix, mut interface_mtu) = (ServicePrefix::STANDARD, MIN_MTU);
    if relay {
        prefix = r.take(Directive::Prefix, str::parse).value().unwrap_or(prefix);
        interface_mtu = r.take(Directive::InterfaceMtu, parse_mtu).value().unwrap_or(interface_mtu);
    }

    let interface_name = r.take(Directive::InterfaceName, parse_interface_name).value();
    let bind_address = r.take(Directive::BindAddress, str::parse).value();
    let bind_port = r.take(Directive::BindPort, parse_u16).value().unwrap_or(0);
    let syslog_facility = r.take(Directive::SyslogFacility, str::parse).value().unwrap_or_default();
    let client_hook = if client { r.take(Directive::ClientHook, parse_hook_path).value() } else { None };
    let max_peers = r.take(Directive::MaxPeers, parse_max_peers).value().unwrap_or(DEFAULT_MAX_PEERS);
    let metrics_address = r.take(Directive::MetricsAddress, parse_socket_address).value();
    let log_level = r.take(Directive::LogLevel, str::parse).value().unwrap_or_default();

    let config = relay_type.map(|relay_type| ClientRelayConfig {
        relay_type,
        server_address: server_address.filter(|_| relay_type.is_client()),
        server_address2: server_address2.filter(|_| relay_type.is_client()),
        prefix,
        interface_mtu,
        interface_name,
        bind_address,
        bind_port,
        syslog_facility,
        client_hook: client_hook.filter(|_| relay_type.is_client()),
        max_peers,
        metrics_address,
        log_level,
    });
    r.finish(relay_type, config)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn messages(p: &Parsed<ClientRelayConfig>) -> Vec<String> {
        p.diagnostics.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_for_a_client() {
        let p = parse_client_relay("ServerAddress teredo.example.net\n", "c");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(
            c,
            ClientRelayConfig {
                relay_type: RelayType::Client,
                server_address: Some(Host::Name("teredo.example.net".into())),
                server_address2: None,
                prefix: ServicePrefix::STANDARD,
                interface_mtu: 1280,
                interface_name: None,
                bind_address: None,
                bind_port: 0,
                syslog_facility: SyslogFacility::Daemon,
                client_hook: None,
                max_peers: DEFAULT_MAX_PEERS,
                metrics_address: None,
                log_level: LogLevel::Info,
            }
        );
    }

    #[test]
    fn metrics_and_log_level() {
        let p = parse_client_relay(
            "ServerAddress 192.0.2.1
MetricsAddress 127.0.0.1:9544
LogLevel debug
",
            "c",
        );
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.metrics_address, Some("127.0.0.1:9544".parse().unwrap()));
        assert_eq!(c.log_level, LogLevel::Debug);
        let p = parse_client_relay(
            "ServerAddress 192.0.2.1
MetricsAddress localhost:80
",
            "c",
        );
        assert_eq!(
            messages(&p),
            [
                "c:2: invalid MetricsAddress \"localhost:80\": expected IPv4:PORT or [IPv6]:PORT with a port from 1 to 65535"
            ]
        );
        assert!(p.config.is_none());
    }

    #[test]
    fn full_relay() {
        let text = "# relay\nrelaytype RELAY\nPrefix 3ffe:831f::\nInterfaceMTU 0x5dc\n\
                    InterfaceName teredo\nBindAddress 10.1.2.3\nBindPort 06730\n\
                    SyslogFacility Local3";
        let p = parse_client_relay(text, "r");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.relay_type, RelayType::Cone);
        assert_eq!(c.server_address, None);
        assert_eq!(c.prefix, ServicePrefix(0x3ffe_831f));
        assert_eq!(c.interface_mtu, 1500);
        assert_eq!(c.interface_name.as_deref(), Some("teredo"));
        assert_eq!(c.bind_address, Some(Host::Ipv4(Ipv4Addr::new(10, 1, 2, 3))));
        // 06730 is octal, as with strtoul: 3544.
        assert_eq!(c.bind_port, 3544);
        assert_eq!(c.syslog_facility, SyslogFacility::Local3);
    }

    #[test]
    fn first_occurrence_wins() {
        let p = parse_client_relay(
            "ServerAddress 192.0.2.1\nServerAddress 192.0.2.2\nSERVERADDRESS 192.0.2.3\n",
            "c",
        );
        assert_eq!(
            messages(&p),
            [
                "c:2: duplicate directive \"ServerAddress\" ignored: the first one, at line 1, applies",
                "c:3: duplicate directive \"SERVERADDRESS\" ignored: the first one, at line 1, applies",
            ]
        );
        let c = p.config.unwrap();
        assert_eq!(c.server_address, Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))));
    }

    #[test]
    fn misplaced_and_unknown() {
        let p = parse_client_relay(
            "ServerAddress 192.0.2.1\nPrefix 2001::\nServerBindAddress 192.0.2.1\nMTU 1400\n",
            "c",
        );
        assert_eq!(
            messages(&p),
            [
                "c:2: directive \"Prefix\" ignored: it applies to relays only (RelayType cone, relay or restricted)",
                "c:3: directive \"ServerBindAddress\" ignored: it is a server directive (miredo-server.conf)",
                "c:4: unknown directive \"MTU\"",
            ]
        );
        assert!(p.config.is_some());
        let p = parse_client_relay("RelayType cone\nServerAddress 192.0.2.1\n", "r");
        assert_eq!(
            messages(&p),
            ["r:2: directive \"ServerAddress\" ignored: it applies to clients only (RelayType client)"]
        );
    }

    #[test]
    fn errors_give_no_config() {
        let p = parse_client_relay(
            "ServerAddress 10.0.0.1\nBindPort 65536\nInterfaceName a/b\nSyslogFacility x\n",
            "c",
        );
        assert_eq!(
            messages(&p),
            [
                "c:1: invalid ServerAddress \"10.0.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
                "c:2: invalid BindPort \"65536\": above 65535",
                "c:3: invalid InterfaceName \"a/b\": an interface name has 1 to 15 printable ASCII characters, is not \".\" nor \"..\" and has no '/' or ':'",
                "c:4: invalid SyslogFacility \"x\": expected auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp",
            ]
        );
        assert!(p.config.is_none());
    }

    #[test]
    fn server_address_required_unless_overridden() {
        let p = parse_client_relay("BindPort 3545\n", "c");
        assert_eq!(
            messages(&p),
            [
                "c: ServerAddress is required for a client (RelayType client), unless a server is named on the command line"
            ]
        );
        assert!(p.config.is_none());

        let o = ClientRelayOverrides { server_address: Some(Host::Name("teredo.example.net".into())) };
        let p = parse_client_relay_with("ServerAddress2 192.0.2.2\n", "c", &o);
        assert!(p.diagnostics.is_empty());
        let c = p.config.unwrap();
        assert_eq!(c.server_address, o.server_address);
        assert_eq!(c.server_address2, None);

        // A relay ignores the override.
        let p = parse_client_relay_with("RelayType cone\n", "r", &o);
        assert_eq!(p.config.unwrap().server_address, None);
    }

    #[test]
    fn invalid_relay_type_checks_both_roles() {
        let p = parse_client_relay("RelayType server\nPrefix ff02::\nServerAddress 127.0.0.1\n", "c");
        assert_eq!(
            messages(&p),
            [
                "c:1: invalid RelayType \"server\": expected client, autoclient, relay, cone or restricted",
                "c:2: invalid Prefix \"ff02::\": in the multicast range ff00::/8",
                "c:3: invalid ServerAddress \"127.0.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
            ]
        );
        assert!(p.config.is_none());
    }

    #[test]
    fn restricted_is_a_warning() {
        let p = parse_client_relay("RelayType Restricted\n", "r");
        assert_eq!(
            messages(&p),
            ["r:1: RelayType restricted is deprecated and STRONGLY DISCOURAGED: use RelayType cone"]
        );
        assert_eq!(p.config.unwrap().relay_type, RelayType::Restricted);
    }
}
