//! Tests of [`super`]: the batched UDP I/O (recvmmsg, sendmmsg, GSO runs and tails) on
//! real sockets.

use super::*;
use std::net::UdpSocket;
use std::os::fd::AsFd;

/// Receives on `s` until `n` datagrams came or a second passed: each one's source, bytes
/// and whether it was cut.
fn receive(rx: &mut RecvBatch, s: &UdpSocket, n: usize) -> Vec<(SocketAddrV4, Vec<u8>, bool)> {
    let mut got = Vec::new();
    for _ in 0..100 {
        rx.recv(s.as_fd()).unwrap();
        got.extend((0..rx.len()).map(|i| {
            let (from, data, trunc) = rx.get(i);
            (from, data.to_vec(), trunc)
        }));
        if got.len() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    got
}

#[test]
fn loopback_round_trip() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr4(a_addr) = SocketAddr4::of(&a);
    let SocketAddr4(b_addr) = SocketAddr4::of(&b);
    let mut tx = SendBatch::new(8, 64);
    for i in 0..5u8 {
        let buf = tx.next_buf().unwrap();
        buf[..3].copy_from_slice(&[i, i, i]);
        tx.commit(3, b_addr);
    }
    assert_eq!(tx.flush(a.as_fd()).unwrap(), 5);
    assert!(tx.is_empty());
    let mut rx = RecvBatch::new(8, 64);
    let got = receive(&mut rx, &b, 5);
    for (from, _, trunc) in &got {
        assert_eq!(*from, a_addr);
        assert!(!trunc);
    }
    let got: Vec<Vec<u8>> = got.into_iter().map(|(_, data, _)| data).collect();
    assert_eq!(got, (0..5u8).map(|i| vec![i, i, i]).collect::<Vec<_>>());
    // nothing waiting: no block, zero
    assert_eq!(rx.recv(b.as_fd()).unwrap(), 0);
    // an oversized datagram is flagged
    a.send_to(&[1u8; 100], b_addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(rx.recv(b.as_fd()).unwrap(), 1);
    assert!(rx.get(0).2);
}

#[test]
fn segmentation_delivers_ordinary_datagrams() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr4(b_addr) = SocketAddr4::of(&b);
    let SocketAddr4(c_addr) = SocketAddr4::of(&c);
    let mut tx = SendBatch::new(16, 1400);
    tx.set_segmentation(true);
    // Five equal datagrams and a short one to b (one GSO message), one to c, two more
    // to b of another size.
    let plan: Vec<(SocketAddrV4, usize)> = [1200, 1200, 1200, 1200, 1200, 700]
        .into_iter()
        .map(|n| (b_addr, n))
        .chain([(c_addr, 1200), (b_addr, 900), (b_addr, 900)])
        .collect();
    for (k, (to, n)) in plan.iter().enumerate() {
        let buf = tx.next_buf().unwrap();
        buf[..*n].fill(k as u8);
        tx.commit(*n, *to);
    }
    assert_eq!(tx.flush(a.as_fd()).unwrap(), plan.len());
    assert!(tx.segmentation(), "this kernel took the UDP_SEGMENT messages");
    let mut rx = RecvBatch::new(16, 2048);
    let mut got = Vec::new();
    for _ in 0..100 {
        for s in [&b, &c] {
            rx.recv(s.as_fd()).unwrap();
            for i in 0..rx.len() {
                let (_, data, trunc) = rx.get(i);
                assert!(!trunc);
                got.push((data[0], data.len(), std::ptr::eq(s, &c)));
            }
        }
        if got.len() == plan.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    got.sort();
    let want: Vec<(u8, usize, bool)> =
        plan.iter().enumerate().map(|(k, (to, n))| (k as u8, *n, *to == c_addr)).collect();
    // Every datagram arrived whole, with its own contents, at its own destination.
    assert_eq!(got, want);
}

#[test]
fn a_refusal_stops_segmentation_only_for_its_destination_and_size() {
    let b_addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5000);
    let c_addr = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 5001);
    let mut tx = SendBatch::new(16, 1400);
    tx.set_segmentation(true);
    let to = v4_to_sockaddr(b_addr);
    tx.refusals.refuse(to.sin_addr.s_addr, to.sin_port, 1200, std::time::Instant::now());
    for (to, n) in
        [(b_addr, 1200), (b_addr, 1200), (c_addr, 1200), (c_addr, 1200), (b_addr, 900), (b_addr, 900)]
    {
        tx.next_buf().unwrap();
        tx.commit(n, to);
    }
    let msgs = tx.build(0, 6);
    assert_eq!(
        tx.counts[..msgs],
        [1, 1, 2, 2],
        "b's 1200-byte datagrams one by one, the rest in GSO messages"
    );
}

/// Sends, from `a` to `b`, datagrams of a head of `head` bytes (`k` repeated) and a
/// tail range of `tail` bytes (`k + 100` repeated), every other one without a tail;
/// returns what `b` received.
fn send_with_tails(
    a: &UdpSocket,
    b: &UdpSocket,
    tx: &mut SendBatch,
    head: usize,
    tail: usize,
) -> Vec<Vec<u8>> {
    let SocketAddr4(b_addr) = SocketAddr4::of(b);
    let t = tx.tail_mut().expect("the tail is free");
    for k in 0..4u8 {
        t[usize::from(k) * tail..(usize::from(k) + 1) * tail].fill(k + 100);
    }
    let mut want = Vec::new();
    for k in 0..8u8 {
        let (buf, _) = tx.next_buf_and_tail().unwrap();
        let with_tail = k % 2 == 0;
        let n = if with_tail { head } else { head + tail };
        buf[..n].fill(k);
        let mut w = vec![k; n];
        if with_tail {
            let at = usize::from(k / 2) * tail;
            tx.commit_with_tail(head, at..at + tail, b_addr);
            w.resize(head + tail, k / 2 + 100);
        } else {
            tx.commit(n, b_addr);
        }
        want.push(w);
    }
    assert!(tx.tail_mut().is_none(), "busy until flushed");
    assert_eq!(tx.flush(a.as_fd()).unwrap(), 8);
    assert!(tx.tail_mut().is_some(), "free once flushed");
    let mut rx = RecvBatch::new(16, 4096);
    let got: Vec<Vec<u8>> = receive(&mut rx, b, 8).into_iter().map(|(_, data, _)| data).collect();
    assert_eq!(got, want);
    got
}

