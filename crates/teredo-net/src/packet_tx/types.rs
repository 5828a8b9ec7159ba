//! What a [`PacketTx`](super::PacketTx)(super::PacketTx) answers, the same on every platform.

/// Counters of a [`PacketTx`](super::PacketTx).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketTxStats {
    /// Frames the kernel took.
    pub frames: u64,
    /// Datagrams handed back to go through the UDP socket.
    pub fallbacks: u64,
    /// Frames the kernel refused (dropped).
    pub errors: u64,
}

/// What [`PacketTx::commit`](super::PacketTx::commit) did with a datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued<'a> {
    /// Queued as a frame; [`PacketTx::flush`](super::PacketTx::flush) sends it.
    Frame,
    /// Not possible now: send these bytes (the payload) through the UDP socket.
    Socket(&'a [u8]),
}
