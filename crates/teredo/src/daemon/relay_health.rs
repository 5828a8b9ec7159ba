//! A relay's health, decided by its control thread: whether it should keep its route to
//! the served prefix (2001::/32 on its TUN), so that a routing daemon exporting that kernel
//! route (BIRD's `kernel` protocol with `learn`, FRR's `redistribute kernel`) announces the
//! relay by BGP only while it can do its job.
//!
//! Healthy means: the packet path runs (every worker goes round its loop), and, when the
//! configuration names servers to probe (`ServerAddress`), at least one of them answered
//! the last of its probes or missed fewer than [`UNANSWERED_LIMIT`] in a row since its last
//! answer. Before any server has answered, the relay is not healthy yet. The route is kept
//! while healthy and not drained (`teredo drain`); this module only decides, the relay's
//! control applies it ([`super::relay_plane`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use teredo_proto::probe::Outcome;

/// Probes missed in a row after which a server counts as unreachable: with the default
/// probe every 3 s and 2 s of wait, a relay cut off from the IPv4 side withdraws its route
/// 6 to 9 s after its last answer.
pub const UNANSWERED_LIMIT: u32 = 3;

/// What the relay knows of one probed server.
#[derive(Debug, Clone)]
struct ServerState {
    address: Ipv4Addr,
    answered: u64,
    unanswered: u64,
    /// Probes missed since the last answer.
    missed: u32,
    last_answer: Option<Instant>,
    last_rtt: Option<Duration>,
}

impl ServerState {
    fn reachable(&self) -> bool {
        self.answered > 0 && self.missed < UNANSWERED_LIMIT
    }
}

/// A relay's health (see the module comment).
#[derive(Debug, Clone)]
pub struct RelayHealth {
    servers: Vec<ServerState>,
    packet_path: bool,
    drained: bool,
}

impl RelayHealth {
    /// A relay that probes `servers` (none: its health is its packet path).
    pub fn new(servers: &[Ipv4Addr]) -> Self {
        let servers = servers
            .iter()
            .map(|&address| ServerState {
                address,
                answered: 0,
                unanswered: 0,
                missed: 0,
                last_answer: None,
                last_rtt: None,
            })
            .collect();
        Self { servers, packet_path: true, drained: false }
    }

    /// What became of a probe of `server` at `now`.
    pub fn probe(&mut self, server: Ipv4Addr, outcome: Outcome, now: Instant) {
        let Some(s) = self.servers.iter_mut().find(|s| s.address == server) else { return };
        match outcome {
            Outcome::Answered(rtt) => {
                s.answered += 1;
                s.missed = 0;
                s.last_answer = Some(now);
                s.last_rtt = Some(rtt);
            }
            Outcome::Unanswered => {
                s.unanswered += 1;
                s.missed = s.missed.saturating_add(1);
            }
        }
    }

    /// Whether every worker goes round its loop.
    pub fn set_packet_path(&mut self, alive: bool) {
        self.packet_path = alive;
    }

    /// Drained by the operator (`teredo drain`), or not.
    pub fn set_drained(&mut self, drained: bool) {
        self.drained = drained;
    }

    /// Whether the operator drained the relay.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Whether the relay can do its job.
    pub fn healthy(&self) -> bool {
        self.packet_path && (self.servers.is_empty() || self.servers.iter().any(ServerState::reachable))
    }

    /// Whether the route should be there.
    pub fn announce(&self) -> bool {
        self.healthy() && !self.drained
    }

    /// Why, in words, at `now`.
    pub fn reason(&self, now: Instant) -> String {
        if !self.packet_path {
            return "a worker of the packet path is stuck".into();
        }
        let mut why = if self.servers.is_empty() {
            "the packet path runs (no server to probe)".to_owned()
        } else if let Some(s) = self.servers.iter().find(|s| s.reachable()) {
            let ago = s.last_answer.map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
            format!("server {} answered {ago:.1} s ago", s.address)
        } else if self.servers.iter().all(|s| s.answered == 0 && s.unanswered == 0) {
            "waiting for a first answer from a server".to_owned()
        } else {
            let each: Vec<String> = self
                .servers
                .iter()
                .map(|s| {
                    if s.answered == 0 {
                        format!("{} never answered", s.address)
                    } else {
                        format!("{} missed {} in a row", s.address, s.missed)
                    }
                })
                .collect();
            format!("no server answers its probes ({})", each.join(", "))
        };
        if self.drained {
            why = format!("drained by the operator; {why}");
        }
        why
    }

