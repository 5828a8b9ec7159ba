//! The trailers of RFC 6081 §4: type-length-value elements after the IPv6 packet in a
//! Teredo datagram.
//!
//! | type | trailer | section |
//! |---|---|---|
//! | 0x01 | Nonce (4 bytes) | §4.2 |
//! | 0x03 | Alternate Address (2 reserved bytes, 1–4 address/port pairs) | §4.3 |
//! | 0x04 | Neighbor Discovery Option (discovery type, 3 reserved bytes) | §4.4 |
//! | 0x05 | Random Port (2 bytes), as §4.5 defines it | §4.5 |
//! | 0x02 | Random Port, as the IANA table of §9 lists it | §9 |
//!
//! The RFC contradicts itself on the Random Port type (0x05 in §4.5, 0x02 in §9): both are
//! read, and the type seen is kept so that a reply can use the same one.
//!
//! Processing follows §5.1.2: trailers are read in order; an unknown type whose two high
//! bits are 01 discards the packet, any other unknown type is skipped; a malformed trailer
//! (fewer than 2 bytes left, or fewer than 2 + Length) stops the processing. A known type
//! with a Length other than the one its section requires is treated as malformed too.

use std::net::Ipv4Addr;

use super::{BufferTooSmall, Malformed, take};

/// Nonce trailer type (§4.2).
pub const NONCE: u8 = 0x01;
/// Random Port trailer type as listed by the IANA registry (§9).
pub const RANDOM_PORT_IANA: u8 = 0x02;
/// Alternate Address trailer type (§4.3).
pub const ALTERNATE_ADDRESS: u8 = 0x03;
/// Neighbor Discovery Option trailer type (§4.4).
pub const NEIGHBOR_DISCOVERY: u8 = 0x04;
/// Random Port trailer type as §4.5 defines it.
pub const RANDOM_PORT: u8 = 0x05;

/// DiscoveryType of a Neighbor Discovery Option trailer: a solicitation (§4.4).
pub const DISCOVERY_SOLICITATION: u8 = 0x00;
/// DiscoveryType of a Neighbor Discovery Option trailer: an advertisement (§4.4).
pub const DISCOVERY_ADVERTISEMENT: u8 = 0x01;

/// One trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer<'a> {
    /// Nonce trailer (§4.2).
    Nonce([u8; 4]),
    /// Alternate Address trailer (§4.3): the raw list of 6-byte address/port entries.
    AlternateAddress(AlternateAddresses<'a>),
    /// Neighbor Discovery Option trailer (§4.4).
    NeighborDiscovery {
        /// [`DISCOVERY_SOLICITATION`] or [`DISCOVERY_ADVERTISEMENT`] (others are kept).
        discovery_type: u8,
    },
    /// Random Port trailer (§4.5), with the type byte it came with (0x05 or 0x02).
    RandomPort {
        /// The trailer type used: [`RANDOM_PORT`] or [`RANDOM_PORT_IANA`].
        trailer_type: u8,
        /// The port the sender predicts its NAT assigned.
        port: u16,
    },
    /// A trailer type we do not know and may skip.
    Unknown {
        /// The type byte.
        trailer_type: u8,
        /// The value.
        value: &'a [u8],
    },
}

/// The address/port list of an Alternate Address trailer: 1 to 4 entries of 6 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlternateAddresses<'a>(&'a [u8]);

impl<'a> AlternateAddresses<'a> {
    /// Wraps raw entries; `None` unless the length is 6, 12, 18 or 24.
    pub fn new(raw: &'a [u8]) -> Option<Self> {
        (matches!(raw.len(), 6 | 12 | 18 | 24)).then_some(Self(raw))
    }
    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, u16)> + 'a {
        self.0
            .chunks_exact(6)
            .map(|c| (Ipv4Addr::new(c[0], c[1], c[2], c[3]), u16::from_be_bytes([c[4], c[5]])))
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

impl Trailer<'_> {
    /// The number of bytes this trailer takes on the wire.
    pub fn wire_len(&self) -> usize {
        2 + match self {
            Self::Nonce(_) | Self::NeighborDiscovery { .. } => 4,
            Self::AlternateAddress(a) => 2 + a.0.len(),
            Self::RandomPort { .. } => 2,
            Self::Unknown { value, .. } => value.len(),
        }
    }

    /// Writes the trailer into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
        let len = self.wire_len();
        let vlen = u8::try_from(len - 2).map_err(|_| BufferTooSmall)?;
        let b = take(buf, len)?;
        b[1] = vlen;
        match self {
            Self::Nonce(n) => {
                b[0] = NONCE;
                b[2..6].copy_from_slice(n);
            }
            Self::AlternateAddress(a) => {
                b[0] = ALTERNATE_ADDRESS;
                b[2..4].copy_from_slice(&[0, 0]);
                b[4..].copy_from_slice(a.0);
            }
            Self::NeighborDiscovery { discovery_type } => {
                b[0] = NEIGHBOR_DISCOVERY;
                b[2..6].copy_from_slice(&[*discovery_type, 0, 0, 0]);
            }
            Self::RandomPort { trailer_type, port } => {
                b[0] = *trailer_type;
                b[2..4].copy_from_slice(&port.to_be_bytes());
            }
            Self::Unknown { trailer_type, value } => {
                b[0] = *trailer_type;
                b[2..].copy_from_slice(value);
            }
        }
        Ok(len)
    }
}

