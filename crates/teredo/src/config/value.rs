//! Parsers for the scalar directive values: 16-bit integers (`BindPort`, `InterfaceMTU`,
//! parsed like C's `strtoul` with base 0, miredo-facts §1.4) and interface names; and
//! [`ValueError`], why a value was refused.

/// Why a directive's value was refused. Its text completes "invalid DIRECTIVE "VALUE": ".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not an integer in one of the three C notations.
    #[error("not a decimal, 0x hexadecimal or 0-prefixed octal integer")]
    NotAnInteger,
    /// An integer above 65535 (miredo-facts §1.4).
    #[error("above 65535")]
    TooLarge,
    /// An MTU below the IPv6 minimum (RFC 8200 §5; miredo-facts §1.5, §1.6).
    #[error("below the IPv6 minimum MTU of 1280 (RFC 8200 §5)")]
    MtuTooSmall,
    /// Neither a dotted IPv4 address nor a host name.
    #[error("neither a dotted IPv4 address nor a valid host name (RFC 1123 §2.1)")]
    NotAHost,
    /// An IPv4 address that cannot be a Teredo server's (RFC 4380 §5.2.4).
    #[error("not a global unicast IPv4 address (RFC 4380 §5.2.4)")]
    NotGlobalUnicast,
    /// Not an IPv6 address literal.
    #[error("not an IPv6 address")]
    NotIpv6,
    /// A prefix in ff00::/8, which Miredo refuses (miredo-facts §1.4).
    #[error("in the multicast range ff00::/8")]
    MulticastPrefix,
    /// Not one of the `RelayType` values (miredo-facts §1.5).
    #[error("expected client, autoclient, relay, cone or restricted")]
    RelayType,
    /// Not one of the syslog facility names (miredo-facts §1.5).
    #[error(
        "expected auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, \
         news, syslog, user or uucp"
    )]
    SyslogFacility,
    /// A number of peers outside 1..=16,777,216.
    #[error("a number of peers from 1 to 16777216")]
    MaxPeers,
    /// A bubble rate outside 1..=1,000,000 per second.
    #[error("a number of bubbles per second from 1 to 1000000")]
    BubbleRate,
    /// Not an absolute path.
    #[error("not an absolute path")]
    NotAbsolutePath,
    /// Not `ADDRESS:PORT` with an IP address literal and a port.
    #[error("expected IPv4:PORT or [IPv6]:PORT with a port from 1 to 65535")]
    SocketAddress,
    /// Not one of the log levels.
    #[error("expected error, warning, info or debug")]
    LogLevel,
    /// Not a name the kernel accepts for a network interface.
    #[error(
        "an interface name has 1 to 15 printable ASCII characters, is not \".\" nor \"..\" \
         and has no '/' or ':'"
    )]
    InterfaceName,
    /// A client identifier of more than 255 bytes (RFC 4380 §5.1.1: ID-len is one byte).
    #[error("a client identifier has at most 255 bytes")]
    ClientIdentifier,
    /// Not a yes/no value.
    #[error("expected yes or no (also on/off, true/false, 1/0)")]
    Boolean,
}

/// Parses a client identifier (RFC 4380 §5.2.2): 1 to 255 bytes.
pub(crate) fn parse_client_identifier(s: &str) -> Result<String, ValueError> {
    if s.is_empty() || s.len() > 255 {
        return Err(ValueError::ClientIdentifier);
    }
    Ok(s.to_owned())
}

/// Parses a yes/no value: `yes`, `on`, `true`, `1` or `no`, `off`, `false`, `0`, whatever
/// the ASCII case.
pub(crate) fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" | "1" => Ok(true),
        "no" | "off" | "false" | "0" => Ok(false),
        _ => Err(ValueError::Boolean),
    }
}

/// Parses a 16-bit unsigned integer as `strtoul(s, &end, 0)` followed by a check that the
/// whole token was used and that the value is at most 65535: `0x` or `0X` introduces
/// hexadecimal, a leading `0` octal, anything else is decimal. Signs are refused.
pub(crate) fn parse_u16(s: &str) -> Result<u16, ValueError> {
    parse_unsigned(s, u64::from(u16::MAX)).map(|v| v as u16)
}

/// The largest `MaxPeers`: 2^24 peers.
pub const MAX_MAX_PEERS: u32 = 1 << 24;

/// Parses `MaxPeers` (a teredo directive; Miredo's limit is fixed at 1,048,576 with
/// libJudy): an integer as [`parse_u16`], from 1 to [`MAX_MAX_PEERS`].
pub(crate) fn parse_max_peers(s: &str) -> Result<u32, ValueError> {
    match parse_unsigned(s, u64::from(MAX_MAX_PEERS)) {
        Ok(0) | Err(ValueError::TooLarge) => Err(ValueError::MaxPeers),
        Ok(v) => Ok(v as u32),
        Err(e) => Err(e),
    }
}

/// The largest `BubbleRate`: a million bubbles per second.
pub(crate) const MAX_BUBBLE_RATE: u32 = 1_000_000;

