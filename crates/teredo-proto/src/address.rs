//! Teredo IPv6 addresses: RFC 4380 §4, with the flags layout of RFC 5991 §3.1.
//!
//! ```text
//! +-------------+-------------+-------+------+-------------+
//! | Prefix (32) | Server IPv4 | Flags | Port | Client IPv4 |
//! +-------------+-------------+-------+------+-------------+
//! ```
//!
//! The port and the client IPv4 are *obfuscated*: every bit is inverted (XOR 0xffff and
//! 0xffffffff). This module also holds the IPv4 "global unicast" test that RFC 4380
//! §5.2.4 requires for servers and mapped addresses, and the fixed link-local addresses
//! Teredo nodes use.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The Teredo service prefix 2001:0000::/32 (RFC 4380 §2.6, assigned by IANA).
pub const TEREDO_PREFIX: u32 = 0x2001_0000;

/// The experimental prefix 3ffe:831f::/32 that pre-standard servers (Windows XP, old
/// Microsoft servers) still advertised. Accepted when decoding; never generated.
pub const LEGACY_PREFIX: u32 = 0x3ffe_831f;

/// The Teredo UDP port (RFC 4380 §2.6).
pub const TEREDO_PORT: u16 = 3544;
/// The Teredo IPv4 Discovery Address (RFC 4380 §2.16), to which local discovery bubbles go
/// (§5.2.8).
pub const DISCOVERY_IPV4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 253);
/// The all-nodes on-link multicast address (RFC 4291 §2.7.1), the destination of local
/// discovery bubbles.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The link-local address a client without the cone bit uses as the source of its router
/// solicitations (Windows Vista and later, Miredo): `fe80::ffff:ffff:ffff`.
pub const LINK_LOCAL_RESTRICTED: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xffff, 0xffff, 0xffff);

/// The link-local address with the cone bit: `fe80::8000:5445:5245:444f` ("TEREDO").
pub const LINK_LOCAL_CONE: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x8000, 0x5445, 0x5245, 0x444f);

/// Which of the two known Teredo prefixes an address carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// 2001:0000::/32, the standard prefix.
    Standard,
    /// 3ffe:831f::/32, the pre-standard prefix.
    Legacy,
}

impl Prefix {
    /// Recognises one of the two Teredo prefixes from the first 32 bits of an address.
    pub fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            TEREDO_PREFIX => Some(Self::Standard),
            LEGACY_PREFIX => Some(Self::Legacy),
            _ => None,
        }
    }

    /// The 32 prefix bits.
    pub fn bits(self) -> u32 {
        match self {
            Self::Standard => TEREDO_PREFIX,
            Self::Legacy => LEGACY_PREFIX,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Standard => "2001::/32",
            Self::Legacy => "3ffe:831f::/32",
        })
    }
}

/// The 16-bit flags field, laid out as RFC 5991 §3.1 redefines it (bit 0 is the most
/// significant bit):
///
/// ```text
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
/// |C|z|Random1|U|G|    Random2    |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// C, the cone bit (RFC 4380 §4). Deprecated for clients by RFC 5991 §3.2.
    pub const CONE: u16 = 0x8000;
    /// z, reserved: must be zero (RFC 5991 §3.1).
    pub const Z: u16 = 0x4000;
    /// Random1, four random bits (RFC 5991 §3.1).
    pub const RANDOM1: u16 = 0x3c00;
    /// U, the universal/local bit of the modified EUI-64 identifier: zero.
    pub const U: u16 = 0x0200;
    /// G, the individual/group bit of the modified EUI-64 identifier: zero.
    pub const G: u16 = 0x0100;
    /// Random2, eight random bits (RFC 5991 §3.1).
    pub const RANDOM2: u16 = 0x00ff;
    /// All twelve random bits.
    pub const RANDOM_MASK: u16 = Self::RANDOM1 | Self::RANDOM2;

    /// Flags for a new client address as RFC 5991 §3.1 asks: C, z, U and G clear and the
    /// 12 random bits taken from `random` (which must come from a proper random source,
    /// RFC 4086). The core never draws randomness itself; the caller passes it.
    pub fn random(random: u16) -> Self {
        Self(random & Self::RANDOM_MASK)
    }

    /// The cone bit.
    pub fn cone(self) -> bool {
        self.0 & Self::CONE != 0
    }
    /// The reserved z bit (must be zero).
    pub fn z(self) -> bool {
        self.0 & Self::Z != 0
    }
    /// The four Random1 bits, as a number 0..=15.
    pub fn random1(self) -> u8 {
        ((self.0 & Self::RANDOM1) >> 10) as u8
    }
    /// The U bit.
    pub fn u(self) -> bool {
        self.0 & Self::U != 0
    }
    /// The G bit.
    pub fn g(self) -> bool {
        self.0 & Self::G != 0
    }
    /// The eight Random2 bits.
    pub fn random2(self) -> u8 {
        (self.0 & Self::RANDOM2) as u8
    }
    /// The same flags with the cone bit set or cleared.
    pub fn with_cone(self, cone: bool) -> Self {
        if cone { Self(self.0 | Self::CONE) } else { Self(self.0 & !Self::CONE) }
    }
}

