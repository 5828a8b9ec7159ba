//! The keyed hash of the peer table: SipHash-1-3 (Aumasson and Bernstein, "SipHash: a fast
//! short-input PRF", with Rust's standard choice of one compression and three finalisation
//! rounds) under a secret 128-bit key, specialised for the one input the table hashes: a
//! 16-byte IPv6 address.
//!
//! Peer addresses are chosen by whoever sends packets (RFC 4380 §7.3.3 "Denial of Service
//! by Exceeding the Number of Peers"): with an unkeyed hash an attacker could pick
//! addresses that all land in one probe run and turn every lookup into a scan. With a
//! secret key they cannot predict where an address lands.

use std::net::Ipv6Addr;

/// SipHash-1-3 of IPv6 addresses under a secret key.
#[derive(Clone, Copy)]
pub struct PeerHasher {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for PeerHasher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PeerHasher(..)")
    }
}

#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

impl PeerHasher {
    /// A hasher under `key` (16 secret random bytes, e.g. from
    /// [`crate::nonce::TokenKey::hash_key`]).
    pub fn new(key: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&key[..8]);
        k1.copy_from_slice(&key[8..]);
        Self { k0: u64::from_le_bytes(k0), k1: u64::from_le_bytes(k1) }
    }

    /// SipHash-1-3 of the 16 bytes of `addr`: the same value as the reference algorithm
    /// gives for that 16-byte message.
    #[inline]
    pub fn hash(&self, addr: &Ipv6Addr) -> u64 {
        self.hash_octets(&addr.octets())
    }

    /// SipHash-1-3 of a 16-byte message.
    #[inline]
    pub fn hash_octets(&self, m: &[u8; 16]) -> u64 {
        let mut v = [
            self.k0 ^ 0x736f_6d65_7073_6575,
            self.k1 ^ 0x646f_7261_6e64_6f6d,
            self.k0 ^ 0x6c79_6765_6e65_7261,
            self.k1 ^ 0x7465_6462_7974_6573,
        ];
        let mut w = [0u8; 8];
        for half in [&m[..8], &m[8..]] {
            w.copy_from_slice(half);
            let word = u64::from_le_bytes(w);
            v[3] ^= word;
            sip_round(&mut v);
            v[0] ^= word;
        }
        // The final block: the message length (16) in the top byte, no tail bytes.
        let last = 16u64 << 56;
        v[3] ^= last;
        sip_round(&mut v);
        v[0] ^= last;
        v[2] ^= 0xff;
        sip_round(&mut v);
        sip_round(&mut v);
        sip_round(&mut v);
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    /// Which of `shards` shards an address belongs to (`shards` > 0; 0 is treated as 1).
    /// The I/O layer uses this, with a hasher under a key of its own (not a table's), to
    /// pick the shard of a peer: the inner source address on the UDP side, the inner
    /// destination on the TUN side, so that both directions of one peer meet in one shard.
    pub fn shard(&self, addr: &Ipv6Addr, shards: usize) -> usize {
        reduce(self.hash(addr), shards.max(1))
    }
}

/// Maps a 64-bit hash uniformly onto `0..n` with one multiplication (Lemire's "fast
/// range"); uses the high bits of the hash.
#[inline(always)]
pub(crate) fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::Hasher;

    #[test]
    fn matches_std_siphash13_with_zero_key() {
        // The standard library's DefaultHasher::new() is SipHash-1-3 under the zero key.
        for seed in 0u8..32 {
            let m: [u8; 16] = core::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8 * 7));
            let mut std = std::hash::DefaultHasher::new();
            std.write(&m);
            assert_eq!(PeerHasher::new([0; 16]).hash_octets(&m), std.finish());
        }
    }

    #[test]
    fn keyed() {
        let a: Ipv6Addr = "2001:0:c000:201::1".parse().unwrap();
        assert_ne!(PeerHasher::new([1; 16]).hash(&a), PeerHasher::new([2; 16]).hash(&a));
        assert_eq!(PeerHasher::new([1; 16]).hash(&a), PeerHasher::new([1; 16]).hash(&a));
        assert!(PeerHasher::new([1; 16]).shard(&a, 8) < 8);
        assert_eq!(PeerHasher::new([1; 16]).shard(&a, 0), 0);
    }

    #[test]
    fn reduce_range() {
        assert_eq!(reduce(0, 10), 0);
        assert_eq!(reduce(u64::MAX, 10), 9);
        assert_eq!(reduce(u64::MAX / 2, 10), 4);
    }
}