#[test]
fn datagrams_with_tails_arrive_whole_with_and_without_segmentation() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    for segmentation in [false, true] {
        let mut tx = SendBatch::with_tail(16, 2048, 8192);
        tx.set_segmentation(segmentation);
        send_with_tails(&a, &b, &mut tx, 72, 1000);
        assert_eq!(tx.dropped(), 0);
    }
    // With segmentation the eight equal datagrams went as one GSO message of 12 iovecs.
    let mut tx = SendBatch::with_tail(16, 2048, 8192);
    tx.set_segmentation(true);
    for k in 0..8 {
        tx.next_buf().unwrap();
        if k % 2 == 0 {
            tx.commit_with_tail(72, 0..1000, SocketAddr4::of(&b).0);
        } else {
            tx.commit(1072, SocketAddr4::of(&b).0);
        }
    }
    assert_eq!(tx.build(0, 8), 1);
    assert_eq!((tx.counts[0], tx.m.hdrs[0].msg_hdr.msg_iovlen), (8, 12));
    // A range outside the tail queues nothing and is counted.
    let mut tx = SendBatch::with_tail(4, 2048, 100);
    tx.commit_with_tail(72, 50..101, SocketAddr4::of(&b).0);
    assert!(tx.is_empty());
    assert_eq!(tx.dropped(), 1);
}

/// A socket without UDP checksums (SO_NO_CHECK): the kernel refuses its GSO messages
/// (EINVAL).
fn socket_without_checksums() -> UdpSocket {
    let a = socket2::Socket::from(UdpSocket::bind("127.0.0.1:0").unwrap());
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value.
    let r = unsafe {
        libc::setsockopt(
            a.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_NO_CHECK");
    a.into()
}

#[test]
fn a_refused_gso_message_with_tails_goes_one_by_one() {
    let a = socket_without_checksums();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut tx = SendBatch::with_tail(16, 2048, 8192);
    tx.set_segmentation(true);
    send_with_tails(&a, &b, &mut tx, 60, 1200);
    assert_eq!(tx.segmentation_refusals(), 1);
    assert_eq!(tx.dropped(), 0);
}

#[test]
fn a_refused_gso_message_goes_one_by_one() {
    let a = socket_without_checksums();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let SocketAddr4(b_addr) = SocketAddr4::of(&b);
    let mut tx = SendBatch::new(16, 1400);
    tx.set_segmentation(true);
    for k in 0..4u8 {
        tx.next_buf().unwrap()[..1000].fill(k);
        tx.commit(1000, b_addr);
    }
    assert_eq!(tx.flush(a.as_fd()).unwrap(), 4);
    assert_eq!(tx.segmentation_refusals(), 1);
    assert_eq!(tx.segmentation_refused_kinds(), 1);
    assert!(tx.segmentation(), "still on for everything else");
    let mut rx = RecvBatch::new(16, 2048);
    let got: Vec<_> = receive(&mut rx, &b, 4).iter().map(|(_, data, _)| (data[0], data.len())).collect();
    assert_eq!(got, [(0, 1000), (1, 1000), (2, 1000), (3, 1000)]);
    // The next batch to b goes one by one at once, without another refusal.
    for k in 0..4u8 {
        tx.next_buf().unwrap()[..1000].fill(k);
        tx.commit(1000, b_addr);
    }
    assert_eq!(tx.flush(a.as_fd()).unwrap(), 4);
    assert_eq!(tx.segmentation_refusals(), 1);
}

#[test]
fn gro_bursts_come_back_as_their_datagrams() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = socket2::Socket::from(UdpSocket::bind("127.0.0.1:0").unwrap());
    assert!(crate::udp::enable_gro(&b), "this kernel has UDP GRO");
    let b_addr = crate::udp::local_v4(&b).unwrap();
    let mut tx = SendBatch::new(16, 1400);
    tx.set_segmentation(true);
    let sizes = [1200, 1200, 1200, 1200, 300];
    for (k, n) in sizes.iter().enumerate() {
        tx.next_buf().unwrap()[..*n].fill(k as u8);
        tx.commit(*n, b_addr);
    }
    tx.flush(a.as_fd()).unwrap();
    let mut rx = RecvBatch::new(4, 65536);
    let mut got = Vec::new();
    for _ in 0..100 {
        rx.recv(b.as_fd()).unwrap();
        for i in 0..rx.len() {
            got.extend(rx.segments(i).map(|d| (d[0], d.len(), d.iter().all(|&x| x == d[0]))));
        }
        if got.len() >= sizes.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let want: Vec<_> = sizes.iter().enumerate().map(|(k, n)| (k as u8, *n, true)).collect();
    assert_eq!(got, want);
}

struct SocketAddr4(SocketAddrV4);
impl SocketAddr4 {
    fn of(s: &UdpSocket) -> Self {
        match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => Self(a),
            std::net::SocketAddr::V6(_) => unreachable!(),
        }
    }
}
