//! The table's side of the packet queues that wait for a peer's mapping (RFC 4380 §5.2.4,
//! §5.2.3 case 6, §5.4.1): each entry holds the handle of its queue in [`super::queue`],
//! kept up to date here when a queue moves, is released or is dropped.

use std::net::{Ipv6Addr, SocketAddrV4};

use super::queue;
use super::{PACKET_OVERHEAD, Peer, PeerTable, QueueError, Queued, Released};

impl PeerTable {
    /// Queues `packet` for `addr` (RFC 4380 §5.2.4, §5.2.3 case 6, §5.4.1), within the
    /// per-peer and global budgets. When the global budget is full, the oldest packets of
    /// longer queues make room, if there are such (see the module comment of `peers`).
    pub fn enqueue(&mut self, addr: &Ipv6Addr, queued: Queued, packet: &[u8]) -> Result<(), QueueError> {
        let key = addr.octets();
        let i = self.find(&key).ok_or(QueueError::NoPeer)?;
        let handle = |t: &Self| t.slots.get(i).map_or(0, Peer::queue_handle);
        // Each packet dropped frees at least PACKET_OVERHEAD bytes: this bounds the loop.
        for _ in 0..packet.len() / PACKET_OVERHEAD + 3 {
            if self.queues.room(handle(self), packet.len()) != Err(QueueError::BudgetFull) {
                break;
            }
            let Some(victim) = self.queues.victim(handle(self)) else { break };
            if let Some((peer, moved)) = self.queues.evict_oldest(victim) {
                if let Some(v) = self.find(&peer)
                    && let Some(p) = self.slots.get_mut(v)
                {
                    p.set_queue_handle(0);
                }
                self.moved(moved);
            }
        }
        let slot = self.slots.get_mut(i).ok_or(QueueError::NoPeer)?;
        let mut h = slot.queue_handle();
        let r = self.queues.enqueue(&mut h, &key, queued, packet);
        slot.set_queue_handle(h);
        r
    }

    /// Number of packets and of bytes queued for `addr` (not counting released ones).
    pub fn queue_len(&self, addr: &Ipv6Addr) -> (usize, usize) {
        self.get(addr).map_or((0, 0), |p| self.queues.len_of(p.queue_handle()))
    }

    /// Detaches the queue of `addr` and appends it to the released packets, to be sent to
    /// (or, for inbound packets, checked against) `mapping` in arrival order by
    /// [`PeerTable::pop_released`] ("any packet queued for this IPv6 peer should be
    /// de-queued and forwarded", RFC 4380 §5.2.3). Returns the number of packets.
    pub fn release_queue(&mut self, addr: &Ipv6Addr, mapping: SocketAddrV4) -> usize {
        let Some(p) = self.get_mut(addr) else { return 0 };
        let handle = p.take_queue_handle();
        if handle == 0 {
            return 0;
        }
        let (n, moved) = self.queues.release(handle, mapping);
        self.moved(moved);
        n
    }

    /// Drops the queue of `addr`, calling `f` on each packet, oldest first (to answer it
    /// with an ICMPv6 error); returns the number of packets.
    pub fn discard_queue(&mut self, addr: &Ipv6Addr, f: impl FnMut(&[u8], Queued)) -> usize {
        let Some(p) = self.get_mut(addr) else { return 0 };
        let handle = p.take_queue_handle();
        let (n, moved) = self.queues.discard(handle, f);
        self.moved(moved);
        n
    }

    /// Writes the next released packet into `buf`: the oldest packet of the oldest
    /// released queue. Packets longer than `buf` are dropped (and counted).
    pub fn pop_released(&mut self, buf: &mut [u8]) -> Option<Released> {
        self.queues.pop_released(buf)
    }

    /// Whether released packets wait for [`PeerTable::pop_released`].
    pub fn has_released(&self) -> bool {
        self.queues.has_released()
    }

    /// Stores the new handle of a queue moved in the index of queues.
    pub(super) fn moved(&mut self, moved: Option<queue::Moved>) {
        if let Some(m) = moved
            && let Some(i) = self.find(&m.peer)
            && let Some(p) = self.slots.get_mut(i)
        {
            p.set_queue_handle(m.handle);
        }
    }
}
