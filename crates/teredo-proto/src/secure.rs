//! Secure qualification (RFC 4380 §5.2.2): a client identifier and a shared secret with
//! which a client and its server authenticate the router solicitation and the router
//! advertisement, with the RFC's default algorithm, HMAC-SHA1 (RFC 2104) over the nonce,
//! the confirmation byte, the origin indication when present, and the IPv6 packet, "without
//! any additional padding". No other implementation offers it; Miredo parses the header
//! and skips its identifier and value.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::nonce::constant_time_eq;
use crate::wire::encap::{Authentication, OriginIndication};

/// The length of an HMAC-SHA1 authentication value.
pub const AUTH_VALUE_LEN: usize = 20;

/// Why credentials cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The identifier is empty or longer than the 255 bytes of ID-len.
    #[error("a client identifier has 1 to 255 bytes")]
    Identifier,
    /// The secret is empty.
    #[error("the shared secret is empty")]
    Secret,
}

/// A client's identifier and the secret it shares with its server.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    id: Vec<u8>,
    secret: Vec<u8>,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Never the secret, in logs or panics.
        f.debug_struct("Credentials").field("id", &String::from_utf8_lossy(&self.id)).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials with identifier `id` (1 to 255 bytes) and a non-empty `secret`.
    pub fn new(id: &[u8], secret: &[u8]) -> Result<Self, CredentialsError> {
        if id.is_empty() || id.len() > 255 {
            return Err(CredentialsError::Identifier);
        }
        if secret.is_empty() {
            return Err(CredentialsError::Secret);
        }
        Ok(Self { id: id.to_vec(), secret: secret.to_vec() })
    }

    /// The client identifier.
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// The authentication value of a packet with this authentication header (its value
    /// ignored), origin indication and IPv6 packet.
    pub fn auth_value(
        &self,
        auth: &Authentication<'_>,
        origin: Option<&OriginIndication>,
        ipv6: &[u8],
    ) -> [u8; AUTH_VALUE_LEN] {
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        m.update(&auth.nonce);
        m.update(&[auth.confirmation]);
        if let Some(o) = origin {
            let mut wire = [0u8; OriginIndication::LEN];
            if o.emit(&mut wire).is_ok() {
                m.update(&wire);
            }
        }
        m.update(ipv6);
        m.finalize().into_bytes().into()
    }

    /// Whether a received packet carries this client's identifier and a valid
    /// authentication value (compared in constant time).
    pub fn verify(&self, auth: &Authentication<'_>, origin: Option<&OriginIndication>, ipv6: &[u8]) -> bool {
        auth.client_id == self.id.as_slice()
            && constant_time_eq(auth.auth_value, &self.auth_value(auth, origin, ipv6))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    /// RFC 2202 §3 test case 2: HMAC-SHA1 with key "Jefe".
    #[test]
    fn hmac_sha1_known_answer() {
        let c = Credentials::new(b"client", b"Jefe").unwrap();
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(&c.secret).unwrap();
        m.update(b"what do ya want for nothing?");
        let out: [u8; 20] = m.finalize().into_bytes().into();
        let want = [
            0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74, 0x16, 0xd5, 0xf1, 0x84, 0xdf, 0x9c,
            0x25, 0x9a, 0x7c, 0x79,
        ];
        assert_eq!(out, want);
    }

    /// The value covers nonce, confirmation, origin and packet, in that order with no
    /// padding: it equals HMAC-SHA1 of their concatenation, and changes with each.
    #[test]
    fn value_covers_every_part() {
        let c = Credentials::new(b"alice", b"secret").unwrap();
        let auth = Authentication { client_id: b"alice", auth_value: &[], nonce: [1; 8], confirmation: 0 };
        let origin = OriginIndication { addr: Ipv4Addr::new(198, 51, 100, 7), port: 40000 };
        let ipv6 = [0x60u8, 0, 0, 0, 0, 0, 59, 0];
        let v = c.auth_value(&auth, Some(&origin), &ipv6);
        let mut m = <Hmac<Sha1> as Mac>::new_from_slice(b"secret").unwrap();
        let mut wire = [0u8; 8];
        origin.emit(&mut wire).unwrap();
        m.update(&[[1u8; 8].as_slice(), &[0], &wire, &ipv6].concat());
        assert_eq!(v, <[u8; 20]>::from(m.finalize().into_bytes()));
        assert_ne!(v, c.auth_value(&Authentication { nonce: [2; 8], ..auth }, Some(&origin), &ipv6));
        assert_ne!(v, c.auth_value(&Authentication { confirmation: 1, ..auth }, Some(&origin), &ipv6));
        assert_ne!(v, c.auth_value(&auth, None, &ipv6));
        assert_ne!(v, c.auth_value(&auth, Some(&origin), &ipv6[..7]));
        let signed = Authentication { auth_value: &v, ..auth };
        assert!(c.verify(&signed, Some(&origin), &ipv6));
        let other = Credentials::new(b"alice", b"other").unwrap();
        assert!(!other.verify(&signed, Some(&origin), &ipv6));
        let bob = Credentials::new(b"bob", b"secret").unwrap();
        assert!(!bob.verify(&signed, Some(&origin), &ipv6));
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn bad_credentials_are_refused() {
        assert_eq!(Credentials::new(b"", b"s"), Err(CredentialsError::Identifier));
        assert_eq!(Credentials::new(&[b'x'; 256], b"s"), Err(CredentialsError::Identifier));
        assert_eq!(Credentials::new(b"x", b""), Err(CredentialsError::Secret));
    }
}
