//! The load generator and the correctness probe, both run from threads that entered the
//! generator namespace.
//!
//! The flood sends router solicitations as whole Ethernet frames from a packet socket
//! that bypasses the queueing discipline, with spoofed sources, `BATCH` per sendmmsg(2).
//! (A raw IPv4 socket costs the generator's core a route lookup and the IP output path
//! per packet, and on this path that core also runs the server namespace's receive
//! processing: measured, it could not outrun `teredo server`.) The sources run through a
//! bijection of the 25-bit space {198.51.100.0/24, 203.0.113.0/24} x {UDP ports}, so every
//! RS of a phase comes from a source never used before (up to about 32 million). The UDP
//! checksum is 0 (none, legal over IPv4). Destinations alternate between the two server
//! addresses; the RS link-local address has the cone bit clear, so each server answers
//! from the address it was asked on.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use teredo_proto::address::TEREDO_PORT;
use teredo_proto::server::emit_router_solicitation;
use teredo_proto::wire::icmpv6::Message;
use teredo_proto::wire::{PacketKind, TeredoPacket};

use crate::lab::Netns;

/// Datagrams per sendmmsg(2).
const BATCH: usize = 64;
/// Ethernet header.
const ETH: usize = 14;
/// IPv4 header + UDP header.
const HEADERS: usize = 28;
/// Room for one generated packet.
const SLOT: usize = 128;
/// The two server addresses.
pub(crate) const SERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)];
/// The generator's own (real) address, used only by the probe.
pub(crate) const PROBE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// The spoofed client networks.
const CLIENT_NETS: [[u8; 3]; 2] = [[198, 51, 100], [203, 0, 113]];
/// The clients' link-local address (cone bit clear: RFC 5991 clients).
const CLIENT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0x1234, 0x5678, 0x9abc, 0xdef0);
/// Bits of the source space: 1 (network) + 8 (host) + 16 (port).
const SOURCE_BITS: u32 = 25;
const SOURCE_MASK: u32 = (1 << SOURCE_BITS) - 1;

/// What the flood thread shares with the bench.
#[derive(Default)]
pub(crate) struct Flood {
    pub(crate) stop: AtomicBool,
    /// RSs the kernel accepted.
    pub(crate) sent: AtomicU64,
    /// Of these, how many came from a source not used before in this flood.
    pub(crate) distinct: AtomicU64,
    /// The flood thread's id, to read counters of its namespace from /proc/<tid>/net.
    pub(crate) tid: AtomicU32,
    /// Set when the thread is ready to send.
    pub(crate) ready: AtomicBool,
}

/// The `i`-th source of the permutation, or `None` for the few that are not usable
/// (host .0, .254 which is the generator's own, .255, and port 0).
fn source(i: u32) -> Option<([u8; 4], u16)> {
    let mut x = i.wrapping_mul(0x9e37_79b1) & SOURCE_MASK;
    x ^= x >> 12;
    x = x.wrapping_mul(0x85eb_ca6b) & SOURCE_MASK;
    let net = CLIENT_NETS[(x >> 24) as usize & 1];
    let host = (x >> 16) as u8;
    let port = x as u16;
    if matches!(host, 0 | 254 | 255) || port == 0 {
        return None;
    }
    Some(([net[0], net[1], net[2], host], port))
}

/// Pins the calling thread to `cpu`, or lets it run anywhere with `None`.
pub(crate) fn pin_current_thread(cpu: Option<usize>) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; CPU_ZERO/CPU_SET only write into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let cpus = teredo_lab::cpu_stat::online_cpus().min(libc::CPU_SETSIZE as usize);
    match cpu {
        Some(c) => unsafe { libc::CPU_SET(c, &mut set) },
        None => {
            for c in 0..cpus {
                unsafe { libc::CPU_SET(c, &mut set) }
            }
        }
    }
    // SAFETY: a valid cpu_set_t of the stated size; 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where the flood goes: the generator's veth (by index) and the two ends' MACs.
#[derive(Clone, Copy)]
pub(crate) struct Link {
    pub(crate) ifindex: u32,
    pub(crate) src_mac: [u8; 6],
    pub(crate) dst_mac: [u8; 6],
}

