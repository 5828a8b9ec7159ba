//! Reading `miredo.conf`, the configuration of a Teredo client (RFC 4380 §5.2) or relay
//! (RFC 4380 §5.4), with the directives and defaults of miredo-facts §1.5.

use super::Parsed;
use super::client_keys::ClientKey;
use super::directive::{Directive, FileKind};
use super::host::Host;
use super::log_level::LogLevel;
use super::prefix::ServicePrefix;
use super::reader::{Reader, Taken};
use super::relay_type::RelayType;
use super::syslog::SyslogFacility;
use super::value::{
    MIN_MTU, parse_bool, parse_bubble_rate, parse_client_identifier, parse_hook_path, parse_interface_name,
    parse_max_peers, parse_mtu, parse_socket_address, parse_u16,
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
    /// The other servers of a client's `ServerAddress` list (teredo: `ServerAddress A B
    /// ...`, separated by white space; Miredo reads the first and ignores the rest), tried
    /// in order when the one in use stops answering. Empty for a relay and when the server
    /// was named on the command line.
    pub server_fallbacks: Vec<Host>,
    /// `ServerAddress` of a relay (teredo): the Teredo servers it probes for its health, one
    /// or more separated by white space, each a global unicast IPv4 address or a host name.
    /// Empty for a client, and for a relay that probes none (its health is then its packet
    /// path alone).
    pub probe_servers: Vec<Host>,
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
    /// `BubbleRate N` (teredo): the most bubbles, reply bubbles and echo tests sent per
    /// second, all workers together (default
    /// [`teredo_proto::tunnel::DEFAULT_BUBBLE_RATE`]).
    pub bubble_rate: u32,
    /// `MetricsAddress ADDRESS:PORT` (teredo): where `GET /metrics` is served; `None` (the
    /// default) listens on no TCP port.
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `LogLevel` (teredo, default `info`).
    pub log_level: LogLevel,
    /// `LocalDiscovery yes|no` (teredo, default `yes`): a client's local client discovery
    /// (RFC 4380 §5.2.8), discovery bubbles to 224.0.0.253 every 200 to 300 s so that
    /// clients on one link meet without their server. On by default, as the RFC's
    /// "SHOULD" has it. Client only.
    pub local_discovery: bool,
    /// `ClientIdentifier ID` and `ClientSecret SECRET` (teredo, both or neither): secure
    /// qualification (RFC 4380 §5.2.2) with a server that knows this client. Client only.
    pub credentials: Option<ClientKey>,
    /// `UPnP yes|no` (teredo, default `yes`, as Windows): before qualifying, a client asks
    /// the NAT's UPnP IGD, if it finds one by SSDP on its LAN, to map its UDP port (RFC
    /// 6081 §5.3.3), and deletes the mapping when it stops. Client only.
    pub upnp: bool,
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

    let (mut server_address, mut server_address2, mut server_fallbacks, mut probe_servers) =
        (None, None, Vec::new(), Vec::new());
    if relay_type.is_some_and(RelayType::is_relay) {
        probe_servers = r.take_list(Directive::ServerAddress, Host::parse_global).value().unwrap_or_default();
    } else if client {
        let list = r.take_list(Directive::ServerAddress, Host::parse_global);
        let second = r.take(Directive::ServerAddress2, Host::parse_global);
        if let Some(server) = &overrides.server_address {
            server_address = Some(server.clone());
        } else {
            if list == Taken::Absent && relay_type.is_some() {
                r.error(
                    0,
                    "ServerAddress is required for a client (RelayType client), unless a \
                     server is named on the command line",
                );
            }
            let mut list = list.value().unwrap_or_default().into_iter();
            server_address = list.next();
            server_fallbacks = list.collect();
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
    let bubble_rate = r
        .take(Directive::BubbleRate, parse_bubble_rate)
        .value()
        .unwrap_or(teredo_proto::tunnel::DEFAULT_BUBBLE_RATE);
    let metrics_address = r.take(Directive::MetricsAddress, parse_socket_address).value();
    let log_level = r.take(Directive::LogLevel, str::parse).value().unwrap_or_default();
    let local_discovery =
        if client { r.take(Directive::LocalDiscovery, parse_bool).value().unwrap_or(true) } else { false };
    let mut credentials = None;
    if client {
        let id = r.take(Directive::ClientIdentifier, parse_client_identifier);
        let secret = r.take(Directive::ClientSecret, |s| Ok(s.to_owned()));
        match (id, secret) {
            (Taken::Present(id, _), Taken::Present(secret, _)) => {
                credentials = Some(ClientKey { id, secret })
            }
            (Taken::Absent, Taken::Absent) | (Taken::Invalid, _) | (_, Taken::Invalid) => {}
            (Taken::Present(_, line), Taken::Absent) => {
                r.error(line, "ClientIdentifier without ClientSecret: secure qualification needs both")
            }
            (Taken::Absent, Taken::Present(_, line)) => {
                r.error(line, "ClientSecret without ClientIdentifier: secure qualification needs both")
            }
        }
    }
    let upnp = if client { r.take(Directive::Upnp, parse_bool).value().unwrap_or(true) } else { false };

    let config = relay_type.map(|relay_type| ClientRelayConfig {
        relay_type,
        server_address: server_address.filter(|_| relay_type.is_client()),
        server_address2: server_address2.filter(|_| relay_type.is_client()),
        server_fallbacks: if relay_type.is_client() { server_fallbacks } else { Vec::new() },
        probe_servers,
        prefix,
        interface_mtu,
        interface_name,
        bind_address,
        bind_port,
        syslog_facility,
        client_hook: client_hook.filter(|_| relay_type.is_client()),
        max_peers,
        bubble_rate,
        metrics_address,
        log_level,
        local_discovery: local_discovery && relay_type.is_client(),
        credentials: credentials.filter(|_| relay_type.is_client()),
        upnp: upnp && relay_type.is_client(),
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
                server_fallbacks: vec![],
                probe_servers: vec![],
                prefix: ServicePrefix::STANDARD,
                interface_mtu: 1280,
                interface_name: None,
                bind_address: None,
                bind_port: 0,
                syslog_facility: SyslogFacility::Daemon,
                client_hook: None,
                max_peers: DEFAULT_MAX_PEERS,
                bubble_rate: teredo_proto::tunnel::DEFAULT_BUBBLE_RATE,
                metrics_address: None,
                log_level: LogLevel::Info,
                local_discovery: true,
                credentials: None,
                upnp: true,
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
    fn bubble_rate() {
        let p = parse_client_relay("RelayType cone\nBubbleRate 50\n", "r");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        assert_eq!(p.config.unwrap().bubble_rate, 50);
        for bad in ["0", "1000001", "-1", "fast"] {
            let p = parse_client_relay(&format!("RelayType cone\n\nBubbleRate {bad}\n"), "/etc/r.conf");
            let m = messages(&p);
            assert_eq!(m.len(), 1, "{m:?}");
            assert!(m[0].starts_with(&format!("/etc/r.conf:3: invalid BubbleRate \"{bad}\"")), "{m:?}");
            assert!(p.config.is_none());
        }
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
        let p = parse_client_relay("RelayType cone\nServerAddress2 192.0.2.2\n", "r");
        assert_eq!(
            messages(&p),
            ["r:2: directive \"ServerAddress2\" ignored: it applies to clients only (RelayType client)"]
        );
    }

    #[test]
    fn secure_qualification_needs_both_directives() {
        let p = parse_client_relay("ServerAddress 192.0.2.1\nClientIdentifier alice\nClientSecret s3\n", "c");
        let c = p.config.unwrap().credentials.unwrap();
        assert_eq!((c.id.as_str(), c.secret.as_str()), ("alice", "s3"));
        let p = parse_client_relay("ServerAddress 192.0.2.1\nClientIdentifier alice\n", "c");
        assert_eq!(
            messages(&p),
            ["c:2: ClientIdentifier without ClientSecret: secure qualification needs both"]
        );
        let p = parse_client_relay("ServerAddress 192.0.2.1\nClientSecret s3\n", "c");
        assert_eq!(
            messages(&p),
            ["c:2: ClientSecret without ClientIdentifier: secure qualification needs both"]
        );
    }

    #[test]
    fn a_relay_names_the_servers_it_probes() {
        let p = parse_client_relay("RelayType cone\nServerAddress 192.0.2.1 teredo.example.net\n", "r");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(
            c.probe_servers,
            [Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)), Host::Name("teredo.example.net".into())]
        );
        assert_eq!(c.server_address, None);
        // Each one is checked.
        let p = parse_client_relay("RelayType cone\nServerAddress 192.0.2.1 10.0.0.1 a/b\n", "r");
        assert_eq!(
            messages(&p),
            [
                "r:2: invalid ServerAddress \"10.0.0.1\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
                "r:2: invalid ServerAddress \"a/b\": neither a dotted IPv4 address nor a valid host name (RFC 1123 §2.1)",
            ]
        );
        assert!(p.config.is_none());
        // A client's list is its servers, not servers to probe.
        let p = parse_client_relay("ServerAddress 192.0.2.1 192.0.2.7\n", "c");
        assert!(p.config.unwrap().probe_servers.is_empty());
    }

    #[test]
    fn a_client_lists_several_servers() {
        let p = parse_client_relay("ServerAddress 192.0.2.20 teredo.example.net 192.0.2.10\n", "c");
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let c = p.config.unwrap();
        assert_eq!(c.server_address, Some(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 20))));
        assert_eq!(
            c.server_fallbacks,
            [Host::Name("teredo.example.net".into()), Host::Ipv4(Ipv4Addr::new(192, 0, 2, 10))]
        );
        // Every entry is checked, not only the first.
        let p = parse_client_relay("ServerAddress 192.0.2.20 10.1.2.3 a/b\n", "c");
        assert_eq!(
            messages(&p),
            [
                "c:1: invalid ServerAddress \"10.1.2.3\": not a global unicast IPv4 address (RFC 4380 §5.2.4)",
                "c:1: invalid ServerAddress \"a/b\": neither a dotted IPv4 address nor a valid host name (RFC 1123 §2.1)",
            ]
        );
        assert!(p.config.is_none());
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

    #[test]
    fn upnp_is_on_by_default_for_a_client_only() {
        let c = parse_client_relay("ServerAddress 192.0.2.1\nUPnP no\n", "c").config.unwrap();
        assert!(!c.upnp);
        let c = parse_client_relay("ServerAddress 192.0.2.1\nUPnP yes\n", "c").config.unwrap();
        assert!(c.upnp);
        let p = parse_client_relay("RelayType cone\n", "c");
        assert!(!p.config.unwrap().upnp);
        let p = parse_client_relay("ServerAddress 192.0.2.1\nUPnP maybe\n", "c");
        assert!(messages(&p).iter().any(|m| m.contains("UPnP")), "{:?}", messages(&p));
    }
}
