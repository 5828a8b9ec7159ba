//! The directives Miredo 1.2.6 knows (miredo-facts §1.5, §1.6), which file and which
//! role each belongs to, and the warning for a setting that no reader used: unknown,
//! repeated, or out of place.

use super::relay_type::RelayType;

/// The two kinds of configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `miredo.conf`: a client or a relay.
    ClientRelay,
    /// `miredo-server.conf`.
    Server,
}

/// Where a directive applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// `miredo.conf`, every `RelayType`.
    ClientRelayFile,
    /// `miredo.conf` with `RelayType client`.
    ClientOnly,
    /// `miredo.conf` with a relay `RelayType`, and `miredo-server.conf`.
    RelayAndServer,
    /// Both files, every role.
    Everywhere,
    /// `miredo-server.conf` only.
    ServerFile,
}

/// A known directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Directive {
    RelayType,
    ServerAddress,
    ServerAddress2,
    Prefix,
    InterfaceMtu,
    InterfaceName,
    BindAddress,
    BindPort,
    SyslogFacility,
    ServerBindAddress,
    ServerBindAddress2,
    ClientHook,
    MaxPeers,
    BubbleRate,
    MetricsAddress,
    LogLevel,
    LocalDiscovery,
    ClientIdentifier,
    ClientSecret,
    ClientKeys,
    RequireAuthentication,
    Upnp,
}

const TABLE: [(Directive, &str, Scope); 22] = [
    (Directive::RelayType, "RelayType", Scope::ClientRelayFile),
    (Directive::ServerAddress, "ServerAddress", Scope::ClientRelayFile),
    (Directive::ServerAddress2, "ServerAddress2", Scope::ClientOnly),
    (Directive::Prefix, "Prefix", Scope::RelayAndServer),
    (Directive::InterfaceMtu, "InterfaceMTU", Scope::RelayAndServer),
    (Directive::InterfaceName, "InterfaceName", Scope::ClientRelayFile),
    (Directive::BindAddress, "BindAddress", Scope::ClientRelayFile),
    (Directive::BindPort, "BindPort", Scope::ClientRelayFile),
    (Directive::SyslogFacility, "SyslogFacility", Scope::Everywhere),
    (Directive::ServerBindAddress, "ServerBindAddress", Scope::ServerFile),
    (Directive::ServerBindAddress2, "ServerBindAddress2", Scope::ServerFile),
    // teredo's own directives (not in Miredo 1.2.6).
    (Directive::ClientHook, "ClientHook", Scope::ClientOnly),
    (Directive::MaxPeers, "MaxPeers", Scope::ClientRelayFile),
    (Directive::BubbleRate, "BubbleRate", Scope::ClientRelayFile),
    (Directive::MetricsAddress, "MetricsAddress", Scope::Everywhere),
    (Directive::LogLevel, "LogLevel", Scope::Everywhere),
    (Directive::LocalDiscovery, "LocalDiscovery", Scope::ClientOnly),
    (Directive::ClientIdentifier, "ClientIdentifier", Scope::ClientOnly),
    (Directive::ClientSecret, "ClientSecret", Scope::ClientOnly),
    (Directive::ClientKeys, "ClientKeys", Scope::ServerFile),
    (Directive::RequireAuthentication, "RequireAuthentication", Scope::ServerFile),
    (Directive::Upnp, "UPnP", Scope::ClientOnly),
];

/// The names of the directives that may appear in this kind of file, in any role.
pub(crate) fn names(kind: FileKind) -> Vec<&'static str> {
    TABLE.into_iter().filter(|&(d, _, _)| d.applies(kind, None)).map(|(_, name, _)| name).collect()
}

impl Directive {
    fn entry(self) -> (Self, &'static str, Scope) {
        TABLE.into_iter().find(|&(d, _, _)| d == self).unwrap_or((self, "?", Scope::Everywhere))
    }