/// The IPv4 header checksum (RFC 791) of `h`, whose checksum field is zero.
fn ipv4_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Floods until `shared.stop`. Runs on its own thread.
pub(crate) fn flood(ns: &Netns, link: Link, cpu: Option<usize>, shared: &Flood) -> Result<(), String> {
    ns.enter_current_thread().map_err(|e| format!("entering {}: {e}", ns.name))?;
    pin_current_thread(cpu).map_err(|e| format!("sched_setaffinity: {e}"))?;
    // SAFETY: gettid has no preconditions.
    shared.tid.store(unsafe { libc::gettid() } as u32, Ordering::Relaxed);
    // Protocol 0: the socket only sends, it receives nothing.
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(format!("packet socket: {}", io::Error::last_os_error()));
    }
    let _close = CloseFd(fd);
    // SAFETY: `fd` stays open (closed by `_close`) while the borrow is used.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // Best effort: both only save time.
    let _ = teredo_net::sockopt::set_int(borrowed, libc::SOL_PACKET, libc::PACKET_QDISC_BYPASS, 1);
    let _ = teredo_net::sockopt::set_int(borrowed, libc::SOL_SOCKET, libc::SO_SNDBUF, 4 << 20);
    // SAFETY: plain old data; zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = link.ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&link.dst_mac);
    // SAFETY: a valid sockaddr_ll of the stated size.
    if unsafe { libc::bind(fd, (&raw const sll).cast(), size_of::<libc::sockaddr_ll>() as libc::socklen_t) }
        != 0
    {
        return Err(format!("binding the packet socket: {}", io::Error::last_os_error()));
    }

    // The template: Ethernet + IPv4 + UDP + Teredo RS with an authentication header.
    let mut template = [0u8; SLOT];
    let rs_len = emit_router_solicitation(&mut template[ETH + HEADERS..], CLIENT_LL, Some([0; 8]))
        .map_err(|e| format!("building the RS: {e}"))?;
    let total = ETH + HEADERS + rs_len;
    template[..6].copy_from_slice(&link.dst_mac);
    template[6..12].copy_from_slice(&link.src_mac);
    template[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = ETH;
    template[ip] = 0x45;
    template[ip + 2..ip + 4].copy_from_slice(&((total - ETH) as u16).to_be_bytes());
    template[ip + 8] = 64; // TTL
    template[ip + 9] = libc::IPPROTO_UDP as u8;
    let udp = ip + 20;
    template[udp + 2..udp + 4].copy_from_slice(&TEREDO_PORT.to_be_bytes());
    template[udp + 4..udp + 6].copy_from_slice(&((total - udp) as u16).to_be_bytes());
    // UDP checksum 0: none. The nonce follows the authentication header's 4-byte start.
    let nonce_at = udp + 8 + 4;

    let mut bufs = vec![[0u8; SLOT]; BATCH];
    let mut iovs = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; BATCH];
    // SAFETY: plain old data; zero is valid.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for (k, b) in bufs.iter_mut().enumerate() {
        *b = template;
        b[ip + 16..ip + 20].copy_from_slice(&SERVERS[k % 2].octets());
    }
    for k in 0..BATCH {
        iovs[k] = libc::iovec { iov_base: bufs[k].as_mut_ptr().cast(), iov_len: total };
        let h = &mut hdrs[k].msg_hdr;
        h.msg_iov = &raw mut iovs[k];
        h.msg_iovlen = 1;
    }

    shared.ready.store(true, Ordering::Release);
    let mut next: u64 = 0; // position in the source permutation
    let mut ident: u16 = 1;
    let mut sent: u64 = 0;
    let mut distinct: u64 = 0;
    let mut errors = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        let start = next;
        for b in bufs.iter_mut() {
            let (addr, port) = loop {
                let s = source(next as u32 & SOURCE_MASK);
                next += 1;
                if let Some(s) = s {
                    break s;
                }
            };
            b[ip + 4..ip + 6].copy_from_slice(&ident.to_be_bytes());
            ident = ident.wrapping_add(1);
            b[ip + 10..ip + 12].copy_from_slice(&[0, 0]);
            b[ip + 12..ip + 16].copy_from_slice(&addr);
            let sum = ipv4_checksum(&b[ip..ip + 20]);
            b[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
            b[udp..udp + 2].copy_from_slice(&port.to_be_bytes());
            b[nonce_at..nonce_at + 8].copy_from_slice(&next.to_be_bytes());
        }
        // SAFETY: every header points to live buffers and iovecs above, which are not
        // moved while the call runs; the socket is bound, so no address is needed.
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), BATCH as libc::c_uint, 0) };
        if n < 0 {
            errors += 1;
            if errors > 1000 && sent == 0 {
                return Err(format!("sendmmsg: {}", io::Error::last_os_error()));
            }
            continue;
        }
        let n = n as u64;
        sent += n;
        // Sources of a first pass through the permutation are all different.
        if start < u64::from(SOURCE_MASK) {
            distinct += n;
        }
        shared.sent.store(sent, Ordering::Relaxed);
        shared.distinct.store(distinct, Ordering::Relaxed);
    }
    Ok(())
}

