//! A root test of [`PacketTx`] in a pair of network namespaces of its own, joined by a
//! veth and connected to nothing else: frames leave one namespace and arrive on an
//! ordinary UDP socket in the other, with the right source and payload. Skipped when not
//! root or without `ip`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{PacketTx, Queued};
use crate::packet_tx::next_hop::REFRESH;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// A namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create(name: String) -> Result<Self, String> {
        let _ = ip(&["netns", "del", &name]);
        ip(&["netns", "add", &name])?;
        Ok(Self(name))
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// Moves the calling thread into the namespace (network namespaces are per thread).
    fn enter(&self) -> std::io::Result<()> {
        let f = std::fs::File::open(format!("/run/netns/{}", self.0))?;
        // SAFETY: setns on an open namespace file; affects only this thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

const PRIMARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SECONDARY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
const BEYOND: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const PORT: u16 = 4000;

/// `a` (the sender): 192.0.2.1 and .2, 198.51.100.0/24 on the link, 203.0.113.0/24 via
/// 198.51.100.254. `b` (the receiver): 198.51.100.254 and 203.0.113.9.
fn topology(tag: &str) -> Result<(Netns, Netns), String> {
    let pid = std::process::id();
    let a = Netns::create(format!("ptx-{pid}-{tag}-a"))?;
    let b = Netns::create(format!("ptx-{pid}-{tag}-b"))?;
    ip(&["link", "add", "ptxa", "netns", &a.0, "type", "veth", "peer", "name", "ptxb", "netns", &b.0])?;
    for (ns, dev) in [(&a, "ptxa"), (&b, "ptxb")] {
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "set", dev, "up"])?;
    }
    a.ip(&["addr", "add", "192.0.2.1/24", "dev", "ptxa"])?;
    a.ip(&["addr", "add", "192.0.2.2/24", "dev", "ptxa"])?;
    a.ip(&["route", "add", "198.51.100.0/24", "dev", "ptxa"])?;
    a.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.254", "dev", "ptxa"])?;
    b.ip(&["addr", "add", "198.51.100.254/24", "dev", "ptxb"])?;
    b.ip(&["addr", "add", "203.0.113.9/32", "dev", "ptxb"])?;
    b.ip(&["route", "add", "192.0.2.0/24", "dev", "ptxb"])?;
    Ok((a, b))
}

#[test]
fn frames_cross_a_veth_and_reach_a_udp_socket() {
    if !is_root() || Command::new("ip").arg("-V").output().is_err() {
        assert!(!crate::under_ci(), "needs root and ip(8), which CI=true requires");
        eprintln!("SKIP: needs root and ip(8)");
        return;
    }
    let (a, b) = topology("x").expect("topology");

    // The receiver, in b.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (got_tx, got_rx) = mpsc::channel::<(SocketAddr, Vec<u8>)>();
    let receiver = {
        let b = Netns(b.0.clone());
        thread::spawn(move || {
            b.enter().unwrap();
            std::mem::forget(b); // not ours to delete
            let s = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0u8; 2048];
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if got_tx.send((from, buf[..n].to_vec())).is_err() {
                        break;
                    }
                    if &buf[..n] == b"done" {
                        break;
                    }
                }
            }
        })
    };
    ready_rx.recv().unwrap();

    // The sender, in a.
    a.enter().unwrap();
    let mut tx = PacketTx::open(8).expect("PacketTx::open");
    assert_eq!(tx.ethernet_links(), 1);
    assert!(!tx.policy_routing());
    let sock = [UdpSocket::bind((PRIMARY, 3544)).unwrap(), UdpSocket::bind((SECONDARY, 3544)).unwrap()];
    let send = |tx: &mut PacketTx, from: usize, to: SocketAddrV4, payload: &[u8]| -> bool {
        let buf = tx.payload_mut().unwrap();
        buf[..payload.len()].copy_from_slice(payload);
        let src = SocketAddrV4::new([PRIMARY, SECONDARY][from], 3544);
        match tx.commit(src, to, payload.len()) {
            Queued::Frame => true,
            Queued::Socket(bytes) => {
                assert_eq!(bytes, payload);
                sock[from].send_to(bytes, to).unwrap();
                false
            }
        }
    };
    let peer = SocketAddrV4::new(PEER, PORT);
    let beyond = SocketAddrV4::new(BEYOND, PORT);

    // No neighbour entry yet: through the socket, and the kernel resolves the peer.
    assert!(!send(&mut tx, 0, peer, b"one"), "an unresolved next hop must use the socket");
    let mut got = vec![got_rx.recv_timeout(Duration::from_secs(5)).expect("first datagram")];
    assert_eq!(tx.stats().fallbacks, 1);

    // After a refresh, frames: on the link from the secondary, and through the gateway.
    tx.maintain(Instant::now() + REFRESH);
    assert!(send(&mut tx, 1, peer, b"two"), "a resolved neighbour must give a frame");
    let big = vec![0x5a; 1400];
    assert!(send(&mut tx, 0, beyond, &big), "through the gateway");
    assert!(send(&mut tx, 0, peer, b"done"));
    assert_eq!(tx.flush().unwrap(), 3);
    assert!(tx.is_empty());
    assert_eq!(tx.stats().frames, 3);
    // Larger than the MTU: the socket (which fragments).
    let _ = tx.payload_mut().unwrap();
    assert!(matches!(tx.commit(SocketAddrV4::new(PRIMARY, 3544), peer, 1500), Queued::Socket(_)));

    for _ in 0..3 {
        got.push(got_rx.recv_timeout(Duration::from_secs(5)).expect("frame not received"));
    }
    receiver.join().unwrap();
    let want: Vec<(SocketAddr, Vec<u8>)> = vec![
        (SocketAddr::V4(SocketAddrV4::new(PRIMARY, 3544)), b"one".to_vec()),
        (SocketAddr::V4(SocketAddrV4::new(SECONDARY, 3544)), b"two".to_vec()),
        (SocketAddr::V4(SocketAddrV4::new(PRIMARY, 3544)), big),
        (SocketAddr::V4(SocketAddrV4::new(PRIMARY, 3544)), b"done".to_vec()),
    ];
    assert_eq!(got, want);
    drop((a, b));
}
