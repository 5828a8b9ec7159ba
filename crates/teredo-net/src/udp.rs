//! Socket set-up: UDP sockets for Teredo (RFC 4380 §3: UDP port 3544 for servers), shared
//! by several workers with SO_REUSEPORT, and the raw IPv6 socket through which a server
//! sends clients' echo tests to native IPv6 hosts (RFC 4380 §5.3.1).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Receive and send buffer size asked of the kernel for busy sockets.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket to `addr`. With `reuse_port`, several sockets (one per worker) can
/// bind the same address and the kernel spreads datagrams among them by flow.
/// Path-MTU discovery is off (no DF bit), as Teredo needs (RFC 4380 §5.1.2).
pub fn bind_udp(addr: SocketAddrV4, reuse_port: bool) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    // Best effort: a smaller buffer only costs drops under load.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    #[cfg(target_os = "linux")]
    set_pmtudisc_dont(&s)?;
    s.bind(&SockAddr::from(addr))?;
    Ok(s)
}

#[cfg(target_os = "linux")]
fn set_pmtudisc_dont(s: &Socket) -> io::Result<()> {
    crate::sockopt::set_int(s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, libc::IP_PMTUDISC_DONT)
}

/// Lets the kernel hand over several datagrams of one sender at once (UDP GRO, Linux 5.0):
/// read them with [`crate::batch::RecvBatch`] in buffers of 64 KiB and split them with
/// `RecvBatch::segments`. Best effort: `false` where the kernel lacks it.
#[cfg(target_os = "linux")]
pub fn enable_gro(s: &Socket) -> bool {
    crate::sockopt::set_int(s, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok()
}

/// The local address a socket is bound to.
pub fn local_v4(s: &Socket) -> io::Result<SocketAddrV4> {
    match s.local_addr()?.as_socket() {
        Some(SocketAddr::V4(a)) => Ok(a),
        _ => Err(io::Error::new(io::ErrorKind::InvalidInput, "not an IPv4 socket")),
    }
}

/// A raw IPv6 socket that sends whole IPv6 packets (header included) to the native
/// network. Opening it needs CAP_NET_RAW; using it afterwards does not.
pub struct RawIpv6 {
    sock: Socket,
}

impl RawIpv6 {
    /// Opens the socket (IPPROTO_RAW: the kernel takes our IPv6 header as it is). It only
    /// sends; the kernel delivers nothing to an IPPROTO_RAW socket.
    pub fn open() -> io::Result<Self> {
        let sock = Socket::new(Domain::IPV6, Type::RAW.cloexec(), Some(Protocol::from(libc::IPPROTO_RAW)))?;
        sock.set_nonblocking(true)?;
        Ok(Self { sock })
    }

    /// Sends one IPv6 packet to `dst` (which must be the packet's own destination).
    pub fn send(&self, packet: &[u8], dst: Ipv6Addr) -> io::Result<usize> {
        self.sock.send_to(packet, &SockAddr::from(SocketAddrV6::new(dst, 0, 0, 0)))
    }
}

impl AsFd for RawIpv6 {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The local address and port that `s` (bound to `0.0.0.0` or to an address) sends from
/// toward `peer`: its own address if bound to one, else the source the routing table
/// picks, found by connecting a throwaway UDP socket (which sends nothing). For RFC 6081's
/// hairpinning, which advertises it to peers behind the same NAT.
pub fn source_toward(s: &Socket, peer: SocketAddrV4) -> io::Result<SocketAddrV4> {
    let own = local_v4(s)?;
    if !own.ip().is_unspecified() {
        return Ok(own);
    }
    let probe = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    probe.connect(peer)?;
    match probe.local_addr()? {
        SocketAddr::V4(a) => Ok(SocketAddrV4::new(*a.ip(), own.port())),
        SocketAddr::V6(_) => Err(io::Error::new(io::ErrorKind::InvalidData, "not IPv4")),
    }
}

/// Makes `s`'s multicast link-scoped, as RFC 4380 §5.2.8 wants of local discovery bubbles:
/// TTL 1, and not looped back to the host's own sockets.
pub fn set_multicast_link_scope(s: &Socket) -> io::Result<()> {
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)
}

/// The socket on which local discovery bubbles arrive (RFC 4380 §5.2.8): bound to the
/// Teredo IPv4 Discovery Address `group` and port `port` (so that it gets nothing sent to
/// a unicast address), joined to the group on the interface the kernel routes it through,
/// shared (SO_REUSEADDR) with other Teredo clients of the host.
pub fn discovery_socket(group: Ipv4Addr, port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(group, port)))?;
    s.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn reuse_port_lets_two_sockets_share() {
        let a = bind_udp(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), true).unwrap();
        let addr = local_v4(&a).unwrap();
        let b = bind_udp(addr, true).unwrap();
        assert_eq!(local_v4(&b).unwrap(), addr);
        assert!(bind_udp(addr, false).is_err());
    }
}
