//! A client's or relay's packet path, the [`Role`] the worker loop drives for `teredo
//! run`: batched UDP (recvmmsg with GRO, sendmmsg with GSO) on one side, the TUN (with its
//! offloads, see [`super::offload`]) on the other, and the sans-IO core between them
//! (`Core`, module `tunnel_core`): a client's endpoint or one relay worker's tunnel. A
//! relay's worker also runs the probes of the servers steered to it ([`ServerProbe`], its
//! health): their solicitations leave in its send batch, their answers are taken before
//! the tunnel sees them, and each outcome is reported to the control thread. A client
//! also has its random sockets (module `random_sockets`, RFC 6081 §5.4, §5.5), polled
//! after the UDP socket and the TUN; the trusted fast path does not touch them.

use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use socket2::Socket;
use teredo_net::batch::{RecvBatch, SendBatch};
use teredo_net::tun::Tun;
use teredo_proto::address::TEREDO_PORT;
use teredo_proto::client;
use teredo_proto::offload::{self, Segments, VnetHeader};
use teredo_proto::probe::ServerProbe;
use teredo_proto::time::Instant;
use teredo_proto::tunnel::{Destination, MAX_RANDOM_PEERS, TunVerdict, UdpVerdict};
use teredo_proto::wire::TeredoPacket;
use tracing::warn;

