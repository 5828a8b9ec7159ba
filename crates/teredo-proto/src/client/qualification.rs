//! The two messages of the client's qualification procedure (RFC 4380 §5.2.1, with the
//! nonce of §5.2.2 and the cone-bit deprecation of RFC 5991 §3.2): building the router
//! solicitation a client sends to its server, and checking the router advertisement that
//! answers it. The state machine that decides when to send and what to do with the answer
//! is in the parent module.
//!
//! The solicitation is always the "restricted" one of RFC 5991 §3.2 (cone bit 0, source
//! `fe80::ffff:ffff:ffff`), to `ff02::2` with hop limit 255, behind an authentication
//! header that carries only a nonce, or, with secure qualification (RFC 4380 §5.2.2,
//! [`crate::secure`]), also the client identifier and an HMAC-SHA1 authentication value.
//! No origin indication.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::address::{LINK_LOCAL_RESTRICTED, Prefix, TEREDO_PORT, is_global_unicast};
use crate::nonce::constant_time_eq;
use crate::secure::{AUTH_VALUE_LEN, Credentials};
use crate::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message, NdOption};
use crate::wire::ipv6::{ALL_ROUTERS, MIN_MTU};
use crate::wire::{Authentication, BufferTooSmall, OriginIndication, TeredoPacket, encap};

/// The length of the UDP payload of a router solicitation: a 13-byte authentication
/// header, a 40-byte IPv6 header and an 8-byte ICMPv6 solicitation.
pub const RS_LEN: usize = 13 + 40 + 8;

/// Why a router advertisement (or another packet that looked like an answer to a
/// solicitation) was ignored. Cheap to copy; meant for counters and status output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Not from the server's primary or secondary IPv4 address and port 3544.
    #[error("not from the Teredo server's address and port 3544")]
    WrongSource,
    /// No authentication header, so no nonce (RFC 4380 §5.2.2).
    #[error("no authentication header")]
    NoAuthentication,
    /// The nonce is not the one of the last solicitation sent (RFC 4380 §5.2.2: "MUST be
    /// discarded"), or no solicitation is waiting for an answer.
    #[error("nonce does not match the last router solicitation")]
    UnexpectedNonce,
    /// The confirmation byte is not zero: the server refused the client's credentials
    /// (RFC 4380 §5.2.2).
    #[error("authentication with the server failed (confirmation byte not zero)")]
    AuthenticationFailed,
    /// With secure qualification: not our client identifier, or an authentication value
    /// that does not verify (RFC 4380 §5.2.2).
    #[error("secure qualification: bad client identifier or authentication value")]
    BadAuthenticationValue,
    /// No origin indication, so no mapping (RFC 4380 §5.2.1).
    #[error("no origin indication")]
    NoOrigin,
    /// The IPv6 destination is not the link-local address the solicitation came from
    /// (RFC 4380 §5.2.1).
    #[error("not addressed to fe80::ffff:ffff:ffff")]
    WrongDestination,
    /// Not an ICMPv6 router advertisement with code 0, or a malformed one (RFC 4861 §6.1.2).
    #[error("not a valid router advertisement")]
    NotRouterAdvertisement,
    /// The ICMPv6 checksum does not verify.
    #[error("bad ICMPv6 checksum")]
    BadChecksum,
    /// Not exactly one prefix information option (RFC 4380 §5.2.1).
    #[error("not exactly one prefix information option")]
    PrefixCount,
    /// The prefix is not /64, or its first 64 bits are not a Teredo prefix followed by the
    /// server's primary IPv4 address (RFC 4380 §5.2.1).
    #[error("not a Teredo prefix of this server")]
    WrongPrefix,
    /// An MTU option outside 1280..=65535.
    #[error("MTU option out of range")]
    BadMtu,
    /// The mapped address in the origin indication is not global unicast (RFC 4380 §5.2.4).
    #[error("mapped address is not global unicast")]
    MappingNotGlobal,
    /// An unknown trailer that requires discarding the packet (RFC 6081 §5.1.2).
    #[error("unknown trailer that requires discarding the packet")]
    DiscardTrailer,
}

/// What a valid advertisement tells the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Advertisement {
    /// The client's mapped address and port, as the server saw them.
    pub(crate) mapping: OriginIndication,
    /// The MTU to use (the MTU option, or 1280).
    pub(crate) mtu: u16,
}

