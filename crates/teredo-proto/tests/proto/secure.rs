//! Secure qualification (RFC 4380 §5.2.2) between the sans-IO client and server: a client
//! with credentials qualifies with a server that knows them (its RS and the RA carry the
//! identifier and an HMAC-SHA1 value over nonce, confirmation, origin and packet); a
//! server that requires authentication answers no plain RS and no RS with a wrong secret
//! or an unknown identifier; a client with credentials refuses an RA that is not signed
//! with its secret.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use teredo_proto::address::TEREDO_PREFIX;
use teredo_proto::client::{Client, Config, Event, ServerAddress};
use teredo_proto::nonce::TokenKey;
use teredo_proto::secure::{AUTH_VALUE_LEN, Credentials};
use teredo_proto::server::{Action, ClientKeys, DropReason, Local, Server, ServerConfig};
use teredo_proto::time::Instant;
use teredo_proto::wire::TeredoPacket;

const PRIMARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MAPPED: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 9), 40000);

fn server(keys: Option<ClientKeys>) -> Server {
    let mut s = Server::new(ServerConfig {
        primary: PRIMARY,
        secondary: Ipv4Addr::new(192, 0, 2, 2),
        prefix: TEREDO_PREFIX,
        mtu: 1280,
    });
    s.set_client_keys(keys.map(Arc::new));
    s
}

fn creds(id: &str, secret: &str) -> Credentials {
    Credentials::new(id.as_bytes(), secret.as_bytes()).unwrap()
}

/// Runs one RS/RA exchange; returns the server's action on the RS and whether the client
/// came up.
fn exchange(client_creds: Option<Credentials>, srv: &Server) -> (Action, bool, Vec<u8>) {
    let mut c = Client::new(Config::new(ServerAddress::Ipv4(PRIMARY)), TokenKey::new([3; 32]), Instant::ZERO)
        .unwrap();
    c.set_credentials(client_creds);
    let mut buf = [0u8; 1500];
    let t = c.poll_transmit(Instant::ZERO, &mut buf).expect("an RS");
    let rs = buf[..t.len].to_vec();
    let mut out = [0u8; 1500];
    let a = srv.handle_datagram(Local::Primary, MAPPED, &rs, &mut out);
    let mut up = false;
    if let Action::SendUdp { len, .. } = a {
        let ra = TeredoPacket::parse(&out[..len]).unwrap();
        c.handle_datagram(Instant::from_millis(10), SocketAddrV4::new(PRIMARY, 3544), &ra);
        while let Some(e) = c.poll_event() {
            up |= matches!(e, Event::Up { .. });
        }
    }
    (a, up, rs)
}

#[test]
fn authenticated_client_qualifies() {
    let mut keys = ClientKeys::new(true);
    keys.insert(creds("alice", "correct horse"));
    let srv = server(Some(keys));
    let (a, up, rs) = exchange(Some(creds("alice", "correct horse")), &srv);
    assert!(matches!(a, Action::SendUdp { advertisement: true, .. }), "{a:?}");
    assert!(up, "the client accepted the signed RA");
    // The RS carries ID-len 5, AU-len 20, the identifier and a value that verifies.
    let p = TeredoPacket::parse(&rs).unwrap();
    let auth = p.auth.unwrap();
    assert_eq!((rs[2], rs[3]), (5, AUTH_VALUE_LEN as u8));
    assert_eq!(auth.client_id, b"alice");
    assert!(creds("alice", "correct horse").verify(&auth, None, p.ipv6.bytes()));
}

#[test]
fn a_server_that_requires_it_answers_no_one_else() {
    let mut keys = ClientKeys::new(true);
    keys.insert(creds("alice", "correct horse"));
    let srv = server(Some(keys));
    for c in [None, Some(creds("alice", "wrong")), Some(creds("mallory", "correct horse"))] {
        let (a, up, _) = exchange(c.clone(), &srv);
        assert_eq!(a, Action::Drop(DropReason::AuthenticationFailed), "{c:?}");
        assert!(!up);
    }
    // Without `required`, a plain RS is answered, a bad one still not.
    let mut keys = ClientKeys::new(false);
    keys.insert(creds("alice", "correct horse"));
    let srv = server(Some(keys));
    assert!(exchange(None, &srv).1);
    assert_eq!(
        exchange(Some(creds("alice", "wrong")), &srv).0,
        Action::Drop(DropReason::AuthenticationFailed)
    );
}

#[test]
fn a_client_with_credentials_refuses_an_unsigned_or_forged_ra() {
    // A server that does not know the client answers it without authentication (or with
    // another secret): the client stays down.
    let (a, up, _) = exchange(Some(creds("alice", "correct horse")), &server(None));
    assert_eq!(a, Action::Drop(DropReason::AuthenticationFailed), "an unknown identifier is not answered");
    assert!(!up);
    let mut keys = ClientKeys::new(false);
    keys.insert(creds("alice", "another secret"));
    let (a, up, _) = exchange(Some(creds("alice", "correct horse")), &server(Some(keys)));
    assert_eq!(a, Action::Drop(DropReason::AuthenticationFailed));
    assert!(!up);
    // A plain client of a plain server is unchanged.
    assert!(exchange(None, &server(None)).1);
}

/// A signed RA whose value, or identifier, was changed on the way is refused.
#[test]
fn a_tampered_ra_is_refused() {
    let mut keys = ClientKeys::new(true);
    keys.insert(creds("alice", "correct horse"));
    let srv = server(Some(keys));
    for at in [4usize, 9, 12] {
        let mut c =
            Client::new(Config::new(ServerAddress::Ipv4(PRIMARY)), TokenKey::new([3; 32]), Instant::ZERO)
                .unwrap();
        c.set_credentials(Some(creds("alice", "correct horse")));
        let mut buf = [0u8; 1500];
        let t = c.poll_transmit(Instant::ZERO, &mut buf).unwrap();
        let mut out = [0u8; 1500];
        let Action::SendUdp { len, .. } =
            srv.handle_datagram(Local::Primary, MAPPED, &buf[..t.len], &mut out)
        else {
            panic!("no RA")
        };
        // Byte 4 is in the identifier, 9 and 12 in the authentication value.
        out[at] ^= 1;
        let ra = TeredoPacket::parse(&out[..len]).unwrap();
        assert!(c.handle_datagram(Instant::from_millis(10), SocketAddrV4::new(PRIMARY, 3544), &ra));
        assert!(c.poll_event().is_none(), "byte {at} changed, yet the client came up");
    }
}
