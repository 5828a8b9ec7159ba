//! The packet queues of the peer table: IPv6 packets held while a peer's mapping is being
//! learned (RFC 4380 §5.2.4 cases 2 and 5, §5.4.1 case 3: "the packet is queued"; §5.2.3
//! case 6: an inbound packet from an unverified relay waits for the direct IPv6
//! connectivity test).
//!
//! Two budgets bound the memory: a per-peer budget in bytes of packet data (Miredo's 1280
//! bytes by default, so one full-size packet), and a global budget shared by every peer,
//! in bytes of packet data plus a fixed charge per packet for its bookkeeping, so that a
//! flood of packets to new destinations cannot exhaust memory however small they are.
//!
//! Packets leave a queue in arrival order (Miredo's queue is a stack and flushes newest
//! first). When a peer becomes trusted its queue is *released*: detached from the peer and
//! appended to one FIFO of released queues, which the data path drains one packet at a
//! time into its output buffer. A released packet stays charged to the global budget until
//! it is drained.

use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddrV4};

/// What is charged to the global budget for each packet besides its bytes: its allocation
/// and its entry in the queue.
pub const PACKET_OVERHEAD: usize = 64;

/// Why a queued packet waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queued {
    /// A packet from the TUN for the peer, to be sent over UDP to the peer's mapping once
    /// it is known (RFC 4380 §5.2.4 cases 2 and 5, §5.4.1 case 3).
    Outbound,
    /// A packet received over UDP from `from` with the peer as IPv6 source, to be
    /// delivered to the TUN only if the peer's verified mapping turns out to be `from`
    /// (RFC 4380 §5.2.3 case 6, §5.2.9).
    Inbound {
        /// The outer IPv4 source and UDP port it came from.
        from: SocketAddrV4,
    },
}

/// Why a packet could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum QueueError {
    /// There is no entry for the peer.
    #[error("no such peer")]
    NoPeer,
    /// The peer's queue budget would be exceeded.
    #[error("the peer's queue is full")]
    PeerFull,
    /// The global queue budget would be exceeded.
    #[error("the global queue budget is exhausted")]
    BudgetFull,
}

/// A released packet written into the caller's buffer by
/// [`PeerTable::pop_released`](super::PeerTable::pop_released).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The peer the packet was queued for.
    pub peer: Ipv6Addr,
    /// The mapping the peer had when its queue was released (its verified IPv4 address
    /// and port).
    pub mapping: SocketAddrV4,
    /// Why it was queued.
    pub queued: Queued,
    /// The packet's length, written at the start of the buffer.
    pub len: usize,
}

#[derive(Debug)]
struct Packet {
    queued: Queued,
    data: Box<[u8]>,
}

#[derive(Debug, Default)]
struct PeerQueue {
    peer: [u8; 16],
    mapping: Option<SocketAddrV4>,
    packets: VecDeque<Packet>,
    /// Bytes of packet data.
    bytes: usize,
}

/// Counters of the queues, kept in [`super::PeerStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct QueueCounts {
    pub(crate) queued: u64,
    pub(crate) peer_full: u64,
    pub(crate) budget_full: u64,
    pub(crate) discarded: u64,
    pub(crate) released: u64,
    pub(crate) too_big: u64,
}

/// Every queue of one table. Queue handles stored in peer entries are `index + 1`, with 0
/// meaning "no queue".
#[derive(Debug)]
pub(crate) struct Queues {
    slab: Vec<PeerQueue>,
    free: Vec<u32>,
    released: VecDeque<u32>,
    /// Bytes charged to the global budget.
    charged: usize,
    per_peer: usize,
    total: usize,
    pub(crate) counts: QueueCounts,
}

impl Queues {
    pub(crate) fn new(per_peer: usize, total: usize) -> Self {
        Self {
            slab: Vec::new(),
            free: Vec::new(),
            released: VecDeque::new(),
            charged: 0,
            per_peer,
            total,
            counts: QueueCounts::default(),
        }
    }