/// Writes a router solicitation carrying `nonce` into `buf` (see the module comment),
/// authenticated with `credentials` when given; returns its length, [`RS_LEN`] without
/// credentials.
pub(crate) fn emit_rs(
    buf: &mut [u8],
    nonce: [u8; 8],
    credentials: Option<&Credentials>,
) -> Result<usize, BufferTooSmall> {
    let placeholder = [0u8; AUTH_VALUE_LEN];
    let auth = match credentials {
        Some(c) => Authentication { client_id: c.id(), auth_value: &placeholder, nonce, confirmation: 0 },
        None => Authentication::with_nonce(nonce),
    };
    let n = encap::emit_headers(buf, Some(&auth), None)?;
    let rs = Icmpv6Repr::RouterSolicitation { source_link_layer: None };
    let m =
        rs.emit_packet(buf.get_mut(n..).ok_or(BufferTooSmall)?, LINK_LOCAL_RESTRICTED, ALL_ROUTERS, 255)?;
    if let Some(c) = credentials {
        let value = c.auth_value(&auth, None, &buf[n..n + m]);
        // The value sits after the 4 fixed bytes and the identifier.
        let at = 4 + c.id().len();
        buf[at..at + AUTH_VALUE_LEN].copy_from_slice(&value);
    }
    Ok(n + m)
}

/// Checks a datagram received from `from` as the answer to a solicitation sent to the
/// server `primary`/`secondary`. `expected` lists the nonces of the solicitations still
/// waiting for an answer; on success the index of the one answered is returned with what
/// the advertisement tells.
///
/// The checks are those of RFC 4380 §5.2.1 and §5.2.2 as Miredo applies them (see the
/// [`Rejection`] variants), plus the source address and the checksum, which Miredo skips.
/// Not checked, as in Miredo: the hop limit, the IPv6 source, the router lifetime and the
/// prefix flags and lifetimes. Bits of the prefix beyond /64 are ignored (a server once
/// sent junk there), and the obsolete prefix 3ffe:831f::/32 is accepted; the caller builds
/// the address under 2001::/32 whichever was received.
pub(crate) fn check_ra(
    packet: &TeredoPacket<'_>,
    from: SocketAddrV4,
    primary: Ipv4Addr,
    secondary: Ipv4Addr,
    expected: &[Option<[u8; 8]>],
    credentials: Option<&Credentials>,
) -> Result<(usize, Advertisement), Rejection> {
    if from.port() != TEREDO_PORT || (*from.ip() != primary && *from.ip() != secondary) {
        return Err(Rejection::WrongSource);
    }
    let auth = packet.auth.ok_or(Rejection::NoAuthentication)?;
    let which = expected
        .iter()
        .position(|e| e.is_some_and(|n| constant_time_eq(&n, &auth.nonce)))
        .ok_or(Rejection::UnexpectedNonce)?;
    if auth.confirmation != 0 {
        return Err(Rejection::AuthenticationFailed);
    }
    // Secure qualification: the server's answer carries our identifier and a value that
    // only the holder of our secret computes (RFC 4380 §5.2.2: "MUST be discarded").
    if let Some(c) = credentials
        && !c.verify(&auth, packet.origin.as_ref(), packet.ipv6.bytes())
    {
        return Err(Rejection::BadAuthenticationValue);
    }
    let mapping = packet.origin.ok_or(Rejection::NoOrigin)?;
    let ip = &packet.ipv6;
    if ip.dst() != LINK_LOCAL_RESTRICTED {
        return Err(Rejection::WrongDestination);
    }
    let icmp = Icmpv6::parse(ip).map_err(|_| Rejection::NotRouterAdvertisement)?;
    if icmp.code != 0 {
        return Err(Rejection::NotRouterAdvertisement);
    }
    let Ok(Message::RouterAdvertisement(ra)) = Message::parse(ip) else {
        return Err(Rejection::NotRouterAdvertisement);
    };
    if !Icmpv6::checksum_ok(ip) {
        return Err(Rejection::BadChecksum);
    }
    if ra.prefix_count() != 1 {
        return Err(Rejection::PrefixCount);
    }
    let pio = ra.prefix_information().ok_or(Rejection::PrefixCount)?;
    let (bits, server) = pio.teredo_prefix();
    if pio.prefix_len != 64 || Prefix::from_bits(bits).is_none() || server != primary {
        return Err(Rejection::WrongPrefix);
    }
    let mut mtu = None;
    for opt in ra.options.iter() {
        if let NdOption::Mtu(m) = opt {
            let m = u16::try_from(m).ok().filter(|&m| m >= MIN_MTU).ok_or(Rejection::BadMtu)?;
            mtu.get_or_insert(m);
        }
    }
    if !is_global_unicast(mapping.addr) {
        return Err(Rejection::MappingNotGlobal);
    }
    if packet.trailers.check().is_err() {
        return Err(Rejection::DiscardTrailer);
    }
    Ok((which, Advertisement { mapping, mtu: mtu.unwrap_or(MIN_MTU) }))
}
