//! The `struct virtio_net_hdr` of the Linux virtio-net ABI
//! (`include/uapi/linux/virtio_net.h`), which a TUN device opened with `IFF_VNET_HDR`
//! prepends to every packet it reads and expects in front of every packet written.
//!
//! We use the 10-byte legacy layout (the default `TUNSETVNETHDRSZ`, without `num_buffers`):
//!
//! ```text
//! offset 0  u8   flags        VIRTIO_NET_HDR_F_NEEDS_CSUM (1), VIRTIO_NET_HDR_F_DATA_VALID (2)
//! offset 1  u8   gso_type     VIRTIO_NET_HDR_GSO_NONE (0), _TCPV4 (1), _UDP (3), _TCPV6 (4),
//!                             _UDP_L4 (5), ORed with _ECN (0x80)
//! offset 2  u16  hdr_len      length of the headers (a hint; see below)
//! offset 4  u16  gso_size     bytes of payload per segment (the MSS)
//! offset 6  u16  csum_start   where the checksummed area starts (the transport header)
//! offset 8  u16  csum_offset  where the checksum is, from csum_start
//! ```
//!
//! The 16-bit fields are in the host's byte order: for a legacy header TUN uses little
//! endian on little-endian hosts and, on big-endian hosts, big endian unless
//! `TUNSETVNETLE` (or `TUNSETVNETBE`) changed it, which we never do — so "native" is right
//! on every platform we run on.
//!
//! On reads of GSO packets, Linux fills `hdr_len` with the length of the skb's linear part (0 otherwise)
//! (`virtio_net_hdr_from_skb`), which need not be the header length: we never rely on it
//! and find the headers from `csum_start` and the TCP data offset instead.

/// Size of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

/// `struct virtio_net_hdr`, fields in the host's byte order (see the module comment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHeader {
    /// `VIRTIO_NET_HDR_F_*` bits.
    pub flags: u8,
    /// `VIRTIO_NET_HDR_GSO_*`, possibly ORed with [`VnetHeader::GSO_ECN`].
    pub gso_type: u8,
    /// Length of the headers in front of the segmented payload.
    pub hdr_len: u16,
    /// Bytes of transport payload per segment (the MSS), for GSO packets.
    pub gso_size: u16,
    /// Offset of the start of the checksummed area (the transport header), when
    /// [`VnetHeader::F_NEEDS_CSUM`] is set.
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 for TCP, 6 for UDP).
    pub csum_offset: u16,
}

impl VnetHeader {
    /// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds
    /// only the folded pseudo-header sum (not complemented); the sum from `csum_start` to
    /// the end of the packet must be added.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified.
    pub const F_DATA_VALID: u8 = 2;
    /// `VIRTIO_NET_HDR_GSO_NONE`: an ordinary packet.
    pub const GSO_NONE: u8 = 0;
    /// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP/IPv4 segmentation.
    pub const GSO_TCPV4: u8 = 1;
    /// `VIRTIO_NET_HDR_GSO_UDP`: UDP fragmentation offload (UFO).
    pub const GSO_UDP: u8 = 3;
    /// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP/IPv6 segmentation.
    pub const GSO_TCPV6: u8 = 4;
    /// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation (USO), IPv4 or IPv6.
    pub const GSO_UDP_L4: u8 = 5;
    /// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry ECN (CWR on the first only).
    pub const GSO_ECN: u8 = 0x80;

    /// Parses the first [`VNET_HDR_LEN`] bytes; `None` if there are fewer.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = bytes.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header in wire layout, ready to write in front of a packet.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether [`VnetHeader::F_NEEDS_CSUM`] is set.
    pub fn needs_csum(&self) -> bool {
        self.flags & Self::F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_layout() {
        let h = VnetHeader {
            flags: 1,
            gso_type: 4,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
        };
        let b = h.to_bytes();
        // The bytes the kernel reads: flags, gso_type, then four 16-bit fields in the
        // host's order (written out, so that a wrong order cannot pass).
        #[cfg(target_endian = "little")]
        let expected = [1, 4, 0x02, 0x01, 0x04, 0x03, 0x06, 0x05, 0x08, 0x07];
        #[cfg(target_endian = "big")]
        let expected = [1, 4, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(b, expected);
        assert_eq!(VnetHeader::parse(&b), Some(h));
        assert_eq!(VnetHeader::default().to_bytes(), [0; VNET_HDR_LEN]);
    }

    #[test]
    fn short_input_is_none() {
        for n in 0..VNET_HDR_LEN {
            assert_eq!(VnetHeader::parse(&[0xff; VNET_HDR_LEN][..n]), None);
        }
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), VNET_HDR_LEN..40)) {
            let h = VnetHeader::parse(&bytes).unwrap();
            prop_assert_eq!(&h.to_bytes()[..], &bytes[..VNET_HDR_LEN]);
        }
    }
}
