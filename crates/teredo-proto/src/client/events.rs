//! What a client tells the I/O layer: its [`Event`]s, its [`State`] (RFC 4380 §5.2
//! "Teredo connectivity status"), what the NAT probe found ([`NatKind`]), the datagrams to
//! send ([`Transmit`]) and its counters ([`Stats`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use super::Rejection;

/// What the secondary-address probe of RFC 4380 §5.2.1 found about the NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// The secondary address saw the same mapping as the primary: the NAT keeps one
    /// mapping for every destination (endpoint-independent mapping, RFC 4787 §4.1). It is
    /// a cone or a (port-)restricted cone NAT, or there is no NAT; since RFC 5991 §3.2 the
    /// client cannot tell which.
    SameMapping,
    /// The secondary address saw another mapping: a symmetric NAT (RFC 4380 §5.2.1). The
    /// client still qualifies with the primary's mapping; peers behind their own NATs may
    /// not reach it directly, relays can.
    Symmetric,
    /// The secondary address never answered (or none is usable): unknown.
    Unknown,
}

/// What the daemon must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Qualified (RFC 4380 §5.2.1), or the address or MTU changed (§5.2.5): configure the
    /// interface with this Teredo address and MTU. When it replaces an earlier `Up`, the
    /// old address is invalid: reset the list of peers, whose entries were made for it.
    Up {
        /// The client's Teredo address.
        address: Ipv6Addr,
        /// The MTU the server advertised (1280 without an MTU option).
        mtu: u16,
    },
    /// Teredo connectivity is lost: the server stopped answering (3 RSs in a row). Remove
    /// the address and reset the list of peers. The client keeps trying.
    Down,
    /// The secondary-address probe finished (once per qualification and per new mapping).
    NatBehaviour(NatKind),
    /// Resolve the server's host name to IPv4 addresses, then call [`Client::set_server`](super::Client::set_server)
    /// (or [`Client::resolution_failed`](super::Client::resolution_failed)).
    ResolveServer,
    /// The server `server` (its primary address) did not answer `tries` RSs in a row,
    /// during qualification or after (then after [`Event::Down`]). The client waits the
    /// restart delay; a daemon with other servers may call
    /// [`Client::set_server`](super::Client::set_server) with the next one at once.
    ServerUnreachable {
        /// The primary address of the server that failed.
        server: Ipv4Addr,
    },
}

/// The client's state, for status output (RFC 4380 §5.2 "Teredo connectivity status").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for the server's host name to be resolved.
    Resolving,
    /// Soliciting the server, not qualified ("Starting" in RFC 4380 §5.2.1).
    Qualifying,
    /// Qualified, with a Teredo address; maintaining it (RFC 4380 §5.2.5).
    Qualified,
    /// The server was unreachable; waiting the restart delay ("Off line").
    Offline,
}

/// A datagram to send: `len` bytes written at the start of the caller's buffer, to go over
/// UDP from the Teredo service port to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// The destination: a server address, port 3544.
    pub dst: SocketAddrV4,
    /// The length of the UDP payload.
    pub len: usize,
}

/// Plain counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Router solicitations sent (to either server address).
    pub rs_sent: u64,
    /// Router advertisements accepted.
    pub ra_accepted: u64,
    /// Datagrams taken as qualification messages and ignored.
    pub ra_rejected: u64,
    /// Why the last one was ignored.
    pub last_rejection: Option<Rejection>,
    /// Router solicitations to the primary address that went unanswered.
    pub timeouts: u64,
    /// `Up` events.
    pub up: u64,
    /// `Down` events.
    pub down: u64,
    /// Times a refresh found a new mapping.
    pub mapping_changes: u64,
    /// Events dropped because the caller did not poll them.
    pub events_dropped: u64,
}

impl Stats {
    /// The counters by name (see [`crate::status`]).
    pub fn counters(&self) -> crate::status::Counters {
        vec![
            ("rs_sent", self.rs_sent),
            ("ra_accepted", self.ra_accepted),
            ("ra_rejected", self.ra_rejected),
            ("rs_timeouts", self.timeouts),
            ("qualifications", self.up),
            ("losses", self.down),
            ("mapping_changes", self.mapping_changes),
            ("events_dropped", self.events_dropped),
        ]
    }
}