/// The trailer area of a datagram, read lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailers<'a>(&'a [u8]);

impl<'a> Trailers<'a> {
    /// Wraps the bytes after the IPv6 packet.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    /// True when the datagram had nothing after the IPv6 packet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
    /// The trailers in order, as §5.1.2 reads them: iteration ends at the end of the
    /// data or at the first malformed trailer. An item is `Err(DiscardTrailer)` when an
    /// unknown trailer demands that the whole packet be discarded.
    pub fn iter(&self) -> TrailerIter<'a> {
        TrailerIter { rest: self.0 }
    }
    /// Checks the §5.1.2 discard rule over all trailers: `Err` when the packet must be
    /// discarded.
    pub fn check(&self) -> Result<(), Malformed> {
        self.iter().try_for_each(|t| t.map(|_| ()))
    }
    /// The first Nonce trailer, if any.
    pub fn nonce(&self) -> Option<[u8; 4]> {
        self.iter().find_map(|t| match t {
            Ok(Trailer::Nonce(n)) => Some(n),
            _ => None,
        })
    }
}

/// Iterator over [`Trailers`].
#[derive(Debug, Clone)]
pub struct TrailerIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TrailerIter<'a> {
    type Item = Result<Trailer<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        let [ty, len, ref rest @ ..] = *self.rest else {
            self.rest = &[];
            return None;
        };
        let Some(value) = rest.get(..usize::from(len)) else {
            self.rest = &[];
            return None; // malformed: stop processing
        };
        self.rest = &rest[usize::from(len)..];
        let t = match (ty, value) {
            (NONCE, &[a, b, c, d]) => Trailer::Nonce([a, b, c, d]),
            (ALTERNATE_ADDRESS, [_, _, list @ ..]) if AlternateAddresses::new(list).is_some() => {
                Trailer::AlternateAddress(AlternateAddresses(list))
            }
            (NEIGHBOR_DISCOVERY, &[discovery_type, _, _, _]) => Trailer::NeighborDiscovery { discovery_type },
            (RANDOM_PORT | RANDOM_PORT_IANA, &[a, b]) => {
                Trailer::RandomPort { trailer_type: ty, port: u16::from_be_bytes([a, b]) }
            }
            (NONCE | ALTERNATE_ADDRESS | NEIGHBOR_DISCOVERY | RANDOM_PORT | RANDOM_PORT_IANA, _) => {
                self.rest = &[];
                return None; // a known type with the wrong length: malformed
            }
            _ if ty >> 6 == 0b01 => {
                self.rest = &[];
                return Some(Err(Malformed::DiscardTrailer));
            }
            _ => Trailer::Unknown { trailer_type: ty, value },
        };
        Some(Ok(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_kinds() {
        let bytes = [
            0x01, 4, 1, 2, 3, 4, // nonce
            0x05, 2, 0x0d, 0xd8, // random port (§4.5)
            0x02, 2, 0x0d, 0xd9, // random port (IANA)
            0x04, 4, 0, 0, 0, 0, // ND option, solicitation
            0x03, 8, 0, 0, 192, 0, 2, 1, 0x0d, 0xd8, // alternate address
            0x80, 1, 9, // unknown, skip
        ];
        let t = Trailers::new(&bytes);
        let v: Vec<_> = t.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 6);
        assert_eq!(v[0], Trailer::Nonce([1, 2, 3, 4]));
        assert_eq!(v[1], Trailer::RandomPort { trailer_type: 5, port: 3544 });
        assert_eq!(v[2], Trailer::RandomPort { trailer_type: 2, port: 3545 });
        assert_eq!(v[3], Trailer::NeighborDiscovery { discovery_type: DISCOVERY_SOLICITATION });
        let Trailer::AlternateAddress(a) = v[4] else { panic!() };
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![(Ipv4Addr::new(192, 0, 2, 1), 3544)]);
        assert_eq!(v[5], Trailer::Unknown { trailer_type: 0x80, value: &[9] });
        assert_eq!(t.nonce(), Some([1, 2, 3, 4]));
        // round trip
        let mut buf = [0u8; 64];
        let mut n = 0;
        for x in &v {
            n += x.emit(&mut buf[n..]).unwrap();
        }
        assert_eq!(&buf[..n], &bytes[..]);
    }

    #[test]
    fn discard_and_malformed() {
        // 0x41: high bits 01, unknown: discard.
        assert_eq!(Trailers::new(&[0x01, 4, 0, 0, 0, 0, 0x41, 0]).check(), Err(Malformed::DiscardTrailer));
        // A malformed trailer stops processing: the discard trailer after it is not seen.
        assert_eq!(Trailers::new(&[0x80, 9, 0, 0x41, 0]).check(), Ok(()));
        assert_eq!(Trailers::new(&[0x01, 3, 0, 0, 0, 0x41, 0]).check(), Ok(()));
        assert_eq!(Trailers::new(&[7]).iter().count(), 0);
        // zeek-teredo_bubble_with_payload.pcap appends "1234" to a bubble: type 0x31
        // (skip), length 0x32, truncated: nothing usable, nothing to discard.
        assert_eq!(Trailers::new(b"1234").check(), Ok(()));
    }
}
