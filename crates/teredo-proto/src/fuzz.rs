//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their
//! corpora on the stable toolchain. Each takes arbitrary bytes; any panic is a bug.
//!
//! - The parsers (here): each runs one parser and every accessor of what it returns, and
//!   re-encodes where a builder exists, checking the round trip.
//! - The state machines (`tunnel_client`, `tunnel_relay`, `endpoint`, `server`,
//!   `coalescer`): the bytes are a sequence of operations (`fuzz/ops.rs`) on a machine in
//!   a small world (`fuzz/world.rs`) that checks every output and the machine's bounds
//!   after every step.

mod coalescer;
mod endpoint;
mod ops;
mod server;
mod tunnel;
mod world;

pub use coalescer::coalescer;
pub use endpoint::endpoint;
pub use server::{check_action, server};
pub use tunnel::{tunnel_client, tunnel_relay};

use std::net::Ipv6Addr;

use crate::address::TeredoAddress;
use crate::wire::icmpv6::{Icmpv6, Icmpv6Repr, Message};
use crate::wire::{Ipv6Packet, TeredoPacket, Trailers};

/// The Teredo encapsulation parser, with everything it leads to.
pub fn encap(data: &[u8]) {
    let Ok(p) = TeredoPacket::parse(data) else { return };
    let _ = p.kind();
    if let Some(a) = p.auth {
        let mut buf = [0u8; 600];
        let n = a.emit(&mut buf).expect("a parsed header fits 600 bytes");
        assert_eq!(&buf[..n], &data[..n], "authentication round trip");
    }
    icmp(&p.ipv6);
    let _ = p.trailers.check();
    let _ = p.trailers.iter().count();
}

/// The IPv6 packet parser.
pub fn ipv6(data: &[u8]) {
    if let Ok((p, rest)) = Ipv6Packet::parse(data) {
        assert_eq!(p.bytes().len() + rest.len(), data.len());
        let _ = (p.src(), p.dst(), p.is_bubble());
        icmp(&p);
    }
}

fn icmp(p: &Ipv6Packet<'_>) {
    let _ = Icmpv6::checksum_ok(p);
    let Ok(m) = Message::parse(p) else { return };
    match m {
        Message::RouterAdvertisement(ra) => {
            let _ = (ra.prefix_information().map(|p| p.teredo_prefix()), ra.prefix_count(), ra.mtu());
        }
        Message::RouterSolicitation(rs) => {
            let _ = rs.source_link_layer();
        }
        _ => {}
    }
    if let Some(repr) = Icmpv6Repr::from_message(&m) {
        let mut buf = vec![0u8; 40 + repr.len()];
        let n = repr
            .emit_packet(&mut buf, p.src(), p.dst(), p.header().hop_limit)
            .expect("the buffer has the length the repr asks for");
        let (q, _) = Ipv6Packet::parse(&buf[..n]).expect("what we build parses");
        let again = Message::parse(&q).expect("what we build parses as ICMPv6");
        assert_eq!(Icmpv6Repr::from_message(&again), Some(repr), "ICMPv6 round trip");
        assert!(Icmpv6::checksum_ok(&q));
    }
}

/// The RFC 6081 trailer reader.
pub fn trailers(data: &[u8]) {
    let t = Trailers::new(data);
    let _ = t.check();
    let _ = t.nonce();
    let mut buf = [0u8; 300];
    for item in t.iter().flatten() {
        let n = item.emit(&mut buf).expect("a parsed trailer fits 300 bytes");
        assert_eq!(n, item.wire_len());
    }
}

/// The Teredo address decoder, from raw bytes and from text.
pub fn address(data: &[u8]) {
    if let Ok(o) = <[u8; 16]>::try_from(data.get(..16).unwrap_or_default()) {
        let a = TeredoAddress::from_octets(&o);
        assert_eq!(a.octets(), o, "address round trip");
        let _ = a.known_prefix();
    }
    if let Some(ip) = core::str::from_utf8(data).ok().and_then(|s| s.parse::<Ipv6Addr>().ok()) {
        let _ = TeredoAddress::from_ipv6(&ip);
    }
}

/// TUN offload: a virtio-net header (the first 10 bytes) and a packet read from the TUN,
/// segmented; the segments are coalesced again and every frame written must segment.
pub fn offload(data: &[u8]) {
    use crate::offload::{Coalescer, Segments, VnetHeader};
    let Some(hdr) = VnetHeader::parse(data) else { return };
    let packet = &data[crate::offload::VNET_HDR_LEN..];
    let _ = crate::offload::complete_checksum(&hdr, &mut packet.to_vec());
    let Ok(mut segments) = Segments::new(&hdr, packet) else { return };
    let mut buf = vec![0u8; segments.max_len()];
    let mut coalescer = Coalescer::new(2);
    let mut check = |h: &[u8; crate::offload::VNET_HDR_LEN], p: &[u8]| {
        let h = VnetHeader::parse(h).expect("a whole header");
        assert!(Segments::new(&h, p).is_ok(), "a coalesced frame segments");
    };
    let mut produced = 0;
    while let Some(n) = segments.next_into(&mut buf) {
        assert!(n <= segments.max_len());
        coalescer.push(&buf[..n], &mut check);
        produced += 1;
    }
    assert_eq!(produced, segments.count());
    coalescer.flush(&mut check);
}
