//! A client's local client discovery receiver (RFC 4380 §5.2.8): a thread that reads the
//! datagrams sent to the Teredo IPv4 Discovery Address (224.0.0.253, UDP 3544) on a socket
//! of its own, and hands each to the worker, whose endpoint decides
//! ([`teredo_proto::tunnel::Tunnel::handle_discovery`]). The bubbles the client sends there
//! leave from its Teredo socket. Discovery bubbles are rare (one per client every 200 to
//! 300 s), so they do not need the packet thread's batching; a full command queue drops
//! one, which the next one replaces.

use std::net::SocketAddr;
use std::thread;

use teredo_proto::address::{DISCOVERY_IPV4, TEREDO_PORT};
use tracing::{info, warn};

use super::worker::{Command, Link};

/// The largest discovery datagram taken: a bubble with trailers.
const MAX_DATAGRAM: usize = 1280;

/// Opens the discovery socket and starts the thread that reads it for the worker behind
/// `link`. A failure is logged: the client then runs without local discovery.
pub fn spawn(link: Link) {
    let socket = match teredo_net::udp::discovery_socket(DISCOVERY_IPV4, TEREDO_PORT) {
        Ok(s) => std::net::UdpSocket::from(s),
        Err(e) => {
            warn!("local discovery off: {DISCOVERY_IPV4}:{TEREDO_PORT}: {e}");
            return;
        }
    };
    let started = thread::Builder::new().name("discovery".into()).spawn(move || {
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, SocketAddr::V4(from))) => {
                    let datagram = buf.get(..n).unwrap_or_default().into();
                    link.send(Command::Discovery { from, datagram });
                }
                Ok(_) => {}
                Err(e) => {
                    warn!("local discovery: {e}");
                    return;
                }
            }
        }
    });
    match started {
        Ok(_) => info!("local discovery on {DISCOVERY_IPV4}:{TEREDO_PORT}"),
        Err(e) => warn!("local discovery off: {e}"),
    }
}
