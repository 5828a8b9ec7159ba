//! A client's or relay's packet path, the [`Role`] the worker loop drives for `teredo
//! run`: batched UDP (recvmmsg with GRO, sendmmsg with GSO) on one side, the TUN (with its
//! offloads, see [`super::offload`]) on the other, and the sans-IO core between them: a
//! [`ClientEndpoint`] for a client, a relay [`Tunnel`] for a relay.

use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use socket2::Socket;
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_net::tun::Tun;
use teredo_proto::endpoint::ClientEndpoint;
use teredo_proto::offload::{self, Segments, VnetHeader};
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Destination, Transmit, TunVerdict, Tunnel, UdpVerdict};
use tracing::warn;

use super::offload::{Offload, write_frame};
use super::worker::{Command, Report, Role, Snapshot};

/// Datagrams per receive call.
pub(super) const BATCH: usize = 64;
/// Room per batch slot: a UDP GRO burst of one peer, a TUN packet, or an output of the state
/// machines (RSs, bubbles, echo tests, ICMPv6 errors, released queued packets) is at most
/// 64 KiB. Slots are allocated zeroed, so only the pages written are ever resident.
pub(super) const SLOT_SIZE: usize = 65536;
/// TUN packets read per wake-up before the socket gets its turn.
const TUN_BURST: usize = 64;
// The platform and the protocol core agree on the virtio-net header.
const _: () = assert!(teredo_net::tun::VNET_HDR_LEN == offload::VNET_HDR_LEN);

/// The sans-IO core of the worker: the role carries its own state. One per worker, held
/// inline (no indirection on the packet path), so the size of the variants does not matter.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(super) enum Core {
    /// A client: qualification and data path.
    Client(ClientEndpoint),
    /// One relay worker's share of the peers.
    Relay(Tunnel),
}

impl Core {
    #[inline]
    fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) -> UdpVerdict {
        match self {
            Self::Client(c) => c.handle_datagram(now, from, data),
            Self::Relay(t) => t.handle_datagram(now, from, data),
        }
    }

    #[inline]
    fn handle_tun_packet(&mut self, now: Instant, packet: &[u8]) -> TunVerdict {
        match self {
            Self::Client(c) => c.handle_tun_packet(now, packet),
            Self::Relay(t) => t.handle_tun_packet(now, packet),
        }
    }

    fn has_output(&self) -> bool {
        match self {
            Self::Client(c) => c.has_output(),
            Self::Relay(t) => t.has_output(),
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        match self {
            Self::Client(c) => c.poll_transmit(now, buf),
            Self::Relay(t) => t.poll_transmit(now, buf),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Self::Client(c) => c.handle_timeout(now),
            Self::Relay(t) => t.handle_timeout(now),
        }
    }

    fn poll_timeout(&self) -> Instant {
        match self {
            Self::Client(c) => c.poll_timeout(),
            Self::Relay(t) => t.poll_timeout(),
        }
    }
}

/// One worker of `teredo run`.
pub(super) struct TunnelWorker {
    start: std::time::Instant,
    udp: Socket,
    tun: Tun,
    core: Core,
    rx: RecvBatch,
    tx: SendBatch,
    /// The TUN's offloads, when the kernel granted them.
    offload: Option<Offload>,
    /// Packets the TUN refused to take (write errors).
    tun_write_errors: u64,
    /// Receive errors (logged the first few times).
    receive_errors: u64,
}

impl TunnelWorker {
    /// A worker on `udp` and `tun` (both non-blocking) around `core`; `start` is the
    /// daemon's time origin.
    pub(super) fn new(start: std::time::Instant, udp: Socket, tun: Tun, core: Core) -> Self {
        let offload = tun.offloads().then(|| {
            let mut o = Offload::new();
            // UDP super-packets only where the TUN takes them (USO, Linux 6.2).
            o.coalescer.set_join_udp(tun.uso(), &mut |_, _| {});
            o
        });
        // Runs of full-size packets to one peer (a TCP stream) leave as one UDP GSO
        // message each: one trip through the stack instead of one per packet.
        let mut tx = SendBatch::new(BATCH, SLOT_SIZE);
        tx.set_segmentation(true);
        Self {
            start,
            udp,
            tun,
            core,
            // Buffers of 64 KiB: with UDP GRO one holds a whole burst of one peer.
            rx: RecvBatch::new(BATCH, SLOT_SIZE),
            tx,
            offload,
            tun_write_errors: 0,
            receive_errors: 0,
        }
    }

