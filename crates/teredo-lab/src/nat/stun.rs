//! A STUN responder on a UPnP NAT's loopback, which exists only to tell `miniupnpd` the
//! NAT's public address (see [`super::igd`] for why): it answers Binding Requests
//! (RFC 5389) with the NAT's public address and the request's own source port, honouring
//! RFC 5780's CHANGE-REQUEST by answering from the other loopback address or port, which
//! is what `miniupnpd`'s "unrestricted NAT" test expects of a NAT-less uplink.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::error::{LabError, Result};
use crate::node::Node;

/// The responder's primary address (what `miniupnpd`'s `ext_stun_host` names).
pub(crate) const PRIMARY: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 3478);
/// The alternate address and port, for CHANGE-REQUEST.
const ALT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ALT_PORT: u16 = 3479;
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// The answer to `req` from `from`, telling it it is `public`:(its port); `None` for
/// anything but a well-formed Binding Request. Also returns the CHANGE-REQUEST flags
/// (0x4 change address, 0x2 change port).
pub(crate) fn answer(req: &[u8], from: SocketAddrV4, public: Ipv4Addr) -> Option<(Vec<u8>, u8)> {
    if req.len() < 20 || req[0..2] != [0x00, 0x01] || req[4..8] != MAGIC {
        return None;
    }
    let body_len = usize::from(u16::from_be_bytes([req[2], req[3]]));
    let body = req.get(20..20 + body_len)?;
    let mut change = 0u8;
    let mut at = 0;
    while at + 4 <= body.len() {
        let t = u16::from_be_bytes([body[at], body[at + 1]]);
        let l = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + l)?;
        if t == 0x0003 && l == 4 {
            change = value[3] & 0x06;
        }
        at += 4 + l.div_ceil(4) * 4;
    }
    let port = from.port() ^ 0x2112;
    let addr: Vec<u8> = public.octets().iter().zip(MAGIC).map(|(a, m)| a ^ m).collect();
    let mut resp = vec![0x01, 0x01, 0x00, 0x0c];
    resp.extend_from_slice(&req[4..20]);
    resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
    resp.extend_from_slice(&port.to_be_bytes());
    resp.extend_from_slice(&addr);
    Some((resp, change))
}

/// The running responder; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct StunResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StunResponder {
    /// Binds the four loopback endpoints in `node` (all of 127.0.0.0/8 is local) and
    /// answers for `public`.
    pub(crate) fn start(node: &Node, public: Ipv4Addr) -> Result<Self> {
        let mut socks = Vec::new();
        for ip in [*PRIMARY.ip(), ALT_IP] {
            for port in [PRIMARY.port(), ALT_PORT] {
                let s = node.udp_bind(SocketAddr::from((ip, port)))?;
                s.set_nonblocking(true).map_err(|e| LabError::io("STUN socket", e))?;
                socks.push(s);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("stun-{}", node.role()))
            .spawn(move || serve(&socks, public, &stop2))
            .map_err(|e| LabError::io("starting the STUN responder", e))?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for StunResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `socks` are, in order: primary, primary address + alternate port, alternate address +
/// primary port, both alternate.
fn serve(socks: &[UdpSocket], public: Ipv4Addr, stop: &AtomicBool) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<libc::pollfd> = socks
            .iter()
            .map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if n <= 0 {
            continue;
        }
        for s in socks {
            while let Ok((len, SocketAddr::V4(from))) = s.recv_from(&mut buf) {
                if let Some((resp, change)) = answer(&buf[..len], from, public) {
                    let i = usize::from(change & 0x04 != 0) * 2 + usize::from(change & 0x02 != 0);
                    // Best effort, as UDP is.
                    let _ = socks[i].send_to(&resp, from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(change: u8) -> Vec<u8> {
        let mut r = vec![0, 1, 0, 8, 0x21, 0x12, 0xa4, 0x42];
        r.extend_from_slice(&[7; 12]);
        r.extend_from_slice(&[0, 3, 0, 4, 0, 0, 0, change]);
        r
    }

    #[test]
    fn answers_with_the_public_address_and_the_source_port() {
        let from: SocketAddrV4 = "127.0.0.1:51810".parse().unwrap();
        let public = Ipv4Addr::new(198, 51, 100, 1);
        let (resp, change) = answer(&request(6), from, public).unwrap();
        assert_eq!(change, 6);
        assert_eq!(&resp[..4], &[1, 1, 0, 12]);
        assert_eq!(&resp[8..20], &[7; 12]);
        let port = u16::from_be_bytes([resp[26], resp[27]]) ^ 0x2112;
        assert_eq!(port, 51810);
        let ip: Vec<u8> = resp[28..32].iter().zip(MAGIC).map(|(a, m)| a ^ m).collect();
        assert_eq!(ip, public.octets());
    }

    #[test]
    fn ignores_garbage() {
        let from: SocketAddrV4 = "127.0.0.1:1".parse().unwrap();
        let ip = Ipv4Addr::LOCALHOST;
        assert!(answer(&[], from, ip).is_none());
        assert!(answer(&[0; 20], from, ip).is_none());
        let mut long = request(0);
        long[3] = 200; // claims more than there is
        assert!(answer(&long, from, ip).is_none());
        let mut bad_attr = request(0);
        bad_attr[23] = 100; // attribute longer than the body
        assert!(answer(&bad_attr, from, ip).is_none());
        for cut in 0..28 {
            let _ = answer(&request(2)[..cut], from, ip);
        }
    }
}
