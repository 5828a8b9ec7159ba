//! The data path's counters (see [`Tunnel::stats`](super::Tunnel::stats)): what it sent,
//! delivered and queued, and every drop by its [`DropReason`], with the names they have in
//! `teredo status` and the metrics.

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid IPv6 packet, or not a valid Teredo encapsulation (RFC 4380 §5.2.3).
    Malformed,
    /// A multicast destination.
    Multicast,
    /// A client that is not qualified.
    NotQualified,
    /// A client's packet to a non-Teredo destination from a source outside its prefix
    /// (answered with code 1, as Miredo does).
    SourceNotTeredo,
    /// A relay's packet to a destination outside its prefix (code 3, RFC 4380 §5.4.1).
    NotTeredoDestination,
    /// A Teredo destination whose embedded server or mapped IPv4 is not global unicast
    /// (RFC 4380 §5.2.4, §5.4.1).
    DestinationNotGlobal,
    /// The list of peers is full.
    TableFull,
    /// The peer's queue is full.
    QueueFull,
    /// The global queue budget is exhausted.
    QueueBudget,
    /// Bubbles or echo tests to the peer went unanswered (RFC 4380 §5.2.6): unreachable.
    PeerUnreachable,
    /// A non-bubble with a link-local source.
    LinkLocalSource,
    /// A destination other than the own address.
    WrongDestination,
    /// A relay's datagram whose source is not a Teredo address (RFC 4380 §5.4.2), or a
    /// client's bubble from a native source.
    NotTeredoSource,
    /// A relay's datagram from a peer it never sent to (RFC 4380 §5.4.2).
    UnknownPeer,
    /// The outer source matches neither the embedded nor the trusted mapping.
    MappingMismatch,
    /// Too many echo tests for new native sources this second.
    TestRateLimited,
    /// A queued inbound packet whose relay is not the one the echo test verified.
    RelayNotVerified,
}

impl DropReason {
    /// Every reason, in the order of [`DropCounts`].
    pub const ALL: [Self; 17] = [
        Self::Malformed,
        Self::Multicast,
        Self::NotQualified,
        Self::SourceNotTeredo,
        Self::NotTeredoDestination,
        Self::DestinationNotGlobal,
        Self::TableFull,
        Self::QueueFull,
        Self::QueueBudget,
        Self::PeerUnreachable,
        Self::LinkLocalSource,
        Self::WrongDestination,
        Self::NotTeredoSource,
        Self::UnknownPeer,
        Self::MappingMismatch,
        Self::TestRateLimited,
        Self::RelayNotVerified,
    ];

    /// The reason's counter name: `dropped_<reason>`.
    pub fn counter_name(self) -> &'static str {
        DROP_NAMES[self as usize]
    }
}

/// A counter per [`DropReason`], indexed by the reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts([u64; DropReason::ALL.len()]);

impl DropCounts {
    pub(super) fn slot(&mut self, r: DropReason) -> &mut u64 {
        &mut self.0[r as usize]
    }

    /// The count for `r`.
    pub fn get(&self, r: DropReason) -> u64 {
        self.0[r as usize]
    }

    /// The sum of every count.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(reason, count)` for every reason.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

/// Plain counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// TUN packets sent directly to a trusted peer.
    pub sent: u64,
    /// TUN packets queued.
    pub queued_out: u64,
    /// Datagrams delivered to the TUN directly.
    pub delivered: u64,
    /// Datagrams queued (client case 6).
    pub queued_in: u64,
    /// Bubbles received and consumed.
    pub bubbles_received: u64,
    /// Echo replies (or unreachables carrying our echo request) verified.
    pub echo_verified: u64,
    /// Bubbles sent (direct and indirect).
    pub bubbles_sent: u64,
    /// Reply bubbles sent to an origin indication.
    pub reply_bubbles_sent: u64,
    /// Echo tests sent.
    pub echo_tests_sent: u64,
    /// Peers that became trusted.
    pub peers_trusted: u64,
    /// Released queued packets sent over UDP.
    pub released_out: u64,
    /// Released queued packets delivered to the TUN.
    pub released_in: u64,
    /// ICMPv6 destination unreachables written.
    pub unreachables_sent: u64,
    /// ICMPv6 destination unreachables not sent because of the rate limit.
    pub unreachables_rate_limited: u64,
    /// Outputs dropped because too many were pending or the buffer was too small.
    pub output_dropped: u64,
    /// Valid Teredo packets accepted without a peer entry because the table was full.
    pub accepted_unrecorded: u64,
    /// Drops, by reason.
    pub drops: DropCounts,
}

impl Stats {
    /// The counters by name, the drops as `dropped_<reason>` (see [`crate::status`]).
    pub fn counters(&self) -> crate::status::Counters {
        let mut c = vec![
            ("sent", self.sent),
            ("queued_out", self.queued_out),
            ("delivered", self.delivered),
            ("queued_in", self.queued_in),
            ("bubbles_received", self.bubbles_received),
            ("echo_verified", self.echo_verified),
            ("bubbles_sent", self.bubbles_sent),
            ("reply_bubbles_sent", self.reply_bubbles_sent),
            ("echo_tests_sent", self.echo_tests_sent),
            ("peers_trusted", self.peers_trusted),
            ("released_out", self.released_out),
            ("released_in", self.released_in),
            ("unreachables_sent", self.unreachables_sent),
            ("unreachables_rate_limited", self.unreachables_rate_limited),
            ("output_dropped", self.output_dropped),
            ("accepted_unrecorded", self.accepted_unrecorded),
            ("dropped", self.drops.total()),
        ];
        c.extend(self.drops.iter().map(|(r, n)| (r.counter_name(), n)));
        c
    }
}

/// `dropped_<reason>` for every [`DropReason`], in its order.
const DROP_NAMES: [&str; DropReason::ALL.len()] = [
    "dropped_malformed",
    "dropped_multicast",
    "dropped_not_qualified",
    "dropped_source_not_teredo",
    "dropped_not_teredo_destination",
    "dropped_destination_not_global",
    "dropped_table_full",
    "dropped_queue_full",
    "dropped_queue_budget",
    "dropped_peer_unreachable",
    "dropped_link_local_source",
    "dropped_wrong_destination",
    "dropped_not_teredo_source",
    "dropped_unknown_peer",
    "dropped_mapping_mismatch",
    "dropped_test_rate_limited",
    "dropped_relay_not_verified",
];