    /// Whether the TUN's offloads are in use.
    pub(super) fn offloads(&self) -> bool {
        self.offload.is_some()
    }

    fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Datagrams from the Teredo socket.
    fn receive_udp(&mut self) {
        // Out of `self` for the burst, so that the state machines' outputs can be sent
        // between two datagrams of it.
        let mut rx = std::mem::replace(&mut self.rx, RecvBatch::new(0, 0));
        self.receive_udp_with(&mut rx);
        self.rx = rx;
    }

    fn receive_udp_with(&mut self, rx: &mut RecvBatch) {
        for _ in 0..16 {
            let n = match rx.recv(self.udp.as_fd()) {
                Ok(n) => n,
                Err(e) => {
                    self.receive_errors += 1;
                    if self.receive_errors <= 10 {
                        warn!("receive: {e}");
                    }
                    0
                }
            };
            let now = self.now();
            for i in 0..n {
                let (from, _, truncated) = rx.get(i);
                if truncated {
                    continue;
                }
                for data in rx.segments(i) {
                    let verdict = self.core.handle_datagram(now, from, data);
                    if self.core.has_output() {
                        // A peer or relay was just verified: its queued packets go out now,
                        // before this one and those that came after them.
                        self.flush_coalescer();
                        self.transmit(now);
                    }
                    if let UdpVerdict::Deliver { range } = verdict {
                        self.deliver(&data[range]);
                    }
                }
            }
            self.flush_coalescer();
            self.check_refusals();
            if n < BATCH {
                break;
            }
        }
        let now = self.now();
        self.transmit(now);
    }

    /// Writes one decapsulated packet to the TUN, through the coalescer when offloading.
    fn deliver(&mut self, packet: &[u8]) {
        match self.offload.as_mut() {
            Some(o) => o.coalescer.push(packet, &mut |h, p| {
                write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
            }),
            None => {
                if self.tun.send(packet).is_err() {
                    self.tun_write_errors += 1;
                }
            }
        }
    }

    /// Stops joining what the kernel refused.
    fn check_refusals(&mut self) {
        let Some(o) = self.offload.as_mut() else { return };
        if o.refused.udp && o.coalescer.joins_udp() {
            warn!("the kernel refuses our UDP super-packets: writing datagrams one by one from now on");
            o.coalescer.set_join_udp(false, &mut |h, p| {
                write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
            });
        }
        if o.refused.tcp && o.coalescer.flows() > 0 {
            warn!("the kernel refuses our TCP super-packets: writing packets one by one from now on");
            o.coalescer.stop_joining(&mut |h, p| {
                write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
            });
        }
    }

    /// Writes what the coalescer holds open.
    fn flush_coalescer(&mut self) {
        if let Some(o) = self.offload.as_mut() {
            o.coalescer.flush(&mut |h, p| {
                write_frame(&self.tun, &mut o.cut, &mut o.refused, &mut self.tun_write_errors, h, p)
            });
        }
    }

