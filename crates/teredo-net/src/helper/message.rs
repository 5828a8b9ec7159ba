//! The worker ↔ helper messages: a small versioned fixed-size format of our own, never a
//! native C struct (Miredo sends a padded `struct { in6_addr; uint16_t }` and a native
//! `int`, miredo-facts §2.3), and the helper's validation of what it is asked to apply.
//!
//! Request, 24 bytes:
//!
//! ```text
//!  0      2        3      4          6          8                       24
//! +------+--------+------+----------+----------+-----------------------+
//! | "TH" | ver=1  | kind | MTU (BE) | 0 0      | IPv6 address          |
//! +------+--------+------+----------+----------+-----------------------+
//! kind 1 = Up (MTU, address), kind 2 = Down (MTU and address all zero),
//! kind 3 = Announce, kind 4 = Withdraw (a relay's route; MTU and address all zero)
//! ```
//!
//! Reply, 12 bytes:
//!
//! ```text
//!  0      2        3       4        5        6      8            12
//! +------+--------+-------+--------+--------+------+------------+
//! | "TH" | ver=1  | 0x80  | status | reason | 0 0  | value (BE) |
//! +------+--------+-------+--------+--------+------+------------+
//! status 0 Ready (sent once, unasked, when the helper has dropped its privileges),
//! 1 Applied, 2 Refused (reason 1 not Teredo, 2 multicast, 3 MTU, 4 malformed, 5 not
//! this helper's role),
//! 3 Failed (value = errno, or -1), 4 Hook (value = the hook's exit status)
//! ```
//!
//! Every field is checked on decoding: wrong length, magic, version, kind, status or reason,
//! non-zero reserved bytes, or a Down, Announce or Withdraw with a non-zero field are all
//! refused.

use std::net::Ipv6Addr;

/// Request length.
pub const REQUEST_LEN: usize = 24;
/// Reply length.
pub const REPLY_LEN: usize = 12;
/// The protocol version.
pub const VERSION: u8 = 1;
const MAGIC: [u8; 2] = *b"TH";
const KIND_UP: u8 = 1;
const KIND_DOWN: u8 = 2;
const KIND_ANNOUNCE: u8 = 3;
const KIND_WITHDRAW: u8 = 4;
const KIND_REPLY: u8 = 0x80;

/// The smallest MTU the helper applies (IPv6's minimum link MTU, RFC 8200 §5).
pub use teredo_proto::wire::ipv6::MIN_MTU;

/// What the worker asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Qualified: configure this address and MTU.
    Up {
        /// The Teredo address.
        address: Ipv6Addr,
        /// The MTU.
        mtu: u16,
    },
    /// Not qualified: deconfigure.
    Down,
    /// A relay is healthy: add its route to the served prefix (the one route its helper
    /// was given at start-up; the request names none).
    Announce,
    /// A relay is unhealthy or drained: delete that route.
    Withdraw,
}

/// Why the helper refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address is outside 2001::/32.
    #[error("address outside the Teredo prefix 2001::/32")]
    NotTeredo,
    /// The address is multicast.
    #[error("multicast address")]
    Multicast,
    /// The MTU is below 1280.
    #[error("MTU below 1280")]
    MtuTooSmall,
    /// The request was not a well-formed message.
    #[error("malformed request")]
    Malformed,
    /// A client's request to a relay's helper, or the other way round.
    #[error("not a request for this helper's role")]
    WrongRole,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Self::NotTeredo => 1,
            Self::Multicast => 2,
            Self::MtuTooSmall => 3,
            Self::Malformed => 4,
            Self::WrongRole => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => Self::NotTeredo,
            2 => Self::Multicast,
            3 => Self::MtuTooSmall,
            4 => Self::Malformed,
            5 => Self::WrongRole,
            _ => return None,
        })
    }
}

/// What the helper answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The helper is running with its reduced privileges (first message, unasked).
    Ready,
    /// The request was applied.
    Applied,
    /// The request was refused and nothing was changed.
    Refused(Refusal),
    /// Applying failed (errno, or −1 when there is none).
    Failed(i32),
    /// The hook script ran and exited with this status (−1: killed by a signal).
    Hook(i32),
}

impl Reply {
    /// Whether the request took effect: applied, or the hook exited 0.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Applied | Self::Hook(0))
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not the message's length.
    #[error("wrong length {0}")]
    Length(usize),
    /// Not "TH".
    #[error("bad magic")]
    Magic,
    /// Another version.
    #[error("unsupported version {0}")]
    Version(u8),
    /// Unknown kind.
    #[error("unknown kind {0}")]
    Kind(u8),
    /// A reserved byte is not zero, or a field that must be zero is not.
    #[error("non-zero reserved field")]
    Reserved,
    /// Unknown status or reason.
    #[error("unknown status {0}")]
    Status(u8),
}