/// Parses `BubbleRate` (a teredo directive): the most bubbles, reply bubbles and echo
/// tests per second, an integer as [`parse_u16`] from 1 to [`MAX_BUBBLE_RATE`]. 0 is an
/// error rather than "unlimited": no bound is what lets a flood of packets to new peers
/// turn a relay into an amplifier.
pub(crate) fn parse_bubble_rate(s: &str) -> Result<u32, ValueError> {
    match parse_unsigned(s, u64::from(MAX_BUBBLE_RATE)) {
        Ok(0) | Err(ValueError::TooLarge) => Err(ValueError::BubbleRate),
        Ok(v) => Ok(v as u32),
        Err(e) => Err(e),
    }
}

/// Parses `ClientHook` (a teredo directive): the absolute path of a Miredo-style hook
/// script, such as `/etc/miredo/client-hook`.
pub(crate) fn parse_hook_path(s: &str) -> Result<std::path::PathBuf, ValueError> {
    if s.starts_with('/') { Ok(s.into()) } else { Err(ValueError::NotAbsolutePath) }
}

/// Parses `MetricsAddress ADDRESS:PORT` (teredo): where the Prometheus endpoint listens.
pub(crate) fn parse_socket_address(s: &str) -> Result<std::net::SocketAddr, ValueError> {
    match s.parse::<std::net::SocketAddr>() {
        Ok(a) if a.port() != 0 => Ok(a),
        _ => Err(ValueError::SocketAddress),
    }
}

/// `strtoul(s, &end, 0)` with the whole token used and a maximum.
fn parse_unsigned(s: &str, max: u64) -> Result<u64, ValueError> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if let Some(octal) = s.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (octal, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return Err(ValueError::NotAnInteger);
    }
    let mut value: u64 = 0;
    let mut too_large = false;
    for c in digits.chars() {
        let digit = c.to_digit(radix).ok_or(ValueError::NotAnInteger)?;
        if !too_large {
            value = value * u64::from(radix) + u64::from(digit);
            too_large = value > max;
        }
    }
    if too_large {
        return Err(ValueError::TooLarge);
    }
    Ok(value)
}

/// The IPv6 minimum link MTU (RFC 8200 §5), also the default `InterfaceMTU`.
pub use teredo_proto::wire::ipv6::MIN_MTU;

/// Parses `InterfaceMTU`: an integer as [`parse_u16`], at least [`MIN_MTU`].
pub(crate) fn parse_mtu(s: &str) -> Result<u16, ValueError> {
    let mtu = parse_u16(s)?;
    if mtu < MIN_MTU {
        return Err(ValueError::MtuTooSmall);
    }
    Ok(mtu)
}

/// The longest interface name, in bytes (IFNAMSIZ 16 with the terminating NUL, on Linux
/// and the BSDs).
pub const MAX_INTERFACE_NAME: usize = 15;

/// Checks `InterfaceName` as the Linux kernel does (`dev_valid_name`): 1 to 15 bytes, not
/// `.` nor `..`, no `/` or `:` (white space cannot occur in a token); and, stricter than
/// the kernel, printable ASCII only, so that a name in another encoding is not silently
/// changed. Miredo only finds a bad name when it creates the interface; checking it here
/// lets `check-config` find it.
pub(crate) fn parse_interface_name(s: &str) -> Result<String, ValueError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_INTERFACE_NAME
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok { Ok(s.to_owned()) } else { Err(ValueError::InterfaceName) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_in_three_bases() {
        assert_eq!(parse_u16("0"), Ok(0));
        assert_eq!(parse_u16("3545"), Ok(3545));
        assert_eq!(parse_u16("0xdd9"), Ok(3545));
        assert_eq!(parse_u16("0XDD9"), Ok(3545));
        assert_eq!(parse_u16("06731"), Ok(3545));
        assert_eq!(parse_u16("00"), Ok(0));
        assert_eq!(parse_u16("65535"), Ok(65535));
        assert_eq!(parse_u16("0xffff"), Ok(65535));
        assert_eq!(parse_u16("0177777"), Ok(65535));
    }

    #[test]
    fn bad_integers() {
        for bad in ["", "0x", "08", "12a", "-1", "+1", " 1", "1.0", "0x1g", "١"] {
            assert_eq!(parse_u16(bad), Err(ValueError::NotAnInteger), "{bad:?}");
        }
        for big in ["65536", "0x10000", "0200000", &"9".repeat(1000)] {
            assert_eq!(parse_u16(big), Err(ValueError::TooLarge), "{big:?}");
        }
        // A bad digit after an overflow is still "not an integer".
        assert_eq!(parse_u16("99999x"), Err(ValueError::NotAnInteger));
    }

    #[test]
    fn mtu() {
        assert_eq!(parse_mtu("1280"), Ok(1280));
        assert_eq!(parse_mtu("0x500"), Ok(1280));
        assert_eq!(parse_mtu("1279"), Err(ValueError::MtuTooSmall));
        assert_eq!(parse_mtu("65536"), Err(ValueError::TooLarge));
    }

    #[test]
    fn interface_names() {
        assert_eq!(parse_interface_name("teredo").as_deref(), Ok("teredo"));
        assert!(parse_interface_name("a23456789012345").is_ok());
        for bad in ["", ".", "..", "a/b", "eth0:1", "a234567890123456", "tér", "a\u{7f}"] {
            assert_eq!(parse_interface_name(bad), Err(ValueError::InterfaceName));
        }
    }
}
