//! Keyed tokens: values a Teredo node puts in packets so that it can later recognise the
//! answers to what it sent, without keeping state per packet and without letting an
//! off-path attacker forge them.
//!
//! - **RS nonces** (RFC 4380 §5.2.1): the 8-byte nonce of a client's router solicitation,
//!   which the server echoes in the authentication header of its advertisement.
//! - **Echo-test tokens** (RFC 4380 §5.2.9): the data of the ICMPv6 echo request of the
//!   direct IPv6 connectivity test, which the peer copies into its reply.
//! - **Bubble tokens**: the 4-byte nonce of the RFC 6081 §4.2 nonce trailer, and the
//!   interface identifier of a link-local bubble source (as Miredo does, so that a peer
//!   behind a symmetric NAT can be recognised by its reply bubble).
//! - **Address flags** (RFC 5991 §3.1): the 12 random bits of a client's Teredo address,
//!   derived rather than drawn, so that the core needs no random source.
//!
//! All are HMAC-SHA-256 (RFC 2104) under one random 256-bit key per process, truncated,
//! over a domain label and the fields they bind. The key comes from the caller: this crate
//! draws no randomness. Comparisons are constant-time.

use std::net::{Ipv4Addr, Ipv6Addr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How long an echo-test token stays valid, in seconds (RFC 4380 §5.2.9 leaves it open;
/// Miredo uses 30 s).
pub const ECHO_TOKEN_LIFETIME: u64 = 30;

/// The length of the echo-test data this module produces: 4 bytes of time and 12 of MAC.
pub const ECHO_TOKEN_LEN: usize = 16;

/// The per-process key, with the HMAC state precomputed.
#[derive(Clone)]
pub struct TokenKey {
    mac: HmacSha256,
}

impl core::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from 32 random bytes (from the operating system's random source).
    pub fn new(key: [u8; 32]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = match HmacSha256::new_from_slice(&key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        Self { mac }
    }

    fn tag(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(label);
        for p in parts {
            m.update(&(p.len() as u16).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// The nonce of a router solicitation to `server` sent in interval `epoch` (any counter
    /// the caller advances, e.g. the RS sequence number): RFC 4380 §5.2.1.
    pub fn rs_nonce(&self, server: Ipv4Addr, epoch: u64) -> [u8; 8] {
        let t = self.tag(b"teredo rs", &[&server.octets(), &epoch.to_be_bytes()]);
        let mut n = [0u8; 8];
        n.copy_from_slice(&t[..8]);
        n
    }

    /// Sixteen keyed bits from which a client takes the twelve random bits of its address
    /// flags (RFC 5991 §3.1, through [`crate::address::Flags::random`]) for the mapping
    /// `addr`:`port` in `generation` (a counter the client advances when its address
    /// changes): unpredictable to others, stable while the inputs are.
    pub fn address_flags(&self, addr: Ipv4Addr, port: u16, generation: u64) -> u16 {
        let parts: [&[u8]; 3] = [&addr.octets(), &port.to_be_bytes(), &generation.to_be_bytes()];
        let t = self.tag(b"teredo address flags", &parts);
        u16::from_be_bytes([t[0], t[1]])
    }

    /// The data of an echo request from `src` to `dst` with the given identifier and
    /// sequence, sent at `now_secs` (RFC 4380 §5.2.9).
    pub fn echo_token(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        id: u16,
        seq: u16,
        now_secs: u64,
    ) -> [u8; ECHO_TOKEN_LEN] {
        let time = now_secs as u32;
        let t = self.tag(
            b"teredo echo",
            &[&src.octets(), &dst.octets(), &id.to_be_bytes(), &seq.to_be_bytes(), &time.to_be_bytes()],
        );
        let mut out = [0u8; ECHO_TOKEN_LEN];
        out[..4].copy_from_slice(&time.to_be_bytes());
        out[4..].copy_from_slice(&t[..12]);
        out
    }

    /// Checks the data of an echo reply that claims to answer our request from `src` to
    /// `dst`: the token must be ours and at most [`ECHO_TOKEN_LIFETIME`] seconds old (a
    /// token from the future is refused).
    pub fn verify_echo_token(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        id: u16,
        seq: u16,
        data: &[u8],
        now_secs: u64,
    ) -> bool {
        let [a, b, c, d, ..] = *data else { return false };
        if data.len() != ECHO_TOKEN_LEN {
            return false;
        }
        let sent = u32::from_be_bytes([a, b, c, d]);
        let age = (now_secs as u32).wrapping_sub(sent);
        if u64::from(age) > ECHO_TOKEN_LIFETIME {
            return false;
        }
        let expected = self.echo_token(src, dst, id, seq, u64::from(sent));
        constant_time_eq(&expected, data)
    }

    /// A 128-bit key for a keyed hash (such as the peer table's SipHash), derived from
    /// this key and a `label` that tells its uses apart.
    pub fn hash_key(&self, label: &str) -> [u8; 16] {
        let t = self.tag(b"teredo hash key", &[label.as_bytes()]);
        let mut k = [0u8; 16];
        k.copy_from_slice(&t[..16]);
        k
    }

    /// The nonce of an RFC 6081 §4.2 trailer in bubbles for `peer`.
    pub fn bubble_nonce(&self, peer: &Ipv6Addr) -> [u8; 4] {
        let t = self.tag(b"teredo bubble nonce", &[&peer.octets()]);
        [t[0], t[1], t[2], t[3]]
    }

    /// Random port `n` of a client (RFC 6081 §5.4.4.2, §5.5.4.1: "select a random port
    /// number"), in 1024..=65535: keyed, so that nobody predicts it.
    pub fn random_port(&self, n: u64) -> u16 {
        let t = self.tag(b"teredo random port", &[&n.to_be_bytes()]);
        1024 + (u16::from_be_bytes([t[0], t[1]]) % (65535 - 1024 + 1))
    }

    /// The nonce of echo test `n`'s router solicitation to `server` (RFC 6081 §5.5.4.1.1:
    /// "a randomly generated Nonce field"), apart from qualification's ([`TokenKey::rs_nonce`]).
    pub fn echo_test_nonce(&self, server: Ipv4Addr, n: u64) -> [u8; 8] {
        let t = self.tag(b"teredo echo test rs", &[&server.octets(), &n.to_be_bytes()]);
        let mut r = [0u8; 8];
        r.copy_from_slice(&t[..8]);
        r
    }

    /// The delay before local discovery bubble `n` + 1 (RFC 4380 §5.2.8: uniformly
    /// distributed between 200 and 300 s), keyed so that clients behind one NAT do not keep
    /// in step.
    pub fn discovery_delay(&self, n: u32) -> std::time::Duration {
        let t = self.tag(b"teredo discovery delay", &[&n.to_be_bytes()]);
        let ms = u64::from(u32::from_be_bytes([t[0], t[1], t[2], t[3]])) % 100_001;
        std::time::Duration::from_millis(200_000 + ms)
    }

    /// The interface identifier of a link-local bubble source for a peer whose Teredo
    /// address maps to `addr`:`port`; its U and G bits are clear (RFC 4291 §2.5.1).
    pub fn bubble_interface_id(&self, addr: Ipv4Addr, port: u16) -> [u8; 8] {
        let t = self.tag(b"teredo bubble iid", &[&addr.octets(), &port.to_be_bytes()]);
        let mut iid = [0u8; 8];
        iid.copy_from_slice(&t[..8]);
        iid[0] &= !0x03;
        iid
    }

    /// The link-local source of the bubbles sent to a peer whose Teredo address maps to
    /// `addr`:`port`: `fe80::` followed by [`TokenKey::bubble_interface_id`], as Miredo's
    /// (its `CheckBubble` scheme). A reply bubble swaps source and destination, so its
    /// destination proves that the replier saw our bubble, from whatever IPv4 mapping it
    /// comes (a symmetric NAT gives it a new one): [`TokenKey::is_bubble_token`].
    pub fn bubble_source(&self, addr: Ipv4Addr, port: u16) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a[0] = 0xfe;
        a[1] = 0x80;
        a[8..].copy_from_slice(&self.bubble_interface_id(addr, port));
        Ipv6Addr::from(a)
    }

    /// Whether `dst` is the [`TokenKey::bubble_source`] of our bubbles to the peer whose
    /// Teredo address maps to `addr`:`port` (compared in constant time).
    pub fn is_bubble_token(&self, dst: &[u8; 16], addr: Ipv4Addr, port: u16) -> bool {
        constant_time_eq(dst, &self.bubble_source(addr, port).octets())
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::new([b; 32])
    }

    #[test]
    fn rs_nonce_is_keyed_and_bound() {
        let s = Ipv4Addr::new(192, 0, 2, 1);
        assert_eq!(key(1).rs_nonce(s, 5), key(1).rs_nonce(s, 5));
        assert_ne!(key(1).rs_nonce(s, 5), key(2).rs_nonce(s, 5));
        assert_ne!(key(1).rs_nonce(s, 5), key(1).rs_nonce(s, 6));
        assert_ne!(key(1).rs_nonce(s, 5), key(1).rs_nonce(Ipv4Addr::new(192, 0, 2, 2), 5));
    }

    #[test]
    fn echo_token() {
        let k = key(7);
        let a: Ipv6Addr = "2001:0:c000:201::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let t = k.echo_token(&a, &b, 1, 2, 1000);
        assert!(k.verify_echo_token(&a, &b, 1, 2, &t, 1000));
        assert!(k.verify_echo_token(&a, &b, 1, 2, &t, 1030));
        assert!(!k.verify_echo_token(&a, &b, 1, 2, &t, 1031), "too old");
        assert!(!k.verify_echo_token(&a, &b, 1, 2, &t, 999), "from the future");
        assert!(!k.verify_echo_token(&b, &a, 1, 2, &t, 1000), "swapped addresses");
        assert!(!k.verify_echo_token(&a, &b, 1, 3, &t, 1000), "other sequence");
        assert!(!key(8).verify_echo_token(&a, &b, 1, 2, &t, 1000), "other key");
        let mut bad = t;
        bad[15] ^= 1;
        assert!(!k.verify_echo_token(&a, &b, 1, 2, &bad, 1000), "flipped bit");
        assert!(!k.verify_echo_token(&a, &b, 1, 2, &t[..15], 1000), "short");
        assert!(!k.verify_echo_token(&a, &b, 1, 2, &[], 1000), "empty");
    }

    #[test]
    fn discovery_delays_are_200_to_300_s_and_vary() {
        let k = key(7);
        let d: Vec<_> = (0..200).map(|n| k.discovery_delay(n).as_secs_f64()).collect();
        assert!(d.iter().all(|&s| (200.0..=300.0).contains(&s)), "{d:?}");
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        assert!((240.0..260.0).contains(&mean), "{mean}");
        assert_ne!(k.discovery_delay(0), key(8).discovery_delay(0));
    }

    #[test]
    fn bubble_tokens() {
        let k = key(3);
        let iid = k.bubble_interface_id(Ipv4Addr::new(198, 51, 100, 1), 4000);
        assert_eq!(iid[0] & 3, 0);
        assert_ne!(iid, k.bubble_interface_id(Ipv4Addr::new(198, 51, 100, 1), 4001));
        let p: Ipv6Addr = "2001::1".parse().unwrap();
        assert_eq!(k.bubble_nonce(&p), k.bubble_nonce(&p));
        assert_ne!(k.bubble_nonce(&p), key(4).bubble_nonce(&p));
    }
}
