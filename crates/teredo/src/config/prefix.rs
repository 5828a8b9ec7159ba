//! [`ServicePrefix`]: the value of `Prefix`, the 32-bit Teredo service prefix a relay
//! serves or a server advertises (RFC 4380 §2.6, §4; miredo-facts §1.4–1.6).

use core::fmt;
use core::str::FromStr;
use std::net::Ipv6Addr;

use teredo_proto::address::TEREDO_PREFIX;

use super::value::ValueError;

/// The first 32 bits of Teredo addresses. Written in the file as an IPv6 address
/// (`2001:0::`) of which only the first 32 bits count, as in Miredo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServicePrefix(pub u32);

impl ServicePrefix {
    /// The standard prefix 2001::/32 (RFC 4380 §2.6), the default.
    pub const STANDARD: Self = Self(TEREDO_PREFIX);
}

impl Default for ServicePrefix {
    fn default() -> Self {
        Self::STANDARD
    }
}

impl FromStr for ServicePrefix {
    type Err = ValueError;

    /// An IPv6 literal (Miredo also resolves names here; we do no DNS), outside
    /// ff00::/8. Bits after the 32nd are ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr: Ipv6Addr = s.parse().map_err(|_| ValueError::NotIpv6)?;
        let bits = (addr.to_bits() >> 96) as u32;
        if bits >> 24 == 0xff {
            return Err(ValueError::MulticastPrefix);
        }
        Ok(Self(bits))
    }
}

impl fmt::Display for ServicePrefix {
    /// `2001::/32`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/32", Ipv6Addr::from_bits(u128::from(self.0) << 96))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        assert_eq!("2001:0::".parse(), Ok(ServicePrefix::STANDARD));
        assert_eq!("2001:0:1234::1".parse(), Ok(ServicePrefix::STANDARD));
        assert_eq!("3ffe:831f::".parse(), Ok(ServicePrefix(0x3ffe_831f)));
        assert_eq!(ServicePrefix::default().to_string(), "2001::/32");
        assert_eq!(ServicePrefix(0x3ffe_831f).to_string(), "3ffe:831f::/32");
        assert_eq!("fe80::".parse(), Ok(ServicePrefix(0xfe80_0000)));
    }

    #[test]
    fn refused() {
        assert_eq!("ff02::1".parse::<ServicePrefix>(), Err(ValueError::MulticastPrefix));
        assert_eq!("ff00::".parse::<ServicePrefix>(), Err(ValueError::MulticastPrefix));
        for bad in ["2001::/32", "192.0.2.1", "teredo.example.net", ""] {
            assert_eq!(bad.parse::<ServicePrefix>(), Err(ValueError::NotIpv6), "{bad}");
        }
    }
}
