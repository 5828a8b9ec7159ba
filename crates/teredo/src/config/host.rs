//! [`Host`]: the value of the IPv4 directives (`ServerAddress`, `ServerAddress2`,
//! `BindAddress`, `ServerBindAddress`, `ServerBindAddress2`), a dotted IPv4 address or a
//! host name kept unresolved (miredo-facts §1.4: Miredo resolves these with getaddrinfo).
//!
//! Reading a configuration never touches the network: the daemons resolve names when they
//! need the address, as Miredo's maintenance thread does (miredo-facts §1.5).

use core::fmt;
use core::str::FromStr;
use std::net::Ipv4Addr;

use teredo_proto::address::is_global_unicast;

use super::value::ValueError;

/// An IPv4 address, literal or to be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A dotted-quad literal such as `192.0.2.1`.
    Ipv4(Ipv4Addr),
    /// A host name such as `teredo.example.net`, checked for syntax only.
    Name(String),
}

/// The longest host name, in bytes, without a final dot (RFC 1035 §2.3.4, RFC 1123 §2.1).
const MAX_NAME: usize = 253;
/// The longest label, in bytes (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;

impl Host {
    /// The literal address, if this is one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        match self {
            Self::Ipv4(a) => Some(*a),
            Self::Name(_) => None,
        }
    }

    /// Parses a host that must be a Teredo server's address: a literal must be global
    /// unicast (RFC 4380 §5.2.4, with the ranges of
    /// [`teredo_proto::address::is_global_unicast`]). A name is accepted as it is; the
    /// check applies to its addresses once resolved.
    pub fn parse_global(s: &str) -> Result<Self, ValueError> {
        let host: Self = s.parse()?;
        match host {
            Self::Ipv4(a) if !is_global_unicast(a) => Err(ValueError::NotGlobalUnicast),
            _ => Ok(host),
        }
    }
}

impl FromStr for Host {
    type Err = ValueError;

    /// A strict dotted quad (no leading zeros, no shortened forms), or else a host name:
    /// labels of 1 to 63 letters, digits and hyphens, not starting or ending with a
    /// hyphen, at most 253 bytes in all, a final dot allowed, and a last label that is not
    /// all digits (so that a mistyped address such as `192.0.2.256` is not taken for a
    /// name, RFC 1123 §2.1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(Self::Ipv4(a));
        }
        if is_host_name(s) { Ok(Self::Name(s.to_owned())) } else { Err(ValueError::NotAHost) }
    }
}

fn is_host_name(s: &str) -> bool {
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.is_empty() || name.len() > MAX_NAME {
        return false;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= MAX_LABEL
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    name.split('.').all(label_ok)
        && name.rsplit('.').next().is_some_and(|last| !last.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ipv4(a) => fmt::Display::fmt(a, f),
            Self::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_names() {
        assert_eq!("192.0.2.1".parse(), Ok(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1))));
        for name in
            ["teredo.example.net", "teredo.example.net.", "localhost", "a-b.c0", "1.2.3.4.example", "x"]
        {
            assert_eq!(name.parse(), Ok(Host::Name(name.to_owned())), "{name}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63), "a".repeat(63), "a".repeat(63), "a".repeat(62)].join(".");
        assert_eq!(long_name.len(), 254);
        for bad in [
            "",
            ".",
            "192.0.2.256",
            "192.0.2",
            "192.0.2.01",
            "1.2.3.4.5",
            "-a.example",
            "a-.example",
            "a..b",
            "a_b.example",
            "exämple.net",
            "a b",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(bad.parse::<Host>(), Err(ValueError::NotAHost), "{bad:?}");
        }
    }

    #[test]
    fn global_check() {
        assert!(Host::parse_global("192.0.2.1").is_ok());
        assert!(Host::parse_global("teredo.example.net").is_ok());
        for bad in ["10.0.0.1", "100.64.0.1", "127.0.0.1", "224.0.0.1", "0.0.0.0"] {
            assert_eq!(Host::parse_global(bad), Err(ValueError::NotGlobalUnicast));
        }
        assert_eq!(Host::parse_global("a..b"), Err(ValueError::NotAHost));
    }

    #[test]
    fn display() {
        assert_eq!(Host::Ipv4(Ipv4Addr::new(192, 0, 2, 1)).to_string(), "192.0.2.1");
        assert_eq!(Host::Name("x.example".into()).to_string(), "x.example");
        assert_eq!(Host::Name("x".into()).ipv4(), None);
    }
}
