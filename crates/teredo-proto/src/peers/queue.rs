//! The packet queues of the peer table: IPv6 packets held while a peer's mapping is being
//! learned (RFC 4380 §5.2.4 cases 2 and 5, §5.4.1 case 3: "the packet is queued"; §5.2.3
//! case 6: an inbound packet from an unverified relay waits for the direct IPv6
//! connectivity test).
//!
//! Two budgets bound the memory: a per-peer budget in bytes of packet data (Miredo's 1280
//! bytes by default, so one full-size packet), and a global budget shared by every peer,
//! in bytes of packet data plus [`PACKET_OVERHEAD`] per packet, so that a flood of packets
//! to new destinations cannot exhaust memory however small they are.
//!
//! # What a packet costs
//!
//! The global budget is honest: the bytes charged for the queued packets are at least the
//! bytes the queues hold from the allocator, counted in the allocator's size classes
//! (glibc's malloc: a chunk of the request plus 8 bytes, rounded up to 16, at least 32).
//! A queued packet is
//!
//! - its bytes, in an allocation of their own (at most 31 bytes of rounding: chunk − len);
//! - a list node (the next node, why it was queued, the bytes' pointer): a 48-byte chunk;
//! - its share of its queue's head (the peer, the mapping, the counts, the first node): a
//!   64-byte chunk for each queue, charged to every packet since a packet may be alone in
//!   its queue;
//! - its queue's entry in the index of queues (a pointer to the head), 8 bytes in a vector
//!   kept at most four times as long as needed: 32 bytes, plus the index's own chunk
//!   header.
//!
//! That is 31 + 48 + 64 + 32 = 175 bytes, and [`PACKET_OVERHEAD`] is 192: the 17 bytes
//! left cover the chunk headers of the two index vectors (16 bytes each) from the second
//! packet on; a lone packet uses only one of them. So the memory of the queues never
//! exceeds [`queued_bytes`](super::PeerTable::queued_bytes). In the other direction, the
//! charge exceeds the memory by at most 72 bytes for a packet alone in its queue (the
//! case of a flood of new destinations), and by at most 144 bytes for a later packet of
//! a queue, whose head and index entry are shared (the tests check both bounds against
//! the allocations counted by a global allocator).
//!
//! Nothing is kept at a high-water mark: the index vectors shrink when they are less than
//! a quarter full and are freed when empty, and each packet and head is freed as soon as
//! it leaves.
//!
//! # Fair share
//!
//! When the global budget is full, a packet for a queue takes the room of the oldest
//! packet of a longer queue ([`Queues::victim`], [`Queues::evict_oldest`], counted as
//! `queue_evicted`): so neither one destination nor many destinations that never answer
//! can hold the whole budget against a new one, and between queues of one packet each (a
//! flood of new destinations) new packets replace older ones. A queue never takes room
//! from one no longer than itself would be: then the packet is refused (`queue_budget_full`).
//!
//! # Order
//!
//! Packets leave a queue in arrival order (Miredo's queue is a stack and flushes newest
//! first). When a peer becomes trusted its queue is *released*: detached from the peer and
//! appended to one FIFO of released queues, which the data path drains one packet at a
//! time into its output buffer. A released packet stays charged to the global budget until
//! it is drained.

use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddrV4};

/// What is charged to the global budget for each packet besides its bytes: the rounding
/// of its allocation, its list node, its queue's head and its queue's entry in the index
/// (see the module comment: the charge bounds the real memory).
pub const PACKET_OVERHEAD: usize = 192;

/// The size of glibc's malloc chunk for a request of `n` bytes (`n` > 0): `n` plus the
/// 8-byte size header, rounded up to 16, at least 32.
pub(crate) const fn malloc_chunk(n: usize) -> usize {
    let c = (n + 8 + 15) & !15;
    if c < 32 { 32 } else { c }
}

/// The most a packet's allocation exceeds its length.
const DATA_ROUNDING: usize = 31;
/// An index entry (a pointer), counted four times: the index vectors are kept at most
/// four times longer than needed.
const INDEX_ENTRY: usize = 4 * size_of::<Box<Head>>();

