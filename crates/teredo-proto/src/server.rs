//! The Teredo server (RFC 4380 §5.3, with RFC 5991 §3.2): stateless, it answers router
//! solicitations with router advertisements that tell each client its mapped address and
//! port, and relays bubbles and small ICMPv6 messages to Teredo clients (with an origin
//! indication for its own clients) and clients' echo tests to the native IPv6 Internet.
//!
//! [`Server::handle_datagram`] takes one received datagram and returns one [`Action`]:
//! send a datagram built in the caller's buffer from one of the two server addresses,
//! send the inner IPv6 packet natively, or drop it for a counted [`DropReason`]. The
//! server keeps no per-client state, so its memory does not grow with the number of
//! clients.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use crate::address::{self, TeredoAddress};
use crate::secure::{AUTH_VALUE_LEN, Credentials};
use crate::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message, PrefixInformation};
use crate::wire::ipv6::{ALL_ROUTERS, NEXT_HEADER_ICMPV6};
use crate::wire::{Authentication, OriginIndication, PacketKind, TeredoPacket, encap};

mod stats;
pub use stats::{DropReason, ServerStats};

/// The largest ICMPv6 payload the server relays between clients (Miredo's limit, which
/// keeps the server from becoming an open relay; Microsoft's servers do the same). Bubbles
/// are always relayed.
pub const MAX_RELAYED_PAYLOAD: u16 = 88;

/// Retransmission timer advertised in RAs, in milliseconds (Miredo and Windows servers).
pub const RA_RETRANS_TIMER_MS: u32 = 2000;

/// What the server is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// The primary IPv4 address, embedded in every client's Teredo address.
    pub primary: Ipv4Addr,
    /// The secondary IPv4 address, from which RSs with the cone bit are answered.
    pub secondary: Ipv4Addr,
    /// The 32-bit service prefix (normally 2001::/32).
    pub prefix: u32,
    /// The MTU advertised in RAs (at least 1280).
    pub mtu: u16,
}

/// One of the server's two addresses (and its UDP 3544 socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Local {
    /// The primary address.
    Primary,
    /// The secondary address.
    Secondary,
}

impl Local {
    /// The other one.
    pub fn other(self) -> Self {
        match self {
            Self::Primary => Self::Secondary,
            Self::Secondary => Self::Primary,
        }
    }
}

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `out[..len]` over UDP from `from` (port 3544) to `to`.
    SendUdp {
        /// Which of the two sockets to send from.
        from: Local,
        /// The destination.
        to: SocketAddrV4,
        /// Bytes written at the start of the output buffer.
        len: usize,
        /// True for a router advertisement, false for a relayed packet.
        advertisement: bool,
    },
    /// Send the inner IPv6 packet, `datagram[start..start + len]`, to `dst` on the native
    /// IPv6 network (a client's direct connectivity test, RFC 4380 §5.2.9).
    SendIpv6 {
        /// Offset of the IPv6 packet in the datagram.
        start: usize,
        /// Its length.
        len: usize,
        /// Its destination.
        dst: Ipv6Addr,
    },
    /// Drop the datagram.
    Drop(DropReason),
}

/// The clients a server knows for secure qualification (RFC 4380 §5.2.2), by identifier,
/// and whether it answers only them.
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    keys: std::collections::HashMap<Vec<u8>, Credentials>,
    /// Answer no RS that is not authenticated by a known client.
    pub required: bool,
}

impl ClientKeys {
    /// No client, authentication not required.
    pub fn new(required: bool) -> Self {
        Self { keys: Default::default(), required }
    }

    /// Adds (or replaces) a client.
    pub fn insert(&mut self, credentials: Credentials) {
        self.keys.insert(credentials.id().to_vec(), credentials);
    }

    /// How many clients.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn get(&self, id: &[u8]) -> Option<&Credentials> {
        self.keys.get(id)
    }
}