impl Request {
    /// The 24 bytes of this request.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        match *self {
            Self::Up { address, mtu } => {
                b[3] = KIND_UP;
                b[4..6].copy_from_slice(&mtu.to_be_bytes());
                b[8..].copy_from_slice(&address.octets());
            }
            Self::Down => b[3] = KIND_DOWN,
            Self::Announce => b[3] = KIND_ANNOUNCE,
            Self::Withdraw => b[3] = KIND_WITHDRAW,
        }
        b
    }

    /// Parses a request (exactly [`REQUEST_LEN`] bytes).
    pub fn decode(b: &[u8]) -> Result<Self, MessageError> {
        let b: &[u8; REQUEST_LEN] = b.try_into().map_err(|_| MessageError::Length(b.len()))?;
        check_head(b)?;
        if b[6..8] != [0, 0] {
            return Err(MessageError::Reserved);
        }
        let mtu = u16::from_be_bytes([b[4], b[5]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[8..]);
        match b[3] {
            KIND_UP => Ok(Self::Up { address: Ipv6Addr::from(octets), mtu }),
            KIND_DOWN | KIND_ANNOUNCE | KIND_WITHDRAW if mtu != 0 || octets != [0; 16] => {
                Err(MessageError::Reserved)
            }
            KIND_DOWN => Ok(Self::Down),
            KIND_ANNOUNCE => Ok(Self::Announce),
            KIND_WITHDRAW => Ok(Self::Withdraw),
            k => Err(MessageError::Kind(k)),
        }
    }
}

impl Reply {
    /// The 12 bytes of this reply.
    pub fn encode(&self) -> [u8; REPLY_LEN] {
        let mut b = [0u8; REPLY_LEN];
        b[..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = KIND_REPLY;
        let (status, reason, value) = match *self {
            Self::Ready => (0, 0, 0),
            Self::Applied => (1, 0, 0),
            Self::Refused(r) => (2, r.code(), 0),
            Self::Failed(e) => (3, 0, e),
            Self::Hook(s) => (4, 0, s),
        };
        b[4] = status;
        b[5] = reason;
        b[8..].copy_from_slice(&value.to_be_bytes());
        b
    }

    /// Parses a reply (exactly [`REPLY_LEN`] bytes).
    pub fn decode(b: &[u8]) -> Result<Self, MessageError> {
        let b: &[u8; REPLY_LEN] = b.try_into().map_err(|_| MessageError::Length(b.len()))?;
        check_head(b)?;
        if b[3] != KIND_REPLY {
            return Err(MessageError::Kind(b[3]));
        }
        if b[6..8] != [0, 0] {
            return Err(MessageError::Reserved);
        }
        let value = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let (status, reason) = (b[4], b[5]);
        let no_extra = |r: Self| if reason == 0 && value == 0 { Ok(r) } else { Err(MessageError::Reserved) };
        match status {
            0 => no_extra(Self::Ready),
            1 => no_extra(Self::Applied),
            2 if value != 0 => Err(MessageError::Reserved),
            2 => Refusal::from_code(reason).map(Self::Refused).ok_or(MessageError::Status(reason)),
            3 | 4 if reason != 0 => Err(MessageError::Reserved),
            3 => Ok(Self::Failed(value)),
            4 => Ok(Self::Hook(value)),
            s => Err(MessageError::Status(s)),
        }
    }
}

fn check_head(b: &[u8]) -> Result<(), MessageError> {
    if b[..2] != MAGIC {
        return Err(MessageError::Magic);
    }
    if b[2] != VERSION {
        return Err(MessageError::Version(b[2]));
    }
    Ok(())
}

/// Checks an Up request: the address must be inside 2001::/32 and not multicast (the
/// second is implied by the first, and checked anyway), the MTU ≥ 1280 (≤ 65535 by its
/// type). Miredo 1.2.6 only checked "not multicast, MTU ≥ 1280", which let a compromised
/// worker have any unicast address configured (miredo-facts §2.3).
pub fn validate_up(address: Ipv6Addr, mtu: u16) -> Result<(), Refusal> {
    let s = address.segments();
    if address.is_multicast() {
        return Err(Refusal::Multicast);
    }
    if (u32::from(s[0]) << 16 | u32::from(s[1])) != teredo_proto::address::TEREDO_PREFIX {
        return Err(Refusal::NotTeredo);
    }
    if mtu < MIN_MTU {
        return Err(Refusal::MtuTooSmall);
    }
    Ok(())
}

/// What the helper does with one request read from the worker ([`decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Apply this request, which passed [`validate_up`] (or is a Down): its reply is what
    /// applying it gives.
    Apply(Request),
    /// Refuse this Up, change nothing, answer [`Reply::Refused`] and go on serving.
    Refuse {
        /// The address asked for.
        address: Ipv6Addr,
        /// The MTU asked for.
        mtu: u16,
        /// Why it is refused.
        refusal: Refusal,
    },
    /// Not a message of this protocol: answer [`Refusal::Malformed`] and end the session.
    Malformed(MessageError),
}