    /// IPv6 packets from the TUN: encapsulated and sent in one batch.
    fn receive_tun(&mut self) {
        if self.offload.is_some() {
            return self.receive_tun_offload();
        }
        let now = self.now();
        for _ in 0..TUN_BURST {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            // Read straight into the next send slot: a packet sent as it is (simple
            // encapsulation) is never copied.
            let Some(slot) = self.tx.next_buf() else { break };
            let n = match self.tun.recv(slot) {
                Ok(n) => n,
                Err(_) => break,
            };
            if let TunVerdict::Send { dst } = self.core.handle_tun_packet(now, &slot[..n]) {
                self.tx.commit(n, dst);
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
        self.transmit(now);
    }

    /// [`TunnelWorker::receive_tun`] on a TUN with offloads: an ordinary packet is read
    /// straight into its send slot (its checksum completed in place if the kernel left it
    /// partial); a super-packet is cut into ordinary packets, one slot each, which leave as
    /// UDP GSO messages of up to 64 KiB when they go to one peer.
    fn receive_tun_offload(&mut self) {
        let now = self.now();
        let Some(o) = self.offload.as_mut() else { return };
        for _ in 0..TUN_BURST {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            let n = match self.tun.recv_offload(&mut o.hdr, slot) {
                Ok(n) => n,
                Err(_) => break,
            };
            let hdr = VnetHeader::parse(&o.hdr).unwrap_or_default();
            if hdr.gso_type == VnetHeader::GSO_NONE {
                if offload::complete_checksum(&hdr, &mut slot[..n]).is_err() {
                    o.errors += 1;
                    continue;
                }
                if let TunVerdict::Send { dst } = self.core.handle_tun_packet(now, &slot[..n]) {
                    self.tx.commit(n, dst);
                }
                continue;
            }
            o.scratch[..n].copy_from_slice(&slot[..n]);
            let mut segments = match Segments::new(&hdr, &o.scratch[..n]) {
                Ok(s) => s,
                Err(_) => {
                    o.errors += 1;
                    continue;
                }
            };
            o.super_packets += 1;
            o.segments += segments.count() as u64;
            loop {
                if self.tx.is_full() {
                    let _ = self.tx.flush(self.udp.as_fd());
                }
                let Some(slot) = self.tx.next_buf() else { break };
                let Some(len) = segments.next_into(slot) else { break };
                if let TunVerdict::Send { dst } = self.core.handle_tun_packet(now, &slot[..len]) {
                    self.tx.commit(len, dst);
                }
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
        self.transmit(now);
    }

    /// Everything the state machines want to send, written straight into the send batch
    /// (bubbles to many new peers, released queues: one sendmmsg for a batch, not one
    /// system call each); what goes to the TUN is written from its slot.
    fn transmit(&mut self, now: Instant) {
        loop {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            let Some(t) = self.core.poll_transmit(now, slot) else { break };
            match t.dest {
                Destination::Udp(to) => self.tx.commit(t.len, to),
                Destination::Tun => {
                    if self.tun.send(&slot[..t.len]).is_err() {
                        self.tun_write_errors += 1;
                    }
                }
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
    }
}

impl Role for TunnelWorker {
    fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.udp.as_fd(), self.tun.as_fd()]
    }

    fn handle_timeout(&mut self) -> Duration {
        let now = self.now();
        self.core.handle_timeout(now);
        self.transmit(now);
        self.core.poll_timeout().saturating_since(now)
    }

    fn handle_ready(&mut self, ready: [bool; 2]) {
        if ready[0] {
            self.receive_udp();
        }
        if ready[1] {
            self.receive_tun();
        }
    }

    fn snapshot(&self, peers: bool) -> Snapshot {
        let now = self.now();
        let mut s = match &self.core {
            Core::Client(c) => Snapshot::Client(c.status(now, peers)),
            Core::Relay(t) => Snapshot::Relay(t.relay_status(now, peers)),
        };
        let c = s.counters_mut();
        c.push(("socket_refused", self.tx.dropped()));
        c.push(("tun_refused", self.tun_write_errors));
        c.push(("receive_errors", self.receive_errors));
        if let Some(o) = &self.offload {
            c.extend(o.counters());
        }
        s
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match (&mut self.core, command) {
            (Core::Client(c), Command::SetServer { primary, secondary }) => {
                if let Err(e) = c.set_server(now, primary, secondary) {
                    warn!("Teredo server: {e}");
                }
            }
            (Core::Client(c), Command::ResolutionFailed) => c.resolution_failed(now),
            (Core::Client(c), Command::SolicitNow) => c.solicit_now(now),
            (Core::Client(c), Command::SetMaxPeers(n)) => {
                c.set_max_peers(n);
            }
            (Core::Relay(t), Command::SetMaxPeers(n)) => {
                t.set_max_peers(n);
            }
            _ => {}
        }
        self.transmit(now);
    }

    fn reports(&mut self, out: &mut Vec<Report>) {
        if let Core::Client(c) = &mut self.core {
            while let Some(e) = c.poll_event() {
                out.push(Report::Client(e));
            }
        }
    }
}