/// The stateless Teredo server.
#[derive(Debug, Clone)]
pub struct Server {
    config: ServerConfig,
    link_local: Ipv6Addr,
    pio: PrefixInformation,
    /// Secure qualification's clients, shared by the workers.
    keys: Option<std::sync::Arc<ClientKeys>>,
}

impl Server {
    /// A server with this configuration.
    pub fn new(config: ServerConfig) -> Self {
        let p = config.prefix.to_be_bytes();
        let s = config.primary.octets();
        let prefix = Ipv6Addr::from([p[0], p[1], p[2], p[3], s[0], s[1], s[2], s[3], 0, 0, 0, 0, 0, 0, 0, 0]);
        Self {
            config,
            link_local: address::server_link_local(config.primary),
            pio: PrefixInformation {
                prefix_len: 64,
                flags: PrefixInformation::FLAG_AUTONOMOUS,
                valid_lifetime: u32::MAX,
                preferred_lifetime: u32::MAX,
                prefix,
            },
            keys: None,
        }
    }

    /// Secure qualification (RFC 4380 §5.2.2): an RS that carries a client identifier must
    /// be authenticated with that client's secret (else it is dropped), and its RA is
    /// authenticated with the same; with [`ClientKeys::required`], an RS without one is
    /// dropped too.
    pub fn set_client_keys(&mut self, keys: Option<std::sync::Arc<ClientKeys>>) {
        self.keys = keys;
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The link-local address the server's RAs come from (RFC 4380 §5.3.2).
    pub fn link_local(&self) -> Ipv6Addr {
        self.link_local
    }

    fn is_own(&self, a: Ipv4Addr) -> bool {
        a == self.config.primary || a == self.config.secondary
    }

    /// Handles one datagram received on `local` from `from`. `out` receives what must be
    /// sent over UDP: at most an RA (under 200 bytes) or a relayed packet of at most
    /// 2 × [`MAX_RELAYED_PAYLOAD`] + 48 bytes, so 1500 bytes is always enough.
    /// RFC 4380 §5.3.1 and §5.3.2.
    pub fn handle_datagram(
        &self,
        local: Local,
        from: SocketAddrV4,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Action {
        match self.process(local, from, datagram, out) {
            Ok(a) => a,
            Err(r) => Action::Drop(r),
        }
    }

    fn process(
        &self,
        local: Local,
        from: SocketAddrV4,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<Action, DropReason> {
        // Rule 1: a well-formed Teredo packet, trailers included (RFC 6081 §5.1.2).
        let pkt = TeredoPacket::parse(datagram).map_err(DropReason::Malformed)?;
        pkt.trailers.check().map_err(DropReason::Malformed)?;
        // Rule 2: a bubble or an ICMPv6 message.
        let kind = pkt.kind();
        if kind != PacketKind::Bubble && pkt.ipv6.header().next_header != NEXT_HEADER_ICMPV6 {
            return Err(DropReason::NotBubbleOrIcmpv6);
        }
        // Loop guard (MTFL-SA 0603): never process what one of our sockets sent.
        if self.is_own(*from.ip()) {
            return Err(DropReason::FromSelf);
        }
        // Rule 3: a global unicast IPv4 source, and a port a client may have (never
        // answer, nor relay the origin of, UDP port 0).
        if !address::is_global_unicast(*from.ip()) || from.port() == 0 {
            return Err(DropReason::SourceNotGlobal);
        }
        let src = pkt.ipv6.src();
        let dst = pkt.ipv6.dst();
        let src_teredo = TeredoAddress::from_ipv6_with_prefix(&src, self.config.prefix);
        let dst_teredo = TeredoAddress::from_ipv6_with_prefix(&dst, self.config.prefix);
        // Rules 4 to 7.
        let accepted =
            if src.is_unicast_link_local() && dst == ALL_ROUTERS && kind == PacketKind::RouterSolicitation {
                true // rule 4
            } else if let Some(s) = src_teredo {
                s.mapped_addr == *from.ip() && s.mapped_port == from.port() // rule 5
            } else {
                dst_teredo.is_some_and(|d| d.server == self.config.primary) // rule 6
            };
        if !accepted {
            return Err(DropReason::SourceCheck);
        }

        // Then the destination.
        if dst == ALL_ROUTERS || dst == self.link_local {
            return self.advertise(local, from, &pkt, out);
        }
        if !is_global_unicast_v6(&dst) {
            return Err(DropReason::DestinationNotGlobal);
        }
        // Trailers travel with what is relayed, but only as much as the RFC 6081 ones need:
        // the server is no open relay for data hidden behind a bubble.
        if pkt.trailers.as_bytes().len() > usize::from(MAX_RELAYED_PAYLOAD) {
            return Err(DropReason::NotRelayable);
        }
        if kind != PacketKind::Bubble {
            if pkt.ipv6.header().payload_len() > MAX_RELAYED_PAYLOAD {
                return Err(DropReason::NotRelayable);
            }
            if !Icmpv6::checksum_ok(&pkt.ipv6) {
                return Err(DropReason::BadChecksum);
            }
        }
        let Some(d) = dst_teredo else {
            // A native destination: only the direct IPv6 connectivity test goes there.
            if !matches!(kind, PacketKind::EchoRequest | PacketKind::EchoReply) {
                return Err(DropReason::NotRelayable);
            }
            let start = datagram.len() - pkt.ipv6.bytes().len() - pkt.trailers.as_bytes().len();
            return Ok(Action::SendIpv6 { start, len: pkt.ipv6.bytes().len(), dst });
        };
        // Between Teredo clients: bubbles and ICMPv6 other than neighbour discovery.
        if matches!(kind, PacketKind::RouterSolicitation | PacketKind::RouterAdvertisement)
            || pkt.ipv6.payload().first().is_some_and(|t| (133..=137).contains(t))
        {
            return Err(DropReason::NotRelayable);
        }
        if !address::is_global_unicast(d.mapped_addr) || self.is_own(d.mapped_addr) {
            return Err(DropReason::DestinationNotGlobalIpv4);
        }
        // Origin indication only for our own clients (RFC 4380 §5.3.1, last paragraph).
        let origin = OriginIndication { addr: *from.ip(), port: from.port() };
        let origin = (d.server == self.config.primary).then_some(&origin);
        let n = encap::emit_headers(out, None, origin).map_err(|_| DropReason::BufferTooSmall)?;
        // The IPv6 packet and its RFC 6081 trailers, unchanged.
        let inner = &datagram[datagram.len() - pkt.ipv6.bytes().len() - pkt.trailers.as_bytes().len()..];
        out.get_mut(n..n + inner.len()).ok_or(DropReason::BufferTooSmall)?.copy_from_slice(inner);
        Ok(Action::SendUdp {
            from: Local::Primary,
            to: SocketAddrV4::new(d.mapped_addr, d.mapped_port),
            len: n + inner.len(),
            advertisement: false,
        })
    }

    /// RFC 4380 §5.3.2: answer a router solicitation.
    fn advertise(
        &self,
        local: Local,
        from: SocketAddrV4,
        pkt: &TeredoPacket<'_>,
        out: &mut [u8],
    ) -> Result<Action, DropReason> {
        if pkt.kind() != PacketKind::RouterSolicitation || !Icmpv6::checksum_ok(&pkt.ipv6) {
            return Err(DropReason::NotRouterSolicitation);
        }
        // RFC 4861 §6.1.1: hop limit 255, code 0, valid options.
        let h = pkt.ipv6.header();
        let code = pkt.ipv6.payload().get(1).copied();
        if h.hop_limit != 255 || code != Some(0) {
            return Err(DropReason::NotRouterSolicitation);
        }
        let Ok(Message::RouterSolicitation(_)) = Message::parse(&pkt.ipv6) else {
            return Err(DropReason::NotRouterSolicitation);
        };
        let client_ll = pkt.ipv6.src();
        if !client_ll.is_unicast_link_local() {
            return Err(DropReason::NotRouterSolicitation);
        }
        // Secure qualification: the client named in the RS must have signed it.
        let client = match pkt.auth.filter(|a| !a.client_id.is_empty()) {
            Some(a) => {
                let c = self.keys.as_deref().and_then(|k| k.get(a.client_id));
                match c {
                    Some(c) if c.verify(&a, pkt.origin.as_ref(), pkt.ipv6.bytes()) => Some(c),
                    _ => return Err(DropReason::AuthenticationFailed),
                }
            }
            None if self.keys.as_deref().is_some_and(|k| k.required) => {
                return Err(DropReason::AuthenticationFailed);
            }
            None => None,
        };
        // The nonce is echoed only when the RS had an authentication header (Miredo sends
        // stale bytes otherwise); the identity only for an authenticated client.
        let placeholder = [0u8; AUTH_VALUE_LEN];
        let auth = pkt.auth.map(|a| match client {
            Some(c) => Authentication {
                client_id: c.id(),
                auth_value: &placeholder,
                nonce: a.nonce,
                confirmation: 0,
            },
            None => Authentication::with_nonce(a.nonce),
        });
        let origin = OriginIndication { addr: *from.ip(), port: from.port() };
        let n =
            encap::emit_headers(out, auth.as_ref(), Some(&origin)).map_err(|_| DropReason::BufferTooSmall)?;
        let ra = Icmpv6Repr::RouterAdvertisement {
            cur_hop_limit: 0,
            flags: 0,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: RA_RETRANS_TIMER_MS,
            prefix: Some(self.pio),
            mtu: Some(u32::from(self.config.mtu)),
        };
        let m = ra
            .emit_packet(out.get_mut(n..).ok_or(DropReason::BufferTooSmall)?, self.link_local, client_ll, 255)
            .map_err(|_| DropReason::BufferTooSmall)?;
        if let (Some(c), Some(a)) = (client, auth.as_ref()) {
            let value = c.auth_value(a, Some(&origin), &out[n..n + m]);
            let at = 4 + c.id().len();
            out[at..at + AUTH_VALUE_LEN].copy_from_slice(&value);
        }
        // RFC 5991 §3.2: servers must still honour the cone bit, answering from the other
        // address.
        let from_local = if address::is_cone_link_local(&client_ll) { local.other() } else { local };
        Ok(Action::SendUdp { from: from_local, to: from, len: n + m, advertisement: true })
    }
}

/// Global scope for forwarding: not unspecified, loopback, link-local, unique-local,
/// multicast or IPv4-mapped.
fn is_global_unicast_v6(a: &Ipv6Addr) -> bool {
    let s0 = a.segments()[0];
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || s0 & 0xffc0 == 0xfe80
        || s0 & 0xffc0 == 0xfec0
        || s0 & 0xfe00 == 0xfc00
        || a.to_ipv4_mapped().is_some())
}

/// Writes a router solicitation as a Teredo client sends it: authentication header with
/// `nonce` (if any), source `link_local`, to ff02::2 (RFC 4380 §5.2.1). Used by load
/// generators and tests; the client has its own.
pub fn emit_router_solicitation(
    buf: &mut [u8],
    link_local: Ipv6Addr,
    nonce: Option<[u8; 8]>,
) -> Result<usize, crate::wire::BufferTooSmall> {
    let auth = nonce.map(Authentication::with_nonce);
    let n = encap::emit_headers(buf, auth.as_ref(), None)?;
    let m = Icmpv6Repr::RouterSolicitation { source_link_layer: None }.emit_packet(
        buf.get_mut(n..).ok_or(crate::wire::BufferTooSmall)?,
        link_local,
        ALL_ROUTERS,
        255,
    )?;
    Ok(n + m)
}

#[cfg(test)]
mod tests;
