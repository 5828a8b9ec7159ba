//! Our client qualifies with our server, sans-IO: the RS the client builds is answered
//! by the server, and the RA is accepted, giving an address that embeds the server and
//! the mapping the server saw (RFC 4380 §5.2.1, §5.3.2).

use std::net::{Ipv4Addr, SocketAddrV4};

use teredo_proto::address::TeredoAddress;
use teredo_proto::client::{Client, Config, Event, ServerAddress, State};
use teredo_proto::nonce::TokenKey;
use teredo_proto::server::{Action, Local, Server, ServerConfig};
use teredo_proto::time::Instant;
use teredo_proto::wire::TeredoPacket;

#[test]
fn client_qualifies_with_server() {
    let primary = Ipv4Addr::new(192, 0, 2, 1);
    let secondary = Ipv4Addr::new(192, 0, 2, 2);
    let server = Server::new(ServerConfig { primary, secondary, prefix: 0x2001_0000, mtu: 1400 });
    let mut c = Client::new(Config::new(ServerAddress::Ipv4(primary)), TokenKey::new([1; 32]), Instant::ZERO)
        .unwrap();
    let mapped = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 40000);
    let (mut buf, mut out) = ([0u8; 1500], [0u8; 1500]);
    let mut now = Instant::ZERO;
    for _ in 0..10 {
        c.handle_timeout(now);
        while let Some(t) = c.poll_transmit(now, &mut buf) {
            let local = if *t.dst.ip() == primary { Local::Primary } else { Local::Secondary };
            let a = server.handle_datagram(local, mapped, &buf[..t.len], &mut out);
            let Action::SendUdp { from, to, len, .. } = a else { panic!("{a:?}") };
            assert_eq!(to, mapped);
            let src = SocketAddrV4::new(if from == Local::Primary { primary } else { secondary }, 3544);
            assert!(c.handle_datagram(now, src, &TeredoPacket::parse(&out[..len]).unwrap()));
        }
        now = now + std::time::Duration::from_millis(500);
    }
    assert_eq!(c.state(), State::Qualified);
    let events: Vec<Event> = std::iter::from_fn(|| c.poll_event()).collect();
    let Some(Event::Up { address, mtu }) = events.first().copied() else { panic!("{events:?}") };
    assert_eq!(mtu, 1400);
    let t = TeredoAddress::from_ipv6(&address).unwrap();
    assert_eq!((t.server, t.mapped_addr, t.mapped_port), (primary, *mapped.ip(), mapped.port()));
    assert!(!t.flags.cone() && !t.flags.z() && !t.flags.u() && !t.flags.g());
    assert!(events.contains(&Event::NatBehaviour(teredo_proto::client::NatKind::SameMapping)), "{events:?}");
}