/// A decoded Teredo address (RFC 4380 §4). The port and IPv4 are stored in clear
/// (de-obfuscated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TeredoAddress {
    /// The first 32 bits: the Teredo service prefix (normally [`TEREDO_PREFIX`]).
    pub prefix: u32,
    /// The IPv4 address of the client's Teredo server.
    pub server: Ipv4Addr,
    /// The flags field.
    pub flags: Flags,
    /// The client's mapped UDP port, in clear.
    pub mapped_port: u16,
    /// The client's mapped IPv4 address, in clear.
    pub mapped_addr: Ipv4Addr,
}

impl TeredoAddress {
    /// Decodes an address whose first 32 bits are one of the two Teredo prefixes; `None`
    /// for any other address.
    pub fn from_ipv6(addr: &Ipv6Addr) -> Option<Self> {
        let a = Self::from_ipv6_with_any_prefix(addr);
        Prefix::from_bits(a.prefix).map(|_| a)
    }

    /// Decodes an address under `prefix` (a relay or server may be configured with
    /// another `Prefix`, RFC 4380 §5.4); `None` when the address is outside it.
    pub fn from_ipv6_with_prefix(addr: &Ipv6Addr, prefix: u32) -> Option<Self> {
        let a = Self::from_ipv6_with_any_prefix(addr);
        (a.prefix == prefix).then_some(a)
    }

    /// Splits any IPv6 address into the Teredo fields, whatever its first 32 bits.
    pub fn from_ipv6_with_any_prefix(addr: &Ipv6Addr) -> Self {
        Self::from_octets(&addr.octets())
    }

    /// Splits 16 address bytes into the Teredo fields.
    pub fn from_octets(o: &[u8; 16]) -> Self {
        Self {
            prefix: u32::from_be_bytes([o[0], o[1], o[2], o[3]]),
            server: Ipv4Addr::new(o[4], o[5], o[6], o[7]),
            flags: Flags(u16::from_be_bytes([o[8], o[9]])),
            mapped_port: !u16::from_be_bytes([o[10], o[11]]),
            mapped_addr: Ipv4Addr::from(!u32::from_be_bytes([o[12], o[13], o[14], o[15]])),
        }
    }

    /// The 16 address bytes.
    pub fn octets(&self) -> [u8; 16] {
        let mut o = [0u8; 16];
        o[0..4].copy_from_slice(&self.prefix.to_be_bytes());
        o[4..8].copy_from_slice(&self.server.octets());
        o[8..10].copy_from_slice(&self.flags.0.to_be_bytes());
        o[10..12].copy_from_slice(&(!self.mapped_port).to_be_bytes());
        o[12..16].copy_from_slice(&(!u32::from(self.mapped_addr)).to_be_bytes());
        o
    }

    /// The IPv6 address.
    pub fn to_ipv6(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.octets())
    }

    /// The recognised prefix, if it is one of the two Teredo prefixes.
    pub fn known_prefix(&self) -> Option<Prefix> {
        Prefix::from_bits(self.prefix)
    }
}

impl fmt::Display for TeredoAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_ipv6(), f)
    }
}

/// The 16-bit obfuscated form of a port (RFC 4380 §4: each bit inverted).
pub fn obfuscate_port(port: u16) -> u16 {
    !port
}

/// The obfuscated form of an IPv4 address (RFC 4380 §4: each bit inverted).
pub fn obfuscate_ipv4(addr: Ipv4Addr) -> [u8; 4] {
    (!u32::from(addr)).to_be_bytes()
}

/// The link-local address a Teredo server sends its router advertisements from: fe80::/64
/// followed by the cone flag, the obfuscated port 3544 and the obfuscated primary server
/// IPv4 (RFC 4380 §4 last paragraph; Windows clients expect exactly this form).
pub fn server_link_local(primary: Ipv4Addr) -> Ipv6Addr {
    let a = TeredoAddress {
        prefix: 0xfe80_0000,
        server: Ipv4Addr::UNSPECIFIED,
        flags: Flags(Flags::CONE),
        mapped_port: TEREDO_PORT,
        mapped_addr: primary,
    };
    a.to_ipv6()
}

/// True when `addr` is a link-local address whose interface identifier has the cone bit
/// (RFC 4380 §5.3.2: a server answers such an RS from its other address).
pub fn is_cone_link_local(addr: &Ipv6Addr) -> bool {
    let o = addr.octets();
    o[0] == 0xfe && o[1] & 0xc0 == 0x80 && o[8] & 0x80 != 0
}