    /// Bytes charged to the global budget now.
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// Appends `packet` to the queue whose handle is in `handle` (creating it when the
    /// handle is 0) for `peer`.
    pub(crate) fn enqueue(
        &mut self,
        handle: &mut u32,
        peer: &[u8; 16],
        queued: Queued,
        packet: &[u8],
    ) -> Result<(), QueueError> {
        let held = match self.get(*handle) {
            Some(q) => q.bytes,
            None => 0,
        };
        if held.saturating_add(packet.len()) > self.per_peer {
            self.counts.peer_full += 1;
            return Err(QueueError::PeerFull);
        }
        let charge = packet.len() + PACKET_OVERHEAD;
        if self.charged.saturating_add(charge) > self.total {
            self.counts.budget_full += 1;
            return Err(QueueError::BudgetFull);
        }
        if *handle == 0 {
            *handle = self.allocate(peer);
        }
        let Some(q) = self.get_mut(*handle) else { return Err(QueueError::NoPeer) };
        q.packets.push_back(Packet { queued, data: packet.into() });
        q.bytes += packet.len();
        self.charged += charge;
        self.counts.queued += 1;
        Ok(())
    }

    /// Moves the queue `handle` to the end of the released FIFO, to be drained towards
    /// `mapping`.
    pub(crate) fn release(&mut self, handle: u32, mapping: SocketAddrV4) -> usize {
        let Some(q) = self.get_mut(handle) else { return 0 };
        q.mapping = Some(mapping);
        let n = q.packets.len();
        self.released.push_back(handle);
        n
    }

    /// Frees the queue `handle`, calling `f` on each of its packets, oldest first; returns
    /// how many there were.
    pub(crate) fn discard(&mut self, handle: u32, mut f: impl FnMut(&[u8], Queued)) -> usize {
        let Some(q) = self.get_mut(handle) else { return 0 };
        let packets = core::mem::take(&mut q.packets);
        let n = packets.len();
        let mut freed = 0;
        for p in &packets {
            f(&p.data, p.queued);
            freed += p.data.len() + PACKET_OVERHEAD;
        }
        self.charged -= freed.min(self.charged);
        self.counts.discarded += n as u64;
        self.free_queue(handle);
        n
    }

    /// Writes the oldest packet of the oldest released queue into `buf`. A packet longer
    /// than `buf` is dropped and counted, and the next one is tried.
    pub(crate) fn pop_released(&mut self, buf: &mut [u8]) -> Option<Released> {
        loop {
            let &handle = self.released.front()?;
            let Some(q) = self.slab.get_mut(handle as usize - 1) else {
                self.released.pop_front();
                continue;
            };
            let Some(p) = q.packets.pop_front() else {
                self.released.pop_front();
                self.free_queue(handle);
                continue;
            };
            q.bytes -= p.data.len().min(q.bytes);
            let peer = Ipv6Addr::from(q.peer);
            let mapping = q.mapping;
            let empty = q.packets.is_empty();
            self.charged -= (p.data.len() + PACKET_OVERHEAD).min(self.charged);
            if empty {
                self.released.pop_front();
                self.free_queue(handle);
            }
            let (Some(mapping), Some(out)) = (mapping, buf.get_mut(..p.data.len())) else {
                self.counts.too_big += 1;
                continue;
            };
            out.copy_from_slice(&p.data);
            self.counts.released += 1;
            return Some(Released { peer, mapping, queued: p.queued, len: p.data.len() });
        }
    }

    /// Whether any released packet waits.
    pub(crate) fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Number of packets and data bytes in queue `handle`.
    pub(crate) fn len_of(&self, handle: u32) -> (usize, usize) {
        self.get(handle).map_or((0, 0), |q| (q.packets.len(), q.bytes))
    }

    /// Drops every queue, released ones included; returns the number of packets dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let n: usize = self.slab.iter().map(|q| q.packets.len()).sum();
        self.counts.discarded += n as u64;
        self.slab = Vec::new();
        self.free = Vec::new();
        self.released = VecDeque::new();
        self.charged = 0;
        n
    }

    fn get(&self, handle: u32) -> Option<&PeerQueue> {
        self.slab.get((handle as usize).checked_sub(1)?)
    }

    fn get_mut(&mut self, handle: u32) -> Option<&mut PeerQueue> {
        self.slab.get_mut((handle as usize).checked_sub(1)?)
    }

    fn allocate(&mut self, peer: &[u8; 16]) -> u32 {
        let handle = match self.free.pop() {
            Some(h) => h,
            None => {
                self.slab.push(PeerQueue::default());
                // The slab holds at most one queue per queued packet, which the global
                // budget bounds far below u32::MAX.
                u32::try_from(self.slab.len()).unwrap_or(u32::MAX)
            }
        };
        if let Some(q) = self.get_mut(handle) {
            q.peer = *peer;
            q.mapping = None;
            q.bytes = 0;
        }
        handle
    }

    fn free_queue(&mut self, handle: u32) {
        if let Some(q) = self.get_mut(handle) {
            *q = PeerQueue::default();
            self.free.push(handle);
        }
    }
}
