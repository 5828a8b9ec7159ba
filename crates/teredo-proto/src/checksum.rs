//! The Internet checksum (RFC 1071) and the IPv6 upper-layer pseudo-header (RFC 8200 §8.1),
//! as used by ICMPv6 (RFC 4443 §2.3) for every message Teredo builds: router
//! solicitations and advertisements, echo tests, bubbles' neighbours, unreachables.
//!
//! The sum adds 64-bit words in native byte order, in four independent 128-bit lanes, with
//! an end-around carry at the end, which is the sum of the 16-bit words modulo 0xffff
//! (RFC 1071 §2(B), (C)), and folds and byte-swaps once at the end.

use std::net::Ipv6Addr;

/// A running one's-complement sum. Add pieces with [`Checksum::add`], then take
/// [`Checksum::finish`] for the value to write into a header.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    sum: u64,
    /// Whether an odd byte is pending from the previous piece.
    odd: Option<u8>,
}

impl Checksum {
    /// An empty sum.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes; pieces may have any length, odd lengths included.
    pub fn add(&mut self, mut data: &[u8]) -> &mut Self {
        if let Some(hi) = self.odd.take() {
            if let Some((&lo, rest)) = data.split_first() {
                self.sum = end_around(self.sum, u64::from(u16::from_ne_bytes([hi, lo])));
                data = rest;
            } else {
                self.odd = Some(hi);
                return self;
            }
        }
        // Eight bytes at a time into 128-bit accumulators (an add with carry per word), four
        // of them side by side so that their carry chains run in parallel: 2^16 ≡ 1 modulo
        // 0xffff, so the sum of the 64-bit words folds to the same value as the sum of the
        // 16-bit words, in either byte order.
        let word =
            |w: &[u8]| u128::from(u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]));
        let mut blocks = data.chunks_exact(32);
        let mut lanes = [0u128; 4];
        for b in &mut blocks {
            lanes[0] += word(&b[0..8]);
            lanes[1] += word(&b[8..16]);
            lanes[2] += word(&b[16..24]);
            lanes[3] += word(&b[24..32]);
        }
        let mut words = blocks.remainder().chunks_exact(8);
        for w in &mut words {
            lanes[0] += word(w);
        }
        let wide = lanes.iter().fold(0u64, |s, &l| end_around(end_around(s, l as u64), (l >> 64) as u64));
        let mut rest = words.remainder().chunks_exact(2);
        let mut acc: u64 = 0;
        for c in &mut rest {
            acc += u64::from(u16::from_ne_bytes([c[0], c[1]]));
        }
        self.sum = end_around(end_around(self.sum, acc), wide);
        if let [last] = rest.remainder() {
            self.odd = Some(*last);
        }
        self
    }

    /// Adds the IPv6 pseudo-header for an upper-layer packet of `len` bytes.
    pub fn add_pseudo_header(
        &mut self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        len: u32,
        next_header: u8,
    ) -> &mut Self {
        // One piece of 40 bytes rather than four: this runs for every segment coalesced.
        let mut header = [0u8; 40];
        header[..16].copy_from_slice(&src.octets());
        header[16..32].copy_from_slice(&dst.octets());
        header[32..36].copy_from_slice(&len.to_be_bytes());
        header[39] = next_header;
        self.add(&header)
    }

    /// The folded, complemented checksum in network byte order, ready to store.
    pub fn finish(&self) -> u16 {
        let mut sum = self.sum;
        if let Some(hi) = self.odd {
            sum = end_around(sum, u64::from(u16::from_ne_bytes([hi, 0])));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // Back from native to network order: the fold is byte-order independent.
        !u16::from_be(sum as u16)
    }
}

/// `a + b` in one's-complement arithmetic on 64 bits: the carry out goes back in at the
/// bottom (2^64 ≡ 1 modulo 0xffff, so the folded sum is unchanged).
fn end_around(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// The ICMPv6 checksum of `message` (checksum field included as it is) between `src` and
/// `dst`. A received message is intact when this returns 0; a message being built gets
/// this value in its checksum field after that field was zeroed.
pub fn icmpv6(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_pseudo_header(src, dst, message.len() as u32, crate::wire::ipv6::NEXT_HEADER_ICMPV6).add(message);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of 0001 f203 f4f5 f6f7 is ddf2, the checksum 220d.
        let mut c = Checksum::new();
        c.add(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
        assert_eq!(c.finish(), !0xddf2);
    }

    /// The sum of 16-bit words, the way RFC 1071 §1 defines it, folded at the end.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u64 = 0;
        for c in data.chunks(2) {
            sum += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest::proptest! {
        /// The word-at-a-time sum is the RFC's, whatever the bytes, lengths and cuts
        /// (all-ones words included, where carries pile up).
        #[test]
        fn same_as_the_rfc_sum(
            data in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::any::<u8>(), proptest::strategy::Just(0xffu8)], 0..3000),
            cut in 0usize..3000,
        ) {
            let cut = cut.min(data.len());
            let mut c = Checksum::new();
            c.add(&data[..cut]).add(&data[cut..]);
            proptest::prop_assert_eq!(c.finish(), reference(&data));
        }
    }

    proptest::proptest! {
        /// The pseudo-header is the 40 bytes of RFC 8200 §8.1, also after an odd piece.
        #[test]
        fn pseudo_header_is_the_rfc_layout(
            src in proptest::prelude::any::<[u8; 16]>(),
            dst in proptest::prelude::any::<[u8; 16]>(),
            len in proptest::prelude::any::<u32>(),
            next_header in proptest::prelude::any::<u8>(),
            before in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5),
        ) {
            let mut c = Checksum::new();
            c.add(&before).add_pseudo_header(&src.into(), &dst.into(), len, next_header);
            let mut bytes = before.clone();
            bytes.extend_from_slice(&src);
            bytes.extend_from_slice(&dst);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, next_header]);
            proptest::prop_assert_eq!(c.finish(), reference(&bytes));
        }
    }

    /// A sum of all-ones words is close to 2^64: the odd byte of a piece that follows, and
    /// the one `finish` adds, must carry around too.
    #[test]
    fn odd_bytes_after_a_sum_near_the_top_carry_around() {
        let data = [0xffu8; 8];
        let mut c = Checksum::new();
        c.add(&data).add(&[0xff]).add(&[0xff, 0xff]);
        assert_eq!(c.finish(), reference(&[0xffu8; 11]));
        let mut c = Checksum::new();
        c.add(&data).add(&[0xff]);
        assert_eq!(c.finish(), reference(&[0xffu8; 9]));
    }

    #[test]
    fn carries_of_many_all_ones_words_are_kept() {
        let data = vec![0xffu8; 65536];
        let mut c = Checksum::new();
        c.add(&data).add(&data).add(&[0, 1]);
        let mut both = data.clone();
        both.extend_from_slice(&data);
        both.extend_from_slice(&[0, 1]);
        assert_eq!(c.finish(), reference(&both));
    }

    #[test]
    fn split_pieces_give_same_sum() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let mut whole = Checksum::new();
        whole.add(&data);
        for cut in [0, 1, 2, 3, 500, 1000, 1001] {
            let mut parts = Checksum::new();
            parts.add(&data[..cut]).add(&data[cut..]);
            assert_eq!(parts.finish(), whole.finish(), "cut {cut}");
        }
    }
}
