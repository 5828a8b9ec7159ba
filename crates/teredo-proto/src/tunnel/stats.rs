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
    /// (RFC 4380 §5.2.4, §5.4.1), or whose mapped port is 0.
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
    /// A relay's datagram from a peer it never sent to (RFC 4380 §5.4.2) that it does not
    /// re-learn: a bubble, or a stranger refused an entry.
    UnknownPeer,
    /// The outer source matches neither the embedded nor the trusted mapping.
    MappingMismatch,
    /// Too many echo tests for new native sources (a relay: re-learning bubbles for new
    /// senders) this second.
    TestRateLimited,
    /// A queued inbound packet whose relay is not the one the echo test verified.
    RelayNotVerified,
    /// A datagram from UDP port 0 or from an unspecified or non-unicast IPv4 address: no
    /// peer sends from there, and nothing must be trusted at or answered to it.
    BadSource,
    /// A datagram on a random port (RFC 6081 §5.4) that no peer uses, or not from its peer.
    UnknownPort,
}

impl DropReason {
    /// Every reason, in the order of [`DropCounts`].
    pub const ALL: [Self; 19] = [
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
        Self::BadSource,
        Self::UnknownPort,
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
    /// Datagrams queued (client case 6; a relay's strangers' packets).
    pub queued_in: u64,
    /// Bubbles received and consumed.
    pub bubbles_received: u64,
    /// Echo replies (or unreachables carrying our echo request) verified.
    pub echo_verified: u64,
    /// Reply bubbles verified by their keyed destination from a mapping other than the
    /// one their source embeds (a peer behind a symmetric NAT).
    pub bubbles_verified: u64,
    /// Bubbles sent (direct and indirect).
    pub bubbles_sent: u64,
    /// Reply bubbles sent to an origin indication (and to its alternate addresses).
    pub reply_bubbles_sent: u64,
    /// Reply bubbles (and RFC 6081 advertisements) not sent: their target's budget or the
    /// global rate was spent (module `bubbles`).
    pub reply_bubbles_suppressed: u64,
    /// Bubbles a packet asked for that the per-destination budget of RFC 4380 §5.2.6 held
    /// back (less than 2 s after the last one, or 4 unanswered in 300 s).
    pub bubbles_suppressed: u64,
    /// Bubbles not sent because the global rate ([`super::Limits::bubbles_per_second`]) was
    /// spent.
    pub bubbles_rate_limited: u64,
    /// Direct bubbles sent soliciting an answer (RFC 6081 §5.7).
    pub solicitations_sent: u64,
    /// Direct bubbles sent answering a solicitation (RFC 6081 §5.7.4.2).
    pub advertisements_sent: u64,
    /// Direct bubbles accepted from another mapping by their nonce (RFC 6081 §5.2.4.4).
    pub nonces_verified: u64,
    /// Local discovery bubbles sent (RFC 4380 §5.2.8).
    pub discovery_bubbles_sent: u64,
    /// Local discovery bubbles accepted.
    pub discovery_bubbles_received: u64,
    /// Datagrams received on the discovery address that were not acceptable discovery
    /// bubbles.
    pub discovery_dropped: u64,
    /// Echo tests sent.
    pub echo_tests_sent: u64,
    /// Echo tests a packet asked for that the per-destination budget held back, or that
    /// the global rate refused.
    pub echo_tests_suppressed: u64,
    /// Echo tests repeated for a trusted native peer gone silent (among those sent).
    pub echo_retests: u64,
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
    /// Random ports opened (RFC 6081 §5.4.4.2, §5.5.4.1).
    pub random_ports_opened: u64,
    /// Peers refused a random port or its state: [`super::MAX_RANDOM_PEERS`] in use.
    pub random_ports_refused: u64,
    /// Random ports the I/O layer could not bind.
    pub random_ports_unavailable: u64,
    /// Direct bubbles sent from a random port or to a peer's random port (§5.4.4.3).
    pub random_port_bubbles_sent: u64,
    /// Echo tests started (RFC 6081 §5.5.4.1.1).
    pub port_echo_tests: u64,
    /// Echo tests that predicted a port (§5.5.4.4).
    pub port_predictions: u64,
    /// Peers whose packets go to their embedded mapping (the Symmetric Peer flag of
    /// §5.3.4.1, behind a single UPnP symmetric NAT).
    pub symmetric_peers: u64,
    /// A relay's re-learning bubbles sent to unknown senders (module `relearn`).
    pub relearn_bubbles_sent: u64,
    /// Re-learning bubbles not sent because of the budget per second for strangers.
    pub relearn_suppressed: u64,
    /// Strangers that proved their address and became trusted peers.
    pub peers_relearned: u64,
    /// Unknown senders refused an entry: too many strangers, or a full table.
    pub relearn_refused: u64,
    /// Strangers removed unverified after their lifetime.
    pub relearn_expired: u64,
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
            ("bubbles_verified", self.bubbles_verified),
            ("bubbles_sent", self.bubbles_sent),
            ("reply_bubbles_sent", self.reply_bubbles_sent),
            ("reply_bubbles_suppressed", self.reply_bubbles_suppressed),
            ("bubbles_suppressed", self.bubbles_suppressed),
            ("bubbles_rate_limited", self.bubbles_rate_limited),
            ("solicitations_sent", self.solicitations_sent),
            ("advertisements_sent", self.advertisements_sent),
            ("nonces_verified", self.nonces_verified),
            ("discovery_bubbles_sent", self.discovery_bubbles_sent),
            ("discovery_bubbles_received", self.discovery_bubbles_received),
            ("discovery_dropped", self.discovery_dropped),
            ("echo_tests_sent", self.echo_tests_sent),
            ("echo_tests_suppressed", self.echo_tests_suppressed),
            ("echo_retests", self.echo_retests),
            ("peers_trusted", self.peers_trusted),
            ("released_out", self.released_out),
            ("released_in", self.released_in),
            ("unreachables_sent", self.unreachables_sent),
            ("unreachables_rate_limited", self.unreachables_rate_limited),
            ("output_dropped", self.output_dropped),
            ("accepted_unrecorded", self.accepted_unrecorded),
            ("random_ports_opened", self.random_ports_opened),
            ("random_ports_refused", self.random_ports_refused),
            ("random_ports_unavailable", self.random_ports_unavailable),
            ("random_port_bubbles_sent", self.random_port_bubbles_sent),
            ("port_echo_tests", self.port_echo_tests),
            ("port_predictions", self.port_predictions),
            ("symmetric_peers", self.symmetric_peers),
            ("relearn_bubbles_sent", self.relearn_bubbles_sent),
            ("relearn_suppressed", self.relearn_suppressed),
            ("peers_relearned", self.peers_relearned),
            ("relearn_refused", self.relearn_refused),
            ("relearn_expired", self.relearn_expired),
            ("dropped", self.drops.total()),
        ];
        c.extend(self.drops.iter().map(|(r, n)| (r.counter_name(), n)));
        c
    }
}

/// The counters of the list of peers that `teredo status` shows beside the data path's:
/// refusals, expiry, and the defences against floods (strangers, eviction, fair queues;
/// see [`crate::peers`]).
pub fn peer_counters(p: &crate::peers::PeerStats) -> [(&'static str, u64); 11] {
    [
        ("peers_inserted", p.inserted),
        ("peers_refused_full", p.refused_full),
        ("peers_expired", p.expired),
        ("strangers_admitted", p.strangers_admitted),
        ("strangers_evicted", p.strangers_evicted),
        ("strangers_refused", p.strangers_refused),
        ("strangers_promoted", p.strangers_promoted),
        ("evicted_unanswered", p.evicted_unanswered),
        ("queue_evicted", p.queue_evicted),
        ("queue_discarded", p.queue_discarded),
        ("queue_budget_full", p.queue_budget_full),
    ]
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
    "dropped_bad_source",
    "dropped_unknown_port",
];