    /// The `health` object of `teredo status --json`; `announced` says whether the route
    /// is there now.
    pub fn to_json(&self, announced: bool, now: Instant) -> Value {
        let servers: Vec<Value> = self
            .servers
            .iter()
            .map(|s| {
                json!({
                    "address": s.address.to_string(),
                    "reachable": s.reachable(),
                    "answered": s.answered,
                    "unanswered": s.unanswered,
                    "missed_in_a_row": s.missed,
                    "last_answer_s": s.last_answer.map(|t| now.saturating_duration_since(t).as_secs_f64()),
                    "rtt_ms": s.last_rtt.map(|d| d.as_secs_f64() * 1000.0),
                })
            })
            .collect();
        json!({
            "healthy": self.healthy(),
            "route": if announced { "announced" } else { "withdrawn" },
            "drained": self.drained,
            "packet_path": self.packet_path,
            "reason": self.reason(now),
            "servers": servers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const S2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const RTT: Outcome = Outcome::Answered(Duration::from_millis(1));

    #[test]
    fn without_servers_the_packet_path_decides() {
        let now = Instant::now();
        let mut h = RelayHealth::new(&[]);
        assert!(h.announce(), "{}", h.reason(now));
        h.set_packet_path(false);
        assert!(!h.announce());
        assert_eq!(h.reason(now), "a worker of the packet path is stuck");
    }

    #[test]
    fn a_server_must_answer_and_three_misses_withdraw() {
        let now = Instant::now();
        let mut h = RelayHealth::new(&[S1]);
        assert!(!h.announce(), "not before a first answer");
        assert_eq!(h.reason(now), "waiting for a first answer from a server");
        h.probe(S1, RTT, now);
        assert!(h.announce());
        assert_eq!(h.reason(now), "server 192.0.2.1 answered 0.0 s ago");
        for _ in 0..UNANSWERED_LIMIT - 1 {
            h.probe(S1, Outcome::Unanswered, now);
            assert!(h.announce(), "a lost probe or two is no failure");
        }
        h.probe(S1, Outcome::Unanswered, now);
        assert!(!h.announce());
        assert_eq!(h.reason(now), "no server answers its probes (192.0.2.1 missed 3 in a row)");
        h.probe(S1, RTT, now);
        assert!(h.announce(), "back with the first answer");
        let j = h.to_json(true, now);
        assert_eq!(j["servers"][0]["answered"], 2);
        assert_eq!(j["servers"][0]["unanswered"], 3);
        assert_eq!(j["route"], "announced");
    }

    #[test]
    fn one_server_of_several_suffices() {
        let now = Instant::now();
        let mut h = RelayHealth::new(&[S1, S2]);
        h.probe(S2, RTT, now);
        for _ in 0..10 {
            h.probe(S1, Outcome::Unanswered, now);
        }
        assert!(h.announce(), "{}", h.reason(now));
        for _ in 0..UNANSWERED_LIMIT {
            h.probe(S2, Outcome::Unanswered, now);
        }
        assert!(!h.announce());
        assert_eq!(
            h.reason(now),
            "no server answers its probes (192.0.2.1 never answered, 198.51.100.1 missed 3 in a row)"
        );
        // An unknown server changes nothing.
        h.probe(Ipv4Addr::new(203, 0, 113, 9), RTT, now);
        assert!(!h.announce());
    }

    #[test]
    fn drained_keeps_the_health_but_withdraws() {
        let now = Instant::now();
        let mut h = RelayHealth::new(&[]);
        h.set_drained(true);
        assert!(h.healthy() && !h.announce());
        assert_eq!(h.reason(now), "drained by the operator; the packet path runs (no server to probe)");
        let j = h.to_json(false, now);
        assert_eq!(
            (j["healthy"].as_bool(), j["drained"].as_bool(), j["route"].as_str()),
            (Some(true), Some(true), Some("withdrawn"))
        );
        h.set_drained(false);
        assert!(h.announce());
    }
}