// PACKET_OVERHEAD covers a packet alone in its queue, with room for a chunk header of an
// index vector (see the module comment).
const _: () = assert!(
    DATA_ROUNDING + malloc_chunk(size_of::<Node>()) + malloc_chunk(size_of::<Head>()) + INDEX_ENTRY + 16
        <= PACKET_OVERHEAD
);
const _: () = assert!(malloc_chunk(1) - 1 == DATA_ROUNDING);

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

/// One queued packet, a node of its queue's singly linked list.
#[derive(Debug)]
struct Node {
    next: Option<Box<Self>>,
    queued: Queued,
    data: Box<[u8]>,
}

/// One peer's queue. Its list is a stack (newest first) while packets arrive, and is
/// reversed once (oldest first) when it is released or discarded.
#[derive(Debug)]
struct Head {
    peer: [u8; 16],
    mapping: Option<SocketAddrV4>,
    /// Bytes of packet data.
    bytes: usize,
    packets: usize,
    top: Option<Box<Node>>,
}

impl Head {
    fn push(&mut self, queued: Queued, packet: &[u8]) {
        let next = self.top.take();
        self.top = Some(Box::new(Node { next, queued, data: packet.into() }));
        self.bytes += packet.len();
        self.packets += 1;
    }

    fn pop(&mut self) -> Option<Box<Node>> {
        let mut node = self.top.take()?;
        self.top = node.next.take();
        self.bytes -= node.data.len().min(self.bytes);
        self.packets = self.packets.saturating_sub(1);
        Some(node)
    }

    /// Takes the oldest packet (the bottom of the stack).
    fn pop_oldest(&mut self) -> Option<Box<Node>> {
        let mut at = &mut self.top;
        while at.as_ref()?.next.is_some() {
            at = &mut at.as_mut()?.next;
        }
        let node = at.take()?;
        self.bytes -= node.data.len().min(self.bytes);
        self.packets = self.packets.saturating_sub(1);
        Some(node)
    }

    /// Turns the stack into arrival order.
    fn reverse(&mut self) {
        let mut reversed = None;
        let mut at = self.top.take();
        while let Some(mut node) = at {
            at = node.next.take();
            node.next = reversed;
            reversed = Some(node);
        }
        self.top = reversed;
    }
}

impl Drop for Head {
    /// Frees the list iteratively (a recursive drop of a long list could overflow the
    /// stack).
    fn drop(&mut self) {
        let mut at = self.top.take();
        while let Some(mut node) = at {
            at = node.next.take();
        }
    }
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
    pub(crate) evicted: u64,
}

/// A queue whose handle changed: the table must store `handle` in `peer`'s entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    pub(crate) peer: [u8; 16],
    pub(crate) handle: u32,
}

/// Every queue of one table. The handle stored in a peer's entry is the index of its
/// queue in `heads` plus one, 0 meaning "no queue"; a queue leaving `heads` is replaced by
/// the last one (whose new handle the caller stores, see [`Moved`]), so that `heads` holds
/// exactly the live queues.
#[derive(Debug)]
pub(crate) struct Queues {
    /// The queues still attached to their peers (boxed, so that a spare entry of the
    /// vector costs 8 bytes rather than a head's 48).
    #[expect(clippy::vec_box, reason = "the spare capacity of the index costs less")]
    heads: Vec<Box<Head>>,
    /// The released queues, oldest first.
    released: VecDeque<Box<Head>>,
    /// Bytes charged to the global budget.
    charged: usize,
    per_peer: usize,
    total: usize,
    /// Where [`Queues::victim`] looks next.
    cursor: usize,
    pub(crate) counts: QueueCounts,
}

/// The largest queue handle: bit 31 of an entry's handle is its stranger bit.
pub(crate) const MAX_HANDLE: u32 = (1 << 31) - 1;
/// Queues looked at to pick each queue that gives up a packet to a fairer one (see
/// [`Queues::victim`]).
const FAIR_SAMPLE: usize = 8;

/// What the global budget is charged for a packet of `len` bytes.
const fn charge(len: usize) -> usize {
    len + PACKET_OVERHEAD
}