struct CloseFd(libc::c_int);

impl Drop for CloseFd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this guard.
        unsafe { libc::close(self.0) };
    }
}

/// Sends real RSs from the generator's own address to both server addresses and checks
/// each answer: a router advertisement from the address asked, echoing our nonce, with
/// an origin indication of our address and port and the prefix 2001:0:<server>::/64.
/// Retries until `timeout` (it also waits for the server to start).
pub(crate) fn probe(ns: &Netns, timeout: Duration) -> Result<(), String> {
    let ns_name = ns.name.clone();
    let run = || -> Result<(), String> {
        ns.enter_current_thread().map_err(|e| format!("entering {ns_name}: {e}"))?;
        let sock =
            UdpSocket::bind(SocketAddrV4::new(PROBE_ADDR, 0)).map_err(|e| format!("probe socket: {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
        let Ok(SocketAddr::V4(me)) = sock.local_addr() else { return Err("probe socket address".into()) };
        let deadline = Instant::now() + timeout;
        for (k, server) in SERVERS.into_iter().enumerate() {
            let to = SocketAddrV4::new(server, TEREDO_PORT);
            let mut last = String::from("no answer");
            let mut ok = false;
            let mut attempt = 0u8;
            while !ok {
                if Instant::now() > deadline {
                    return Err(format!("no valid RA from {to}: {last}"));
                }
                attempt = attempt.wrapping_add(1);
                let nonce = [0x7e, k as u8, attempt, 1, 2, 3, 4, 5];
                let mut rs = [0u8; 128];
                let n =
                    emit_router_solicitation(&mut rs, CLIENT_LL, Some(nonce)).map_err(|e| e.to_string())?;
                sock.send_to(&rs[..n], to).map_err(|e| format!("probe send: {e}"))?;
                let mut buf = [0u8; 1500];
                let until = Instant::now() + Duration::from_millis(300);
                while Instant::now() < until {
                    let Ok((len, from)) = sock.recv_from(&mut buf) else { continue };
                    match check_ra(&buf[..len], from, to, me, nonce) {
                        Ok(()) => {
                            ok = true;
                            break;
                        }
                        Err(e) => last = e,
                    }
                }
            }
        }
        Ok(())
    };
    std::thread::scope(|s| s.spawn(run).join().unwrap_or_else(|_| Err("probe thread panicked".into())))
}

fn check_ra(
    datagram: &[u8],
    from: SocketAddr,
    server: SocketAddrV4,
    me: SocketAddrV4,
    nonce: [u8; 8],
) -> Result<(), String> {
    if from != SocketAddr::V4(server) {
        return Err(format!("answer from {from}, expected {server}"));
    }
    let pkt = TeredoPacket::parse(datagram).map_err(|e| format!("malformed answer: {e}"))?;
    if pkt.kind() != PacketKind::RouterAdvertisement {
        return Err(format!("answer is {:?}, not an RA", pkt.kind()));
    }
    match pkt.auth {
        Some(a) if a.nonce == nonce => {}
        Some(_) => return Err("RA for another nonce".into()),
        None => return Err("RA without authentication header".into()),
    }
    match pkt.origin {
        Some(o) if o.addr == *me.ip() && o.port == me.port() => {}
        o => return Err(format!("origin indication {o:?}, expected {me}")),
    }
    let Ok(Message::RouterAdvertisement(ra)) = Message::parse(&pkt.ipv6) else {
        return Err("RA does not parse".into());
    };
    let p = SERVERS[0].octets();
    let want = Ipv6Addr::from([0x20, 0x01, 0, 0, p[0], p[1], p[2], p[3], 0, 0, 0, 0, 0, 0, 0, 0]);
    match ra.prefix_information() {
        Some(pi) if pi.prefix == want && pi.prefix_len == 64 => Ok(()),
        pi => Err(format!("RA prefix {pi:?}, expected {want}/64")),
    }
}