    /// The name as Miredo's documentation spells it.
    pub(crate) fn name(self) -> &'static str {
        self.entry().1
    }

    /// The directive called `name`, whatever its ASCII case.
    pub(crate) fn lookup(name: &str) -> Option<Self> {
        TABLE.into_iter().find(|(_, n, _)| n.eq_ignore_ascii_case(name)).map(|(d, _, _)| d)
    }

    /// True when the directive may appear in this kind of file with this role; `None`
    /// stands for "role unknown" (an invalid `RelayType`) and admits both roles.
    pub(crate) fn applies(self, kind: FileKind, relay_type: Option<RelayType>) -> bool {
        let client = relay_type.is_none_or(RelayType::is_client);
        let relay = relay_type.is_none_or(RelayType::is_relay);
        match (kind, self.entry().2) {
            (_, Scope::Everywhere) => true,
            (FileKind::ClientRelay, Scope::ClientRelayFile) => true,
            (FileKind::ClientRelay, Scope::ClientOnly) => client,
            (FileKind::ClientRelay, Scope::RelayAndServer) => relay,
            (FileKind::ClientRelay, Scope::ServerFile) => false,
            (FileKind::Server, Scope::RelayAndServer | Scope::ServerFile) => true,
            (FileKind::Server, Scope::ClientRelayFile | Scope::ClientOnly) => false,
        }
    }

    /// Why the directive was not used in this kind of file: it belongs to the other file
    /// or to the other role.
    pub(crate) fn misplaced_reason(self, kind: FileKind) -> &'static str {
        match (kind, self.entry().2) {
            (FileKind::ClientRelay, Scope::ServerFile) => "it is a server directive (miredo-server.conf)",
            (FileKind::Server, Scope::ClientRelayFile | Scope::ClientOnly) => {
                "it is a client and relay directive (miredo.conf)"
            }
            (_, Scope::ClientOnly) => "it applies to clients only (RelayType client)",
            (_, Scope::RelayAndServer) => "it applies to relays only (RelayType cone, relay or restricted)",
            _ => "it does not apply here",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(Directive::lookup("interfacemtu"), Some(Directive::InterfaceMtu));
        assert_eq!(Directive::lookup("SERVERADDRESS2"), Some(Directive::ServerAddress2));
        assert_eq!(Directive::lookup("MTU"), None);
        for (d, name, _) in TABLE {
            assert_eq!(d.name(), name);
            assert_eq!(Directive::lookup(name), Some(d));
        }
    }

    #[test]
    fn names_per_file() {
        let client = names(FileKind::ClientRelay);
        let server = names(FileKind::Server);
        assert!(
            client.contains(&"ServerAddress") && client.contains(&"Prefix") && client.contains(&"ClientHook")
        );
        assert!(!client.contains(&"ServerBindAddress"));
        assert_eq!(
            server,
            [
                "Prefix",
                "InterfaceMTU",
                "SyslogFacility",
                "ServerBindAddress",
                "ServerBindAddress2",
                "MetricsAddress",
                "LogLevel",
                "ClientKeys",
                "RequireAuthentication"
            ]
        );
    }

    #[test]
    fn scopes() {
        use Directive as D;
        let client = Some(RelayType::Client);
        let cone = Some(RelayType::Cone);
        assert!(D::ServerAddress.applies(FileKind::ClientRelay, client));
        // A relay's ServerAddress names the servers it probes for its health.
        assert!(D::ServerAddress.applies(FileKind::ClientRelay, cone));
        assert!(!D::ServerAddress2.applies(FileKind::ClientRelay, cone));
        assert!(!D::ServerAddress.applies(FileKind::Server, None));
        assert!(D::ServerAddress.applies(FileKind::ClientRelay, None));
        assert!(!D::Prefix.applies(FileKind::ClientRelay, client));
        assert!(D::Prefix.applies(FileKind::ClientRelay, cone));
        assert!(D::Prefix.applies(FileKind::Server, None));
        assert!(!D::ServerBindAddress.applies(FileKind::ClientRelay, None));
        assert!(!D::BindPort.applies(FileKind::Server, None));
        assert!(D::SyslogFacility.applies(FileKind::Server, None));
    }
}