/// The IPv4 "global unicast" test of RFC 4380 §5.2.4, which servers and clients apply to
/// server addresses and mapped addresses, extended with the special-purpose ranges of the
/// IANA IPv4 special-purpose registry (RFC 6890) that cannot be a public mapping.
///
/// Rejected: 0/8, 10/8, 100.64/10 (shared address space, RFC 6598), 127/8, 169.254/16,
/// 172.16/12, 192.0.0/24 (IETF protocol assignments), 192.88.99/24 (6to4 anycast),
/// 192.168/16, 198.18/15 (benchmarking), 224/4 (multicast), 240/4 (reserved) and
/// 255.255.255.255. Miredo misses 100.64/10, 192.0.0/24, 198.18/15 and 240/4.
///
/// The documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24) are accepted, as
/// Miredo accepts them: they stand for public addresses in tests and examples.
pub fn is_global_unicast(addr: Ipv4Addr) -> bool {
    let a = u32::from(addr);
    const REJECTED: &[(u32, u32)] = &[
        (0x0000_0000, 8),  // 0/8 "this network"
        (0x0a00_0000, 8),  // 10/8
        (0x6440_0000, 10), // 100.64/10
        (0x7f00_0000, 8),  // 127/8
        (0xa9fe_0000, 16), // 169.254/16
        (0xac10_0000, 12), // 172.16/12
        (0xc000_0000, 24), // 192.0.0/24
        (0xc058_6300, 24), // 192.88.99/24
        (0xc0a8_0000, 16), // 192.168/16
        (0xc612_0000, 15), // 198.18/15
        (0xe000_0000, 4),  // 224/4
        (0xf000_0000, 4),  // 240/4, which contains 255.255.255.255
    ];
    !REJECTED.iter().any(|&(net, len)| a >> (32 - len) == net >> (32 - len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_worked_example() {
        // The example quoted with RFC 4380 §4: server 65.54.227.120, cone, port 40000,
        // client 192.0.2.45.
        let a: Ipv6Addr = "2001:0:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        let t = TeredoAddress::from_ipv6(&a).unwrap();
        assert_eq!(t.known_prefix(), Some(Prefix::Standard));
        assert_eq!(t.server, Ipv4Addr::new(65, 54, 227, 120));
        assert!(t.flags.cone());
        assert_eq!(t.flags.0, 0x8000);
        assert_eq!(t.mapped_port, 40000);
        assert_eq!(t.mapped_addr, Ipv4Addr::new(192, 0, 2, 45));
        assert_eq!(t.to_ipv6(), a);
    }

    #[test]
    fn miredo_addrcmp_vector() {
        let a: Ipv6Addr = "2001:0:c000:201:8000:cfc6:3fff:fd74".parse().unwrap();
        let t = TeredoAddress::from_ipv6(&a).unwrap();
        assert_eq!(t.server, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(t.mapped_port, 12345);
        assert_eq!(t.mapped_addr, Ipv4Addr::new(192, 0, 2, 139));
    }

    #[test]
    fn legacy_prefix_and_others() {
        let a: Ipv6Addr = "3ffe:831f:4136:e378:8000:63bf:3fff:fdd2".parse().unwrap();
        assert_eq!(TeredoAddress::from_ipv6(&a).unwrap().known_prefix(), Some(Prefix::Legacy));
        let n: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert!(TeredoAddress::from_ipv6(&n).is_none());
        assert!(TeredoAddress::from_ipv6_with_prefix(&n, 0x2001_0db8).is_some());
    }

    #[test]
    fn flags_bits() {
        // ndpi-teredo.pcap client flags 0x20f3: Random1 = 8, Random2 = 0xf3.
        let f = Flags(0x20f3);
        assert!(!f.cone() && !f.z() && !f.u() && !f.g());
        assert_eq!(f.random1(), 0x8);
        assert_eq!(f.random2(), 0xf3);
        let r = Flags::random(0xffff);
        assert_eq!(r.0, 0x3cff);
        assert!(!r.cone() && !r.z() && !r.u() && !r.g());
        assert_eq!(Flags(0).with_cone(true).0, 0x8000);
    }

    #[test]
    fn server_link_local_matches_capture() {
        // zeek-Teredo.pcap frame 7: server 65.55.158.80 sends from fe80::8000:f227:bec8:61af.
        let ll = server_link_local(Ipv4Addr::new(65, 55, 158, 80));
        assert_eq!(ll, "fe80::8000:f227:bec8:61af".parse::<Ipv6Addr>().unwrap());
        // miredo-facts §4.1: server 192.0.2.1 gives fe80::8000:f227:3fff:fdfe.
        assert_eq!(
            server_link_local(Ipv4Addr::new(192, 0, 2, 1)),
            "fe80::8000:f227:3fff:fdfe".parse::<Ipv6Addr>().unwrap()
        );
        assert!(is_cone_link_local(&"fe80::8000:ffff:ffff:fffd".parse().unwrap()));
        assert!(!is_cone_link_local(&LINK_LOCAL_RESTRICTED));
        assert!(is_cone_link_local(&LINK_LOCAL_CONE));
    }

    #[test]
    fn global_unicast() {
        for bad in [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.253",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_global_unicast(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "1.1.1.1",
            "65.54.227.120",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.2.10",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.100.1",
            "203.0.113.1",
            "223.255.255.255",
        ] {
            assert!(is_global_unicast(good.parse().unwrap()), "{good}");
        }
    }
}