impl Decision {
    /// The reply sent without applying anything: `None` for [`Decision::Apply`].
    pub fn immediate_reply(&self) -> Option<Reply> {
        match self {
            Self::Apply(_) => None,
            Self::Refuse { refusal, .. } => Some(Reply::Refused(*refusal)),
            Self::Malformed(_) => Some(Reply::Refused(Refusal::Malformed)),
        }
    }

    /// Whether the helper goes on reading requests after this one.
    pub fn continues(&self) -> bool {
        !matches!(self, Self::Malformed(_))
    }
}

/// The helper's decision on the bytes of one request: decoded ([`Request::decode`]), then
/// an Up validated ([`validate_up`]). No I/O: the helper's loop only logs, applies and
/// answers what this says.
pub fn decide(bytes: &[u8]) -> Decision {
    match Request::decode(bytes) {
        Err(e) => Decision::Malformed(e),
        Ok(Request::Up { address, mtu }) => match validate_up(address, mtu) {
            Err(refusal) => Decision::Refuse { address, mtu, refusal },
            Ok(()) => Decision::Apply(Request::Up { address, mtu }),
        },
        Ok(r @ (Request::Down | Request::Announce | Request::Withdraw)) => Decision::Apply(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn request_round_trip_and_layout() {
        let up = Request::Up { address: a("2001:0:c000:201:1234:63bf:3fff:fdd2"), mtu: 1400 };
        let b = up.encode();
        assert_eq!(&b[..8], &[b'T', b'H', 1, 1, 0x05, 0x78, 0, 0]);
        assert_eq!(&b[8..10], &[0x20, 0x01]);
        assert_eq!(Request::decode(&b), Ok(up));
        let down = Request::Down.encode();
        assert_eq!(down, [b'T', b'H', 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Request::decode(&down), Ok(Request::Down));
        for (r, kind) in [(Request::Announce, 3), (Request::Withdraw, 4)] {
            let b = r.encode();
            assert_eq!(&b[..4], &[b'T', b'H', 1, kind]);
            assert!(b[4..].iter().all(|&x| x == 0));
            assert_eq!(Request::decode(&b), Ok(r));
            let mut bad = b;
            bad[20] = 1;
            assert_eq!(Request::decode(&bad), Err(MessageError::Reserved));
        }
    }

    #[test]
    fn reply_round_trip() {
        for r in [
            Reply::Ready,
            Reply::Applied,
            Reply::Refused(Refusal::NotTeredo),
            Reply::Refused(Refusal::Multicast),
            Reply::Refused(Refusal::MtuTooSmall),
            Reply::Refused(Refusal::Malformed),
            Reply::Refused(Refusal::WrongRole),
            Reply::Failed(libc::EPERM),
            Reply::Failed(-1),
            Reply::Hook(0),
            Reply::Hook(3),
            Reply::Hook(-1),
        ] {
            assert_eq!(Reply::decode(&r.encode()), Ok(r), "{r:?}");
        }
        assert_eq!(Reply::Failed(-1).encode()[8..], [0xff; 4]);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = Request::Up { address: a("2001::1"), mtu: 1280 }.encode();
        assert_eq!(Request::decode(&good[..23]), Err(MessageError::Length(23)));
        assert_eq!(Request::decode(&[good.as_slice(), &[0]].concat()), Err(MessageError::Length(25)));
        assert_eq!(Request::decode(&[]), Err(MessageError::Length(0)));
        let bad = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            Request::decode(&b)
        };
        assert_eq!(bad(0, b'X'), Err(MessageError::Magic));
        assert_eq!(bad(1, b'X'), Err(MessageError::Magic));
        assert_eq!(bad(2, 2), Err(MessageError::Version(2)));
        assert_eq!(bad(2, 0), Err(MessageError::Version(0)));
        assert_eq!(bad(3, 0), Err(MessageError::Kind(0)));
        assert_eq!(bad(3, 5), Err(MessageError::Kind(5)));
        assert_eq!(bad(3, KIND_REPLY), Err(MessageError::Kind(KIND_REPLY)));
        assert_eq!(bad(6, 1), Err(MessageError::Reserved));
        assert_eq!(bad(7, 1), Err(MessageError::Reserved));
        // A Down carrying an address or an MTU.
        let mut d = Request::Down.encode();
        d[23] = 1;
        assert_eq!(Request::decode(&d), Err(MessageError::Reserved));
        let mut d = Request::Down.encode();
        d[5] = 1;
        assert_eq!(Request::decode(&d), Err(MessageError::Reserved));
    }

    #[test]
    fn malformed_replies_are_refused() {
        let good = Reply::Applied.encode();
        assert_eq!(Reply::decode(&good[..11]), Err(MessageError::Length(11)));
        let bad = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            Reply::decode(&b)
        };
        assert_eq!(bad(0, 0), Err(MessageError::Magic));
        assert_eq!(bad(2, 9), Err(MessageError::Version(9)));
        assert_eq!(bad(3, KIND_UP), Err(MessageError::Kind(KIND_UP)));
        assert_eq!(bad(4, 5), Err(MessageError::Status(5)));
        assert_eq!(bad(5, 1), Err(MessageError::Reserved)); // Applied has no reason
        assert_eq!(bad(6, 1), Err(MessageError::Reserved));
        assert_eq!(bad(11, 1), Err(MessageError::Reserved)); // Applied has no value
        let mut r = Reply::Refused(Refusal::NotTeredo).encode();
        r[5] = 0;
        assert_eq!(Reply::decode(&r), Err(MessageError::Status(0)));
        r[5] = 6;
        assert_eq!(Reply::decode(&r), Err(MessageError::Status(6)));
        let mut r = Reply::Hook(0).encode();
        r[5] = 1;
        assert_eq!(Reply::decode(&r), Err(MessageError::Reserved));
    }

    #[test]
    fn validation() {
        let t = a("2001:0:c000:201:1234:63bf:3fff:fdd2");
        assert_eq!(validate_up(t, 1280), Ok(()));
        assert_eq!(validate_up(t, 65535), Ok(()));
        assert_eq!(validate_up(t, 1279), Err(Refusal::MtuTooSmall));
        assert_eq!(validate_up(t, 1000), Err(Refusal::MtuTooSmall));
        assert_eq!(validate_up(t, 0), Err(Refusal::MtuTooSmall));
        assert_eq!(validate_up(a("2001:db8::1"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("2001:1::1"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("2002::1"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("::"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("::1"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("fe80::1"), 1280), Err(Refusal::NotTeredo));
        assert_eq!(validate_up(a("ff02::1"), 1280), Err(Refusal::Multicast));
        assert_eq!(validate_up(a("ff00:2001::1"), 1280), Err(Refusal::Multicast));
        assert_eq!(validate_up(a("2001::"), 1280), Ok(()));
        assert_eq!(validate_up(a("2001:0:ffff:ffff:ffff:ffff:ffff:ffff"), 1280), Ok(()));
    }

    #[test]
    fn decisions() {
        let t = a("2001:0:c000:201:1234:63bf:3fff:fdd2");
        let up = Request::Up { address: t, mtu: 1280 };
        assert_eq!(decide(&up.encode()), Decision::Apply(up));
        assert_eq!(decide(&Request::Down.encode()), Decision::Apply(Request::Down));
        let low = Request::Up { address: t, mtu: 1279 }.encode();
        let d = decide(&low);
        assert_eq!(d, Decision::Refuse { address: t, mtu: 1279, refusal: Refusal::MtuTooSmall });
        assert_eq!(d.immediate_reply(), Some(Reply::Refused(Refusal::MtuTooSmall)));
        assert!(d.continues());
        let d = decide(&low[..23]);
        assert_eq!(d, Decision::Malformed(MessageError::Length(23)));
        assert_eq!(d.immediate_reply(), Some(Reply::Refused(Refusal::Malformed)));
        assert!(!d.continues());
        assert_eq!(Decision::Apply(up).immediate_reply(), None);
    }

    proptest! {
        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Request::decode(&bytes);
            let _ = Reply::decode(&bytes);
        }

        #[test]
        fn requests_round_trip(octets in any::<[u8; 16]>(), mtu in any::<u16>()) {
            let r = Request::Up { address: Ipv6Addr::from(octets), mtu };
            prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn decoded_replies_reencode_identically(bytes in any::<[u8; 12]>()) {
            if let Ok(r) = Reply::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }
    }
}