use super::offload::{Offload, write_frame};
use super::random_sockets::RandomSockets;
pub(super) use super::tunnel_core::Core;
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
    /// A relay's probes of the servers whose answers come to this worker.
    probes: Vec<ServerProbe>,
    /// A client's random sockets.
    random: RandomSockets,
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
        // Its tail holds the super-packet read from the TUN whose segments' payloads leave
        // from there (see `receive_tun_offload`).
        let mut tx = SendBatch::with_tail(BATCH, SLOT_SIZE, SLOT_SIZE);
        tx.set_segmentation(true);
        let bind = teredo_net::udp::local_v4(&udp).map_or(std::net::Ipv4Addr::UNSPECIFIED, |a| *a.ip());
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
            random: RandomSockets::new(bind),
            probes: Vec::new(),
        }
    }

    /// Gives the worker its probes of servers (a relay's).
    pub(super) fn with_probes(mut self, probes: Vec<ServerProbe>) -> Self {
        self.probes = probes;
        self
    }

    /// Whether `data` from `from` answers one of the probes (it is then taken).
    fn probe_answer(&mut self, now: Instant, from: SocketAddrV4, data: &[u8]) -> bool {
        let Some(p) = self.probes.iter_mut().find(|p| p.is_from_server(from)) else { return false };
        TeredoPacket::parse(data).is_ok_and(|packet| p.handle_datagram(now, from, &packet))
    }

    /// The probes' solicitations that are due, into the send batch.
    fn send_probes(&mut self, now: Instant) {
        for p in &mut self.probes {
            p.handle_timeout(now);
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            if let Some((len, to)) = p.poll_transmit(now, slot) {
                self.tx.commit(len, to);
            }
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
                    if !self.probes.is_empty()
                        && from.port() == TEREDO_PORT
                        && self.probe_answer(now, from, data)
                    {
                        continue;
                    }
                    let verdict = self.core.handle_datagram(now, from, data);
                    self.after_datagram(now, verdict, data);
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
    /// What follows the core's verdict on the received `data`: when a peer or relay was
    /// just verified, its queued packets go out first (before this one and those that
    /// came after them); then `data`'s packet is delivered if the verdict says so.
    fn after_datagram(&mut self, now: Instant, verdict: UdpVerdict, data: &[u8]) {
        if self.core.has_output() {
            self.flush_coalescer();
            self.transmit(now);
        }
        if let UdpVerdict::Deliver { range } = verdict {
            self.deliver(&data[range]);
        }
    }

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
            match self.core.handle_tun_packet(now, &slot[..n]) {
                TunVerdict::Send { dst } => self.tx.commit(n, dst),
                TunVerdict::SendFrom { port, dst } => self.random.send(port, &slot[..n], dst),
                TunVerdict::Queued | TunVerdict::Drop(_) => {}
            }
        }
        if !self.tx.is_empty() {
            let _ = self.tx.flush(self.udp.as_fd());
        }
        self.transmit(now);
    }

    /// [`TunnelWorker::receive_tun`] on a TUN with offloads: an ordinary packet leaves from
    /// its send slot (its checksum completed in place if the kernel left it partial); a
    /// super-packet, read into the send batch's tail, is cut into ordinary packets whose
    /// headers are written into a slot each and whose payloads leave from the tail, where
    /// they were read (a gathered send: no copy), as UDP GSO messages of up to 64 KiB when
    /// they go to one peer. Each read goes where the previous packet's kind says (see
    /// `Offload::expect_super`).
    fn receive_tun_offload(&mut self) {
        let now = self.now();
        let Some(o) = self.offload.as_mut() else { return };
        for _ in 0..TUN_BURST {
            // The tail is written again only once the datagrams taken from it are sent.
            if self.tx.is_full() || self.tx.tail_busy() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some((slot, tail)) = self.tx.next_buf_and_tail_mut() else { break };
            // A super-packet is cut in the tail, an ordinary packet leaves from its send
            // slot: read where the last packet would have gone, so that a bulk flow's
            // super-packets (or a flood's small packets) are never copied whole; a guess
            // that was wrong costs one copy.
            let into_tail = o.expect_super;
            let read = if into_tail {
                // No more than the slot holds, should it turn out to be an ordinary packet.
                let room = slot.len().min(tail.len());
                self.tun.recv_offload(&mut o.hdr, &mut tail[..room])
            } else {
                self.tun.recv_offload(&mut o.hdr, slot)
            };
            let Ok(n) = read else { break };
            let hdr = VnetHeader::parse(&o.hdr).unwrap_or_default();
            o.expect_super = hdr.gso_type != VnetHeader::GSO_NONE;
            if hdr.gso_type == VnetHeader::GSO_NONE {
                if into_tail {
                    slot[..n].copy_from_slice(&tail[..n]);
                }
                if offload::complete_checksum(&hdr, &mut slot[..n]).is_err() {
                    o.errors += 1;
                    continue;
                }
                match self.core.handle_tun_packet(now, &slot[..n]) {
                    TunVerdict::Send { dst } => self.tx.commit(n, dst),
                    TunVerdict::SendFrom { port, dst } => self.random.send(port, &slot[..n], dst),
                    TunVerdict::Queued | TunVerdict::Drop(_) => {}
                }
                continue;
            }
            if !into_tail {
                tail[..n].copy_from_slice(&slot[..n]);
            }
            let mut plan = match Segments::new(&hdr, &tail[..n]) {
                Ok(s) => s.into_plan(),
                Err(_) => {
                    o.errors += 1;
                    continue;
                }
            };
            o.super_packets += 1;
            o.segments += plan.count() as u64;
            loop {
                if self.tx.is_full() {
                    let _ = self.tx.flush(self.udp.as_fd());
                }
                let Some((slot, tail)) = self.tx.next_buf_and_tail() else { break };
                let packet = &tail[..n];
                let Some((h, payload)) = plan.next_headers_into(packet, slot) else { break };
                // A trusted peer's segment is decided from its headers and leaves with its
                // payload in the tail; any other is made whole first.
                let verdict = match self.core.handle_tun_headers(now, &slot[..h]) {
                    Some(TunVerdict::Send { dst }) => {
                        self.tx.commit_with_tail(h, payload, dst);
                        continue;
                    }
                    v => v,
                };
                let len = h + payload.len();
                slot[h..len].copy_from_slice(&packet[payload]);
                match verdict.unwrap_or_else(|| self.core.handle_tun_packet(now, &slot[..len])) {
                    TunVerdict::Send { dst } => self.tx.commit(len, dst),
                    TunVerdict::SendFrom { port, dst } => self.random.send(port, &slot[..len], dst),
                    TunVerdict::Queued | TunVerdict::Drop(_) => {}
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
        // Sockets the data path opened exist before anything leaves from them.
        if let Core::Client(c) = &mut self.core {
            self.random.reconcile(c);
        }
        loop {
            if self.tx.is_full() {
                let _ = self.tx.flush(self.udp.as_fd());
            }
            let Some(slot) = self.tx.next_buf() else { break };
            let Some(t) = self.core.poll_transmit(now, slot) else { break };
            match t.dest {
                Destination::Udp(to) => self.tx.commit(t.len, to),
                Destination::UdpFrom { port, to } => self.random.send(port, &slot[..t.len], to),
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

impl TunnelWorker {
    /// Datagrams from the random socket of `port` (RFC 6081 §5.4, §5.5).
    fn receive_random(&mut self, port: u16) {
        let mut rx = std::mem::replace(&mut self.rx, RecvBatch::new(0, 0));
        let n = match (0..self.random.len()).find_map(|i| self.random.get(i).filter(|(p, _)| *p == port)) {
            Some((_, socket)) => rx.recv(socket.as_fd()).unwrap_or(0),
            None => 0,
        };
        let now = self.now();
        for i in 0..n {
            let (from, _, truncated) = rx.get(i);
            if truncated {
                continue;
            }
            for data in rx.segments(i) {
                let Core::Client(c) = &mut self.core else { break };
                let verdict = c.handle_random_datagram(now, port, from, data);
                self.after_datagram(now, verdict, data);
            }
        }
        self.flush_coalescer();
        self.rx = rx;
        self.transmit(now);
    }
}

impl Role for TunnelWorker {
    fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        [self.udp.as_fd(), self.tun.as_fd()].into_iter().chain(self.random.fds())
    }

    fn handle_timeout(&mut self) -> Duration {
        let now = self.now();
        self.core.handle_timeout(now);
        self.send_probes(now);
        self.transmit(now);
        let next =
            self.probes.iter().map(ServerProbe::poll_timeout).fold(self.core.poll_timeout(), Instant::min);
        next.saturating_since(now)
    }

    fn handle_ready(&mut self, ready: &[bool]) {
        if ready.first() == Some(&true) {
            self.receive_udp();
        }
        if ready.get(1) == Some(&true) {
            self.receive_tun();
        }
        // By port: serving one may open or close others.
        let mut ports = [0u16; MAX_RANDOM_PEERS];
        let mut n = 0;
        for (i, r) in ready.iter().enumerate().skip(2) {
            if *r && let Some((p, _)) = self.random.get(i - 2) {
                ports[n] = p;
                n += 1;
            }
        }
        for &p in &ports[..n] {
            self.receive_random(p);
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
        c.push(("gso_refused", self.tx.segmentation_refusals()));
        c.push(("tun_refused", self.tun_write_errors));
        c.push(("receive_errors", self.receive_errors));
        c.push(("random_sockets", self.random.len() as u64));
        c.push(("random_socket_bind_failures", self.random.unavailable));
        c.push(("random_socket_send_errors", self.random.send_errors));
        if let Some(o) = &self.offload {
            c.extend(o.counters());
        }
        if !self.probes.is_empty() {
            let sum = |f: fn(&teredo_proto::probe::ProbeStats) -> u64| {
                self.probes.iter().map(|p| f(&p.stats())).sum::<u64>()
            };
            c.push(("probes_sent", sum(|s| s.sent)));
            c.push(("probes_answered", sum(|s| s.answered)));
            c.push(("probes_unanswered", sum(|s| s.unanswered)));
            c.push(("probes_ignored", sum(|s| s.ignored)));
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
            (Core::Client(c), Command::SetServerLater { primary, secondary }) => {
                if let Err(e) = c.set_server_later(now, primary, secondary) {
                    warn!("Teredo server: {e}");
                }
            }
            (Core::Client(c), Command::ResolutionFailed) => c.resolution_failed(now),
            (Core::Client(c), Command::SolicitNow) => c.solicit_now(now),
            (Core::Client(c), Command::SetMaxPeers(n)) => {
                c.set_max_peers(n);
            }
            (Core::Client(c), Command::Discovery { from, datagram }) => {
                c.handle_discovery(now, from, &datagram);
            }
            (Core::Client(c), Command::Upnp(mapping)) => c.set_upnp(now, mapping),
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
                if let client::Event::Up { .. } = e
                    && let Some((server, _)) = c.server()
                {
                    // RFC 6081 §5.6: the local address peers behind our NAT can reach.
                    let local =
                        teredo_net::udp::source_toward(&self.udp, SocketAddrV4::new(server, TEREDO_PORT));
                    c.set_local_address(local.ok());
                }
                out.push(Report::Client(e));
            }
        }
        for p in &mut self.probes {
            while let Some(outcome) = p.poll_outcome() {
                out.push(Report::Probe { server: p.server(), outcome });
            }
        }
    }
}