/// Keeps an index vector at most four times longer than its contents, and frees it when
/// empty (see the module comment).
fn trim<T>(v: &mut Vec<T>) {
    if v.is_empty() {
        *v = Vec::new();
    } else if v.capacity() > 4 * v.len() {
        v.shrink_to(2 * v.len());
    }
}

fn trim_deque<T>(v: &mut VecDeque<T>) {
    if v.is_empty() {
        *v = VecDeque::new();
    } else if v.capacity() > 4 * v.len() {
        v.shrink_to(2 * v.len());
    }
}

impl Queues {
    pub(crate) fn new(per_peer: usize, total: usize) -> Self {
        Self {
            heads: Vec::new(),
            released: VecDeque::new(),
            charged: 0,
            per_peer,
            total,
            cursor: 0,
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
        let charge = charge(packet.len());
        if self.charged.saturating_add(charge) > self.total {
            self.counts.budget_full += 1;
            return Err(QueueError::BudgetFull);
        }
        if self.get(*handle).is_none() {
            // The index holds at most one queue per queued packet, which the global
            // budget bounds far below u32::MAX.
            let h = u32::try_from(self.heads.len() + 1).unwrap_or(u32::MAX);
            if h > MAX_HANDLE {
                self.counts.budget_full += 1;
                return Err(QueueError::BudgetFull);
            }
            self.heads.push(Box::new(Head { peer: *peer, mapping: None, bytes: 0, packets: 0, top: None }));
            *handle = h;
        }
        let Some(q) = self.get_mut(*handle) else { return Err(QueueError::NoPeer) };
        q.push(queued, packet);
        self.charged += charge;
        self.counts.queued += 1;
        Ok(())
    }

    /// Whether a packet of `len` bytes fits the queue `handle` and the global budget now
    /// (nothing counted).
    pub(crate) fn room(&self, handle: u32, len: usize) -> Result<(), QueueError> {
        let held = self.get(handle).map_or(0, |q| q.bytes);
        if held.saturating_add(len) > self.per_peer {
            return Err(QueueError::PeerFull);
        }
        if self.charged.saturating_add(charge(len)) > self.total {
            return Err(QueueError::BudgetFull);
        }
        Ok(())
    }

    /// A queue that should give up a packet so that the queue `own` (0 for none yet) gets
    /// one more, the global budget being full: among [`FAIR_SAMPLE`] queues taken in turn
    /// from a rotating cursor, the one with the most packets, if it has more than `own`
    /// would (so that no queue grows at the expense of a shorter one; between queues of
    /// one packet each, the flood of many unanswered destinations, the older packet goes).
    /// Sampling keeps the cost O(1): the queue with the most packets overall is not
    /// always the one chosen, but a long queue is met within a few rounds.
    pub(crate) fn victim(&mut self, own: u32) -> Option<u32> {
        let n = self.heads.len();
        if n == 0 {
            return None;
        }
        let own_packets = self.get(own).map_or(0, |q| q.packets);
        let mut best: Option<(usize, usize)> = None;
        let mut i = self.cursor % n;
        for _ in 0..FAIR_SAMPLE.min(n) {
            let packets = self.heads.get(i).map_or(0, |q| q.packets);
            if i + 1 != own as usize && best.is_none_or(|(_, b)| packets > b) {
                best = Some((i, packets));
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
        self.cursor = i;
        let (at, packets) = best?;
        (packets > own_packets).then(|| at as u32 + 1)
    }

    /// Drops the oldest packet of the queue `handle` to make room for a fairer one
    /// (counted); when that empties the queue, it leaves the index: returns its peer (whose
    /// handle becomes 0) and the queue moved into its place.
    pub(crate) fn evict_oldest(&mut self, handle: u32) -> Option<([u8; 16], Option<Moved>)> {
        let q = self.get_mut(handle)?;
        let node = q.pop_oldest()?;
        let empty = q.top.is_none();
        self.charged -= charge(node.data.len()).min(self.charged);
        self.counts.evicted += 1;
        if !empty {
            return None;
        }
        let (head, moved) = self.detach(handle)?;
        Some((head.peer, moved))
    }

    /// Takes the queue `handle` out of the index.
    fn detach(&mut self, handle: u32) -> Option<(Box<Head>, Option<Moved>)> {
        let i = (handle as usize).checked_sub(1)?;
        if i >= self.heads.len() {
            return None;
        }
        let head = self.heads.swap_remove(i);
        let moved = self.heads.get(i).map(|h| Moved { peer: h.peer, handle });
        trim(&mut self.heads);
        Some((head, moved))
    }

    /// Moves the queue `handle` to the end of the released FIFO, to be drained towards
    /// `mapping`; returns its number of packets.
    pub(crate) fn release(&mut self, handle: u32, mapping: SocketAddrV4) -> (usize, Option<Moved>) {
        let Some((mut q, moved)) = self.detach(handle) else { return (0, None) };
        q.mapping = Some(mapping);
        q.reverse();
        let n = q.packets;
        self.released.push_back(q);
        (n, moved)
    }

    /// Frees the queue `handle`, calling `f` on each of its packets, oldest first; returns
    /// how many there were.
    pub(crate) fn discard(
        &mut self,
        handle: u32,
        mut f: impl FnMut(&[u8], Queued),
    ) -> (usize, Option<Moved>) {
        let Some((mut q, moved)) = self.detach(handle) else { return (0, None) };
        q.reverse();
        let mut n = 0;
        while let Some(p) = q.pop() {
            f(&p.data, p.queued);
            self.charged -= charge(p.data.len()).min(self.charged);
            n += 1;
        }
        self.counts.discarded += n as u64;
        (n, moved)
    }

    /// Writes the oldest packet of the oldest released queue into `buf`. A packet longer
    /// than `buf` is dropped and counted, and the next one is tried.
    pub(crate) fn pop_released(&mut self, buf: &mut [u8]) -> Option<Released> {
        loop {
            let q = self.released.front_mut()?;
            let Some(p) = q.pop() else {
                self.released.pop_front();
                trim_deque(&mut self.released);
                continue;
            };
            let peer = Ipv6Addr::from(q.peer);
            let mapping = q.mapping;
            if q.top.is_none() {
                self.released.pop_front();
                trim_deque(&mut self.released);
            }
            self.charged -= charge(p.data.len()).min(self.charged);
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
        self.get(handle).map_or((0, 0), |q| (q.packets, q.bytes))
    }

    /// Drops every queue, released ones included; returns the number of packets dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let n: usize = self.heads.iter().chain(self.released.iter()).map(|q| q.packets).sum();
        self.counts.discarded += n as u64;
        self.heads = Vec::new();
        self.released = VecDeque::new();
        self.charged = 0;
        n
    }

    fn get(&self, handle: u32) -> Option<&Head> {
        self.heads.get((handle as usize).checked_sub(1)?).map(|b| &**b)
    }

    fn get_mut(&mut self, handle: u32) -> Option<&mut Head> {
        self.heads.get_mut((handle as usize).checked_sub(1)?).map(|b| &mut **b)
    }

    /// The bytes the queues hold from the allocator, in glibc's size classes, computed
    /// from their structures (the tests compare it with the allocations themselves).
    #[cfg(test)]
    pub(crate) fn allocated(&self) -> usize {
        let vector = |cap: usize| if cap == 0 { 0 } else { malloc_chunk(cap * size_of::<Box<Head>>()) };
        let mut bytes = vector(self.heads.capacity()) + vector(self.released.capacity());
        for q in self.heads.iter().chain(self.released.iter()) {
            bytes += malloc_chunk(size_of::<Head>());
            let mut at = q.top.as_deref();
            while let Some(node) = at {
                bytes += malloc_chunk(size_of::<Node>());
                if !node.data.is_empty() {
                    bytes += malloc_chunk(node.data.len());
                }
                at = node.next.as_deref();
            }
        }
        bytes
    }

    /// The handle of `peer`'s queue as the index has it, to check the entries' handles.
    #[cfg(test)]
    pub(crate) fn handle_of(&self, peer: &[u8; 16]) -> u32 {
        self.heads.iter().position(|q| q.peer == *peer).map_or(0, |i| i as u32 + 1)
    }
}
